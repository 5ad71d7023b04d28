/* SPDX-License-Identifier: MIT */
/*
 * Start-up: what a server pays from process start to its first signature.
 * The driver starts this binary as "first-sig HOW" and takes the time from
 * just before posix_spawn() to the moment the child reports its first
 * signature done (CLOCK_MONOTONIC is system wide). Every HOW runs the same
 * executable, so exec and dynamic linking cost the same in each.
 */
#include <stdio.h>
#include <string.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/provider.h>
#include <openssl/rand.h>

#include "kh_bench.h"
#include "kh_p11util.h"

/* The floor: dlopen + C_Initialize + C_OpenSession + C_Login + find the
 * key + C_SignInit + C_Sign. */
static int first_raw(void)
{
    KHB_P11 p;
    CK_SESSION_HANDLE s;
    CK_OBJECT_HANDLE key;
    CK_MECHANISM mech;
    CK_RSA_PKCS_PSS_PARAMS pss;
    unsigned char msg[KHB_MSG_LEN] = { 0 }, tbs[64], sig[128];
    CK_ULONG tbslen, siglen = sizeof(sig);
    CK_RV rv;

    if (!khb_p11_open(&p, 0) || !khb_p11_session(&p, &s, 1)
        || !khb_p11_find_key(&p, s, "bench-ec", &key)) {
        return 0;
    }
    khb_p11_prepare(KHB_ECDSA, msg, sizeof(msg), &mech, &pss, tbs, &tbslen);
    rv = p.f->C_SignInit(s, &mech, key);
    if (rv == CKR_OK) {
        rv = p.f->C_Sign(s, tbs, tbslen, sig, &siglen);
    }
    if (rv != CKR_OK) {
        fprintf(stderr, "kh-bench: first C_Sign: %s\n", kh_ckr_name(rv));
        return 0;
    }
    return 1;
}

static int sign_once(EVP_PKEY *pk, OSSL_LIB_CTX *libctx)
{
    EVP_MD_CTX *m = EVP_MD_CTX_new();
    unsigned char msg[KHB_MSG_LEN] = { 0 }, sig[512];
    size_t siglen = sizeof(sig);
    int ok;

    ok = m != NULL
         && EVP_DigestSignInit_ex(m, NULL, "SHA256", libctx, NULL, pk, NULL)
         && EVP_DigestSign(m, sig, &siglen, msg, sizeof(msg));
    EVP_MD_CTX_free(m);
    if (!ok) {
        khb_ossl_err("first signature");
    }
    return ok;
}

/* keyhold as a server loads it: into the default context, beside default. */
static int load_keyhold_default(void)
{
    if (!OSSL_PROVIDER_set_default_search_path(NULL, khb_env.provdir)
        || OSSL_PROVIDER_load(NULL, "default") == NULL
        || OSSL_PROVIDER_load(NULL, "keyhold") == NULL) {
        khb_ossl_err("load keyhold");
        return 0;
    }
    return 1;
}

int khb_child_first_sig(const char *how)
{
    EVP_PKEY *pk = NULL;
    int ok = 0;

    if (strcmp(how, "raw") == 0) {
        ok = first_raw();
        goto end;
    }
    if (strcmp(how, "uri") == 0) {
        if (load_keyhold_default()) {
            pk = khb_load_uri_key(NULL, khb_uri(0, "bench-ec", 1), NULL);
        }
    } else if (strcmp(how, "keyref") == 0) {
        if (load_keyhold_default()) {
            pk = khb_load_pem_key(NULL, khb_path(1, "ec.keyref.pem"));
        }
    } else if (strcmp(how, "libp11") == 0) {
        pk = khb_libp11_load("bench-ec");
    } else if (strcmp(how, "sw") == 0) {
        pk = khb_load_pem_key(NULL, khb_path(1, "sw-ec.key"));
    } else {
        fprintf(stderr, "kh-bench: unknown first-sig '%s'\n", how);
        return 1;
    }
    ok = pk != NULL && sign_once(pk, NULL);
end:
    if (ok) {
        printf("T %llu\n", (unsigned long long)khb_now_ns());
        fflush(stdout);
    }
    EVP_PKEY_free(pk);
    return ok ? 0 : 1;
}
