/* SPDX-License-Identifier: MIT */
/*
 * Signatures with a hardware key: ECDSA, RSA PKCS#1 v1.5 and RSA-PSS.
 * The digest is computed here in software, the token signs the digest.
 * Verification is done in software with the public half. The parameter
 * handling follows the default provider's names and encodings so that
 * libssl, the CMS/X.509 signing code and the openssl apps see no
 * difference.
 *
 * The sign path is what every TLS handshake pays on top of the token, so
 * it allocates nothing and fetches nothing: libssl signs with the one-shot
 * EVP_DigestSign (digest_sign below, no context copy), SHA-1 and SHA-2 are
 * hashed with OpenSSL's block functions on a context inside ours (an
 * EVP_MD fetched in the provider's library context would make the first
 * signature build every digest method there), and only SHA-3 goes through
 * an EVP_MD_CTX. Those block functions are deprecated as an application
 * API in OpenSSL 3.0, not removed; they are the default provider's own
 * implementation.
 */
#define OPENSSL_SUPPRESS_DEPRECATED

#include <string.h>
#include <strings.h>
#include <stdlib.h>

#include <openssl/core_dispatch.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/params.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include "keyhold.h"

#ifndef RSA_PSS_SALTLEN_AUTO_DIGEST_MAX
#define RSA_PSS_SALTLEN_AUTO_DIGEST_MAX -4
#endif

typedef struct kh_sig_ctx {
    KH_PROV_CTX *prov;
    KH_KEY *key;
    int is_rsa;
    int op;                   /* EVP_PKEY_OP_SIGN or EVP_PKEY_OP_VERIFY */
    int md_nid;               /* NID_undef: none set */
    int pad;                  /* RSA_PKCS1_PADDING / RSA_PKCS1_PSS_PADDING */
    int saltlen;              /* as set: >= 0 or RSA_PSS_SALTLEN_* */
    int mgf1_nid;             /* NID_undef: same as md_nid */
    /* digest_* operations */
    int dstarted;             /* the digest below holds a started hash */
    union {
        SHA_CTX sha1;
        SHA256_CTX sha256;
        SHA512_CTX sha512;
    } dg;
    EVP_MD_CTX *mdctx;        /* SHA-3 only */
} KH_SIG_CTX;

static OSSL_FUNC_signature_newctx_fn sig_newctx_rsa;
static OSSL_FUNC_signature_newctx_fn sig_newctx_ec;
static OSSL_FUNC_signature_freectx_fn sig_freectx;
static OSSL_FUNC_signature_dupctx_fn sig_dupctx;
static OSSL_FUNC_signature_sign_init_fn sig_sign_init;
static OSSL_FUNC_signature_sign_fn sig_sign;
static OSSL_FUNC_signature_verify_init_fn sig_verify_init;
static OSSL_FUNC_signature_verify_fn sig_verify;
static OSSL_FUNC_signature_digest_sign_init_fn sig_dsign_init;
static OSSL_FUNC_signature_digest_sign_update_fn sig_dupdate;
static OSSL_FUNC_signature_digest_sign_final_fn sig_dsign_final;
static OSSL_FUNC_signature_digest_sign_fn sig_dsign;
static OSSL_FUNC_signature_digest_verify_init_fn sig_dverify_init;
static OSSL_FUNC_signature_digest_verify_update_fn sig_dupdate;
static OSSL_FUNC_signature_digest_verify_final_fn sig_dverify_final;
static OSSL_FUNC_signature_get_ctx_params_fn sig_get_params;
static OSSL_FUNC_signature_gettable_ctx_params_fn sig_gettable_rsa;
static OSSL_FUNC_signature_gettable_ctx_params_fn sig_gettable_ec;
static OSSL_FUNC_signature_set_ctx_params_fn sig_set_params;
static OSSL_FUNC_signature_settable_ctx_params_fn sig_settable_rsa;
static OSSL_FUNC_signature_settable_ctx_params_fn sig_settable_ec;
static int soft_sign(KH_SIG_CTX *ctx, unsigned char *sig, size_t *siglen,
                     size_t sigsize, const unsigned char *tbs, size_t tbslen);

static void *sig_newctx(void *provctx, int is_rsa)
{
    KH_SIG_CTX *ctx = OPENSSL_zalloc(sizeof(*ctx));

    if (ctx == NULL) {
        return NULL;
    }
    ctx->prov = provctx;
    ctx->is_rsa = is_rsa;
    ctx->md_nid = NID_undef;
    ctx->mgf1_nid = NID_undef;
    ctx->pad = RSA_PKCS1_PADDING;
    ctx->saltlen = RSA_PSS_SALTLEN_AUTO;
    return ctx;
}

