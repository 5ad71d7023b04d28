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
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>

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

static void *listener(void *arg)
{
    KH_ACME_CHAL *c = arg;
    struct pollfd pf;
    int fd;

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
        if (fd >= 0) {
            serve_one(c, fd);
        }
    }
    return NULL;
}

int kh_acme_chal_start(KH_ACME_CHAL *c, const char *addr, int port,
                       const char *webroot, char *err, size_t errlen)
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
        return kh_seterr(err, errlen, KH_EXIT_NETWORK, "http-01 listener on "
                         "port %d: %s (free the port, choose another with "
                         "--challenge-port and forward port 80 to it, or "
                         "use --webroot DIR of the web server there)", port,
                         strerror(rc));
    }
    c->fd = fd;
    if (pthread_create(&c->th, NULL, listener, c) != 0) {
        close(fd);
        c->fd = -1;
        return kh_seterr(err, errlen, KH_EXIT_NETWORK, "http-01 listener: "
                         "no thread");
    }
    c->running = 1;
    return KH_EXIT_OK;
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
