/* SPDX-License-Identifier: MIT */
/*
 * kh-bench: the driver of `make bench` and, started again by itself, every
 * measuring child. The driver runs several rounds; in each it starts one
 * child per key path (raw PKCS#11, software, keyhold, libp11, TPM, ...)
 * in a rotating order so slow drift of a shared machine spreads over all
 * of them, then prints medians with min-max, the ratios of docs/performance.md
 * beside their targets, and writes the same as JSON.
 *
 *   kh-bench run JSON-OUT          the whole benchmark (needs KHB_* env)
 *   kh-bench child NAME            one measuring child (prints "R name v")
 *   kh-bench first-sig HOW         one start-up sample
 *   kh-bench keyref URI OUT        writes a PEM key reference
 *   kh-bench profile PATH ALG N    N signatures for callgrind; PATH+reuse
 *                                  re-initialises one context per
 *                                  signature instead of a fresh one
 *   kh-bench profile-hs V ALG N    N software-key handshakes, keyhold
 *                                  loaded (V=loaded), not (V=plain), or
 *                                  with key-files = no (V=lazy)
 *   kh-bench profile-tls P ALG N   N TLS 1.3 handshakes, server key of
 *                                  path P (sw, keyhold, libp11)
 *   kh-bench cold-sign ALG N       raw C_Sign CPU time back to back vs
 *                                  right after a software handshake
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>

#include "kh_bench.h"
#include "kh_keyref.h"

extern char **environ;

static const char *self_exe;

/* ------------------------------------------------------------ samples */

#define MAX_SERIES 512
#define MAX_SAMPLES 128

struct series {
    char name[96];
    double v[MAX_SAMPLES];
    int n;
};

static struct series series[MAX_SERIES];
static int nseries;

static struct series *series_get(const char *name, int create)
{
    int i;

    for (i = 0; i < nseries; i++) {
        if (strcmp(series[i].name, name) == 0) {
            return &series[i];
        }
    }
    if (!create || nseries == MAX_SERIES) {
        return NULL;
    }
    snprintf(series[nseries].name, sizeof(series[0].name), "%s", name);
    return &series[nseries++];
}

