/* SPDX-License-Identifier: MIT */
/* ACME http-01 responders: our own loopback/any listener or a web root. */
#ifndef KH_PROVISION_ACME_CHAL_H
#define KH_PROVISION_ACME_CHAL_H

#include <pthread.h>
#include <stddef.h>
#include <openssl/ssl.h>

#define KH_ACME_CHAL_MAX 32

typedef struct kh_acme_chal {
    int fd;                         /* listening socket or -1 */
    int running, stop, n, port;
    pthread_t th;
    pthread_mutex_t mu;
    char webroot[4096];             /* "" when we serve ourselves */
    char token[KH_ACME_CHAL_MAX][128];
    char keyauth[KH_ACME_CHAL_MAX][256];
    /* tls-alpn-01 (RFC 8737): one acmeIdentifier certificate per name,
     * each self-signed by the hardware key |key| (borrowed) */
    SSL_CTX *tls;
    EVP_PKEY *key;
    X509 *cert[KH_ACME_CHAL_MAX];
} KH_ACME_CHAL;

/* Listens on addr (NULL: every address, IPv6 and IPv4) : port, or only
 * remembers |webroot| when given. KH_EXIT_* with err. */
int kh_acme_chal_start(KH_ACME_CHAL *c, const char *addr, int port,
                       const char *webroot, char *err, size_t errlen);
/* tls-alpn-01: a TLS listener on addr:port answering ALPN acme-tls/1 with
 * certificates made by kh_acme_chal_add_tls. */
int kh_acme_chal_start_tls(KH_ACME_CHAL *c, const char *addr, int port,
                           EVP_PKEY *key, char *err, size_t errlen);
/* Serves the acmeIdentifier certificate for |name| (SNI) from now on. */
int kh_acme_chal_add_tls(KH_ACME_CHAL *c, const char *name,
                         const char *keyauth, char *err, size_t errlen);
/* Serves token -> keyauth from now on (writes the web root file). */
int kh_acme_chal_add(KH_ACME_CHAL *c, const char *token, const char *keyauth,
                     char *err, size_t errlen);
/* Stops the listener, removes web root files. */
void kh_acme_chal_stop(KH_ACME_CHAL *c);

#endif
