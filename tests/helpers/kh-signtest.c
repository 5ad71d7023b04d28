/* SPDX-License-Identifier: MIT */
/*
 * kh-signtest: signs with a key loaded through OSSL_STORE (normally a
 * keyhold pkcs11: URI) and verifies every signature with the default
 * provider in a separate library context, using the public key the key
 * exports. Both EVP_DigestSign and prehashed EVP_PKEY_sign are covered; a
 * changed message must then fail to verify (the must-fail twin).
 *
 *   kh-signtest -k URI [-L first|last] [-P provider-dir] [-d sha256]
 *               [-p pkcs1|pss] [-s digest|max|auto|N|ctrl:N] [-g mgf1-md]
 *               [-m digestsign|sign|both] [-n rounds] [-o pub.pem]
 *               [-S sig-out]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/provider.h>
#include <openssl/rsa.h>

#include "kh_testutil.h"

struct opts {
    const char *uri;
    const char *order;
    const char *path;
    const char *md;
    const char *pad;
    const char *salt;
    const char *mgf1;
    const char *mode;
    const char *pubout;
    const char *sigout;
    int rounds;
};

static int is_rsa(EVP_PKEY *k)
{
    return EVP_PKEY_is_a(k, "RSA");
}

static int is_pss(const struct opts *o)
{
    return o->pad != NULL && strcmp(o->pad, "pss") == 0;
}

/* The salt length a verifier must find for the salt option given. */
static int expected_salt(const struct opts *o, EVP_PKEY *k, int mdlen)
{
    int emlen = (EVP_PKEY_get_bits(k) - 1 + 7) / 8;
    int max = emlen - mdlen - 2;
    /* Unset: OpenSSL 3.0's default provider signs with the maximum. */
    const char *s = o->salt != NULL ? o->salt : "max";

    if (strcmp(s, "digest") == 0 || strcmp(s, "ctrl:-1") == 0) {
        return mdlen;
    }
    if (strcmp(s, "max") == 0 || strcmp(s, "auto") == 0
        || strcmp(s, "ctrl:-2") == 0 || strcmp(s, "ctrl:-3") == 0) {
        return max;
    }
    if (strncmp(s, "ctrl:", 5) == 0) {
        return atoi(s + 5);
    }
    return atoi(s);
}

/* Applies padding/salt/mgf1 to a signing context as an application would. */
static int set_sign_opts(EVP_PKEY_CTX *pctx, const struct opts *o)
{
    if (!EVP_PKEY_is_a(EVP_PKEY_CTX_get0_pkey(pctx), "RSA")) {
        return 1;
    }
    if (!is_pss(o)) {
        if (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) <= 0) {
            kh_test_err("setting PKCS#1 v1.5 padding failed");
            return 0;
        }
        return 1;
    }
    if (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) <= 0) {
        kh_test_err("setting PSS padding failed");
        return 0;
    }
    if (o->salt != NULL && strncmp(o->salt, "ctrl:", 5) == 0) {
        if (EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, atoi(o->salt + 5)) <= 0) {
            kh_test_err("setting PSS salt length %s failed", o->salt);
            return 0;
        }
    } else if (o->salt != NULL) {
        OSSL_PARAM p[2];

        p[0] = OSSL_PARAM_construct_utf8_string(
            OSSL_SIGNATURE_PARAM_PSS_SALTLEN, (char *)o->salt, 0);
        p[1] = OSSL_PARAM_construct_end();
        if (!EVP_PKEY_CTX_set_params(pctx, p)) {
            kh_test_err("setting PSS salt length '%s' failed", o->salt);
            return 0;
        }
    }
    if (o->mgf1 != NULL
        && EVP_PKEY_CTX_set_rsa_mgf1_md_name(pctx, o->mgf1, NULL) <= 0) {
        kh_test_err("setting MGF1 digest %s failed", o->mgf1);
        return 0;
    }
    return 1;
}

/* Verifier side: strict, with the exact salt length expected. */
static int set_verify_opts(EVP_PKEY_CTX *vctx, const struct opts *o,
                           EVP_PKEY *pub, int mdlen)
{
    int salt;

    if (!is_rsa(pub)) {
        return 1;
    }
    if (!is_pss(o)) {
        return EVP_PKEY_CTX_set_rsa_padding(vctx, RSA_PKCS1_PADDING) > 0;
    }
    salt = expected_salt(o, pub, mdlen);
    if (EVP_PKEY_CTX_set_rsa_padding(vctx, RSA_PKCS1_PSS_PADDING) <= 0
        || EVP_PKEY_CTX_set_rsa_pss_saltlen(vctx, salt) <= 0) {
        return 0;
    }
    if (o->mgf1 != NULL
        && EVP_PKEY_CTX_set_rsa_mgf1_md_name(vctx, o->mgf1, NULL) <= 0) {
        return 0;
    }
    return 1;
}

