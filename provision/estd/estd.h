/* SPDX-License-Identifier: MIT */
/*
 * keyhold-estd: a small RFC 7030 (EST) responder for tests and offline
 * factory stations. Shared declarations of its parts: the server loop and
 * options (estd_main.c), the HTTP exchange (estd_http.c), the issuing CA
 * (estd_ca.c) and client authentication and approval (estd_auth.c).
 */
#ifndef KH_ESTD_H
#define KH_ESTD_H

#include <pthread.h>
#include <stddef.h>
#include <time.h>
#include <openssl/evp.h>
#include <openssl/provider.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#define ESTD_ERRLEN 256

/* Deliberately wrong certificates, for testing clients' refusals only. */
enum estd_test_issue {
    ESTD_TEST_NONE = 0,
    ESTD_TEST_WRONG_KEY,      /* certifies another (fresh) key */
    ESTD_TEST_WRONG_HOST,     /* CN and SAN name another host */
    ESTD_TEST_EXPIRED,        /* validity ended yesterday */
    ESTD_TEST_NOT_YET_VALID,  /* validity starts tomorrow */
    ESTD_TEST_OTHER_CA,       /* signed by a CA that /cacerts never shows */
    ESTD_TEST_NO_SERVER_AUTH, /* EKU clientAuth only */
    ESTD_TEST_CA_TRUE         /* basicConstraints CA:TRUE */
};

/* Deliberately broken response bodies (test only). */
enum estd_test_body {
    ESTD_BODY_OK = 0,
    ESTD_BODY_HTML,           /* 200 with an HTML page */
    ESTD_BODY_HUGE,           /* 200 with 10 MiB of base64 */
    ESTD_BODY_BAD_BASE64,     /* 200 with characters outside base64 */
    ESTD_BODY_EMPTY_P7        /* 200 with a certs-only PKCS#7 holding 0 certs */
};

typedef struct estd_config {
    /* listener */
    const char *listen;           /* HOST:PORT or [V6]:PORT */
    int max_clients;
    int io_timeout;               /* seconds per read/write */
    size_t max_request;           /* body bytes */
    const char *label;            /* NULL: any /.well-known/est[/LABEL] */
    const char *log_path;
    const char *pid_file;
    const char *provider_path;
    /* TLS server identity */
    const char *tls_cert;
    const char *tls_key;
    const char *tls_chain;
    /* issuing CA */
    const char *ca_cert;
    const char *ca_key;
    const char *ca_chain;         /* intermediates and root for /cacerts */
    const char *pin_file;         /* PIN for token keys without pin-source */
    long validity_days;
    long validity_seconds;        /* overrides days when > 0 (test, short) */
    /* client authentication */
    const char *htpasswd;
    const char *client_ca;        /* bootstrap CA for simpleenroll */
    int require_both;             /* basic auth AND client cert */
    int reenroll_any_names;       /* let simplereenroll change names */
    /* manual approval */
    const char *spool;
    int manual;
    long retry_after;
    int retry_after_date;         /* send an HTTP-date, not seconds */
    /* test knobs */
    enum estd_test_issue test_issue;
    enum estd_test_body test_body;
    int test_status;              /* answer enrolments with this status */
} ESTD_CONFIG;

typedef struct estd_server {
    ESTD_CONFIG cfg;
    SSL_CTX *ssl_ctx;
    X509 *ca_cert;
    EVP_PKEY *ca_key;
    STACK_OF(X509) *ca_chain;     /* what /cacerts returns: CA + chain */
    X509_STORE *bootstrap_store;  /* simpleenroll client certificates */
    X509_STORE *reenroll_store;   /* simplereenroll: issued by our CA */
    pthread_mutex_t sign_lock;    /* one signature at a time on the CA key */
    pthread_mutex_t log_lock;
    FILE *log;
    /* test knob other-ca: an in-memory CA nobody trusts */
    X509 *other_ca_cert;
    EVP_PKEY *other_ca_key;
    volatile int active;          /* connections being served */
    OSSL_PROVIDER *prov_default;
    OSSL_PROVIDER *prov_keyhold;
} ESTD_SERVER;

/* One HTTP request, as far as EST needs it. */
typedef struct estd_request {
    char method[8];
    char path[512];
    char content_type[128];
    char authorization[512];      /* wiped after use */
    int expect_continue;
    long content_length;
    unsigned char *body;
    size_t bodylen;
    /* connection facts */
    char peer[64];
    X509 *peer_cert;              /* borrowed from the SSL */
    STACK_OF(X509) *peer_chain;   /* borrowed */
} ESTD_REQUEST;

/* A response to send: status, extra headers and body. */
typedef struct estd_response {
    int status;
    const char *content_type;
    char headers[512];
    unsigned char *body;          /* OPENSSL_malloc'd */
    size_t bodylen;
    char note[1024];              /* for the log line: who, what, why */
} ESTD_RESPONSE;

/* estd_main.c */
void estd_log(ESTD_SERVER *srv, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
EVP_PKEY *estd_load_key(const char *uri, const char *pin_file, char *err,
                        size_t errlen);

/* estd_http.c */
void estd_http_serve(ESTD_SERVER *srv, int fd, const char *peer);
int estd_http_date(time_t t, char *buf, size_t len);

/* estd_ca.c */
int estd_ca_init(ESTD_SERVER *srv, char *err, size_t errlen);
/* Issues a certificate for |csr|; returns a new X509 or NULL with err. */
X509 *estd_ca_issue(ESTD_SERVER *srv, X509_REQ *csr, char *err,
                    size_t errlen);
/* Base64 of a certs-only CMS/PKCS#7 with |certs|; OPENSSL_malloc'd. */
int estd_ca_certs_only_b64(STACK_OF(X509) *certs, unsigned char **out,
                           size_t *outlen, char *err, size_t errlen);
/* Parses a base64 or DER PKCS#10 body and checks its signature. */
X509_REQ *estd_ca_parse_csr(const unsigned char *body, size_t len, char *err,
                            size_t errlen);
/* RFC 7030 4.2.2: subject and SAN of the CSR equal those of |cert|. */
int estd_ca_same_names(X509_REQ *csr, X509 *cert, char *err, size_t errlen);

/* estd_auth.c */
/* 1: user:password valid for the htpasswd file; 0: not. |user| gets the
 * user name for the log (NUL-terminated, may be empty). */
int estd_auth_basic(ESTD_SERVER *srv, const char *authorization, char *user,
                    size_t userlen);
/* 1: peer cert chains to |store| and is valid now; err says why not. */
int estd_auth_cert(X509_STORE *store, X509 *cert, STACK_OF(X509) *chain,
                   char *err, size_t errlen);
/* Manual approval: 1 approved, 0 pending (recorded in spool), -1 error. */
int estd_auth_approval(ESTD_SERVER *srv, X509_REQ *csr, const char *who,
                       char *id, size_t idlen, char *err, size_t errlen);
/* Command-line actions on the spool. */
/* Approves (or rejects) pending request ID ("all": every one). */
int estd_spool_decide(const char *spool, const char *id, int approve);
int estd_spool_list(const char *spool);
/* Reads a password from stdin and prints a salted crypt(3) hash. */
int estd_hash_password(void);

#endif
