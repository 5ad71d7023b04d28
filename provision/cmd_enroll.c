/* SPDX-License-Identifier: MIT */
/*
 * keyhold enroll: the first certificate of an identity over EST. The
 * options are stored in the identity's config, so later runs (and renew)
 * reuse them; a password is stored only as the path of its file.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keyhold.h"
#include "est.h"

static const char usage[] =
"usage: keyhold enroll NAME\n"
"           --est https://HOST[:PORT][/.well-known/est[/LABEL]]\n"
"           [--server-ca FILE] [--ca FILE | --ca-fingerprint sha256:HEX]\n"
"           [--user USER --password-file FILE] [--bootstrap IDENTITY]\n"
"           [--poll-max SECONDS] [--timeout SECONDS]\n"
"\n"
"Gets the identity's certificate from an EST (RFC 7030) server: /cacerts is\n"
"checked against the pinned CA, the CSR is signed by the hardware key, the\n"
"certificate passes every install check and a loopback TLS health check,\n"
"then the identity switches atomically and its reload hooks run.\n"
"\n"
"  --est URL            the EST server (stored as est-url)\n"
"  --server-ca FILE     trust anchor for the EST server's TLS certificate\n"
"                       (default: the system store) (est-server-ca)\n"
"  --ca FILE            the CA that issues this identity's certificate (ca)\n"
"  --ca-fingerprint H   ... or its SHA-256 fingerprint (ca-fingerprint)\n"
"  --user USER          HTTP basic auth user (est-user)\n"
"  --password-file F    file holding the password, mode 0600/0640\n"
"                       (est-password-file; never give a password in argv)\n"
"  --bootstrap NAME     TLS client auth with another identity (a factory\n"
"                       bootstrap certificate whose key is in hardware)\n"
"  --poll-max SECONDS   how long to wait for a CA's manual approval (600)\n"
"  --timeout SECONDS    per request (60)\n"
"Without --ca/--ca-fingerprint the CA is taken from /cacerts only when the\n"
"server was authenticated by --server-ca, and its fingerprint is pinned.\n"
"Exit codes: 0 ok, 1 usage, 2 certificate refused, 3 token, 4 network/CA,\n"
"6 PIN, 7 permission, 8 broken (reload hook failed: rolled back), 75 busy.\n";

int cmd_enroll(KH_CTX *ctx, int argc, char **argv)
{
    static const struct option opts[] = {
        { "est", required_argument, NULL, 'e' },
        { "server-ca", required_argument, NULL, 's' },
        { "ca", required_argument, NULL, 'c' },
        { "ca-fingerprint", required_argument, NULL, 'f' },
        { "user", required_argument, NULL, 'u' },
        { "password-file", required_argument, NULL, 'p' },
        { "bootstrap", required_argument, NULL, 'b' },
        { "poll-max", required_argument, NULL, 'P' },
        { "timeout", required_argument, NULL, 't' },
        { NULL, 0, NULL, 0 }
    };
    const char *est = NULL, *server_ca = NULL, *ca = NULL, *fp = NULL;
    const char *user = NULL, *pwfile = NULL, *boot = NULL, *poll = NULL;
    const char *timeout = NULL, *name;
    char err[KH_ERR_MAX], base[1024], abs[KH_PATH_MAX];
    KH_IDENTITY *id = NULL;
    int c, rc, lockfd = -1;

    if (kh_want_help(argc, argv, usage)) {
        return KH_EXIT_OK;
    }
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'e': est = optarg; break;
        case 's': server_ca = optarg; break;
        case 'c': ca = optarg; break;
        case 'f': fp = optarg; break;
        case 'u': user = optarg; break;
        case 'p': pwfile = optarg; break;
        case 'b': boot = optarg; break;
        case 'P': poll = optarg; break;
        case 't': timeout = optarg; break;
        default:
            fputs(usage, stderr);
            return KH_EXIT_USAGE;
        }
    }
    if (optind + 1 != argc) {
        fputs(usage, stderr);
        return KH_EXIT_USAGE;
    }
    name = argv[optind];
    if (!kh_name_valid(name)) {
        kh_err(ctx, "enroll: invalid identity name '%s'", name);
        return KH_EXIT_REJECTED;
    }
    if (ca != NULL && fp != NULL) {
        kh_err(ctx, "enroll %s: give --ca or --ca-fingerprint, not both",
               name);
        return KH_EXIT_USAGE;
    }
    if ((user != NULL) != (pwfile != NULL)) {
        kh_err(ctx, "enroll %s: --user and --password-file go together",
               name);
        return KH_EXIT_USAGE;
    }
    if (est != NULL && !kh_est_base_url(est, base, sizeof(base), err,
                                        sizeof(err))) {
        kh_err(ctx, "enroll %s: --est: %s", name, err);
        return KH_EXIT_USAGE;
    }
    if (boot != NULL && (!kh_name_valid(boot) || strcmp(boot, name) == 0)) {
        kh_err(ctx, "enroll %s: --bootstrap: invalid identity '%s'", name,
               boot);
        return KH_EXIT_USAGE;
    }
    rc = kh_identity_load(ctx, name, &id, err, sizeof(err));
    if (rc != KH_EXIT_OK) {
        kh_err(ctx, "enroll: %s", err);
        return rc;
    }
    rc = kh_require_manage(ctx, "enroll", err, sizeof(err));
    if (rc == KH_EXIT_OK) {
        rc = kh_lock(ctx, name, &lockfd, err, sizeof(err));
    }
    if (rc == KH_EXIT_OK) {
        rc = kh_state_prepare(ctx, name, err, sizeof(err));
    }
    if (rc != KH_EXIT_OK) {
        goto end;
    }
    /* settings for this and later runs (paths made absolute) */
