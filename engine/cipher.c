/* SPDX-License-Identifier: MIT */
/*
 * RSA decryption with a hardware key (PKCS#1 v1.5 and OAEP), for keys whose
 * CKA_DECRYPT is true; SCEP needs it. Encryption only needs the public half
 * and is done in software.
 */
#include <string.h>

#include <openssl/core_dispatch.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/params.h>
#include <openssl/rsa.h>

#include "keyhold.h"

typedef struct kh_cipher_ctx {
    KH_PROV_CTX *prov;
    KH_KEY *key;
    int op;
    int pad;                  /* RSA_PKCS1_PADDING / RSA_PKCS1_OAEP_PADDING */
    int oaep_nid;
    int mgf1_nid;
    unsigned char *label;
    size_t labellen;
} KH_CIPHER_CTX;

static OSSL_FUNC_asym_cipher_newctx_fn ac_newctx;
static OSSL_FUNC_asym_cipher_freectx_fn ac_freectx;
static OSSL_FUNC_asym_cipher_dupctx_fn ac_dupctx;
static OSSL_FUNC_asym_cipher_encrypt_init_fn ac_encrypt_init;
static OSSL_FUNC_asym_cipher_encrypt_fn ac_encrypt;
static OSSL_FUNC_asym_cipher_decrypt_init_fn ac_decrypt_init;
static OSSL_FUNC_asym_cipher_decrypt_fn ac_decrypt;
static OSSL_FUNC_asym_cipher_get_ctx_params_fn ac_get_params;
static OSSL_FUNC_asym_cipher_gettable_ctx_params_fn ac_gettable;
static OSSL_FUNC_asym_cipher_set_ctx_params_fn ac_set_params;
static OSSL_FUNC_asym_cipher_settable_ctx_params_fn ac_settable;

static void *ac_newctx(void *provctx)
{
    KH_CIPHER_CTX *ctx = OPENSSL_zalloc(sizeof(*ctx));

    if (ctx == NULL) {
        return NULL;
    }
    ctx->prov = provctx;
    ctx->pad = RSA_PKCS1_PADDING;
    ctx->oaep_nid = NID_sha1;
    ctx->mgf1_nid = NID_undef;
    return ctx;
}

static void ac_freectx(void *vctx)
{
    KH_CIPHER_CTX *ctx = vctx;

    if (ctx == NULL) {
        return;
    }
    kh_key_free(ctx->key);
    OPENSSL_free(ctx->label);
    OPENSSL_free(ctx);
}

static void *ac_dupctx(void *vctx)
{
    KH_CIPHER_CTX *src = vctx, *dst;

    dst = OPENSSL_memdup(src, sizeof(*src));
    if (dst == NULL) {
        return NULL;
    }
    dst->label = NULL;
    if (src->label != NULL) {
        dst->label = OPENSSL_memdup(src->label, src->labellen);
        if (dst->label == NULL) {
            OPENSSL_free(dst);
            return NULL;
        }
    }
    kh_key_up_ref(dst->key);
    return dst;
}

static int ac_init(KH_CIPHER_CTX *ctx, void *vkey, const OSSL_PARAM params[],
                   int op)
{
    KH_KEY *key = vkey;

    if (key == NULL || !kh_key_has_pub(key) || key->type != EVP_PKEY_RSA) {
        KH_raise(ctx->prov, KH_R_BAD_PARAM, "not an RSA key");
        return 0;
    }
    if (op == EVP_PKEY_OP_DECRYPT
        && (key->ops == NULL || key->ops->decrypt == NULL
            || !(key->flags & KH_KEY_CAN_DECRYPT))) {
        KH_raise(ctx->prov, KH_R_NOT_PERMITTED,
                 "key %s is not allowed to decrypt (sign-only key; "
                 "CKA_DECRYPT false)", key->uri != NULL ? key->uri : "");
        return 0;
    }
    kh_key_up_ref(key);
    kh_key_free(ctx->key);
    ctx->key = key;
    ctx->op = op;
    return ac_set_params(ctx, params);
}

static int ac_encrypt_init(void *vctx, void *vkey, const OSSL_PARAM params[])
{
    return ac_init(vctx, vkey, params, EVP_PKEY_OP_ENCRYPT);
}

static int ac_decrypt_init(void *vctx, void *vkey, const OSSL_PARAM params[])
{
    return ac_init(vctx, vkey, params, EVP_PKEY_OP_DECRYPT);
}

