/* SPDX-License-Identifier: MIT */
/*
 * The SCEP enrolment transport (RFC 8894): GetCACaps, GetCACert (the CA
 * pinned by --ca / --ca-fingerprint, RA encryption and signing certificates
 * chosen by key usage and checked against it), PKCSReq or RenewalReq: the
 * hardware-signed CSR (with the challengePassword attribute) enveloped to
 * the RA and signed through the keyhold provider (by a transient
 * self-signed certificate for the new key, or by the current certificate
 * and key for a renewal), CertRep verified against the CA and decrypted by
 * the hardware key (RSA decryption in the token through the provider's
 * asymmetric-cipher path), PENDING answered by bounded CertPoll
 * (GetCertInitial) rounds, FAILURE reported with its failInfo. Everything
 * around it (key, CSR, checks, install, hooks, rollback) is est_run.c's.
 *
 * Settings (identity config): scep-url, scep-challenge-file, server-ca (for
 * an https:// SCEP URL), scep-poll-interval (seconds, default 30),
 * scep-poll-max (seconds, default 600), scep-timeout (seconds, default 60).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <curl/curl.h>
#include <openssl/asn1t.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pkcs7.h>
#include <openssl/crypto.h>
#include <openssl/provider.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "keyhold.h"
#include "enrol.h"
#include "http.h"
#include "kh_pin.h"

#define SCEP_MAX_BODY (256 * 1024)
#define SCEP_NONCE_LEN 16

static OSSL_PROVIDER *legacy;

/* RFC 8894 3.2.1: id-VeriSign pki attributes (2.16.840.1.113733.1.9.x) */
#define OID_MSGTYPE "2.16.840.1.113733.1.9.2"
#define OID_STATUS "2.16.840.1.113733.1.9.3"
#define OID_FAILINFO "2.16.840.1.113733.1.9.4"
#define OID_SNONCE "2.16.840.1.113733.1.9.5"
#define OID_RNONCE "2.16.840.1.113733.1.9.6"
#define OID_TRANSID "2.16.840.1.113733.1.9.7"

#define MSG_CERTREP "3"
#define MSG_RENEWALREQ "17"
#define MSG_PKCSREQ "19"
#define MSG_CERTPOLL "20"

/* RFC 8894 3.3.3: IssuerAndSubject, the content of a CertPoll */
typedef struct kh_scep_ias {
    X509_NAME *issuer;
    X509_NAME *subject;
} KH_SCEP_IAS;

ASN1_SEQUENCE(KH_SCEP_IAS) = {
    ASN1_SIMPLE(KH_SCEP_IAS, issuer, X509_NAME),
    ASN1_SIMPLE(KH_SCEP_IAS, subject, X509_NAME)
} ASN1_SEQUENCE_END(KH_SCEP_IAS)

DECLARE_ASN1_FUNCTIONS(KH_SCEP_IAS)
IMPLEMENT_ASN1_FUNCTIONS(KH_SCEP_IAS)

typedef struct scep {
    const char *who;
    const char *url;
    int debug;
    const char *server_ca;
    long timeout;
    int post;                   /* POSTPKIOperation */
    int renewal_ok;             /* Renewal */
    int sha256;                 /* SHA-256 (else SHA-1 for old servers) */
    int aes;                    /* AES (else DES3) */
    int nid_msgtype, nid_status, nid_failinfo, nid_snonce, nid_rnonce,
        nid_transid;
    char transid[65];
    unsigned char snonce[SCEP_NONCE_LEN];
} SCEP;

struct body {
    unsigned char *p;
    size_t n;
    int too_big;
};

static size_t on_body(char *data, size_t sz, size_t nm, void *ud)
{
    struct body *b = ud;

    return kh_http_body_append(&b->p, &b->n, SCEP_MAX_BODY, data, sz * nm,
                               &b->too_big);
}

/*
 * One HTTP(S) request to the SCEP URL with ?operation=OP[&message=MSG].
 * On KH_EXIT_OK *out holds the 200 response body and ctype its type.
 */
static int scep_http(SCEP *s, const char *op, const char *msg,
                     const unsigned char *post, size_t postlen,
                     struct body *out, char *ctype, size_t ctlen,
                     char *err, size_t errlen)
{
    char ebuf[CURL_ERROR_SIZE] = "";
    char *url = NULL, *esc = NULL;
    struct curl_slist *hdr = NULL;
    const char *sep = strchr(s->url, '?') != NULL ? "&" : "?";
    char *ct = NULL;
    long status = 0;
    size_t ulen;
    CURLcode cc;
    CURL *c = NULL;
    int rc = KH_EXIT_NETWORK;

    memset(out, 0, sizeof(*out));
    c = kh_http_curl_new("http,https", s->timeout < 10 ? s->timeout : 10L,
                         s->timeout, (curl_off_t)SCEP_MAX_BODY, s->server_ca,
                         ebuf, err, errlen);
    if (c == NULL) {
        return KH_EXIT_NETWORK;
    }
    if (msg != NULL) {
        esc = curl_easy_escape(c, msg, 0);
        if (esc == NULL) {
            rc = kh_seterr(err, errlen, KH_EXIT_NETWORK, "out of memory");
            goto end;
        }
    }
    ulen = strlen(s->url) + strlen(op) + (esc ? strlen(esc) : 0) + 32;
    url = malloc(ulen);
    if (url == NULL) {
        rc = kh_seterr(err, errlen, KH_EXIT_NETWORK, "out of memory");
        goto end;
    }
    snprintf(url, ulen, "%s%soperation=%s%s%s", s->url, sep, op,
             esc ? "&message=" : "", esc ? esc : "");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
    hdr = curl_slist_append(hdr, "Expect:");
    if (post != NULL) {
        hdr = curl_slist_append(hdr, "Content-Type: application/x-pki-message");
        curl_easy_setopt(c, CURLOPT_POST, 1L);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, post);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)postlen);
    } else {
        curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr);
    cc = curl_easy_perform(c);
    if (cc != CURLE_OK) {
        if (out->too_big || cc == CURLE_FILESIZE_EXCEEDED) {
            kh_seterr(err, errlen, 0, "%s: SCEP %s: response larger than %d "
                      "bytes (refused)", s->url, op, SCEP_MAX_BODY);
        } else {
            kh_seterr(err, errlen, 0, "%s: SCEP %s: %s%s%s", s->url, op,
                      curl_easy_strerror(cc), ebuf[0] ? ": " : "", ebuf);
        }
        goto end;
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    if (status != 200) {
        kh_seterr(err, errlen, 0, "%s: SCEP %s: the server answered HTTP %ld "
                  "(check the SCEP URL and the server's log)", s->url, op,
                  status);
        goto end;
    }
    ctype[0] = '\0';
    if (curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct) == CURLE_OK
        && ct != NULL) {
        snprintf(ctype, ctlen, "%s", ct);
    }
    rc = KH_EXIT_OK;
