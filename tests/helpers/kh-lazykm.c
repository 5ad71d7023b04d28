/* SPDX-License-Identifier: MIT */
/*
 * kh-lazykm: which keymgmts a process sees, with the providers of
 * OPENSSL_CONF. Parses a certificate (its public key decoded, as in every
 * TLS handshake), prints how many keymgmts the "keyhold" provider offers
 * (EVP_KEYMGMT_do_all_provided), then, given a key, loads it, signs with
 * it, and prints the count again. A pkcs11: or tpm2: URI is loaded
 * through OSSL_STORE, anything else is a key file read the way servers
 * read one (PEM_read_bio_PrivateKey):
 * Each count comes with whether an EC key generation asking for keyhold
 * by property (EVP_PKEY_CTX_new_from_name "provider=keyhold") works:
 *   kh-lazykm CERT [URI|KEYFILE]
 *   -> "cert: ok" "keyhold keymgmts before: N" "keyhold keygen before: 0|1"
 *      ["key: ok" "keyhold keymgmts after: N" "keyhold keygen after: 0|1"]
 */
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/provider.h>
#include <openssl/x509.h>

#include "kh_testutil.h"

static void count_keyhold(EVP_KEYMGMT *km, void *arg)
{
    const OSSL_PROVIDER *p = EVP_KEYMGMT_get0_provider(km);

    if (p != NULL && strcmp(OSSL_PROVIDER_get0_name(p), "keyhold") == 0) {
        (*(int *)arg)++;
    }
}

static int keyhold_keymgmts(void)
{
    int n = 0;

    EVP_KEYMGMT_do_all_provided(NULL, count_keyhold, &n);
    return n;
}

static int keyhold_keygen(void)
{
    EVP_PKEY_CTX *pc;
    EVP_PKEY *pk = NULL;
    int ok;

    ERR_set_mark();
    pc = EVP_PKEY_CTX_new_from_name(NULL, "EC", "provider=keyhold");
    ok = pc != NULL && EVP_PKEY_keygen_init(pc) > 0
         && EVP_PKEY_CTX_set_group_name(pc, "P-256") > 0
         && EVP_PKEY_generate(pc, &pk) > 0;
    EVP_PKEY_free(pk);
    EVP_PKEY_CTX_free(pc);
    ERR_pop_to_mark();
    return ok;
}

static int parse_cert(const char *file)
{
    X509 *x = NULL;
    BIO *b = BIO_new_file(file, "r");
    int ok = 0;

    if (b != NULL) {
        x = PEM_read_bio_X509(b, NULL, NULL, NULL);
    }
    /* the public key decode is what collects the keymgmts */
    ok = x != NULL && X509_get0_pubkey(x) != NULL;
    X509_free(x);
    BIO_free(b);
    return ok;
}

static EVP_PKEY *load_key(const char *what)
{
    EVP_PKEY *pkey = NULL;
    BIO *b;

    if (strncmp(what, "pkcs11:", 7) == 0 || strncmp(what, "tpm2:", 5) == 0) {
        return kh_test_load_key(what);
    }
    b = BIO_new_file(what, "r");
    if (b != NULL) {
        pkey = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
    }
    BIO_free(b);
    if (pkey == NULL) {
        kh_test_err("cannot read the key file %s", what);
    }
    return pkey;
}

static int sign_once(EVP_PKEY *pkey)
{
    static const unsigned char data[] = "keyhold";
    unsigned char sig[1024];
    size_t siglen = sizeof(sig);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int ok;

    ok = md != NULL
         && EVP_DigestSignInit_ex(md, NULL, "SHA256", NULL, NULL, pkey,
                                  NULL) > 0
         && EVP_DigestSign(md, sig, &siglen, data, sizeof(data)) > 0;
    EVP_MD_CTX_free(md);
    return ok;
}

int main(int argc, char **argv)
{
    EVP_PKEY *pkey = NULL;
    int rc = 1;

    if (argc != 2 && argc != 3) {
        fprintf(stderr, "usage: kh-lazykm CERT [URI]\n");
        return 2;
    }
    if (!kh_test_load_providers(NULL, NULL)) {
        return 1;
    }
    if (!parse_cert(argv[1])) {
        kh_test_err("cannot parse %s", argv[1]);
        return 1;
    }
    printf("cert: ok\n");
    /* a second certificate decode, after the first walk settled */
    if (!parse_cert(argv[1])) {
        kh_test_err("cannot parse %s again", argv[1]);
        return 1;
    }
    printf("keyhold keymgmts before: %d\n", keyhold_keymgmts());
    printf("keyhold keygen before: %d\n", keyhold_keygen());
    if (argc == 2) {
        return 0;
    }
    pkey = load_key(argv[2]);
    if (pkey == NULL) {
        goto end;
    }
    if (!sign_once(pkey)) {
        kh_test_err("signature failed");
        goto end;
    }
    printf("key: ok\n");
    if (!parse_cert(argv[1])) {
        kh_test_err("cannot parse %s after the key load", argv[1]);
        goto end;
    }
    printf("keyhold keymgmts after: %d\n", keyhold_keymgmts());
    printf("keyhold keygen after: %d\n", keyhold_keygen());
    rc = 0;
end:
    EVP_PKEY_free(pkey);
    return rc;
}