static void *sig_newctx_rsa(void *provctx, const char *propq)
{
    return sig_newctx(provctx, 1);
}

static void *sig_newctx_ec(void *provctx, const char *propq)
{
    return sig_newctx(provctx, 0);
}

static void sig_freectx(void *vctx)
{
    KH_SIG_CTX *ctx = vctx;

    if (ctx == NULL) {
        return;
    }
    EVP_MD_CTX_free(ctx->mdctx);
    kh_key_free(ctx->key);
    OPENSSL_cleanse(&ctx->dg, sizeof(ctx->dg));
    OPENSSL_free(ctx);
}

static void *sig_dupctx(void *vctx)
{
    KH_SIG_CTX *src = vctx, *dst;

    dst = OPENSSL_memdup(src, sizeof(*src));
    if (dst == NULL) {
        return NULL;
    }
    dst->mdctx = NULL;
    kh_key_up_ref(dst->key);
    if (src->mdctx != NULL) {
        dst->mdctx = EVP_MD_CTX_new();
        if (dst->mdctx == NULL || !EVP_MD_CTX_copy_ex(dst->mdctx, src->mdctx)) {
            sig_freectx(dst);
            return NULL;
        }
    }
    return dst;
}

/* A digest name (any of OpenSSL's spellings, or an OID) -> ctx nid. */
static int set_md(KH_SIG_CTX *ctx, const char *name, int *nid)
{
    int n = kh_md_nid_from_name(name);

    if (n == NID_undef) {
        KH_raise(ctx->prov, KH_R_BAD_PARAM, "digest '%s' not supported",
                 name != NULL ? name : "(null)");
        return 0;
    }
    *nid = n;
    return 1;
}

static int sig_init(KH_SIG_CTX *ctx, void *vkey, const OSSL_PARAM params[],
                    int op)
{
    KH_KEY *key = vkey;

    if (key != NULL) {
        if (!kh_key_has_pub(key)) {
            KH_raise(ctx->prov, KH_R_PUBLIC_KEY, "key has no public half");
            return 0;
        }
        if ((key->type == EVP_PKEY_RSA) != (ctx->is_rsa != 0)) {
            KH_raise(ctx->prov, KH_R_BAD_PARAM, "key type mismatch");
            return 0;
        }
        if (op == EVP_PKEY_OP_SIGN && !(key->flags & KH_KEY_SOFTWARE)) {
            if (key->ops == NULL) {
                KH_raise(ctx->prov, KH_R_NOT_PERMITTED,
                         "public key only: cannot sign");
                return 0;
            }
            if (!(key->flags & KH_KEY_CAN_SIGN)) {
                KH_raise(ctx->prov, KH_R_NOT_PERMITTED,
                         "key %s does not allow signing (CKA_SIGN false)",
                         key->uri != NULL ? key->uri : "");
                return 0;
            }
        }
        if (key != ctx->key) {
            kh_key_up_ref(key);
            kh_key_free(ctx->key);
            ctx->key = key;
        }
    } else if (ctx->key == NULL) {
        KH_raise(ctx->prov, KH_R_BAD_PARAM, "no key");
        return 0;
    }
    ctx->op = op;
    return sig_set_params(ctx, params);
}

static int sig_sign_init(void *vctx, void *vkey, const OSSL_PARAM params[])
{
    return sig_init(vctx, vkey, params, EVP_PKEY_OP_SIGN);
}

static int sig_verify_init(void *vctx, void *vkey, const OSSL_PARAM params[])
{
    return sig_init(vctx, vkey, params, EVP_PKEY_OP_VERIFY);
}

/* Digest length -> digest, for raw sign calls that set no digest (PSS). */
static int md_nid_for_len(size_t len)
{
    switch (len) {
    case 20:
        return NID_sha1;
    case 28:
        return NID_sha224;
    case 32:
        return NID_sha256;
    case 48:
        return NID_sha384;
    case 64:
        return NID_sha512;
    default:
        return NID_undef;
    }
}

