/* SPDX-License-Identifier: MIT */
/*
 * keyhold rekey: a new key generated in hardware, its CSR, the enrolment
 * (simplereenroll authenticated by the current key), the checks, a health
 * check, the switch and the reload hooks; the old key is destroyed only
 * after all of that passed (kept when rekey-keep-old = yes). A second
 * run after an interruption reuses the pending new key.
 *
 * Offline (air-gapped) form: --csr-out FILE makes (or reuses) the new key
 * and writes its CSR; the old identity keeps serving until
 * `keyhold install NAME CERT` switches to the new key.
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "keyhold.h"
#include "est.h"

static const char usage[] =
"usage: keyhold rekey NAME [--csr-out FILE]\n"
"\n"
"Replaces the identity's key: a new key in the token/TPM, a CSR signed by it,\n"
"enrolment over EST, every check, a loopback TLS health check, the atomic\n"
"switch and the reload hooks; then the old key is destroyed (config\n"
"rekey-keep-old = yes keeps it). A failing reload hook rolls back to the old\n"
"key and certificate.\n"
"  --csr-out FILE   offline rekey: make the new key, write its CSR and stop;\n"
"                   finish with keyhold install NAME CERT\n";

int cmd_rekey(KH_CTX *ctx, int argc, char **argv)
{
    static const struct option opts[] = {
        { "csr-out", required_argument, NULL, 'o' },
        { NULL, 0, NULL, 0 }
    };
    const char *csr_out = NULL, *name;
    char err[KH_ERR_MAX];
    KH_IDENTITY *id = NULL;
    int c, rc, lockfd = -1;

    if (kh_want_help(argc, argv, usage)) {
        return KH_EXIT_OK;
    }
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'o': csr_out = optarg; break;
        default:
            fputs(usage, stderr);
            return KH_EXIT_USAGE;
        }
    }
    name = kh_arg_name(ctx, "rekey", argc, argv, usage, &rc);
    if (name == NULL) {
        return rc;
    }
    rc = kh_identity_load_cmd(ctx, "rekey", name, &id);
    if (rc != KH_EXIT_OK) {
        return rc;
    }
    rc = kh_manage_begin(ctx, "rekey", name, &lockfd, err, sizeof(err));
    if (rc == KH_EXIT_OK) {
        rc = kh_est_run(ctx, id, KH_EST_REKEY, csr_out, err, sizeof(err));
        if (csr_out == NULL) {
            kh_est_record(ctx, name, rc, err);
        }
    }
    if (rc != KH_EXIT_OK) {
        kh_est_print_err(ctx, "rekey", name, err);
    }
    if (lockfd >= 0) {
        kh_unlock(lockfd);
    }
    kh_identity_free(id);
    return rc;
}
