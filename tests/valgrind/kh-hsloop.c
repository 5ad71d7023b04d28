/* SPDX-License-Identifier: MIT */
/*
 * kh-hsloop: many full TLS handshakes (no resumption) against a server, for
 * the stability and worker scenarios (8, 17). Each connection verifies the
 * server's chain and name, reads one response and closes.
 *
 *   kh-hsloop -p PORT -C CAFILE [-n COUNT] [-V 1.2|1.3] [-H host] [-k]
 *   -k  keep going after a failed handshake (report the count at the end)
 * Prints "handshakes: OK/N failed: F"; exit 0 when F == 0.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

static int one_handshake(SSL_CTX *ctx, int port, const char *host)
{
    struct sockaddr_in sa;
    struct timeval tv = { 20, 0 };
    char buf[512];
    SSL *ssl = NULL;
    int fd, ok = 0, n;
    const char req[] = "GET / HTTP/1.0\r\n\r\n";

    fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) {
        perror("socket");
        return 0;
    }
    /* Bounded waits only: a hung server fails the run, never stalls it. */
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((unsigned short)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        perror("connect");
        goto end;
    }
    ssl = SSL_new(ctx);
    if (ssl == NULL || !SSL_set_fd(ssl, fd)
        || !SSL_set_tlsext_host_name(ssl, host) || !SSL_set1_host(ssl, host)) {
        goto end;
    }
    if (SSL_connect(ssl) != 1) {
        goto end;
    }
    if (SSL_get_verify_result(ssl) != X509_V_OK) {
        fprintf(stderr, "verify: %s\n",
                X509_verify_cert_error_string(SSL_get_verify_result(ssl)));
        goto end;
    }
    if (SSL_write(ssl, req, sizeof(req) - 1) <= 0) {
        goto end;
    }
    n = SSL_read(ssl, buf, sizeof(buf));
    if (n <= 0) {
        goto end;
    }
    ok = 1;
    SSL_shutdown(ssl);
end:
    if (!ok) {
        ERR_print_errors_fp(stderr);
    }
    ERR_clear_error();
    SSL_free(ssl);
    close(fd);
    return ok;
}

int main(int argc, char **argv)
{
    const char *ca = NULL, *host = "localhost", *ver = NULL;
    int port = 0, count = 100, keep = 0, c, i, good = 0, bad = 0;
    SSL_CTX *ctx;

    while ((c = getopt(argc, argv, "p:C:n:V:H:k")) != -1) {
        switch (c) {
        case 'p': port = atoi(optarg); break;
        case 'C': ca = optarg; break;
        case 'n': count = atoi(optarg); break;
        case 'V': ver = optarg; break;
        case 'H': host = optarg; break;
        case 'k': keep = 1; break;
        default:
            fprintf(stderr, "usage: kh-hsloop -p PORT -C CAFILE [-n N] "
                    "[-V 1.2|1.3] [-H host] [-k]\n");
            return 2;
        }
    }
    if (port <= 0 || ca == NULL || count < 1) {
        fprintf(stderr, "kh-hsloop: need -p PORT and -C CAFILE\n");
        return 2;
    }
    ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL || SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1) {
        ERR_print_errors_fp(stderr);
        return 2;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    if (ver != NULL) {
        int v = strcmp(ver, "1.2") == 0 ? TLS1_2_VERSION : TLS1_3_VERSION;

        SSL_CTX_set_min_proto_version(ctx, v);
        SSL_CTX_set_max_proto_version(ctx, v);
    }
    for (i = 0; i < count; i++) {
        if (one_handshake(ctx, port, host)) {
            good++;
        } else {
            bad++;
            if (!keep) {
                fprintf(stderr, "handshake %d failed\n", i + 1);
                break;
            }
        }
    }
    printf("handshakes: %d/%d failed: %d\n", good, count, bad);
    SSL_CTX_free(ctx);
    return bad == 0 && good == count ? 0 : 1;
}
