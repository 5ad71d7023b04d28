/* SPDX-License-Identifier: MIT */
/*
 * The PEM key reference (format in kh_keyref.h). It names a key; it never
 * holds one, so the only thing to protect here is the parser: everything
 * read is bounded and validated before it reaches the store.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/asn1t.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include "kh_errbuf.h"
#include "kh_keyref.h"
#include "kh_uri.h"

typedef struct {
    ASN1_INTEGER *version;
    ASN1_UTF8STRING *uri;
} KH_KEYREF_ASN1;

ASN1_SEQUENCE(KH_KEYREF_ASN1) = {
    ASN1_SIMPLE(KH_KEYREF_ASN1, version, ASN1_INTEGER),
    ASN1_SIMPLE(KH_KEYREF_ASN1, uri, ASN1_UTF8STRING),
} ASN1_SEQUENCE_END(KH_KEYREF_ASN1)

IMPLEMENT_ASN1_FUNCTIONS(KH_KEYREF_ASN1)

/* A PEM file bigger than this cannot be a reference. */
#define KEYREF_PEM_MAX 16384

int kh_keyref_uri_ok(const char *uri, char *err, size_t errlen)
{
    size_t n, i;

    if (uri == NULL) {
        kh_errbuf_set(err, errlen, "key reference has no URI");
        return 0;
    }
    n = strnlen(uri, KH_KEYREF_MAX_URI + 1);
    if (n == 0 || n > KH_KEYREF_MAX_URI) {
        kh_errbuf_set(err, errlen, "key reference URI is empty or longer than %d",
               KH_KEYREF_MAX_URI);
        return 0;
    }
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)uri[i];

        if (c <= 0x20 || c >= 0x7f) {
            kh_errbuf_set(err, errlen,
                   "key reference URI has a non-printable character at "
                   "offset %zu", i);
            return 0;
        }
    }
    if (strncasecmp(uri, "pkcs11:", 7) != 0 && strncasecmp(uri, "tpm2:", 5) != 0) {
        kh_errbuf_set(err, errlen,
               "key reference URI must start with 'pkcs11:' or 'tpm2:'");
        return 0;
    }
    return 1;
}

/* Drops pin-value from a pkcs11: URI; other URIs are copied. */
static char *normalise(const char *uri, char *err, size_t errlen)
{
    KH_P11_URI *u = NULL;
    char *out;

    if (!kh_is_p11_uri(uri)) {
        return strdup(uri);
    }
    if (!kh_p11_uri_parse(uri, &u, err, errlen)) {
        return NULL;
    }
    out = kh_p11_uri_format(u, KH_URI_FMT_MODULE | KH_URI_FMT_PIN_SOURCE);
    kh_p11_uri_free(u);
    if (out == NULL) {
        kh_errbuf_set(err, errlen, "out of memory");
    }
    return out;
}

int kh_keyref_der_encode(const char *uri, unsigned char **der, size_t *derlen,
                         char *err, size_t errlen)
{
    KH_KEYREF_ASN1 *ref = NULL;
    char *norm = NULL;
    unsigned char *p = NULL;
    int len, ok = 0;

    *der = NULL;
    *derlen = 0;
    if (!kh_keyref_uri_ok(uri, err, errlen)) {
        return 0;
    }
    norm = normalise(uri, err, errlen);
    if (norm == NULL || !kh_keyref_uri_ok(norm, err, errlen)) {
        goto end;
    }
    ref = KH_KEYREF_ASN1_new();
    if (ref == NULL || !ASN1_INTEGER_set(ref->version, 1)
        || !ASN1_STRING_set(ref->uri, norm, (int)strlen(norm))) {
        kh_errbuf_set(err, errlen, "out of memory");
        goto end;
    }
    len = i2d_KH_KEYREF_ASN1(ref, &p);
    if (len <= 0) {
        kh_errbuf_set(err, errlen, "cannot encode key reference");
        goto end;
    }
    *der = p;
    *derlen = (size_t)len;
    ok = 1;
end:
    KH_KEYREF_ASN1_free(ref);
    free(norm);
    return ok;
}

