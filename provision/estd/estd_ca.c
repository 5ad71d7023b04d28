/* SPDX-License-Identifier: MIT */
/*
 * keyhold-estd: the issuing CA. Its signing key is loaded through
 * OSSL_STORE (a pkcs11: URI served by the keyhold provider, or a file) and
 * used only through X509_sign_ctx. Policy: subject and SANs from the CSR,
 * serverAuth (plus clientAuth when asked for), CA:FALSE, configured
 * validity. The --test-issue knobs bend exactly one of those rules.
 */
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/pkcs7.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "estd.h"

static const char *digest_for(EVP_PKEY *key)
{
    if (EVP_PKEY_is_a(key, "EC") && EVP_PKEY_get_bits(key) >= 384) {
        return EVP_PKEY_get_bits(key) >= 521 ? "SHA512" : "SHA384";
    }
    return "SHA256";
}

/* Proves the CA key can sign and fits the CA certificate. */
static int check_key_fits(X509 *cert, EVP_PKEY *key, char *err,
                          size_t errlen)
{
    static const unsigned char tbs[] = "keyhold-estd CA key check";
    EVP_MD_CTX *m = EVP_MD_CTX_new();
    unsigned char *sig = NULL;
    size_t siglen = 0;
    int ok = 0;

    if (m == NULL
        || EVP_DigestSignInit_ex(m, NULL, digest_for(key), NULL, NULL, key,
                                 NULL) != 1
        || EVP_DigestSign(m, NULL, &siglen, tbs, sizeof(tbs)) != 1
        || (sig = OPENSSL_malloc(siglen)) == NULL
        || EVP_DigestSign(m, sig, &siglen, tbs, sizeof(tbs)) != 1) {
        unsigned long e = ERR_peek_last_error();

        snprintf(err, errlen, "the CA key cannot sign (%s)",
                 e != 0 && ERR_reason_error_string(e) != NULL
                     ? ERR_reason_error_string(e) : "unknown error");
        goto end;
    }
    EVP_MD_CTX_free(m);
    m = EVP_MD_CTX_new();
    if (m == NULL
        || EVP_DigestVerifyInit_ex(m, NULL, digest_for(key), NULL, NULL,
                                   X509_get0_pubkey(cert), NULL) != 1
        || EVP_DigestVerify(m, sig, siglen, tbs, sizeof(tbs)) != 1) {
        snprintf(err, errlen, "the CA key does not belong to the CA "
                 "certificate");
        goto end;
    }
    ok = 1;
end:
    ERR_clear_error();
    OPENSSL_free(sig);
    EVP_MD_CTX_free(m);
    return ok;
}

static X509 *read_cert(const char *path, char *err, size_t errlen)
{
    BIO *b = BIO_new_file(path, "r");
    X509 *x = NULL;

    if (b != NULL) {
        x = PEM_read_bio_X509(b, NULL, NULL, NULL);
    }
    BIO_free(b);
    if (x == NULL) {
        snprintf(err, errlen, "cannot read a PEM certificate from %s", path);
    }
    return x;
}

static int add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509_EXTENSION *ext;
    int ok;

    X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
    ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (ext == NULL) {
        return 0;
    }
    ok = X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    return ok;
}

/* The other-ca test knob: a CA with the same name but another key. */
static int make_other_ca(ESTD_SERVER *srv, char *err, size_t errlen)
{
    EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    X509 *x = X509_new();
    int ok = 0;

    if (key == NULL || x == NULL
        || !X509_set_version(x, 2)
        || !ASN1_INTEGER_set(X509_get_serialNumber(x), 4242)
        || !X509_set_subject_name(x, X509_get_subject_name(srv->ca_cert))
        || !X509_set_issuer_name(x, X509_get_subject_name(srv->ca_cert))
        || X509_gmtime_adj(X509_getm_notBefore(x), -3600) == NULL
        || X509_gmtime_adj(X509_getm_notAfter(x), 3650L * 86400) == NULL
        || !X509_set_pubkey(x, key)
        || !add_ext(x, x, NID_basic_constraints, "critical,CA:TRUE")
        || !add_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign")
        || !add_ext(x, x, NID_subject_key_identifier, "hash")
        || !X509_sign(x, key, EVP_sha256())) {
        snprintf(err, errlen, "cannot make the other-ca test CA");
        goto end;
    }
    srv->other_ca_cert = x;
    srv->other_ca_key = key;
    x = NULL;
    key = NULL;
    ok = 1;
end:
    X509_free(x);
    EVP_PKEY_free(key);
    return ok;
}

