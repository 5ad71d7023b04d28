/* SPDX-License-Identifier: MIT */
/*
 * What a certificate must pass before it may serve an identity, each check
 * named in its refusal: key (the identity's hardware key), chain (to the
 * trusted CA), validity (now, with skew on not-before), host (every
 * identity name in CN/SAN), usage (KU/EKU for a TLS server, not a CA).
 * Also reading certificates in PEM or DER, clock sanity, fingerprints.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "keyhold.h"

#define KH_CERT_FILE_MAX (1024 * 1024)

/*
 * DER -> X509 bound to the default provider: once the keyhold provider is
 * loaded a certificate parsed without a property query may get a keyhold
 * public key, and TLS then finds no cipher for it.
 */
static X509 *der_to_x509(const unsigned char *der, long len)
{
    X509 *x = X509_new_ex(NULL, "?provider=default");
    const unsigned char *p = der;

    if (x == NULL) {
        return NULL;
    }
    /* on failure d2i frees the object it was given */
    if (d2i_X509(&x, &p, len) == NULL) {
        return NULL;
    }
    if (p != der + len) {
        X509_free(x);
        return NULL;
    }
    return x;
}

X509 *kh_cert_rebind(X509 *c)
{
    unsigned char *der = NULL;
    int len = i2d_X509(c, &der);
    X509 *out = len > 0 ? der_to_x509(der, len) : NULL;

    OPENSSL_free(der);
    return out;
}

static int push_cert(X509 **cert, STACK_OF(X509) **rest, X509 *x, int n)
{
    if (n == 0) {
        *cert = x;
        return 1;
    }
    if (rest == NULL) {
        X509_free(x);
        return 1;
    }
    if (*rest == NULL) {
        *rest = sk_X509_new_null();
    }
    if (*rest == NULL || !sk_X509_push(*rest, x)) {
        X509_free(x);
        return 0;
    }
    return 1;
}

int kh_certs_read_buf(const unsigned char *buf, size_t len, X509 **cert,
                      STACK_OF(X509) **rest, char *err, size_t errlen)
{
    BIO *b = NULL;
    X509 *x = NULL;
    int n = 0, rc = KH_EXIT_REJECTED;

    *cert = NULL;
    if (len == 0) {
        return kh_seterr(err, errlen, KH_EXIT_REJECTED, "file is empty");
    }
    if (len > KH_CERT_FILE_MAX) {
        return kh_seterr(err, errlen, KH_EXIT_REJECTED, "file is too large");
    }
    ERR_set_mark();
    if (memmem(buf, len, "-----BEGIN", 10) != NULL) {
        char *name = NULL, *header = NULL;
        unsigned char *data = NULL;
        long dlen = 0;

        b = BIO_new_mem_buf(buf, (int)len);
        while (b != NULL && PEM_read_bio(b, &name, &header, &data, &dlen)) {
            int is_cert = strcmp(name, PEM_STRING_X509) == 0
                          || strcmp(name, PEM_STRING_X509_OLD) == 0;

            x = is_cert ? der_to_x509(data, dlen) : NULL;
            OPENSSL_free(name);
            OPENSSL_free(header);
            OPENSSL_free(data);
            name = header = NULL;
            data = NULL;
            if (!is_cert) {
                continue;
            }
            if (x == NULL) {
                kh_seterr(err, errlen, KH_EXIT_REJECTED,
                          "PEM certificate %d is damaged (truncated?)", n + 1);
                goto end;
            }
            if (!push_cert(cert, rest, x, n++)) {
                goto end;
            }
        }
        {
            unsigned long e = ERR_peek_last_error();

            if (n == 0
                || (e != 0 && ERR_GET_REASON(e) != PEM_R_NO_START_LINE)) {
                kh_seterr(err, errlen, KH_EXIT_REJECTED,
                          "%s (truncated or damaged PEM?)",
                          n == 0 ? "no certificate in the PEM data"
                                 : "a PEM block after the first certificate "
                                   "is damaged");
                goto end;
            }
        }
    } else {
        x = der_to_x509(buf, (long)len);
        if (x == NULL) {
            kh_seterr(err, errlen, KH_EXIT_REJECTED,
                      "not a certificate: neither PEM nor complete DER "
                      "(truncated?)");
            goto end;
        }
        *cert = x;
        n = 1;
    }
    rc = KH_EXIT_OK;
end:
    ERR_pop_to_mark();
    BIO_free(b);
    if (rc != KH_EXIT_OK) {
        X509_free(*cert);
        *cert = NULL;
        if (rest != NULL) {
            sk_X509_pop_free(*rest, X509_free);
            *rest = NULL;
        }
    }
    return rc;
}

