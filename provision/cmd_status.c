/* SPDX-License-Identifier: MIT */
/*
 * keyhold status: per identity its key, certificate and state, as text,
 * JSON (fixed field names) or Prometheus metrics; expiry warnings once per
 * threshold. Needs no PIN: the key's presence and public half are read
 * from the token's public objects.
 */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "keyhold.h"

static const char usage[] =
    "usage: keyhold status [NAME] [--json | --prometheus | --prometheus-file "
    "PATH]\n"
    "  States: ok, renew-due (exit 0); expiring, hosts-changed, no-cert,\n"
    "  clock-suspect (exit 5); expired, key-missing, mismatch,\n"
    "  token-unreachable (exit 8). --json prints an array of objects.\n";

/* The renewal policy's due time (provision/est.c, when linked in), so that
 * status says renew-due exactly when `keyhold renew` would renew. */
time_t kh_renew_due_time(const char *name, X509 *cert, int after_percent,
                         long before_days) __attribute__((weak));

static const char *const all_states[] = {
    "ok", "renew-due", "expiring", "expired", "no-cert", "key-missing",
    "mismatch", "hosts-changed", "token-unreachable", "clock-suspect", NULL
};

typedef struct row {
    char name[KH_NAME_MAX + 1];
    char backend[16];
    char key_uri[1024];
    char algorithm[32];
    char subject[512];
    char issuer[512];
    KH_STRLIST sans;
    long long not_before, not_after, days_left;
    const char *state;
    char last_error[512];
    long long next_attempt, last_success, failures_total;
    char key_fp[80], cert_fp[80];
    char pending[1024];
    unsigned generation;
    int has_cert;
} ROW;

static long long t_of(const ASN1_TIME *t)
{
    struct tm tm;

    return t != NULL && ASN1_TIME_to_tm(t, &tm) == 1 ? (long long)timegm(&tm)
                                                     : 0;
}

static void cert_sans(X509 *cert, KH_STRLIST *out)
{
    GENERAL_NAMES *g = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
    int i;

    for (i = 0; g != NULL && i < sk_GENERAL_NAME_num(g); i++) {
        GENERAL_NAME *n = sk_GENERAL_NAME_value(g, i);
        char buf[300];

        if (n->type == GEN_DNS) {
            snprintf(buf, sizeof(buf), "dns:%.*s",
                     ASN1_STRING_length(n->d.dNSName),
                     (const char *)ASN1_STRING_get0_data(n->d.dNSName));
            kh_strlist_add(out, buf);
        } else if (n->type == GEN_IPADD) {
            char *s = NULL;
            ASN1_OCTET_STRING *ip = n->d.iPAddress;

            s = OPENSSL_buf2hexstr(ASN1_STRING_get0_data(ip),
                                   ASN1_STRING_length(ip));
            if (ASN1_STRING_length(ip) == 4) {
                const unsigned char *b = ASN1_STRING_get0_data(ip);

                snprintf(buf, sizeof(buf), "ip:%u.%u.%u.%u", b[0], b[1], b[2],
                         b[3]);
            } else {
                snprintf(buf, sizeof(buf), "ip:%s", s ? s : "?");
            }
            OPENSSL_free(s);
            kh_strlist_add(out, buf);
        }
    }
    GENERAL_NAMES_free(g);
}

/*
 * The key's public half, read in a child process: a hung token (a call
 * that never returns) must not hang status with it. After
 * $KEYHOLD_TOKEN_TIMEOUT seconds (default 10) the child is killed and the
 * token reported as not responding.
 */
