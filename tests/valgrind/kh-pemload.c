/* SPDX-License-Identifier: MIT */
/*
 * kh-pemload: reads a private key file the way servers such as nginx do
 * (PEM_read_bio_PrivateKey), with the providers of OPENSSL_CONF loaded;
 * with -c it first reads a certificate, as nginx does. Prints "loaded" or
 * the OpenSSL error queue; exit 0 when a key was loaded, 1 when not
 * (scenario 21).
 *
 *   kh-pemload [-c CERT] KEYFILE
 */
#include <stdio.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

int main(int argc, char **argv)
{
    EVP_PKEY *pkey = NULL;
    const char *file;
    BIO *in;

    if (argc == 4 && strcmp(argv[1], "-c") == 0) {
        file = argv[3];
    } else if (argc == 2) {
        file = argv[1];
    } else {
        fprintf(stderr, "usage: kh-pemload [-c CERT] KEYFILE\n");
        return 2;
    }
    if (!OPENSSL_init_crypto(OPENSSL_INIT_LOAD_CONFIG, NULL)) {
        ERR_print_errors_fp(stderr);
        return 2;
    }
    if (argc == 4) {
        X509 *x = NULL;

        in = BIO_new_file(argv[2], "r");
        if (in == NULL
            || (x = PEM_read_bio_X509(in, NULL, NULL, NULL)) == NULL) {
            ERR_print_errors_fp(stderr);
            return 2;
        }
        X509_free(x);
        BIO_free(in);
    }
    in = BIO_new_file(file, "r");
    if (in == NULL) {
        ERR_print_errors_fp(stderr);
        return 1;
    }
    pkey = PEM_read_bio_PrivateKey(in, NULL, NULL, NULL);
    BIO_free(in);
    if (pkey == NULL) {
        fprintf(stderr, "not loaded\n");
        ERR_print_errors_fp(stderr);
        return 1;
    }
    printf("loaded %s key, %d bits\n", EVP_PKEY_get0_type_name(pkey),
           EVP_PKEY_get_bits(pkey));
    EVP_PKEY_free(pkey);
    return 0;
}
