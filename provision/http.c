/* SPDX-License-Identifier: MIT */
/* HTTPS for enrolment over libcurl's OpenSSL backend (see http.h). */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <curl/curl.h>
#include <openssl/ssl.h>

#include "keyhold.h"
#include "http.h"

struct xfer {
    KH_HTTP_RESP *resp;
    size_t max;
    int too_big;
};

size_t kh_http_body_append(unsigned char **buf, size_t *len, size_t max,
                           const void *data, size_t n, int *too_big)
{
    unsigned char *nb;

    if (n > max || *len > max - n) {
        *too_big = 1;
        return 0;
    }
    nb = OPENSSL_realloc(*buf, *len + n + 1);
    if (nb == NULL) {
        return 0;
    }
    memcpy(nb + *len, data, n);
    *len += n;
    nb[*len] = '\0';
    *buf = nb;
    return n;
}

static size_t on_body(char *p, size_t sz, size_t n, void *u)
{
    struct xfer *x = u;

    return kh_http_body_append(&x->resp->body, &x->resp->bodylen, x->max, p,
                               sz * n, &x->too_big);
}

/* Keeps the header value of |name| (last one wins; interim 100 ignored). */
static int header_value(const char *line, size_t len, const char *name,
                        char *out, size_t outlen)
{
    size_t nl = strlen(name), vl;
    const char *v;

    if (len <= nl + 1 || strncasecmp(line, name, nl) != 0
        || line[nl] != ':') {
        return 0;
    }
    v = line + nl + 1;
    len -= nl + 1;
    while (len > 0 && (*v == ' ' || *v == '\t')) {
        v++;
        len--;
    }
    vl = len;
    while (vl > 0 && isspace((unsigned char)v[vl - 1])) {
        vl--;
    }
    if (vl >= outlen) {
        vl = outlen - 1;
    }
    memcpy(out, v, vl);
    out[vl] = '\0';
    return 1;
}

static size_t on_header(char *p, size_t sz, size_t n, void *u)
{
    struct xfer *x = u;
    size_t len = sz * n;

    if (len > 5 && strncmp(p, "HTTP/", 5) == 0) {
        /* a new response (after 100 Continue): forget the interim one */
        x->resp->content_type[0] = '\0';
        x->resp->retry_after[0] = '\0';
        x->resp->location[0] = '\0';
        return len;
    }
    header_value(p, len, "Content-Type", x->resp->content_type,
                 sizeof(x->resp->content_type));
    header_value(p, len, "Retry-After", x->resp->retry_after,
                 sizeof(x->resp->retry_after));
    header_value(p, len, "Location", x->resp->location,
                 sizeof(x->resp->location));
    return len;
}

/* curl's SSL_CTX gets the hardware key: TLS client auth signs in the token. */
static CURLcode on_ssl_ctx(CURL *c, void *sslctx, void *u)
{
    const KH_HTTP_OPTS *o = u;
    SSL_CTX *ctx = sslctx;
    int i;

    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    if (o->client_key == NULL || o->client_cert == NULL) {
        return CURLE_OK;
    }
    if (SSL_CTX_use_certificate(ctx, o->client_cert) != 1
        || SSL_CTX_use_PrivateKey(ctx, o->client_key) != 1) {
        return CURLE_SSL_CERTPROBLEM;
    }
    for (i = 0; i < sk_X509_num(o->client_chain); i++) {
        if (SSL_CTX_add1_chain_cert(ctx, sk_X509_value(o->client_chain, i))
            != 1) {
            return CURLE_SSL_CERTPROBLEM;
        }
    }
    return CURLE_OK;
}

int kh_http_backend_ok(char *err, size_t errlen)
{
    const curl_version_info_data *vi = curl_version_info(CURLVERSION_NOW);

    if (vi == NULL || vi->ssl_version == NULL
        || strncmp(vi->ssl_version, "OpenSSL", 7) != 0) {
        return kh_seterr(err, errlen, 0, "libcurl uses %s, not OpenSSL: the "
                         "hardware key cannot be handed to it (install "
                         "libcurl4, the OpenSSL flavour)",
                         vi != NULL && vi->ssl_version != NULL
                             ? vi->ssl_version : "no TLS"), 0;
    }
    return 1;
}

void kh_http_resp_clear(KH_HTTP_RESP *r)
{
    OPENSSL_free(r->body);
    memset(r, 0, sizeof(*r));
}