int estd_ca_init(ESTD_SERVER *srv, char *err, size_t errlen)
{
    ESTD_CONFIG *c = &srv->cfg;
    BIO *b = NULL;
    X509 *x;
    int i;

    srv->ca_cert = read_cert(c->ca_cert, err, errlen);
    if (srv->ca_cert == NULL) {
        return 0;
    }
    if (X509_check_ca(srv->ca_cert) < 1) {
        snprintf(err, errlen, "%s is not a CA certificate", c->ca_cert);
        return 0;
    }
    srv->ca_key = estd_load_key(c->ca_key, c->pin_file, err, errlen);
    if (srv->ca_key == NULL) {
        return 0;
    }
    if (!check_key_fits(srv->ca_cert, srv->ca_key, err, errlen)) {
        return 0;
    }
    srv->ca_chain = sk_X509_new_null();
    srv->reenroll_store = X509_STORE_new();
    if (srv->ca_chain == NULL || srv->reenroll_store == NULL
        || !X509_up_ref(srv->ca_cert)
        || !sk_X509_push(srv->ca_chain, srv->ca_cert)) {
        snprintf(err, errlen, "out of memory");
        return 0;
    }
    if (c->ca_chain != NULL) {
        b = BIO_new_file(c->ca_chain, "r");
        if (b == NULL) {
            snprintf(err, errlen, "cannot read %s", c->ca_chain);
            return 0;
        }
        while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
            if (X509_cmp(x, srv->ca_cert) == 0 || !sk_X509_push(srv->ca_chain,
                                                                x)) {
                X509_free(x);
            }
        }
        ERR_clear_error();
        BIO_free(b);
    }
    /*
     * simplereenroll: the client's current certificate must come from this
     * CA. Our CA certificate is a trust anchor here even when it is an
     * intermediate: partial chains are allowed for this store.
     */
    for (i = 0; i < sk_X509_num(srv->ca_chain); i++) {
        X509_STORE_add_cert(srv->reenroll_store,
                            sk_X509_value(srv->ca_chain, i));
    }
    X509_STORE_set_flags(srv->reenroll_store, X509_V_FLAG_PARTIAL_CHAIN);
    if (c->client_ca != NULL) {
        srv->bootstrap_store = X509_STORE_new();
        if (srv->bootstrap_store == NULL
            || X509_STORE_load_file(srv->bootstrap_store, c->client_ca) != 1) {
            snprintf(err, errlen, "cannot load bootstrap CA %s",
                     c->client_ca);
            return 0;
        }
    }
    if (c->test_issue == ESTD_TEST_OTHER_CA
        && !make_other_ca(srv, err, errlen)) {
        return 0;
    }
    return 1;
}

static int b64_decode(const unsigned char *in, size_t len,
                      unsigned char **out, size_t *outlen)
{
    EVP_ENCODE_CTX *ctx = EVP_ENCODE_CTX_new();
    unsigned char *buf = NULL;
    int n = 0, m = 0, ok = 0;

    if (ctx == NULL || len > INT_MAX) {
        goto end;
    }
    buf = OPENSSL_malloc(len / 4 * 3 + 4);
    if (buf == NULL) {
        goto end;
    }
    EVP_DecodeInit(ctx);
    if (EVP_DecodeUpdate(ctx, buf, &n, in, (int)len) < 0
        || EVP_DecodeFinal(ctx, buf + n, &m) < 0) {
        goto end;
    }
    *out = buf;
    *outlen = (size_t)(n + m);
    buf = NULL;
    ok = 1;
end:
    OPENSSL_free(buf);
    EVP_ENCODE_CTX_free(ctx);
    return ok;
}