end:
    if (rc != KH_EXIT_OK) {
        OPENSSL_free(out->p);
        memset(out, 0, sizeof(*out));
    }
    curl_slist_free_all(hdr);
    curl_free(esc);
    free(url);
    curl_easy_cleanup(c);
    return rc;
}

static int caps_has(const char *caps, const char *word)
{
    const char *p = caps;
    size_t n = strlen(word);

    while ((p = strcasestr(p, word)) != NULL) {
        int before = p == caps || p[-1] == '\n' || p[-1] == '\r';
        int after = p[n] == '\0' || p[n] == '\n' || p[n] == '\r';

        if (before && after) {
            return 1;
        }
        p += n;
    }
    return 0;
}

static int get_caps(SCEP *s, char *err, size_t errlen)
{
    struct body b;
    char ct[128];
    int rc;

    rc = scep_http(s, "GetCACaps", NULL, NULL, 0, &b, ct, sizeof(ct), err,
                   errlen);
    if (rc != KH_EXIT_OK) {
        return rc;
    }
    if (b.p != NULL) {
        s->post = caps_has((char *)b.p, "POSTPKIOperation");
        s->renewal_ok = caps_has((char *)b.p, "Renewal");
        s->sha256 = caps_has((char *)b.p, "SHA-256")
                    || caps_has((char *)b.p, "SCEPStandard");
        s->aes = caps_has((char *)b.p, "AES")
                 || caps_has((char *)b.p, "SCEPStandard");
    }
    OPENSSL_free(b.p);
    return KH_EXIT_OK;
}

static int is_ca_cert(X509 *c)
{
    return X509_check_ca(c) != 0;
}

/* 1 when |c| is |ca| or was issued and signed by it. */
static int from_ca(X509 *c, X509 *ca)
{
    if (X509_cmp(c, ca) == 0) {
        return 1;
    }
    return X509_check_issued(ca, c) == X509_V_OK
           && X509_verify(c, X509_get0_pubkey(ca)) == 1;
}

/*
 * GetCACert: the CA (by the pin) and the RA certificates for encryption
 * and for signing responses (RFC 8894 3.5.1: without an RA, the CA).
 */