int kh_certs_read(const char *path, X509 **cert, STACK_OF(X509) **rest,
                  char *err, size_t errlen)
{
    char *buf = NULL;
    size_t len = 0;
    char e2[KH_ERR_MAX];
    int rc;

    *cert = NULL;
    if (!kh_read_file(path, KH_CERT_FILE_MAX, &buf, &len, e2, sizeof(e2))) {
        return kh_seterr(err, errlen, KH_EXIT_REJECTED, "%s", e2);
    }
    rc = kh_certs_read_buf((unsigned char *)buf, len, cert, rest, e2,
                           sizeof(e2));
    free(buf);
    if (rc != KH_EXIT_OK) {
        return kh_seterr(err, errlen, rc, "%s: %s", path, e2);
    }
    return KH_EXIT_OK;
}

int kh_clock_suspect(time_t now)
{
#ifdef KH_BUILD_EPOCH
    return (long long)now < (long long)KH_BUILD_EPOCH;
#else
    return 0;
#endif
}

static long long asn1_time_epoch(const ASN1_TIME *t)
{
    struct tm tm;

    if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1) {
        return 0;
    }
    return (long long)timegm(&tm);
}

static int check_usage(X509 *cert, char *err, size_t errlen)
{
    uint32_t flags = X509_get_extension_flags(cert);
    uint32_t ku, xku;
    EVP_PKEY *pk = X509_get0_pubkey(cert);

    if (flags & EXFLAG_INVALID) {
        return kh_seterr(err, errlen, KH_EXIT_REJECTED,
                         "usage check failed: the certificate has malformed "
                         "extensions");
    }
    if (flags & EXFLAG_CA) {
        return kh_seterr(err, errlen, KH_EXIT_REJECTED,
                         "usage check failed: the certificate is a CA "
                         "certificate (CA:TRUE); a server identity needs "
                         "CA:FALSE");
    }
    if (flags & EXFLAG_XKUSAGE) {
        xku = X509_get_extended_key_usage(cert);
        if (!(xku & XKU_SSL_SERVER)) {
            return kh_seterr(err, errlen, KH_EXIT_REJECTED,
                             "usage check failed: extendedKeyUsage lacks "
                             "serverAuth (ask the CA for a TLS server "
                             "certificate profile)");
        }
    }
    if (flags & EXFLAG_KUSAGE) {
        ku = X509_get_key_usage(cert);
        if (pk != NULL && EVP_PKEY_is_a(pk, "RSA")) {
            if (!(ku & (KU_DIGITAL_SIGNATURE | KU_KEY_ENCIPHERMENT))) {
                return kh_seterr(err, errlen, KH_EXIT_REJECTED,
                                 "usage check failed: keyUsage has neither "
                                 "digitalSignature nor keyEncipherment");
            }
        } else if (!(ku & KU_DIGITAL_SIGNATURE)) {
            return kh_seterr(err, errlen, KH_EXIT_REJECTED,
                             "usage check failed: keyUsage lacks "
                             "digitalSignature");
        }
    }
    return KH_EXIT_OK;
}