static void series_add(const char *name, double v)
{
    struct series *s = series_get(name, 1);

    if (s != NULL && s->n < MAX_SAMPLES) {
        s->v[s->n++] = v;
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

static double median_of(const double *v, int n)
{
    double tmp[MAX_SAMPLES];

    if (n <= 0) {
        return NAN;
    }
    memcpy(tmp, v, n * sizeof(double));
    qsort(tmp, n, sizeof(double), cmp_double);
    return n % 2 ? tmp[n / 2] : (tmp[n / 2 - 1] + tmp[n / 2]) / 2;
}

static double med(const char *name)
{
    struct series *s = series_get(name, 0);

    return s == NULL ? NAN : median_of(s->v, s->n);
}

/*
 * a/b from samples taken in the same round (adjacent windows of one
 * child): the median of the per-round ratios. Falls back to the ratio of
 * medians when the series do not pair up.
 */
static double pratio(const char *a, const char *b)
{
    struct series *x = series_get(a, 0), *y = series_get(b, 0);
    double r[MAX_SAMPLES];
    int i;

    if (x == NULL || y == NULL || x->n == 0 || y->n == 0) {
        return NAN;
    }
    if (x->n != y->n) {
        return med(a) / med(b);
    }
    for (i = 0; i < x->n; i++) {
        r[i] = x->v[i] / y->v[i];
    }
    return median_of(r, x->n);
}

static void minmax(const char *name, double *lo, double *hi)
{
    struct series *s = series_get(name, 0);
    int i;

    *lo = *hi = NAN;
    if (s == NULL || s->n == 0) {
        return;
    }
    *lo = *hi = s->v[0];
    for (i = 1; i < s->n; i++) {
        if (s->v[i] < *lo) {
            *lo = s->v[i];
        }
        if (s->v[i] > *hi) {
            *hi = s->v[i];
        }
    }
}

/* ------------------------------------------------------------- ratios */

struct ratio {
    char name[128];
    double value;
    double target;     /* NAN: informational */
    int below_is_ok;   /* target is an upper bound */
};

static struct ratio ratios[256];
static int nratios;

static double ratio_add(const char *name, double value, double target,
                        int below_is_ok)
{
    if (nratios < (int)(sizeof(ratios) / sizeof(ratios[0]))) {
        snprintf(ratios[nratios].name, sizeof(ratios[0].name), "%s", name);
        ratios[nratios].value = value;
        ratios[nratios].target = target;
        ratios[nratios].below_is_ok = below_is_ok;
        nratios++;
    }
    return value;
}

static const char *verdict(double v, double target, int below_is_ok)
{
    if (isnan(v) || isnan(target)) {
        return "";
    }
    if (below_is_ok) {
        return v <= target ? "  ok" : "  UNDER TARGET";
    }
    return v >= target ? "  ok" : "  UNDER TARGET";
}

/* ------------------------------------------------------------ children */

struct child {
    const char *name;
    int tpm;            /* needs the swtpm rows */
    int once;           /* first round only */
    char unavailable[512];
};

static struct child children[] = {
    { "sign", 0, 0, "" },
    { "tls", 0, 0, "" },
    { "footprint", 0, 0, "" },
    { "memory", 0, 1, "" },
    { "sign-tpm-keyhold", 1, 0, "" },
    { "sign-tpm-peer", 1, 0, "" },
    { "sign-tpm-keyhold-hold", 1, 0, "" },
    { "tls-tpm-keyhold-hold", 1, 0, "" },
    { "tls-tpm-keyhold", 1, 0, "" },
    { "tls-tpm-peer", 1, 0, "" },
    { "tpmcmd-keyhold", 1, 1, "" },
    { "tpmcmd-keyhold-hold", 1, 1, "" },
    { "tpmcmd-peer", 1, 1, "" },
};
#define NCHILDREN (int)(sizeof(children) / sizeof(children[0]))

static const char *const first_sig_how[] = {
    "raw", "uri", "keyref", "libp11", "sw"
};
#define NFIRST (int)(sizeof(first_sig_how) / sizeof(first_sig_how[0]))

/* Last non-empty line of a file, for a failed child's reason. */
static void last_line(const char *file, char *out, size_t outlen)
{
    char line[512];
    FILE *f = fopen(file, "r");

    snprintf(out, outlen, "failed (no message)");
    if (f == NULL) {
        return;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        line[strcspn(line, "\n")] = '\0';
        if (line[strspn(line, " \t")] != '\0') {
            snprintf(out, outlen, "%s", line + strspn(line, " \t"));
        }
    }
    fclose(f);
}

/*
 * Starts "kh-bench ARG1 ARG2", reads its stdout line by line through
 * |line_cb|, keeps its stderr in KHB_DIR/child.err. Returns the exit code
 * (or -1). *t_spawn gets the time just before the spawn.
 */
static int run_self(const char *arg1, const char *arg2,
                    void (*line_cb)(const char *line, void *u), void *u,
                    uint64_t *t_spawn)
{
    posix_spawn_file_actions_t fa;
    char *argv[4];
    char line[512];
    int pfd[2], status = 0, rc;
    pid_t pid;
    FILE *f;

    if (pipe(pfd) != 0) {
        return -1;
    }
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, pfd[1], 1);
    posix_spawn_file_actions_addclose(&fa, pfd[0]);
    posix_spawn_file_actions_addclose(&fa, pfd[1]);
    posix_spawn_file_actions_addopen(&fa, 2, khb_path(2, "child.err"),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0600);
    argv[0] = (char *)self_exe;
    argv[1] = (char *)arg1;
    argv[2] = (char *)arg2;
    argv[3] = NULL;
    if (t_spawn != NULL) {
        *t_spawn = khb_now_ns();
    }
    rc = posix_spawn(&pid, self_exe, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(pfd[1]);
    if (rc != 0) {
        close(pfd[0]);
        return -1;
    }
    f = fdopen(pfd[0], "r");
    while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
        line[strcspn(line, "\n")] = '\0';
        if (line_cb != NULL) {
            line_cb(line, u);
        }
    }
    if (f != NULL) {
        fclose(f);
    } else {
        close(pfd[0]);
    }
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (WIFSIGNALED(status)) {
        return 1000 + WTERMSIG(status);
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Paths a child reported unavailable ("U path reason"), first reason kept. */
static struct {
    char path[128];
    char why[320];
} unavail[16];
static int nunavail;

static void unavailable_add(const char *path, const char *why)
{
    int i;

    for (i = 0; i < nunavail; i++) {
        if (strcmp(unavail[i].path, path) == 0) {
            return;
        }
    }
    if (nunavail < (int)(sizeof(unavail) / sizeof(unavail[0]))) {
        snprintf(unavail[nunavail].path, sizeof(unavail[0].path), "%s", path);
        snprintf(unavail[nunavail].why, sizeof(unavail[0].why), "%s", why);
        nunavail++;
        fprintf(stderr, "  %s: unavailable: %s\n", path, why);
    }
}

static void result_line(const char *line, void *u)
{
    char name[128];
    int off = 0;
    double v;

    (void)u;
    if (sscanf(line, "R %127s %lf", name, &v) == 2) {
        series_add(name, v);
    } else if (sscanf(line, "U %127s %n", name, &off) == 1 && off > 0) {
        unavailable_add(name, line + off);
    }
}

static void time_line(const char *line, void *u)
{
    unsigned long long t;

    if (sscanf(line, "T %llu", &t) == 1) {
        *(uint64_t *)u = t;
    }
}

/*
 * swtpm has no resource manager: whatever a child left loaded (a crash, a
 * provider that does not flush) would fill its object slots for the next
 * child. Flush transient objects and sessions before every TPM child.
 */
static void tpm_flush(void)
{
    static const char *const what[3] = { "-t", "-l", "-s" };
    posix_spawn_file_actions_t fa;
    char *argv[3];
    int i, status;
    pid_t pid;

    for (i = 0; i < 3; i++) {
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
        posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
        argv[0] = "tpm2_flushcontext";
        argv[1] = (char *)what[i];
        argv[2] = NULL;
        if (posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ) == 0) {
            while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
            }
        }
        posix_spawn_file_actions_destroy(&fa);
    }
}

static void run_child(struct child *c, int round)
{
    char rbuf[16];
    int rc;

    if (c->unavailable[0] != '\0' || (c->once && round > 0)) {
        return;
    }
    if (c->tpm) {
        tpm_flush();
    }
    fprintf(stderr, "  round %d: %s\n", round + 1, c->name);
    snprintf(rbuf, sizeof(rbuf), "%d", round);
    setenv("KHB_ROUND", rbuf, 1);
    rc = run_self("child", c->name, result_line, NULL, NULL);
    if (rc != 0) {
        char why[400];

        last_line(khb_path(2, "child.err"), why, sizeof(why));
        if (rc > 1000) {
            snprintf(why, sizeof(why), "crashed: %s", strsignal(rc - 1000));
        }
        snprintf(c->unavailable, sizeof(c->unavailable), "%s", why);
        fprintf(stderr, "  %s: unavailable: %s\n", c->name, why);
    }
}

static char first_unavailable[NFIRST][512];

static void run_first_sigs(int reps)
{
    char name[64];
    uint64_t t0, t1;
    int i, r, rc;

    for (r = 0; r < reps; r++) {
        for (i = 0; i < NFIRST; i++) {
            if (first_unavailable[i][0] != '\0') {
                continue;
            }
            t1 = 0;
            rc = run_self("first-sig", first_sig_how[i], time_line, &t1, &t0);
            if (rc != 0 || t1 <= t0) {
                last_line(khb_path(2, "child.err"), first_unavailable[i],
                          sizeof(first_unavailable[i]));
                if (rc > 1000) {
                    snprintf(first_unavailable[i],
                             sizeof(first_unavailable[i]), "crashed: %s",
                             strsignal(rc - 1000));
                }
                fprintf(stderr, "  first-sig %s: unavailable: %s\n",
                        first_sig_how[i], first_unavailable[i]);
                continue;
            }
            snprintf(name, sizeof(name), "startup.%s.ms", first_sig_how[i]);
            series_add(name, (double)(t1 - t0) / 1e6);
        }
    }
}

/* -------------------------------------------------------------- output */

static FILE *out;

/* A median (min-max) cell with DIGITS decimals, or n/a. */
static void cell_prec(const char *name, int digits)
{
    double m = med(name), lo, hi;
    char buf[64];

    minmax(name, &lo, &hi);
    if (isnan(m)) {
        fprintf(out, " %21s", "n/a");
        return;
    }
    snprintf(buf, sizeof(buf), "%.*f (%.*f-%.*f)", digits, m, digits, lo,
             digits, hi);
    fprintf(out, " %21s", buf);
}

static void cell(const char *name)
{
    cell_prec(name, 0);
}

static void cell_ms(const char *name)
{
    cell_prec(name, 2);
}

static void rcell(double v)
{
    if (isnan(v)) {
        fprintf(out, " %7s", "n/a");
    } else {
        fprintf(out, " %7.3f", v);
    }
}

static void scell(double v)
{
    if (isnan(v)) {
        fprintf(out, " %9s", "n/a");
    } else {
        fprintf(out, " %9.2f", v);
    }
}

/*
 * The signature table for one way of calling: |suffix| "" (a fresh
 * context per signature) or "-reuse" (one context re-initialised per
 * signature), ratio names prefixed with |rpre|.
 */
static void table_sign_mode(const char *suffix, const char *rpre,
                            const char *title)
{
    char n_raw[96], n_sw[96], n_kh[96], n_peer[96], rn[128];
    double r1, r2, r3;
    int a, t;

    fprintf(out, "\n%s (ops/s, median (min-max))\n", title);
    fprintf(out, "%-15s %2s %21s %21s %21s %21s %7s %7s %7s\n", "algorithm",
            "th", "raw C_Sign (limit)", "software (ceiling)", "keyhold",
            "libp11 engine", "kh/lim", "kh/p11", "p11/lim");
    for (a = 0; a < KHB_NALG; a++) {
        for (t = 1; t <= 2; t++) {
            snprintf(n_raw, sizeof(n_raw), "sign.raw.%s.t%d", khb_alg_name[a],
                     t);
            snprintf(n_sw, sizeof(n_sw), "sign.sw%s.%s.t%d", suffix,
                     khb_alg_name[a], t);
            snprintf(n_kh, sizeof(n_kh), "sign.keyhold%s.%s.t%d", suffix,
                     khb_alg_name[a], t);
            snprintf(n_peer, sizeof(n_peer), "sign.libp11%s.%s.t%d", suffix,
                     khb_alg_name[a], t);
            fprintf(out, "%-15s %2d", khb_alg_name[a], t);
            cell(n_raw);
            cell(n_sw);
            cell(n_kh);
            cell(n_peer);
            r1 = pratio(n_kh, n_raw);
            r2 = pratio(n_kh, n_peer);
            r3 = pratio(n_peer, n_raw);
            rcell(r1);
            rcell(r2);
            rcell(r3);
            snprintf(rn, sizeof(rn), "sign.%s.t%d.%skeyhold_over_limit",
                     khb_alg_name[a], t, rpre);
            ratio_add(rn, r1, 0.97, 0);
            fprintf(out, "%s\n", verdict(r1, 0.97, 0));
            snprintf(rn, sizeof(rn), "sign.%s.t%d.%skeyhold_over_libp11",
                     khb_alg_name[a], t, rpre);
            ratio_add(rn, r2, NAN, 0);
            snprintf(rn, sizeof(rn), "sign.%s.t%d.%slibp11_over_limit",
                     khb_alg_name[a], t, rpre);
            ratio_add(rn, r3, NAN, 0);
        }
    }
}

static void table_sign(void)
{
    char title[160];

    snprintf(title, sizeof(title),
             "Signatures, EVP_DigestSign of %d bytes, a fresh context per "
             "signature (what libssl does)", KHB_MSG_LEN);
    table_sign_mode("", "", title);
    snprintf(title, sizeof(title),
             "Signatures, EVP_DigestSign of %d bytes, one context "
             "re-initialised per signature (EVP_DigestSignInit_ex without "
             "a key)", KHB_MSG_LEN);
    table_sign_mode("-reuse", "reused_context.", title);
}

/* Per handshake: t_limit = t_sw_handshake - t_sw_sign + t_raw_sign. */
static double hs_limit(const char *proto, const char *kalg, int t)
{
    const char *salg = strcmp(kalg, "rsa") == 0 ? "rsa2048-pss"
                                                : "ecdsa-p256";
    char n[96];
    double hs, sw, raw;

    snprintf(n, sizeof(n), "tls.sw.%s.%s.t%d", proto, kalg, t);
    hs = med(n);
    snprintf(n, sizeof(n), "sign.sw.%s.t%d", salg, t);
    sw = med(n);
    snprintf(n, sizeof(n), "sign.raw.%s.t%d", salg, t);
    raw = med(n);
    return 1.0 / (1.0 / hs - 1.0 / sw + 1.0 / raw);
}

/*
 * A path's handshakes over the limit, round by round (the sign and TLS
 * children of one round ran back to back): median of hs_i / limit_i.
 */
static double hs_over_limit_p(const char *pre, const char *who,
                              const char *proto, const char *kalg, int t);

static double hs_over_limit(const char *who, const char *proto,
                            const char *kalg, int t)
{
    return hs_over_limit_p("", who, proto, kalg, t);
}

static double hs_over_limit_p(const char *pre, const char *who,
                              const char *proto, const char *kalg, int t)
{
    const char *salg = strcmp(kalg, "rsa") == 0 ? "rsa2048-pss"
                                                : "ecdsa-p256";
    struct series *x, *hs, *sw, *raw;
    double r[MAX_SAMPLES], lim;
    char n[96];
    int i;

    snprintf(n, sizeof(n), "%stls.%s.%s.%s.t%d", pre, who, proto, kalg, t);
    x = series_get(n, 0);
    snprintf(n, sizeof(n), "%stls.sw.%s.%s.t%d", pre, proto, kalg, t);
    hs = series_get(n, 0);
    snprintf(n, sizeof(n), "%ssign.sw.%s.t%d", pre, salg, t);
    sw = series_get(n, 0);
    snprintf(n, sizeof(n), "%ssign.raw.%s.t%d", pre, salg, t);
    raw = series_get(n, 0);
    if (x == NULL || hs == NULL || sw == NULL || raw == NULL || x->n == 0
        || hs->n == 0 || sw->n == 0 || raw->n == 0) {
        return NAN;
    }
    if (x->n != hs->n || x->n != sw->n || x->n != raw->n) {
        return median_of(x->v, x->n)
               * (1.0 / median_of(hs->v, hs->n) - 1.0 / median_of(sw->v, sw->n)
                  + 1.0 / median_of(raw->v, raw->n));
    }
    for (i = 0; i < x->n; i++) {
        lim = 1.0 / (1.0 / hs->v[i] - 1.0 / sw->v[i] + 1.0 / raw->v[i]);
        r[i] = x->v[i] / lim;
    }
    return median_of(r, x->n);
}

static void table_tls(void)
{
    static const char *const pr[2] = { "tls13", "tls12" };
    static const char *const ka[2] = { "ecdsa", "rsa" };
    char n_sw[96], n_kh[96], n_p[96], rn[96];
    double lim, r1, r2, r3;
    int p, k, t;

    fprintf(out, "\nTLS full handshakes (per second, median (min-max); "
                 "limit = 1/(t_sw_hs - t_sw_sign + t_raw_sign))\n");
    fprintf(out, "%-12s %2s %21s %9s %21s %21s %7s %7s %7s\n", "handshake",
            "th", "software key", "limit", "keyhold", "libp11", "kh/lim",
            "p11/lim", "kh/p11");
    for (p = 0; p < 2; p++) {
        for (k = 0; k < 2; k++) {
            for (t = 1; t <= 2; t++) {
                snprintf(n_sw, sizeof(n_sw), "tls.sw.%s.%s.t%d", pr[p], ka[k],
                         t);
                snprintf(n_kh, sizeof(n_kh), "tls.keyhold.%s.%s.t%d", pr[p],
                         ka[k], t);
                snprintf(n_p, sizeof(n_p), "tls.libp11.%s.%s.t%d", pr[p],
                         ka[k], t);
                lim = hs_limit(pr[p], ka[k], t);
                fprintf(out, "%s %-6s %2d", pr[p], ka[k], t);
                cell(n_sw);
                if (isnan(lim)) {
                    fprintf(out, " %9s", "n/a");
                } else {
                    fprintf(out, " %9.0f", lim);
                }
                cell(n_kh);
                cell(n_p);
                r1 = hs_over_limit("keyhold", pr[p], ka[k], t);
                r2 = hs_over_limit("libp11", pr[p], ka[k], t);
                r3 = pratio(n_kh, n_p);
                rcell(r1);
                rcell(r2);
                rcell(r3);
                fprintf(out, "%s\n", verdict(r1, 0.97, 0));
                snprintf(rn, sizeof(rn), "tls.%s.%s.t%d.limit_hs_per_s",
                         pr[p], ka[k], t);
                ratio_add(rn, lim, NAN, 0);
                snprintf(rn, sizeof(rn), "tls.%s.%s.t%d.keyhold_over_limit",
                         pr[p], ka[k], t);
                ratio_add(rn, r1, 0.97, 0);
                snprintf(rn, sizeof(rn), "tls.%s.%s.t%d.libp11_over_limit",
                         pr[p], ka[k], t);
                ratio_add(rn, r2, NAN, 0);
                snprintf(rn, sizeof(rn), "tls.%s.%s.t%d.keyhold_over_libp11",
                         pr[p], ka[k], t);
                ratio_add(rn, r3, NAN, 0);
            }
        }
    }
}

/*
 * The same ratios from per-CPU-second rates: a thread's own CPU time does
 * not stretch when other processes take the cores, so on a loaded machine
 * these show the overhead keyhold adds per operation. They leave out time
 * spent waiting (locks, preemption): the wall-clock tables stay the
 * headline, and at 2 threads only these say nothing about scaling.
 */
static void table_cpu(void)
{
    static const char *const pr[2] = { "tls13", "tls12" };
    static const char *const ka[2] = { "ecdsa", "rsa" };
    char a1[96], a2[96], a3[96], rn[96];
    double r1, r2, r3;
    int a, p, k, t;

    if (series_get("cpu.sign.raw.ecdsa-p256.t1", 0) == NULL) {
        return;
    }
    fprintf(out, "\nThe same ratios per CPU-second of the measuring threads "
                 "(load-independent view of overhead)\n");
    fprintf(out, "%-22s %7s %7s %7s\n", "row", "kh/lim", "p11/lim",
            "kh/p11");
    for (a = 0; a < KHB_NALG; a++) {
        for (t = 1; t <= 2; t++) {
            snprintf(a1, sizeof(a1), "cpu.sign.keyhold.%s.t%d",
                     khb_alg_name[a], t);
            snprintf(a2, sizeof(a2), "cpu.sign.libp11.%s.t%d",
                     khb_alg_name[a], t);
            snprintf(a3, sizeof(a3), "cpu.sign.raw.%s.t%d", khb_alg_name[a],
                     t);
            r1 = pratio(a1, a3);
            r2 = pratio(a2, a3);
            r3 = pratio(a1, a2);
            fprintf(out, "sign %-14s t%d", khb_alg_name[a], t);
            rcell(r1);
            rcell(r2);
            rcell(r3);
            fprintf(out, "%s\n", verdict(r1, 0.97, 0));
            snprintf(rn, sizeof(rn), "cpu.sign.%s.t%d.keyhold_over_limit",
                     khb_alg_name[a], t);
            ratio_add(rn, r1, 0.97, 0);
        }
    }
    for (p = 0; p < 2; p++) {
        for (k = 0; k < 2; k++) {
            for (t = 1; t <= 2; t++) {
                snprintf(a1, sizeof(a1), "cpu.tls.keyhold.%s.%s.t%d", pr[p],
                         ka[k], t);
                snprintf(a2, sizeof(a2), "cpu.tls.libp11.%s.%s.t%d", pr[p],
                         ka[k], t);
                r1 = hs_over_limit_p("cpu.", "keyhold", pr[p], ka[k], t);
                r2 = hs_over_limit_p("cpu.", "libp11", pr[p], ka[k], t);
                r3 = pratio(a1, a2);
                fprintf(out, "%s %-13s t%d", pr[p], ka[k], t);
                rcell(r1);
                rcell(r2);
                rcell(r3);
                fprintf(out, "%s\n", verdict(r1, 0.97, 0));
                snprintf(rn, sizeof(rn), "cpu.tls.%s.%s.t%d.keyhold_over_limit",
                         pr[p], ka[k], t);
                ratio_add(rn, r1, 0.97, 0);
            }
        }
    }
}

static void table_scaling(void)
{
    static const char *const pr[2] = { "tls13", "tls12" };
    static const char *const ka[2] = { "ecdsa", "rsa" };
    static const char *const who[3] = { "raw", "keyhold", "libp11" };
    char n1[96], n2[96], rn[96];
    double r;
    int a, w, p, k;

    fprintf(out, "\nThreads: 2-thread / 1-thread throughput (2 cores)\n");
    fprintf(out, "%-20s %9s %9s %9s %9s\n", "row", "raw", "keyhold",
            "libp11", "software");
    for (a = 0; a < KHB_NALG; a++) {
        fprintf(out, "sign %-15s", khb_alg_name[a]);
        for (w = 0; w < 3; w++) {
            snprintf(n1, sizeof(n1), "sign.%s.%s.t1", who[w], khb_alg_name[a]);
            snprintf(n2, sizeof(n2), "sign.%s.%s.t2", who[w], khb_alg_name[a]);
            r = med(n2) / med(n1);
            scell(r);
            if (w == 1) {
                snprintf(rn, sizeof(rn), "sign.%s.keyhold_2t_over_1t",
                         khb_alg_name[a]);
                ratio_add(rn, r, NAN, 0);
            }
        }
        snprintf(n1, sizeof(n1), "sign.sw.%s.t1", khb_alg_name[a]);
        snprintf(n2, sizeof(n2), "sign.sw.%s.t2", khb_alg_name[a]);
        scell(med(n2) / med(n1));
        fprintf(out, "\n");
    }
    for (p = 0; p < 2; p++) {
        for (k = 0; k < 2; k++) {
            fprintf(out, "%s %-14s %9s", pr[p], ka[k], "");
            for (w = 1; w < 3; w++) {
                snprintf(n1, sizeof(n1), "tls.%s.%s.%s.t1", who[w], pr[p],
                         ka[k]);
                snprintf(n2, sizeof(n2), "tls.%s.%s.%s.t2", who[w], pr[p],
                         ka[k]);
                r = med(n2) / med(n1);
                scell(r);
                if (w == 1) {
                    snprintf(rn, sizeof(rn), "tls.%s.%s.keyhold_2t_over_1t",
                             pr[p], ka[k]);
                    ratio_add(rn, r, NAN, 0);
                }
            }
            snprintf(n1, sizeof(n1), "tls.sw.%s.%s.t1", pr[p], ka[k]);
            snprintf(n2, sizeof(n2), "tls.sw.%s.%s.t2", pr[p], ka[k]);
            scell(med(n2) / med(n1));
            fprintf(out, "\n");
        }
    }
}

static void table_startup(void)
{
    static const char *const label[NFIRST] = {
        "raw floor (dlopen+C_Initialize+C_Login+C_Sign)",
        "keyhold, key from pkcs11: URI",
        "keyhold, key from PEM key reference",
        "libp11 engine (peer)",
        "software key file (no token)"
    };
    char n[64], rn[96];
    double floor_ms = med("startup.raw.ms"), d;
    int i;

    fprintf(out, "\nStart-up: process start to first ECDSA signature "
                 "(ms, median (min-max))\n");
    for (i = 0; i < NFIRST; i++) {
        snprintf(n, sizeof(n), "startup.%s.ms", first_sig_how[i]);
        fprintf(out, "%-48s", label[i]);
        cell_ms(n);
        if (i >= 1 && i <= 3) {
            d = med(n) - floor_ms;
            fprintf(out, "   floor %+.2f ms", d);
            if (i <= 2) {
                snprintf(rn, sizeof(rn), "startup.%s.ms_over_floor",
                         first_sig_how[i]);
                ratio_add(rn, d, 0.5, 1);
                fprintf(out, "%s", verdict(d, 0.5, 1));
            }
        }
        if (first_unavailable[i][0] != '\0') {
            fprintf(out, "   (%s)", first_unavailable[i]);
        }
        fprintf(out, "\n");
    }
    fprintf(out, "resident memory per pooled session: keyhold %.1f kB "
                 "(sessions: %.0f with 1 thread, %.0f after 8), module alone "
                 "%.1f kB\n", med("mem.keyhold.kb_per_session"),
            med("mem.keyhold.sessions_1thread"),
            med("mem.keyhold.sessions_8threads"),
            med("mem.raw.kb_per_session"));
}

static double footprint_ratio(const char *kalg, const char *variant)
{
    char np[96], nl[96];
    struct series *p, *l;
    double r[MAX_SAMPLES];
    int i, n;

    snprintf(np, sizeof(np), "footprint.plain.tls13.%s.t1", kalg);
    snprintf(nl, sizeof(nl), "footprint.%s.tls13.%s.t1", variant, kalg);
    p = series_get(np, 0);
    l = series_get(nl, 0);
    if (p == NULL || l == NULL) {
        return NAN;
    }
    /* samples were taken in adjacent pairs: compare pair by pair */
    n = p->n < l->n ? p->n : l->n;
    for (i = 0; i < n; i++) {
        r[i] = l->v[i] / p->v[i];
    }
    return median_of(r, n);
}

/*
 * One footprint block: not loaded vs |variant| ("loaded": keyhold loaded
 * but unused; "lazy": loaded with key-files = no), in handshakes/s and,
 * from bench.sh's callgrind runs, instructions per handshake. The JSON
 * names of the default variant are kept as they were.
 */
static void table_footprint_variant(const char *variant, const char *title,
                                    const char *col, const char *rsuffix)
{
    static const char *const ka[2] = { "ecdsa", "rsa" };
    char np[96], nl[96], rn[96];
    double r, cost;
    int k;

    fprintf(out, "\nFootprint: software-key TLS 1.3 handshakes/s, %s\n",
            title);
    fprintf(out, "%-8s %21s %21s %9s\n", "key", "not loaded", col, "cost");
    for (k = 0; k < 2; k++) {
        snprintf(np, sizeof(np), "footprint.plain.tls13.%s.t1", ka[k]);
        snprintf(nl, sizeof(nl), "footprint.%s.tls13.%s.t1", variant, ka[k]);
        fprintf(out, "%-8s", ka[k]);
        cell(np);
        cell(nl);
        r = footprint_ratio(ka[k], variant);
        cost = (1.0 - r) * 100.0;
        fprintf(out, " %8.2f%%%s\n", cost, verdict(cost, 1.0, 1));
        snprintf(rn, sizeof(rn), "footprint.tls13.%s%s.cost_percent", ka[k],
                 rsuffix);
        ratio_add(rn, cost, 1.0, 1);
    }
    /* the same in instructions per handshake, from bench.sh's callgrind */
    for (k = 0; k < 2; k++) {
        const char *p, *l;
        double ip, il;

        snprintf(np, sizeof(np), "KHB_IR_HS_plain_%s", ka[k]);
        snprintf(nl, sizeof(nl), "KHB_IR_HS_%s_%s", variant, ka[k]);
        p = getenv(np);
        l = getenv(nl);
        if (p == NULL || l == NULL || atof(p) <= 0) {
            continue;
        }
        ip = atof(p);
        il = atof(l);
        if (strcmp(variant, "loaded") == 0) {
            series_add(k ? "footprint.ir.plain.tls13.rsa"
                         : "footprint.ir.plain.tls13.ecdsa", ip);
        }
        snprintf(rn, sizeof(rn), "footprint.ir.%s.tls13.%s", variant, ka[k]);
        series_add(rn, il);
        cost = (il - ip) * 100.0 / ip;
        fprintf(out, "%-8s %12.0f instr %12.0f instr %8.2f%%%s  (callgrind)\n",
                ka[k], ip, il, cost, verdict(cost, 1.0, 1));
        snprintf(rn, sizeof(rn),
                 "footprint.tls13.%s%s.cost_percent_instructions", ka[k],
                 rsuffix);
        ratio_add(rn, cost, 1.0, 1);
    }
}

static void table_footprint(void)
{
    table_footprint_variant("loaded", "keyhold loaded but unused vs not "
                            "loaded", "loaded", "");
    table_footprint_variant("lazy", "keyhold loaded with key-files = no "
                            "(URIs only) vs not loaded",
                            "loaded, key-files=no", ".key_files_no");
}

static void table_tpm(void)
{
    static const char *const pr[2] = { "tls13", "tls12" };
    static const char *const ka[2] = { "ecdsa", "rsa" };
    char n1[96], n2[96], n3[96], rn[96];
    double r, rh;
    int a, p, k;

    if (series_get("sign.tpm-keyhold.ecdsa-p256.t1", 0) == NULL
        && series_get("sign.tpm-peer.ecdsa-p256.t1", 0) == NULL) {
        fprintf(out, "\nTPM rows: not measured (no swtpm run)\n");
        return;
    }
    fprintf(out, "\nTPM on swtpm (no resource manager), 1 thread (per second, "
                 "median (min-max))\n"
                 "keyhold = its default there (lock and connection per "
                 "burst, key kept loaded: TPM2_Sign only); hold = "
                 "KEYHOLD_TPM_HOLD=1 (one connection for the process, as "
                 "with /dev/tpmrm0)\n");
    fprintf(out, "%-18s %21s %21s %21s %7s %7s\n", "row", "keyhold",
            "keyhold hold", "tpm2-openssl", "kh/peer", "hold/p");
    for (a = 0; a < KHB_NALG; a++) {
        snprintf(n1, sizeof(n1), "sign.tpm-keyhold.%s.t1", khb_alg_name[a]);
        snprintf(n3, sizeof(n3), "sign.tpm-keyhold-hold.%s.t1",
                 khb_alg_name[a]);
        snprintf(n2, sizeof(n2), "sign.tpm-peer.%s.t1", khb_alg_name[a]);
        fprintf(out, "sign %-13s", khb_alg_name[a]);
        cell(n1);
        cell(n3);
        cell(n2);
        r = med(n1) / med(n2);
        rh = med(n3) / med(n2);
        rcell(r);
        rcell(rh);
        fprintf(out, "%s\n", verdict(r, 1.0, 0));
        snprintf(rn, sizeof(rn), "tpm.sign.%s.keyhold_over_peer",
                 khb_alg_name[a]);
        ratio_add(rn, r, 1.0, 0);
        snprintf(rn, sizeof(rn), "tpm.sign.%s.keyhold_hold_over_peer",
                 khb_alg_name[a]);
        ratio_add(rn, rh, 1.0, 0);
    }
    for (p = 0; p < 2; p++) {
        for (k = 0; k < 2; k++) {
            snprintf(n1, sizeof(n1), "tls.tpm-keyhold.%s.%s.t1", pr[p], ka[k]);
            snprintf(n3, sizeof(n3), "tls.tpm-keyhold-hold.%s.%s.t1", pr[p],
                     ka[k]);
            snprintf(n2, sizeof(n2), "tls.tpm-peer.%s.%s.t1", pr[p], ka[k]);
            fprintf(out, "%s %-12s", pr[p], ka[k]);
            cell(n1);
            cell(n3);
            cell(n2);
            r = med(n1) / med(n2);
            rh = med(n3) / med(n2);
            rcell(r);
            rcell(rh);
            fprintf(out, "%s\n", verdict(r, 1.0, 0));
            snprintf(rn, sizeof(rn), "tpm.%s.%s.keyhold_over_peer", pr[p],
                     ka[k]);
            ratio_add(rn, r, 1.0, 0);
        }
    }
    fprintf(out, "TPM commands per signature (counted at the TCTI):\n");
    for (a = 0; a < KHB_NALG; a++) {
        snprintf(n1, sizeof(n1), "tpmcmd.tpm-keyhold.%s", khb_alg_name[a]);
        snprintf(n3, sizeof(n3), "tpmcmd.tpm-keyhold-hold.%s",
                 khb_alg_name[a]);
        snprintf(n2, sizeof(n2), "tpmcmd.tpm-peer.%s", khb_alg_name[a]);
        fprintf(out, "  %-14s keyhold %5.1f   hold %5.1f   tpm2-openssl %5.1f\n",
                khb_alg_name[a], med(n1), med(n3), med(n2));
        snprintf(rn, sizeof(rn), "tpm.%s.commands_keyhold_minus_peer",
                 khb_alg_name[a]);
        ratio_add(rn, med(n1) - med(n2), -0.5, 1);
        snprintf(rn, sizeof(rn), "tpm.%s.commands_keyhold_hold_minus_peer",
                 khb_alg_name[a]);
        ratio_add(rn, med(n3) - med(n2), -0.5, 1);
    }
}

/* ----------------------------------------------------------------- JSON */

static void json_num(FILE *f, double v)
{
    if (isnan(v) || isinf(v)) {
        fprintf(f, "null");
    } else {
        fprintf(f, "%.6g", v);
    }
}

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s != '\0'; s++) {
        if (*s == '"' || *s == '\\') {
            fprintf(f, "\\%c", *s);
        } else if ((unsigned char)*s < 0x20) {
            fprintf(f, "\\u%04x", *s);
        } else {
            fputc(*s, f);
        }
    }
    fputc('"', f);
}

