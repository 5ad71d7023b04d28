/* SPDX-License-Identifier: MIT */
/*
 * kh-loadloop (scenario 16): the keyhold provider loaded and unloaded again
 * and again, each time in a fresh library context: load keyhold + default,
 * open the key through OSSL_STORE in that context, sign, verify, free
 * everything, free the context. Run under ASan or valgrind it shows leaks
 * and use-after-unload; a crash at exit shows as a signal.
 *
 *   kh-loadloop -k URI -P PROVIDER-DIR [-n ROUNDS]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/provider.h>
#include <openssl/store.h>

#include "../helpers/kh_testutil.h"

static EVP_PKEY *load_key(OSSL_LIB_CTX *libctx, const char *uri)
{
    OSSL_STORE_CTX *store;

    store = OSSL_STORE_open_ex(uri, libctx, NULL, NULL, NULL, NULL, NULL,
                               NULL);
    return kh_test_store_pkey(store);
}

static int round_trip(const char *uri, const char *dir, int round)
{
    OSSL_LIB_CTX *libctx = OSSL_LIB_CTX_new();
    OSSL_PROVIDER *kh = NULL, *def = NULL;
    EVP_PKEY *key = NULL;
    EVP_MD_CTX *m = NULL, *v = NULL;
    unsigned char msg[64], sig[1024];
    size_t siglen = sizeof(sig);
    int ok = 0;

    snprintf((char *)msg, sizeof(msg), "round %d", round);
    if (libctx == NULL
        || !OSSL_PROVIDER_set_default_search_path(libctx, dir)
        || (def = OSSL_PROVIDER_load(libctx, "default")) == NULL
        || (kh = OSSL_PROVIDER_load(libctx, "keyhold")) == NULL) {
        fprintf(stderr, "round %d: cannot load the providers\n", round);
        goto end;
    }
    key = load_key(libctx, uri);
    if (key == NULL) {
        fprintf(stderr, "round %d: no key\n", round);
        goto end;
    }
    m = EVP_MD_CTX_new();
    v = EVP_MD_CTX_new();
    if (m == NULL || v == NULL
        || EVP_DigestSignInit_ex(m, NULL, "SHA256", libctx, NULL, key,
                                 NULL) != 1
        || EVP_DigestSign(m, sig, &siglen, msg, sizeof(msg)) != 1) {
        fprintf(stderr, "round %d: signing failed\n", round);
        goto end;
    }
    if (EVP_DigestVerifyInit_ex(v, NULL, "SHA256", libctx, NULL, key,
                                NULL) != 1
        || EVP_DigestVerify(v, sig, siglen, msg, sizeof(msg)) != 1) {
        fprintf(stderr, "round %d: the signature does not verify\n", round);
        goto end;
    }
    ok = 1;
end:
    if (!ok) {
        ERR_print_errors_fp(stderr);
    }
    EVP_MD_CTX_free(m);
    EVP_MD_CTX_free(v);
    EVP_PKEY_free(key);
    if (kh != NULL && !OSSL_PROVIDER_unload(kh)) {
        fprintf(stderr, "round %d: unload failed\n", round);
        ok = 0;
    }
    OSSL_PROVIDER_unload(def);
    OSSL_LIB_CTX_free(libctx);
    return ok;
}

int main(int argc, char **argv)
{
    const char *uri = NULL, *dir = NULL;
    int rounds = 50, c, i;

    while ((c = getopt(argc, argv, "k:P:n:")) != -1) {
        switch (c) {
        case 'k': uri = optarg; break;
        case 'P': dir = optarg; break;
        case 'n': rounds = atoi(optarg); break;
        default:
            fprintf(stderr, "usage: kh-loadloop -k URI -P DIR [-n N]\n");
            return 2;
        }
    }
    if (uri == NULL || dir == NULL || rounds < 1) {
        fprintf(stderr, "kh-loadloop: need -k URI and -P DIR\n");
        return 2;
    }
    for (i = 0; i < rounds; i++) {
        if (!round_trip(uri, dir, i)) {
            return 1;
        }
    }
    printf("rounds: %d ok\n", rounds);
    return 0;
}
