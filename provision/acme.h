/* SPDX-License-Identifier: MIT */
/*
 * ACME (RFC 8555) enrolment: the transport of enrol.h for "acme". The
 * account key is a hardware key too (the identity's own, or the identity
 * named by `acme-account`); every JWS is signed through the keyhold
 * provider. This header also exposes the network-free pieces (JSON access,
 * base64url, error documents) so they can be fuzzed and unit-tested.
 */
#ifndef KH_PROVISION_ACME_H
#define KH_PROVISION_ACME_H

#include <stddef.h>

#include "enrol.h"

/* The transport (enrol.h). */
int kh_acme_enrol(KH_ENROL_IO *io, char *err, size_t errlen);

/* A span of JSON text (not NUL-terminated). */
typedef struct kh_jspan {
    const char *p;
    size_t n;
} KH_JSPAN;

/*
 * Member |key| of the JSON object |obj|: 1 and *out set, 0 when absent or
 * when |obj| is not a well-formed object. Bounded nesting, no allocation.
 */
int kh_acme_json_get(KH_JSPAN obj, const char *key, KH_JSPAN *out);
/* Next element of the JSON array |arr|; *pos starts at 0. 1 while there is
 * one, 0 at the end or on malformed input. */
int kh_acme_json_next(KH_JSPAN arr, size_t *pos, KH_JSPAN *elem);
/* Decodes a JSON string value into out (NUL-terminated; non-ASCII \u
 * escapes become '?'). 0 when |v| is not a string or does not fit. */
int kh_acme_json_str(KH_JSPAN v, char *out, size_t outlen);
/* Shortcut: string member |key| of |obj| into out; 0 when absent. */
int kh_acme_json_getstr(KH_JSPAN obj, const char *key, char *out,
                        size_t outlen);

/* base64url without padding; returns the length written, or 0 when outlen
 * is too small (out gets 4 * ceil(n / 3) + 1 bytes at most). */
size_t kh_acme_b64url(const unsigned char *in, size_t n, char *out,
                      size_t outlen);
/* Decodes base64url (padding and '+', '/' tolerated); -1 on bad input. */
long kh_acme_b64url_decode(const char *in, unsigned char *out,
                           size_t outlen);

/*
 * An ACME problem document (RFC 7807 / RFC 8555 6.7) as one line:
 * "urn:ietf:params:acme:error:TYPE: DETAIL (IDENT: SUBDETAIL ...)". The
 * short type ("badNonce", ...) goes to |type| when given. 1 when |body| is
 * a problem document.
 */
int kh_acme_problem(const char *body, size_t len, char *out, size_t outlen,
                    char *type, size_t typelen);

#endif
