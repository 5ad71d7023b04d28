/* SPDX-License-Identifier: MIT */
/*
 * keyhold-estd: options, key loading (files, key references and pkcs11:
 * URIs through the keyhold provider), the TLS listener and the bounded pool
 * of connection threads.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/provider.h>
#include <openssl/store.h>
#include <openssl/ui.h>

#include "estd.h"
#include "kh_keyref.h"
#include "kh_pin.h"

static volatile sig_atomic_t stopping;
static pthread_mutex_t slot_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t slot_cond = PTHREAD_COND_INITIALIZER;

struct conn {
    ESTD_SERVER *srv;
    int fd;
    char peer[64];
};

static void usage(FILE *f)
{
    fprintf(f,
"usage: keyhold-estd --listen HOST:PORT --tls-cert FILE --tls-key KEY\n"
"                    --ca-cert FILE --ca-key KEY [options]\n"
"       keyhold-estd --spool DIR --approve ID|all | --reject ID\n"
"       keyhold-estd --spool DIR --list-pending\n"
"       keyhold-estd --hash-password   (reads a password on stdin)\n"
"\n"
"An EST (RFC 7030) server: /.well-known/est[/LABEL]/cacerts, simpleenroll,\n"
"simplereenroll (and csrattrs, answered 204). KEY is a PEM file, a keyhold\n"
"key reference file, or a pkcs11: URI loaded through the keyhold provider.\n"
"\n"
"Listener and TLS:\n"
"  --listen HOST:PORT      address to listen on ([::1]:PORT for IPv6)\n"
"  --tls-cert FILE         server certificate (PEM)\n"
"  --tls-key KEY           its private key\n"
"  --tls-chain FILE        intermediate certificates sent with it\n"
"  --max-clients N         connections served at once (default 16)\n"
"  --timeout SECS          per read/write timeout (default 10)\n"
"  --max-request BYTES     largest accepted request body (default 65536)\n"
"  --label LABEL           serve only /.well-known/est/LABEL (default: any)\n"
"Issuing CA:\n"
"  --ca-cert FILE          the issuing CA's certificate\n"
"  --ca-key KEY            its signing key (token URI or file)\n"
"  --ca-chain FILE         more certificates for /cacerts (root, ...)\n"
"  --pin-file FILE         token PIN for keys whose URI has no pin-source\n"
"  --days N                validity of issued certificates (default 30)\n"
"  --seconds N             validity in seconds (overrides --days)\n"
"Authentication:\n"
"  --htpasswd FILE         USER:HASH lines, salted crypt(3) hashes\n"
"                          ($y$, $2b$/$2y$, $6$, $5$), for simpleenroll\n"
"  --client-ca FILE        bootstrap CA: a TLS client certificate chaining\n"
"                          to it authenticates simpleenroll\n"
"  --require-both          simpleenroll needs password AND client cert\n"
"  --allow-anonymous       simpleenroll without any authentication\n"
"  --reenroll-any-names    let simplereenroll change subject/SANs\n"
"                          (default: identical to the certificate renewed)\n"
"Manual approval:\n"
"  --manual --spool DIR    new requests get 202 + Retry-After until approved\n"
"                          (--approve ID, or a file DIR/approved/ID)\n"
"  --retry-after SECS      Retry-After value (default 60)\n"
"  --retry-after-date      send Retry-After as an HTTP date\n"
"Other:\n"
"  --log FILE              log file (default stderr)\n"
"  --pid-file FILE         written once listening\n"
"  --provider-path DIR     where keyhold.so is (default: next to this\n"
"                          program, $KEYHOLD_PROVIDER_PATH, OpenSSL's)\n"
"  -h, --help              this text\n"
"\n"
"TEST ONLY (make the server misbehave so that clients' refusals can be\n"
"tested; never use on a real station):\n"
"  --test-issue wrong-key|wrong-host|expired|not-yet-valid|other-ca|\n"
"               no-server-auth|ca-true\n"
"  --test-body html|huge|bad-base64|empty-p7\n"
"  --test-status CODE      answer every enrolment with this HTTP status\n");
}

void estd_log(ESTD_SERVER *srv, const char *fmt, ...)
{
    char ts[32], line[2048];
    struct tm tm;
    time_t now = time(NULL);
    va_list ap;
    size_t i;

    gmtime_r(&now, &tm);
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    /* user names, paths and subjects come from clients: one line each */
    for (i = 0; line[i] != '\0'; i++) {
        if ((unsigned char)line[i] < 0x20 || (unsigned char)line[i] == 0x7f) {
            line[i] = '?';
        }
    }
    pthread_mutex_lock(&srv->log_lock);
    fprintf(srv->log, "%s keyhold-estd: %s\n", ts, line);
    fflush(srv->log);
    pthread_mutex_unlock(&srv->log_lock);
}

