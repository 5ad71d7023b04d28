/* SPDX-License-Identifier: MIT */
/*
 * The one table of backend operations. The provider's keymgmt, signature,
 * asym-cipher and store code talk to a key only through this table; the
 * pkcs11 backend (engine/p11/) and the TPM backend (engine/tpm/) fill it.
 */
#ifndef KH_ENGINE_BACKEND_H
#define KH_ENGINE_BACKEND_H

#include <stddef.h>
#include <openssl/core.h>
#include <openssl/evp.h>

typedef struct kh_prov_ctx KH_PROV_CTX;
typedef struct kh_key KH_KEY;

enum kh_sig_scheme {
    KH_SIG_ECDSA = 1,     /* output DER ECDSA-Sig-Value */
    KH_SIG_RSA_PKCS1,     /* EMSA-PKCS1-v1_5 over DigestInfo(md, tbs) */
    KH_SIG_RSA_PSS        /* EMSA-PSS, mgf1 and salt length resolved */
};

typedef struct kh_sign_params {
    enum kh_sig_scheme scheme;
    int md_nid;           /* digest that produced tbs (NID_sha256, ...) */
    int mgf1_md_nid;      /* PSS only */
    int saltlen;          /* PSS only: a byte count, already resolved */
} KH_SIGN_PARAMS;

enum kh_dec_scheme {
    KH_DEC_RSA_PKCS1 = 1,
    KH_DEC_RSA_OAEP
};

typedef struct kh_dec_params {
    enum kh_dec_scheme scheme;
    int oaep_md_nid;
    int mgf1_md_nid;
    const unsigned char *label;
    size_t labellen;
} KH_DEC_PARAMS;

struct kh_backend_ops {
    const char *name;     /* "pkcs11", "tpm2": used in errors and status */
    /*
     * Signs |tbs| (a digest computed in software by the caller). |sig| has
     * room for |sigsize| bytes; *siglen gets the length. 1 ok, 0 error
     * raised on the OpenSSL error queue with the backend's code named.
     */
    int (*sign)(KH_KEY *key, const KH_SIGN_PARAMS *p, unsigned char *sig,
                size_t *siglen, size_t sigsize, const unsigned char *tbs,
                size_t tbslen);
    /* RSA decryption inside the backend; NULL when unsupported. */
    int (*decrypt)(KH_KEY *key, const KH_DEC_PARAMS *p, unsigned char *out,
                   size_t *outlen, size_t outsize, const unsigned char *in,
                   size_t inlen);
    /* Frees the backend's per-key state (bkey). Accepts NULL. */
    void (*key_free)(void *bkey);
    /* Returns a new reference to bkey (keys are shared by dup). */
    void *(*key_up_ref)(void *bkey);
};

#define KH_KEY_CAN_SIGN    0x1
#define KH_KEY_CAN_DECRYPT 0x2
#define KH_KEY_SOFTWARE    0x4  /* ops == NULL, pub holds a software key
                                   pair (see keymgmt.c: key generation) */

/*
 * A key as the provider's keymgmt holds it. A key with ops == NULL is a
 * public-only key (imported, or loaded as a public object) and can only be
 * compared, exported and used to verify.
 */
struct kh_key {
    KH_PROV_CTX *prov;
    int refs;                        /* atomic (__atomic builtins) */
    const struct kh_backend_ops *ops;
    void *bkey;                      /* backend state, opaque here */
    EVP_PKEY *pub;                   /* public half, in the provider's own
                                        libctx (default provider); for a
                                        key made by kh_key_new_raw NULL
                                        until kh_key_pub() builds it */
    int type;                        /* EVP_PKEY_RSA or EVP_PKEY_EC */
    int bits;
    int secbits;                     /* security bits */
    int size;                        /* largest signature, bytes */
    unsigned int flags;              /* KH_KEY_CAN_* */
    char *uri;                       /* reference to write in a key file
                                        (never holds a PIN) */
    /* raw public material (kh_key_new_raw): RSA n, e / EC group, point */
    const char *group;               /* EC group name (static string) */
    unsigned char *raw;              /* a || b, one allocation */
    size_t alen, blen;               /* RSA: n, e; EC: point, 0 */
};

/* Creates a key around a backend handle; takes ownership of bkey and pub. */
KH_KEY *kh_key_new(KH_PROV_CTX *prov, const struct kh_backend_ops *ops,
                   void *bkey, EVP_PKEY *pub, unsigned int flags,
                   const char *uri);

/*
 * The public half as the token holds it: RSA modulus and exponent
 * (big-endian), or an EC group name and the uncompressed point. A key made
 * from it answers what libssl and libcrypto ask at load and per handshake
 * (bits, security bits, size, group, encoded point, n, e) from these bytes;
 * the EVP_PKEY is built only when something needs it (kh_key_pub).
 */
typedef struct kh_pub_raw {
    int type;                        /* EVP_PKEY_RSA or EVP_PKEY_EC */
    const char *group;               /* EC: OpenSSL's short name */
    const unsigned char *a;          /* RSA n / EC point */
    size_t alen;
    const unsigned char *b;          /* RSA e */
    size_t blen;
} KH_PUB_RAW;

/* Like kh_key_new; copies |raw|. NULL (bkey freed) on bad material. */
KH_KEY *kh_key_new_raw(KH_PROV_CTX *prov, const struct kh_backend_ops *ops,
                       void *bkey, const KH_PUB_RAW *raw, unsigned int flags,
                       const char *uri);
/* Gives an empty key (no pub, no raw) raw material; 0 when the material
 * is not kept raw (then build an EVP_PKEY instead). */
int kh_key_set_raw(KH_KEY *key, const KH_PUB_RAW *raw);
/* Forgets the raw material once key->pub is built and about to change. */
void kh_key_drop_raw(KH_KEY *key);
/* An EVP_PKEY in the provider's library context from raw material. */
EVP_PKEY *kh_pub_raw_pkey(KH_PROV_CTX *prov, const KH_PUB_RAW *raw);
/* The public half, built on first use; NULL when it cannot be built. */
EVP_PKEY *kh_key_pub(KH_KEY *key);
/* Whether the key has a public half at all (built or not yet). */
int kh_key_has_pub(const KH_KEY *key);
KH_KEY *kh_key_up_ref(KH_KEY *key);
void kh_key_free(KH_KEY *key);

#endif