/* Resolves the PSS salt length rules to a byte count (signing side). */
static int pss_saltlen(const KH_SIG_CTX *ctx, int md_nid, int *out)
{
    int hlen = kh_md_size(md_nid), emlen, max, bits = ctx->key->bits;

    if (hlen <= 0) {
        return 0;
    }
    emlen = (bits - 1 + 7) / 8;
    max = emlen - hlen - 2;
    if (max < 0) {
        return 0;
    }
    switch (ctx->saltlen) {
    case RSA_PSS_SALTLEN_DIGEST:
        *out = hlen;
        break;
    case RSA_PSS_SALTLEN_AUTO:
    case RSA_PSS_SALTLEN_MAX:
        *out = max;
        break;
    case RSA_PSS_SALTLEN_AUTO_DIGEST_MAX:
        *out = hlen < max ? hlen : max;
        break;
    default:
        if (ctx->saltlen < 0 || ctx->saltlen > max) {
            return 0;
        }
        *out = ctx->saltlen;
        break;
    }
    if (*out > max) {
        return 0;
    }
    return 1;
}

static int sig_sign(void *vctx, unsigned char *sig, size_t *siglen,
                    size_t sigsize, const unsigned char *tbs, size_t tbslen)
{
    KH_SIG_CTX *ctx = vctx;
    KH_KEY *key = ctx->key;
    KH_SIGN_PARAMS sp;

    if (key == NULL || ctx->op != EVP_PKEY_OP_SIGN
        || (key->ops == NULL && !(key->flags & KH_KEY_SOFTWARE))) {
        KH_raise(ctx->prov, KH_R_BAD_PARAM, "not initialised for signing");
        return 0;
    }
    if (sig == NULL) {
        *siglen = (size_t)key->size;
        return 1;
    }
    if (key->ops == NULL) {
        return soft_sign(ctx, sig, siglen, sigsize, tbs, tbslen);
    }
    sp.md_nid = ctx->md_nid;
    sp.mgf1_md_nid = NID_undef;
    sp.saltlen = 0;
    if (sp.md_nid != NID_undef && tbslen != (size_t)kh_md_size(sp.md_nid)) {
        KH_raise(ctx->prov, KH_R_BAD_PARAM,
                 "input length %zu does not match the digest", tbslen);
        return 0;
    }
    if (!ctx->is_rsa) {
        sp.scheme = KH_SIG_ECDSA;
    } else if (ctx->pad == RSA_PKCS1_PSS_PADDING) {
        sp.scheme = KH_SIG_RSA_PSS;
        if (sp.md_nid == NID_undef) {
            sp.md_nid = md_nid_for_len(tbslen);
        }
        sp.mgf1_md_nid = ctx->mgf1_nid != NID_undef ? ctx->mgf1_nid
                                                     : sp.md_nid;
        if (!pss_saltlen(ctx, sp.md_nid, &sp.saltlen)) {
            KH_raise(ctx->prov, KH_R_BAD_PARAM,
                     "PSS salt length %d does not fit a %d-bit key",
                     ctx->saltlen, key->bits);
            return 0;
        }
    } else {
        sp.scheme = KH_SIG_RSA_PKCS1;
    }
    if (ctx->is_rsa && sigsize < (size_t)key->size) {
        KH_raise(ctx->prov, KH_R_BUFFER, "signature buffer too small");
        return 0;
    }
    return key->ops->sign(key, &sp, sig, siglen, sigsize, tbs, tbslen);
}

/*
 * An EVP_PKEY_CTX in the provider's library context on the public half (or
 * on the key pair of a software key), set up for signing or verifying with
 * the context's digest, padding, salt length and MGF1 digest.
 */
static EVP_PKEY_CTX *soft_ctx(KH_SIG_CTX *ctx, int sign)
{
    EVP_PKEY_CTX *pctx = NULL;
    EVP_PKEY *pub;
    EVP_MD *md = NULL, *mgf = NULL;
    int ok = 0;

    if (ctx->key == NULL || (pub = kh_key_pub(ctx->key)) == NULL) {
        return NULL;
    }
    pctx = EVP_PKEY_CTX_new_from_pkey(ctx->prov->libctx, pub, NULL);
    if (pctx == NULL
        || (sign ? EVP_PKEY_sign_init(pctx) : EVP_PKEY_verify_init(pctx))
               <= 0) {
        goto end;
    }
    if (ctx->md_nid != NID_undef
        && ((md = kh_md_get(ctx->prov, ctx->md_nid)) == NULL
            || EVP_PKEY_CTX_set_signature_md(pctx, md) <= 0)) {
        goto end;
    }
    if (ctx->is_rsa) {
        if (EVP_PKEY_CTX_set_rsa_padding(pctx, ctx->pad) <= 0) {
            goto end;
        }
        if (ctx->pad == RSA_PKCS1_PSS_PADDING) {
            if (EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, ctx->saltlen) <= 0) {
                goto end;
            }
            if (ctx->mgf1_nid != NID_undef
                && ((mgf = kh_md_get(ctx->prov, ctx->mgf1_nid)) == NULL
                    || EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, mgf) <= 0)) {
                goto end;
            }
        }
    }
    ok = 1;
