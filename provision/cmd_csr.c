/* SPDX-License-Identifier: MIT */
/* keyhold csr NAME: a new CSR for the identity's key (manual renewal through
 * any CA); the pending key when a new one waits for its certificate. */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "keyhold.h"

static const char usage[] =
    "usage: keyhold csr NAME [-o FILE]\n"
    "  Writes a new PKCS#10 request signed by the identity's hardware key\n"
    "  (to FILE, or standard output).\n";

int cmd_csr(KH_CTX *ctx, int argc, char **argv)
{
    static const struct option opts[] = {
        { "out", required_argument, NULL, 'o' },
        { NULL, 0, NULL, 0 }
    };
    const char *out = NULL;
    KH_IDENTITY *id = NULL;
    EVP_PKEY *pkey = NULL;
    X509_REQ *req = NULL;
    char err[KH_ERR_MAX], hex[130] = "";
    char *uri = NULL;
    int c, rc;

    if (kh_want_help(argc, argv, usage)) {
        return KH_EXIT_OK;
    }
    optind = 1;
    while ((c = getopt_long(argc, argv, "o:", opts, NULL)) != -1) {
        if (c == 'o') {
            out = optarg;
        } else {
            fputs(usage, stderr);
            return KH_EXIT_USAGE;
        }
    }
    if (optind + 1 != argc) {
        fputs(usage, stderr);
        return KH_EXIT_USAGE;
    }
    rc = kh_identity_load(ctx, argv[optind], &id, err, sizeof(err));
    if (rc == KH_EXIT_OK) {
        rc = kh_identity_next_key_uri(ctx, id, &uri);
        if (rc != KH_EXIT_OK) {
            kh_seterr(err, sizeof(err), rc, "no key (provision it)");
        }
    }
    if (rc == KH_EXIT_OK) {
        rc = kh_identity_load_key(ctx, id, uri, &pkey, err, sizeof(err));
    }
    if (rc == KH_EXIT_OK) {
        rc = kh_identity_make_csr(ctx, id, pkey, &req, err, sizeof(err));
    }
    if (rc == KH_EXIT_OK) {
        rc = kh_csr_write(req, out, err, sizeof(err));
    }
    if (rc != KH_EXIT_OK) {
        kh_err(ctx, "csr %s: %s", argv[optind], err);
    } else if (out != NULL) {
        fprintf(stderr, "keyhold: CSR for '%s' written to %s\n", argv[optind],
                out);
    }
    kh_uri_key_id(uri, hex, sizeof(hex));
    if (id != NULL) {
        kh_audit(ctx, "csr", id->name, hex, rc == KH_EXIT_OK ? "ok" : "failed",
                 rc == KH_EXIT_OK ? "" : err);
    }
    free(uri);
    X509_REQ_free(req);
    EVP_PKEY_free(pkey);
    kh_identity_free(id);
    return rc;
}
