/* SPDX-License-Identifier: MIT */
/*
 * Parsers of what an EST server sends back, free of I/O so that they can
 * be fuzzed on their own: certs-only PKCS#7 replies, Retry-After values,
 * and the EST base URL.
 */
#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pkcs7.h>

#include "est.h"
#include "http.h"

static void seterr(char *err, size_t errlen, const char *msg)
{
    if (err != NULL && errlen > 0) {
        snprintf(err, errlen, "%s", msg);
    }
}

int kh_est_parse_certs(const unsigned char *body, size_t len,
                       const char *content_type, STACK_OF(X509) **out,
                       char *err, size_t errlen)
{
    EVP_ENCODE_CTX *ectx = NULL;
    unsigned char *der = NULL;
    const unsigned char *p;
    STACK_OF(X509) *certs, *res = NULL;
    PKCS7 *p7 = NULL;
    size_t i, derlen = 0;
    int n = 0, m = 0, ok = 0, k;

    *out = NULL;
    if (content_type != NULL && content_type[0] != '\0'
        && strncasecmp(content_type, "application/pkcs7-mime", 22) != 0) {
        char msg[200];

        snprintf(msg, sizeof(msg), "reply is %.60s, not "
                 "application/pkcs7-mime (an error page?)", content_type);
        seterr(err, errlen, msg);
        return 0;
    }
    if (body == NULL || len == 0) {
        seterr(err, errlen, "empty reply");
        return 0;
    }
    if (len > KH_EST_MAX_BODY) {
        seterr(err, errlen, "reply too large for a certificate");
        return 0;
    }
    if (body[0] == 0x30) {
        p = body;
        derlen = len;
    } else {
        for (i = 0; i < len; i++) {
            if (!isalnum(body[i]) && body[i] != '+' && body[i] != '/'
                && body[i] != '=' && !isspace(body[i])) {
                seterr(err, errlen, "reply is not base64");
                return 0;
            }
        }
        ectx = EVP_ENCODE_CTX_new();
        der = OPENSSL_malloc(len / 4 * 3 + 4);
        if (ectx == NULL || der == NULL) {
            seterr(err, errlen, "out of memory");
            goto end;
        }
        EVP_DecodeInit(ectx);
        if (EVP_DecodeUpdate(ectx, der, &n, body, (int)len) < 0
            || EVP_DecodeFinal(ectx, der + n, &m) < 0 || n + m <= 0) {
            seterr(err, errlen, "reply is not valid base64");
            goto end;
        }
        p = der;
        derlen = (size_t)(n + m);
    }
    p7 = d2i_PKCS7(NULL, &p, (long)derlen);
    if (p7 == NULL) {
        seterr(err, errlen, "reply is not a PKCS#7 structure");
        goto end;
    }
    if (!PKCS7_type_is_signed(p7) || p7->d.sign == NULL) {
        seterr(err, errlen, "reply is not a certs-only PKCS#7 SignedData");
        goto end;
    }
    certs = p7->d.sign->cert;
    if (sk_X509_num(certs) <= 0) {
        seterr(err, errlen, "reply holds no certificate");
        goto end;
    }
    if (sk_X509_num(certs) > KH_EST_MAX_CERTS) {
        seterr(err, errlen, "reply holds too many certificates");
        goto end;
    }
    res = sk_X509_new_null();
    if (res == NULL) {
        seterr(err, errlen, "out of memory");
        goto end;
    }
    for (k = 0; k < sk_X509_num(certs); k++) {
        X509 *x = sk_X509_value(certs, k);

        if (!X509_up_ref(x)) {
            goto end;
        }
        if (!sk_X509_push(res, x)) {
            X509_free(x);
            seterr(err, errlen, "out of memory");
            goto end;
        }
    }
    *out = res;
    res = NULL;
    ok = 1;
end:
    ERR_clear_error();
    sk_X509_pop_free(res, X509_free);
    PKCS7_free(p7);
    OPENSSL_free(der);
    EVP_ENCODE_CTX_free(ectx);
    return ok;
}

