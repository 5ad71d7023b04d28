/* SPDX-License-Identifier: MIT */
/* keyhold install NAME CERT: every check, then the atomic switch (the
 * checks and the switch live in state.c for enrolment to share). */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "keyhold.h"

static const char usage[] =
    "usage: keyhold install NAME CERT [--chain FILE] [--ca FILE] "
    "[--no-reload]\n"
    "  CERT (PEM or DER; a PEM file may carry the chain after the cert) is\n"
    "  accepted only when it is for the identity's hardware key, chains to\n"
    "  the trusted CA (--ca, the identity's ca=, or the installed ca.pem),\n"
    "  is valid now, carries the identity's host names and fits a TLS\n"
    "  server. Otherwise nothing changes (exit 2). Then the reload hooks run\n"
    "  (a failing hook rolls back).\n";

int cmd_install(KH_CTX *ctx, int argc, char **argv)
{
    static const struct option opts[] = {
        { "chain", required_argument, NULL, 'c' },
        { "ca", required_argument, NULL, 'a' },
        { "no-reload", no_argument, NULL, 'n' },
        { NULL, 0, NULL, 0 }
    };
    const char *chainf = NULL, *caf = NULL, *name;
    KH_IDENTITY *id = NULL;
    KH_INSTALL_REQ req;
    STACK_OF(X509) *chain = NULL;
    X509 *cert = NULL, *ca = NULL, *x = NULL;
    char err[KH_ERR_MAX], e2[KH_ERR_MAX];
    int c, rc, lockfd = -1, reload = 1;

    memset(&req, 0, sizeof(req));
    if (kh_want_help(argc, argv, usage)) {
        return KH_EXIT_OK;
    }
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'c': chainf = optarg; break;
        case 'a': caf = optarg; break;
        case 'n': reload = 0; break;
        default:
            fputs(usage, stderr);
            return KH_EXIT_USAGE;
        }
    }
    if (optind + 2 != argc) {
        fputs(usage, stderr);
        return KH_EXIT_USAGE;
    }
    name = argv[optind];
    rc = kh_identity_load(ctx, name, &id, err, sizeof(err));
    if (rc != KH_EXIT_OK) {
        goto end;
    }
    rc = kh_certs_read(argv[optind + 1], &cert, &chain, err, sizeof(err));
    if (rc == KH_EXIT_OK && chainf != NULL) {
        STACK_OF(X509) *more = NULL;

        rc = kh_certs_read(chainf, &x, &more, err, sizeof(err));
        if (rc == KH_EXIT_OK) {
            if (chain == NULL) {
                chain = sk_X509_new_null();
            }
            sk_X509_push(chain, x);
            x = NULL;
            while (more != NULL && sk_X509_num(more) > 0) {
                sk_X509_push(chain, sk_X509_shift(more));
            }
            sk_X509_free(more);
        }
    }
    if (rc == KH_EXIT_OK && caf != NULL) {
        rc = kh_certs_read(caf, &ca, NULL, err, sizeof(err));
    }
    if (rc != KH_EXIT_OK) {
        goto end;
    }
    rc = kh_require_manage(ctx, "install", err, sizeof(err));
    if (rc != KH_EXIT_OK) {
        goto end;
    }
    rc = kh_lock(ctx, name, &lockfd, err, sizeof(err));
    if (rc != KH_EXIT_OK) {
        goto end;
    }
    req.cert = cert;
    req.chain = chain;
    req.ca = ca;
    req.op = "install";
    rc = kh_identity_install(ctx, id, &req, err, sizeof(err));
    if (rc != KH_EXIT_OK) {
        goto end;
    }
    printf("identity '%s': certificate installed (generation %u)\n", name,
           kh_state_current_gen(ctx, name));
    if (reload && kh_run_hooks(ctx, id, e2, sizeof(e2)) != KH_EXIT_OK) {
        kh_err(ctx, "install %s: %s: rolling back", name, e2);
        rc = kh_identity_rollback(ctx, id, err, sizeof(err));
        if (rc == KH_EXIT_OK) {
            kh_run_hooks(ctx, id, e2, sizeof(e2));
            rc = kh_seterr(err, sizeof(err), KH_EXIT_BROKEN,
                           "reload hook failed; previous certificate "
                           "restored");
        }
    }
end:
    if (rc != KH_EXIT_OK) {
        kh_err(ctx, "install %s: %s", argc > optind ? argv[optind] : "", err);
    }
    kh_unlock(lockfd);
    X509_free(cert);
    X509_free(ca);
    X509_free(x);
    sk_X509_pop_free(chain, X509_free);
    kh_identity_free(id);
    return rc;
}
