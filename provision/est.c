/* SPDX-License-Identifier: MIT */
/* EST client exchanges and the renewal policy (see est.h). */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "keyhold.h"
#include "est.h"

/* The server's own words (text/plain body), printable and bounded. */
static void server_reason(const KH_HTTP_RESP *r, char *out, size_t outlen)
{
    size_t i, n = 0;

    out[0] = '\0';
    if (r->body == NULL || strncasecmp(r->content_type, "text/", 5) != 0) {
        return;
    }
    for (i = 0; i < r->bodylen && n + 1 < outlen && n < 200; i++) {
        unsigned char ch = r->body[i];

        if (ch == '\n' || ch == '\r') {
            break;
        }
        out[n++] = isprint(ch) ? (char)ch : '?';
    }
    out[n] = '\0';
}

static int status_error(KH_EST *e, const char *what, const KH_HTTP_RESP *r,
                        char *err, size_t errlen)
{
    char why[220];

    server_reason(r, why, sizeof(why));
    if (r->status >= 300 && r->status < 400) {
        return kh_seterr(err, errlen, KH_EXIT_NETWORK, "%s %s: server "
                         "answered with a redirect (%ld%s%s), refused: "
                         "give the final URL with --est", e->base, what,
                         r->status, r->location[0] ? " to " : "",
                         r->location);
    }
    if (r->status == 401 || r->status == 403) {
        return kh_seterr(err, errlen, KH_EXIT_NETWORK, "%s %s: CA refused "
                         "the authentication (HTTP %ld%s%s): check --user/"
                         "--password-file or the client certificate",
                         e->base, what, r->status, why[0] ? ": " : "", why);
    }
    return kh_seterr(err, errlen, KH_EXIT_NETWORK, "%s %s: CA answered HTTP "
                     "%ld%s%s", e->base, what, r->status, why[0] ? ": " : "",
                     why);
}

int kh_est_cacerts(KH_EST *e, STACK_OF(X509) **certs, char *err,
                   size_t errlen)
{
    char url[1100], perr[200];
    KH_HTTP_RESP r;
    int rc;

    *certs = NULL;
    snprintf(url, sizeof(url), "%s/cacerts", e->base);
    if (e->http.max_body == 0) {
        e->http.max_body = KH_EST_MAX_BODY;
    }
    rc = kh_http_request(&e->http, "GET", url, NULL, NULL, 0, &r, err,
                         errlen);
    if (rc != KH_EXIT_OK) {
        return rc;
    }
    if (r.status != 200) {
        rc = status_error(e, "cacerts", &r, err, errlen);
        goto end;
    }
    if (!kh_est_parse_certs(r.body, r.bodylen, r.content_type, certs, perr,
                            sizeof(perr))) {
        rc = kh_seterr(err, errlen, KH_EXIT_NETWORK, "%s/cacerts: %s",
                       e->base, perr);
        goto end;
    }
    rc = KH_EXIT_OK;
end:
    kh_http_resp_clear(&r);
    return rc;
}

static int csr_b64(X509_REQ *csr, char **out, size_t *outlen)
{
    unsigned char *der = NULL;
    char *b;
    int len, i, n = 0;

    len = i2d_X509_REQ(csr, &der);
    if (len <= 0) {
        return 0;
    }
    b = OPENSSL_malloc((size_t)len / 48 * 65 + 70);
    if (b == NULL) {
        OPENSSL_free(der);
        return 0;
    }
    for (i = 0; i < len; i += 48) {
        n += EVP_EncodeBlock((unsigned char *)b + n, der + i,
                             len - i < 48 ? len - i : 48);
        b[n++] = '\n';
    }
    b[n] = '\0';
    OPENSSL_free(der);
    *out = b;
    *outlen = (size_t)n;
    return 1;
}

