/* SPDX-License-Identifier: MIT */
/*
 * What the C unit tests share: a failure count, a check count and CHECK,
 * which records a failed condition with its place and goes on, so one run
 * reports every failed check. One header per test binary (static state).
 */
#ifndef KH_UNIT_CHECK_H
#define KH_UNIT_CHECK_H

#include <stdio.h>

static int failures;
static int checks;

#define CHECK(cond)                                                         \
    do {                                                                    \
        checks++;                                                           \
        if (!(cond)) {                                                      \
            failures++;                                                     \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__,          \
                    __LINE__, #cond);                                       \
        }                                                                   \
    } while (0)

/* Prints "NAME: N checks, N failed"; the exit status for main. */
static inline int kh_check_summary(const char *name)
{
    printf("%s: %d checks, %d failed\n", name, checks, failures);
    return failures == 0 ? 0 : 1;
}

#endif