X509_REQ *estd_ca_parse_csr(const unsigned char *body, size_t len, char *err,
                            size_t errlen)
{
    unsigned char *der = NULL;
    const unsigned char *p;
    size_t derlen = 0;
    X509_REQ *req = NULL;
    EVP_PKEY *pub;

    if (body == NULL || len == 0) {
        snprintf(err, errlen, "empty body");
        return NULL;
    }
    if (body[0] == 0x30) {
        /* DER, though RFC 7030 says base64: be lenient in what we take */
        p = body;
        req = d2i_X509_REQ(NULL, &p, (long)len);
    } else if (b64_decode(body, len, &der, &derlen)) {
        p = der;
        req = d2i_X509_REQ(NULL, &p, (long)derlen);
    } else {
        snprintf(err, errlen, "body is not base64");
        goto end;
    }
    if (req == NULL) {
        snprintf(err, errlen, "not a PKCS#10 request");
        goto end;
    }
    pub = X509_REQ_get0_pubkey(req);
    if (pub == NULL) {
        snprintf(err, errlen, "unreadable public key");
        goto fail;
    }
    if (EVP_PKEY_is_a(pub, "RSA") && EVP_PKEY_get_bits(pub) < 2048) {
        snprintf(err, errlen, "RSA key of %d bits: 2048 at least",
                 EVP_PKEY_get_bits(pub));
        goto fail;
    }
    if (!EVP_PKEY_is_a(pub, "RSA") && !EVP_PKEY_is_a(pub, "EC")) {
        snprintf(err, errlen, "key type not supported (EC or RSA)");
        goto fail;
    }
    if (X509_REQ_verify(req, pub) != 1) {
        snprintf(err, errlen, "signature does not verify (no proof of "
                 "possession)");
        goto fail;
    }
    goto end;
fail:
    X509_REQ_free(req);
    req = NULL;
end:
    ERR_clear_error();
    OPENSSL_free(der);
    return req;
}

static GENERAL_NAMES *req_sans(X509_REQ *req)
{
    STACK_OF(X509_EXTENSION) *exts = X509_REQ_get_extensions(req);
    GENERAL_NAMES *gens = NULL;
    int i;

    for (i = 0; i < sk_X509_EXTENSION_num(exts); i++) {
        X509_EXTENSION *e = sk_X509_EXTENSION_value(exts, i);

        if (OBJ_obj2nid(X509_EXTENSION_get_object(e))
            == NID_subject_alt_name) {
            gens = X509V3_EXT_d2i(e);
            break;
        }
    }
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    return gens;
}

static int req_wants_client_auth(X509_REQ *req)
{
    STACK_OF(X509_EXTENSION) *exts = X509_REQ_get_extensions(req);
    EXTENDED_KEY_USAGE *eku = NULL;
    int i, want = 0;

    for (i = 0; i < sk_X509_EXTENSION_num(exts); i++) {
        X509_EXTENSION *e = sk_X509_EXTENSION_value(exts, i);

        if (OBJ_obj2nid(X509_EXTENSION_get_object(e)) == NID_ext_key_usage) {
            eku = X509V3_EXT_d2i(e);
            break;
        }
    }
    for (i = 0; eku != NULL && i < sk_ASN1_OBJECT_num(eku); i++) {
        if (OBJ_obj2nid(sk_ASN1_OBJECT_value(eku, i)) == NID_client_auth) {
            want = 1;
        }
    }
    EXTENDED_KEY_USAGE_free(eku);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    return want;
}

/* Same set of names, whatever the order. */
static int same_gens(GENERAL_NAMES *a, GENERAL_NAMES *b)
{
    int i, j, na = sk_GENERAL_NAME_num(a), nb = sk_GENERAL_NAME_num(b);

    if (na != nb) {
        return 0;
    }
    for (i = 0; i < na; i++) {
        int found = 0;

        for (j = 0; j < nb && !found; j++) {
            found = GENERAL_NAME_cmp(sk_GENERAL_NAME_value(a, i),
                                     sk_GENERAL_NAME_value(b, j)) == 0;
        }
        if (!found) {
            return 0;
        }
    }
    return 1;
}