/* The PIN for a token key, from --pin-file or the default sources. */
static int pin_cb(char *buf, int size, int rwflag, void *u)
{
    const char *pin_file = u;
    char pin[KH_PIN_MAX + 1];
    char err[ESTD_ERRLEN];
    size_t len = 0;
    enum kh_pin_rc rc;
    int ret = -1;

    if (pin_file != NULL) {
        rc = kh_pin_read_file(pin_file, pin, sizeof(pin), &len, err,
                              sizeof(err));
    } else {
        rc = kh_pin_read_default(pin, sizeof(pin), &len, err, sizeof(err));
    }
    if (rc != KH_PIN_OK) {
        fprintf(stderr, "keyhold-estd: PIN: %s\n", err);
        goto end;
    }
    if (len >= (size_t)size) {
        goto end;
    }
    memcpy(buf, pin, len);
    ret = (int)len;
end:
    OPENSSL_cleanse(pin, sizeof(pin));
    return ret;
}

/*
 * A keyhold key reference file names its key by URI: open the URI itself,
 * whatever the provider's policy for key files read through OSSL_STORE.
 * Returns an OPENSSL_malloc'd URI, or NULL when |path| is not a reference.
 */
static char *reference_uri(const char *path)
{
    char line[128] = "", err[ESTD_ERRLEN];
    char *uri = NULL;
    BIO *b;

    if (strchr(path, ':') != NULL && access(path, R_OK) != 0) {
        return NULL;   /* a URI, not a file */
    }
    b = BIO_new_file(path, "r");
    if (b == NULL) {
        ERR_clear_error();
        return NULL;
    }
    if (BIO_gets(b, line, sizeof(line)) > 0
        && strstr(line, "BEGIN " KH_KEYREF_PEM_LABEL) != NULL
        && BIO_reset(b) == 0 && !kh_keyref_pem_read(b, &uri, err,
                                                   sizeof(err))) {
        uri = NULL;
    }
    BIO_free(b);
    ERR_clear_error();
    return uri;
}

