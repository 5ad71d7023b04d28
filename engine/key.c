/* SPDX-License-Identifier: MIT */
/*
 * The provider's key object: a backend handle (absent for public-only keys)
 * plus the public half as an EVP_PKEY in the provider's own library context,
 * built from the token's raw public material only when something needs it.
 * Keys are immutable once built and shared by reference (dup = up_ref).
 * Also the helpers sig.c and cipher.c share: digest names, sizes and the
 * lazily filled digest cache, RSA padding mode parameters.
 */
#include <string.h>
#include <strings.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <openssl/objects.h>
#include <openssl/param_build.h>
#include <openssl/params.h>
#include <openssl/rsa.h>

#include "keyhold.h"

KH_KEY *kh_key_new(KH_PROV_CTX *prov, const struct kh_backend_ops *ops,
                   void *bkey, EVP_PKEY *pub, unsigned int flags,
                   const char *uri)
{
    KH_KEY *key = OPENSSL_zalloc(sizeof(*key));

    if (key == NULL) {
        goto err;
    }
    if (uri != NULL && (key->uri = OPENSSL_strdup(uri)) == NULL) {
        goto err;
    }
    key->prov = prov;
    key->refs = 1;
    key->ops = ops;
    key->bkey = bkey;
    key->pub = pub;
    key->flags = flags;
    if (pub != NULL) {
        key->type = EVP_PKEY_is_a(pub, "RSA") ? EVP_PKEY_RSA : EVP_PKEY_EC;
        key->bits = EVP_PKEY_get_bits(pub);
        key->secbits = EVP_PKEY_get_security_bits(pub);
        key->size = EVP_PKEY_get_size(pub);
    }
    return key;
err:
    if (key != NULL) {
        OPENSSL_free(key->uri);
        OPENSSL_free(key);
    }
    if (ops != NULL && ops->key_free != NULL) {
        ops->key_free(bkey);
    }
    EVP_PKEY_free(pub);
    return NULL;
}

KH_KEY *kh_key_up_ref(KH_KEY *key)
{
    if (key != NULL) {
        __atomic_add_fetch(&key->refs, 1, __ATOMIC_RELAXED);
    }
    return key;
}

void kh_key_free(KH_KEY *key)
{
    if (key == NULL) {
        return;
    }
    if (__atomic_sub_fetch(&key->refs, 1, __ATOMIC_ACQ_REL) > 0) {
        return;
    }
    if (key->ops != NULL && key->ops->key_free != NULL) {
        key->ops->key_free(key->bkey);
    }
    EVP_PKEY_free(key->pub);
    OPENSSL_free(key->raw);
    OPENSSL_free(key->uri);
    OPENSSL_free(key);
}

/*
 * Curves a token key may be on, with what OpenSSL reports for them:
 * order bits, security bits, largest DER ECDSA signature, field bytes.
 */
static const struct kh_curve {
    const char *name;
    int bits, secbits, size, fbytes;
} kh_curves[] = {
    { "prime256v1", 256, 128, 72, 32 },
    { "secp384r1", 384, 192, 104, 48 },
    { "secp521r1", 521, 256, 139, 66 },
    { "secp256k1", 256, 128, 72, 32 },
    { "secp224r1", 224, 112, 64, 28 },
    { "brainpoolP256r1", 256, 128, 72, 32 },
    { "brainpoolP384r1", 384, 192, 104, 48 },
    { "brainpoolP512r1", 512, 256, 137, 64 },
};

/*
 * RSA security bits as OpenSSL 3 reports them for the modulus sizes keys
 * are made with (SP 800-56B rev 2 appendix D, FIPS 140-2 IG 7.5); 0 for
 * other sizes, whose key gets its EVP_PKEY at once so OpenSSL computes it.
 */
static int rsa_secbits(int bits)
{
    switch (bits) {
    case 2048:
        return 112;
    case 3072:
        return 128;
    case 4096:
        return 152;
    case 6144:
        return 176;
    case 7680:
        return 192;
    case 8192:
        return 200;
    default:
        return 0;
    }
}

