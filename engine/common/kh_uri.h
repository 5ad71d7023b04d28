/* SPDX-License-Identifier: MIT */
/* RFC 7512 pkcs11: URIs, parsed once for the provider and the CLI. */
#ifndef KH_COMMON_URI_H
#define KH_COMMON_URI_H

#include <stddef.h>

enum kh_uri_type {
    KH_URI_TYPE_ANY = 0,
    KH_URI_TYPE_PRIVATE,
    KH_URI_TYPE_PUBLIC,
    KH_URI_TYPE_CERT,
    KH_URI_TYPE_SECRET_KEY,
    KH_URI_TYPE_DATA
};

typedef struct kh_p11_uri {
    /* token attributes (path) */
    char *token;              /* CK_TOKEN_INFO.label */
    char *manufacturer;
    char *model;
    char *serial;
    /* slot attributes (path) */
    char *slot_description;
    char *slot_manufacturer;
    long slot_id;             /* -1 when absent */
    /* library attributes (path) */
    char *library_description;
    char *library_manufacturer;
    char *library_version;
    /* object attributes (path) */
    char *object;             /* CKA_LABEL */
    unsigned char *id;        /* CKA_ID, raw bytes */
    size_t idlen;
    int has_id;
    enum kh_uri_type type;
    /* query attributes */
    char *module_path;
    char *module_name;
    char *pin_source;         /* "file:/path" or "/path" */
    char *pin_value;          /* secret: wiped on free, never formatted */
} KH_P11_URI;

/*
 * Parses |uri| ("pkcs11:..."). On failure returns 0 and writes a message
 * naming the problem into err (never containing a pin-value).
 */
int kh_p11_uri_parse(const char *uri, KH_P11_URI **out, char *err,
                     size_t errlen);
void kh_p11_uri_free(KH_P11_URI *u);

/*
 * Formats a URI back, percent-encoding as RFC 7512 requires. pin-value is
 * never written; pin-source and module-path only when the flags say so.
 * Returns a malloc'd string (free()).
 */
#define KH_URI_FMT_MODULE     0x1
#define KH_URI_FMT_PIN_SOURCE 0x2
char *kh_p11_uri_format(const KH_P11_URI *u, unsigned int flags);

/* Returns 1 when |s| starts with "pkcs11:" (case-insensitive scheme). */
int kh_is_p11_uri(const char *s);

#endif