static int check_der(EVP_PKEY *pub, const unsigned char *sig, size_t siglen)
{
    const unsigned char *p = sig;
    ECDSA_SIG *es;

    if (is_rsa(pub)) {
        return siglen == (size_t)EVP_PKEY_get_size(pub);
    }
    es = d2i_ECDSA_SIG(NULL, &p, (long)siglen);
    if (es == NULL || p != sig + siglen) {
        ECDSA_SIG_free(es);
        return 0;
    }
    ECDSA_SIG_free(es);
    return 1;
}

static int write_sig(const char *path, const unsigned char *sig, size_t len)
{
    FILE *f = fopen(path, "wb");
    int ok;

    if (f == NULL) {
        return 0;
    }
    ok = fwrite(sig, 1, len, f) == len;
    return fclose(f) == 0 && ok;
}

static int verify_digestsign(EVP_PKEY *pub, const struct opts *o, int mdlen,
                             const unsigned char *msg, size_t msglen,
                             const unsigned char *sig, size_t siglen)
{
    EVP_MD_CTX *m = EVP_MD_CTX_new();
    EVP_PKEY_CTX *vp = NULL;
    int rc = -1;

    if (m != NULL
        && EVP_DigestVerifyInit_ex(m, &vp, o->md, kh_test_verify_libctx(),
                                   NULL, pub, NULL) == 1
        && set_verify_opts(vp, o, pub, mdlen)) {
        rc = EVP_DigestVerify(m, sig, siglen, msg, msglen);
    }
    EVP_MD_CTX_free(m);
    return rc;
}

static int round_digestsign(EVP_PKEY *pkey, EVP_PKEY *pub,
                            const struct opts *o, int mdlen, int round)
{
    unsigned char msg[64], *sig = NULL;
    size_t siglen = 0, maxlen = 0;
    EVP_MD_CTX *m = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;
    int ok = 0;

    snprintf((char *)msg, sizeof(msg), "keyhold digest-sign round %d", round);
    if (m == NULL
        || EVP_DigestSignInit_ex(m, &pctx, o->md, NULL, NULL, pkey,
                                 NULL) != 1) {
        kh_test_err("EVP_DigestSignInit_ex(%s) failed", o->md);
        goto end;
    }
    if (!set_sign_opts(pctx, o)) {
        goto end;
    }
    if (EVP_DigestSign(m, NULL, &maxlen, msg, sizeof(msg)) != 1
        || (sig = OPENSSL_malloc(maxlen)) == NULL) {
        kh_test_err("EVP_DigestSign (length query) failed");
        goto end;
    }
    siglen = maxlen;
    if (EVP_DigestSign(m, sig, &siglen, msg, sizeof(msg)) != 1) {
        kh_test_err("EVP_DigestSign failed");
        goto end;
    }
    if (siglen > maxlen || !check_der(pub, sig, siglen)) {
        kh_test_err("digest-sign: malformed signature (%zu bytes)", siglen);
        goto end;
    }
    if (verify_digestsign(pub, o, mdlen, msg, sizeof(msg), sig, siglen) != 1) {
        kh_test_err("digest-sign: signature does not verify with the "
                    "default provider");
        goto end;
    }
    msg[0] ^= 0x01;
    if (verify_digestsign(pub, o, mdlen, msg, sizeof(msg), sig, siglen) == 1) {
        kh_test_err("digest-sign: signature verifies for a changed message");
        goto end;
    }
    ERR_clear_error();
    if (o->sigout != NULL && round == 0) {
        char path[4096];

        snprintf(path, sizeof(path), "%s.digestsign", o->sigout);
        msg[0] ^= 0x01;
        if (!write_sig(path, sig, siglen)) {
            kh_test_err("cannot write %s", path);
            goto end;
        }
    }
    ok = 1;
end:
    if (ok && round == 0) {
        printf("ok digestsign md=%s siglen=%zu\n", o->md, siglen);
    }
    OPENSSL_free(sig);
    EVP_MD_CTX_free(m);
    return ok;
}

static int verify_prehashed(EVP_PKEY *pub, const struct opts *o, int mdlen,
                            const unsigned char *dg, size_t dglen,
                            const unsigned char *sig, size_t siglen)
{
    EVP_PKEY_CTX *vp = EVP_PKEY_CTX_new_from_pkey(kh_test_verify_libctx(),
                                                  pub, NULL);
    EVP_MD *md = EVP_MD_fetch(kh_test_verify_libctx(), o->md, NULL);
    int rc = -1;

    if (vp != NULL && md != NULL && EVP_PKEY_verify_init(vp) == 1
        && EVP_PKEY_CTX_set_signature_md(vp, md) > 0
        && set_verify_opts(vp, o, pub, mdlen)) {
        rc = EVP_PKEY_verify(vp, sig, siglen, dg, dglen);
    }
    EVP_MD_free(md);
    EVP_PKEY_CTX_free(vp);
    return rc;
}

