/* SPDX-License-Identifier: MIT */
/* keyhold verify NAME: the identity works end to end — the hardware key
 * signs, the certificate's public key verifies it, and a loopback TLS
 * handshake (1.3 and 1.2) completes with the installed chain. */
#include <stdlib.h>
#include <string.h>

#include "keyhold.h"

static const char usage[] =
    "usage: keyhold verify NAME\n"
    "  Signs with the identity's hardware key, verifies with its certificate\n"
    "  and completes a loopback TLS handshake checked against its CA.\n";

int cmd_verify(KH_CTX *ctx, int argc, char **argv)
{
    KH_IDENTITY *id = NULL;
    EVP_PKEY *pkey = NULL;
    X509 *cert = NULL, *ca = NULL;
    STACK_OF(X509) *chain = NULL;
    char err[KH_ERR_MAX];
    int rc;

    if (kh_want_help(argc, argv, usage)) {
        return KH_EXIT_OK;
    }
    if (argc != 2) {
        fputs(usage, stderr);
        return KH_EXIT_USAGE;
    }
    rc = kh_identity_load(ctx, argv[1], &id, err, sizeof(err));
    if (rc == KH_EXIT_OK
        && (!kh_state_load_current(ctx, argv[1], &cert, &chain, &ca)
            || cert == NULL)) {
        rc = kh_seterr(err, sizeof(err), KH_EXIT_ATTENTION,
                       "no certificate installed (keyhold install %s CERT)",
                       argv[1]);
    }
    if (rc == KH_EXIT_OK) {
        rc = kh_identity_load_key(ctx, id, NULL, &pkey, err, sizeof(err));
    }
    if (rc == KH_EXIT_OK) {
        /* chain.pem holds intermediates only: drop the leaf copy that
         * kh_state_load_current puts first */
        if (chain != NULL && sk_X509_num(chain) > 0
            && X509_cmp(sk_X509_value(chain, 0), cert) == 0) {
            X509_free(sk_X509_shift(chain));
        }
        rc = kh_key_selftest(ctx, pkey, cert, chain, ca, kh_id_get(id, "host"),
                             err, sizeof(err));
    }
    if (rc != KH_EXIT_OK) {
        kh_err(ctx, "verify %s: %s", argv[1], err);
    } else {
        printf("identity '%s': ok (hardware signature verified with the "
               "certificate; loopback TLS handshakes completed)\n",
               argv[1]);
    }
    EVP_PKEY_free(pkey);
    X509_free(cert);
    X509_free(ca);
    sk_X509_pop_free(chain, X509_free);
    kh_identity_free(id);
    return rc;
}
