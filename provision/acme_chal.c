/* SPDX-License-Identifier: MIT */
/*
 * ACME http-01 responders (RFC 8555 8.3): a small HTTP/1.x listener of our
 * own, on the configured port, answering only
 * GET /.well-known/acme-challenge/TOKEN with the key authorization while an
 * order is validated; or files written into a web root served by someone
 * else. Nothing secret is served: a key authorization is public.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <openssl/err.h>
#include <openssl/sha.h>
#include <openssl/x509v3.h>

#include "keyhold.h"
#include "acme_chal.h"

#define WK "/.well-known/acme-challenge/"

static const char *lookup(KH_ACME_CHAL *c, const char *tok, size_t n)
{
    int i;

    for (i = 0; i < c->n; i++) {
        if (strlen(c->token[i]) == n && memcmp(c->token[i], tok, n) == 0) {
            return c->keyauth[i];
        }
    }
    return NULL;
}

static void serve_one(KH_ACME_CHAL *c, int fd)
{
    char req[2048], resp[512];
    const char *ka = NULL, *p, *sp;
    struct timeval tv = { 3, 0 };
    size_t got = 0;
    ssize_t r;
    int len;

    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    while (got < sizeof(req) - 1) {
        r = recv(fd, req + got, sizeof(req) - 1 - got, 0);
        if (r <= 0) {
            break;
        }
        got += (size_t)r;
        req[got] = '\0';
        if (strstr(req, "\r\n\r\n") != NULL || strstr(req, "\n\n") != NULL) {
            break;
        }
    }
    req[got] = '\0';
    if (strncmp(req, "GET " WK, 4 + sizeof(WK) - 1) == 0) {
        p = req + 4 + sizeof(WK) - 1;
        sp = strpbrk(p, " \r\n?");
        if (sp != NULL) {
            pthread_mutex_lock(&c->mu);
            ka = lookup(c, p, (size_t)(sp - p));
            if (ka != NULL) {
                len = snprintf(resp, sizeof(resp), "HTTP/1.1 200 OK\r\n"
                               "Content-Type: application/octet-stream\r\n"
                               "Content-Length: %zu\r\nConnection: close"
                               "\r\n\r\n%s", strlen(ka), ka);
            }
            pthread_mutex_unlock(&c->mu);
        }
    }
    if (ka == NULL) {
        len = snprintf(resp, sizeof(resp), "HTTP/1.1 404 Not Found\r\n"
                       "Content-Length: 0\r\nConnection: close\r\n\r\n");
    }
    if (len > 0 && (size_t)len < sizeof(resp)) {
        (void)send(fd, resp, (size_t)len, MSG_NOSIGNAL);
    }
    shutdown(fd, SHUT_WR);
    close(fd);
}

/* RFC 8737 3: the certificate for the SNI name, only under acme-tls/1. */
static int on_sni(SSL *s, int *al, void *arg)
{
    KH_ACME_CHAL *c = arg;
    const char *name = SSL_get_servername(s, TLSEXT_NAMETYPE_host_name);
    int i, found = -1;

    pthread_mutex_lock(&c->mu);
    for (i = 0; i < c->n; i++) {
        if (name != NULL && strcasecmp(name, c->token[i]) == 0) {
            found = i;
        }
    }
    if (found < 0 && c->n == 1) {
        found = 0;
    }
    if (found >= 0) {
        SSL_use_certificate(s, c->cert[found]);
        SSL_use_PrivateKey(s, c->key);
    }
    pthread_mutex_unlock(&c->mu);
    if (found < 0) {
        *al = SSL_AD_UNRECOGNIZED_NAME;
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    }
    return SSL_TLSEXT_ERR_OK;
}

