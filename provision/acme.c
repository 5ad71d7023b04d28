/* SPDX-License-Identifier: MIT */
/*
 * ACME (RFC 8555) enrolment for keyhold: directory, nonces, account,
 * order, http-01 validation, finalize with the hardware-signed CSR, polling
 * with Retry-After, chain download. The account key lives in hardware like
 * every other keyhold key: each JWS (ES256, ES384 or RS256) is signed by
 * the keyhold provider; ECDSA's DER signature is turned into JOSE's raw
 * r||s. The protocol-neutral part (est_run.c) does the CSR, every check,
 * the install, the hooks and the rollback.
 *
 * Settings (identity config, stored by `keyhold enroll --acme ...`):
 *   acme-url              the directory URL (https)
 *   acme-challenge        http-01 (default) | tls-alpn-01
 *   acme-challenge-port   where the http-01 listener binds (default 80)
 *   acme-challenge-address  bind address (default: every address)
 *   acme-webroot          write tokens there instead of listening
 *   acme-account          identity whose hardware key is the account key
 *                         (default: this identity's key)
 *   acme-eab-kid, acme-eab-hmac-file   external account binding
 *   acme-contact          mailto:... (repeatable)
 *   acme-poll-max         seconds to wait for validation / issuance (120)
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <curl/curl.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rsa.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "keyhold.h"
#include "http.h"
#include "acme.h"
#include "acme_chal.h"

#define ACME_URL_MAX 1024
#define ACME_BODY_MAX (256 * 1024)
#define ACME_NONCE_TRIES 10

typedef struct acme_resp {
    long status;
    char ctype[128];
    char retry_after[64];
    char location[ACME_URL_MAX];
    char nonce[256];
    unsigned char *body;
    size_t len;
    int too_big;
} ACME_RESP;

typedef struct acme {
    KH_CTX *ctx;
    const char *who;
    const char *server_ca;
    long timeout;
    long poll_max;
    char new_nonce[ACME_URL_MAX];
    char new_account[ACME_URL_MAX];
    char new_order[ACME_URL_MAX];
    int eab_required;
    char nonce[256];
    char kid[ACME_URL_MAX];
    EVP_PKEY *akey;                 /* account key (hardware), borrowed */
    const char *alg;                /* ES256 | ES384 | RS256 */
    const char *md;
    int clen;                       /* ECDSA coordinate length, 0 for RSA */
    char jwk[1200];
    char thumb[64];
    int own_key;                    /* akey is the certificate's key */
} ACME;

/* ------------------------------------------------------------------ */
/* HTTP: libcurl like http.c, plus the headers ACME lives on */

static size_t on_body(char *p, size_t sz, size_t n, void *u)
{
    ACME_RESP *r = u;

    return kh_http_body_append(&r->body, &r->len, ACME_BODY_MAX, p, sz * n,
                               &r->too_big);
}

static void keep_header(const char *line, size_t len, const char *name,
                        char *out, size_t outlen)
{
    size_t nl = strlen(name);

    if (len <= nl + 1 || strncasecmp(line, name, nl) != 0 || line[nl] != ':') {
        return;
    }
    line += nl + 1;
    len -= nl + 1;
    while (len > 0 && (*line == ' ' || *line == '\t')) {
        line++;
        len--;
    }
    while (len > 0 && isspace((unsigned char)line[len - 1])) {
        len--;
    }
    if (len >= outlen) {
        len = outlen - 1;   /* a longer value is malformed anyway */
    }
    memcpy(out, line, len);
    out[len] = '\0';
}

static size_t on_header(char *p, size_t sz, size_t n, void *u)
{
    ACME_RESP *r = u;
    size_t len = sz * n;

    if (len > 5 && strncmp(p, "HTTP/", 5) == 0) {
        r->ctype[0] = r->retry_after[0] = r->location[0] = '\0';
        return len;
    }
    keep_header(p, len, "Content-Type", r->ctype, sizeof(r->ctype));
    keep_header(p, len, "Retry-After", r->retry_after,
                sizeof(r->retry_after));
    keep_header(p, len, "Location", r->location, sizeof(r->location));
    keep_header(p, len, "Replay-Nonce", r->nonce, sizeof(r->nonce));
    return len;
}

static CURLcode on_ssl_ctx(CURL *c, void *sslctx, void *u)
{
    SSL_CTX_set_min_proto_version((SSL_CTX *)sslctx, TLS1_2_VERSION);
    return CURLE_OK;
}

static void resp_clear(ACME_RESP *r)
{
    OPENSSL_free(r->body);
    memset(r, 0, sizeof(*r));
}