static int probe_pub(KH_CTX *ctx, const KH_IDENTITY *id, const char *backend,
                     const char *uri, EVP_PKEY **pub, char *err,
                     size_t errlen)
{
    const char *tenv = getenv("KEYHOLD_TOKEN_TIMEOUT");
    long timeout = tenv != NULL && atol(tenv) > 0 ? atol(tenv) : 10;
    const char *label = kh_id_get(id, "token");
    unsigned char buf[16384];
    size_t got = 0;
    int fds[2], rc = KH_EXIT_TOKEN, st;
    pid_t pid;
    time_t deadline;

    *pub = NULL;
    if (pipe(fds) != 0) {
        return kh_seterr(err, errlen, KH_EXIT_TOKEN, "pipe: %s",
                         strerror(errno));
    }
    fflush(stdout);
    fflush(stderr);
    pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return kh_seterr(err, errlen, KH_EXIT_TOKEN, "fork: %s",
                         strerror(errno));
    }
    if (pid == 0) {
        KH_TOKEN *tok = NULL;
        EVP_PKEY *p = NULL;
        char e2[KH_ERR_MAX] = "", hex[130];
        unsigned char *der = NULL;
        int r, dl = 0;

        close(fds[0]);
        if (strcmp(backend, "tpm2") == 0) {
            r = kh_tpm_get_pubkey != NULL
                    ? kh_tpm_get_pubkey(ctx, id, uri, &p, e2, sizeof(e2))
                    : kh_seterr(e2, sizeof(e2), KH_EXIT_TOKEN,
                                "no TPM support in this keyhold");
        } else {
            r = kh_token_open_identity(ctx, id, &tok, e2, sizeof(e2));
            if (r == KH_EXIT_OK) {
                r = kh_uri_key_id(uri, hex, sizeof(hex))
                        ? kh_token_get_pubkey(tok, hex, &p, e2, sizeof(e2))
                        : kh_seterr(e2, sizeof(e2), KH_EXIT_BROKEN,
                                    "the key URI names no key id");
            } else {
                r = KH_EXIT_TOKEN;
            }
        }
        if (p != NULL) {
            dl = i2d_PUBKEY(p, &der);
        }
        {
            char head[64];
            int hl = snprintf(head, sizeof(head), "%d %d %zu\n", r,
                              dl > 0 ? dl : 0, strlen(e2));
            ssize_t w = write(fds[1], head, (size_t)hl);

            w += write(fds[1], e2, strlen(e2));
            if (dl > 0) {
                w += write(fds[1], der, (size_t)dl);
            }
            (void)w;
        }
        _exit(0);
    }
    close(fds[1]);
    deadline = time(NULL) + timeout;
    for (;;) {
        struct pollfd pfd = { fds[0], POLLIN, 0 };
        long left = (long)(deadline - time(NULL));
        ssize_t n;

        if (left <= 0 || poll(&pfd, 1, (int)(left * 1000)) == 0) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            close(fds[0]);
            return kh_seterr(err, errlen, KH_EXIT_TOKEN,
                             "token '%s' not responding after %ld s (is it "
                             "hung? unplug/replug it or restart its daemon)",
                             label != NULL ? label : backend, timeout);
        }
        n = read(fds[0], buf + got, sizeof(buf) - 1 - got);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break;
        }
        got += (size_t)n;
        if (got >= sizeof(buf) - 1) {
            break;
        }
    }
    close(fds[0]);
    waitpid(pid, &st, 0);
    buf[got] = '\0';
    {
        int r = KH_EXIT_TOKEN, dl = 0;
        size_t el = 0;
        char *nl = memchr(buf, '\n', got);
        const unsigned char *p;

        if (nl == NULL || sscanf((char *)buf, "%d %d %zu", &r, &dl, &el) != 3
            || (size_t)(nl + 1 - (char *)buf) + el + (size_t)dl > got) {
            return kh_seterr(err, errlen, KH_EXIT_TOKEN,
                             "the token probe died (status %d)", st);
        }
        kh_seterr(err, errlen, r, "%.*s", (int)el, nl + 1);
        if (r != KH_EXIT_OK) {
            return r;
        }
        p = (unsigned char *)nl + 1 + el;
        *pub = d2i_PUBKEY(NULL, &p, dl);
        rc = *pub != NULL ? KH_EXIT_OK : KH_EXIT_TOKEN;
        if (rc != KH_EXIT_OK) {
            kh_seterr(err, errlen, rc, "the token returned a bad public key");
        }
    }
    return rc;
}