int kh_est_enroll(KH_EST *e, int reenroll, X509_REQ *csr, X509 **cert,
                  STACK_OF(X509) **extra, char *err, size_t errlen)
{
    const char *op = reenroll ? "simplereenroll" : "simpleenroll";
    char url[1100], perr[200];
    STACK_OF(X509) *got = NULL;
    KH_HTTP_RESP r;
    char *body = NULL;
    size_t bodylen = 0;
    long waited = 0, delay;
    int rc, i, polls = 0, pick = -1;

    *cert = NULL;
    *extra = NULL;
    memset(&r, 0, sizeof(r));
    if (!csr_b64(csr, &body, &bodylen)) {
        return kh_seterr(err, errlen, KH_EXIT_REJECTED, "cannot encode CSR");
    }
    snprintf(url, sizeof(url), "%s/%s", e->base, op);
    if (e->http.max_body == 0) {
        e->http.max_body = KH_EST_MAX_BODY;
    }
    for (;;) {
        rc = kh_http_request(&e->http, "POST", url, "application/pkcs10",
                             body, bodylen, &r, err, errlen);
        if (rc != KH_EXIT_OK) {
            goto end;
        }
        if (r.status != 202) {
            break;
        }
        /* RFC 7030 4.2.3: manual approval; come back after Retry-After */
        if (!kh_http_parse_retry_after(r.retry_after[0] ? r.retry_after
                                                        : NULL,
                                       time(NULL), &delay)) {
            delay = 10;
        }
        if (delay < 1) {
            delay = 1;
        }
        polls++;
        if (waited + delay > e->poll_max || polls > 1000) {
            rc = kh_seterr(err, errlen, KH_EXIT_NETWORK, "%s %s: request "
                           "still waits for approval at the CA after %ld s "
                           "(server asks to retry in %ld s): run again later",
                           e->base, op, waited, delay);
            goto end;
        }
        fprintf(stderr, "keyhold: %s: request waits for approval at the CA; "
                "asking again in %ld s\n", e->who != NULL ? e->who : op,
                delay);
        kh_http_resp_clear(&r);
        sleep((unsigned)delay);
        waited += delay;
    }
    if (r.status != 200) {
        rc = status_error(e, op, &r, err, errlen);
        goto end;
    }
    if (!kh_est_parse_certs(r.body, r.bodylen, r.content_type, &got, perr,
                            sizeof(perr))) {
        rc = kh_seterr(err, errlen, KH_EXIT_NETWORK, "%s %s: %s", e->base, op,
                       perr);
        goto end;
    }
    /* the issued certificate: the first that is not a CA */
    for (i = 0; i < sk_X509_num(got) && pick < 0; i++) {
        if (X509_check_ca(sk_X509_value(got, i)) == 0) {
            pick = i;
        }
    }
    if (pick < 0) {
        pick = 0;
    }
    *cert = sk_X509_delete(got, pick);
    *extra = got;
    got = NULL;
    rc = KH_EXIT_OK;
end:
    sk_X509_pop_free(got, X509_free);
    kh_http_resp_clear(&r);
    OPENSSL_free(body);
    return rc;
}

static int fp_normalise(const char *in, char *out, size_t outlen)
{
    size_t n = 0;

    if (strncasecmp(in, "sha256:", 7) == 0) {
        in += 7;
    }
    for (; *in != '\0'; in++) {
        if (*in == ':' || *in == ' ') {
            continue;
        }
        if (!isxdigit((unsigned char)*in) || n + 1 >= outlen) {
            return 0;
        }
        out[n++] = (char)tolower((unsigned char)*in);
    }
    out[n] = '\0';
    return n == 64;
}

static void cert_fp_hex(X509 *x, char *out)
{
    unsigned char md[32];
    unsigned int mdlen = sizeof(md), i;

    X509_digest(x, EVP_sha256(), md, &mdlen);
    for (i = 0; i < 32; i++) {
        snprintf(out + 2 * i, 3, "%02x", md[i]);
    }
}

static int self_signed(X509 *x)
{
    return X509_check_issued(x, x) == X509_V_OK;
}

int kh_est_pick_ca(STACK_OF(X509) *cacerts, const char *fingerprint,
                   X509 *pinned, X509 **ca, STACK_OF(X509) **chain,
                   char *err, size_t errlen)
{
    char want[80], have[80];
    X509 *anchor = NULL, *x;
    STACK_OF(X509) *rest = NULL;
    int i, rc = KH_EXIT_REJECTED;

    *ca = NULL;
    *chain = NULL;
    if (fingerprint != NULL) {
        if (!fp_normalise(fingerprint, want, sizeof(want))) {
            return kh_seterr(err, errlen, KH_EXIT_USAGE, "CA fingerprint "
                             "'%s': want sha256: and 64 hex digits",
                             fingerprint);
        }
        for (i = 0; i < sk_X509_num(cacerts) && anchor == NULL; i++) {
            cert_fp_hex(sk_X509_value(cacerts, i), have);
            if (strcmp(have, want) == 0) {
                anchor = sk_X509_value(cacerts, i);
            }
        }
        if (anchor == NULL) {
            return kh_seterr(err, errlen, KH_EXIT_REJECTED, "no certificate "
                             "in the EST server's /cacerts has the pinned "
                             "fingerprint sha256:%s: refusing (if the CA "
                             "really changed, enrol again with the new "
                             "--ca-fingerprint)", want);
        }
    } else if (pinned != NULL) {
        for (i = 0; i < sk_X509_num(cacerts) && anchor == NULL; i++) {
            x = sk_X509_value(cacerts, i);
            if (X509_cmp(x, pinned) == 0) {
                anchor = pinned;
            } else if (X509_check_issued(pinned, x) == X509_V_OK
                       && X509_verify(x, X509_get0_pubkey(pinned)) == 1) {
                /* an intermediate (or a rollover cert) of the pinned CA */
                anchor = pinned;
            }
        }
        ERR_clear_error();
        if (anchor == NULL) {
            return kh_seterr(err, errlen, KH_EXIT_REJECTED, "the EST "
                             "server's /cacerts neither contains the pinned "
                             "CA nor a certificate it signed: refusing (if "
                             "the CA really changed, enrol again with the "
                             "new --ca)");
        }
    } else {
        return kh_seterr(err, errlen, KH_EXIT_USAGE, "no CA pin");
    }
    rest = sk_X509_new_null();
    if (rest == NULL) {
        goto end;
    }
    for (i = 0; i < sk_X509_num(cacerts); i++) {
        x = sk_X509_value(cacerts, i);
        if (X509_cmp(x, anchor) == 0 || self_signed(x)) {
            continue;
        }
        if (!X509_up_ref(x) || !sk_X509_push(rest, x)) {
            goto end;
        }
    }
    if (!X509_up_ref(anchor)) {
        goto end;
    }
    *ca = anchor;
    *chain = rest;
    rest = NULL;
    rc = KH_EXIT_OK;
end:
    sk_X509_pop_free(rest, X509_free);
    if (rc != KH_EXIT_OK && (err == NULL || err[0] == '\0')) {
        kh_seterr(err, errlen, rc, "out of memory");
    }
    return rc;
}