EVP_PKEY *estd_load_key(const char *path, const char *pin_file, char *err,
                        size_t errlen)
{
    OSSL_STORE_CTX *st = NULL;
    OSSL_STORE_INFO *info;
    UI_METHOD *ui = NULL;
    EVP_PKEY *key = NULL;
    char *ref = reference_uri(path);
    const char *uri = ref != NULL ? ref : path;

    ui = UI_UTIL_wrap_read_pem_callback(pin_cb, 0);
    if (ui == NULL) {
        snprintf(err, errlen, "out of memory");
        goto end;
    }
    st = OSSL_STORE_open_ex(uri, NULL, NULL, ui, (void *)pin_file, NULL,
                            NULL, NULL);
    if (st == NULL) {
        snprintf(err, errlen, "cannot open '%s' (%s)", uri,
                 ERR_reason_error_string(ERR_peek_last_error()) != NULL
                     ? ERR_reason_error_string(ERR_peek_last_error())
                     : "no store for it; is the keyhold provider loaded?");
        goto end;
    }
    OSSL_STORE_expect(st, OSSL_STORE_INFO_PKEY);
    while (key == NULL && !OSSL_STORE_eof(st)) {
        info = OSSL_STORE_load(st);
        if (info == NULL) {
            break;
        }
        if (OSSL_STORE_INFO_get_type(info) == OSSL_STORE_INFO_PKEY) {
            key = OSSL_STORE_INFO_get1_PKEY(info);
        }
        OSSL_STORE_INFO_free(info);
    }
    if (key == NULL) {
        const char *data = NULL;
        int flags = 0;
        unsigned long e = ERR_peek_last_error_data(&data, &flags);
        const char *why = e != 0 ? ERR_reason_error_string(e) : NULL;

        /* the provider's text (e.g. "C_Login: CKR_PIN_INCORRECT ...") says
         * more than the reason code */
        if (data != NULL && (flags & ERR_TXT_STRING) && *data != '\0') {
            why = data;
        }
        snprintf(err, errlen, "no private key from '%s'%s%s", uri,
                 why != NULL ? ": " : "", why != NULL ? why : "");
    }
end:
    OSSL_STORE_close(st);
    UI_destroy_method(ui);
    OPENSSL_free(ref);
    return key;
}

/* Loads keyhold (when it can be found) beside the default provider. */
static void load_providers(ESTD_SERVER *srv)
{
    char exe[PATH_MAX], so[PATH_MAX + 16];
    const char *dir = srv->cfg.provider_path;
    ssize_t n;
    char *slash;

    if (dir == NULL) {
        dir = getenv("KEYHOLD_PROVIDER_PATH");
    }
    if (dir == NULL) {
        n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
        if (n > 0) {
            exe[n] = '\0';
            slash = strrchr(exe, '/');
            if (slash != NULL) {
                *slash = '\0';
                snprintf(so, sizeof(so), "%s/keyhold.so", exe);
                if (access(so, R_OK) == 0) {
                    dir = exe;
                }
            }
        }
    }
    srv->prov_default = OSSL_PROVIDER_load(NULL, "default");
    if (srv->prov_default == NULL) {
        estd_log(srv, "cannot load OpenSSL's default provider");
    }
    if (dir != NULL) {
        OSSL_PROVIDER_set_default_search_path(NULL, dir);
    }
    ERR_set_mark();
    srv->prov_keyhold = OSSL_PROVIDER_load(NULL, "keyhold");
    if (srv->prov_keyhold == NULL) {
        estd_log(srv, "keyhold provider not loaded (%s): token keys "
                 "unavailable", dir != NULL ? dir : "default path");
    }
    ERR_pop_to_mark();
}

static int read_certs(const char *path, STACK_OF(X509) *sk, char *err,
                      size_t errlen)
{
    BIO *b = BIO_new_file(path, "r");
    X509 *x;
    int n = 0;

    if (b == NULL) {
        snprintf(err, errlen, "cannot read %s", path);
        return 0;
    }
    while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
        if (!sk_X509_push(sk, x)) {
            X509_free(x);
            break;
        }
        n++;
    }
    ERR_clear_error();
    BIO_free(b);
    if (n == 0) {
        snprintf(err, errlen, "no PEM certificate in %s", path);
    }
    return n > 0;
}

/* Asks for a client certificate but leaves the decision to the handler,
 * which knows which trust store applies (bootstrap or issuing CA). */
static int accept_any_cert(int ok, X509_STORE_CTX *ctx)
{
    return 1;
}