end:
    EVP_MD_free(md);
    EVP_MD_free(mgf);
    if (!ok) {
        EVP_PKEY_CTX_free(pctx);
        pctx = NULL;
    }
    return pctx;
}

/* A software key pair (keymgmt.c, "Software keys") signs in software. */
static int soft_sign(KH_SIG_CTX *ctx, unsigned char *sig, size_t *siglen,
                     size_t sigsize, const unsigned char *tbs, size_t tbslen)
{
    EVP_PKEY_CTX *pctx = soft_ctx(ctx, 1);
    int ok;

    *siglen = sigsize;
    ok = pctx != NULL && EVP_PKEY_sign(pctx, sig, siglen, tbs, tbslen) > 0;
    EVP_PKEY_CTX_free(pctx);
    return ok;
}

/* Software verification with the public half, same parameters. */
static int sig_verify(void *vctx, const unsigned char *sig, size_t siglen,
                      const unsigned char *tbs, size_t tbslen)
{
    EVP_PKEY_CTX *pctx = soft_ctx(vctx, 0);
    int ok;

    ok = pctx != NULL && EVP_PKEY_verify(pctx, sig, siglen, tbs, tbslen) == 1;
    EVP_PKEY_CTX_free(pctx);
    return ok;
}

/* Starts the hash of a digest_* operation. */
static int dg_start(KH_SIG_CTX *ctx)
{
    EVP_MD *md;
    int ok;

    switch (ctx->md_nid) {
    case NID_sha1:
        ok = SHA1_Init(&ctx->dg.sha1);
        break;
    case NID_sha224:
        ok = SHA224_Init(&ctx->dg.sha256);
        break;
    case NID_sha256:
        ok = SHA256_Init(&ctx->dg.sha256);
        break;
    case NID_sha384:
        ok = SHA384_Init(&ctx->dg.sha512);
        break;
    case NID_sha512:
        ok = SHA512_Init(&ctx->dg.sha512);
        break;
    default:
        if (ctx->mdctx == NULL && (ctx->mdctx = EVP_MD_CTX_new()) == NULL) {
            KH_raise(ctx->prov, KH_R_MALLOC, "out of memory");
            return 0;
        }
        md = kh_md_get(ctx->prov, ctx->md_nid);
        ok = md != NULL && EVP_DigestInit_ex2(ctx->mdctx, md, NULL);
        EVP_MD_free(md);
        break;
    }
    ctx->dstarted = ok;
    return ok;
}

static int dg_update(KH_SIG_CTX *ctx, const unsigned char *data, size_t len)
{
    if (!ctx->dstarted && !dg_start(ctx)) {
        return 0;
    }
    switch (ctx->md_nid) {
    case NID_sha1:
        return SHA1_Update(&ctx->dg.sha1, data, len);
    case NID_sha224:
        return SHA224_Update(&ctx->dg.sha256, data, len);
    case NID_sha256:
        return SHA256_Update(&ctx->dg.sha256, data, len);
    case NID_sha384:
        return SHA384_Update(&ctx->dg.sha512, data, len);
    case NID_sha512:
        return SHA512_Update(&ctx->dg.sha512, data, len);
    default:
        return EVP_DigestUpdate(ctx->mdctx, data, len);
    }
}

/* Ends the hash into |out| (EVP_MAX_MD_SIZE); the next update restarts. */
static int dg_final(KH_SIG_CTX *ctx, unsigned char *out, size_t *outlen)
{
    unsigned int len = 0;
    int ok;

    if (!ctx->dstarted && !dg_start(ctx)) {
        return 0;
    }
    ctx->dstarted = 0;
    switch (ctx->md_nid) {
    case NID_sha1:
        ok = SHA1_Final(out, &ctx->dg.sha1);
        break;
    case NID_sha224:
        ok = SHA224_Final(out, &ctx->dg.sha256);
        break;
    case NID_sha256:
        ok = SHA256_Final(out, &ctx->dg.sha256);
        break;
    case NID_sha384:
        ok = SHA384_Final(out, &ctx->dg.sha512);
        break;
    case NID_sha512:
        ok = SHA512_Final(out, &ctx->dg.sha512);
        break;
    default:
        ok = EVP_DigestFinal_ex(ctx->mdctx, out, &len);
        *outlen = len;
        return ok;
    }
    *outlen = (size_t)kh_md_size(ctx->md_nid);
    return ok;
}

