/* SPDX-License-Identifier: MIT */
/*
 * keyhold-tpm: the low-level TPM tool beside the keyhold CLI, for factory
 * scripts, technicians and the test suite.
 *
 *   keyhold-tpm create --alg ALG (--out FILE | --persistent 0x81...)
 *                      [--auth-file F] [--allow-decrypt] [--pub-out F]
 *   keyhold-tpm evict 0x81...
 *   keyhold-tpm exists 0x81...
 *   keyhold-tpm seal --in FILE --out FILE [--pcrs 0,7]
 *   keyhold-tpm unseal FILE          (writes the secret to stdout)
 *   keyhold-tpm da                   (dictionary-attack counter/lockout)
 *   keyhold-tpm ek-id                (SHA-256 of the endorsement key's SPKI)
 *   keyhold-tpm sign-loop [-n N] [-P provider-dir] URI...
 *        loads every URI through the keyhold provider, then signs and
 *        verifies N rounds over all keys in one process
 *
 * The TPM is reached through TPM2TOOLS_TCTI-style environment variables
 * (see docs/tpm.md). Exit codes follow keyhold's: 0 ok, 1 usage, 2 input
 * rejected, 3 TPM error, 6 auth incorrect.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/provider.h>
#include <openssl/rsa.h>
#include <openssl/store.h>

#include "kh_pin.h"
#include "kh_tpm.h"

static int exit_of(enum kh_tpm_rc rc)
{
    switch (rc) {
    case KH_TPM_OK:
        return 0;
    case KH_TPM_ERR_AUTH:
    case KH_TPM_ERR_LOCKOUT:
        return 6;
    case KH_TPM_ERR_INPUT:
    case KH_TPM_ERR_NOTFOUND:
        return 2;
    default:
        return 3;
    }
}

static int usage(void)
{
    fprintf(stderr,
            "usage: keyhold-tpm create --alg ec-p256|ec-p384|rsa-2048|"
            "rsa-3072 (--out FILE | --persistent 0x81...) [--auth-file F] "
            "[--allow-decrypt] [--pub-out F]\n"
            "       keyhold-tpm evict|exists 0x81...\n"
            "       keyhold-tpm seal --in FILE --out FILE [--pcrs 0,7]\n"
            "       keyhold-tpm unseal FILE\n"
            "       keyhold-tpm da | ek-id\n"
            "       keyhold-tpm sign-loop [-n N] [-P provider-dir] URI...\n");
    return 1;
}

static int parse_handle(const char *s, uint32_t *h)
{
    char *end;
    unsigned long v;

    errno = 0;
    v = strtoul(s, &end, 16);
    if (errno != 0 || *s == '\0' || *end != '\0' || v > 0xffffffffUL) {
        fprintf(stderr, "keyhold-tpm: '%s' is not a hex handle\n", s);
        return 0;
    }
    *h = (uint32_t)v;
    return 1;
}

static int cmd_create(int argc, char **argv)
{
    KH_TPM_GEN gen;
    const char *out = NULL, *authf = NULL, *pubout = NULL;
    char auth[KH_PIN_MAX + 1];
    size_t authlen = 0;
    char err[512];
    unsigned char *der = NULL;
    size_t derlen = 0;
    EVP_PKEY *pub = NULL;
    enum kh_tpm_rc rc;
    int i, ret = 1;

    memset(&gen, 0, sizeof(gen));
    for (i = 1; i < argc; i++) {
        const char *a = argv[i];

        if (strcmp(a, "--allow-decrypt") == 0) {
            gen.allow_decrypt = 1;
            continue;
        }
        if (i + 1 >= argc) {
            goto end_usage;
        }
        if (strcmp(a, "--alg") == 0) {
            const char *v = argv[++i];

            if (strcmp(v, "ec-p256") == 0) {
                gen.alg = KH_TPM_ALG_EC_P256;
            } else if (strcmp(v, "ec-p384") == 0) {
                gen.alg = KH_TPM_ALG_EC_P384;
            } else if (strcmp(v, "rsa-2048") == 0) {
                gen.alg = KH_TPM_ALG_RSA_2048;
            } else if (strcmp(v, "rsa-3072") == 0) {
                gen.alg = KH_TPM_ALG_RSA_3072;
            } else {
                goto end_usage;
            }
        } else if (strcmp(a, "--out") == 0) {
            out = argv[++i];
        } else if (strcmp(a, "--persistent") == 0) {
            if (!parse_handle(argv[++i], &gen.persistent)) {
                goto end;
            }
        } else if (strcmp(a, "--auth-file") == 0) {
            authf = argv[++i];
        } else if (strcmp(a, "--pub-out") == 0) {
            pubout = argv[++i];
        } else {
            goto end_usage;
        }
    }
    if (gen.alg == 0 || (out == NULL) == (gen.persistent == 0)) {
        goto end_usage;
    }
    if (authf != NULL) {
        if (kh_pin_read_file(authf, auth, sizeof(auth), &authlen, err,
                             sizeof(err)) != KH_PIN_OK) {
            fprintf(stderr, "keyhold-tpm: auth file: %s\n", err);
            ret = 2;
            goto end;
        }
        gen.auth = auth;
        gen.authlen = authlen;
    }
    if (out != NULL && access(out, F_OK) == 0) {
        fprintf(stderr, "keyhold-tpm: %s exists; refusing to overwrite a "
                "key file\n", out);
        ret = 2;
        goto end;
    }
    rc = kh_tpm_key_create(&gen, out != NULL ? &der : NULL, &derlen, &pub,
                           err, sizeof(err));
    if (rc != KH_TPM_OK) {
        fprintf(stderr, "keyhold-tpm: create: %s\n", err);
        ret = exit_of(rc);
        goto end;
    }
    if (out != NULL && !kh_tpm_pem_write(out, der, derlen, 0600, err,
                                         sizeof(err))) {
        fprintf(stderr, "keyhold-tpm: %s\n", err);
        ret = 3;
        goto end;
    }
    if (pubout != NULL) {
        BIO *b = BIO_new_file(pubout, "w");

        if (b == NULL || !PEM_write_bio_PUBKEY(b, pub)) {
            BIO_free(b);
            fprintf(stderr, "keyhold-tpm: cannot write %s\n", pubout);
            ret = 3;
            goto end;
        }
        BIO_free(b);
    }
    ret = 0;
    goto end;
end_usage:
    ret = usage();
end:
    OPENSSL_cleanse(auth, sizeof(auth));
    OPENSSL_free(der);
    EVP_PKEY_free(pub);
    return ret;
}

static int cmd_evict(int argc, char **argv, int exists_only)
{
    uint32_t h;
    char err[512];
    enum kh_tpm_rc rc;
    int e;

    if (argc != 2) {
        return usage();
    }
    if (!parse_handle(argv[1], &h)) {
        return 1;
    }
    if (exists_only) {
        e = kh_tpm_handle_exists(h, err, sizeof(err));
        if (e < 0) {
            fprintf(stderr, "keyhold-tpm: %s\n", err);
            return 3;
        }
        printf("%s\n", e ? "present" : "absent");
        return e ? 0 : 2;
    }
    rc = kh_tpm_evict(h, err, sizeof(err));
    if (rc != KH_TPM_OK) {
        fprintf(stderr, "keyhold-tpm: evict: %s\n", err);
        return exit_of(rc);
    }
    return 0;
}

static int cmd_seal(int argc, char **argv)
{
    const char *in = NULL, *out = NULL, *pcrs = NULL;
    char secret[KH_PIN_MAX + 1];
    size_t len = 0;
    char err[512];
    uint32_t mask = 0;
    unsigned char *der = NULL;
    size_t derlen = 0;
    enum kh_tpm_rc rc;
    int i, ret = 1;

    for (i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--in") == 0) {
            in = argv[i + 1];
        } else if (strcmp(argv[i], "--out") == 0) {
            out = argv[i + 1];
        } else if (strcmp(argv[i], "--pcrs") == 0) {
            pcrs = argv[i + 1];
        } else {
            return usage();
        }
    }
    if (i != argc || in == NULL || out == NULL) {
        return usage();
    }
    if (pcrs != NULL) {
        const char *p = pcrs;

        while (*p != '\0') {
            char *end;
            long n = strtol(p, &end, 10);

            if (end == p || n < 0 || n > 23 || (*end != ',' && *end != '\0')) {
                fprintf(stderr, "keyhold-tpm: --pcrs wants 0-23, "
                        "comma-separated\n");
                return 1;
            }
            mask |= 1u << n;
            p = *end == ',' ? end + 1 : end;
        }
    }
    if (kh_pin_read_file(in, secret, sizeof(secret), &len, err, sizeof(err))
        != KH_PIN_OK) {
        fprintf(stderr, "keyhold-tpm: %s\n", err);
        ret = 2;
        goto end;
    }
    rc = kh_tpm_seal((unsigned char *)secret, len, mask, &der, &derlen, err,
                     sizeof(err));
    if (rc != KH_TPM_OK) {
        fprintf(stderr, "keyhold-tpm: seal: %s\n", err);
        ret = exit_of(rc);
        goto end;
    }
    if (!kh_tpm_pem_write(out, der, derlen, 0600, err, sizeof(err))) {
        fprintf(stderr, "keyhold-tpm: %s\n", err);
        ret = 3;
        goto end;
    }
    ret = 0;
end:
    OPENSSL_cleanse(secret, sizeof(secret));
    OPENSSL_free(der);
    return ret;
}

static int cmd_unseal(int argc, char **argv)
{
    unsigned char *der = NULL;
    size_t derlen = 0, outlen = 0;
    unsigned char out[KH_PIN_MAX + 1];
    char err[512];
    enum kh_tpm_rc rc;
    int ret;

    if (argc != 2) {
        return usage();
    }
    rc = kh_tpm_file_read_der(argv[1], &der, &derlen, err, sizeof(err));
    if (rc == KH_TPM_OK) {
        rc = kh_tpm_unseal(der, derlen, out, &outlen, sizeof(out), err,
                           sizeof(err));
    }
    if (rc != KH_TPM_OK) {
        fprintf(stderr, "keyhold-tpm: unseal: %s\n", err);
        ret = exit_of(rc);
    } else {
        ret = fwrite(out, 1, outlen, stdout) == outlen ? 0 : 3;
    }
    OPENSSL_cleanse(out, sizeof(out));
    OPENSSL_free(der);
    return ret;
}

static int cmd_da(void)
{
    uint32_t counter = 0, max = 0;
    int lockout = 0;
    char err[512];
    enum kh_tpm_rc rc;

    rc = kh_tpm_da_info(&counter, &max, &lockout, err, sizeof(err));
    if (rc != KH_TPM_OK) {
        fprintf(stderr, "keyhold-tpm: %s\n", err);
        return exit_of(rc);
    }
    printf("lockout_counter=%u\nmax_auth_fail=%u\nin_lockout=%d\n", counter,
           max, lockout);
    return 0;
}

static EVP_PKEY *load_key(const char *uri)
{
    OSSL_STORE_CTX *st;
    OSSL_STORE_INFO *info;
    EVP_PKEY *pkey = NULL;

    st = OSSL_STORE_open_ex(uri, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
    if (st == NULL) {
        return NULL;
    }
    OSSL_STORE_expect(st, OSSL_STORE_INFO_PKEY);
    while (pkey == NULL && !OSSL_STORE_eof(st)) {
        info = OSSL_STORE_load(st);
        if (info != NULL) {
            pkey = OSSL_STORE_INFO_get1_PKEY(info);
        }
        OSSL_STORE_INFO_free(info);
        if (info == NULL) {
            break;
        }
    }
    OSSL_STORE_close(st);
    return pkey;
}

static int sign_verify(EVP_PKEY *key, OSSL_LIB_CTX *vctx, EVP_PKEY *vpub,
                       int round)
{
    unsigned char msg[64], sig[1024];
    size_t siglen = sizeof(sig);
    EVP_MD_CTX *mc = EVP_MD_CTX_new(), *vc = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pc = NULL;
    int ok = 0, pss = EVP_PKEY_is_a(key, "RSA") && (round & 1);

    memset(msg, 0, sizeof(msg));
    snprintf((char *)msg, sizeof(msg), "keyhold sign-loop round %d", round);
    if (mc == NULL || vc == NULL
        || EVP_DigestSignInit_ex(mc, &pc, "SHA256", NULL, NULL, key,
                                 NULL) <= 0
        || (pss && EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PSS_PADDING)
                   <= 0)
        || (pss && EVP_PKEY_CTX_set_rsa_pss_saltlen(pc, RSA_PSS_SALTLEN_DIGEST)
                   <= 0)
        || EVP_DigestSign(mc, sig, &siglen, msg, sizeof(msg)) <= 0) {
        goto end;
    }
    if (EVP_DigestVerifyInit_ex(vc, &pc, "SHA256", vctx, NULL, vpub,
                                NULL) <= 0
        || (pss && EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PSS_PADDING)
                   <= 0)
        || (pss && EVP_PKEY_CTX_set_rsa_pss_saltlen(pc, RSA_PSS_SALTLEN_DIGEST)
                   <= 0)
        || EVP_DigestVerify(vc, sig, siglen, msg, sizeof(msg)) != 1) {
        fprintf(stderr, "keyhold-tpm: signature of round %d does not "
                "verify\n", round);
        goto end;
    }
    ok = 1;
end:
    EVP_MD_CTX_free(mc);
    EVP_MD_CTX_free(vc);
    return ok;
}

static int cmd_sign_loop(int argc, char **argv)
{
    const char *path = NULL;
    int n = 100, i, r, nkeys, ret = 3;
    EVP_PKEY *keys[16] = { NULL }, *vpub[16] = { NULL };
    OSSL_PROVIDER *kh = NULL, *dflt = NULL, *vdflt = NULL;
    OSSL_LIB_CTX *vctx = NULL;
    int opt;

    while ((opt = getopt(argc, argv, "n:P:")) != -1) {
        switch (opt) {
        case 'n':
            n = atoi(optarg);
            break;
        case 'P':
            path = optarg;
            break;
        default:
            return usage();
        }
    }
    nkeys = argc - optind;
    if (nkeys < 1 || nkeys > 16 || n < 1) {
        return usage();
    }
    if (path != NULL && !OSSL_PROVIDER_set_default_search_path(NULL, path)) {
        return 3;
    }
    dflt = OSSL_PROVIDER_load(NULL, "default");
    kh = OSSL_PROVIDER_load(NULL, "keyhold");
    vctx = OSSL_LIB_CTX_new();
    vdflt = vctx != NULL ? OSSL_PROVIDER_load(vctx, "default") : NULL;
    if (dflt == NULL || kh == NULL || vdflt == NULL) {
        fprintf(stderr, "keyhold-tpm: cannot load the providers\n");
        goto end;
    }
    for (i = 0; i < nkeys; i++) {
        unsigned char *der = NULL;
        const unsigned char *p;
        int len;

        keys[i] = load_key(argv[optind + i]);
        if (keys[i] == NULL) {
            fprintf(stderr, "keyhold-tpm: cannot load %s\n",
                    argv[optind + i]);
            goto end;
        }
        /* The verifier's copy of the public key, in its own context. */
        len = i2d_PUBKEY(keys[i], &der);
        p = der;
        vpub[i] = len > 0 ? d2i_PUBKEY_ex(NULL, &p, len, vctx, NULL) : NULL;
        OPENSSL_free(der);
        if (vpub[i] == NULL) {
            fprintf(stderr, "keyhold-tpm: no public key for %s\n",
                    argv[optind + i]);
            goto end;
        }
    }
    for (r = 0; r < n; r++) {
        for (i = 0; i < nkeys; i++) {
            if (!sign_verify(keys[i], vctx, vpub[i], r)) {
                fprintf(stderr, "keyhold-tpm: round %d key %d failed\n", r,
                        i);
                goto end;
            }
        }
    }
    printf("%d signatures verified (%d keys x %d rounds)\n", n * nkeys,
           nkeys, n);
    ret = 0;