static int evaluate(KH_CTX *ctx, const char *name, ROW *r, time_t now,
                    char *err, size_t errlen)
{
    KH_IDENTITY *id = NULL;
    KH_TOKEN *tok = NULL;
    KH_STATUS_REC st;
    X509 *cert = NULL;
    EVP_PKEY *pub = NULL;
    KH_STRLIST names = { 0 };
    char *uri = NULL, e2[KH_ERR_MAX];
    const char *v;
    int rc;
    size_t i;

    memset(r, 0, sizeof(*r));
    snprintf(r->name, sizeof(r->name), "%s", name);
    rc = kh_identity_load(ctx, name, &id, err, errlen);
    if (rc != KH_EXIT_OK) {
        return rc;
    }
    v = kh_id_get(id, "backend");
    snprintf(r->backend, sizeof(r->backend), "%s", v ? v : "pkcs11");
    v = kh_id_get(id, "alg");
    snprintf(r->algorithm, sizeof(r->algorithm), "%s", v ? v : "");
    if (kh_identity_key_uri(ctx, id, &uri) == KH_EXIT_OK) {
        snprintf(r->key_uri, sizeof(r->key_uri), "%s", uri);
    }
    kh_status_read(ctx, name, &st);
    snprintf(r->last_error, sizeof(r->last_error), "%s", st.last_error);
    r->next_attempt = st.next_attempt;
    r->last_success = st.last_success;
    r->failures_total = st.failures_total;
    snprintf(r->pending, sizeof(r->pending), "%s", st.pending_key_uri);
    r->generation = kh_state_current_gen(ctx, name);
    if (kh_state_load_current(ctx, name, &cert, NULL, NULL) && cert != NULL) {
        r->has_cert = 1;
        X509_NAME_oneline(X509_get_subject_name(cert), r->subject,
                          sizeof(r->subject));
        X509_NAME_oneline(X509_get_issuer_name(cert), r->issuer,
                          sizeof(r->issuer));
        cert_sans(cert, &r->sans);
        r->not_before = t_of(X509_get0_notBefore(cert));
        r->not_after = t_of(X509_get0_notAfter(cert));
        r->days_left = (r->not_after - (long long)now) / 86400;
        kh_fp_cert(cert, r->cert_fp, sizeof(r->cert_fp));
    }

    /* the key */
    rc = probe_pub(ctx, id, r->backend, uri, &pub, e2, sizeof(e2));
    if (rc == KH_EXIT_BROKEN) {
        r->state = "key-missing";
        goto done;
    }
    if (rc != KH_EXIT_OK) {
        r->state = "token-unreachable";
        snprintf(r->last_error, sizeof(r->last_error), "%.500s", e2);
        kh_err(ctx, "status %s: %s", name, e2);
        goto done;
    }
    kh_fp_pubkey(pub, r->key_fp, sizeof(r->key_fp));
    if (!r->has_cert) {
        r->state = "no-cert";
        goto done;
    }
    if (EVP_PKEY_eq(pub, X509_get0_pubkey(cert)) != 1) {
        r->state = "mismatch";
        goto done;
    }
    if (kh_clock_suspect(now)
        || r->not_before > (long long)now + KH_CLOCK_SKEW) {
        r->state = "clock-suspect";
        goto done;
    }
    if (r->not_after <= (long long)now) {
        r->state = "expired";
        goto done;
    }
    kh_identity_names(id, &names);
    for (i = 0; i < names.n; i++) {
        if (!kh_cert_has_name(cert, names.v[i])) {
            r->state = "hosts-changed";
            goto done;
        }
    }
    {
        long long th[4], left = r->not_after - (long long)now;
        long long due;

        kh_expiry_thresholds(r->not_after - r->not_before, th);
        due = r->not_after - th[0];
        if (kh_renew_due_time != NULL) {
            const char *a = kh_id_get(id, "renew-after-percent");
            const char *b = kh_id_get(id, "renew-before-days");

            due = (long long)kh_renew_due_time(name, cert, a ? atoi(a) : 67,
                                               b ? atol(b) : 30);
        }
        if (left < th[1]) {
            r->state = "expiring";
        } else if ((long long)now >= due) {
            r->state = "renew-due";
        } else {
            r->state = "ok";
        }
    }
    {
        /* the warning's record shares status.json with renewal runs: only
         * with the identity's lock (a busy identity is warned by the run
         * that holds it) */
        int lockfd = -1;

        if (kh_lock(ctx, name, &lockfd, e2, sizeof(e2)) == KH_EXIT_OK) {
            kh_expiry_warn(ctx, id, cert, now);
            kh_unlock(lockfd);
        }
    }
done:
    ERR_clear_error();
    kh_strlist_free(&names);
    free(uri);
    X509_free(cert);
    EVP_PKEY_free(pub);
    kh_token_close(tok);
    kh_identity_free(id);
    return KH_EXIT_OK;
}

static int state_exit(const char *s)
{
    if (strcmp(s, "ok") == 0 || strcmp(s, "renew-due") == 0) {
        return KH_EXIT_OK;
    }
    if (strcmp(s, "expired") == 0 || strcmp(s, "key-missing") == 0
        || strcmp(s, "mismatch") == 0 || strcmp(s, "token-unreachable") == 0) {
        return KH_EXIT_BROKEN;
    }
    return KH_EXIT_ATTENTION;
}

static void iso(long long t, char *out, size_t len)
{
    time_t tt = (time_t)t;
    struct tm tm;

    if (t == 0) {
        snprintf(out, len, "null");
        return;
    }
    gmtime_r(&tt, &tm);
    strftime(out, len, "\"%Y-%m-%dT%H:%M:%SZ\"", &tm);
}

