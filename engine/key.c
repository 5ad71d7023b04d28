/* SPDX-License-Identifier: MIT */
/*
 * The provider's key object: a backend handle (absent for public-only keys)
 * plus the public half as an EVP_PKEY in the provider's own library context.
 * Keys are immutable once built and shared by reference (dup = up_ref).
 */
#include <string.h>
#include <strings.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <openssl/objects.h>

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
    OPENSSL_free(key->uri);
    OPENSSL_free(key);
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

/* Fetching is costly next to a signature; each digest is fetched once. */
void kh_md_cache_fill(KH_PROV_CTX *prov)
{
    int i;

    for (i = 0; i < KH_MD_CACHE; i++) {
        prov->md_cache[i] = EVP_MD_fetch(prov->libctx,
                                         kh_md_name_from_nid(md_cache_nids[i]),
                                         NULL);
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

EVP_MD *kh_md_get(KH_PROV_CTX *prov, int nid)
{
    int i;

    for (i = 0; i < KH_MD_CACHE; i++) {
        if (md_cache_nids[i] == nid && prov->md_cache[i] != NULL) {
            return EVP_MD_up_ref(prov->md_cache[i]) ? prov->md_cache[i] : NULL;
        }
    }
    return EVP_MD_fetch(prov->libctx, kh_md_name_from_nid(nid), NULL);
}