static int get_cacert(SCEP *s, KH_ENROL_IO *io, STACK_OF(X509) **all,
                      X509 **ca, X509 **ra_enc, char *err, size_t errlen)
{
    struct body b;
    char ct[128], f[80];
    const unsigned char *p;
    PKCS7 *p7 = NULL;
    X509 *one = NULL;
    STACK_OF(X509) *certs = NULL;
    int rc, i;

    *all = NULL;
    *ca = NULL;
    *ra_enc = NULL;
    rc = scep_http(s, "GetCACert", "keyhold", NULL, 0, &b, ct, sizeof(ct),
                   err, errlen);
    if (rc != KH_EXIT_OK) {
        return rc;
    }
    certs = sk_X509_new_null();
    if (certs == NULL) {
        rc = kh_seterr(err, errlen, KH_EXIT_NETWORK, "out of memory");
        goto end;
    }
    p = b.p;
    if (strncasecmp(ct, "application/x-x509-ca-ra-cert", 29) == 0) {
        p7 = d2i_PKCS7(NULL, &p, (long)b.n);
        if (p7 == NULL || !PKCS7_type_is_signed(p7)
            || p7->d.sign->cert == NULL) {
            rc = kh_seterr(err, errlen, KH_EXIT_NETWORK, "%s: GetCACert: "
                           "not a certificates-only PKCS#7", s->url);
            goto end;
        }
        for (i = 0; i < sk_X509_num(p7->d.sign->cert); i++) {
            X509 *c = kh_cert_rebind(sk_X509_value(p7->d.sign->cert, i));

            if (c == NULL || !sk_X509_push(certs, c)) {
                X509_free(c);
                rc = kh_seterr(err, errlen, KH_EXIT_NETWORK,
                               "out of memory");
                goto end;
            }
        }
    } else {
        one = X509_new_ex(NULL, "?provider=default");
        if (one == NULL || d2i_X509(&one, &p, (long)b.n) == NULL) {
            X509_free(one);
            rc = kh_seterr(err, errlen, KH_EXIT_NETWORK, "%s: GetCACert: "
                           "the answer (%s) is not a certificate", s->url,
                           ct[0] ? ct : "no content type");
            goto end;
        }
        sk_X509_push(certs, one);
    }
    /* the trust anchor: the pin, never the first certificate seen */
    for (i = 0; i < sk_X509_num(certs) && *ca == NULL; i++) {
        X509 *c = sk_X509_value(certs, i);

        if (io->ca_fingerprint != NULL) {
            if (kh_fp_cert(c, f, sizeof(f))
                && strcasecmp(f, io->ca_fingerprint) == 0) {
                *ca = c;
            }
        } else if (io->pinned_ca != NULL && X509_cmp(c, io->pinned_ca) == 0) {
            *ca = c;
        }
    }
    if (*ca == NULL && io->ca_fingerprint == NULL && io->pinned_ca != NULL) {
        /* an intermediate issuing CA under the pinned root */
        for (i = 0; i < sk_X509_num(certs) && *ca == NULL; i++) {
            X509 *c = sk_X509_value(certs, i);

            if (is_ca_cert(c) && from_ca(c, io->pinned_ca)) {
                *ca = c;
            }
        }
    }
    if (*ca == NULL) {
        rc = kh_seterr(err, errlen, KH_EXIT_REJECTED, "%s: the SCEP server's "
                       "CA certificate does not match the pinned CA (%s): "
                       "check --ca / --ca-fingerprint against the CA's real "
                       "certificate; nothing was changed", s->url,
                       io->ca_fingerprint ? io->ca_fingerprint : "--ca");
        goto end;
    }
    /* RA for encryption: a non-CA certificate from the CA allowing key
     * encipherment; none: the CA itself */
    for (i = 0; i < sk_X509_num(certs) && *ra_enc == NULL; i++) {
        X509 *c = sk_X509_value(certs, i);
        uint32_t ku = X509_get_key_usage(c);

        if (c == *ca || is_ca_cert(c) || !from_ca(c, *ca)) {
            continue;
        }
        if (ku == UINT32_MAX || (ku & (KU_KEY_ENCIPHERMENT))) {
            *ra_enc = c;
        }
    }
    if (*ra_enc == NULL) {
        *ra_enc = *ca;
    }
    if (!EVP_PKEY_is_a(X509_get0_pubkey(*ra_enc), "RSA")) {
        rc = kh_seterr(err, errlen, KH_EXIT_NETWORK, "%s: the SCEP server's "
                       "encryption certificate has no RSA key", s->url);
        goto end;
    }
    *all = certs;
    certs = NULL;
    rc = KH_EXIT_OK;
end:
    sk_X509_pop_free(certs, X509_free);
    PKCS7_free(p7);
    OPENSSL_free(b.p);
    if (rc != KH_EXIT_OK) {
        *ca = NULL;
        *ra_enc = NULL;
    }
    return rc;
}

/* RFC 8894 2.3: a transient self-signed certificate for the new key. */
static X509 *transient_cert(X509_REQ *csr, EVP_PKEY *key, int sha256)
{
    X509 *x = X509_new_ex(NULL, "?provider=default");
    unsigned char serial[8];
    BIGNUM *bn = NULL;
    X509_NAME *subj = X509_REQ_get_subject_name(csr);
    X509_NAME *cn = NULL;
    int ok = 0;

    if (x == NULL || RAND_bytes(serial, sizeof(serial)) != 1) {
        goto end;
    }
    serial[0] &= 0x7f;
    serial[0] |= 0x01;
    bn = BN_bin2bn(serial, sizeof(serial), NULL);
    if (X509_NAME_entry_count(subj) == 0) {
        cn = X509_NAME_new();
        if (cn == NULL || !X509_NAME_add_entry_by_txt(cn, "CN", MBSTRING_ASC,
                              (const unsigned char *)"keyhold SCEP", -1, -1,
                              0)) {
            goto end;
        }
        subj = cn;
    }
    ok = bn != NULL && X509_set_version(x, X509_VERSION_3)
         && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL
         && X509_set_subject_name(x, subj) && X509_set_issuer_name(x, subj)
         && X509_gmtime_adj(X509_getm_notBefore(x), -300) != NULL
         && X509_gmtime_adj(X509_getm_notAfter(x), 86400) != NULL
         && X509_set_pubkey(x, key)
         && X509_sign(x, key, sha256 ? EVP_sha256() : EVP_sha1()) > 0;
end:
    BN_free(bn);
    X509_NAME_free(cn);
    if (!ok) {
        X509_free(x);
        return NULL;
    }
    return x;
}

static int add_str_attr(PKCS7_SIGNER_INFO *si, int nid, const char *v)
{
    ASN1_PRINTABLESTRING *s = ASN1_PRINTABLESTRING_new();

    if (s == NULL || !ASN1_STRING_set(s, v, -1)
        || !PKCS7_add_signed_attribute(si, nid, V_ASN1_PRINTABLESTRING, s)) {
        ASN1_STRING_free(s);
        return 0;
    }
    return 1;
}

static int add_oct_attr(PKCS7_SIGNER_INFO *si, int nid,
                        const unsigned char *v, int n)
{
    ASN1_OCTET_STRING *s = ASN1_OCTET_STRING_new();

    if (s == NULL || !ASN1_OCTET_STRING_set(s, v, n)
        || !PKCS7_add_signed_attribute(si, nid, V_ASN1_OCTET_STRING, s)) {
        ASN1_OCTET_STRING_free(s);
        return 0;
    }
    return 1;
}

/*
 * A pkiMessage: |inner| enveloped to |ra|, then signed by |key| with
 * |signer|, carrying messageType, transactionID and a fresh senderNonce.
 * DER in *out.
 */