static int tls_init(ESTD_SERVER *srv, char *err, size_t errlen)
{
    ESTD_CONFIG *c = &srv->cfg;
    STACK_OF(X509) *chain = sk_X509_new_null();
    EVP_PKEY *key = NULL;
    SSL_CTX *ctx;
    int i, ok = 0;

    ctx = SSL_CTX_new_ex(NULL, NULL, TLS_server_method());
    if (ctx == NULL || chain == NULL) {
        snprintf(err, errlen, "cannot create the TLS context");
        goto end;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
    if (!read_certs(c->tls_cert, chain, err, errlen)) {
        goto end;
    }
    if (SSL_CTX_use_certificate(ctx, sk_X509_value(chain, 0)) != 1) {
        snprintf(err, errlen, "TLS certificate %s refused", c->tls_cert);
        goto end;
    }
    for (i = 1; i < sk_X509_num(chain); i++) {
        SSL_CTX_add1_chain_cert(ctx, sk_X509_value(chain, i));
    }
    if (c->tls_chain != NULL) {
        STACK_OF(X509) *extra = sk_X509_new_null();

        if (extra == NULL || !read_certs(c->tls_chain, extra, err, errlen)) {
            sk_X509_pop_free(extra, X509_free);
            goto end;
        }
        for (i = 0; i < sk_X509_num(extra); i++) {
            SSL_CTX_add1_chain_cert(ctx, sk_X509_value(extra, i));
        }
        sk_X509_pop_free(extra, X509_free);
    }
    key = estd_load_key(c->tls_key, c->pin_file, err, errlen);
    if (key == NULL) {
        goto end;
    }
    if (SSL_CTX_use_PrivateKey(ctx, key) != 1
        || SSL_CTX_check_private_key(ctx) != 1) {
        snprintf(err, errlen, "TLS key %s does not fit certificate %s",
                 c->tls_key, c->tls_cert);
        goto end;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, accept_any_cert);
    SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"kh-estd", 7);
    srv->ssl_ctx = ctx;
    ctx = NULL;
    ok = 1;
end:
    EVP_PKEY_free(key);
    sk_X509_pop_free(chain, X509_free);
    SSL_CTX_free(ctx);
    return ok;
}

static int listen_on(const char *spec, char *err, size_t errlen)
{
    char host[256];
    const char *port, *p;
    struct addrinfo hints, *ai = NULL;
    int fd = -1, one = 1, rc;
    size_t hl;

    if (spec[0] == '[') {
        p = strchr(spec, ']');
        if (p == NULL || p[1] != ':') {
            goto bad;
        }
        hl = (size_t)(p - spec - 1);
        if (hl >= sizeof(host)) {
            goto bad;
        }
        memcpy(host, spec + 1, hl);
        host[hl] = '\0';
        port = p + 2;
    } else {
        p = strrchr(spec, ':');
        if (p == NULL) {
            goto bad;
        }
        hl = (size_t)(p - spec);
        if (hl >= sizeof(host)) {
            goto bad;
        }
        memcpy(host, spec, hl);
        host[hl] = '\0';
        port = p + 1;
    }
    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    rc = getaddrinfo(host[0] != '\0' ? host : NULL, port, &hints, &ai);
    if (rc != 0) {
        snprintf(err, errlen, "listen address %s: %s", spec,
                 gai_strerror(rc));
        return -1;
    }
    fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        goto end;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0
        || listen(fd, 64) != 0) {
        snprintf(err, errlen, "cannot listen on %s: %s", spec,
                 strerror(errno));
        close(fd);
        fd = -1;
    }
end:
    freeaddrinfo(ai);
    return fd;
bad:
    snprintf(err, errlen, "listen address '%s': want HOST:PORT or [V6]:PORT",
             spec);
    return -1;
}

static void *conn_main(void *arg)
{
    struct conn *c = arg;
    ESTD_SERVER *srv = c->srv;

    estd_http_serve(srv, c->fd, c->peer);
    close(c->fd);
    free(c);
    pthread_mutex_lock(&slot_lock);
    srv->active--;
    pthread_cond_signal(&slot_cond);
    pthread_mutex_unlock(&slot_lock);
    ERR_clear_error();
    return NULL;
}