static int on_alpn(SSL *s, const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned int inlen, void *arg)
{
    static const unsigned char proto[] = "\x0a" "acme-tls/1";
    unsigned char *sel = NULL;

    if (SSL_select_next_proto(&sel, outlen, proto, sizeof(proto) - 1, in,
                              inlen) != OPENSSL_NPN_NEGOTIATED) {
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    }
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

static void serve_tls(KH_ACME_CHAL *c, int fd)
{
    struct timeval tv = { 3, 0 };
    SSL *s = SSL_new(c->tls);

    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (s != NULL && SSL_set_fd(s, fd) == 1 && SSL_accept(s) == 1) {
        SSL_shutdown(s);
    }
    SSL_free(s);
    ERR_clear_error();
    close(fd);
}

static void *listener(void *arg)
{
    KH_ACME_CHAL *c = arg;
    struct pollfd pf;
    sigset_t set;
    int fd;

    /* a validator hanging up mid-handshake must not kill keyhold: SIGPIPE
     * from this thread's writes stays blocked (the write gets EPIPE) */
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    for (;;) {
        pthread_mutex_lock(&c->mu);
        if (c->stop) {
            pthread_mutex_unlock(&c->mu);
            break;
        }
        pthread_mutex_unlock(&c->mu);
        pf.fd = c->fd;
        pf.events = POLLIN;
        pf.revents = 0;
        if (poll(&pf, 1, 200) <= 0) {
            continue;
        }
        fd = accept(c->fd, NULL, NULL);
        if (fd >= 0 && c->tls != NULL) {
            serve_tls(c, fd);
        } else if (fd >= 0) {
            serve_one(c, fd);
        }
    }
    return NULL;
}

static int start(KH_ACME_CHAL *c, const char *addr, int port,
                 const char *webroot, int tls, EVP_PKEY *key, char *err,
                 size_t errlen)
{
    struct sockaddr_in6 a6;
    struct sockaddr_in a4;
    int one = 1, fd = -1, rc;

    memset(c, 0, sizeof(*c));
    c->fd = -1;
    c->port = port;
    pthread_mutex_init(&c->mu, NULL);
    if (webroot != NULL) {
        snprintf(c->webroot, sizeof(c->webroot), "%s", webroot);
        return KH_EXIT_OK;
    }
    memset(&a4, 0, sizeof(a4));
    memset(&a6, 0, sizeof(a6));
    if (addr != NULL && inet_pton(AF_INET, addr, &a4.sin_addr) == 1) {
        a4.sin_family = AF_INET;
        a4.sin_port = htons((unsigned short)port);
        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    } else {
        if (addr != NULL && inet_pton(AF_INET6, addr, &a6.sin6_addr) != 1) {
            return kh_seterr(err, errlen, KH_EXIT_USAGE, "acme-challenge-"
                             "address '%s' is not an IP address", addr);
        }
        a6.sin6_family = AF_INET6;
        a6.sin6_port = htons((unsigned short)port);
        if (addr == NULL) {
            a6.sin6_addr = in6addr_any;
        }
        fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 && addr == NULL) {
            /* no IPv6 in this kernel: every IPv4 address then */
            a6.sin6_family = 0;
            a4.sin_family = AF_INET;
            a4.sin_port = htons((unsigned short)port);
            a4.sin_addr.s_addr = htonl(INADDR_ANY);
            fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        }
    }
    if (fd < 0) {
        return kh_seterr(err, errlen, KH_EXIT_NETWORK, "http-01 listener: "
                         "socket: %s", strerror(errno));
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    rc = a4.sin_family == AF_INET
             ? bind(fd, (struct sockaddr *)&a4, sizeof(a4))
             : bind(fd, (struct sockaddr *)&a6, sizeof(a6));
    if (rc != 0 || listen(fd, 16) != 0) {
        rc = errno;
        close(fd);
        return kh_seterr(err, errlen, KH_EXIT_NETWORK, "%s listener on "
                         "port %d: %s (free the port, choose another with "
                         "--challenge-port and forward port %d to it%s)",
                         tls ? "tls-alpn-01" : "http-01", port, strerror(rc),
                         tls ? 443 : 80, tls ? "" : ", or use --webroot DIR "
                         "of the web server there");
    }
    c->fd = fd;
    if (tls) {
        c->key = key;
        c->tls = SSL_CTX_new(TLS_server_method());
        if (c->tls == NULL) {
            close(fd);
            c->fd = -1;
            return kh_seterr(err, errlen, KH_EXIT_NETWORK, "tls-alpn-01 "
                             "listener: no TLS context");
        }
        SSL_CTX_set_min_proto_version(c->tls, TLS1_2_VERSION);
        SSL_CTX_set_tlsext_servername_callback(c->tls, on_sni);
        SSL_CTX_set_tlsext_servername_arg(c->tls, c);
        SSL_CTX_set_alpn_select_cb(c->tls, on_alpn, c);
    }
    if (pthread_create(&c->th, NULL, listener, c) != 0) {
        close(fd);
        c->fd = -1;
        return kh_seterr(err, errlen, KH_EXIT_NETWORK, "http-01 listener: "
                         "no thread");
    }
    c->running = 1;
    return KH_EXIT_OK;
}

int kh_acme_chal_start(KH_ACME_CHAL *c, const char *addr, int port,
                       const char *webroot, char *err, size_t errlen)
{
    return start(c, addr, port, webroot, 0, NULL, err, errlen);
}

int kh_acme_chal_start_tls(KH_ACME_CHAL *c, const char *addr, int port,
                           EVP_PKEY *key, char *err, size_t errlen)
{
    return start(c, addr, port, NULL, 1, key, err, errlen);
}

/* RFC 8737 3: SAN = the name, critical id-pe-acmeIdentifier holding the
 * SHA-256 of the key authorization; self-signed by the hardware key. */
int kh_acme_chal_add_tls(KH_ACME_CHAL *c, const char *name,
                         const char *keyauth, char *err, size_t errlen)
{
    unsigned char dg[32], *der = NULL;
    ASN1_OCTET_STRING *inner = NULL, *val = NULL;
    ASN1_OBJECT *oid = NULL;
    X509_EXTENSION *ext = NULL;
    X509V3_CTX v3;
    X509 *x = NULL;
    char san[300];
    int len, rc = KH_EXIT_TOKEN;

    if (c->n >= KH_ACME_CHAL_MAX || strlen(name) >= sizeof(c->token[0])
        || strchr(name, ',') != NULL) {
        return kh_seterr(err, errlen, KH_EXIT_USAGE, "tls-alpn-01: too many "
                         "or too long names");
    }
    SHA256((const unsigned char *)keyauth, strlen(keyauth), dg);
    inner = ASN1_OCTET_STRING_new();
    val = ASN1_OCTET_STRING_new();
    oid = OBJ_txt2obj("1.3.6.1.5.5.7.1.31", 1);
    x = X509_new();
    if (inner == NULL || val == NULL || oid == NULL || x == NULL
        || !ASN1_OCTET_STRING_set(inner, dg, sizeof(dg))
        || (len = i2d_ASN1_OCTET_STRING(inner, &der)) <= 0
        || !ASN1_OCTET_STRING_set(val, der, len)
        || (ext = X509_EXTENSION_create_by_OBJ(NULL, oid, 1, val)) == NULL
        || !X509_set_version(x, X509_VERSION_3)
        || !ASN1_INTEGER_set(X509_get_serialNumber(x), (long)time(NULL))
        || !X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN",
                                       MBSTRING_ASC,
                                       (const unsigned char *)name, -1, -1,
                                       0)
        || !X509_set_issuer_name(x, X509_get_subject_name(x))
        || X509_gmtime_adj(X509_getm_notBefore(x), -3600) == NULL
        || X509_gmtime_adj(X509_getm_notAfter(x), 7 * 86400) == NULL
        || !X509_set_pubkey(x, c->key)
        || !X509_add_ext(x, ext, -1)) {
        rc = kh_seterr(err, errlen, KH_EXIT_BROKEN, "tls-alpn-01: building "
                       "the acmeIdentifier certificate for %s failed", name);
        goto end;
    }
    X509_EXTENSION_free(ext);
    snprintf(san, sizeof(san), "DNS:%s", name);
    X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
    ext = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, san);
    if (ext == NULL || !X509_add_ext(x, ext, -1)) {
        rc = kh_seterr(err, errlen, KH_EXIT_REJECTED, "tls-alpn-01: '%s' is "
                       "not a DNS name", name);
        goto end;
    }
    if (X509_sign(x, c->key, EVP_sha256()) <= 0) {
        char e2[KH_ERR_MAX];

        rc = kh_prov_map_errors("sign", e2, sizeof(e2));
        rc = kh_seterr(err, errlen, rc, "tls-alpn-01: the hardware key "
                       "could not sign the acmeIdentifier certificate: %s",
                       e2);
        goto end;
    }
    pthread_mutex_lock(&c->mu);
    snprintf(c->token[c->n], sizeof(c->token[0]), "%s", name);
    c->cert[c->n] = x;
    x = NULL;
    c->n++;
    pthread_mutex_unlock(&c->mu);
    rc = KH_EXIT_OK;