int kh_cert_check(KH_CTX *ctx, const KH_IDENTITY *id, X509 *cert,
                  STACK_OF(X509) *chain, X509 *ca, EVP_PKEY *key_pub,
                  time_t now, char *err, size_t errlen)
{
    EVP_PKEY *cpub = X509_get0_pubkey(cert);
    X509_STORE *store = NULL;
    X509_STORE_CTX *sctx = NULL;
    KH_STRLIST names = { 0 };
    long long nb, na;
    size_t i;
    int rc = KH_EXIT_REJECTED;

    /* key */
    if (cpub == NULL || key_pub == NULL || EVP_PKEY_eq(cpub, key_pub) != 1) {
        ERR_clear_error();
        return kh_seterr(err, errlen, KH_EXIT_REJECTED,
                         "key check failed: the certificate is for another "
                         "key, not identity '%s''s hardware key (make a CSR "
                         "with 'keyhold csr %s' and have it signed)",
                         id->name, id->name);
    }
    /* chain */
    if (ca == NULL) {
        return kh_seterr(err, errlen, KH_EXIT_REJECTED,
                         "chain check failed: no trusted CA (give --ca FILE "
                         "or set ca= in the identity's config)");
    }
    store = X509_STORE_new();
    sctx = X509_STORE_CTX_new();
    if (store == NULL || sctx == NULL || !X509_STORE_add_cert(store, ca)
        || !X509_STORE_CTX_init(sctx, store, cert, chain)) {
        kh_seterr(err, errlen, KH_EXIT_BROKEN, "out of memory");
        rc = KH_EXIT_BROKEN;
        goto end;
    }
    /* time is checked below with the skew the issue allows; an anchor may
     * be an intermediate CA the customer pins */
    X509_STORE_CTX_set_flags(sctx, X509_V_FLAG_NO_CHECK_TIME
                                       | X509_V_FLAG_PARTIAL_CHAIN);
    if (X509_verify_cert(sctx) != 1) {
        int e = X509_STORE_CTX_get_error(sctx);
        char cas[256];

        X509_NAME_oneline(X509_get_subject_name(ca), cas, sizeof(cas));
        kh_seterr(err, errlen, KH_EXIT_REJECTED,
                  "chain check failed: the certificate does not chain to "
                  "the trusted CA '%s': %s (give the intermediates with "
                  "--chain, or the right CA with --ca)",
                  cas, X509_verify_cert_error_string(e));
        goto end;
    }
    /* validity */
    nb = asn1_time_epoch(X509_get0_notBefore(cert));
    na = asn1_time_epoch(X509_get0_notAfter(cert));
    if (kh_clock_suspect(now)) {
        kh_seterr(err, errlen, KH_EXIT_REJECTED,
                  "validity check impossible: the system clock (%lld) is "
                  "before keyhold's build date (clock-suspect): set the "
                  "time (NTP) first", (long long)now);
        goto end;
    }
    if (nb > (long long)now + KH_CLOCK_SKEW) {
        kh_seterr(err, errlen, KH_EXIT_REJECTED,
                  "validity check failed: the certificate is not yet valid "
                  "(not-before is %lld s in the future; check the clocks of "
                  "this appliance and the CA)", nb - (long long)now);
        goto end;
    }
    if (na <= (long long)now) {
        kh_seterr(err, errlen, KH_EXIT_REJECTED,
                  "validity check failed: the certificate has expired (%lld "
                  "s ago); request a new one", (long long)now - na);
        goto end;
    }
    /* host */
    if (!kh_identity_names(id, &names)) {
        kh_seterr(err, errlen, KH_EXIT_BROKEN, "out of memory");
        goto end;
    }
    for (i = 0; i < names.n; i++) {
        if (!kh_cert_has_name(cert, names.v[i])) {
            kh_seterr(err, errlen, KH_EXIT_REJECTED,
                      "host check failed: '%s' is in neither the subject "
                      "CN nor the subjectAltName (the certificate must carry "
                      "every name of 'keyhold set-hosts')", names.v[i]);
            goto end;
        }
    }
    /* usage */
    rc = check_usage(cert, err, errlen);
end:
    kh_strlist_free(&names);
    X509_STORE_CTX_free(sctx);
    X509_STORE_free(store);
    ERR_clear_error();
    return rc;
}

/* "sha256:HEX" of LEN bytes of DER (len <= 0: the encoding failed); takes
 * DER and frees it, so each caller is its encoder and nothing else. */
static int fp(unsigned char *der, int len, char *out, size_t outlen)
{
    unsigned char md[32];
    unsigned int mdlen = 0;
    int i, ok = 0;

    if (len <= 0 || outlen < 8 + 65
        || !EVP_Digest(der, (size_t)len, md, &mdlen, EVP_sha256(), NULL)) {
        if (outlen > 0) {
            out[0] = '\0';
        }
        goto end;
    }
    memcpy(out, "sha256:", 7);
    for (i = 0; i < 32; i++) {
        snprintf(out + 7 + 2 * i, 3, "%02x", md[i]);
    }
    ok = 1;
end:
    OPENSSL_free(der);
    return ok;
}

int kh_fp_cert(X509 *c, char *out, size_t outlen)
{
    unsigned char *der = NULL;
    int len = c ? i2d_X509(c, &der) : -1;

    return fp(der, len, out, outlen);
}

int kh_fp_pubkey(EVP_PKEY *k, char *out, size_t outlen)
{
    unsigned char *der = NULL;
    int len = k ? i2d_PUBKEY(k, &der) : -1;

    return fp(der, len, out, outlen);
}

int kh_fp_req(X509_REQ *r, char *out, size_t outlen)
{
    unsigned char *der = NULL;
    int len = r ? i2d_X509_REQ(r, &der) : -1;

    return fp(der, len, out, outlen);
}