struct machine {
    char cpu[128];
    long cores;
    char kernel[256];
    double load_start[3];
    double load_end[3];
};

static void machine_read(struct machine *m)
{
    char line[512];
    struct utsname u;
    FILE *f = fopen("/proc/cpuinfo", "r");

    snprintf(m->cpu, sizeof(m->cpu), "unknown");
    while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, "model name", 10) == 0 && strchr(line, ':')) {
            char *v = strchr(line, ':') + 1;

            v += strspn(v, " \t");
            v[strcspn(v, "\n")] = '\0';
            snprintf(m->cpu, sizeof(m->cpu), "%s", v);
            break;
        }
    }
    if (f != NULL) {
        fclose(f);
    }
    m->cores = sysconf(_SC_NPROCESSORS_ONLN);
    if (uname(&u) == 0) {
        snprintf(m->kernel, sizeof(m->kernel), "%s %s %s", u.sysname,
                 u.release, u.machine);
    }
}

static void write_json(const char *file, const struct machine *m, int rounds)
{
    FILE *f = fopen(file, "w");
    double lo, hi;
    int i, j, first;

    if (f == NULL) {
        fprintf(stderr, "kh-bench: cannot write %s\n", file);
        return;
    }
    fprintf(f, "{\n  \"machine\": {\"cpu\": ");
    json_str(f, m->cpu);
    fprintf(f, ", \"cores\": %ld, \"kernel\": ", m->cores);
    json_str(f, m->kernel);
    fprintf(f, ", \"openssl\": ");
    json_str(f, OpenSSL_version(OPENSSL_VERSION));
    fprintf(f, ", \"loadavg_start\": [%.2f, %.2f, %.2f]"
               ", \"loadavg_end\": [%.2f, %.2f, %.2f]},\n",
            m->load_start[0], m->load_start[1], m->load_start[2],
            m->load_end[0], m->load_end[1], m->load_end[2]);
    fprintf(f, "  \"config\": {\"seconds\": %g, \"rounds\": %d, "
               "\"module\": ", khb_env.seconds, rounds);
    json_str(f, khb_env.module);
    fprintf(f, ", \"message_bytes\": %d},\n", KHB_MSG_LEN);
    fprintf(f, "  \"results\": {");
    for (i = 0; i < nseries; i++) {
        minmax(series[i].name, &lo, &hi);
        fprintf(f, "%s\n    ", i ? "," : "");
        json_str(f, series[i].name);
        fprintf(f, ": {\"median\": ");
        json_num(f, median_of(series[i].v, series[i].n));
        fprintf(f, ", \"min\": ");
        json_num(f, lo);
        fprintf(f, ", \"max\": ");
        json_num(f, hi);
        fprintf(f, ", \"samples\": [");
        for (j = 0; j < series[i].n; j++) {
            fprintf(f, "%s", j ? ", " : "");
            json_num(f, series[i].v[j]);
        }
        fprintf(f, "]}");
    }
    fprintf(f, "\n  },\n  \"ratios\": {");
    for (i = 0; i < nratios; i++) {
        fprintf(f, "%s\n    ", i ? "," : "");
        json_str(f, ratios[i].name);
        fprintf(f, ": {\"value\": ");
        json_num(f, ratios[i].value);
        fprintf(f, ", \"target\": ");
        json_num(f, ratios[i].target);
        fprintf(f, ", \"target_is\": \"%s\", \"met\": ",
                ratios[i].below_is_ok ? "max" : "min");
        if (isnan(ratios[i].target) || isnan(ratios[i].value)) {
            fprintf(f, "null");
        } else if (ratios[i].below_is_ok) {
            fprintf(f, "%s", ratios[i].value <= ratios[i].target ? "true"
                                                                 : "false");
        } else {
            fprintf(f, "%s", ratios[i].value >= ratios[i].target ? "true"
                                                                 : "false");
        }
        fprintf(f, "}");
    }
    fprintf(f, "\n  },\n  \"unavailable\": {");
    first = 1;
    for (i = 0; i < NCHILDREN; i++) {
        if (children[i].unavailable[0] != '\0') {
            fprintf(f, "%s\n    ", first ? "" : ",");
            json_str(f, children[i].name);
            fprintf(f, ": ");
            json_str(f, children[i].unavailable);
            first = 0;
        }
    }
    for (i = 0; i < nunavail; i++) {
        fprintf(f, "%s\n    ", first ? "" : ",");
        json_str(f, unavail[i].path);
        fprintf(f, ": ");
        json_str(f, unavail[i].why);
        first = 0;
    }
    for (i = 0; i < NFIRST; i++) {
        if (first_unavailable[i][0] != '\0') {
            char n[64];

            snprintf(n, sizeof(n), "first-sig-%s", first_sig_how[i]);
            fprintf(f, "%s\n    ", first ? "" : ",");
            json_str(f, n);
            fprintf(f, ": ");
            json_str(f, first_unavailable[i]);
            first = 0;
        }
    }
    fprintf(f, "\n  }\n}\n");
    fclose(f);
}