static void on_stop(int sig)
{
    stopping = 1;
}

static void peer_name(const struct sockaddr_storage *ss, char *buf,
                      size_t len)
{
    char a[INET6_ADDRSTRLEN] = "?";

    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *s4 = (const void *)ss;

        inet_ntop(AF_INET, &s4->sin_addr, a, sizeof(a));
        snprintf(buf, len, "%s:%u", a, ntohs(s4->sin_port));
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const void *)ss;

        inet_ntop(AF_INET6, &s6->sin6_addr, a, sizeof(a));
        snprintf(buf, len, "[%s]:%u", a, ntohs(s6->sin6_port));
    } else {
        snprintf(buf, len, "?");
    }
}

static int serve(ESTD_SERVER *srv, int lfd)
{
    struct sigaction sa;
    pthread_attr_t attr;
    int waited;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_stop;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);

    while (!stopping) {
        struct pollfd pfd = { .fd = lfd, .events = POLLIN };
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        struct conn *c;
        pthread_t th;
        int fd;

        /* Wait for a free slot: extra clients wait in the backlog. */
        pthread_mutex_lock(&slot_lock);
        while (srv->active >= srv->cfg.max_clients && !stopping) {
            struct timespec ts;

            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += 1;
            pthread_cond_timedwait(&slot_cond, &slot_lock, &ts);
        }
        pthread_mutex_unlock(&slot_lock);
        if (poll(&pfd, 1, 500) <= 0) {
            continue;
        }
        fd = accept4(lfd, (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC);
        if (fd < 0) {
            continue;
        }
        c = calloc(1, sizeof(*c));
        if (c == NULL) {
            close(fd);
            continue;
        }
        c->srv = srv;
        c->fd = fd;
        peer_name(&ss, c->peer, sizeof(c->peer));
        pthread_mutex_lock(&slot_lock);
        srv->active++;
        pthread_mutex_unlock(&slot_lock);
        if (pthread_create(&th, &attr, conn_main, c) != 0) {
            estd_log(srv, "%s: cannot start a thread", c->peer);
            close(fd);
            free(c);
            pthread_mutex_lock(&slot_lock);
            srv->active--;
            pthread_mutex_unlock(&slot_lock);
        }
    }
    pthread_attr_destroy(&attr);
    estd_log(srv, "stopping");
    /* let the connections being served finish (each is bounded by the
     * I/O timeout) before the TLS context and the CA key go away */
    pthread_mutex_lock(&slot_lock);
    for (waited = 0; srv->active > 0 && waited < 4 * srv->cfg.io_timeout;
         waited++) {
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 1;
        pthread_cond_timedwait(&slot_cond, &slot_lock, &ts);
    }
    pthread_mutex_unlock(&slot_lock);
    return srv->active > 0 ? -1 : 0;
}

static int parse_long(const char *s, long min, long max, long *out)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || *s == '\0' || *end != '\0' || v < min || v > max) {
        return 0;
    }
    *out = v;
    return 1;
}

static int test_issue_from(const char *s, enum estd_test_issue *out)
{
    static const struct { const char *n; enum estd_test_issue v; } t[] = {
        { "wrong-key", ESTD_TEST_WRONG_KEY },
        { "wrong-host", ESTD_TEST_WRONG_HOST },
        { "expired", ESTD_TEST_EXPIRED },
        { "not-yet-valid", ESTD_TEST_NOT_YET_VALID },
        { "other-ca", ESTD_TEST_OTHER_CA },
        { "no-server-auth", ESTD_TEST_NO_SERVER_AUTH },
        { "ca-true", ESTD_TEST_CA_TRUE },
    };
    size_t i;

    for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        if (strcmp(s, t[i].n) == 0) {
            *out = t[i].v;
            return 1;
        }
    }
    return 0;
}