/* 1: material kept (answers from bytes); 0: not such material. */
static int raw_fit(const KH_PUB_RAW *raw, const struct kh_curve **curve,
                   size_t *skip, int *bits)
{
    size_t i;

    *curve = NULL;
    *skip = 0;
    *bits = 0;
    if (raw->type == EVP_PKEY_EC) {
        for (i = 0; raw->group != NULL
                    && i < sizeof(kh_curves) / sizeof(kh_curves[0]); i++) {
            if (strcmp(raw->group, kh_curves[i].name) == 0) {
                *curve = &kh_curves[i];
                break;
            }
        }
        /* Uncompressed points only: what OpenSSL hands out as encoded. */
        return *curve != NULL && raw->alen == 1 + 2 * (size_t)(*curve)->fbytes
               && raw->a[0] == 0x04;
    }
    if (raw->type != EVP_PKEY_RSA) {
        return 0;
    }
    while (*skip < raw->alen && raw->a[*skip] == 0) {
        (*skip)++;
    }
    if (*skip == raw->alen || raw->blen == 0 || raw->blen > 64
        || raw->alen - *skip > 2048) {
        return 0;
    }
    *bits = (int)(raw->alen - *skip - 1) * 8;
    for (i = raw->a[*skip]; i != 0; i >>= 1) {
        (*bits)++;
    }
    /* Security bits are OpenSSL's canonical values for these sizes only */
    return rsa_secbits(*bits) > 0;
}

int kh_key_set_raw(KH_KEY *key, const KH_PUB_RAW *raw)
{
    const struct kh_curve *c;
    size_t skip;
    int bits;

    if (key->pub != NULL || key->raw != NULL
        || !raw_fit(raw, &c, &skip, &bits)) {
        return 0;
    }
    key->raw = OPENSSL_malloc(raw->alen - skip + raw->blen);
    if (key->raw == NULL) {
        return 0;
    }
    memcpy(key->raw, raw->a + skip, raw->alen - skip);
    if (raw->blen > 0) {
        memcpy(key->raw + raw->alen - skip, raw->b, raw->blen);
    }
    key->type = raw->type;
    key->alen = raw->alen - skip;
    key->blen = raw->blen;
    if (c != NULL) {
        key->group = c->name;
        key->bits = c->bits;
        key->secbits = c->secbits;
        key->size = c->size;
    } else {
        key->bits = bits;
        key->secbits = rsa_secbits(bits);
        key->size = (bits + 7) / 8;
    }
    return 1;
}

void kh_key_drop_raw(KH_KEY *key)
{
    OPENSSL_free(key->raw);
    key->raw = NULL;
    key->group = NULL;
    key->alen = key->blen = 0;
}

KH_KEY *kh_key_new_raw(KH_PROV_CTX *prov, const struct kh_backend_ops *ops,
                       void *bkey, const KH_PUB_RAW *raw, unsigned int flags,
                       const char *uri)
{
    const struct kh_curve *c;
    KH_KEY *key;
    EVP_PKEY *pub;
    size_t skip;
    int bits;

    if (!raw_fit(raw, &c, &skip, &bits)) {
        /*
         * A compressed point, a curve not in the table: the EVP_PKEY is
         * built now, so OpenSSL answers for it.
         */
        pub = kh_pub_raw_pkey(prov, raw);
        if (pub == NULL) {
            if (ops != NULL && ops->key_free != NULL) {
                ops->key_free(bkey);
            }
            return NULL;
        }
        return kh_key_new(prov, ops, bkey, pub, flags, uri);
    }
    key = kh_key_new(prov, ops, bkey, NULL, flags, uri);
    if (key != NULL && !kh_key_set_raw(key, raw)) {
        kh_key_free(key);
        return NULL;
    }
    return key;
}

int kh_key_has_pub(const KH_KEY *key)
{
    return key->pub != NULL || key->raw != NULL;
}