/* ---------------------------------------------------------------- main */

static int driver(const char *json)
{
    struct machine m;
    int rounds = 5, r, i, k, tpm = khb_env.tpm_tcti != NULL;
    const char *s = getenv("BENCH_ROUNDS");
    uint64_t t0 = khb_now_ns();

    if (s != NULL && atoi(s) > 0) {
        rounds = atoi(s) > 20 ? 20 : atoi(s);
    }
    memset(&m, 0, sizeof(m));
    machine_read(&m);
    getloadavg(m.load_start, 3);
    fprintf(stderr, "kh-bench: %d rounds, %.2f s windows, %s, %ld cores, "
                    "load %.2f\n", rounds, khb_env.seconds, m.cpu, m.cores,
            m.load_start[0]);
    for (r = 0; r < rounds; r++) {
        for (k = 0; k < NCHILDREN; k++) {
            i = (k + r) % NCHILDREN;
            if (children[i].tpm && !tpm) {
                continue;
            }
            run_child(&children[i], r);
        }
        run_first_sigs(3);
    }
    getloadavg(m.load_end, 3);
    out = stdout;
    fprintf(out, "\nkeyhold benchmark: %s, %ld cores, %s, %s\n", m.cpu,
            m.cores, m.kernel, OpenSSL_version(OPENSSL_VERSION));
    fprintf(out, "%d rounds x %.2f s windows, load average %.2f -> %.2f, "
                 "%.0f s in all\n", rounds, khb_env.seconds, m.load_start[0],
            m.load_end[0], (double)(khb_now_ns() - t0) / 1e9);
    table_sign();
    table_tls();
    table_cpu();
    table_scaling();
    table_startup();
    table_footprint();
    table_tpm();
    for (i = 0; i < NCHILDREN; i++) {
        if (children[i].unavailable[0] != '\0') {
            fprintf(out, "unavailable: %s: %s\n", children[i].name,
                    children[i].unavailable);
        }
    }
    for (i = 0; i < nunavail; i++) {
        fprintf(out, "unavailable: %s: %s\n", unavail[i].path,
                unavail[i].why);
    }
    write_json(json, &m, rounds);
    fprintf(out, "\nwrote %s\n", json);
    return 0;
}

