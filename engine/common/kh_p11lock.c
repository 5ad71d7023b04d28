/* SPDX-License-Identifier: MIT */
/*
 * The token-file lock (see kh_p11lock.h): flock() on SoftHSM's token
 * directory, bounded, fork-safe, ordered between threads by a read-write
 * lock.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "kh_p11lock.h"

#define SOFTHSM_DEFAULT_CONF "/etc/softhsm/softhsm2.conf"
#define SOFTHSM_USER_CONF "/.config/softhsm2/softhsm2.conf"
#define TOKENDIR_KEY "directories.tokendir"

static pthread_once_t once = PTHREAD_ONCE_INIT;
static pthread_rwlock_t rw;
/* Bumped in the child of a fork: sections entered before it are the
 * parent's, and the child's read-write lock is a new one. */
static unsigned int fork_gen = 1;
static __thread int depth;
static __thread unsigned int depth_gen;
/* After a section waited in vain (a process stuck holding the lock), the
 * next ones until then (CLOCK_MONOTONIC ms) try once instead of waiting:
 * one stuck holder delays a load once, not at each of its calls. */
static long long no_wait_until;

static void rw_init(void)
{
    pthread_rwlockattr_t a;

    pthread_rwlockattr_init(&a);
    /* A login waits for the signing threads of its own process to finish
     * their sections, not for ever newer ones. */
    pthread_rwlockattr_setkind_np(&a,
                                  PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&rw, &a);
    pthread_rwlockattr_destroy(&a);
}

static void atfork_child(void)
{
    rw_init();
    __atomic_add_fetch(&fork_gen, 1, __ATOMIC_ACQ_REL);
}

static void once_init(void)
{
    rw_init();
    pthread_atfork(NULL, NULL, atfork_child);
}

int kh_p11lock_is_softhsm(const char *module_path)
{
    char real[PATH_MAX];
    const char *base;

    if (module_path == NULL) {
        return 0;
    }
    base = strrchr(module_path, '/');
    base = base != NULL ? base + 1 : module_path;
    if (strstr(base, "softhsm") != NULL) {
        return 1;
    }
    /* A distribution's alias for it (libsofthsm2.so -> .../softhsm/...). */
    if (realpath(module_path, real) != NULL) {
        base = strrchr(real, '/');
        base = base != NULL ? base + 1 : real;
        return strstr(base, "softhsm") != NULL;
    }
    return 0;
}

static char *trim(char *s)
{
    size_t n;

    while (*s == ' ' || *s == '\t') {
        s++;
    }
    n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n'
                     || s[n - 1] == '\r')) {
        s[--n] = '\0';
    }
    return s;
}

/* directories.tokendir of the SoftHSM configuration file |path|. */
static int conf_tokendir(const char *path, char *dir, size_t dirlen)
{
    FILE *f = fopen(path, "re");
    char line[1024], *p, *v;
    int ok = 0;

    if (f == NULL) {
        return 0;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        p = strchr(line, '#');
        if (p != NULL) {
            *p = '\0';
        }
        v = strchr(line, '=');
        if (v == NULL) {
            continue;
        }
        *v++ = '\0';
        if (strcmp(trim(line), TOKENDIR_KEY) != 0) {
            continue;
        }
        v = trim(v);
        if (*v != '\0' && strlen(v) < dirlen) {
            memcpy(dir, v, strlen(v) + 1);
            ok = 1;
        }
    }
    fclose(f);
    return ok;
}

int kh_p11lock_tokendir(char *dir, size_t dirlen)
{
    const char *conf = getenv("SOFTHSM2_CONF");
    const char *home;
    char user[PATH_MAX];

    /* The order SoftHSM 2.6 itself looks for its configuration in. */
    if (conf != NULL) {
        return conf_tokendir(conf, dir, dirlen);
    }
    home = getenv("HOME");
    if (home != NULL
        && snprintf(user, sizeof(user), "%s%s", home, SOFTHSM_USER_CONF)
               < (int)sizeof(user)
        && access(user, R_OK) == 0) {
        return conf_tokendir(user, dir, dirlen);
    }
    return conf_tokendir(SOFTHSM_DEFAULT_CONF, dir, dirlen);
}