static int dinit(KH_SIG_CTX *ctx, const char *mdname, void *vkey,
                 const OSSL_PARAM params[], int op)
{
    if (!sig_init(ctx, vkey, params, op)) {
        return 0;
    }
    if (mdname != NULL && *mdname != '\0') {
        if (!set_md(ctx, mdname, &ctx->md_nid)) {
            return 0;
        }
    } else if (ctx->md_nid == NID_undef) {
        ctx->md_nid = NID_sha256;
    }
    /* The hash starts with the first data (dg_update/dg_final). */
    ctx->dstarted = 0;
    return 1;
}

static int sig_dsign_init(void *vctx, const char *mdname, void *vkey,
                          const OSSL_PARAM params[])
{
    return dinit(vctx, mdname, vkey, params, EVP_PKEY_OP_SIGN);
}

static int sig_dverify_init(void *vctx, const char *mdname, void *vkey,
                            const OSSL_PARAM params[])
{
    return dinit(vctx, mdname, vkey, params, EVP_PKEY_OP_VERIFY);
}

static int sig_dupdate(void *vctx, const unsigned char *data, size_t datalen)
{
    KH_SIG_CTX *ctx = vctx;

    if (ctx->md_nid == NID_undef) {
        return 0;
    }
    return dg_update(ctx, data, datalen);
}

/* Ends the digest (after |tbs|, when given) and signs it. */
static int dsign(KH_SIG_CTX *ctx, unsigned char *sig, size_t *siglen,
                 size_t sigsize, const unsigned char *tbs, size_t tbslen)
{
    unsigned char dgst[EVP_MAX_MD_SIZE];
    size_t dlen = 0;

    if (ctx->md_nid == NID_undef) {
        return 0;
    }
    if (sig == NULL) {
        return sig_sign(ctx, NULL, siglen, 0, NULL, 0);
    }
    if ((tbs != NULL && !dg_update(ctx, tbs, tbslen))
        || !dg_final(ctx, dgst, &dlen)) {
        return 0;
    }
    return sig_sign(ctx, sig, siglen, sigsize, dgst, dlen);
}

static int sig_dsign_final(void *vctx, unsigned char *sig, size_t *siglen,
                           size_t sigsize)
{
    return dsign(vctx, sig, siglen, sigsize, NULL, 0);
}

/* EVP_DigestSign in one call: what libssl uses for every handshake. */
static int sig_dsign(void *vctx, unsigned char *sig, size_t *siglen,
                     size_t sigsize, const unsigned char *tbs, size_t tbslen)
{
    return dsign(vctx, sig, siglen, sigsize, tbs, tbslen);
}

static int sig_dverify_final(void *vctx, const unsigned char *sig,
                             size_t siglen)
{
    KH_SIG_CTX *ctx = vctx;
    unsigned char dgst[EVP_MAX_MD_SIZE];
    size_t dlen = 0;

    if (ctx->md_nid == NID_undef || !dg_final(ctx, dgst, &dlen)) {
        return 0;
    }
    return sig_verify(ctx, sig, siglen, dgst, dlen);
}