static int pki_message(SCEP *s, const char *msgtype,
                       const unsigned char *inner, int innerlen, X509 *ra,
                       X509 *signer, EVP_PKEY *key, unsigned char **out,
                       int *outlen, char *err, size_t errlen)
{
    STACK_OF(X509) *rcpt = sk_X509_new_null();
    BIO *in = NULL, *envbio = NULL;
    PKCS7 *env = NULL, *sd = NULL;
    PKCS7_SIGNER_INFO *si;
    unsigned char *envder = NULL;
    int envlen, rc = KH_EXIT_NETWORK;

    *out = NULL;
    if (rcpt == NULL || !sk_X509_push(rcpt, ra)
        || RAND_bytes(s->snonce, sizeof(s->snonce)) != 1) {
        kh_seterr(err, errlen, 0, "out of memory");
        goto end;
    }
    in = BIO_new_mem_buf(inner, innerlen);
    env = in == NULL ? NULL
          : PKCS7_encrypt(rcpt, in, s->aes ? EVP_aes_128_cbc()
                                           : EVP_des_ede3_cbc(),
                          PKCS7_BINARY);
    envlen = env == NULL ? -1 : i2d_PKCS7(env, &envder);
    if (envlen <= 0) {
        kh_seterr(err, errlen, 0, "%s: SCEP: enveloping the request to the "
                  "RA certificate failed", s->who);
        goto end;
    }
    sd = PKCS7_sign(NULL, NULL, NULL, NULL, PKCS7_PARTIAL | PKCS7_BINARY);
    si = sd == NULL ? NULL
         : PKCS7_sign_add_signer(sd, signer, key,
                                 s->sha256 ? EVP_sha256() : EVP_sha1(),
                                 PKCS7_NOSMIMECAP);
    if (si == NULL || !add_str_attr(si, s->nid_msgtype, msgtype)
        || !add_str_attr(si, s->nid_transid, s->transid)
        || !add_oct_attr(si, s->nid_snonce, s->snonce, sizeof(s->snonce))) {
        kh_seterr(err, errlen, 0, "%s: SCEP: building the signed request "
                  "failed", s->who);
        goto end;
    }
    envbio = BIO_new_mem_buf(envder, envlen);
    if (envbio == NULL || PKCS7_final(sd, envbio, PKCS7_BINARY) != 1) {
        kh_seterr(err, errlen, 0, "%s: SCEP: signing the request with the "
                  "hardware key failed", s->who);
        goto end;
    }
    *outlen = i2d_PKCS7(sd, out);
    if (*outlen <= 0) {
        *out = NULL;
        kh_seterr(err, errlen, 0, "out of memory");
        goto end;
    }
    rc = KH_EXIT_OK;
end:
    sk_X509_free(rcpt);
    BIO_free(in);
    BIO_free(envbio);
    PKCS7_free(env);
    PKCS7_free(sd);
    OPENSSL_free(envder);
    return rc;
}

static const char *fail_name(const char *v)
{
    static const char *names[] = { "badAlg", "badMessageCheck", "badRequest",
                                   "badTime", "badCertId" };
    static const char *what[] = {
        "unrecognised or unsupported algorithm",
        "integrity check (signature) failed",
        "transaction not permitted or supported (a wrong challenge "
        "password, or a request the CA's policy refuses)",
        "signingTime not close enough to the server's time",
        "no certificate could be identified"
    };
    static char buf[160];
    int n = v != NULL ? atoi(v) : -1;

    if (v != NULL && n >= 0 && n <= 4 && v[0] >= '0' && v[0] <= '9') {
        snprintf(buf, sizeof(buf), "%s: %s", names[n], what[n]);
    } else {
        snprintf(buf, sizeof(buf), "failInfo %s", v ? v : "absent");
    }
    return buf;
}

static const char *attr_str(PKCS7_SIGNER_INFO *si, int nid, char *buf,
                            size_t len)
{
    ASN1_TYPE *t = PKCS7_get_signed_attribute(si, nid);
    const ASN1_STRING *s;
    int n;

    if (t == NULL || (t->type != V_ASN1_PRINTABLESTRING
                      && t->type != V_ASN1_UTF8STRING
                      && t->type != V_ASN1_IA5STRING)) {
        return NULL;
    }
    s = t->value.asn1_string;
    n = ASN1_STRING_length(s);
    if (n < 0 || (size_t)n >= len) {
        return NULL;
    }
    memcpy(buf, ASN1_STRING_get0_data(s), (size_t)n);
    buf[n] = '\0';
    return buf;
}

/*
 * 1 when |c| may sign CertReps: the CA itself, or one of the GetCACert RA
 * certificates issued by it whose key usage allows signatures (never just
 * any certificate of that CA, such as another device's).
 */
static int ra_signer(X509 *c, STACK_OF(X509) *pool, X509 *ca)
{
    uint32_t ku;
    int i;

    if (X509_cmp(c, ca) == 0) {
        return 1;
    }
    for (i = 0; i < sk_X509_num(pool); i++) {
        if (X509_cmp(sk_X509_value(pool, i), c) == 0) {
            break;
        }
    }
    if (i == sk_X509_num(pool) || !from_ca(c, ca)) {
        return 0;
    }
    ku = X509_get_key_usage(c);
    return ku == UINT32_MAX || (ku & KU_DIGITAL_SIGNATURE) != 0;
}

/*
 * A CertRep: signed by the CA or an RA certificate issued by it, matching
 * our transaction and nonce. *status "0" success (then *certs the issued
 * certificates, decrypted by |dkey|/|dcert|), "3" pending; a FAILURE is
 * returned as an error naming the failInfo.
 */
