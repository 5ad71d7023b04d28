/* SPDX-License-Identifier: MIT */
/* Shared plumbing of the C test programs (see kh_testutil.h). */
#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/provider.h>
#include <openssl/store.h>
#include <openssl/x509.h>

#include "kh_testutil.h"

static OSSL_LIB_CTX *verify_libctx;
static OSSL_PROVIDER *verify_default;

void kh_test_err(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    ERR_print_errors_fp(stderr);
}

int kh_test_load_providers(const char *order, const char *path)
{
    const char *names[2];
    int i;

    if (!OPENSSL_init_crypto(OPENSSL_INIT_LOAD_CONFIG, NULL)) {
        kh_test_err("OPENSSL_init_crypto failed");
        return 0;
    }
    /* Errors left by the system configuration are not ours to report. */
    ERR_clear_error();
    if (order == NULL) {
        return 1;
    }
    if (strcmp(order, "first") == 0) {
        names[0] = "keyhold";
        names[1] = "default";
    } else if (strcmp(order, "last") == 0) {
        names[0] = "default";
        names[1] = "keyhold";
    } else {
        kh_test_err("provider order must be first or last, not '%s'", order);
        return 0;
    }
    if (path != NULL
        && !OSSL_PROVIDER_set_default_search_path(NULL, path)) {
        kh_test_err("cannot set provider search path");
        return 0;
    }
    for (i = 0; i < 2; i++) {
        if (OSSL_PROVIDER_load(NULL, names[i]) == NULL) {
            kh_test_err("cannot load provider %s", names[i]);
            return 0;
        }
    }
    return 1;
}

EVP_PKEY *kh_test_store_pkey(OSSL_STORE_CTX *store)
{
    EVP_PKEY *pkey = NULL;

    while (store != NULL && pkey == NULL && !OSSL_STORE_eof(store)) {
        OSSL_STORE_INFO *info = OSSL_STORE_load(store);

        if (info == NULL) {
            if (OSSL_STORE_error(store)) {
                break;
            }
            continue;
        }
        if (OSSL_STORE_INFO_get_type(info) == OSSL_STORE_INFO_PKEY) {
            pkey = OSSL_STORE_INFO_get1_PKEY(info);
        }
        OSSL_STORE_INFO_free(info);
    }
    OSSL_STORE_close(store);
    return pkey;
}

EVP_PKEY *kh_test_load_key(const char *uri)
{
    OSSL_STORE_CTX *store;
    EVP_PKEY *pkey = NULL;

    store = OSSL_STORE_open_ex(uri, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
    if (store == NULL) {
        kh_test_err("OSSL_STORE_open_ex failed");
        return NULL;
    }
    /* Some loaders reject expect(); a key is still picked out below. */
    ERR_set_mark();
    if (!OSSL_STORE_expect(store, OSSL_STORE_INFO_PKEY)) {
        ERR_pop_to_mark();
    } else {
        ERR_clear_last_mark();
    }
    pkey = kh_test_store_pkey(store);
    if (pkey == NULL) {
        kh_test_err("no private key loaded from the URI");
    }
    return pkey;
}

OSSL_LIB_CTX *kh_test_verify_libctx(void)
{
    if (verify_libctx == NULL) {
        verify_libctx = OSSL_LIB_CTX_new();
        if (verify_libctx == NULL) {
            return NULL;
        }
        verify_default = OSSL_PROVIDER_load(verify_libctx, "default");
        if (verify_default == NULL) {
            OSSL_LIB_CTX_free(verify_libctx);
            verify_libctx = NULL;
        }
    }
    return verify_libctx;
}

EVP_PKEY *kh_test_public_copy(EVP_PKEY *pkey, const char *pem_out)
{
    OSSL_LIB_CTX *vctx = kh_test_verify_libctx();
    unsigned char *der = NULL;
    const unsigned char *p;
    EVP_PKEY *pub = NULL;
    int len;

    if (vctx == NULL) {
        kh_test_err("cannot make the verification library context");
        return NULL;
    }
    len = i2d_PUBKEY(pkey, &der);
    if (len <= 0) {
        kh_test_err("exporting the public key (i2d_PUBKEY) failed");
        return NULL;
    }
    p = der;
    pub = d2i_PUBKEY_ex(NULL, &p, len, vctx, NULL);
    OPENSSL_free(der);
    if (pub == NULL) {
        kh_test_err("the exported public key does not parse");
        return NULL;
    }
    if (pem_out != NULL) {
        FILE *f = fopen(pem_out, "w");

        if (f == NULL || !PEM_write_PUBKEY(f, pub)) {
            kh_test_err("cannot write %s", pem_out);
            if (f != NULL) {
                fclose(f);
            }
            EVP_PKEY_free(pub);
            return NULL;
        }
        fclose(f);
    }
    return pub;
}

void kh_test_pub_free(EVP_PKEY *pub)
{
    EVP_PKEY_free(pub);
}

int kh_test_p11_login(const char *module, const char *token,
                      const char *pinfile, CK_FUNCTION_LIST_PTR *f,
                      CK_SESSION_HANDLE *s)
{
    CK_C_GetFunctionList getfl;
    CK_SLOT_ID slots[32];
    CK_ULONG nslots = 32, i;
    char pin[256];
    size_t n = strlen(token);
    int found = 0, ok = 0;
    FILE *fp;
    void *dl;

    fp = fopen(pinfile, "r");
    if (fp == NULL || fgets(pin, sizeof(pin), fp) == NULL) {
        perror(pinfile);
        if (fp != NULL) {
            fclose(fp);
        }
        return 0;
    }
    fclose(fp);
    pin[strcspn(pin, "\r\n")] = '\0';
    dl = dlopen(module, RTLD_NOW);
    getfl = dl != NULL ? (CK_C_GetFunctionList)dlsym(dl, "C_GetFunctionList")
                       : NULL;
    if (getfl == NULL || getfl(f) != CKR_OK
        || (*f)->C_Initialize(NULL) != CKR_OK
        || (*f)->C_GetSlotList(CK_TRUE, slots, &nslots) != CKR_OK) {
        fprintf(stderr, "cannot use module %s\n", module);
        goto end;
    }
    for (i = 0; i < nslots; i++) {
        CK_TOKEN_INFO ti;

        if ((*f)->C_GetTokenInfo(slots[i], &ti) == CKR_OK && n <= 32
            && memcmp(ti.label, token, n) == 0
            && (n == 32 || ti.label[n] == ' ')) {
            found = 1;
            break;
        }
    }
    if (!found) {
        fprintf(stderr, "no token '%s'\n", token);
        goto end;
    }
    if ((*f)->C_OpenSession(slots[i], CKF_SERIAL_SESSION | CKF_RW_SESSION,
                            NULL, NULL, s) != CKR_OK
        || (*f)->C_Login(*s, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin))
               != CKR_OK) {
        fprintf(stderr, "cannot log in to token '%s'\n", token);
        goto end;
    }
    ok = 1;
end:
    OPENSSL_cleanse(pin, sizeof(pin));
    return ok;
}
