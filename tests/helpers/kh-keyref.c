/* SPDX-License-Identifier: MIT */
/*
 * kh-keyref: writes the PEM key reference for a URI to stdout (or reads one
 * back with -r FILE and prints the URI), using the same code as the CLI
 * (engine/common/kh_keyref.c). Tests use it to make key.pem without keyhold's
 * CLI; the reference only ever names the key.
 */
#include <stdio.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>

#include "kh_keyref.h"

int main(int argc, char **argv)
{
    char err[256] = "";
    char *uri = NULL;
    BIO *b;
    int ok = 0;

    if (argc == 3 && strcmp(argv[1], "-r") == 0) {
        b = BIO_new_file(argv[2], "r");
        if (b != NULL && kh_keyref_pem_read(b, &uri, err, sizeof(err))) {
            printf("%s\n", uri);
            ok = 1;
        }
    } else if (argc == 2) {
        b = BIO_new_fp(stdout, BIO_NOCLOSE);
        ok = b != NULL && kh_keyref_pem_write(b, argv[1], err, sizeof(err));
    } else {
        fprintf(stderr, "usage: kh-keyref URI > key.pem | kh-keyref -r FILE\n");
        return 2;
    }
    if (!ok) {
        fprintf(stderr, "kh-keyref: %s\n", err[0] ? err : "failed");
    }
    BIO_free(b);
    OPENSSL_free(uri);
    return ok ? 0 : 1;
}