/* DER AlgorithmIdentifier of the signature, for X509/REQ/CMS signing. */
static int algorithm_id(KH_SIG_CTX *ctx, unsigned char *out, size_t outsize,
                        size_t *outlen)
{
    X509_ALGOR *alg = NULL, *mgfmd = NULL;
    RSA_PSS_PARAMS *pss = NULL;
    ASN1_STRING *str = NULL;
    unsigned char *der = NULL;
    EVP_MD *md = NULL, *mgf = NULL;
    int sig_nid, len, ok = 0, salt;

    if (ctx->md_nid == NID_undef || ctx->key == NULL) {
        return 0;
    }
    alg = X509_ALGOR_new();
    if (alg == NULL) {
        return 0;
    }
    if (!ctx->is_rsa) {
        if (!OBJ_find_sigid_by_algs(&sig_nid, ctx->md_nid,
                                    NID_X9_62_id_ecPublicKey)) {
            goto end;
        }
        X509_ALGOR_set0(alg, OBJ_nid2obj(sig_nid), V_ASN1_UNDEF, NULL);
    } else if (ctx->pad != RSA_PKCS1_PSS_PADDING) {
        if (!OBJ_find_sigid_by_algs(&sig_nid, ctx->md_nid, NID_rsaEncryption)) {
            goto end;
        }
        X509_ALGOR_set0(alg, OBJ_nid2obj(sig_nid), V_ASN1_NULL, NULL);
    } else {
        int mgf_nid = ctx->mgf1_nid != NID_undef ? ctx->mgf1_nid : ctx->md_nid;

        if (!pss_saltlen(ctx, ctx->md_nid, &salt)) {
            goto end;
        }
        /* X509_ALGOR_set_md takes the digest's parameter rule from it */
        md = kh_md_get(ctx->prov, ctx->md_nid);
        mgf = kh_md_get(ctx->prov, mgf_nid);
        if (md == NULL || mgf == NULL) {
            goto end;
        }
        pss = RSA_PSS_PARAMS_new();
        if (pss == NULL) {
            goto end;
        }
        /* RFC 4055 defaults (SHA-1, MGF1-SHA-1, 20) are left out. */
        if (ctx->md_nid != NID_sha1) {
            pss->hashAlgorithm = X509_ALGOR_new();
            if (pss->hashAlgorithm == NULL) {
                goto end;
            }
            X509_ALGOR_set_md(pss->hashAlgorithm, md);
        }
        if (mgf_nid != NID_sha1) {
            mgfmd = X509_ALGOR_new();
            pss->maskGenAlgorithm = X509_ALGOR_new();
            if (mgfmd == NULL || pss->maskGenAlgorithm == NULL) {
                goto end;
            }
            X509_ALGOR_set_md(mgfmd, mgf);
            str = ASN1_item_pack(mgfmd, ASN1_ITEM_rptr(X509_ALGOR), NULL);
            if (str == NULL) {
                goto end;
            }
            X509_ALGOR_set0(pss->maskGenAlgorithm, OBJ_nid2obj(NID_mgf1),
                            V_ASN1_SEQUENCE, str);
            str = NULL;
        }
        if (salt != 20) {
            pss->saltLength = ASN1_INTEGER_new();
            if (pss->saltLength == NULL
                || !ASN1_INTEGER_set(pss->saltLength, salt)) {
                goto end;
            }
        }
        str = ASN1_item_pack(pss, ASN1_ITEM_rptr(RSA_PSS_PARAMS), NULL);
        if (str == NULL) {
            goto end;
        }
        X509_ALGOR_set0(alg, OBJ_nid2obj(NID_rsassaPss), V_ASN1_SEQUENCE, str);
        str = NULL;
    }
    len = i2d_X509_ALGOR(alg, &der);
    if (len <= 0 || (size_t)len > outsize) {
        goto end;
    }
    memcpy(out, der, (size_t)len);
    *outlen = (size_t)len;
    ok = 1;
end:
    OPENSSL_free(der);
    EVP_MD_free(md);
    EVP_MD_free(mgf);
    ASN1_STRING_free(str);
    X509_ALGOR_free(mgfmd);
    RSA_PSS_PARAMS_free(pss);
    X509_ALGOR_free(alg);
    return ok;
}

static int sig_get_params(void *vctx, OSSL_PARAM params[])
{
    KH_SIG_CTX *ctx = vctx;
    OSSL_PARAM *p;

    p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_ALGORITHM_ID);
    if (p != NULL) {
        unsigned char aid[256];
        size_t aidlen = 0;

        if (!algorithm_id(ctx, aid, sizeof(aid), &aidlen)
            || !OSSL_PARAM_set_octet_string(p, aid, aidlen)) {
            return 0;
        }
    }
    p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_DIGEST);
    if (p != NULL && ctx->md_nid != NID_undef
        && !OSSL_PARAM_set_utf8_string(p, kh_md_name_from_nid(ctx->md_nid))) {
        return 0;
    }
    if (!ctx->is_rsa) {
        return 1;
    }
    p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_PAD_MODE);
    if (p != NULL && !kh_rsa_pad_to_param(p, ctx->pad)) {
        return 0;
    }
    p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_PSS_SALTLEN);
    if (p != NULL) {
        if (p->data_type == OSSL_PARAM_INTEGER) {
            if (!OSSL_PARAM_set_int(p, ctx->saltlen)) {
                return 0;
            }
        } else {
            char buf[16];
            const char *s;

            switch (ctx->saltlen) {
            case RSA_PSS_SALTLEN_DIGEST:
                s = OSSL_PKEY_RSA_PSS_SALT_LEN_DIGEST;
                break;
            case RSA_PSS_SALTLEN_MAX:
                s = OSSL_PKEY_RSA_PSS_SALT_LEN_MAX;
                break;
            case RSA_PSS_SALTLEN_AUTO:
                s = OSSL_PKEY_RSA_PSS_SALT_LEN_AUTO;
                break;
            default:
                snprintf(buf, sizeof(buf), "%d", ctx->saltlen);
                s = buf;
                break;
            }
            if (!OSSL_PARAM_set_utf8_string(p, s)) {
                return 0;
            }
        }
    }
    p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_MGF1_DIGEST);
    if (p != NULL) {
        int m = ctx->mgf1_nid != NID_undef ? ctx->mgf1_nid : ctx->md_nid;

        if (m != NID_undef
            && !OSSL_PARAM_set_utf8_string(p, kh_md_name_from_nid(m))) {
            return 0;
        }
    }
    return 1;
}