EVP_PKEY *kh_pub_raw_pkey(KH_PROV_CTX *prov, const KH_PUB_RAW *raw)
{
    OSSL_PARAM_BLD *bld = NULL;
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    EVP_PKEY *pk = NULL;
    BIGNUM *n = NULL, *e = NULL;
    int ok;

    bld = OSSL_PARAM_BLD_new();
    if (bld == NULL) {
        goto end;
    }
    if (raw->type == EVP_PKEY_RSA) {
        n = BN_bin2bn(raw->a, (int)raw->alen, NULL);
        e = BN_bin2bn(raw->b, (int)raw->blen, NULL);
        ok = n != NULL && e != NULL
             && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n)
             && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e);
    } else {
        ok = raw->group != NULL
             && OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME,
                                                raw->group, 0)
             && OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY,
                                                 raw->a, raw->alen);
    }
    if (!ok || (params = OSSL_PARAM_BLD_to_param(bld)) == NULL) {
        goto end;
    }
    ctx = EVP_PKEY_CTX_new_from_name(prov->libctx,
                                     raw->type == EVP_PKEY_RSA ? "RSA" : "EC",
                                     NULL);
    if (ctx == NULL || EVP_PKEY_fromdata_init(ctx) <= 0
        || EVP_PKEY_fromdata(ctx, &pk, EVP_PKEY_PUBLIC_KEY, params) <= 0) {
        pk = NULL;
    }
end:
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_free(n);
    BN_free(e);
    return pk;
}