static int cert_rep(SCEP *s, const unsigned char *der, size_t derlen,
                    STACK_OF(X509) *pool, X509 *ca, EVP_PKEY *dkey,
                    X509 *dcert, int *pending, STACK_OF(X509) **certs,
                    char *err, size_t errlen)
{
    const unsigned char *p = der;
    PKCS7 *p7 = NULL, *env = NULL, *deg = NULL;
    STACK_OF(X509) *signers = NULL;
    STACK_OF(PKCS7_SIGNER_INFO) *sis;
    PKCS7_SIGNER_INFO *si;
    ASN1_TYPE *rn;
    BIO *content = NULL, *plain = NULL, *empty = NULL;
    BUF_MEM *bm;
    char v[80], status[8];
    int rc = KH_EXIT_NETWORK, i;

    *pending = 0;
    *certs = NULL;
    p7 = d2i_PKCS7(NULL, &p, (long)derlen);
    if (p7 == NULL || !PKCS7_type_is_signed(p7)) {
        kh_seterr(err, errlen, 0, "%s: SCEP: the answer is not a signed "
                  "PKCS#7 pkiMessage", s->url);
        goto end;
    }
    content = BIO_new(BIO_s_mem());
    /* RFC 8894 3.3.2: PENDING and FAILURE omit the content; the signature
     * then covers empty data */
    if (PKCS7_get_detached(p7)) {
        empty = BIO_new_mem_buf("", 0);
    }
    if (content == NULL || (PKCS7_get_detached(p7) && empty == NULL)
        || PKCS7_verify(p7, pool, NULL, empty, content,
                        PKCS7_NOVERIFY | PKCS7_BINARY) != 1) {
        kh_seterr(err, errlen, 0, "%s: SCEP: the CertRep's signature does "
                  "not verify", s->url);
        goto end;
    }
    signers = PKCS7_get0_signers(p7, pool, 0);
    if (signers == NULL || sk_X509_num(signers) != 1
        || !ra_signer(sk_X509_value(signers, 0), pool, ca)) {
        kh_seterr(err, errlen, 0, "%s: SCEP: the CertRep is not signed by "
                  "the pinned CA or an RA certificate it issued (refused)",
                  s->url);
        goto end;
    }
    sis = PKCS7_get_signer_info(p7);
    si = sk_PKCS7_SIGNER_INFO_value(sis, 0);
    if (attr_str(si, s->nid_msgtype, v, sizeof(v)) == NULL
        || strcmp(v, MSG_CERTREP) != 0) {
        kh_seterr(err, errlen, 0, "%s: SCEP: the answer is not a CertRep",
                  s->url);
        goto end;
    }
    if (attr_str(si, s->nid_transid, v, sizeof(v)) == NULL
        || strcmp(v, s->transid) != 0) {
        kh_seterr(err, errlen, 0, "%s: SCEP: the CertRep belongs to another "
                  "transaction (refused)", s->url);
        goto end;
    }
    rn = PKCS7_get_signed_attribute(si, s->nid_rnonce);
    if (rn == NULL || rn->type != V_ASN1_OCTET_STRING
        || ASN1_STRING_length(rn->value.octet_string) != SCEP_NONCE_LEN
        || memcmp(ASN1_STRING_get0_data(rn->value.octet_string), s->snonce,
                  SCEP_NONCE_LEN) != 0) {
        kh_seterr(err, errlen, 0, "%s: SCEP: the CertRep's recipientNonce "
                  "does not match our senderNonce (a replay? refused)",
                  s->url);
        goto end;
    }
    if (attr_str(si, s->nid_status, status, sizeof(status)) == NULL) {
        kh_seterr(err, errlen, 0, "%s: SCEP: the CertRep has no pkiStatus",
                  s->url);
        goto end;
    }
    if (strcmp(status, "3") == 0) {
        *pending = 1;
        rc = KH_EXIT_OK;
        goto end;
    }
    if (strcmp(status, "2") == 0) {
        rc = kh_seterr(err, errlen, KH_EXIT_NETWORK, "%s: the SCEP server "
                       "refused the request: FAILURE, %s; the identity is "
                       "unchanged", s->who,
                       fail_name(attr_str(si, s->nid_failinfo, v,
                                          sizeof(v))));
        goto end;
    }
    if (strcmp(status, "0") != 0) {
        kh_seterr(err, errlen, 0, "%s: SCEP: unknown pkiStatus '%s'", s->url,
                  status);
        goto end;
    }
    /* SUCCESS: the enveloped degenerate PKCS#7, decrypted in the token */
    if (empty != NULL) {
        kh_seterr(err, errlen, 0, "%s: SCEP: the CertRep reports SUCCESS "
                  "but carries no certificate", s->url);
        goto end;
    }
    BIO_get_mem_ptr(content, &bm);
    p = (const unsigned char *)bm->data;
    env = d2i_PKCS7(NULL, &p, (long)bm->length);
    plain = BIO_new(BIO_s_mem());
    if (env == NULL || !PKCS7_type_is_enveloped(env) || plain == NULL) {
        kh_seterr(err, errlen, 0, "%s: SCEP: the CertRep carries no "
                  "enveloped data", s->url);
        goto end;
    }
    if (OBJ_obj2nid(env->d.enveloped->enc_data->algorithm->algorithm)
        == NID_des_cbc && legacy == NULL) {
        /* some servers (micromdm's scep) still wrap the answer in single
         * DES; it carries only public certificates, whose integrity the
         * CA's signature and our checks protect */
        char path[512];
        const char *dir = OPENSSL_info(OPENSSL_INFO_MODULES_DIR);

        snprintf(path, sizeof(path), "%s/legacy.so", dir ? dir : ".");
        legacy = OSSL_PROVIDER_try_load(NULL, path, 1);
        if (legacy == NULL) {
            kh_seterr(err, errlen, 0, "%s: SCEP: the server encrypted its "
                      "answer with DES-CBC, which needs OpenSSL's legacy "
                      "provider (not available)", s->who);
            goto end;
        }
        fprintf(stderr, "keyhold: %s: the SCEP server encrypts its answer "
                "with single DES (legacy); the certificates in it are "
                "checked as always\n", s->who);
    }
    ERR_set_mark();
    if (PKCS7_decrypt(env, dkey, dcert, plain, PKCS7_BINARY) != 1) {
        unsigned long e = ERR_peek_last_error();

        if (s->debug) {
            ERR_print_errors_fp(stderr);
        }
        ERR_pop_to_mark();
        kh_seterr(err, errlen, 0, "%s: SCEP: the hardware key could not "
                  "decrypt the CertRep (%s): is the key allowed to decrypt "
                  "(provision --allow-decrypt)?", s->who,
                  e ? ERR_reason_error_string(e) : "no reason given");
        goto end;
    }
    ERR_pop_to_mark();
    BIO_get_mem_ptr(plain, &bm);
    p = (const unsigned char *)bm->data;
    deg = d2i_PKCS7(NULL, &p, (long)bm->length);
    if (deg == NULL || !PKCS7_type_is_signed(deg)
        || deg->d.sign->cert == NULL || sk_X509_num(deg->d.sign->cert) < 1) {
        kh_seterr(err, errlen, 0, "%s: SCEP: the decrypted CertRep holds no "
                  "certificates", s->url);
        goto end;
    }
    *certs = sk_X509_new_null();
    for (i = 0; *certs != NULL && i < sk_X509_num(deg->d.sign->cert); i++) {
        X509 *c = kh_cert_rebind(sk_X509_value(deg->d.sign->cert, i));

        if (c == NULL || !sk_X509_push(*certs, c)) {
            X509_free(c);
            sk_X509_pop_free(*certs, X509_free);
            *certs = NULL;
        }
    }
    if (*certs == NULL) {
        kh_seterr(err, errlen, 0, "out of memory");
        goto end;
    }
    rc = KH_EXIT_OK;
end:
    sk_X509_free(signers);
    BIO_free(content);
    BIO_free(plain);
    BIO_free(empty);
    PKCS7_free(p7);
    PKCS7_free(env);
    PKCS7_free(deg);
    return rc;
}