static const OSSL_PARAM *sig_gettable_ec(void *vctx, void *provctx)
{
    static const OSSL_PARAM tbl[] = {
        OSSL_PARAM_octet_string(OSSL_SIGNATURE_PARAM_ALGORITHM_ID, NULL, 0),
        OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_DIGEST, NULL, 0),
        OSSL_PARAM_END
    };

    return tbl;
}

static const OSSL_PARAM *sig_gettable_rsa(void *vctx, void *provctx)
{
    static const OSSL_PARAM tbl[] = {
        OSSL_PARAM_octet_string(OSSL_SIGNATURE_PARAM_ALGORITHM_ID, NULL, 0),
        OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_DIGEST, NULL, 0),
        OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_PAD_MODE, NULL, 0),
        OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_PSS_SALTLEN, NULL, 0),
        OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_MGF1_DIGEST, NULL, 0),
        OSSL_PARAM_END
    };

    return tbl;
}

static int parse_saltlen(const OSSL_PARAM *p, int *out)
{
    if (p->data_type == OSSL_PARAM_INTEGER) {
        return OSSL_PARAM_get_int(p, out);
    }
    if (p->data_type == OSSL_PARAM_UTF8_STRING && p->data != NULL) {
        const char *s = p->data;
        char *end;
        long v;

        if (strcmp(s, OSSL_PKEY_RSA_PSS_SALT_LEN_DIGEST) == 0) {
            *out = RSA_PSS_SALTLEN_DIGEST;
        } else if (strcmp(s, OSSL_PKEY_RSA_PSS_SALT_LEN_MAX) == 0) {
            *out = RSA_PSS_SALTLEN_MAX;
        } else if (strcmp(s, OSSL_PKEY_RSA_PSS_SALT_LEN_AUTO) == 0) {
            *out = RSA_PSS_SALTLEN_AUTO;
        } else if (strcmp(s, "auto-digestmax") == 0) {
            *out = RSA_PSS_SALTLEN_AUTO_DIGEST_MAX;
        } else {
            v = strtol(s, &end, 10);
            if (*s == '\0' || *end != '\0' || v < -4 || v > 65535) {
                return 0;
            }
            *out = (int)v;
        }
        return 1;
    }
    return 0;
}

/* One pass over |params|: libssl and EVP_PKEY_CTX_set_* send one or two. */
static int sig_set_params(void *vctx, const OSSL_PARAM params[])
{
    KH_SIG_CTX *ctx = vctx;
    const OSSL_PARAM *p;
    const char *name;
    int v;

    if (params == NULL) {
        return 1;
    }
    for (p = params; p->key != NULL; p++) {
        if (strcmp(p->key, OSSL_SIGNATURE_PARAM_DIGEST) == 0) {
            name = NULL;
            if (!OSSL_PARAM_get_utf8_string_ptr(p, &name)
                || !set_md(ctx, name, &v)) {
                return 0;
            }
            if (v != ctx->md_nid) {
                ctx->md_nid = v;
                ctx->dstarted = 0;
            }
        } else if (!ctx->is_rsa) {
            continue;
        } else if (strcmp(p->key, OSSL_SIGNATURE_PARAM_PAD_MODE) == 0) {
            v = kh_rsa_pad_from_param(p);
            if (v != RSA_PKCS1_PADDING && v != RSA_PKCS1_PSS_PADDING) {
                /* No raw RSA, no X9.31: the two schemes TLS and X.509 use */
                KH_raise(ctx->prov, KH_R_UNSUPPORTED,
                         "RSA padding mode not supported (pkcs1 or pss)");
                return 0;
            }
            ctx->pad = v;
        } else if (strcmp(p->key, OSSL_SIGNATURE_PARAM_PSS_SALTLEN) == 0) {
            if (!parse_saltlen(p, &v)) {
                KH_raise(ctx->prov, KH_R_BAD_PARAM, "bad PSS salt length");
                return 0;
            }
            ctx->saltlen = v;
        } else if (strcmp(p->key, OSSL_SIGNATURE_PARAM_MGF1_DIGEST) == 0) {
            name = NULL;
            if (!OSSL_PARAM_get_utf8_string_ptr(p, &name)
                || !set_md(ctx, name, &ctx->mgf1_nid)) {
                return 0;
            }
        }
    }
    return 1;
}