static int test_body_from(const char *s, enum estd_test_body *out)
{
    if (strcmp(s, "html") == 0) {
        *out = ESTD_BODY_HTML;
    } else if (strcmp(s, "huge") == 0) {
        *out = ESTD_BODY_HUGE;
    } else if (strcmp(s, "bad-base64") == 0) {
        *out = ESTD_BODY_BAD_BASE64;
    } else if (strcmp(s, "empty-p7") == 0) {
        *out = ESTD_BODY_EMPTY_P7;
    } else {
        return 0;
    }
    return 1;
}

enum {
    O_LISTEN = 256, O_TLS_CERT, O_TLS_KEY, O_TLS_CHAIN, O_MAX_CLIENTS,
    O_TIMEOUT, O_MAX_REQUEST, O_LABEL, O_CA_CERT, O_CA_KEY, O_CA_CHAIN,
    O_PIN_FILE, O_DAYS, O_SECONDS, O_HTPASSWD, O_CLIENT_CA, O_BOTH,
    O_ANON, O_ANY_NAMES, O_MANUAL, O_SPOOL, O_RETRY_AFTER, O_RETRY_DATE,
    O_LOG, O_PID_FILE, O_PROVIDER_PATH, O_TEST_ISSUE, O_TEST_BODY,
    O_TEST_STATUS, O_APPROVE, O_REJECT, O_LIST, O_HASH
};

static const struct option opts[] = {
    { "listen", required_argument, NULL, O_LISTEN },
    { "tls-cert", required_argument, NULL, O_TLS_CERT },
    { "tls-key", required_argument, NULL, O_TLS_KEY },
    { "tls-chain", required_argument, NULL, O_TLS_CHAIN },
    { "max-clients", required_argument, NULL, O_MAX_CLIENTS },
    { "timeout", required_argument, NULL, O_TIMEOUT },
    { "max-request", required_argument, NULL, O_MAX_REQUEST },
    { "label", required_argument, NULL, O_LABEL },
    { "ca-cert", required_argument, NULL, O_CA_CERT },
    { "ca-key", required_argument, NULL, O_CA_KEY },
    { "ca-chain", required_argument, NULL, O_CA_CHAIN },
    { "pin-file", required_argument, NULL, O_PIN_FILE },
    { "days", required_argument, NULL, O_DAYS },
    { "seconds", required_argument, NULL, O_SECONDS },
    { "htpasswd", required_argument, NULL, O_HTPASSWD },
    { "client-ca", required_argument, NULL, O_CLIENT_CA },
    { "require-both", no_argument, NULL, O_BOTH },
    { "allow-anonymous", no_argument, NULL, O_ANON },
    { "reenroll-any-names", no_argument, NULL, O_ANY_NAMES },
    { "manual", no_argument, NULL, O_MANUAL },
    { "spool", required_argument, NULL, O_SPOOL },
    { "retry-after", required_argument, NULL, O_RETRY_AFTER },
    { "retry-after-date", no_argument, NULL, O_RETRY_DATE },
    { "log", required_argument, NULL, O_LOG },
    { "pid-file", required_argument, NULL, O_PID_FILE },
    { "provider-path", required_argument, NULL, O_PROVIDER_PATH },
    { "test-issue", required_argument, NULL, O_TEST_ISSUE },
    { "test-body", required_argument, NULL, O_TEST_BODY },
    { "test-status", required_argument, NULL, O_TEST_STATUS },
    { "approve", required_argument, NULL, O_APPROVE },
    { "reject", required_argument, NULL, O_REJECT },
    { "list-pending", no_argument, NULL, O_LIST },
    { "hash-password", no_argument, NULL, O_HASH },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 }
};

