/* SPDX-License-Identifier: MIT */
/*
 * keyhold renew: renews the identities that are due under their policy and
 * leaves the others alone, so a timer can run it every few hours. Each
 * identity under its lock (busy: exit 75, untouched); failures back off.
 *
 * Policy (identity config):
 *   renew-after-percent = 67   due when this share of the lifetime passed
 *   renew-before-days = 30     ... or when fewer days than this remain
 *                              (at most a third of the lifetime)
 * moved earlier by a spread stable per identity and key (est.c).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keyhold.h"
#include "est.h"

static const char usage[] =
"usage: keyhold renew [NAME | --all] [--force]\n"
"\n"
"Renews over EST (simplereenroll, authenticated by the current hardware key)\n"
"each identity that is due: two thirds of its certificate's lifetime passed\n"
"or fewer than 30 days left (config: renew-after-percent, renew-before-days),\n"
"spread per appliance. Identities not due, or backing off after a failure,\n"
"are left alone. An expired certificate (or changed host names) enrols again\n"
"with the bootstrap credentials from the identity's config.\n"
"  --all      every identity that has an EST server configured\n"
"  --force    renew now, whatever the policy and the backoff say\n"
"Exit codes: 0 ok or nothing due, 2 certificate refused, 3 token, 4\n"
"network/CA, 5 clock-suspect or no certificate, 8 reload hook failed\n"
"(rolled back), 75 busy.\n";

static void fmt_time(time_t t, char *buf, size_t len)
{
    struct tm tm;

    gmtime_r(&t, &tm);
    strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* KH_EXIT_OK also when nothing was due. */
static int renew_one(KH_CTX *ctx, const char *name, int force, int all)
{
    char err[KH_ERR_MAX], when[32];
    KH_IDENTITY *id = NULL;
    KH_STATUS_REC st;
    X509 *cur = NULL;
    time_t now = time(NULL), due;
    const char *v;
    int rc, lockfd = -1, after;
    long before;

    rc = kh_identity_load_cmd(ctx, "renew", name, &id);
    if (rc != KH_EXIT_OK) {
        return rc;
    }
    if (all && kh_id_get(id, "est-url") == NULL
        && kh_id_get(id, "enrol-protocol") == NULL) {
        kh_dbg(ctx, "renew %s: no enrolment configured: skipped", name);
        kh_identity_free(id);
        return KH_EXIT_OK;
    }
    rc = kh_lock(ctx, name, &lockfd, err, sizeof(err));
    if (rc != KH_EXIT_OK) {
        kh_est_print_err(ctx, "renew", name, err);
        kh_identity_free(id);
        return rc;
    }
    rc = kh_state_prepare(ctx, name, err, sizeof(err));
    if (rc != KH_EXIT_OK) {
        goto fail;
    }
    kh_state_load_current(ctx, name, &cur, NULL, NULL);
    if (cur == NULL) {
        rc = kh_seterr(err, sizeof(err), KH_EXIT_ATTENTION, "no certificate "
                       "yet: run keyhold enroll %s first", name);
        goto fail;
    }
    if (kh_clock_suspect(now)) {
        rc = kh_seterr(err, sizeof(err), KH_EXIT_ATTENTION, "the clock is "
                       "before this build's date (clock-suspect): not "
                       "renewing; set the time");
        goto fail;
    }
    kh_expiry_warn(ctx, id, cur, now);
    v = kh_id_get(id, "renew-after-percent");
    after = v != NULL ? atoi(v) : 67;
    v = kh_id_get(id, "renew-before-days");
    before = v != NULL ? atol(v) : 30;
    due = kh_renew_due_time(name, cur, after, before);
    kh_status_read(ctx, name, &st);
    if (!force) {
        const char *why = NULL;
        KH_STRLIST names = { 0 };
        size_t i;

        /* changed host names make it due at once */
        if (kh_identity_names(id, &names)) {
            for (i = 0; i < names.n; i++) {
                if (!kh_cert_has_name(cur, names.v[i])) {
                    why = "host names changed";
                }
            }
        }
        kh_strlist_free(&names);
        if (why == NULL && now < due) {
            fmt_time(due, when, sizeof(when));
            printf("%s: not due (renewal from %s)\n", name, when);
            /* the timer's run is also the recovery after a crash */
            kh_est_clean_orphans(ctx, id);
            rc = KH_EXIT_OK;
            goto end;
        }
        if (st.failures > 0 && st.next_attempt > (long long)now) {
            fmt_time((time_t)st.next_attempt, when, sizeof(when));
            printf("%s: due, backing off after %lld failure(s) until %s "
                   "(last error: %s)\n", name, st.failures, when,
                   st.last_error);
            rc = KH_EXIT_OK;
            goto end;
        }
    }
    rc = kh_est_run(ctx, id, KH_EST_RENEW, NULL, err, sizeof(err));
    kh_est_record(ctx, name, rc, err);
    if (rc == KH_EXIT_OK) {
        goto end;
    }
    kh_status_read(ctx, name, &st);
    fmt_time((time_t)st.next_attempt, when, sizeof(when));
    {
        size_t n = strlen(err);

        snprintf(err + n, sizeof(err) - n, " (next attempt %s)", when);
    }
    goto print;
fail:
    kh_audit(ctx, "renew", name, NULL, "failed", err);
print:
    kh_est_print_err(ctx, "renew", name, err);
end:
    X509_free(cur);
    kh_unlock(lockfd);
    kh_identity_free(id);
    return rc;
}

int cmd_renew(KH_CTX *ctx, int argc, char **argv)
{
    static const struct option opts[] = {
        { "all", no_argument, NULL, 'a' },
        { "force", no_argument, NULL, 'f' },
        { NULL, 0, NULL, 0 }
    };
    KH_STRLIST names = { 0 };
    int c, all = 0, force = 0, rc = KH_EXIT_OK, r, busy = 0;
    size_t i;

    if (kh_want_help(argc, argv, usage)) {
        return KH_EXIT_OK;
    }
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'a': all = 1; break;
        case 'f': force = 1; break;
        default:
            fputs(usage, stderr);
            return KH_EXIT_USAGE;
        }
    }
    r = kh_manage_args(ctx, "renew", "renew: ", all, argc, usage);
    if (r != KH_EXIT_OK) {
        return r;
    }
    if (!all) {
        if (!kh_name_valid(argv[optind])) {
            kh_err(ctx, "renew: invalid identity name '%s'", argv[optind]);
            return KH_EXIT_REJECTED;
        }
        return renew_one(ctx, argv[optind], force, 0);
    }
    if (!kh_identity_list(ctx, &names)) {
        kh_err(ctx, "renew: cannot list identities in %s", ctx->conf_dir);
        return KH_EXIT_BROKEN;
    }
    for (i = 0; i < names.n; i++) {
        r = renew_one(ctx, names.v[i], force, 1);
        if (r == KH_EXIT_BUSY) {
            busy = 1;
        } else if (r != KH_EXIT_OK && rc == KH_EXIT_OK) {
            rc = r;
        }
    }
    kh_strlist_free(&names);
    if (rc == KH_EXIT_OK && busy) {
        rc = KH_EXIT_BUSY;
    }
    return rc;
}