static const OSSL_PARAM *sig_settable_ec(void *vctx, void *provctx)
{
    static const OSSL_PARAM tbl[] = {
        OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_DIGEST, NULL, 0),
        OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_PROPERTIES, NULL, 0),
        OSSL_PARAM_END
    };

    return tbl;
}

static const OSSL_PARAM *sig_settable_rsa(void *vctx, void *provctx)
{
    static const OSSL_PARAM tbl[] = {
        OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_DIGEST, NULL, 0),
        OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_PROPERTIES, NULL, 0),
        OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_PAD_MODE, NULL, 0),
        OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_PSS_SALTLEN, NULL, 0),
        OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_MGF1_DIGEST, NULL, 0),
        OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_MGF1_PROPERTIES, NULL, 0),
        OSSL_PARAM_END
    };

    return tbl;
}

#define SIG_COMMON \
    { OSSL_FUNC_SIGNATURE_FREECTX, (void (*)(void))sig_freectx }, \
    { OSSL_FUNC_SIGNATURE_DUPCTX, (void (*)(void))sig_dupctx }, \
    { OSSL_FUNC_SIGNATURE_SIGN_INIT, (void (*)(void))sig_sign_init }, \
    { OSSL_FUNC_SIGNATURE_SIGN, (void (*)(void))sig_sign }, \
    { OSSL_FUNC_SIGNATURE_VERIFY_INIT, (void (*)(void))sig_verify_init }, \
    { OSSL_FUNC_SIGNATURE_VERIFY, (void (*)(void))sig_verify }, \
    { OSSL_FUNC_SIGNATURE_DIGEST_SIGN_INIT, (void (*)(void))sig_dsign_init }, \
    { OSSL_FUNC_SIGNATURE_DIGEST_SIGN_UPDATE, (void (*)(void))sig_dupdate }, \
    { OSSL_FUNC_SIGNATURE_DIGEST_SIGN_FINAL, (void (*)(void))sig_dsign_final }, \
    { OSSL_FUNC_SIGNATURE_DIGEST_SIGN, (void (*)(void))sig_dsign }, \
    { OSSL_FUNC_SIGNATURE_DIGEST_VERIFY_INIT, \
      (void (*)(void))sig_dverify_init }, \
    { OSSL_FUNC_SIGNATURE_DIGEST_VERIFY_UPDATE, (void (*)(void))sig_dupdate }, \
    { OSSL_FUNC_SIGNATURE_DIGEST_VERIFY_FINAL, \
      (void (*)(void))sig_dverify_final }, \
    { OSSL_FUNC_SIGNATURE_GET_CTX_PARAMS, (void (*)(void))sig_get_params }, \
    { OSSL_FUNC_SIGNATURE_SET_CTX_PARAMS, (void (*)(void))sig_set_params }

const OSSL_DISPATCH kh_rsa_signature_functions[] = {
    { OSSL_FUNC_SIGNATURE_NEWCTX, (void (*)(void))sig_newctx_rsa },
    SIG_COMMON,
    { OSSL_FUNC_SIGNATURE_GETTABLE_CTX_PARAMS,
      (void (*)(void))sig_gettable_rsa },
    { OSSL_FUNC_SIGNATURE_SETTABLE_CTX_PARAMS,
      (void (*)(void))sig_settable_rsa },
    { 0, NULL }
};

const OSSL_DISPATCH kh_ecdsa_signature_functions[] = {
    { OSSL_FUNC_SIGNATURE_NEWCTX, (void (*)(void))sig_newctx_ec },
    SIG_COMMON,
    { OSSL_FUNC_SIGNATURE_GETTABLE_CTX_PARAMS,
      (void (*)(void))sig_gettable_ec },
    { OSSL_FUNC_SIGNATURE_SETTABLE_CTX_PARAMS,
      (void (*)(void))sig_settable_ec },
    { 0, NULL }
};
