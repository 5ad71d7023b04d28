/* SPDX-License-Identifier: MIT */
/* The measured loop shared by every benchmark row: N threads, a warm-up,
 * then one fixed window in which completed operations are counted. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <openssl/err.h>

#include "kh_bench.h"

KHB_ENV khb_env;

const char *const khb_alg_name[KHB_NALG] = {
    "ecdsa-p256", "rsa2048-pkcs1", "rsa2048-pss"
};

struct thr {
    pthread_t tid;
    khb_op_fn op;
    void *state;
    uint64_t start;
    uint64_t deadline;
    long count;
    int failed;
    uint64_t cpu0, cpu1;     /* this thread's CPU time at the window edges */
};

/* Rate of the last khb_measure() per CPU-second of its threads. */
static double last_cpu_rate = -1;

uint64_t khb_thread_cpu_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t khb_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

double khb_now(void)
{
    return (double)khb_now_ns() / 1e9;
}

void khb_result(const char *name, double value)
{
    printf("R %s %.6g\n", name, value);
    fflush(stdout);
}

void khb_rate(const char *name, double value)
{
    khb_result(name, value);
    if (last_cpu_rate > 0) {
        printf("R cpu.%s %.6g\n", name, last_cpu_rate);
        fflush(stdout);
    }
}

static char last_err[320];

void khb_unavailable(const char *path, const char *reason)
{
    if (reason == NULL) {
        reason = last_err[0] != '\0' ? last_err : "failed (see stderr)";
    }
    printf("U %s %s\n", path, reason);
    fflush(stdout);
}

int khb_round(void)
{
    const char *r = getenv("KHB_ROUND");

    return r != NULL ? atoi(r) : 0;
}

const char *khb_path(int slot, const char *name)
{
    static char buf[4][1024];

    snprintf(buf[slot & 3], sizeof(buf[0]), "%s/%s", khb_env.dir, name);
    return buf[slot & 3];
}

static int print_err(const char *str, size_t len, void *u)
{
    fprintf(stderr, "  %s: %.*s", (const char *)u, (int)len, str);
    return 1;
}

void khb_ossl_err(const char *what)
{
    char buf[256];
    unsigned long e = ERR_peek_last_error();

    /* keep the innermost reason for the driver's "unavailable" line */
    if (e != 0) {
        ERR_error_string_n(e, buf, sizeof(buf));
        snprintf(last_err, sizeof(last_err), "%s: %s", what, buf);
    } else {
        snprintf(last_err, sizeof(last_err), "%s failed", what);
    }
    fprintf(stderr, "kh-bench: %s failed\n", what);
    ERR_print_errors_cb(print_err, (void *)what);
}

/*
 * Each thread runs operations from the moment it starts (warm-up: pools
 * grow, caches fill) and counts those that complete inside
 * [start, deadline]. An operation straddling either edge is off by at most
 * one per thread and per edge.
 */
static void *thr_main(void *arg)
{
    struct thr *t = arg;
    uint64_t now;
    long guard = 0;

    for (;;) {
        if (!t->op(t->state)) {
            t->failed = 1;
            break;
        }
        now = khb_now_ns();
        if (now > t->deadline) {
            /* CPU time from the end of the first counted operation to the
             * end of this one spans exactly |count| operations */
            t->cpu1 = khb_thread_cpu_ns();
            break;
        }
        if (now >= t->start) {
            if (t->count == 0) {
                t->cpu0 = khb_thread_cpu_ns();
            }
            t->count++;
        }
        /* A window is seconds long; no operation is faster than 10 ns. */
        if (++guard > 2000000000L) {
            t->failed = 1;
            break;
        }
    }
    return NULL;
}

double khb_measure(khb_op_fn op, void **state, int nthreads)
{
    struct thr thr[KHB_MAX_THREADS];
    double warm = khb_env.seconds * 0.2;
    uint64_t start, deadline;
    long total = 0;
    int i, started = 0, failed = 0;

    last_cpu_rate = -1;
    if (nthreads < 1 || nthreads > KHB_MAX_THREADS) {
        return -1;
    }
    if (warm < 0.05) {
        warm = 0.05;
    }
    if (warm > 0.3) {
        warm = 0.3;
    }
    start = khb_now_ns() + (uint64_t)(warm * 1e9);
    deadline = start + (uint64_t)(khb_env.seconds * 1e9);
    memset(thr, 0, sizeof(thr));
    for (i = 0; i < nthreads; i++) {
        thr[i].op = op;
        thr[i].state = state[i];
        thr[i].start = start;
        thr[i].deadline = deadline;
        if (pthread_create(&thr[i].tid, NULL, thr_main, &thr[i]) != 0) {
            failed = 1;
            break;
        }
        started++;
    }
    for (i = 0; i < started; i++) {
        pthread_join(thr[i].tid, NULL);
        failed |= thr[i].failed;
        total += thr[i].count;
    }
    if (failed || started != nthreads) {
        return -1;
    }
    /* Per CPU-second: what the threads did while they actually ran, so
     * other processes on a shared machine move it far less. Summed over
     * threads (two threads with a core each would do this much). */
    last_cpu_rate = 0;
    for (i = 0; i < nthreads; i++) {
        if (thr[i].count == 0 || thr[i].cpu1 <= thr[i].cpu0) {
            last_cpu_rate = -1;
            break;
        }
        last_cpu_rate += (double)thr[i].count
                         / ((double)(thr[i].cpu1 - thr[i].cpu0) / 1e9);
    }
    return (double)total / ((double)(deadline - start) / 1e9);
}

/*
 * The one function callgrind collects in profile mode
 * (--toggle-collect=khb_prof_op): instruction counts per operation
 * without set-up, stable on a noisy machine.
 */
__attribute__((noinline)) int khb_prof_op(khb_op_fn op, void *state)
{
    return op(state);
}

int khb_profile_loop(khb_op_fn op, void *state, long n)
{
    long i;

    for (i = 0; i < n; i++) {
        if (!khb_prof_op(op, state)) {
            return 0;
        }
    }
    return 1;
}