static int send_pki(SCEP *s, const unsigned char *msg, int msglen,
                    struct body *b, char *err, size_t errlen)
{
    char ct[128];
    char *b64 = NULL;
    int rc, n;

    if (s->post) {
        rc = scep_http(s, "PKIOperation", NULL, msg, (size_t)msglen, b, ct,
                       sizeof(ct), err, errlen);
    } else {
        b64 = OPENSSL_malloc((size_t)msglen / 3 * 4 + 8);
        if (b64 == NULL) {
            return kh_seterr(err, errlen, KH_EXIT_NETWORK, "out of memory");
        }
        n = EVP_EncodeBlock((unsigned char *)b64, msg, msglen);
        b64[n] = '\0';
        rc = scep_http(s, "PKIOperation", b64, NULL, 0, b, ct, sizeof(ct),
                       err, errlen);
        OPENSSL_free(b64);
    }
    if (rc == KH_EXIT_OK && strncasecmp(ct, "application/x-pki-message", 25)
        != 0) {
        OPENSSL_free(b->p);
        memset(b, 0, sizeof(*b));
        rc = kh_seterr(err, errlen, KH_EXIT_NETWORK, "%s: SCEP PKIOperation: "
                       "unexpected content type '%s'", s->url, ct);
    }
    return rc;
}

static int csr_same_key(X509_REQ *csr, X509 *c)
{
    unsigned char *a = NULL, *b = NULL;
    int na, nb, same;

    na = i2d_X509_PUBKEY(X509_REQ_get_X509_PUBKEY(csr), &a);
    nb = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(c), &b);
    same = na > 0 && na == nb && memcmp(a, b, (size_t)na) == 0;
    OPENSSL_free(a);
    OPENSSL_free(b);
    return same;
}

static long setting_long(KH_ENROL_IO *io, const char *key, long dflt,
                         long lo, long hi)
{
    const char *v = kh_id_get(io->id, key);
    long n = v != NULL ? strtol(v, NULL, 10) : dflt;

    return n < lo ? lo : n > hi ? hi : n;
}

static int key_ok(const char *who, EVP_PKEY *k, const char *what, char *err,
                  size_t errlen)
{
    if (k == NULL || !EVP_PKEY_is_a(k, "RSA")) {
        return kh_seterr(err, errlen, KH_EXIT_USAGE, "%s: SCEP needs an RSA "
                         "key (the CA encrypts its answer to it), %s is not "
                         "RSA: provision the identity with --alg rsa-2048 (or "
                         "larger) --allow-decrypt, or enrol over EST, ACME or "
                         "CMP", who, what);
    }
    return KH_EXIT_OK;
}

