/* SPDX-License-Identifier: MIT */
/*
 * The HTTPS client of enrolment (EST now, ACME later): libcurl with its
 * OpenSSL backend. The identity's hardware key is handed to curl's SSL_CTX
 * (CURLOPT_SSL_CTX_FUNCTION) as an EVP_PKEY of the keyhold provider, so TLS
 * client authentication signs in the token. Redirects are refused, bodies
 * are bounded, every transfer has timeouts, response headers that enrolment
 * needs (Retry-After, Content-Type) are kept.
 */
#ifndef KH_PROVISION_HTTP_H
#define KH_PROVISION_HTTP_H

#include <stddef.h>
#include <time.h>
#include <curl/curl.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#define KH_HTTP_MAX_BODY_DEFAULT (1024 * 1024)

typedef struct kh_http_opts {
    const char *server_ca;          /* server's TLS trust; NULL: system */
    EVP_PKEY *client_key;           /* TLS client auth (borrowed) or NULL */
    X509 *client_cert;              /* borrowed */
    STACK_OF(X509) *client_chain;   /* borrowed, may be NULL */
    const char *user;               /* HTTP basic auth, may be NULL */
    const char *password;           /* borrowed; the caller wipes it */
    long connect_timeout;           /* seconds (0: 10) */
    long timeout;                   /* seconds for the whole transfer (0: 60) */
    size_t max_body;                /* 0: KH_HTTP_MAX_BODY_DEFAULT */
} KH_HTTP_OPTS;

typedef struct kh_http_resp {
    long status;
    char content_type[128];
    char retry_after[64];
    char location[256];
    unsigned char *body;            /* NUL-terminated, OPENSSL_malloc'd */
    size_t bodylen;
} KH_HTTP_RESP;

/*
 * One HTTPS request. KH_EXIT_OK when an HTTP response arrived (whatever its
 * status), KH_EXIT_NETWORK with err naming the failure (connection refused,
 * timeout, TLS verification, body too large, ...), KH_EXIT_USAGE for a URL
 * that is not https.
 */
int kh_http_request(const KH_HTTP_OPTS *o, const char *method, const char *url,
                    const char *content_type, const void *body, size_t bodylen,
                    KH_HTTP_RESP *resp, char *err, size_t errlen);
void kh_http_resp_clear(KH_HTTP_RESP *r);

/*
 * Retry-After (RFC 9110 10.2.3): delay-seconds or an HTTP-date. Sets *secs
 * (>= 0; a date in the past gives 0). 1 ok, 0 unparsable. No side effects
 * (fuzzed).
 */
int kh_http_parse_retry_after(const char *value, time_t now, long *secs);

/* 1 when libcurl uses OpenSSL (needed to hand it the provider's key). */
int kh_http_backend_ok(char *err, size_t errlen);

/*
 * For libcurl write callbacks: appends N bytes of a response body to *BUF
 * (*LEN bytes so far; OPENSSL_realloc'd, kept NUL-terminated) unless the
 * body would grow past MAX bytes. Returns N, or 0 (libcurl then stops)
 * with *TOO_BIG set when the bound was hit.
 */
size_t kh_http_body_append(unsigned char **buf, size_t *len, size_t max,
                           const void *data, size_t n, int *too_big);

/*
 * A libcurl handle (libcurl initialised on first use) with what every
 * enrolment transfer asks for: PROTOCOLS only ("https", "http,https"), no
 * redirects, no signals, curl's error text in EBUF (CURL_ERROR_SIZE), the
 * two timeouts in seconds, bodies larger than MAX_BODY refused, the peer
 * and its name verified, keyhold's user agent and, when SERVER_CA is given,
 * that anchor alone. The caller sets the URL and the rest. NULL with err
 * set when libcurl cannot be set up.
 */
CURL *kh_http_curl_new(const char *protocols, long connect_timeout,
                       long timeout, curl_off_t max_body,
                       const char *server_ca, char *ebuf, char *err,
                       size_t errlen);

#endif