#define SET_PATH(key, val)                                                  \
    do {                                                                    \
        if ((val) != NULL) {                                                \
            if (realpath((val), abs) == NULL) {                             \
                rc = kh_seterr(err, sizeof(err), KH_EXIT_USAGE,             \
                               "cannot read %s", (val));                    \
                goto end;                                                   \
            }                                                               \
            kh_id_set(id, (key), abs);                                      \
        }                                                                   \
    } while (0)
    if (est != NULL) {
        kh_id_set(id, "est-url", base);
    }
    SET_PATH("est-server-ca", server_ca);
    if (ca != NULL) {
        SET_PATH("ca", ca);
        kh_id_set(id, "ca-fingerprint", NULL);
    }
    if (fp != NULL) {
        kh_id_set(id, "ca-fingerprint", fp);
        kh_id_set(id, "ca", NULL);
    }
    if (user != NULL) {
        kh_id_set(id, "est-user", user);
        SET_PATH("est-password-file", pwfile);
    }
    if (boot != NULL) {
        kh_id_set(id, "est-bootstrap", boot);
    }
    if (poll != NULL) {
        kh_id_set(id, "est-poll-max", poll);
    }
    if (timeout != NULL) {
        kh_id_set(id, "est-timeout", timeout);
    }
#undef SET_PATH
    if (est != NULL || server_ca != NULL || ca != NULL || fp != NULL
        || user != NULL || boot != NULL || poll != NULL || timeout != NULL) {
        rc = kh_identity_save(ctx, id, err, sizeof(err));
        if (rc != KH_EXIT_OK) {
            goto end;
        }
    }
    rc = kh_est_run(ctx, id, KH_EST_ENROLL, NULL, err, sizeof(err));
    if (rc != KH_EXIT_OK) {
        kh_est_record_failure(ctx, name, err);
    } else {
        kh_status_record_attempt(ctx, name, 1, NULL, 0);
    }
end:
    if (rc != KH_EXIT_OK) {
        kh_est_print_err(ctx, "enroll", name, err);
    }
    if (lockfd >= 0) {
        kh_unlock(lockfd);
    }
    kh_identity_free(id);
    return rc;
}