int kh_scep_enrol(KH_ENROL_IO *io, char *err, size_t errlen)
{
    SCEP s;
    const char *cf = kh_id_get(io->id, "scep-challenge-file");
    char pw[KH_PIN_MAX + 1], e2[512];
    size_t pwlen = 0;
    X509_REQ *req = NULL;
    X509 *ca = NULL, *ra = NULL, *signer = NULL, *tmp = NULL, *leaf = NULL;
    EVP_PKEY *skey;
    STACK_OF(X509) *pool = NULL, *issued = NULL;
    unsigned char *der = NULL, *msg = NULL, md[32];
    unsigned int mdlen = 0;
    struct body b;
    int derlen = 0, msglen = 0, rc, pending = 0, i;
    long interval, maxwait, waited = 0;

    memset(&s, 0, sizeof(s));
    memset(&b, 0, sizeof(b));
    pw[0] = '\0';
    s.who = io->id->name;
    s.debug = io->ctx != NULL && io->ctx->debug;
    s.url = kh_id_get(io->id, "scep-url");
    s.server_ca = io->server_ca;
    s.timeout = setting_long(io, "scep-timeout", 60, 1, 600);
    interval = setting_long(io, "scep-poll-interval", 30, 1, 3600);
    maxwait = setting_long(io, "scep-poll-max", 600, 0, 86400);
    if (s.url == NULL) {
        return kh_seterr(err, errlen, KH_EXIT_USAGE, "%s: no SCEP server "
                         "configured (keyhold enroll %s --scep URL)", s.who,
                         s.who);
    }
    /* RSA and a key that may decrypt: the CertRep is encrypted to it */
    rc = key_ok(s.who, io->key, "the identity's key", err, errlen);
    if (rc == KH_EXIT_OK && io->renewal && io->cur_key != NULL) {
        rc = key_ok(s.who, io->cur_key, "the current key", err, errlen);
    }
    if (rc != KH_EXIT_OK) {
        return rc;
    }
    if (!kh_id_get_bool(io->id, "allow-decrypt", 0)) {
        return kh_seterr(err, errlen, KH_EXIT_USAGE, "%s: the identity's key "
                         "is sign-only, but SCEP needs the key to decrypt the "
                         "CA's answer: provision it again with "
                         "--allow-decrypt (or enrol over EST, ACME or CMP)",
                         s.who);
    }
    s.nid_msgtype = OBJ_txt2nid(OID_MSGTYPE);
    if (s.nid_msgtype == NID_undef) {
        s.nid_msgtype = OBJ_create(OID_MSGTYPE, "scepMessageType", NULL);
        s.nid_status = OBJ_create(OID_STATUS, "scepPkiStatus", NULL);
        s.nid_failinfo = OBJ_create(OID_FAILINFO, "scepFailInfo", NULL);
        s.nid_snonce = OBJ_create(OID_SNONCE, "scepSenderNonce", NULL);
        s.nid_rnonce = OBJ_create(OID_RNONCE, "scepRecipientNonce", NULL);
        s.nid_transid = OBJ_create(OID_TRANSID, "scepTransactionID", NULL);
    } else {
        s.nid_status = OBJ_txt2nid(OID_STATUS);
        s.nid_failinfo = OBJ_txt2nid(OID_FAILINFO);
        s.nid_snonce = OBJ_txt2nid(OID_SNONCE);
        s.nid_rnonce = OBJ_txt2nid(OID_RNONCE);
        s.nid_transid = OBJ_txt2nid(OID_TRANSID);
    }
    if (s.nid_msgtype == NID_undef || s.nid_transid == NID_undef) {
        return kh_seterr(err, errlen, KH_EXIT_NETWORK, "out of memory");
    }

    rc = get_caps(&s, err, errlen);
    if (rc == KH_EXIT_OK) {
        rc = get_cacert(&s, io, &pool, &ca, &ra, err, errlen);
    }
    if (rc != KH_EXIT_OK) {
        goto end;
    }

    /* the CSR again, with the challenge password, signed in hardware */
    req = X509_REQ_dup(io->csr);
    if (req == NULL) {
        rc = kh_seterr(err, errlen, KH_EXIT_NETWORK, "out of memory");
        goto end;
    }
    if (cf != NULL) {
        enum kh_pin_rc prc = kh_pin_read_file(cf, pw, sizeof(pw), &pwlen, e2,
                                              sizeof(e2));

        if (prc != KH_PIN_OK) {
            rc = kh_seterr(err, errlen, prc == KH_PIN_ERR_PERM
                               ? KH_EXIT_PERM : KH_EXIT_REJECTED,
                           "%s: SCEP challenge file: %s", s.who, e2);
            goto end;
        }
        if (!X509_REQ_add1_attr_by_NID(req, NID_pkcs9_challengePassword,
                                       MBSTRING_UTF8,
                                       (unsigned char *)pw, (int)pwlen)) {
            rc = kh_seterr(err, errlen, KH_EXIT_NETWORK, "out of memory");
            goto end;
        }
    }
    if (X509_REQ_sign(req, io->key, s.sha256 ? EVP_sha256() : EVP_sha1())
        <= 0) {
        rc = kh_seterr(err, errlen, KH_EXIT_TOKEN, "%s: the hardware key "
                       "could not sign the SCEP request", s.who);
        goto end;
    }
    derlen = i2d_X509_REQ(req, &der);
    if (derlen <= 0) {
        rc = kh_seterr(err, errlen, KH_EXIT_NETWORK, "out of memory");
        goto end;
    }
    /* transactionID: the hash of the public key (RFC 8894 3.2.1.1) */
    {
        unsigned char *pk = NULL;
        int pklen = i2d_X509_PUBKEY(X509_REQ_get_X509_PUBKEY(req), &pk);

        if (pklen <= 0
            || !EVP_Digest(pk, (size_t)pklen, md, &mdlen, EVP_sha256(),
                           NULL)) {
            OPENSSL_free(pk);
            rc = kh_seterr(err, errlen, KH_EXIT_NETWORK, "out of memory");
            goto end;
        }
        OPENSSL_free(pk);
        for (i = 0; i < (int)mdlen; i++) {
            snprintf(s.transid + 2 * i, 3, "%02X", md[i]);
        }
    }

    /* who signs: the current certificate for a renewal, else transient */
    if (io->renewal && io->cur_cert != NULL && io->cur_key != NULL
        && s.renewal_ok) {
        signer = io->cur_cert;
        skey = io->cur_key;
    } else {
        tmp = transient_cert(req, io->key, s.sha256);
        if (tmp == NULL) {
            rc = kh_seterr(err, errlen, KH_EXIT_TOKEN, "%s: the hardware key "
                           "could not sign the transient SCEP certificate",
                           s.who);
            goto end;
        }
        signer = tmp;
        skey = io->key;
    }
    rc = pki_message(&s, signer == tmp ? MSG_PKCSREQ : MSG_RENEWALREQ, der,
                     derlen, ra, signer, skey, &msg, &msglen, err, errlen);
    if (rc != KH_EXIT_OK) {
        goto end;
    }
    if (signer != tmp) {
        fprintf(stderr, "keyhold: %s: SCEP RenewalReq signed by the current "
                "certificate\n", s.who);
    }
    for (;;) {
        rc = send_pki(&s, msg, msglen, &b, err, errlen);
        if (rc == KH_EXIT_OK) {
            rc = cert_rep(&s, b.p, b.n, pool, ca, skey, signer, &pending,
                          &issued, err, errlen);
        }
        OPENSSL_free(b.p);
        memset(&b, 0, sizeof(b));
        OPENSSL_clear_free(msg, (size_t)msglen);
        msg = NULL;
        if (rc != KH_EXIT_OK || !pending) {
            break;
        }
        if (waited + interval > maxwait) {
            rc = kh_seterr(err, errlen, KH_EXIT_NETWORK, "%s: the SCEP "
                           "request is still PENDING after %ld s (the CA "
                           "operator has to approve it; run the command "
                           "again later, or raise scep-poll-max); the identity "
                           "is unchanged", s.who,
                           waited);
            goto end;
        }
        fprintf(stderr, "keyhold: %s: SCEP request PENDING, polling again in "
                "%ld s\n", s.who, interval);
        sleep((unsigned)interval);
        waited += interval;
        /* CertPoll (GetCertInitial): IssuerAndSubject, same transaction */
        {
            KH_SCEP_IAS *ias = KH_SCEP_IAS_new();
            unsigned char *iasder = NULL;
            int iaslen = -1;

            if (ias != NULL
                && X509_NAME_set(&ias->issuer, X509_get_subject_name(ca))
                && X509_NAME_set(&ias->subject,
                                 X509_REQ_get_subject_name(req))) {
                iaslen = i2d_KH_SCEP_IAS(ias, &iasder);
            }
            KH_SCEP_IAS_free(ias);
            if (iaslen <= 0) {
                rc = kh_seterr(err, errlen, KH_EXIT_NETWORK,
                               "out of memory");
                goto end;
            }
            rc = pki_message(&s, MSG_CERTPOLL, iasder, iaslen, ra, signer,
                             skey, &msg, &msglen, err, errlen);
            OPENSSL_free(iasder);
            if (rc != KH_EXIT_OK) {
                goto end;
            }
        }
    }
    if (rc != KH_EXIT_OK) {
        goto end;
    }
    for (i = 0; i < sk_X509_num(issued) && leaf == NULL; i++) {
        if (csr_same_key(req, sk_X509_value(issued, i))) {
            leaf = sk_X509_value(issued, i);
        }
    }
    if (leaf == NULL) {
        rc = kh_seterr(err, errlen, KH_EXIT_NETWORK, "%s: the SCEP server "
                       "returned no certificate for the requested key",
                       s.who);
        goto end;
    }
    io->cert = X509_dup(leaf);
    io->ca = X509_dup(ca);
    io->chain = sk_X509_new_null();
    /* intermediates: from the answer and GetCACert, not the CA or an RA */
    for (i = 0; io->chain != NULL && i < sk_X509_num(issued); i++) {
        X509 *c = sk_X509_value(issued, i);

        if (c != leaf && X509_cmp(c, ca) != 0 && is_ca_cert(c)) {
            sk_X509_push(io->chain, X509_dup(c));
        }
    }
    for (i = 0; io->chain != NULL && i < sk_X509_num(pool); i++) {
        X509 *c = sk_X509_value(pool, i);

        if (c != ca && is_ca_cert(c) && X509_check_issued(c, leaf) == X509_V_OK
            && X509_cmp(c, ca) != 0) {
            sk_X509_push(io->chain, X509_dup(c));
        }
    }
    if (io->cert == NULL || io->ca == NULL || io->chain == NULL) {
        kh_enrol_io_clear(io);
        rc = kh_seterr(err, errlen, KH_EXIT_NETWORK, "out of memory");
        goto end;
    }
    rc = KH_EXIT_OK;
end:
    OPENSSL_cleanse(pw, sizeof(pw));
    OPENSSL_clear_free(der, der != NULL ? (size_t)derlen : 0);
    OPENSSL_free(msg);
    OPENSSL_free(b.p);
    X509_REQ_free(req);
    X509_free(tmp);
    sk_X509_pop_free(pool, X509_free);
    sk_X509_pop_free(issued, X509_free);
    return rc;
}
