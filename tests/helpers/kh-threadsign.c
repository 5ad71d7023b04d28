/* SPDX-License-Identifier: MIT */
/*
 * kh-threadsign: N threads each make M signatures with ONE shared key
 * (as a threaded TLS server does) and verify every one with the default
 * provider. Any failed or wrong signature fails the run.
 *
 *   kh-threadsign -k URI [-t threads] [-n sigs-per-thread] [-p pkcs1|pss]
 *                 [-d sha256] [-L first|last] [-P provider-dir]
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>

#include "kh_testutil.h"

static EVP_PKEY *g_key, *g_pub;
static const char *g_md = "sha256";
static int g_pss, g_sigs;

struct worker {
    pthread_t tid;
    int index;
    int signed_ok;
    int verified;
};

static int one(int thread, int n)
{
    unsigned char msg[80], sig[1024];
    size_t siglen = sizeof(sig);
    EVP_MD_CTX *m = EVP_MD_CTX_new(), *v = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL, *vctx = NULL;
    int rc = 0;

    snprintf((char *)msg, sizeof(msg), "thread %d signature %d", thread, n);
    if (m == NULL || v == NULL
        || EVP_DigestSignInit_ex(m, &pctx, g_md, NULL, NULL, g_key, NULL) != 1
        || (g_pss && EVP_PKEY_CTX_set_rsa_padding(pctx,
                                                  RSA_PKCS1_PSS_PADDING) <= 0)
        || (g_pss && EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, -1) <= 0)
        || EVP_DigestSign(m, sig, &siglen, msg, sizeof(msg)) != 1) {
        kh_test_err("thread %d: signature %d failed", thread, n);
        goto end;
    }
    rc = 1;
    if (EVP_DigestVerifyInit_ex(v, &vctx, g_md, kh_test_verify_libctx(), NULL,
                                g_pub, NULL) != 1
        || (g_pss && EVP_PKEY_CTX_set_rsa_padding(vctx,
                                                  RSA_PKCS1_PSS_PADDING) <= 0)
        || EVP_DigestVerify(v, sig, siglen, msg, sizeof(msg)) != 1) {
        kh_test_err("thread %d: signature %d does not verify", thread, n);
        goto end;
    }
    rc = 2;
end:
    EVP_MD_CTX_free(m);
    EVP_MD_CTX_free(v);
    return rc;
}

static void *run(void *arg)
{
    struct worker *w = arg;
    int i, r;

    for (i = 0; i < g_sigs; i++) {
        r = one(w->index, i);
        w->signed_ok += r >= 1;
        w->verified += r == 2;
    }
    ERR_clear_error();
    return NULL;
}

int main(int argc, char **argv)
{
    const char *uri = NULL, *order = NULL, *path = NULL;
    struct worker *ws = NULL;
    int threads = 8, c, i, total = 0, verified = 0, started = 0, ok = 0;

    g_sigs = 50;
    while ((c = getopt(argc, argv, "k:t:n:p:d:L:P:")) != -1) {
        switch (c) {
        case 'k': uri = optarg; break;
        case 't': threads = atoi(optarg); break;
        case 'n': g_sigs = atoi(optarg); break;
        case 'p': g_pss = strcmp(optarg, "pss") == 0; break;
        case 'd': g_md = optarg; break;
        case 'L': order = optarg; break;
        case 'P': path = optarg; break;
        default:
            fprintf(stderr, "usage: kh-threadsign -k URI [-t N] [-n M] "
                    "[-p pkcs1|pss] [-d md] [-L first|last] [-P dir]\n");
            return 2;
        }
    }
    if (uri == NULL || threads < 1 || threads > 256 || g_sigs < 1) {
        fprintf(stderr, "kh-threadsign: need -k URI, 1..256 threads\n");
        return 2;
    }
    if (!kh_test_load_providers(order, path)
        || (g_key = kh_test_load_key(uri)) == NULL
        || (g_pub = kh_test_public_copy(g_key, NULL)) == NULL) {
        goto end;
    }
    ws = calloc((size_t)threads, sizeof(*ws));
    if (ws == NULL) {
        goto end;
    }
    for (i = 0; i < threads; i++) {
        ws[i].index = i;
        if (pthread_create(&ws[i].tid, NULL, run, &ws[i]) != 0) {
            fprintf(stderr, "pthread_create failed\n");
            break;
        }
        started++;
    }
    for (i = 0; i < started; i++) {
        pthread_join(ws[i].tid, NULL);
        total += ws[i].signed_ok;
        verified += ws[i].verified;
    }
    printf("%d threads x %d signatures: %d signed, %d verified\n", threads,
           g_sigs, total, verified);
    ok = started == threads && verified == threads * g_sigs;
end:
    free(ws);
    kh_test_pub_free(g_pub);
    EVP_PKEY_free(g_key);
    return ok ? 0 : 1;
}