int kh_keyref_der_decode(const unsigned char *der, size_t derlen, char **uri,
                         char *err, size_t errlen)
{
    KH_KEYREF_ASN1 *ref = NULL;
    const unsigned char *p = der;
    char *out = NULL;
    long version;
    int n, ok = 0;

    *uri = NULL;
    if (der == NULL || derlen == 0 || derlen > KEYREF_PEM_MAX) {
        kh_errbuf_set(err, errlen, "key reference is empty or too large");
        return 0;
    }
    ref = d2i_KH_KEYREF_ASN1(NULL, &p, (long)derlen);
    if (ref == NULL || p != der + derlen) {
        kh_errbuf_set(err, errlen,
               "key reference is not valid DER (truncated or garbled file?)");
        goto end;
    }
    version = ASN1_INTEGER_get(ref->version);
    if (version != 1) {
        kh_errbuf_set(err, errlen,
               "key reference version %ld is not supported (this keyhold "
               "reads version 1)", version);
        goto end;
    }
    n = ASN1_STRING_length(ref->uri);
    if (n <= 0 || n > KH_KEYREF_MAX_URI) {
        kh_errbuf_set(err, errlen, "key reference URI is empty or too long");
        goto end;
    }
    out = OPENSSL_malloc((size_t)n + 1);
    if (out == NULL) {
        kh_errbuf_set(err, errlen, "out of memory");
        goto end;
    }
    memcpy(out, ASN1_STRING_get0_data(ref->uri), (size_t)n);
    out[n] = '\0';
    if (strlen(out) != (size_t)n || !kh_keyref_uri_ok(out, err, errlen)) {
        if (strlen(out) != (size_t)n) {
            kh_errbuf_set(err, errlen, "key reference URI contains a NUL byte");
        }
        goto end;
    }
    *uri = out;
    out = NULL;
    ok = 1;
end:
    OPENSSL_free(out);
    KH_KEYREF_ASN1_free(ref);
    return ok;
}

int kh_keyref_pem_write(BIO *out, const char *uri, char *err, size_t errlen)
{
    unsigned char *der = NULL;
    size_t derlen = 0;
    int ok;

    if (!kh_keyref_der_encode(uri, &der, &derlen, err, errlen)) {
        return 0;
    }
    ok = PEM_write_bio(out, KH_KEYREF_PEM_LABEL, "", der, (long)derlen) > 0;
    if (!ok) {
        kh_errbuf_set(err, errlen, "cannot write key reference");
    }
    OPENSSL_free(der);
    return ok;
}

int kh_keyref_pem_read(BIO *in, char **uri, char *err, size_t errlen)
{
    char *name = NULL, *header = NULL;
    unsigned char *data = NULL;
    long len = 0;
    int ok = 0;

    *uri = NULL;
    ERR_set_mark();
    if (!PEM_read_bio(in, &name, &header, &data, &len)) {
        ERR_pop_to_mark();
        kh_errbuf_set(err, errlen,
               "not a PEM file, or truncated (expected BEGIN %s)",
               KH_KEYREF_PEM_LABEL);
        return 0;
    }
    ERR_pop_to_mark();
    if (strcmp(name, KH_KEYREF_PEM_LABEL) != 0) {
        kh_errbuf_set(err, errlen, "PEM block '%.40s' is not a %s", name,
               KH_KEYREF_PEM_LABEL);
        goto end;
    }
    if (len <= 0 || len > KEYREF_PEM_MAX) {
        kh_errbuf_set(err, errlen, "key reference body is empty or too large");
        goto end;
    }
    ok = kh_keyref_der_decode(data, (size_t)len, uri, err, errlen);
end:
    OPENSSL_free(name);
    OPENSSL_free(header);
    OPENSSL_free(data);
    return ok;
}