static void print_json(FILE *f, ROW *r, int first)
{
    char a[2200], b[600], c[600], d[600], e[64], g[64], h[64];
    size_t i;

    fprintf(f, "%s\n  {", first ? "" : ",");
    kh_json_str(a, sizeof(a), r->name);
    fprintf(f, "\"name\": %s, ", a);
    kh_json_str(a, sizeof(a), r->backend);
    fprintf(f, "\"backend\": %s, ", a);
    kh_json_str(a, sizeof(a), r->key_uri);
    fprintf(f, "\"key_uri\": %s, ", a);
    kh_json_str(a, sizeof(a), r->algorithm);
    fprintf(f, "\"algorithm\": %s, ", a);
    kh_json_str(b, sizeof(b), r->subject);
    kh_json_str(c, sizeof(c), r->issuer);
    fprintf(f, "\"subject\": %s, \"sans\": [", r->has_cert ? b : "null");
    for (i = 0; i < r->sans.n; i++) {
        kh_json_str(d, sizeof(d), r->sans.v[i]);
        fprintf(f, "%s%s", i ? ", " : "", d);
    }
    iso(r->not_before, e, sizeof(e));
    iso(r->not_after, g, sizeof(g));
    fprintf(f, "], \"issuer\": %s, \"not_before\": %s, \"not_after\": %s, ",
            r->has_cert ? c : "null", e, g);
    if (r->has_cert) {
        fprintf(f, "\"days_left\": %lld, ", r->days_left);
    } else {
        fprintf(f, "\"days_left\": null, ");
    }
    kh_json_str(a, sizeof(a), r->state);
    fprintf(f, "\"state\": %s, ", a);
    kh_json_str(a, sizeof(a), r->last_error);
    iso(r->next_attempt, h, sizeof(h));
    fprintf(f, "\"last_error\": %s, \"next_attempt\": %s, ",
            r->last_error[0] ? a : "null", h);
    kh_json_str(a, sizeof(a), r->pending);
    fprintf(f, "\"pending_key_uri\": %s, ", r->pending[0] ? a : "null");
    fprintf(f, "\"generation\": %u, \"key_fingerprint\": %s%s%s, "
            "\"cert_fingerprint\": %s%s%s}",
            r->generation, r->key_fp[0] ? "\"" : "",
            r->key_fp[0] ? r->key_fp : "null", r->key_fp[0] ? "\"" : "",
            r->cert_fp[0] ? "\"" : "", r->cert_fp[0] ? r->cert_fp : "null",
            r->cert_fp[0] ? "\"" : "");
}

static void iso_plain(long long t, char *out, size_t len)
{
    char q[64];
    size_t n;

    iso(t, q, sizeof(q));
    n = strlen(q);
    if (n >= 2 && q[0] == '"') {
        snprintf(out, len, "%.*s", (int)(n - 2), q + 1);
    } else {
        snprintf(out, len, "-");
    }
}

static void print_text(FILE *f, ROW *r)
{
    char nb[64], na[64];
    size_t i;

    iso_plain(r->not_before, nb, sizeof(nb));
    iso_plain(r->not_after, na, sizeof(na));
    fprintf(f, "%s: %s\n", r->name, r->state);
    fprintf(f, "  backend:   %s %s\n", r->backend, r->algorithm);
    fprintf(f, "  key:       %s\n", r->key_uri[0] ? r->key_uri : "-");
    if (r->has_cert) {
        fprintf(f, "  subject:   %s\n  issuer:    %s\n", r->subject,
                r->issuer);
        fprintf(f, "  sans:     ");
        for (i = 0; i < r->sans.n; i++) {
            fprintf(f, " %s", r->sans.v[i]);
        }
        fprintf(f, "\n  valid:     %s .. %s (%lld days left)\n", nb, na,
                r->days_left);
    }
    if (r->pending[0]) {
        fprintf(f, "  pending:   %s (a new key waiting for its "
                "certificate)\n", r->pending);
    }
    if (r->last_error[0]) {
        fprintf(f, "  error:     %s\n", r->last_error);
    }
    if (r->next_attempt) {
        iso_plain(r->next_attempt, na, sizeof(na));
        fprintf(f, "  next try:  %s\n", na);
    }
}