static int write_keyref(const char *uri, const char *file)
{
    char err[256];
    BIO *b = BIO_new_file(file, "w");
    int ok;

    ok = b != NULL && kh_keyref_pem_write(b, uri, err, sizeof(err));
    BIO_free(b);
    if (!ok) {
        fprintf(stderr, "kh-bench: key reference: %s\n", b ? err : file);
    }
    return ok ? 0 : 1;
}

static int child(const char *name)
{
    if (strcmp(name, "sign") == 0) {
        return khb_child_sign_all();
    } else if (strcmp(name, "tls") == 0) {
        return khb_child_tls_all();
    } else if (strcmp(name, "footprint") == 0) {
        return khb_child_footprint();
    } else if (strcmp(name, "memory") == 0) {
        return khb_child_memory();
    } else if (strcmp(name, "sign-tpm-keyhold") == 0) {
        return khb_child_sign(KHB_PATH_TPM_KEYHOLD);
    } else if (strcmp(name, "sign-tpm-peer") == 0) {
        return khb_child_sign(KHB_PATH_TPM_PEER);
    } else if (strcmp(name, "tls-tpm-keyhold") == 0) {
        return khb_child_tls(KHB_PATH_TPM_KEYHOLD);
    } else if (strcmp(name, "tls-tpm-peer") == 0) {
        return khb_child_tls(KHB_PATH_TPM_PEER);
    } else if (strcmp(name, "sign-tpm-keyhold-hold") == 0) {
        return khb_child_sign(KHB_PATH_TPM_KEYHOLD_HOLD);
    } else if (strcmp(name, "tls-tpm-keyhold-hold") == 0) {
        return khb_child_tls(KHB_PATH_TPM_KEYHOLD_HOLD);
    } else if (strcmp(name, "tpmcmd-keyhold") == 0) {
        return khb_child_tpm_commands(KHB_PATH_TPM_KEYHOLD);
    } else if (strcmp(name, "tpmcmd-keyhold-hold") == 0) {
        return khb_child_tpm_commands(KHB_PATH_TPM_KEYHOLD_HOLD);
    } else if (strcmp(name, "tpmcmd-peer") == 0) {
        return khb_child_tpm_commands(KHB_PATH_TPM_PEER);
    }
    fprintf(stderr, "kh-bench: child '%s' not implemented\n", name);
    return 1;
}