static int ac_encrypt(void *vctx, unsigned char *out, size_t *outlen,
                      size_t outsize, const unsigned char *in, size_t inlen)
{
    KH_CIPHER_CTX *ctx = vctx;
    EVP_PKEY_CTX *pctx = NULL;
    EVP_PKEY *pub;
    int ok = 0;

    if (ctx->key == NULL || (pub = kh_key_pub(ctx->key)) == NULL) {
        return 0;
    }
    pctx = EVP_PKEY_CTX_new_from_pkey(ctx->prov->libctx, pub, NULL);
    if (pctx == NULL || EVP_PKEY_encrypt_init(pctx) <= 0
        || EVP_PKEY_CTX_set_rsa_padding(pctx, ctx->pad) <= 0) {
        goto end;
    }
    if (ctx->pad == RSA_PKCS1_OAEP_PADDING) {
        const char *md = kh_md_name_from_nid(ctx->oaep_nid);
        const char *mgf = kh_md_name_from_nid(
            ctx->mgf1_nid != NID_undef ? ctx->mgf1_nid : ctx->oaep_nid);
        unsigned char *l = NULL;

        if (EVP_PKEY_CTX_set_rsa_oaep_md_name(pctx, md, NULL) <= 0
            || EVP_PKEY_CTX_set_rsa_mgf1_md_name(pctx, mgf, NULL) <= 0) {
            goto end;
        }
        if (ctx->labellen > 0) {
            l = OPENSSL_memdup(ctx->label, ctx->labellen);
            if (l == NULL || EVP_PKEY_CTX_set0_rsa_oaep_label(
                                 pctx, l, (int)ctx->labellen) <= 0) {
                OPENSSL_free(l);
                goto end;
            }
        }
    }
    if (out == NULL) {
        ok = EVP_PKEY_encrypt(pctx, NULL, outlen, in, inlen) > 0;
    } else {
        *outlen = outsize;
        ok = EVP_PKEY_encrypt(pctx, out, outlen, in, inlen) > 0;
    }
end:
    EVP_PKEY_CTX_free(pctx);
    return ok;
}

static int ac_decrypt(void *vctx, unsigned char *out, size_t *outlen,
                      size_t outsize, const unsigned char *in, size_t inlen)
{
    KH_CIPHER_CTX *ctx = vctx;
    KH_DEC_PARAMS dp;

    if (ctx->key == NULL || ctx->op != EVP_PKEY_OP_DECRYPT) {
        return 0;
    }
    if (out == NULL) {
        *outlen = (size_t)ctx->key->size;
        return 1;
    }
    memset(&dp, 0, sizeof(dp));
    if (ctx->pad == RSA_PKCS1_OAEP_PADDING) {
        dp.scheme = KH_DEC_RSA_OAEP;
        dp.oaep_md_nid = ctx->oaep_nid;
        dp.mgf1_md_nid = ctx->mgf1_nid != NID_undef ? ctx->mgf1_nid
                                                    : ctx->oaep_nid;
        dp.label = ctx->label;
        dp.labellen = ctx->labellen;
    } else {
        dp.scheme = KH_DEC_RSA_PKCS1;
    }
    return ctx->key->ops->decrypt(ctx->key, &dp, out, outlen, outsize, in,
                                  inlen);
}

static int ac_get_params(void *vctx, OSSL_PARAM params[])
{
    KH_CIPHER_CTX *ctx = vctx;
    OSSL_PARAM *p;

    p = OSSL_PARAM_locate(params, OSSL_ASYM_CIPHER_PARAM_PAD_MODE);
    if (p != NULL && !kh_rsa_pad_to_param(p, ctx->pad)) {
        return 0;
    }
    p = OSSL_PARAM_locate(params, OSSL_ASYM_CIPHER_PARAM_OAEP_DIGEST);
    if (p != NULL
        && !OSSL_PARAM_set_utf8_string(p, kh_md_name_from_nid(ctx->oaep_nid))) {
        return 0;
    }
    p = OSSL_PARAM_locate(params, OSSL_ASYM_CIPHER_PARAM_MGF1_DIGEST);
    if (p != NULL
        && !OSSL_PARAM_set_utf8_string(
            p, kh_md_name_from_nid(ctx->mgf1_nid != NID_undef
                                       ? ctx->mgf1_nid : ctx->oaep_nid))) {
        return 0;
    }
    return 1;
}

static const OSSL_PARAM *ac_gettable(void *vctx, void *provctx)
{
    static const OSSL_PARAM tbl[] = {
        OSSL_PARAM_utf8_string(OSSL_ASYM_CIPHER_PARAM_PAD_MODE, NULL, 0),
        OSSL_PARAM_utf8_string(OSSL_ASYM_CIPHER_PARAM_OAEP_DIGEST, NULL, 0),
        OSSL_PARAM_utf8_string(OSSL_ASYM_CIPHER_PARAM_MGF1_DIGEST, NULL, 0),
        OSSL_PARAM_END
    };

    return tbl;
}