static void print_prom(FILE *f, ROW *rows, size_t n)
{
    size_t i;
    int s;

    fprintf(f, "# HELP keyhold_certificate_not_after_seconds Not-after of the "
               "identity's certificate (Unix time).\n"
               "# TYPE keyhold_certificate_not_after_seconds gauge\n");
    for (i = 0; i < n; i++) {
        if (rows[i].has_cert) {
            fprintf(f, "keyhold_certificate_not_after_seconds{identity=\"%s\"} "
                    "%lld\n", rows[i].name, rows[i].not_after);
        }
    }
    fprintf(f, "# HELP keyhold_identity_state 1 for the identity's current "
               "state.\n# TYPE keyhold_identity_state gauge\n");
    for (i = 0; i < n; i++) {
        for (s = 0; all_states[s] != NULL; s++) {
            fprintf(f, "keyhold_identity_state{identity=\"%s\",state=\"%s\"} "
                    "%d\n", rows[i].name, all_states[s],
                    strcmp(all_states[s], rows[i].state) == 0);
        }
    }
    fprintf(f, "# HELP keyhold_renewal_last_success_seconds Last successful "
               "renewal (Unix time, 0 never).\n"
               "# TYPE keyhold_renewal_last_success_seconds gauge\n");
    for (i = 0; i < n; i++) {
        fprintf(f, "keyhold_renewal_last_success_seconds{identity=\"%s\"} "
                "%lld\n", rows[i].name, rows[i].last_success);
    }
    fprintf(f, "# HELP keyhold_renewal_failures_total Failed renewal "
               "attempts.\n# TYPE keyhold_renewal_failures_total counter\n");
    for (i = 0; i < n; i++) {
        fprintf(f, "keyhold_renewal_failures_total{identity=\"%s\"} %lld\n",
                rows[i].name, rows[i].failures_total);
    }
}

int cmd_status(KH_CTX *ctx, int argc, char **argv)
{
    static const struct option opts[] = {
        { "json", no_argument, NULL, 'j' },
        { "prometheus", no_argument, NULL, 'p' },
        { "prometheus-file", required_argument, NULL, 'P' },
        { NULL, 0, NULL, 0 }
    };
    int json = 0, prom = 0, c, rc = KH_EXIT_OK;
    const char *promfile = NULL;
    KH_STRLIST names = { 0 };
    ROW *rows = NULL;
    size_t i, n = 0;
    char err[KH_ERR_MAX];
    time_t now = time(NULL);

    if (kh_want_help(argc, argv, usage)) {
        return KH_EXIT_OK;
    }
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'j': json = 1; break;
        case 'p': prom = 1; break;
        case 'P': promfile = optarg; break;
        default:
            fputs(usage, stderr);
            return KH_EXIT_USAGE;
        }
    }
    if (optind + 1 < argc) {
        fputs(usage, stderr);
        return KH_EXIT_USAGE;
    }
    if (optind < argc) {
        kh_strlist_add(&names, argv[optind]);
    } else if (!kh_identity_list(ctx, &names)) {
        kh_err(ctx, "status: cannot read %s", ctx->conf_dir);
        return KH_EXIT_PERM;
    }
    rows = calloc(names.n + 1, sizeof(*rows));
    if (rows == NULL) {
        kh_strlist_free(&names);
        return KH_EXIT_BROKEN;
    }
    for (i = 0; i < names.n; i++) {
        int r = evaluate(ctx, names.v[i], &rows[n], now, err, sizeof(err));

        if (r != KH_EXIT_OK) {
            kh_err(ctx, "status %s: %s", names.v[i], err);
            rc = r;
            continue;
        }
        n++;
    }
    if (rc == KH_EXIT_OK || n > 0) {
        if (json) {
            printf("[");
            for (i = 0; i < n; i++) {
                print_json(stdout, &rows[i], i == 0);
            }
            printf("%s]\n", n ? "\n" : "");
        } else if (prom) {
            print_prom(stdout, rows, n);
        } else if (!promfile) {
            if (n == 0) {
                printf("no identities in %s\n", ctx->conf_dir);
            }
            for (i = 0; i < n; i++) {
                print_text(stdout, &rows[i]);
            }
        }
        if (promfile != NULL) {
            char *buf = NULL;
            size_t len = 0;
            FILE *m = open_memstream(&buf, &len);

            if (m != NULL) {
                print_prom(m, rows, n);
                fclose(m);
                if (!kh_write_atomic(promfile, buf, len, 0644, err,
                                     sizeof(err))) {
                    kh_err(ctx, "status: %s", err);
                    rc = KH_EXIT_PERM;
                }
                free(buf);
            }
        }
    }
    for (i = 0; i < n; i++) {
        int e = state_exit(rows[i].state);

        if (rc == KH_EXIT_OK
            || (rc == KH_EXIT_ATTENTION && e == KH_EXIT_BROKEN)) {
            rc = e > rc ? e : rc;
        }
        kh_strlist_free(&rows[i].sans);
    }
    free(rows);
    kh_strlist_free(&names);
    return rc;
}