CURL *kh_http_curl_new(const char *protocols, long connect_timeout,
                       long timeout, curl_off_t max_body,
                       const char *server_ca, char *ebuf, char *err,
                       size_t errlen)
{
    static int global_done;
    CURL *c;

    if (!global_done) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
            kh_seterr(err, errlen, KH_EXIT_NETWORK,
                      "libcurl initialisation failed");
            return NULL;
        }
        global_done = 1;
    }
    c = curl_easy_init();
    if (c == NULL) {
        kh_seterr(err, errlen, KH_EXIT_NETWORK, "out of memory");
        return NULL;
    }
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, protocols);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, ebuf);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, connect_timeout);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, timeout);
    curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, max_body);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "keyhold/" KH_VERSION);
    if (server_ca != NULL) {
        /* only this anchor: not the system store as well */
        curl_easy_setopt(c, CURLOPT_CAINFO, server_ca);
        curl_easy_setopt(c, CURLOPT_CAPATH, NULL);
    }
    return c;
}

int kh_http_request(const KH_HTTP_OPTS *o, const char *method, const char *url,
                    const char *content_type, const void *body, size_t bodylen,
                    KH_HTTP_RESP *resp, char *err, size_t errlen)
{
    char ebuf[CURL_ERROR_SIZE] = "", ct[160];
    struct curl_slist *hdr = NULL;
    struct xfer x;
    CURLcode cc;
    CURL *c = NULL;
    int rc = KH_EXIT_NETWORK;

    memset(resp, 0, sizeof(*resp));
    if (strncasecmp(url, "https://", 8) != 0) {
        return kh_seterr(err, errlen, KH_EXIT_USAGE, "%s: enrolment needs an "
                         "https:// URL", url);
    }
    if (!kh_http_backend_ok(err, errlen)) {
        return KH_EXIT_NETWORK;
    }
    x.resp = resp;
    x.max = o->max_body != 0 ? o->max_body : KH_HTTP_MAX_BODY_DEFAULT;
    x.too_big = 0;
    c = kh_http_curl_new("https",
                         o->connect_timeout > 0 ? o->connect_timeout : 10L,
                         o->timeout > 0 ? o->timeout : 60L,
                         (curl_off_t)x.max, o->server_ca, ebuf, err, errlen);
    if (c == NULL) {
        return KH_EXIT_NETWORK;
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &x);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &x);
    curl_easy_setopt(c, CURLOPT_SSL_SESSIONID_CACHE, 0L);
    curl_easy_setopt(c, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
    curl_easy_setopt(c, CURLOPT_SSL_CTX_FUNCTION, on_ssl_ctx);
    curl_easy_setopt(c, CURLOPT_SSL_CTX_DATA, (void *)o);
    if (o->user != NULL && o->password != NULL) {
        curl_easy_setopt(c, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        curl_easy_setopt(c, CURLOPT_USERNAME, o->user);
        curl_easy_setopt(c, CURLOPT_PASSWORD, o->password);
    }
    /* no 100-continue round trip: EST bodies are small */
    hdr = curl_slist_append(hdr, "Expect:");
    if (content_type != NULL) {
        snprintf(ct, sizeof(ct), "Content-Type: %s", content_type);
        hdr = curl_slist_append(hdr, ct);
        if (bodylen > 0) {
            hdr = curl_slist_append(hdr, "Content-Transfer-Encoding: base64");
        }
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr);
    if (strcmp(method, "POST") == 0) {
        curl_easy_setopt(c, CURLOPT_POST, 1L);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)bodylen);
    } else {
        curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    }
    cc = curl_easy_perform(c);
    if (cc != CURLE_OK) {
        if (x.too_big || cc == CURLE_FILESIZE_EXCEEDED) {
            kh_seterr(err, errlen, 0, "%s: response larger than %zu bytes "
                      "(refused)", url, x.max);
        } else {
            kh_seterr(err, errlen, 0, "%s: %s%s%s", url,
                      curl_easy_strerror(cc), ebuf[0] ? ": " : "", ebuf);
        }
        kh_http_resp_clear(resp);
        goto end;
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &resp->status);
    rc = KH_EXIT_OK;
end:
    curl_slist_free_all(hdr);
    curl_easy_cleanup(c);
    return rc;
}