EVP_PKEY *kh_key_pub(KH_KEY *key)
{
    EVP_PKEY *pk = __atomic_load_n(&key->pub, __ATOMIC_ACQUIRE);
    EVP_PKEY *expected = NULL;

    if (pk != NULL || key->raw == NULL) {
        return pk;
    }
    {
        KH_PUB_RAW raw = { key->type, key->group, key->raw, key->alen,
                           key->raw + key->alen, key->blen };

        pk = kh_pub_raw_pkey(key->prov, &raw);
    }
    if (pk == NULL) {
        KH_raise(key->prov, KH_R_PUBLIC_KEY,
                 "the token's public key could not be built");
        return NULL;
    }
    /* Two threads may build it at once: the first one stored wins. */
    if (!__atomic_compare_exchange_n(&key->pub, &expected, pk, 0,
                                     __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
        EVP_PKEY_free(pk);
        return expected;
    }
    return pk;
}

/*
 * Public parameters straight from the raw material, for a key whose
 * EVP_PKEY is not built: what evp_keymgmt_util_cache_keyinfo() and libssl
 * ask for. Returns -1 when |params| asks for anything else (the caller
 * then builds the EVP_PKEY and asks it), else 1 or 0.
 */
int kh_key_get_params_raw(const KH_KEY *key, OSSL_PARAM params[])
{
    OSSL_PARAM *p;
    BIGNUM *bn;
    int ok;

    for (p = params; p->key != NULL; p++) {
        if (strcmp(p->key, OSSL_PKEY_PARAM_BITS) == 0) {
            ok = OSSL_PARAM_set_int(p, key->bits);
        } else if (strcmp(p->key, OSSL_PKEY_PARAM_SECURITY_BITS) == 0) {
            ok = OSSL_PARAM_set_int(p, key->secbits);
        } else if (strcmp(p->key, OSSL_PKEY_PARAM_MAX_SIZE) == 0) {
            ok = OSSL_PARAM_set_int(p, key->size);
        } else if (strcmp(p->key, OSSL_PKEY_PARAM_DEFAULT_DIGEST) == 0) {
            ok = OSSL_PARAM_set_utf8_string(p, "SHA256");
        } else if (key->type == EVP_PKEY_EC
                   && strcmp(p->key, OSSL_PKEY_PARAM_GROUP_NAME) == 0) {
            ok = OSSL_PARAM_set_utf8_string(p, key->group);
        } else if (key->type == EVP_PKEY_EC
                   && (strcmp(p->key, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY) == 0
                       || strcmp(p->key, OSSL_PKEY_PARAM_PUB_KEY) == 0)) {
            ok = OSSL_PARAM_set_octet_string(p, key->raw, key->alen);
        } else if (key->type == EVP_PKEY_EC
                   && strcmp(p->key,
                             OSSL_PKEY_PARAM_EC_POINT_CONVERSION_FORMAT) == 0) {
            ok = OSSL_PARAM_set_utf8_string(
                p, OSSL_PKEY_EC_POINT_CONVERSION_FORMAT_UNCOMPRESSED);
        } else if (key->type == EVP_PKEY_EC
                   && strcmp(p->key, OSSL_PKEY_PARAM_EC_ENCODING) == 0) {
            ok = OSSL_PARAM_set_utf8_string(p,
                                            OSSL_PKEY_EC_ENCODING_GROUP);
        } else if (key->type == EVP_PKEY_RSA
                   && (strcmp(p->key, OSSL_PKEY_PARAM_RSA_N) == 0
                       || strcmp(p->key, OSSL_PKEY_PARAM_RSA_E) == 0)) {
            int is_n = strcmp(p->key, OSSL_PKEY_PARAM_RSA_N) == 0;

            bn = is_n ? BN_bin2bn(key->raw, (int)key->alen, NULL)
                      : BN_bin2bn(key->raw + key->alen, (int)key->blen, NULL);
            ok = bn != NULL && OSSL_PARAM_set_BN(p, bn);
            BN_free(bn);
        } else {
            return -1;
        }
        if (!ok) {
            return 0;
        }
    }
    return 1;
}

const char *kh_key_type_name(const KH_KEY *key)
{
    return key->type == EVP_PKEY_RSA ? "RSA" : "EC";
}

int kh_md_nid_from_name(const char *name)
{
    static const struct {
        const char *name;
        int nid;
    } tbl[] = {
        { "SHA1", NID_sha1 }, { "SHA-1", NID_sha1 },
        { "SHA224", NID_sha224 }, { "SHA2-224", NID_sha224 },
        { "SHA-224", NID_sha224 },
        { "SHA256", NID_sha256 }, { "SHA2-256", NID_sha256 },
        { "SHA-256", NID_sha256 },
        { "SHA384", NID_sha384 }, { "SHA2-384", NID_sha384 },
        { "SHA-384", NID_sha384 },
        { "SHA512", NID_sha512 }, { "SHA2-512", NID_sha512 },
        { "SHA-512", NID_sha512 },
        { "SHA3-256", NID_sha3_256 }, { "SHA3-384", NID_sha3_384 },
        { "SHA3-512", NID_sha3_512 },
    };
    size_t i;

    if (name == NULL) {
        return NID_undef;
    }
    for (i = 0; i < sizeof(tbl) / sizeof(tbl[0]); i++) {
        if (strcasecmp(name, tbl[i].name) == 0) {
            return tbl[i].nid;
        }
    }
    /* OIDs and other aliases */
    {
        int nid = OBJ_txt2nid(name);

        for (i = 0; i < sizeof(tbl) / sizeof(tbl[0]); i++) {
            if (tbl[i].nid == nid) {
                return nid;
            }
        }
    }
    return NID_undef;
}

const char *kh_md_name_from_nid(int nid)
{
    switch (nid) {
    case NID_sha1:
        return "SHA1";
    case NID_sha224:
        return "SHA2-224";
    case NID_sha256:
        return "SHA2-256";
    case NID_sha384:
        return "SHA2-384";
    case NID_sha512:
        return "SHA2-512";
    case NID_sha3_256:
        return "SHA3-256";
    case NID_sha3_384:
        return "SHA3-384";
    case NID_sha3_512:
        return "SHA3-512";
    default:
        return NULL;
    }
}

static const int md_cache_nids[KH_MD_CACHE] = {
    NID_sha1, NID_sha224, NID_sha256, NID_sha384, NID_sha512,
    NID_sha3_256, NID_sha3_384, NID_sha3_512
};

int kh_md_size(int nid)
{
    switch (nid) {
    case NID_sha1:
        return 20;
    case NID_sha224:
        return 28;
    case NID_sha256:
    case NID_sha3_256:
        return 32;
    case NID_sha384:
    case NID_sha3_384:
        return 48;
    case NID_sha512:
    case NID_sha3_512:
        return 64;
    default:
        return 0;
    }
}

void kh_md_cache_free(KH_PROV_CTX *prov)
{
    int i;

    for (i = 0; i < KH_MD_CACHE; i++) {
        EVP_MD_free(prov->md_cache[i]);
        prov->md_cache[i] = NULL;
    }
}

/*
 * Nothing is fetched at load: the first fetch in the provider's own
 * library context builds every digest there (millions of instructions),
 * which a server whose signatures never need an EVP_MD should not pay at
 * start-up. Each digest is fetched on first use and kept.
 */
EVP_MD *kh_md_get(KH_PROV_CTX *prov, int nid)
{
    EVP_MD *md, *expected = NULL;
    int i;

    for (i = 0; i < KH_MD_CACHE; i++) {
        if (md_cache_nids[i] == nid) {
            break;
        }
    }
    if (i == KH_MD_CACHE) {
        return EVP_MD_fetch(prov->libctx, kh_md_name_from_nid(nid), NULL);
    }
    md = __atomic_load_n(&prov->md_cache[i], __ATOMIC_ACQUIRE);
    if (md == NULL) {
        md = EVP_MD_fetch(prov->libctx, kh_md_name_from_nid(nid), NULL);
        if (md == NULL) {
            return NULL;
        }
        if (!__atomic_compare_exchange_n(&prov->md_cache[i], &expected, md,
                                         0, __ATOMIC_ACQ_REL,
                                         __ATOMIC_ACQUIRE)) {
            EVP_MD_free(md);
            md = expected;
        }
    }
    return EVP_MD_up_ref(md) ? md : NULL;
}

int kh_md_nid_from_param(const OSSL_PARAM *p)
{
    const char *name = NULL;

    if (!OSSL_PARAM_get_utf8_string_ptr(p, &name)) {
        return NID_undef;
    }
    return kh_md_nid_from_name(name);
}

static const struct {
    int pad;
    const char *name;
} rsa_pads[] = {
    { RSA_NO_PADDING, OSSL_PKEY_RSA_PAD_MODE_NONE },
    { RSA_PKCS1_PADDING, OSSL_PKEY_RSA_PAD_MODE_PKCSV15 },
    { RSA_PKCS1_OAEP_PADDING, OSSL_PKEY_RSA_PAD_MODE_OAEP },
    { RSA_X931_PADDING, OSSL_PKEY_RSA_PAD_MODE_X931 },
    { RSA_PKCS1_PSS_PADDING, OSSL_PKEY_RSA_PAD_MODE_PSS },
};

int kh_rsa_pad_from_param(const OSSL_PARAM *p)
{
    size_t i;
    int pad;

    if (p->data_type == OSSL_PARAM_INTEGER) {
        return OSSL_PARAM_get_int(p, &pad) ? pad : -1;
    }
    if (p->data_type == OSSL_PARAM_UTF8_STRING && p->data != NULL) {
        for (i = 0; i < sizeof(rsa_pads) / sizeof(rsa_pads[0]); i++) {
            if (strcmp(p->data, rsa_pads[i].name) == 0) {
                return rsa_pads[i].pad;
            }
        }
    }
    return -1;
}

int kh_rsa_pad_to_param(OSSL_PARAM *p, int pad)
{
    size_t i;

    if (p->data_type == OSSL_PARAM_INTEGER) {
        return OSSL_PARAM_set_int(p, pad);
    }
    for (i = 0; i < sizeof(rsa_pads) / sizeof(rsa_pads[0]); i++) {
        if (rsa_pads[i].pad == pad) {
            return OSSL_PARAM_set_utf8_string(p, rsa_pads[i].name);
        }
    }
    return 0;
}
