/* SPDX-License-Identifier: MIT */
/*
 * keyhold-estd: one connection = one TLS handshake, one HTTP/1.1 request,
 * one response (Connection: close). Parses only what EST needs, with hard
 * limits on header and body size and a timeout on every read and write.
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <openssl/err.h>
#include <openssl/rand.h>

#include "estd.h"

#define HDR_MAX 16384

static const char *reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 411: return "Length Required";
    case 413: return "Payload Too Large";
    case 415: return "Unsupported Media Type";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    default: return "Status";
    }
}

int estd_http_date(time_t t, char *buf, size_t len)
{
    struct tm tm;

    gmtime_r(&t, &tm);
    return strftime(buf, len, "%a, %d %b %Y %H:%M:%S GMT", &tm) > 0;
}

static int write_all(SSL *ssl, const void *buf, size_t len)
{
    const unsigned char *p = buf;
    size_t done;

    while (len > 0) {
        if (SSL_write_ex(ssl, p, len, &done) != 1) {
            return 0;
        }
        p += done;
        len -= done;
    }
    return 1;
}

/* A text/plain answer: the reason is shown to the client's user. */
static void set_text(ESTD_RESPONSE *r, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_text(ESTD_RESPONSE *r, int status, const char *fmt, ...)
{
    char msg[600];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(msg, sizeof(msg) - 1, fmt, ap);
    va_end(ap);
    if (n < 0) {
        n = 0;
    }
    if ((size_t)n > sizeof(msg) - 2) {
        n = sizeof(msg) - 2;
    }
    snprintf(r->note, sizeof(r->note), "%.*s", (int)sizeof(r->note) - 1,
             msg);
    msg[n++] = '\n';
    OPENSSL_free(r->body);
    r->body = OPENSSL_memdup(msg, (size_t)n);
    r->bodylen = r->body != NULL ? (size_t)n : 0;
    r->status = status;
    r->content_type = "text/plain; charset=utf-8";
}

static void send_response(SSL *ssl, ESTD_RESPONSE *r)
{
    char head[1024], date[64];
    int n;

    estd_http_date(time(NULL), date, sizeof(date));
    n = snprintf(head, sizeof(head),
                 "HTTP/1.1 %d %s\r\n"
                 "Date: %s\r\n"
                 "Server: keyhold-estd\r\n"
                 "%s%s%s"
                 "%s"
                 "Content-Length: %zu\r\n"
                 "Connection: close\r\n"
                 "\r\n",
                 r->status, reason(r->status), date,
                 r->content_type != NULL ? "Content-Type: " : "",
                 r->content_type != NULL ? r->content_type : "",
                 r->content_type != NULL ? "\r\n" : "",
                 r->headers, r->bodylen);
    if (n < 0 || (size_t)n >= sizeof(head)) {
        return;
    }
    if (write_all(ssl, head, (size_t)n) && r->bodylen > 0) {
        write_all(ssl, r->body, r->bodylen);
    }
}

static void set_pkcs7(ESTD_RESPONSE *r, unsigned char *b64, size_t len)
{
    OPENSSL_free(r->body);
    r->body = b64;
    r->bodylen = len;
    r->status = 200;
    r->content_type = "application/pkcs7-mime; smime-type=certs-only";
    snprintf(r->headers, sizeof(r->headers),
             "Content-Transfer-Encoding: base64\r\n");
}

/* The test knob --test-body: broken bodies a client must refuse. */
static int test_body(ESTD_SERVER *srv, ESTD_RESPONSE *r)
{
    static const char html[] =
        "<html><body><h1>Welcome</h1>captive portal</body></html>\n";
    char err[ESTD_ERRLEN];
    STACK_OF(X509) *none;
    unsigned char *b;
    size_t len, i;

    switch (srv->cfg.test_body) {
    case ESTD_BODY_HTML:
        r->body = OPENSSL_memdup(html, sizeof(html) - 1);
        r->bodylen = r->body != NULL ? sizeof(html) - 1 : 0;
        r->status = 200;
        r->content_type = "text/html";
        snprintf(r->note, sizeof(r->note), "test-body html");
        return 1;
    case ESTD_BODY_HUGE:
        len = 10u << 20;
        b = OPENSSL_malloc(len);
        if (b == NULL) {
            return 0;
        }
        for (i = 0; i < len; i++) {
            b[i] = (i % 65 == 64) ? '\n' : 'A';
        }
        set_pkcs7(r, b, len);
        snprintf(r->note, sizeof(r->note), "test-body huge");
        return 1;
    case ESTD_BODY_BAD_BASE64:
        b = (unsigned char *)OPENSSL_strdup("MIIB!!not*base64%%\n");
        if (b == NULL) {
            return 0;
        }
        set_pkcs7(r, b, strlen((char *)b));
        snprintf(r->note, sizeof(r->note), "test-body bad-base64");
        return 1;
    case ESTD_BODY_EMPTY_P7:
        none = sk_X509_new_null();
        if (none == NULL
            || !estd_ca_certs_only_b64(none, &b, &len, err, sizeof(err))) {
            sk_X509_free(none);
            return 0;
        }
        sk_X509_free(none);
        set_pkcs7(r, b, len);
        snprintf(r->note, sizeof(r->note), "test-body empty-p7");
        return 1;
    default:
        return 0;
    }
}

static void do_cacerts(ESTD_SERVER *srv, ESTD_RESPONSE *r)
{
    char err[ESTD_ERRLEN];
    unsigned char *b64;
    size_t len;

    if (test_body(srv, r)) {
        return;
    }
    if (!estd_ca_certs_only_b64(srv->ca_chain, &b64, &len, err,
                                sizeof(err))) {
        set_text(r, 500, "cannot encode CA certificates: %s", err);
        return;
    }
    set_pkcs7(r, b64, len);
    snprintf(r->note, sizeof(r->note), "%d CA certificate(s)",
             sk_X509_num(srv->ca_chain));
}

static void subject_line(X509 *x, char *buf, size_t len)
{
    char *s = X509_NAME_oneline(X509_get_subject_name(x), NULL, 0);

    snprintf(buf, len, "%s", s != NULL ? s : "?");
    OPENSSL_free(s);
}

/*
 * simpleenroll: a password from the htpasswd file and/or a client
 * certificate chaining to the bootstrap CA. Returns 1 and fills |who|.
 */
static int auth_enroll(ESTD_SERVER *srv, ESTD_REQUEST *q, ESTD_RESPONSE *r,
                       char *who, size_t wholen)
{
    ESTD_CONFIG *c = &srv->cfg;
    char user[128] = "", subj[256] = "", err[ESTD_ERRLEN] = "";
    int pw_ok = 0, cert_ok = 0;

    if (c->htpasswd != NULL && q->authorization[0] != '\0') {
        pw_ok = estd_auth_basic(srv, q->authorization, user, sizeof(user));
    }
    OPENSSL_cleanse(q->authorization, sizeof(q->authorization));
    if (c->client_ca != NULL && q->peer_cert != NULL) {
        cert_ok = estd_auth_cert(srv->bootstrap_store, q->peer_cert,
                                 q->peer_chain, err, sizeof(err));
        subject_line(q->peer_cert, subj, sizeof(subj));
    }
    if (c->htpasswd == NULL && c->client_ca == NULL) {
        snprintf(who, wholen, "anonymous");
        return 1;
    }
    if (c->require_both ? (pw_ok && cert_ok) : (pw_ok || cert_ok)) {
        snprintf(who, wholen, "%s%s%s%s", pw_ok ? "user " : "",
                 pw_ok ? user : "", pw_ok && cert_ok ? ", " : "",
                 cert_ok ? subj : "");
        return 1;
    }
    set_text(r, 401, "authentication failed: %s%s%s%s",
             user[0] != '\0' && !pw_ok ? "bad password for user " : "",
             user[0] != '\0' && !pw_ok ? user : "",
             q->peer_cert != NULL && !cert_ok && c->client_ca != NULL
                 ? " client certificate: " : "",
             q->peer_cert != NULL && !cert_ok && c->client_ca != NULL
                 ? err : "");
    if (user[0] == '\0' && q->peer_cert == NULL) {
        set_text(r, 401, "authentication required (%s)",
                 c->htpasswd != NULL && c->client_ca != NULL
                     ? "password or bootstrap certificate"
                     : c->htpasswd != NULL ? "password"
                     : "bootstrap client certificate");
    }
    if (c->htpasswd != NULL) {
        snprintf(r->headers, sizeof(r->headers),
                 "WWW-Authenticate: Basic realm=\"keyhold-estd\"\r\n");
    }
    return 0;
}

static void do_enroll(ESTD_SERVER *srv, ESTD_REQUEST *q, ESTD_RESPONSE *r,
                      int reenroll)
{
    ESTD_CONFIG *c = &srv->cfg;
    char who[400] = "", err[ESTD_ERRLEN] = "", id[80] = "", date[64];
    char subj[256];
    X509_REQ *csr = NULL;
    X509 *cert = NULL;
    STACK_OF(X509) *one = NULL;
    unsigned char *b64;
    size_t len;
    int rc;

    if (reenroll) {
        OPENSSL_cleanse(q->authorization, sizeof(q->authorization));
        if (q->peer_cert == NULL) {
            set_text(r, 401, "simplereenroll needs the current certificate "
                     "as TLS client certificate");
            goto end;
        }
        if (!estd_auth_cert(srv->reenroll_store, q->peer_cert, q->peer_chain,
                            err, sizeof(err))) {
            set_text(r, 401, "client certificate not accepted for "
                     "re-enrolment: %s", err);
            goto end;
        }
        subject_line(q->peer_cert, who, sizeof(who));
    } else if (!auth_enroll(srv, q, r, who, sizeof(who))) {
        goto end;
    }
    if (c->test_status != 0) {
        set_text(r, c->test_status, "test-status %d", c->test_status);
        if (c->test_status == 503) {
            snprintf(r->headers, sizeof(r->headers), "Retry-After: %ld\r\n",
                     c->retry_after);
        }
        goto end;
    }
    if (strncasecmp(q->content_type, "application/pkcs10", 18) != 0) {
        set_text(r, 415, "Content-Type must be application/pkcs10");
        goto end;
    }
    csr = estd_ca_parse_csr(q->body, q->bodylen, err, sizeof(err));
    if (csr == NULL) {
        set_text(r, 400, "CSR rejected: %s", err);
        goto end;
    }
    if (reenroll && !c->reenroll_any_names
        && !estd_ca_same_names(csr, q->peer_cert, err, sizeof(err))) {
        set_text(r, 400, "re-enrolment CSR rejected: %s", err);
        goto end;
    }
    if (c->manual) {
        rc = estd_auth_approval(srv, csr, who, id, sizeof(id), err,
                                sizeof(err));
        if (rc < 0) {
            set_text(r, rc == -2 ? 403 : 500, "%s", err);
            goto end;
        }
        if (rc == 0) {
            set_text(r, 202, "request %s waits for approval", id);
            if (c->retry_after_date) {
                estd_http_date(time(NULL) + c->retry_after, date,
                               sizeof(date));
                snprintf(r->headers, sizeof(r->headers),
                         "Retry-After: %s\r\n", date);
            } else {
                snprintf(r->headers, sizeof(r->headers),
                         "Retry-After: %ld\r\n", c->retry_after);
            }
            goto end;
        }
    }
    if (test_body(srv, r)) {
        goto end;
    }
    cert = estd_ca_issue(srv, csr, err, sizeof(err));
    if (cert == NULL) {
        set_text(r, 500, "cannot issue: %s", err);
        goto end;
    }
    one = sk_X509_new_null();
    if (one == NULL || !sk_X509_push(one, cert)
        || !estd_ca_certs_only_b64(one, &b64, &len, err, sizeof(err))) {
        set_text(r, 500, "cannot encode the certificate");
        goto end;
    }
    set_pkcs7(r, b64, len);
    {
        ASN1_INTEGER *sn = X509_get_serialNumber(cert);
        BIGNUM *bn = ASN1_INTEGER_to_BN(sn, NULL);
        char *hex = bn != NULL ? BN_bn2hex(bn) : NULL;

        subject_line(cert, subj, sizeof(subj));
        snprintf(r->note, sizeof(r->note), "issued %s serial %s to %s%s%s",
                 subj, hex != NULL ? hex : "?", who, id[0] ? " request " : "",
                 id);
        OPENSSL_free(hex);
        BN_free(bn);
    }
end:
    if (r->status >= 400 && who[0] != '\0') {
        size_t n = strlen(r->note);

        snprintf(r->note + n, sizeof(r->note) - n, " (client %s)", who);
    }
    sk_X509_free(one);
    X509_free(cert);
    X509_REQ_free(csr);
}

/* Splits /.well-known/est[/LABEL]/OP; returns OP or NULL. */
static const char *est_op(ESTD_SERVER *srv, const char *path, char *label,
                          size_t labellen)
{
    static const char pfx[] = "/.well-known/est/";
    const char *p, *slash;
    size_t n;

    label[0] = '\0';
    if (strncmp(path, pfx, sizeof(pfx) - 1) != 0) {
        return NULL;
    }
    p = path + sizeof(pfx) - 1;
    slash = strchr(p, '/');
    if (slash != NULL) {
        n = (size_t)(slash - p);
        if (n == 0 || n >= labellen || strchr(slash + 1, '/') != NULL) {
            return NULL;
        }
        memcpy(label, p, n);
        label[n] = '\0';
        p = slash + 1;
    }
    if (srv->cfg.label != NULL && strcmp(label, srv->cfg.label) != 0) {
        return NULL;
    }
    return p;
}

static void route(ESTD_SERVER *srv, ESTD_REQUEST *q, ESTD_RESPONSE *r)
{
    char label[64];
    const char *op = est_op(srv, q->path, label, sizeof(label));
    int get = strcmp(q->method, "GET") == 0;
    int post = strcmp(q->method, "POST") == 0;

    if (op == NULL) {
        set_text(r, 404, "no such EST resource");
        return;
    }
    if (strcmp(op, "cacerts") == 0) {
        if (!get) {
            goto method;
        }
        do_cacerts(srv, r);
    } else if (strcmp(op, "simpleenroll") == 0
               || strcmp(op, "simplereenroll") == 0) {
        if (!post) {
            goto post_only;
        }
        do_enroll(srv, q, r, op[6] == 'r');
    } else if (strcmp(op, "csrattrs") == 0) {
        if (!get) {
            goto method;
        }
        r->status = 204;
        snprintf(r->note, sizeof(r->note), "no CSR attributes required");
    } else if (strcmp(op, "serverkeygen") == 0) {
        set_text(r, 501, "server-side key generation is not offered: keys "
                 "are made in the client's hardware");
    } else {
        set_text(r, 404, "no such EST operation");
    }
    return;
method:
    set_text(r, 405, "use GET");
    snprintf(r->headers, sizeof(r->headers), "Allow: GET\r\n");
    return;
post_only:
    set_text(r, 405, "use POST");
    snprintf(r->headers, sizeof(r->headers), "Allow: POST\r\n");
}

static void trim(char *s)
{
    size_t n = strlen(s);

    while (n > 0 && isspace((unsigned char)s[n - 1])) {
        s[--n] = '\0';
    }
}

/*
 * Parses the request head in |buf| (NUL-terminated, ends with CRLFCRLF).
 * Returns 0 or an HTTP status for the error.
 */
static int parse_head(char *buf, ESTD_REQUEST *q)
{
    char *line, *save = NULL, *colon, *v, *sp1, *sp2;
    int first = 1;

    q->content_length = -1;
    for (line = strtok_r(buf, "\r\n", &save); line != NULL;
         line = strtok_r(NULL, "\r\n", &save)) {
        if (first) {
            first = 0;
            sp1 = strchr(line, ' ');
            sp2 = sp1 != NULL ? strchr(sp1 + 1, ' ') : NULL;
            if (sp1 == NULL || sp2 == NULL
                || (size_t)(sp1 - line) >= sizeof(q->method)
                || (size_t)(sp2 - sp1 - 1) >= sizeof(q->path)
                || strncmp(sp2 + 1, "HTTP/1.", 7) != 0) {
                return 400;
            }
            memcpy(q->method, line, (size_t)(sp1 - line));
            q->method[sp1 - line] = '\0';
            memcpy(q->path, sp1 + 1, (size_t)(sp2 - sp1 - 1));
            q->path[sp2 - sp1 - 1] = '\0';
            /* a query string plays no part in EST */
            v = strchr(q->path, '?');
            if (v != NULL) {
                *v = '\0';
            }
            continue;
        }
        colon = strchr(line, ':');
        if (colon == NULL) {
            return 400;
        }
        *colon = '\0';
        v = colon + 1;
        while (*v == ' ' || *v == '\t') {
            v++;
        }
        trim(v);
        if (strcasecmp(line, "Content-Length") == 0) {
            char *end;

            errno = 0;
            q->content_length = strtol(v, &end, 10);
            if (errno != 0 || *v == '\0' || *end != '\0'
                || q->content_length < 0) {
                return 400;
            }
        } else if (strcasecmp(line, "Content-Type") == 0) {
            snprintf(q->content_type, sizeof(q->content_type), "%s", v);
        } else if (strcasecmp(line, "Authorization") == 0) {
            if (strlen(v) >= sizeof(q->authorization)) {
                return 431;
            }
            snprintf(q->authorization, sizeof(q->authorization), "%s", v);
        } else if (strcasecmp(line, "Expect") == 0) {
            q->expect_continue = strcasecmp(v, "100-continue") == 0;
        } else if (strcasecmp(line, "Transfer-Encoding") == 0) {
            return 411;
        }
    }
    return first ? 400 : 0;
}

void estd_http_serve(ESTD_SERVER *srv, int fd, const char *peer)
{
    struct timeval tv = { .tv_sec = srv->cfg.io_timeout };
    ESTD_REQUEST q;
    ESTD_RESPONSE r;
    char *head = NULL, *end = NULL;
    size_t have = 0, got, body_have = 0;
    SSL *ssl = NULL;
    int status;
    const char *ver = "-";

    memset(&q, 0, sizeof(q));
    memset(&r, 0, sizeof(r));
    snprintf(q.peer, sizeof(q.peer), "%s", peer);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));

    ssl = SSL_new(srv->ssl_ctx);
    if (ssl == NULL || SSL_set_fd(ssl, fd) != 1) {
        goto end;
    }
    if (SSL_accept(ssl) != 1) {
        unsigned long e = ERR_peek_last_error();

        estd_log(srv, "%s: TLS handshake failed: %s", peer,
                 e != 0 ? ERR_reason_error_string(e) : "connection closed");
        goto end;
    }
    ver = SSL_get_version(ssl);
    q.peer_cert = SSL_get0_peer_certificate(ssl);
    q.peer_chain = SSL_get_peer_cert_chain(ssl);

    head = OPENSSL_malloc(HDR_MAX + 1);
    if (head == NULL) {
        goto end;
    }
    while (end == NULL) {
        if (have == HDR_MAX) {
            set_text(&r, 431, "request head larger than %d bytes", HDR_MAX);
            goto respond;
        }
        if (SSL_read_ex(ssl, head + have, HDR_MAX - have, &got) != 1) {
            estd_log(srv, "%s: %s: connection closed or timed out before a "
                     "complete request", peer, ver);
            goto end;
        }
        have += got;
        head[have] = '\0';
        end = strstr(head, "\r\n\r\n");
    }
    body_have = have - (size_t)(end + 4 - head);
    end[2] = '\0';
    status = parse_head(head, &q);
    if (status != 0) {
        set_text(&r, status, "malformed or unsupported request");
        goto respond;
    }
    if (strcmp(q.method, "POST") == 0) {
        if (q.content_length < 0) {
            set_text(&r, 411, "Content-Length required");
            goto respond;
        }
        if ((size_t)q.content_length > srv->cfg.max_request) {
            set_text(&r, 413, "request body of %ld bytes exceeds the limit "
                     "of %zu", q.content_length, srv->cfg.max_request);
            goto respond;
        }
        if (body_have > (size_t)q.content_length) {
            set_text(&r, 400, "more data than Content-Length");
            goto respond;
        }
        q.body = OPENSSL_malloc((size_t)q.content_length + 1);
        if (q.body == NULL) {
            set_text(&r, 500, "out of memory");
            goto respond;
        }
        memcpy(q.body, end + 4, body_have);
        if (q.expect_continue && body_have < (size_t)q.content_length) {
            static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";

            if (!write_all(ssl, cont, sizeof(cont) - 1)) {
                goto end;
            }
        }
        while (body_have < (size_t)q.content_length) {
            if (SSL_read_ex(ssl, q.body + body_have,
                            (size_t)q.content_length - body_have,
                            &got) != 1) {
                estd_log(srv, "%s: body incomplete (%zu of %ld bytes)", peer,
                         body_have, q.content_length);
                goto end;
            }
            body_have += got;
        }
        q.bodylen = body_have;
    }
    route(srv, &q, &r);