int estd_ca_same_names(X509_REQ *csr, X509 *cert, char *err, size_t errlen)
{
    GENERAL_NAMES *rs = req_sans(csr);
    GENERAL_NAMES *cs = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL,
                                         NULL);
    int ok = 0;

    if (X509_NAME_cmp(X509_REQ_get_subject_name(csr),
                      X509_get_subject_name(cert)) != 0) {
        snprintf(err, errlen, "subject differs from the certificate being "
                 "renewed");
        goto end;
    }
    if (!same_gens(rs, cs)) {
        snprintf(err, errlen, "subjectAltName differs from the certificate "
                 "being renewed");
        goto end;
    }
    ok = 1;
end:
    GENERAL_NAMES_free(rs);
    GENERAL_NAMES_free(cs);
    return ok;
}

X509 *estd_ca_issue(ESTD_SERVER *srv, X509_REQ *csr, char *err,
                    size_t errlen)
{
    ESTD_CONFIG *c = &srv->cfg;
    enum estd_test_issue t = c->test_issue;
    X509 *x = X509_new(), *issuer = srv->ca_cert;
    EVP_PKEY *signer = srv->ca_key, *pub = X509_REQ_get0_pubkey(csr);
    EVP_PKEY *other = NULL;
    X509_NAME *subj = NULL;
    GENERAL_NAMES *sans = NULL;
    EVP_MD_CTX *m = NULL;
    unsigned char serial[16];
    BIGNUM *bn = NULL;
    long life = c->validity_seconds > 0 ? c->validity_seconds
                                        : c->validity_days * 86400;
    long nb = -60;
    char eku[64];
    int ok = 0, locked = 0;

    if (x == NULL || !X509_set_version(x, 2)) {
        goto oom;
    }
    if (RAND_bytes(serial, sizeof(serial)) != 1) {
        goto oom;
    }
    serial[0] &= 0x7f;
    serial[0] |= 0x01;
    bn = BN_bin2bn(serial, sizeof(serial), NULL);
    if (bn == NULL || BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x))
                      == NULL) {
        goto oom;
    }
    if (t == ESTD_TEST_OTHER_CA) {
        issuer = srv->other_ca_cert;
        signer = srv->other_ca_key;
    }
    if (t == ESTD_TEST_WRONG_KEY) {
        other = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
        if (other == NULL) {
            goto oom;
        }
        pub = other;
    }
    if (t == ESTD_TEST_WRONG_HOST) {
        subj = X509_NAME_new();
        if (subj == NULL
            || !X509_NAME_add_entry_by_txt(subj, "CN", MBSTRING_ASC,
                   (const unsigned char *)"wrong-host.invalid", -1, -1, 0)
            || !X509_set_subject_name(x, subj)) {
            goto oom;
        }
    } else if (!X509_set_subject_name(x, X509_REQ_get_subject_name(csr))) {
        goto oom;
    }
    if (t == ESTD_TEST_EXPIRED) {
        nb = -2 * 86400;
        life = 86400;
    } else if (t == ESTD_TEST_NOT_YET_VALID) {
        nb = 86400;
    }
    if (!X509_set_issuer_name(x, X509_get_subject_name(issuer))
        || X509_gmtime_adj(X509_getm_notBefore(x), nb) == NULL
        || X509_time_adj_ex(X509_getm_notAfter(x), 0, nb + life, NULL)
           == NULL
        || !X509_set_pubkey(x, pub)) {
        goto oom;
    }
    if (!add_ext(x, issuer, NID_basic_constraints,
                 t == ESTD_TEST_CA_TRUE ? "critical,CA:TRUE"
                                        : "critical,CA:FALSE")
        || !add_ext(x, issuer, NID_key_usage,
                    EVP_PKEY_is_a(pub, "RSA")
                        ? "critical,digitalSignature,keyEncipherment"
                        : "critical,digitalSignature")
        || !add_ext(x, issuer, NID_subject_key_identifier, "hash")
        || !add_ext(x, issuer, NID_authority_key_identifier, "keyid")) {
        snprintf(err, errlen, "cannot build extensions");
        goto end;
    }
    if (t == ESTD_TEST_NO_SERVER_AUTH) {
        snprintf(eku, sizeof(eku), "clientAuth");
    } else {
        snprintf(eku, sizeof(eku), "serverAuth%s",
                 req_wants_client_auth(csr) ? ",clientAuth" : "");
    }
    if (!add_ext(x, issuer, NID_ext_key_usage, eku)) {
        snprintf(err, errlen, "cannot build extensions");
        goto end;
    }
    if (t == ESTD_TEST_WRONG_HOST) {
        if (!add_ext(x, issuer, NID_subject_alt_name,
                     "DNS:wrong-host.invalid")) {
            goto oom;
        }
    } else {
        sans = req_sans(csr);
        if (sans != NULL
            && !X509_add1_ext_i2d(x, NID_subject_alt_name, sans, 0, 0)) {
            goto oom;
        }
    }
    m = EVP_MD_CTX_new();
    if (m == NULL) {
        goto oom;
    }
    /* Token sessions are shared: one signature on the CA key at a time. */
    pthread_mutex_lock(&srv->sign_lock);
    locked = 1;
    if (EVP_DigestSignInit_ex(m, NULL, digest_for(signer), NULL, NULL, signer,
                              NULL) != 1
        || X509_sign_ctx(x, m) <= 0) {
        unsigned long e = ERR_peek_last_error();

        snprintf(err, errlen, "CA key signature failed (%s)",
                 e != 0 && ERR_reason_error_string(e) != NULL
                     ? ERR_reason_error_string(e) : "unknown");
        goto end;
    }
    ok = 1;
    goto end;