end:
    if (ret != 0) {
        ERR_print_errors_fp(stderr);
    }
    for (i = 0; i < 16; i++) {
        EVP_PKEY_free(keys[i]);
        EVP_PKEY_free(vpub[i]);
    }
    OSSL_PROVIDER_unload(vdflt);
    OSSL_LIB_CTX_free(vctx);
    OSSL_PROVIDER_unload(kh);
    OSSL_PROVIDER_unload(dflt);
    return ret;
}

int main(int argc, char **argv)
{
    int ret;

    if (argc < 2) {
        return usage();
    }
    if (strcmp(argv[1], "create") == 0) {
        ret = cmd_create(argc - 1, argv + 1);
    } else if (strcmp(argv[1], "evict") == 0) {
        ret = cmd_evict(argc - 1, argv + 1, 0);
    } else if (strcmp(argv[1], "exists") == 0) {
        ret = cmd_evict(argc - 1, argv + 1, 1);
    } else if (strcmp(argv[1], "seal") == 0) {
        ret = cmd_seal(argc - 1, argv + 1);
    } else if (strcmp(argv[1], "unseal") == 0) {
        ret = cmd_unseal(argc - 1, argv + 1);
    } else if (strcmp(argv[1], "da") == 0) {
        ret = cmd_da();
    } else if (strcmp(argv[1], "ek-id") == 0) {
        char id[80], err[512];
        enum kh_tpm_rc rc = kh_tpm_ek_id(id, sizeof(id), err, sizeof(err));

        if (rc != KH_TPM_OK) {
            fprintf(stderr, "keyhold-tpm: ek-id: %s\n", err);
        } else {
            printf("%s\n", id);
        }
        ret = exit_of(rc);
    } else if (strcmp(argv[1], "sign-loop") == 0) {
        ret = cmd_sign_loop(argc - 1, argv + 1);
    } else if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage();
        ret = 0;
    } else {
        ret = usage();
    }
    kh_tpm_release();
    return ret;
}