respond:
    send_response(ssl, &r);
    estd_log(srv, "%s %s %s %s -> %d %s", peer, ver,
             q.method[0] ? q.method : "-", q.path[0] ? q.path : "-",
             r.status, r.note);
    if (r.status >= 400) {
        /*
         * The client may still be sending what we refused to read (a body
         * over the limit, a huge head): closing with unread input resets
         * the connection, which can destroy our answer in its receive
         * buffer. Read and drop a bounded amount for a short while first,
         * until the client stops sending or closes.
         */
        struct timeval lv = { .tv_sec = 1 };
        unsigned char sink[4096];
        size_t dropped = 0;
        time_t until = time(NULL) + 2;

        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &lv, sizeof(lv));
        while (dropped < (1u << 20) && time(NULL) < until
               && SSL_read_ex(ssl, sink, sizeof(sink), &got) == 1) {
            dropped += got;
        }
        ERR_clear_error();
    }
    SSL_shutdown(ssl);
end:
    OPENSSL_cleanse(q.authorization, sizeof(q.authorization));
    if (head != NULL) {
        /* the head held the Authorization header too */
        OPENSSL_clear_free(head, HDR_MAX + 1);
    }
    OPENSSL_free(q.body);
    OPENSSL_free(r.body);
    SSL_free(ssl);
}