oom:
    snprintf(err, errlen, "cannot build the certificate");
end:
    if (locked) {
        pthread_mutex_unlock(&srv->sign_lock);
    }
    ERR_clear_error();
    EVP_MD_CTX_free(m);
    GENERAL_NAMES_free(sans);
    X509_NAME_free(subj);
    EVP_PKEY_free(other);
    BN_free(bn);
    if (!ok) {
        X509_free(x);
        x = NULL;
    }
    return x;
}

int estd_ca_certs_only_b64(STACK_OF(X509) *certs, unsigned char **out,
                           size_t *outlen, char *err, size_t errlen)
{
    PKCS7 *p7 = PKCS7_new();
    unsigned char *der = NULL, *b64 = NULL;
    int derlen, i, ok = 0, n;

    /* A degenerate SignedData: certificates and no signers (RFC 5652 5.2) */
    if (p7 == NULL || !PKCS7_set_type(p7, NID_pkcs7_signed)) {
        goto end;
    }
    /* encapContentInfo: type id-data, no content */
    p7->d.sign->contents->type = OBJ_nid2obj(NID_pkcs7_data);
    for (i = 0; i < sk_X509_num(certs); i++) {
        if (!PKCS7_add_certificate(p7, sk_X509_value(certs, i))) {
            goto end;
        }
    }
    derlen = i2d_PKCS7(p7, &der);
    if (derlen <= 0) {
        goto end;
    }
    /* 64 characters a line, each line "\n"-terminated */
    b64 = OPENSSL_malloc((size_t)derlen / 48 * 65 + 70);
    if (b64 == NULL) {
        goto end;
    }
    n = 0;
    for (i = 0; i < derlen; i += 48) {
        int chunk = derlen - i < 48 ? derlen - i : 48;

        n += EVP_EncodeBlock(b64 + n, der + i, chunk);
        b64[n++] = '\n';
    }
    *out = b64;
    *outlen = (size_t)n;
    b64 = NULL;
    ok = 1;
end:
    if (!ok) {
        snprintf(err, errlen, "cannot encode PKCS#7");
    }
    OPENSSL_free(b64);
    OPENSSL_free(der);
    PKCS7_free(p7);
    return ok;
}