static void server_free(ESTD_SERVER *srv)
{
    SSL_CTX_free(srv->ssl_ctx);
    X509_free(srv->ca_cert);
    EVP_PKEY_free(srv->ca_key);
    sk_X509_pop_free(srv->ca_chain, X509_free);
    X509_STORE_free(srv->bootstrap_store);
    X509_STORE_free(srv->reenroll_store);
    X509_free(srv->other_ca_cert);
    EVP_PKEY_free(srv->other_ca_key);
    if (srv->prov_keyhold != NULL) {
        OSSL_PROVIDER_unload(srv->prov_keyhold);
    }
    if (srv->prov_default != NULL) {
        OSSL_PROVIDER_unload(srv->prov_default);
    }
    if (srv->log != NULL && srv->log != stderr) {
        fclose(srv->log);
    }
}

int main(int argc, char **argv)
{
    static ESTD_SERVER srv;
    ESTD_CONFIG *c = &srv.cfg;
    const char *approve = NULL, *reject = NULL;
    int list = 0, hash = 0, anon = 0, opt, lfd = -1, rc = 1;
    char err[ESTD_ERRLEN];
    long v;

    c->max_clients = 16;
    c->io_timeout = 10;
    c->max_request = 65536;
    c->validity_days = 30;
    c->retry_after = 60;
    pthread_mutex_init(&srv.sign_lock, NULL);
    pthread_mutex_init(&srv.log_lock, NULL);
    srv.log = stderr;

    while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (opt) {
        case O_LISTEN: c->listen = optarg; break;
        case O_TLS_CERT: c->tls_cert = optarg; break;
        case O_TLS_KEY: c->tls_key = optarg; break;
        case O_TLS_CHAIN: c->tls_chain = optarg; break;
        case O_MAX_CLIENTS:
            if (!parse_long(optarg, 1, 1024, &v)) {
                goto bad;
            }
            c->max_clients = (int)v;
            break;
        case O_TIMEOUT:
            if (!parse_long(optarg, 1, 3600, &v)) {
                goto bad;
            }
            c->io_timeout = (int)v;
            break;
        case O_MAX_REQUEST:
            if (!parse_long(optarg, 256, 16L << 20, &v)) {
                goto bad;
            }
            c->max_request = (size_t)v;
            break;
        case O_LABEL: c->label = optarg; break;
        case O_CA_CERT: c->ca_cert = optarg; break;
        case O_CA_KEY: c->ca_key = optarg; break;
        case O_CA_CHAIN: c->ca_chain = optarg; break;
        case O_PIN_FILE: c->pin_file = optarg; break;
        case O_DAYS:
            if (!parse_long(optarg, 1, 36500, &c->validity_days)) {
                goto bad;
            }
            break;
        case O_SECONDS:
            if (!parse_long(optarg, 1, 36500L * 86400, &c->validity_seconds)) {
                goto bad;
            }
            break;
        case O_HTPASSWD: c->htpasswd = optarg; break;
        case O_CLIENT_CA: c->client_ca = optarg; break;
        case O_BOTH: c->require_both = 1; break;
        case O_ANON: anon = 1; break;
        case O_ANY_NAMES: c->reenroll_any_names = 1; break;
        case O_MANUAL: c->manual = 1; break;
        case O_SPOOL: c->spool = optarg; break;
        case O_RETRY_AFTER:
            if (!parse_long(optarg, 0, 86400, &c->retry_after)) {
                goto bad;
            }
            break;
        case O_RETRY_DATE: c->retry_after_date = 1; break;
        case O_LOG: c->log_path = optarg; break;
        case O_PID_FILE: c->pid_file = optarg; break;
        case O_PROVIDER_PATH: c->provider_path = optarg; break;
        case O_TEST_ISSUE:
            if (!test_issue_from(optarg, &c->test_issue)) {
                goto bad;
            }
            break;
        case O_TEST_BODY:
            if (!test_body_from(optarg, &c->test_body)) {
                goto bad;
            }
            break;
        case O_TEST_STATUS:
            if (!parse_long(optarg, 200, 599, &v)) {
                goto bad;
            }
            c->test_status = (int)v;
            break;
        case O_APPROVE: approve = optarg; break;
        case O_REJECT: reject = optarg; break;
        case O_LIST: list = 1; break;
        case O_HASH: hash = 1; break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 1;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "keyhold-estd: unexpected argument '%s'\n",
                argv[optind]);
        return 1;
    }
    if (hash) {
        return estd_hash_password();
    }
    if (approve != NULL || reject != NULL || list) {
        if (c->spool == NULL) {
            fprintf(stderr, "keyhold-estd: --approve/--reject/--list-pending "
                    "need --spool DIR\n");
            return 1;
        }
        if (list) {
            return estd_spool_list(c->spool);
        }
        if (reject != NULL) {
            return estd_spool_decide(c->spool, reject, 0);
        }
        return estd_spool_decide(c->spool, approve, 1);
    }
    if (c->listen == NULL || c->tls_cert == NULL || c->tls_key == NULL
        || c->ca_cert == NULL || c->ca_key == NULL) {
        fprintf(stderr, "keyhold-estd: --listen, --tls-cert, --tls-key, "
                "--ca-cert and --ca-key are required (see --help)\n");
        return 1;
    }
    if (c->htpasswd == NULL && c->client_ca == NULL && !anon) {
        fprintf(stderr, "keyhold-estd: simpleenroll needs --htpasswd and/or "
                "--client-ca (or --allow-anonymous on an isolated network)\n");
        return 1;
    }
    if (c->require_both && (c->htpasswd == NULL || c->client_ca == NULL)) {
        fprintf(stderr, "keyhold-estd: --require-both needs --htpasswd and "
                "--client-ca\n");
        return 1;
    }
    if (c->manual && c->spool == NULL) {
        fprintf(stderr, "keyhold-estd: --manual needs --spool DIR\n");
        return 1;
    }
    if (c->log_path != NULL) {
        srv.log = fopen(c->log_path, "a");
        if (srv.log == NULL) {
            fprintf(stderr, "keyhold-estd: cannot open log %s: %s\n",
                    c->log_path, strerror(errno));
            return 1;
        }
    }
    if (c->test_issue != ESTD_TEST_NONE || c->test_body != ESTD_BODY_OK
        || c->test_status != 0) {
        estd_log(&srv, "WARNING: test knobs active: this server issues "
                 "wrong answers on purpose");
    }
    load_providers(&srv);
    if (!estd_ca_init(&srv, err, sizeof(err))) {
        estd_log(&srv, "CA: %s", err);
        goto end;
    }
    if (!tls_init(&srv, err, sizeof(err))) {
        estd_log(&srv, "TLS: %s", err);
        goto end;
    }
    lfd = listen_on(c->listen, err, sizeof(err));
    if (lfd < 0) {
        estd_log(&srv, "%s", err);
        goto end;
    }
    if (c->pid_file != NULL) {
        FILE *f = fopen(c->pid_file, "w");

        if (f == NULL) {
            estd_log(&srv, "cannot write %s: %s", c->pid_file,
                     strerror(errno));
            goto end;
        }
        fprintf(f, "%ld\n", (long)getpid());
        fclose(f);
    }
    estd_log(&srv, "listening on %s (CA %s, key %s)", c->listen, c->ca_cert,
             c->ca_key);
    rc = serve(&srv, lfd);
    if (rc < 0) {
        /* threads still hold the server: no cleanup under their feet */
        estd_log(&srv, "connections still open at exit");
        fflush(NULL);
        _exit(0);
    }
end:
    if (lfd >= 0) {
        close(lfd);
    }
    if (rc != 0 && getenv("KEYHOLD_DEBUG") != NULL) {
        ERR_print_errors_fp(stderr);
    }
    server_free(&srv);
    return rc;
bad:
    fprintf(stderr, "keyhold-estd: bad value '%s' for --%s\n", optarg,
            opts[opt - O_LISTEN].name);
    return 1;
}