/* One request; KH_EXIT_OK when a response arrived. Keeps the nonce. */
static int http(ACME *a, const char *method, const char *url,
                const char *body, const char *accept, ACME_RESP *r,
                char *err, size_t errlen)
{
    char ebuf[CURL_ERROR_SIZE] = "", hb[160];
    struct curl_slist *hdr = NULL;
    CURLcode cc;
    CURL *c;
    int rc = KH_EXIT_NETWORK;

    memset(r, 0, sizeof(*r));
    if (strncasecmp(url, "https://", 8) != 0) {
        return kh_seterr(err, errlen, KH_EXIT_NETWORK, "%s: ACME needs "
                         "https:// URLs", url);
    }
    if (!kh_http_backend_ok(err, errlen)) {
        return KH_EXIT_NETWORK;
    }
    c = kh_http_curl_new("https", a->timeout < 10 ? a->timeout : 10L,
                         a->timeout, (curl_off_t)ACME_BODY_MAX, a->server_ca,
                         ebuf, err, errlen);
    if (c == NULL) {
        return KH_EXIT_NETWORK;
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(c, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
    curl_easy_setopt(c, CURLOPT_SSL_CTX_FUNCTION, on_ssl_ctx);
    hdr = curl_slist_append(hdr, "Expect:");
    if (accept != NULL) {
        snprintf(hb, sizeof(hb), "Accept: %s", accept);
        hdr = curl_slist_append(hdr, hb);
    }
    if (strcmp(method, "POST") == 0) {
        hdr = curl_slist_append(hdr, "Content-Type: application/jose+json");
        curl_easy_setopt(c, CURLOPT_POST, 1L);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE,
                         (curl_off_t)strlen(body));
    } else if (strcmp(method, "HEAD") == 0) {
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    } else {
        curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr);
    cc = curl_easy_perform(c);
    if (cc != CURLE_OK) {
        if (r->too_big || cc == CURLE_FILESIZE_EXCEEDED) {
            kh_seterr(err, errlen, 0, "%s: response larger than %d bytes "
                      "(refused)", url, ACME_BODY_MAX);
        } else {
            kh_seterr(err, errlen, 0, "ACME server %s: %s%s%s", url,
                      curl_easy_strerror(cc), ebuf[0] ? ": " : "", ebuf);
        }
        resp_clear(r);
        goto end;
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    if (r->nonce[0] != '\0') {
        snprintf(a->nonce, sizeof(a->nonce), "%s", r->nonce);
    }
    rc = KH_EXIT_OK;
end:
    curl_slist_free_all(hdr);
    curl_easy_cleanup(c);
    return rc;
}

static KH_JSPAN body_span(const ACME_RESP *r)
{
    KH_JSPAN s = { (const char *)r->body, r->len };

    return s;
}

/* A non-2xx answer as one line: the problem document when there is one. */
static int http_error(ACME *a, const char *what, const ACME_RESP *r,
                      char *err, size_t errlen)
{
    char prob[900];

    if (kh_acme_problem((const char *)r->body, r->len, prob, sizeof(prob),
                        NULL, 0)) {
        return kh_seterr(err, errlen, KH_EXIT_NETWORK, "%s: ACME server "
                         "refused %s: %s", a->who, what, prob);
    }
    return kh_seterr(err, errlen, KH_EXIT_NETWORK, "%s: ACME server answered "
                     "%s with HTTP %ld", a->who, what, r->status);
}

/* ------------------------------------------------------------------ */
/* JOSE */

static int bn_b64(const BIGNUM *bn, int pad, char *out, size_t outlen)
{
    unsigned char buf[1024];
    int n = pad > 0 ? pad : BN_num_bytes(bn);

    if (n <= 0 || n > (int)sizeof(buf) || BN_bn2binpad(bn, buf, n) != n) {
        return 0;
    }
    return kh_acme_b64url(buf, (size_t)n, out, outlen) > 0;
}

/* JWK of the account key (members in RFC 7638 order) and its thumbprint. */
static int make_jwk(ACME *a, char *err, size_t errlen)
{
    unsigned char *der = NULL, dg[EVP_MAX_MD_SIZE];
    const unsigned char *pp;
    EVP_PKEY *pub = NULL;
    BIGNUM *x = NULL, *y = NULL, *n = NULL, *e = NULL;
    char bx[200], by[200], *bn = NULL, be[32], grp[64] = "";
    unsigned int dl = 0;
    int len, rc = KH_EXIT_REJECTED;

    /* the public half, through the provider's encoder, into the default
     * provider where its parameters can be read */
    len = i2d_PUBKEY(a->akey, &der);
    pp = der;
    if (len <= 0 || (pub = d2i_PUBKEY_ex(NULL, &pp, len, NULL,
                                         "provider=default")) == NULL) {
        rc = kh_seterr(err, errlen, KH_EXIT_TOKEN, "%s: the account key's "
                       "public key cannot be read", a->who);
        goto end;
    }
    if (EVP_PKEY_is_a(pub, "EC")) {
        EVP_PKEY_get_utf8_string_param(pub, OSSL_PKEY_PARAM_GROUP_NAME, grp,
                                       sizeof(grp), NULL);
        if (strcmp(grp, "prime256v1") == 0 || strcmp(grp, "P-256") == 0) {
            a->alg = "ES256";
            a->md = "SHA256";
            a->clen = 32;
            snprintf(grp, sizeof(grp), "P-256");
        } else if (strcmp(grp, "secp384r1") == 0
                   || strcmp(grp, "P-384") == 0) {
            a->alg = "ES384";
            a->md = "SHA384";
            a->clen = 48;
            snprintf(grp, sizeof(grp), "P-384");
        } else {
            rc = kh_seterr(err, errlen, KH_EXIT_REJECTED, "%s: account key "
                           "curve %s has no JWS algorithm (use P-256 or "
                           "P-384)", a->who, grp);
            goto end;
        }
        if (!EVP_PKEY_get_bn_param(pub, OSSL_PKEY_PARAM_EC_PUB_X, &x)
            || !EVP_PKEY_get_bn_param(pub, OSSL_PKEY_PARAM_EC_PUB_Y, &y)
            || !bn_b64(x, a->clen, bx, sizeof(bx))
            || !bn_b64(y, a->clen, by, sizeof(by))) {
            rc = kh_seterr(err, errlen, KH_EXIT_TOKEN, "%s: account key: no "
                           "EC point", a->who);
            goto end;
        }
        snprintf(a->jwk, sizeof(a->jwk), "{\"crv\":\"%s\",\"kty\":\"EC\","
                 "\"x\":\"%s\",\"y\":\"%s\"}", grp, bx, by);
    } else if (EVP_PKEY_is_a(pub, "RSA")) {
        a->alg = "RS256";
        a->md = "SHA256";
        a->clen = 0;
        bn = OPENSSL_malloc(1400);
        if (bn == NULL
            || !EVP_PKEY_get_bn_param(pub, OSSL_PKEY_PARAM_RSA_N, &n)
            || !EVP_PKEY_get_bn_param(pub, OSSL_PKEY_PARAM_RSA_E, &e)
            || BN_num_bytes(n) > 512 || !bn_b64(n, 0, bn, 1400)
            || !bn_b64(e, 0, be, sizeof(be))) {
            rc = kh_seterr(err, errlen, KH_EXIT_TOKEN, "%s: account key: no "
                           "RSA modulus", a->who);
            goto end;
        }
        snprintf(a->jwk, sizeof(a->jwk), "{\"e\":\"%s\",\"kty\":\"RSA\","
                 "\"n\":\"%s\"}", be, bn);
    } else {
        rc = kh_seterr(err, errlen, KH_EXIT_REJECTED, "%s: the account key "
                       "is neither EC nor RSA", a->who);
        goto end;
    }
    /* RFC 7638: SHA-256 over the required members, sorted, no blanks */
    if (!EVP_Digest(a->jwk, strlen(a->jwk), dg, &dl, EVP_sha256(), NULL)
        || kh_acme_b64url(dg, dl, a->thumb, sizeof(a->thumb)) == 0) {
        rc = kh_seterr(err, errlen, KH_EXIT_BROKEN, "%s: JWK thumbprint",
                       a->who);
        goto end;
    }
    rc = KH_EXIT_OK;
end:
    OPENSSL_free(der);
    OPENSSL_free(bn);
    EVP_PKEY_free(pub);
    BN_free(x);
    BN_free(y);
    BN_free(n);
    BN_free(e);
    return rc;
}

/* Signs |in| with the hardware account key: JOSE signature, base64url. */
static int jws_sign(ACME *a, const char *in, char *out, size_t outlen,
                    char *err, size_t errlen)
{
    EVP_MD_CTX *m = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pc = NULL;
    unsigned char *sig = NULL, raw[132];
    const unsigned char *pp;
    ECDSA_SIG *es = NULL;
    const BIGNUM *r, *s;
    size_t siglen = 0;
    int rc = KH_EXIT_TOKEN;

    if (m == NULL
        || EVP_DigestSignInit_ex(m, &pc, a->md, a->ctx->libctx, NULL,
                                 a->akey, NULL) != 1
        || (a->clen == 0 && EVP_PKEY_CTX_set_rsa_padding(pc,
                                                         RSA_PKCS1_PADDING)
                                != 1)
        || EVP_DigestSign(m, NULL, &siglen, (const unsigned char *)in,
                          strlen(in)) != 1
        || (sig = OPENSSL_malloc(siglen)) == NULL
        || EVP_DigestSign(m, sig, &siglen, (const unsigned char *)in,
                          strlen(in)) != 1) {
        char e2[KH_ERR_MAX];

        rc = kh_prov_map_errors("sign", e2, sizeof(e2));
        kh_seterr(err, errlen, rc, "%s: signing the ACME request with the "
                  "account key failed: %s", a->who, e2);
        goto end;
    }
    if (a->clen > 0) {
        /* JWS (RFC 7518 3.4): r || s, each padded to the curve size */
        pp = sig;
        es = d2i_ECDSA_SIG(NULL, &pp, (long)siglen);
        if (es == NULL) {
            rc = kh_seterr(err, errlen, KH_EXIT_TOKEN, "%s: the token's "
                           "ECDSA signature is not DER", a->who);
            goto end;
        }
        ECDSA_SIG_get0(es, &r, &s);
        if (BN_bn2binpad(r, raw, a->clen) != a->clen
            || BN_bn2binpad(s, raw + a->clen, a->clen) != a->clen
            || kh_acme_b64url(raw, (size_t)a->clen * 2, out, outlen) == 0) {
            rc = kh_seterr(err, errlen, KH_EXIT_TOKEN, "%s: ECDSA signature "
                           "out of range", a->who);
            goto end;
        }
    } else if (kh_acme_b64url(sig, siglen, out, outlen) == 0) {
        rc = kh_seterr(err, errlen, KH_EXIT_TOKEN, "%s: RSA signature too "
                       "long", a->who);
        goto end;
    }
    rc = KH_EXIT_OK;
end:
    ECDSA_SIG_free(es);
    OPENSSL_free(sig);
    EVP_MD_CTX_free(m);
    return rc;
}

/* Flattened JWS; |jwk_hdr|: "jwk" instead of "kid"; payload NULL:
 * POST-as-GET. The result is OPENSSL_malloc'd. */
static char *jws(ACME *a, const char *url, const char *payload,
                 int use_jwk, char *err, size_t errlen)
{
    size_t pl = payload != NULL ? strlen(payload) : 0;
    size_t cap = pl * 4 / 3 + 4096 + 2 * ACME_URL_MAX;
    char *prot = NULL, *pb = NULL, *pay = NULL, *in = NULL, *out = NULL;
    char sig[1100];
    int ok = 0;

    prot = OPENSSL_malloc(cap);
    pb = OPENSSL_malloc(cap);
    pay = OPENSSL_malloc(cap);
    in = OPENSSL_malloc(2 * cap);
    out = OPENSSL_malloc(3 * cap);
    if (prot == NULL || pb == NULL || pay == NULL || in == NULL
        || out == NULL) {
        kh_seterr(err, errlen, KH_EXIT_BROKEN, "out of memory");
        goto end;
    }
    if (use_jwk) {
        snprintf(prot, cap, "{\"alg\":\"%s\",\"jwk\":%s,\"nonce\":\"%s\","
                 "\"url\":\"%s\"}", a->alg, a->jwk, a->nonce, url);
    } else {
        snprintf(prot, cap, "{\"alg\":\"%s\",\"kid\":\"%s\",\"nonce\":\"%s\","
                 "\"url\":\"%s\"}", a->alg, a->kid, a->nonce, url);
    }
    pay[0] = '\0';
    if (kh_acme_b64url((const unsigned char *)prot, strlen(prot), pb, cap)
            == 0
        || (payload != NULL && pl > 0
            && kh_acme_b64url((const unsigned char *)payload, pl, pay, cap)
                   == 0)) {
        kh_seterr(err, errlen, KH_EXIT_BROKEN, "%s: ACME request too large",
                  a->who);
        goto end;
    }
    snprintf(in, 2 * cap, "%s.%s", pb, pay);
    if (jws_sign(a, in, sig, sizeof(sig), err, errlen) != KH_EXIT_OK) {
        goto end;
    }
    snprintf(out, 3 * cap, "{\"protected\":\"%s\",\"payload\":\"%s\","
             "\"signature\":\"%s\"}", pb, pay, sig);
    ok = 1;
end:
    OPENSSL_free(prot);
    OPENSSL_free(pb);
    OPENSSL_free(pay);
    OPENSSL_free(in);
    if (!ok) {
        OPENSSL_free(out);
        out = NULL;
    }
    return out;
}

static int get_nonce(ACME *a, char *err, size_t errlen)
{
    ACME_RESP r;
    int rc;

    a->nonce[0] = '\0';
    rc = http(a, "HEAD", a->new_nonce, NULL, NULL, &r, err, errlen);
    if (rc != KH_EXIT_OK) {
        return rc;
    }
    resp_clear(&r);
    if (a->nonce[0] == '\0') {
        return kh_seterr(err, errlen, KH_EXIT_NETWORK, "%s: the ACME server "
                         "gave no Replay-Nonce at %s", a->who, a->new_nonce);
    }
    return KH_EXIT_OK;
}

/*
 * A signed POST; retries with the fresh nonce the server sends along with
 * badNonce (RFC 8555 6.5). Non-2xx answers become err (the problem
 * document) unless |keep_errors|.
 */
static int post(ACME *a, const char *what, const char *url,
                const char *payload, int use_jwk, const char *accept,
                ACME_RESP *r, char *err, size_t errlen)
{
    char type[64], prob[900];
    char *body;
    int tries, rc = KH_EXIT_NETWORK;

    for (tries = 0; tries < ACME_NONCE_TRIES; tries++) {
        if (a->nonce[0] == '\0') {
            rc = get_nonce(a, err, errlen);
            if (rc != KH_EXIT_OK) {
                return rc;
            }
        }
        body = jws(a, url, payload, use_jwk, err, errlen);
        if (body == NULL) {
            return KH_EXIT_TOKEN;
        }
        a->nonce[0] = '\0';     /* each nonce is good for one request */
        rc = http(a, "POST", url, body, accept, r, err, errlen);
        OPENSSL_free(body);
        if (rc != KH_EXIT_OK) {
            return rc;
        }
        if (r->status >= 200 && r->status < 300) {
            return KH_EXIT_OK;
        }
        if (kh_acme_problem((const char *)r->body, r->len, prob,
                            sizeof(prob), type, sizeof(type))
            && strcmp(type, "badNonce") == 0) {
            kh_dbg(a->ctx, "%s: badNonce on %s, retrying", a->who, what);
            resp_clear(r);
            continue;
        }
        rc = http_error(a, what, r, err, errlen);
        resp_clear(r);
        return rc;
    }
    return kh_seterr(err, errlen, KH_EXIT_NETWORK, "%s: the ACME server "
                     "refused %d fresh nonces in a row for %s (badNonce)",
                     a->who, ACME_NONCE_TRIES, what);
}

/* ------------------------------------------------------------------ */
/* the order */

static int directory(ACME *a, const char *url, char *err, size_t errlen)
{
    KH_JSPAN meta, v;
    ACME_RESP r;
    int rc;

    rc = http(a, "GET", url, NULL, "application/json", &r, err, errlen);
    if (rc != KH_EXIT_OK) {
        return rc;
    }
    if (r.status != 200) {
        rc = http_error(a, "the directory request", &r, err, errlen);
        goto end;
    }
    if (!kh_acme_json_getstr(body_span(&r), "newNonce", a->new_nonce,
                             sizeof(a->new_nonce))
        || !kh_acme_json_getstr(body_span(&r), "newAccount", a->new_account,
                                sizeof(a->new_account))
        || !kh_acme_json_getstr(body_span(&r), "newOrder", a->new_order,
                                sizeof(a->new_order))) {
        rc = kh_seterr(err, errlen, KH_EXIT_NETWORK, "%s: %s is not an ACME "
                       "directory (no newNonce/newAccount/newOrder; check "
                       "the URL)", a->who, url);
        goto end;
    }
    if (kh_acme_json_get(body_span(&r), "meta", &meta)
        && kh_acme_json_get(meta, "externalAccountRequired", &v)
        && v.n == 4 && memcmp(v.p, "true", 4) == 0) {
        a->eab_required = 1;
    }
    rc = KH_EXIT_OK;
end:
    resp_clear(&r);
    return rc;
}

/* RFC 8555 7.3.4: the account's JWK, MACed with the CA-given key. */
static int eab(ACME *a, const char *kid, const char *hmac_file, char *out,
               size_t outlen, char *err, size_t errlen)
{
    unsigned char key[256], mac[EVP_MAX_MD_SIZE];
    char raw[512], prot[1600], pb[2200], pay[1700], in[4000], sig[100];
    unsigned int ml = 0;
    long kl;
    size_t n;
    FILE *f;
    int rc = KH_EXIT_REJECTED;

    f = fopen(hmac_file, "re");
    if (f == NULL) {
        return kh_seterr(err, errlen, KH_EXIT_USAGE, "%s: EAB HMAC file %s "
                         "cannot be read", a->who, hmac_file);
    }
    n = fread(raw, 1, sizeof(raw) - 1, f);
    fclose(f);
    raw[n] = '\0';
    while (n > 0 && isspace((unsigned char)raw[n - 1])) {
        raw[--n] = '\0';
    }
    kl = kh_acme_b64url_decode(raw, key, sizeof(key));
    OPENSSL_cleanse(raw, sizeof(raw));
    if (kl <= 0) {
        rc = kh_seterr(err, errlen, KH_EXIT_REJECTED, "%s: EAB HMAC file %s "
                       "does not hold a base64url key", a->who, hmac_file);
        goto end;
    }
    snprintf(prot, sizeof(prot), "{\"alg\":\"HS256\",\"kid\":\"%s\","
             "\"url\":\"%s\"}", kid, a->new_account);
    if (kh_acme_b64url((const unsigned char *)prot, strlen(prot), pb,
                       sizeof(pb)) == 0
        || kh_acme_b64url((const unsigned char *)a->jwk, strlen(a->jwk), pay,
                          sizeof(pay)) == 0) {
        rc = kh_seterr(err, errlen, KH_EXIT_USAGE, "%s: EAB key id too "
                       "long", a->who);
        goto end;
    }
    snprintf(in, sizeof(in), "%s.%s", pb, pay);
    if (HMAC(EVP_sha256(), key, (int)kl, (const unsigned char *)in,
             strlen(in), mac, &ml) == NULL) {
        rc = kh_seterr(err, errlen, KH_EXIT_BROKEN, "%s: HMAC failed",
                       a->who);
        goto end;
    }
    kh_acme_b64url(mac, ml, sig, sizeof(sig));
    snprintf(out, outlen, "{\"protected\":\"%s\",\"payload\":\"%s\","
             "\"signature\":\"%s\"}", pb, pay, sig);
    rc = KH_EXIT_OK;
end:
    OPENSSL_cleanse(key, sizeof(key));
    OPENSSL_cleanse(mac, sizeof(mac));
    return rc;
}

static int account(ACME *a, const KH_IDENTITY *id, char *err, size_t errlen)
{
    const char *eab_kid = kh_id_get(id, "acme-eab-kid");
    const char *eab_file = kh_id_get(id, "acme-eab-hmac-file");
    char *payload = NULL, eabjws[5000] = "";
    KH_STRLIST contacts = { NULL, 0 };
    ACME_RESP r;
    size_t i, cap, o;
    int rc;

    if (eab_kid != NULL && eab_file != NULL) {
        rc = eab(a, eab_kid, eab_file, eabjws, sizeof(eabjws), err, errlen);
        if (rc != KH_EXIT_OK) {
            return rc;
        }
    } else if (a->eab_required) {
        return kh_seterr(err, errlen, KH_EXIT_USAGE, "%s: this ACME server "
                         "requires external account binding: give "
                         "--eab-kid KID --eab-hmac-file FILE from the CA",
                         a->who);
    }
    kh_id_get_all(id, "acme-contact", &contacts);
    cap = sizeof(eabjws) + 1024 + contacts.n * 300;
    payload = OPENSSL_malloc(cap);
    if (payload == NULL) {
        kh_strlist_free(&contacts);
        return kh_seterr(err, errlen, KH_EXIT_BROKEN, "out of memory");
    }
    o = (size_t)snprintf(payload, cap, "{\"termsOfServiceAgreed\":true");
    if (contacts.n > 0) {
        o += (size_t)snprintf(payload + o, cap - o, ",\"contact\":[");
        for (i = 0; i < contacts.n && strlen(contacts.v[i]) < 256
                    && strpbrk(contacts.v[i], "\"\\") == NULL; i++) {
            o += (size_t)snprintf(payload + o, cap - o, "%s\"%s\"",
                                  i ? "," : "", contacts.v[i]);
        }
        o += (size_t)snprintf(payload + o, cap - o, "]");
    }
    if (eabjws[0] != '\0') {
        o += (size_t)snprintf(payload + o, cap - o,
                              ",\"externalAccountBinding\":%s", eabjws);
    }
    snprintf(payload + o, cap - o, "}");
    kh_strlist_free(&contacts);
    rc = post(a, "the account (newAccount)", a->new_account, payload, 1,
              NULL, &r, err, errlen);
    OPENSSL_free(payload);
    if (rc != KH_EXIT_OK) {
        return rc;
    }
    if (r.location[0] == '\0') {
        resp_clear(&r);
        return kh_seterr(err, errlen, KH_EXIT_NETWORK, "%s: the ACME server "
                         "gave no account URL (Location)", a->who);
    }
    snprintf(a->kid, sizeof(a->kid), "%s", r.location);
    kh_dbg(a->ctx, "%s: ACME account %s (%s, %s)", a->who, a->kid,
           r.status == 201 ? "new" : "existing", a->alg);
    resp_clear(&r);
    return KH_EXIT_OK;
}

/* The names and addresses the CSR asks for: the order's identifiers. */
static int identifiers(X509_REQ *csr, char *out, size_t outlen,
                       char *err, size_t errlen)
{
    STACK_OF(X509_EXTENSION) *exts = X509_REQ_get_extensions(csr);
    GENERAL_NAMES *gens = NULL;
    GENERAL_NAME *g;
    char ip[INET6_ADDRSTRLEN], cn[256];
    const unsigned char *d;
    int i, n = 0, l;
    size_t o;

    o = (size_t)snprintf(out, outlen, "{\"identifiers\":[");
    gens = X509V3_get_d2i(exts, NID_subject_alt_name, NULL, NULL);
    for (i = 0; i < sk_GENERAL_NAME_num(gens); i++) {
        g = sk_GENERAL_NAME_value(gens, i);
        if (g->type == GEN_DNS) {
            d = ASN1_STRING_get0_data(g->d.dNSName);
            l = ASN1_STRING_length(g->d.dNSName);
            if (l <= 0 || l > 253 || memchr(d, '"', (size_t)l) != NULL
                || memchr(d, '\\', (size_t)l) != NULL) {
                continue;
            }
            o += (size_t)snprintf(out + o, outlen - o, "%s{\"type\":\"dns\","
                                  "\"value\":\"%.*s\"}", n ? "," : "", l,
                                  (const char *)d);
            n++;
        } else if (g->type == GEN_IPADD) {
            l = ASN1_STRING_length(g->d.iPAddress);
            d = ASN1_STRING_get0_data(g->d.iPAddress);
            if (inet_ntop(l == 4 ? AF_INET : AF_INET6, d, ip, sizeof(ip))
                    == NULL
                || (l != 4 && l != 16)) {
                continue;
            }
            o += (size_t)snprintf(out + o, outlen - o, "%s{\"type\":\"ip\","
                                  "\"value\":\"%s\"}", n ? "," : "", ip);
            n++;
        }
        if (o >= outlen) {
            break;
        }
    }
    if (n == 0 && X509_NAME_get_text_by_NID(X509_REQ_get_subject_name(csr),
                                            NID_commonName, cn, sizeof(cn))
                      > 0
        && strpbrk(cn, "\"\\") == NULL) {
        o += (size_t)snprintf(out + o, outlen - o, "{\"type\":\"dns\","
                              "\"value\":\"%s\"}", cn);
        n++;
    }
    if (o < outlen) {
        o += (size_t)snprintf(out + o, outlen - o, "]}");
    }
    GENERAL_NAMES_free(gens);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    if (o >= outlen) {
        return kh_seterr(err, errlen, KH_EXIT_REJECTED, "too many names in "
                         "the CSR for one ACME order");
    }
    if (n == 0) {
        return kh_seterr(err, errlen, KH_EXIT_REJECTED, "the CSR names no "
                         "host (set the identity's hosts with keyhold "
                         "set-hosts)");
    }
    return KH_EXIT_OK;
}

/* Seconds to wait before the next poll: Retry-After, within bounds. */
static long wait_secs(const ACME_RESP *r, time_t deadline)
{
    long s = 1, left = (long)(deadline - time(NULL));

    if (r->retry_after[0] != '\0'
        && !kh_http_parse_retry_after(r->retry_after, time(NULL), &s)) {
        s = 1;
    }
    if (s < 1) {
        s = 1;
    }
    if (s > left) {
        s = left;
    }
    return s;
}

/*
 * POST-as-GET |url| until its "status" is not one of |busy| (a
 * '|'-separated list); the last body stays in *r. KH_EXIT_NETWORK when the
 * bound passes.
 */
static int poll_status(ACME *a, const char *what, const char *url,
                       const char *busy, char *status, size_t slen,
                       ACME_RESP *r, char *err, size_t errlen)
{
    time_t deadline = time(NULL) + a->poll_max;
    char pat[64];
    long s;
    int rc;

    for (;;) {
        rc = post(a, what, url, NULL, 0, NULL, r, err, errlen);
        if (rc != KH_EXIT_OK) {
            return rc;
        }
        if (!kh_acme_json_getstr(body_span(r), "status", status, slen)) {
            resp_clear(r);
            return kh_seterr(err, errlen, KH_EXIT_NETWORK, "%s: %s has no "
                             "status", a->who, what);
        }
        snprintf(pat, sizeof(pat), "|%s|", status);
        if (strstr(busy, pat) == NULL) {
            return KH_EXIT_OK;
        }
        s = wait_secs(r, deadline);
        resp_clear(r);
        if (s <= 0) {
            return kh_seterr(err, errlen, KH_EXIT_NETWORK, "%s: %s still "
                             "'%s' after %ld s (acme-poll-max); try again "
                             "later", a->who, what, status, a->poll_max);
        }
        sleep((unsigned int)s);
    }
}

/* One authorization: pick our challenge, serve it, trigger it, wait. */
static int authorize(ACME *a, KH_ACME_CHAL *chal, const char *type,
                     const char *url, char *err, size_t errlen)
{
    KH_JSPAN chs, ch, idv, cerr;
    ACME_RESP r;
    char status[32], ident[300] = "", ctype[32], curl_[ACME_URL_MAX];
    char token[128], ka[256], prob[900], what[400];
    size_t pos = 0;
    int rc, found = 0;

    rc = post(a, "the authorization", url, NULL, 0, NULL, &r, err, errlen);
    if (rc != KH_EXIT_OK) {
        return rc;
    }
    if (kh_acme_json_get(body_span(&r), "identifier", &idv)) {
        kh_acme_json_getstr(idv, "value", ident, sizeof(ident));
    }
    kh_acme_json_getstr(body_span(&r), "status", status, sizeof(status));
    if (strcmp(status, "valid") == 0) {
        resp_clear(&r);
        return KH_EXIT_OK;     /* validated for an earlier order */
    }
    if (strcmp(status, "pending") != 0) {
        resp_clear(&r);
        return kh_seterr(err, errlen, KH_EXIT_NETWORK, "%s: authorization "
                         "for %s is '%s' at the ACME server", a->who, ident,
                         status);
    }
    if (kh_acme_json_get(body_span(&r), "challenges", &chs)) {
        while (kh_acme_json_next(chs, &pos, &ch)) {
            if (kh_acme_json_getstr(ch, "type", ctype, sizeof(ctype))
                && strcmp(ctype, type) == 0
                && kh_acme_json_getstr(ch, "url", curl_, sizeof(curl_))
                && kh_acme_json_getstr(ch, "token", token, sizeof(token))) {
                found = 1;
                break;
            }
        }
    }
    resp_clear(&r);
    if (!found) {
        return kh_seterr(err, errlen, KH_EXIT_NETWORK, "%s: the ACME server "
                         "offers no %s challenge for %s (try --challenge "
                         "with another type)", a->who, type, ident);
    }
    /* RFC 8555 8.1: token "." base64url(JWK thumbprint) */
    if ((size_t)snprintf(ka, sizeof(ka), "%s.%s", token, a->thumb)
        >= sizeof(ka)) {
        return kh_seterr(err, errlen, KH_EXIT_NETWORK, "%s: challenge token "
                         "too long", a->who);
    }
    if (chal->tls != NULL) {
        rc = kh_acme_chal_add_tls(chal, ident, ka, err, errlen);
    } else {
        rc = kh_acme_chal_add(chal, token, ka, err, errlen);
    }
    if (rc != KH_EXIT_OK) {
        return rc;
    }
    snprintf(what, sizeof(what), "the %s challenge for %s", type, ident);
    rc = post(a, what, curl_, "{}", 0, NULL, &r, err, errlen);
    if (rc != KH_EXIT_OK) {
        return rc;
    }
    resp_clear(&r);
    snprintf(what, sizeof(what), "the authorization for %s", ident);
    rc = poll_status(a, what, url, "|pending|processing|", status,
                     sizeof(status), &r, err, errlen);
    if (rc != KH_EXIT_OK) {
        return rc;
    }
    if (strcmp(status, "valid") == 0) {
        resp_clear(&r);
        return KH_EXIT_OK;
    }
    /* the failed challenge's error names the reason */
    prob[0] = '\0';
    pos = 0;
    if (kh_acme_json_get(body_span(&r), "challenges", &chs)) {
        while (kh_acme_json_next(chs, &pos, &ch)) {
            if (kh_acme_json_getstr(ch, "type", ctype, sizeof(ctype))
                && strcmp(ctype, type) == 0
                && kh_acme_json_get(ch, "error", &cerr)) {
                kh_acme_problem(cerr.p, cerr.n, prob, sizeof(prob), NULL, 0);
                break;
            }
        }
    }
    resp_clear(&r);
    if (chal->webroot[0] != '\0') {
        return kh_seterr(err, errlen, KH_EXIT_NETWORK, "%s: %s failed (%s): "
                         "%s (does the web server on port 80 serve %s?)",
                         a->who, what, status,
                         prob[0] ? prob : "no reason given", chal->webroot);
    }
    return kh_seterr(err, errlen, KH_EXIT_NETWORK, "%s: %s failed (%s): %s "
                     "(keyhold answered on port %d: does the CA reach it "
                     "there? see --challenge-port)", a->who, what, status,
                     prob[0] ? prob : "no reason given", chal->port);
}

static int finalize(ACME *a, X509_REQ *csr, const char *order_url,
                    const char *finalize_url, char *cert_url, size_t culen,
                    char *err, size_t errlen)
{
    unsigned char *der = NULL;
    char *payload = NULL, status[32];
    ACME_RESP r;
    int len, rc;
    size_t cap;

    len = i2d_X509_REQ(csr, &der);
    if (len <= 0) {
        return kh_seterr(err, errlen, KH_EXIT_BROKEN, "%s: CSR encoding",
                         a->who);
    }
    cap = (size_t)len * 4 / 3 + 64;
    payload = OPENSSL_malloc(cap);
    if (payload == NULL) {
        OPENSSL_free(der);
        return kh_seterr(err, errlen, KH_EXIT_BROKEN, "out of memory");
    }
    {
        int off = snprintf(payload, cap, "{\"csr\":\"");

        kh_acme_b64url(der, (size_t)len, payload + off, cap - (size_t)off);
    }
    OPENSSL_free(der);
    len = (int)strlen(payload);
    snprintf(payload + len, cap - (size_t)len, "\"}");
    rc = post(a, "the finalize request (CSR)", finalize_url, payload, 0,
              NULL, &r, err, errlen);
    OPENSSL_free(payload);
    if (rc != KH_EXIT_OK) {
        if (a->own_key && strstr(err, ":badCSR") != NULL) {
            len = (int)strlen(err);
            snprintf(err + len, errlen - (size_t)len, " (this CA wants an "
                     "account key apart from the certificate's key: provision "
                     "one more identity and give it with --acme-account "
                     "NAME, stored as acme-account in %s's config)", a->who);
        }
        return rc;
    }
    resp_clear(&r);
    rc = poll_status(a, "the order", order_url, "|ready|processing|",
                     status, sizeof(status), &r, err, errlen);
    if (rc != KH_EXIT_OK) {
        return rc;
    }
    if (strcmp(status, "valid") != 0
        || !kh_acme_json_getstr(body_span(&r), "certificate", cert_url,
                                culen)) {
        char prob[900] = "";
        KH_JSPAN pe;

        if (kh_acme_json_get(body_span(&r), "error", &pe)) {
            kh_acme_problem(pe.p, pe.n, prob, sizeof(prob), NULL, 0);
        }
        resp_clear(&r);
        return kh_seterr(err, errlen, KH_EXIT_NETWORK, "%s: the order ended "
                         "'%s' without a certificate%s%s", a->who, status,
                         prob[0] ? ": " : "", prob);
    }
    resp_clear(&r);
    return KH_EXIT_OK;
}

/* The trust anchor: the pinned CA, or the chain's member with the pinned
 * fingerprint (removed from the chain). */
static int pick_ca(KH_ENROL_IO *io, const char *who, char *err, size_t errlen)
{
    char fp[128];
    X509 *c;
    int i;

    if (io->pinned_ca != NULL) {
        io->ca = X509_dup(io->pinned_ca);
    } else if (io->ca_fingerprint != NULL) {
        for (i = 0; i < sk_X509_num(io->chain); i++) {
            c = sk_X509_value(io->chain, i);
            if (kh_fp_cert(c, fp, sizeof(fp))
                && strcasecmp(fp, io->ca_fingerprint) == 0) {
                io->ca = X509_dup(c);
                break;
            }
        }
        if (io->ca == NULL) {
            return kh_seterr(err, errlen, KH_EXIT_REJECTED, "%s: no "
                             "certificate of the ACME chain has the pinned "
                             "fingerprint %s (give the CA's root with --ca "
                             "FILE)", who, io->ca_fingerprint);
        }
    }
    if (io->ca == NULL) {
        return kh_seterr(err, errlen, KH_EXIT_USAGE, "%s: no pinned CA: give "
                         "--ca FILE with the ACME CA's root", who);
    }
    /* the anchor itself is not part of the chain to present */
    for (i = sk_X509_num(io->chain) - 1; i >= 0; i--) {
        if (X509_cmp(sk_X509_value(io->chain, i), io->ca) == 0) {
            X509_free(sk_X509_delete(io->chain, i));
        }
    }
    return KH_EXIT_OK;
}

int kh_acme_enrol(KH_ENROL_IO *io, char *err, size_t errlen)
{
    const KH_IDENTITY *id = io->id;
    const char *url = kh_id_get(id, "acme-url");
    const char *type = kh_id_get(id, "acme-challenge");
    const char *v, *acct = kh_id_get(id, "acme-account");
    KH_IDENTITY *aid = NULL;
    EVP_PKEY *own = NULL;
    KH_ACME_CHAL chal;
    KH_JSPAN auths, au;
    ACME_RESP r;
    ACME a;
    char *order = NULL, status[32], fin[ACME_URL_MAX], ourl[ACME_URL_MAX];
    char cert_url[ACME_URL_MAX], aurl[ACME_URL_MAX];
    size_t pos;
    int rc, port, chal_started = 0;

    memset(&a, 0, sizeof(a));
    memset(&r, 0, sizeof(r));
    a.ctx = io->ctx;
    a.who = id->name;
    a.server_ca = io->server_ca;
    v = kh_id_get(id, "acme-timeout");
    a.timeout = v != NULL && atol(v) > 0 ? atol(v) : 60;
    v = kh_id_get(id, "acme-poll-max");
    a.poll_max = v != NULL && atol(v) > 0 ? atol(v) : 120;
    type = type != NULL ? type : "http-01";
    v = kh_id_get(id, "acme-challenge-port");
    port = v != NULL ? atoi(v) : strcmp(type, "tls-alpn-01") == 0 ? 443 : 80;
    if (url == NULL) {
        return kh_seterr(err, errlen, KH_EXIT_USAGE, "%s: no ACME directory "
                         "configured (keyhold enroll %s --acme URL)", a.who,
                         a.who);
    }
    if (type == NULL) {
        type = "http-01";
    }
    if (strcmp(type, "http-01") != 0 && strcmp(type, "tls-alpn-01") != 0) {
        return kh_seterr(err, errlen, KH_EXIT_USAGE, "%s: challenge type "
                         "'%s' is not supported (use --challenge http-01 or "
                         "tls-alpn-01)", a.who, type);
    }
    if (port <= 0 || port > 65535) {
        return kh_seterr(err, errlen, KH_EXIT_USAGE, "%s: acme-challenge-port "
                         "'%s' is not a port", a.who, v);
    }

    /* the account key: in hardware too */
    if (acct != NULL) {
        rc = kh_identity_load(io->ctx, acct, &aid, err, errlen);
        if (rc == KH_EXIT_OK) {
            rc = kh_identity_load_key(io->ctx, aid, NULL, &own, err, errlen);
        }
        if (rc != KH_EXIT_OK) {
            goto end;
        }
        a.akey = own;
    } else {
        a.akey = io->cur_key != NULL ? io->cur_key : io->key;
        a.own_key = EVP_PKEY_eq(a.akey, io->key) == 1;
    }
    rc = make_jwk(&a, err, errlen);
    if (rc != KH_EXIT_OK) {
        goto end;
    }
    rc = directory(&a, url, err, errlen);
    if (rc != KH_EXIT_OK) {
        goto end;
    }
    rc = account(&a, id, err, errlen);
    if (rc != KH_EXIT_OK) {
        goto end;
    }

    /* the order for the CSR's names */
    order = OPENSSL_malloc(16384);
    if (order == NULL) {
        rc = kh_seterr(err, errlen, KH_EXIT_BROKEN, "out of memory");
        goto end;
    }
    rc = identifiers(io->csr, order, 16384, err, errlen);
    if (rc != KH_EXIT_OK) {
        goto end;
    }
    rc = post(&a, "the order (newOrder)", a.new_order, order, 0, NULL, &r,
              err, errlen);
    if (rc != KH_EXIT_OK) {
        goto end;
    }
    if (r.location[0] == '\0'
        || !kh_acme_json_getstr(body_span(&r), "finalize", fin, sizeof(fin))
        || !kh_acme_json_get(body_span(&r), "authorizations", &auths)) {
        rc = kh_seterr(err, errlen, KH_EXIT_NETWORK, "%s: the ACME server's "
                       "order lacks its URL, finalize or authorizations",
                       a.who);
        goto end;
    }
    snprintf(ourl, sizeof(ourl), "%s", r.location);
    kh_acme_json_getstr(body_span(&r), "status", status, sizeof(status));

    if (strcmp(status, "pending") == 0) {
        if (strcmp(type, "tls-alpn-01") == 0) {
            rc = kh_acme_chal_start_tls(&chal,
                                        kh_id_get(id, "acme-challenge-address"),
                                        port, io->key, err, errlen);
        } else {
            rc = kh_acme_chal_start(&chal,
                                    kh_id_get(id, "acme-challenge-address"),
                                    port, kh_id_get(id, "acme-webroot"), err,
                                    errlen);
        }
        if (rc != KH_EXIT_OK) {
            goto end;
        }
        chal_started = 1;
        pos = 0;
        while (kh_acme_json_next(auths, &pos, &au)) {
            if (!kh_acme_json_str(au, aurl, sizeof(aurl))) {
                continue;
            }
            rc = authorize(&a, &chal, type, aurl, err, errlen);
            if (rc != KH_EXIT_OK) {
                goto end;
            }
        }
    }
    resp_clear(&r);
    rc = poll_status(&a, "the order", ourl, "|pending|", status,
                     sizeof(status), &r, err, errlen);
    if (rc != KH_EXIT_OK) {
        goto end;
    }
    if (strcmp(status, "ready") == 0) {
        resp_clear(&r);
        rc = finalize(&a, io->csr, ourl, fin, cert_url, sizeof(cert_url),
                      err, errlen);
    } else if (strcmp(status, "valid") == 0
               && kh_acme_json_getstr(body_span(&r), "certificate", cert_url,
                                      sizeof(cert_url))) {
        rc = KH_EXIT_OK;   /* finalized before: only the download is left */
    } else {
        rc = kh_seterr(err, errlen, KH_EXIT_NETWORK, "%s: the order is "
                       "'%s' at the ACME server", a.who, status);
    }
    resp_clear(&r);
    if (rc != KH_EXIT_OK) {
        goto end;
    }

    /* the chain: leaf first (RFC 8555 7.4.2) */
    rc = post(&a, "the certificate download", cert_url, NULL, 0,
              "application/pem-certificate-chain", &r, err, errlen);
    if (rc != KH_EXIT_OK) {
        goto end;
    }
    rc = kh_certs_read_buf(r.body, r.len, &io->cert, &io->chain, err,
                           errlen);
    if (rc != KH_EXIT_OK || io->cert == NULL) {
        char e2[KH_ERR_MAX];

        snprintf(e2, sizeof(e2), "%s", err);
        rc = kh_seterr(err, errlen, KH_EXIT_NETWORK, "%s: the ACME "
                       "certificate download is not a PEM chain: %s", a.who,
                       e2);
        goto end;
    }
    if (io->chain == NULL) {
        io->chain = sk_X509_new_null();
    }
    rc = pick_ca(io, a.who, err, errlen);
end:
    if (chal_started) {
        kh_acme_chal_stop(&chal);
    }
    resp_clear(&r);
    OPENSSL_free(order);
    EVP_PKEY_free(own);
    kh_identity_free(aid);
    if (rc != KH_EXIT_OK) {
        kh_enrol_io_clear(io);
    }
    return rc;
}