static time_t asn1_time(const ASN1_TIME *t)
{
    struct tm tm;

    if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1) {
        return 0;
    }
    return timegm(&tm);
}

time_t kh_renew_due_time(const char *name, X509 *cert, int after_percent,
                         long before_days)
{
    time_t nb = asn1_time(X509_get0_notBefore(cert));
    time_t na = asn1_time(X509_get0_notAfter(cert));
    long long life = (long long)na - (long long)nb, before, spread_max;
    unsigned char md[32], *spki = NULL;
    unsigned int h;
    time_t t1, t2, due;
    EVP_MD_CTX *m;
    int spkilen;

    if (life <= 0) {
        return na;
    }
    if (after_percent <= 0 || after_percent > 100) {
        after_percent = 67;
    }
    t1 = nb + (time_t)(life * after_percent / 100);
    /* "fewer than N days left", never more than a third of the lifetime,
     * so that short-lived certificates are not due as soon as issued */
    before = (long long)before_days * 86400;
    if (before > life / 3) {
        before = life / 3;
    }
    t2 = na - (time_t)before;
    due = t1 < t2 ? t1 : t2;
    /*
     * The spread: up to a tenth of the lifetime (at most 2 days) earlier,
     * derived from the identity name and its public key, so it differs
     * between appliances and stays the same between runs.
     */
    spread_max = life / 10;
    if (spread_max > 2 * 86400) {
        spread_max = 2 * 86400;
    }
    if (spread_max <= 0) {
        return due;
    }
    spkilen = i2d_PUBKEY(X509_get0_pubkey(cert), &spki);
    m = EVP_MD_CTX_new();
    if (m != NULL && spkilen > 0
        && EVP_DigestInit_ex(m, EVP_sha256(), NULL) == 1
        && EVP_DigestUpdate(m, name, strlen(name)) == 1
        && EVP_DigestUpdate(m, spki, (size_t)spkilen) == 1
        && EVP_DigestFinal_ex(m, md, NULL) == 1) {
        h = ((unsigned)md[0] << 24) | ((unsigned)md[1] << 16)
            | ((unsigned)md[2] << 8) | md[3];
        due -= (time_t)(h % (unsigned long long)spread_max);
    }
    EVP_MD_CTX_free(m);
    OPENSSL_free(spki);
    return due;
}

time_t kh_renew_backoff(time_t now, long long failures, X509 *cert)
{
    long long delay = 300, cap = 86400, left;
    unsigned short r = 0;

    while (failures-- > 1 && delay < cap) {
        delay *= 2;
    }
    if (cert != NULL) {
        /* tighter as expiry nears: never sleep through the last tenth */
        left = (long long)asn1_time(X509_get0_notAfter(cert)) - now;
        if (left > 0 && left / 10 < cap) {
            cap = left / 10;
        }
    }
    if (cap < 60) {
        cap = 60;
    }
    if (delay > cap) {
        delay = cap;
    }
    /* jitter: 80 % .. 120 % */
    RAND_bytes((unsigned char *)&r, sizeof(r));
    delay = delay * (80 + r % 41) / 100;
    if (delay < 60) {
        delay = 60;
    }
    return now + (time_t)delay;
}