static long long mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void deadline_after(struct timespec *ts, long ms)
{
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

static int past(const struct timespec *dl)
{
    struct timespec now;

    clock_gettime(CLOCK_REALTIME, &now);
    return now.tv_sec > dl->tv_sec
           || (now.tv_sec == dl->tv_sec && now.tv_nsec >= dl->tv_nsec);
}

int kh_p11lock_enter(KH_P11LOCK *lk, const char *dir, int exclusive)
{
    unsigned int gen;
    struct timespec dl, nap;
    long wait_us = 500, wait_ms = KH_P11LOCK_WAIT_MS;
    long long now;
    int rc;

    lk->fd = -1;
    lk->nested = 0;
    lk->rw_held = 0;
    lk->gen = 0;
    if (dir == NULL) {
        return 1;
    }
    pthread_once(&once, once_init);
    gen = __atomic_load_n(&fork_gen, __ATOMIC_ACQUIRE);
    lk->gen = gen;
    if (depth_gen != gen) {
        /* Sections of the thread that forked belong to the parent. */
        depth = 0;
        depth_gen = gen;
    }
    if (depth > 0) {
        depth++;
        lk->nested = 1;
        return 1;
    }
    depth = 1;
    now = mono_ms();
    if (now < __atomic_load_n(&no_wait_until, __ATOMIC_RELAXED)) {
        wait_ms = 0;
    }
    deadline_after(&dl, wait_ms);
    rc = exclusive ? pthread_rwlock_timedwrlock(&rw, &dl)
                   : pthread_rwlock_timedrdlock(&rw, &dl);
    lk->rw_held = rc == 0;
    /* A fresh open file description per section: the lock belongs to it
     * alone, and a forked child holds no copy of a later one. */
    lk->fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (lk->fd < 0) {
        return 0;
    }
    for (;;) {
        if (flock(lk->fd, (exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB) == 0) {
            if (__atomic_load_n(&no_wait_until, __ATOMIC_RELAXED) != 0) {
                __atomic_store_n(&no_wait_until, 0, __ATOMIC_RELAXED);
            }
            return lk->rw_held;
        }
        if (errno != EWOULDBLOCK && errno != EINTR) {
            break;
        }
        if (past(&dl)) {
            if (wait_ms > 0) {
                __atomic_store_n(&no_wait_until,
                                 mono_ms() + KH_P11LOCK_NO_WAIT_MS,
                                 __ATOMIC_RELAXED);
            }
            break;
        }
        nap.tv_sec = 0;
        nap.tv_nsec = wait_us * 1000L;
        nanosleep(&nap, NULL);
        if (wait_us < 16000) {
            wait_us *= 2;
        }
    }
    close(lk->fd);
    lk->fd = -1;
    return 0;
}

void kh_p11lock_leave(KH_P11LOCK *lk)
{
    int same = lk->gen == __atomic_load_n(&fork_gen, __ATOMIC_ACQUIRE);

    if (lk->gen == 0 && lk->fd < 0 && !lk->rw_held && !lk->nested) {
        return; /* no section (no directory) */
    }
    if (lk->nested) {
        if (same && depth > 0) {
            depth--;
        }
        lk->nested = 0;
        return;
    }
    if (lk->fd >= 0) {
        /* Unlocked explicitly only in the process that locked: a child
         * forked inside the section must not free its parent's lock. */
        if (same) {
            flock(lk->fd, LOCK_UN);
        }
        close(lk->fd);
        lk->fd = -1;
    }
    if (lk->rw_held && same) {
        pthread_rwlock_unlock(&rw);
    }
    lk->rw_held = 0;
    if (same) {
        depth = 0;
    }
}