end:
    OPENSSL_free(der);
    ASN1_OCTET_STRING_free(inner);
    ASN1_OCTET_STRING_free(val);
    ASN1_OBJECT_free(oid);
    X509_EXTENSION_free(ext);
    X509_free(x);
    return rc;
}

static int mkdirs(char *path)
{
    char *s;

    for (s = path + 1; *s != '\0'; s++) {
        if (*s == '/') {
            *s = '\0';
            if (mkdir(path, 0755) != 0 && errno != EEXIST) {
                *s = '/';
                return 0;
            }
            *s = '/';
        }
    }
    return mkdir(path, 0755) == 0 || errno == EEXIST;
}

int kh_acme_chal_add(KH_ACME_CHAL *c, const char *token, const char *keyauth,
                     char *err, size_t errlen)
{
    char dir[KH_PATH_MAX + 64], path[KH_PATH_MAX + 256];
    int fd, ok;

    /* tokens are base64url (RFC 8555 8.1): nothing else reaches a path */
    if (token[0] == '\0' || strspn(token, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdef"
                                   "ghijklmnopqrstuvwxyz0123456789-_")
                                != strlen(token)
        || strlen(token) >= sizeof(c->token[0])
        || strlen(keyauth) >= sizeof(c->keyauth[0])) {
        return kh_seterr(err, errlen, KH_EXIT_NETWORK, "the ACME server sent "
                         "a malformed challenge token");
    }
    if (c->n >= KH_ACME_CHAL_MAX) {
        return kh_seterr(err, errlen, KH_EXIT_USAGE, "more than %d names to "
                         "validate in one order", KH_ACME_CHAL_MAX);
    }
    if (c->webroot[0] != '\0') {
        snprintf(dir, sizeof(dir), "%s/.well-known/acme-challenge",
                 c->webroot);
        if (!mkdirs(dir)) {
            return kh_seterr(err, errlen, KH_EXIT_PERM, "web root %s: %s",
                             dir, strerror(errno));
        }
        snprintf(path, sizeof(path), "%s/%s", dir, token);
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW
                  | O_CLOEXEC, 0644);
        ok = fd >= 0 && write(fd, keyauth, strlen(keyauth))
                            == (ssize_t)strlen(keyauth);
        if (fd >= 0) {
            fchmod(fd, 0644);
            ok = close(fd) == 0 && ok;
        }
        if (!ok) {
            return kh_seterr(err, errlen, KH_EXIT_PERM, "web root file %s: "
                             "%s", path, strerror(errno));
        }
    }
    pthread_mutex_lock(&c->mu);
    snprintf(c->token[c->n], sizeof(c->token[0]), "%s", token);
    snprintf(c->keyauth[c->n], sizeof(c->keyauth[0]), "%s", keyauth);
    c->n++;
    pthread_mutex_unlock(&c->mu);
    return KH_EXIT_OK;
}

void kh_acme_chal_stop(KH_ACME_CHAL *c)
{
    char path[KH_PATH_MAX + 256];
    int i;

    if (c->running) {
        pthread_mutex_lock(&c->mu);
        c->stop = 1;
        pthread_mutex_unlock(&c->mu);
        pthread_join(c->th, NULL);
        c->running = 0;
    }
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
    for (i = 0; i < c->n; i++) {
        X509_free(c->cert[i]);
        c->cert[i] = NULL;
    }
    SSL_CTX_free(c->tls);
    c->tls = NULL;
    if (c->webroot[0] != '\0') {
        for (i = 0; i < c->n; i++) {
            snprintf(path, sizeof(path), "%s/.well-known/acme-challenge/%s",
                     c->webroot, c->token[i]);
            unlink(path);
        }
    }
    c->n = 0;
    pthread_mutex_destroy(&c->mu);
}