static int round_prehashed(EVP_PKEY *pkey, EVP_PKEY *pub,
                           const struct opts *o, int mdlen, int round)
{
    unsigned char msg[64], dg[EVP_MAX_MD_SIZE], *sig = NULL;
    unsigned int dglen = 0;
    size_t siglen = 0, maxlen = 0;
    EVP_PKEY_CTX *pctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
    EVP_MD *md = EVP_MD_fetch(NULL, o->md, NULL);
    int ok = 0;

    snprintf((char *)msg, sizeof(msg), "keyhold prehashed round %d", round);
    if (pctx == NULL || md == NULL
        || !EVP_Digest(msg, sizeof(msg), dg, &dglen, md, NULL)) {
        kh_test_err("digest %s not available", o->md);
        goto end;
    }
    if (EVP_PKEY_sign_init(pctx) != 1) {
        kh_test_err("EVP_PKEY_sign_init failed");
        goto end;
    }
    if (EVP_PKEY_CTX_set_signature_md(pctx, md) <= 0) {
        kh_test_err("EVP_PKEY_CTX_set_signature_md(%s) failed", o->md);
        goto end;
    }
    if (!set_sign_opts(pctx, o)) {
        goto end;
    }
    if (EVP_PKEY_sign(pctx, NULL, &maxlen, dg, dglen) != 1
        || (sig = OPENSSL_malloc(maxlen)) == NULL) {
        kh_test_err("EVP_PKEY_sign (length query) failed");
        goto end;
    }
    siglen = maxlen;
    if (EVP_PKEY_sign(pctx, sig, &siglen, dg, dglen) != 1) {
        kh_test_err("EVP_PKEY_sign failed");
        goto end;
    }
    if (siglen > maxlen || !check_der(pub, sig, siglen)) {
        kh_test_err("prehashed: malformed signature (%zu bytes)", siglen);
        goto end;
    }
    if (verify_prehashed(pub, o, mdlen, dg, dglen, sig, siglen) != 1) {
        kh_test_err("prehashed: signature does not verify with the default "
                    "provider");
        goto end;
    }
    dg[0] ^= 0x01;
    if (verify_prehashed(pub, o, mdlen, dg, dglen, sig, siglen) == 1) {
        kh_test_err("prehashed: signature verifies for a changed digest");
        goto end;
    }
    ERR_clear_error();
    ok = 1;
end:
    if (ok && round == 0) {
        printf("ok sign md=%s siglen=%zu\n", o->md, siglen);
    }
    OPENSSL_free(sig);
    EVP_MD_free(md);
    EVP_PKEY_CTX_free(pctx);
    return ok;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: kh-signtest -k URI [-L first|last] [-P dir] [-d md] "
            "[-p pkcs1|pss]\n"
            "       [-s digest|max|auto|N|ctrl:N] [-g mgf1-md] "
            "[-m digestsign|sign|both]\n"
            "       [-n rounds] [-o pub.pem] [-S sig-prefix]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    struct opts o = { .md = "sha256", .mode = "both", .rounds = 1 };
    EVP_PKEY *pkey = NULL, *pub = NULL;
    EVP_MD *md = NULL;
    int c, i, mdlen, ok = 0;

    while ((c = getopt(argc, argv, "k:L:P:d:p:s:g:m:n:o:S:")) != -1) {
        switch (c) {
        case 'k': o.uri = optarg; break;
        case 'L': o.order = optarg; break;
        case 'P': o.path = optarg; break;
        case 'd': o.md = optarg; break;
        case 'p': o.pad = optarg; break;
        case 's': o.salt = optarg; break;
        case 'g': o.mgf1 = optarg; break;
        case 'm': o.mode = optarg; break;
        case 'n': o.rounds = atoi(optarg); break;
        case 'o': o.pubout = optarg; break;
        case 'S': o.sigout = optarg; break;
        default: usage();
        }
    }
    if (o.uri == NULL || o.rounds < 1) {
        usage();
    }
    if (!kh_test_load_providers(o.order, o.path)) {
        return 1;
    }
    pkey = kh_test_load_key(o.uri);
    if (pkey == NULL) {
        goto end;
    }
    pub = kh_test_public_copy(pkey, o.pubout);
    if (pub == NULL) {
        goto end;
    }
    md = EVP_MD_fetch(kh_test_verify_libctx(), o.md, NULL);
    if (md == NULL) {
        kh_test_err("unknown digest %s", o.md);
        goto end;
    }
    mdlen = EVP_MD_get_size(md);
    printf("key %s bits=%d provider=%s\n", EVP_PKEY_get0_type_name(pkey),
           EVP_PKEY_get_bits(pkey),
           OSSL_PROVIDER_get0_name(EVP_PKEY_get0_provider(pkey)));
    if (is_pss(&o)) {
        printf("pss salt expected=%d\n", expected_salt(&o, pub, mdlen));
    }
    for (i = 0; i < o.rounds; i++) {
        if (strcmp(o.mode, "sign") != 0
            && !round_digestsign(pkey, pub, &o, mdlen, i)) {
            goto end;
        }
        if (strcmp(o.mode, "digestsign") != 0
            && !round_prehashed(pkey, pub, &o, mdlen, i)) {
            goto end;
        }
    }
    ok = 1;
end:
    EVP_MD_free(md);
    kh_test_pub_free(pub);
    EVP_PKEY_free(pkey);
    return ok ? 0 : 1;
}