int kh_est_base_url(const char *in, char *out, size_t outlen, char *err,
                    size_t errlen)
{
    static const char wk[] = "/.well-known/est";
    const char *host, *path;
    size_t i, n;

    if (in == NULL || strncasecmp(in, "https://", 8) != 0) {
        seterr(err, errlen, "EST URL must start with https://");
        return 0;
    }
    host = in + 8;
    path = strchr(host, '/');
    if (host[0] == '\0' || host[0] == '/') {
        seterr(err, errlen, "EST URL has no host");
        return 0;
    }
    for (i = 0; in[i] != '\0'; i++) {
        if ((unsigned char)in[i] <= ' ' || in[i] == '?' || in[i] == '#'
            || in[i] == '@' || (unsigned char)in[i] >= 0x7f) {
            seterr(err, errlen, "EST URL has characters it should not "
                   "(user info, query, spaces)");
            return 0;
        }
    }
    n = strlen(in);
    while (n > 8 && in[n - 1] == '/') {
        n--;
    }
    if (path == NULL || (size_t)(path - in) >= n) {
        /* only a host: the well-known location */
        if (n + sizeof(wk) > outlen) {
            goto toolong;
        }
        memcpy(out, in, n);
        memcpy(out + n, wk, sizeof(wk));
        return 1;
    }
    if (strncmp(path, wk, sizeof(wk) - 1) != 0
        || (path[sizeof(wk) - 1] != '\0' && path[sizeof(wk) - 1] != '/')) {
        seterr(err, errlen, "EST URL path must be /.well-known/est or "
               "/.well-known/est/LABEL");
        return 0;
    }
    if (path[sizeof(wk) - 1] == '/'
        && strchr(path + sizeof(wk), '/') != NULL
        && (size_t)(strchr(path + sizeof(wk), '/') - in) < n) {
        seterr(err, errlen, "EST URL: LABEL must be one path segment");
        return 0;
    }
    if (n + 1 > outlen) {
        goto toolong;
    }
    memcpy(out, in, n);
    out[n] = '\0';
    return 1;
toolong:
    seterr(err, errlen, "EST URL too long");
    return 0;
}

int kh_http_parse_retry_after(const char *value, time_t now, long *secs)
{
    static const char *mon[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                 "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
    struct tm tm;
    char m[4], wd[4], tz[4];
    int d, y, hh, mm, ss, i, n = 0;
    long v = 0;
    time_t t;
    const char *p = value;

    if (value == NULL) {
        return 0;
    }
    while (*p == ' ') {
        p++;
    }
    if (isdigit((unsigned char)*p)) {
        for (; isdigit((unsigned char)*p); p++) {
            if (v > 100000000L) {
                return 0;
            }
            v = v * 10 + (*p - '0');
        }
        while (*p == ' ') {
            p++;
        }
        if (*p != '\0') {
            return 0;
        }
        *secs = v;
        return 1;
    }
    /* IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT */
    if (sscanf(p, "%3[A-Za-z], %2d %3[A-Za-z] %4d %2d:%2d:%2d %3[A-Z]%n", wd,
               &d, m, &y, &hh, &mm, &ss, tz, &n) != 8 || p[n] != '\0'
        || strcmp(tz, "GMT") != 0) {
        return 0;
    }
    memset(&tm, 0, sizeof(tm));
    tm.tm_mon = -1;
    for (i = 0; i < 12; i++) {
        if (strcmp(m, mon[i]) == 0) {
            tm.tm_mon = i;
        }
    }
    if (tm.tm_mon < 0 || d < 1 || d > 31 || y < 1970 || y > 9999 || hh > 23
        || mm > 59 || ss > 60) {
        return 0;
    }
    tm.tm_mday = d;
    tm.tm_year = y - 1900;
    tm.tm_hour = hh;
    tm.tm_min = mm;
    tm.tm_sec = ss;
    t = timegm(&tm);
    if (t == (time_t)-1) {
        return 0;
    }
    *secs = t > now ? (long)(t - now > 100000000L ? 100000000L : t - now) : 0;
    return 1;
}