static const char *env_or(const char *name, const char *dflt)
{
    const char *v = getenv(name);

    return v != NULL && v[0] != '\0' ? v : dflt;
}

int main(int argc, char **argv)
{
    const char *secs;

    self_exe = argv[0];
    khb_env.dir = env_or("KHB_DIR", ".");
    khb_env.module = env_or("KHB_MODULE", "/usr/lib/softhsm/libsofthsm2.so");
    khb_env.token = env_or("KHB_TOKEN", "bench");
    khb_env.pin = env_or("KHB_PIN", "1234");
    khb_env.provdir = env_or("KHB_PROVIDER_DIR", "build");
    khb_env.engine = env_or("KHB_LIBP11_ENGINE",
                            "/usr/lib/x86_64-linux-gnu/engines-3/pkcs11.so");
    khb_env.tpm_tcti = getenv("KHB_TPM_TCTI");
    secs = env_or("BENCH_SECONDS", "0.5");
    khb_env.seconds = atof(secs);
    if (khb_env.seconds < 0.02) {
        khb_env.seconds = 0.02;
    }
    if (khb_env.seconds > 30) {
        khb_env.seconds = 30;
    }
    if (argc == 3 && strcmp(argv[1], "run") == 0) {
        return driver(argv[2]);
    }
    if (argc == 3 && strcmp(argv[1], "child") == 0) {
        return child(argv[2]);
    }
    if (argc == 3 && strcmp(argv[1], "first-sig") == 0) {
        return khb_child_first_sig(argv[2]);
    }
    if (argc == 5 && strcmp(argv[1], "profile") == 0) {
        int a;

        for (a = 0; a < KHB_NALG; a++) {
            if (strcmp(argv[3], khb_alg_name[a]) == 0) {
                break;
            }
        }
        if (a == KHB_NALG) {
            fprintf(stderr, "kh-bench: unknown algorithm '%s'\n", argv[3]);
            return 2;
        }
        return strcmp(argv[2], "raw") == 0
               ? khb_profile_raw(a, atol(argv[4]))
               : khb_profile(argv[2], a, atol(argv[4]));
    }
    if (argc == 5 && strcmp(argv[1], "profile-hs") == 0) {
        return khb_profile_hs(argv[2], argv[3], atol(argv[4]));
    }
    if (argc == 4 && strcmp(argv[1], "cold-sign") == 0) {
        return khb_cold_sign(argv[2], atol(argv[3]));
    }
    if (argc == 5 && strcmp(argv[1], "profile-tls") == 0) {
        return khb_profile_tls(argv[2], argv[3], atol(argv[4]));
    }
    if (argc == 4 && strcmp(argv[1], "keyref") == 0) {
        return write_keyref(argv[2], argv[3]);
    }
    fprintf(stderr, "usage: kh-bench run JSON | child NAME | first-sig HOW | "
                    "keyref URI OUT | profile PATH ALG N |\n"
                    "       profile-hs plain|loaded|lazy ecdsa|rsa N |\n"
                    "       profile-tls sw|keyhold|libp11 ecdsa|rsa N |\n"
                    "       cold-sign ecdsa|rsa N\n");
    return 2;
}
