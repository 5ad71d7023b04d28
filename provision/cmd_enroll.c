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
#include <strings.h>

#include "keyhold.h"
#include "est.h"

static const char usage[] =
"usage: keyhold enroll NAME\n"
"           --est https://HOST[:PORT][/.well-known/est[/LABEL]]\n"
"           [--server-ca FILE] [--ca FILE | --ca-fingerprint sha256:HEX]\n"
"           [--user USER --password-file FILE] [--bootstrap IDENTITY]\n"
"           [--poll-max SECONDS] [--timeout SECONDS]\n"
"       keyhold enroll NAME --scep URL [--challenge-file F]\n"
"           [--ca-fingerprint sha256:HEX | --ca FILE]\n"
"       keyhold enroll NAME --acme DIRECTORY_URL [--server-ca FILE] [--ca FILE]\n"
"           [--challenge http-01|tls-alpn-01] [--challenge-port PORT]\n"
"           [--webroot DIR] [--eab-kid KID --eab-hmac-file F]\n"
"           [--acme-account IDENTITY]\n"
"       keyhold enroll NAME --cmp URL [--server-ca FILE] [--ca FILE]\n"
"           [--ref REF --secret-file F]\n"
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
"SCEP, ACME and CMP carry the same hardware-signed CSR (docs/enrolment.md);\n"
"their settings are stored as scep-*, acme-*, cmp-* keys and enrol-protocol.\n"
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
        { "scep", required_argument, NULL, 'S' },
        { "acme", required_argument, NULL, 'A' },
        { "cmp", required_argument, NULL, 'C' },
        { "challenge-file", required_argument, NULL, 1001 },
        { "challenge", required_argument, NULL, 1002 },
        { "challenge-port", required_argument, NULL, 1003 },
        { "webroot", required_argument, NULL, 1004 },
        { "eab-kid", required_argument, NULL, 1005 },
        { "eab-hmac-file", required_argument, NULL, 1006 },
        { "ref", required_argument, NULL, 1007 },
        { "secret-file", required_argument, NULL, 1008 },
        { "acme-account", required_argument, NULL, 1009 },
        { NULL, 0, NULL, 0 }
    };
    /* settings of the other protocols, stored verbatim (paths absolute) */
    static const struct {
        int opt;
        const char *key;
        int is_path;
    } extra[] = {
        { 1001, "scep-challenge-file", 1 },
        { 1002, "acme-challenge", 0 },
        { 1003, "acme-challenge-port", 0 },
        { 1004, "acme-webroot", 1 },
        { 1005, "acme-eab-kid", 0 },
        { 1006, "acme-eab-hmac-file", 1 },
        { 1007, "cmp-ref", 0 },
        { 1008, "cmp-secret-file", 1 },
        { 1009, "acme-account", 0 },
    };
    const char *extra_val[sizeof(extra) / sizeof(extra[0])] = { NULL };
    const char *proto = NULL, *proto_url = NULL;
    int changed = 0;
    size_t k;
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
        case 'S':
        case 'A':
        case 'C':
            if (proto != NULL) {
                kh_err(ctx, "enroll: give one of --est, --scep, --acme, "
                       "--cmp");
                return KH_EXIT_USAGE;
            }
            proto = c == 'S' ? "scep" : c == 'A' ? "acme" : "cmp";
            proto_url = optarg;
            break;
        default:
            for (k = 0; k < sizeof(extra) / sizeof(extra[0]); k++) {
                if (extra[k].opt == c) {
                    extra_val[k] = optarg;
                    break;
                }
            }
            if (k == sizeof(extra) / sizeof(extra[0])) {
                fputs(usage, stderr);
                return KH_EXIT_USAGE;
            }
            break;
        }
    }
    if (est != NULL && proto != NULL) {
        kh_err(ctx, "enroll: give one of --est, --scep, --acme, --cmp");
        return KH_EXIT_USAGE;
    }
    name = kh_arg_name(ctx, "enroll", argc, argv, usage, &rc);
    if (name == NULL) {
        return rc;
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
    rc = kh_identity_load_cmd(ctx, "enroll", name, &id);
    if (rc != KH_EXIT_OK) {
        return rc;
    }
    rc = kh_manage_begin(ctx, "enroll", name, &lockfd, err, sizeof(err));
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
        kh_id_set(id, "enrol-protocol", "est");
    }
    if (proto != NULL) {
        char key[32];

        if (strncasecmp(proto_url, "https://", 8) != 0
            && strncasecmp(proto_url, "http://", 7) != 0) {
            rc = kh_seterr(err, sizeof(err), KH_EXIT_USAGE, "--%s: '%s' is "
                           "not an http(s) URL", proto, proto_url);
            goto end;
        }
        snprintf(key, sizeof(key), "%s-url", proto);
        kh_id_set(id, key, proto_url);
        kh_id_set(id, "enrol-protocol", proto);
    }
    for (k = 0; k < sizeof(extra) / sizeof(extra[0]); k++) {
        if (extra_val[k] == NULL) {
            continue;
        }
        if (extra[k].is_path) {
            SET_PATH(extra[k].key, extra_val[k]);
        } else {
            kh_id_set(id, extra[k].key, extra_val[k]);
        }
    }
    {
        /* the EST server's TLS trust, or the other protocol's */
        const char *cur = kh_id_get(id, "enrol-protocol");

        SET_PATH(cur == NULL || strcmp(cur, "est") == 0 ? "est-server-ca"
                                                        : "server-ca",
                 server_ca);
    }
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
    for (k = 0; k < sizeof(extra) / sizeof(extra[0]); k++) {
        changed |= extra_val[k] != NULL;
    }
    if (est != NULL || server_ca != NULL || ca != NULL || fp != NULL
        || user != NULL || boot != NULL || poll != NULL || timeout != NULL
        || proto != NULL || changed) {
        rc = kh_identity_save(ctx, id, err, sizeof(err));
        if (rc != KH_EXIT_OK) {
            goto end;
        }
    }
    rc = kh_est_run(ctx, id, KH_EST_ENROLL, NULL, err, sizeof(err));
    kh_est_record(ctx, name, rc, err);
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
