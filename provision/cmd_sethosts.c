/* SPDX-License-Identifier: MIT */
/* keyhold set-hosts NAME: new host name / addresses for an identity. The
 * certificate in service keeps serving; status says hosts-changed until
 * one carrying the new names is installed. */
#include <getopt.h>
#include <string.h>

#include "keyhold.h"

static const char usage[] =
    "usage: keyhold set-hosts NAME --host HOST [--san dns:X,ip:Y,...] "
    "[--host-in both|cn|san]\n"
    "  Replaces the identity's host and SANs in its config; 'keyhold status'\n"
    "  shows hosts-changed until a certificate with the new names is\n"
    "  installed (keyhold csr / renew).\n";

int cmd_set_hosts(KH_CTX *ctx, int argc, char **argv)
{
    static const struct option opts[] = {
        { "host", required_argument, NULL, 'H' },
        { "san", required_argument, NULL, 's' },
        { "host-in", required_argument, NULL, 'I' },
        { NULL, 0, NULL, 0 }
    };
    const char *host = NULL, *host_in = NULL;
    KH_STRLIST sans = { 0 }, tmp = { 0 };
    KH_IDENTITY *id = NULL;
    char err[KH_ERR_MAX];
    int c, rc, lockfd = -1;
    size_t i;

    if (kh_want_help(argc, argv, usage)) {
        return KH_EXIT_OK;
    }
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c == 'H') {
            host = optarg;
        } else if (c == 'I') {
            host_in = optarg;
            if (!kh_host_in_valid(host_in)) {
                kh_err(ctx, "set-hosts: --host-in '%s' (both, cn or san)",
                       host_in);
                kh_strlist_free(&sans);
                return KH_EXIT_USAGE;
            }
        } else if (c == 's') {
            if (!kh_sans_parse(optarg, &sans, err, sizeof(err))) {
                kh_err(ctx, "set-hosts: --san: %s", err);
                kh_strlist_free(&sans);
                return KH_EXIT_USAGE;
            }
        } else {
            fputs(usage, stderr);
            kh_strlist_free(&sans);
            return KH_EXIT_USAGE;
        }
    }
    if (optind + 1 != argc || host == NULL) {
        fputs(usage, stderr);
        kh_strlist_free(&sans);
        return KH_EXIT_USAGE;
    }
    if (!kh_sans_parse(host, &tmp, err, sizeof(err)) || tmp.n != 1) {
        kh_err(ctx, "set-hosts: --host '%s': not one host name or address",
               host);
        kh_strlist_free(&sans);
        kh_strlist_free(&tmp);
        return KH_EXIT_USAGE;
    }
    rc = kh_require_manage(ctx, "set-hosts", err, sizeof(err));
    if (rc == KH_EXIT_OK) {
        rc = kh_identity_load(ctx, argv[optind], &id, err, sizeof(err));
    }
    if (rc == KH_EXIT_OK) {
        rc = kh_lock(ctx, id->name, &lockfd, err, sizeof(err));
    }
    if (rc == KH_EXIT_OK) {
        kh_id_set(id, "host", host);
        if (host_in != NULL) {
            kh_id_set(id, "host-in", host_in);
        }
        kh_id_set(id, "san", NULL);
        for (i = 0; i < sans.n; i++) {
            kh_id_add(id, "san", sans.v[i]);
        }
        rc = kh_identity_save(ctx, id, err, sizeof(err));
    }
    if (id != NULL) {
        kh_audit(ctx, "set-hosts", id->name, NULL,
                 rc == KH_EXIT_OK ? "ok" : "failed", host);
    }
    if (rc != KH_EXIT_OK) {
        kh_err(ctx, "set-hosts %s: %s", argv[optind], err);
    } else {
        printf("identity '%s': hosts set (renew or 'keyhold csr %s' for a "
               "certificate carrying them)\n", id->name, id->name);
    }
    kh_unlock(lockfd);
    kh_identity_free(id);
    kh_strlist_free(&sans);
    kh_strlist_free(&tmp);
    return rc;
}