static int ac_set_params(void *vctx, const OSSL_PARAM params[])
{
    KH_CIPHER_CTX *ctx = vctx;
    const OSSL_PARAM *p;

    if (params == NULL) {
        return 1;
    }
    p = OSSL_PARAM_locate_const(params, OSSL_ASYM_CIPHER_PARAM_PAD_MODE);
    if (p != NULL) {
        int pad = kh_rsa_pad_from_param(p);

        if (pad != RSA_PKCS1_PADDING && pad != RSA_PKCS1_OAEP_PADDING) {
            KH_raise(ctx->prov, KH_R_UNSUPPORTED,
                     "RSA padding mode not supported (pkcs1 or oaep)");
            return 0;
        }
        ctx->pad = pad;
    }
    p = OSSL_PARAM_locate_const(params, OSSL_ASYM_CIPHER_PARAM_OAEP_DIGEST);
    if (p != NULL) {
        int nid = kh_md_nid_from_param(p);

        if (nid == NID_undef) {
            KH_raise(ctx->prov, KH_R_BAD_PARAM, "unsupported OAEP digest");
            return 0;
        }
        ctx->oaep_nid = nid;
    }
    p = OSSL_PARAM_locate_const(params, OSSL_ASYM_CIPHER_PARAM_MGF1_DIGEST);
    if (p != NULL) {
        int nid = kh_md_nid_from_param(p);

        if (nid == NID_undef) {
            KH_raise(ctx->prov, KH_R_BAD_PARAM, "unsupported MGF1 digest");
            return 0;
        }
        ctx->mgf1_nid = nid;
    }
    p = OSSL_PARAM_locate_const(params, OSSL_ASYM_CIPHER_PARAM_OAEP_LABEL);
    if (p != NULL) {
        void *l = NULL;
        size_t llen = 0;

        if (!OSSL_PARAM_get_octet_string(p, &l, 0, &llen)) {
            return 0;
        }
        OPENSSL_free(ctx->label);
        ctx->label = l;
        ctx->labellen = llen;
    }
    return 1;
}

static const OSSL_PARAM *ac_settable(void *vctx, void *provctx)
{
    static const OSSL_PARAM tbl[] = {
        OSSL_PARAM_utf8_string(OSSL_ASYM_CIPHER_PARAM_PAD_MODE, NULL, 0),
        OSSL_PARAM_utf8_string(OSSL_ASYM_CIPHER_PARAM_OAEP_DIGEST, NULL, 0),
        OSSL_PARAM_utf8_string(OSSL_ASYM_CIPHER_PARAM_OAEP_DIGEST_PROPS,
                               NULL, 0),
        OSSL_PARAM_utf8_string(OSSL_ASYM_CIPHER_PARAM_MGF1_DIGEST, NULL, 0),
        OSSL_PARAM_utf8_string(OSSL_ASYM_CIPHER_PARAM_MGF1_DIGEST_PROPS,
                               NULL, 0),
        OSSL_PARAM_octet_string(OSSL_ASYM_CIPHER_PARAM_OAEP_LABEL, NULL, 0),
        OSSL_PARAM_END
    };

    return tbl;
}

const OSSL_DISPATCH kh_rsa_asym_cipher_functions[] = {
    { OSSL_FUNC_ASYM_CIPHER_NEWCTX, (void (*)(void))ac_newctx },
    { OSSL_FUNC_ASYM_CIPHER_FREECTX, (void (*)(void))ac_freectx },
    { OSSL_FUNC_ASYM_CIPHER_DUPCTX, (void (*)(void))ac_dupctx },
    { OSSL_FUNC_ASYM_CIPHER_ENCRYPT_INIT, (void (*)(void))ac_encrypt_init },
    { OSSL_FUNC_ASYM_CIPHER_ENCRYPT, (void (*)(void))ac_encrypt },
    { OSSL_FUNC_ASYM_CIPHER_DECRYPT_INIT, (void (*)(void))ac_decrypt_init },
    { OSSL_FUNC_ASYM_CIPHER_DECRYPT, (void (*)(void))ac_decrypt },
    { OSSL_FUNC_ASYM_CIPHER_GET_CTX_PARAMS, (void (*)(void))ac_get_params },
    { OSSL_FUNC_ASYM_CIPHER_GETTABLE_CTX_PARAMS, (void (*)(void))ac_gettable },
    { OSSL_FUNC_ASYM_CIPHER_SET_CTX_PARAMS, (void (*)(void))ac_set_params },
    { OSSL_FUNC_ASYM_CIPHER_SETTABLE_CTX_PARAMS, (void (*)(void))ac_settable },
    { 0, NULL }
};
