/* SPDX-License-Identifier: MIT */
/*
 * The provider context, error reasons, debug traces and the dispatch tables
 * each operation file exports. Everything in engine/ includes this.
 */
#ifndef KH_ENGINE_KEYHOLD_H
#define KH_ENGINE_KEYHOLD_H

#include <stdarg.h>
#include <stddef.h>

#include <openssl/core.h>
#include <openssl/core_dispatch.h>
#include <openssl/crypto.h>

#include "backend.h"

#define KH_PROV_NAME "keyhold"
#define KH_PROPS "provider=keyhold"
/* Signature names only keyhold registers: what its keymgmt asks for. */
#define KH_SIG_NAME_ECDSA "KEYHOLD-ECDSA"
#define KH_SIG_NAME_RSA "KEYHOLD-RSA"

/* Reason codes (get_reason_strings gives their text). */
#define KH_R_INTERNAL          1
#define KH_R_MALLOC            2
#define KH_R_BAD_URI           3
#define KH_R_MODULE            4
#define KH_R_NO_TOKEN          5
#define KH_R_AMBIGUOUS         6
#define KH_R_NO_OBJECT         7
#define KH_R_LOGIN             8
#define KH_R_PIN_LOCKED        9
#define KH_R_PIN_FINAL_TRY    10
#define KH_R_NO_PIN           11
#define KH_R_SIGN             12
#define KH_R_DECRYPT          13
#define KH_R_NOT_PERMITTED    14
#define KH_R_UNSUPPORTED      15
#define KH_R_BAD_PARAM        16
#define KH_R_TOKEN_GONE       17
#define KH_R_SESSION          18
#define KH_R_NO_PRIVATE_EXPORT 19
#define KH_R_KEY_REFERENCE    20
#define KH_R_PUBLIC_KEY       21
#define KH_R_BUFFER           22

struct kh_prov_ctx {
    const OSSL_CORE_HANDLE *handle;
    OSSL_LIB_CTX *libctx;          /* own library context (core BIOs) */
    OSSL_LIB_CTX *app_libctx;      /* the application's (never fetched
                                      from; see provider.c); NULL is the
                                      default context */
    OSSL_PROVIDER *deflt;          /* default provider inside libctx */
    OSSL_FUNC_core_new_error_fn *core_new_error;
    OSSL_FUNC_core_set_error_debug_fn *core_set_error_debug;
    OSSL_FUNC_core_vset_error_fn *core_vset_error;
    /* configuration captured at load (openssl.cnf provider section) */
    char *module_path;             /* pkcs11-module-path */
    char *pin_source;              /* pin-source */
    char *tpm2_tcti;               /* tpm2-tcti */
    char *cfg_pin;                 /* PIN read from pin-source at load
                                      (secure heap), for workers that may
                                      no longer read the file */
    size_t cfg_pinlen;
    int debug;
    int p11_registered;
    int queried;                   /* first query seen (provider.c) */
    int store_key_files;           /* store-key-files (provider.c) */
    int key_files;                 /* key-files: 0 hides the keymgmt until
                                      first use, no decoders (provider.c) */
    int keymgmt_on;                /* key-files = no: keymgmt offered
                                      (set once, atomically) */
    OSSL_ALGORITHM store_algs[3];
    /* key-files = no: the stores' tables with an open that turns the
       keymgmt on (provider.c) */
#define KH_STORE_DISPATCH_MAX 16
    OSSL_DISPATCH p11_store_lazy[KH_STORE_DISPATCH_MAX];
    OSSL_DISPATCH tpm_store_lazy[KH_STORE_DISPATCH_MAX];
    OSSL_ALGORITHM decoder_algs[4];
    /* digests fetched once from libctx (sig.c): SHA-1, SHA-2, SHA-3 */
#define KH_MD_CACHE 8
    EVP_MD *md_cache[KH_MD_CACHE];
};

/* Errors: raised once, where found; the text never holds a PIN. */
void kh_raise(KH_PROV_CTX *prov, const char *file, int line,
              const char *func, int reason, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
#define KH_raise(prov, reason, ...) \
    kh_raise((prov), OPENSSL_FILE, OPENSSL_LINE, OPENSSL_FUNC, (reason), \
             __VA_ARGS__)

/* Traces to stderr when KEYHOLD_DEBUG is set or debug=1 in the config. */
extern int kh_debug_on;
void kh_debug_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
#define KH_debug(...) \
    do { \
        if (kh_debug_on) { \
            kh_debug_printf(__VA_ARGS__); \
        } \
    } while (0)

/* Key object reference passed from the store/decoder to keymgmt load. */
#define KH_KEYREF_MAGIC 0x4b484b52u /* "KHKR" */
typedef struct kh_obj_ref {
    unsigned int magic;
    KH_KEY *key;
} KH_OBJ_REF;

/* Dispatch tables (one per implementation). */
extern const OSSL_DISPATCH kh_rsa_keymgmt_functions[];
extern const OSSL_DISPATCH kh_ec_keymgmt_functions[];
extern const OSSL_DISPATCH kh_rsa_signature_functions[];
extern const OSSL_DISPATCH kh_ecdsa_signature_functions[];
extern const OSSL_DISPATCH kh_rsa_asym_cipher_functions[];
extern const OSSL_DISPATCH kh_p11_store_functions[];
extern const OSSL_DISPATCH kh_keyfile_decoder_functions[];
extern const OSSL_DISPATCH kh_keyfile_pem_decoder_functions[];
extern const OSSL_DISPATCH kh_rsa_text_encoder_functions[];
extern const OSSL_DISPATCH kh_ec_text_encoder_functions[];

/*
 * The TPM backend, in the module keyhold-tpm.so that tpm_load.c loads on
 * first use: a store for "tpm2:" URIs, the resolver for tpm2: URIs in key
 * references, and the key maker for TSS2 PRIVATE KEY files (DER). Each
 * raises an error naming the module file when it cannot be loaded.
 */
extern const OSSL_DISPATCH kh_tpm_store_functions[];
int kh_tpm_resolve(KH_PROV_CTX *prov, const char *uri,
                   OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_cbarg,
                   KH_KEY **key);
/* |type| 0: any; else *key NULL with 1 when the file holds the other type */
int kh_tpm_decode(KH_PROV_CTX *prov, const unsigned char *der, size_t derlen,
                  int type, OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_cbarg,
                  KH_KEY **key);
/* 1 when |der| is a well-formed TSS2 PRIVATE KEY, else 0 (error raised) */
int kh_tpm_check(KH_PROV_CTX *prov, const unsigned char *der, size_t derlen);
/* At provider load, with the config's tpm2-tcti (or NULL): no module load. */
void kh_tpm_init(KH_PROV_CTX *prov, const char *tcti);
void kh_tpm_teardown(KH_PROV_CTX *prov);

/*
 * The pkcs11 resolver: a URI naming exactly one private key -> a key with
 * backend ops (login done). Used by the key reference decoder.
 */
int kh_p11_resolve(KH_PROV_CTX *prov, const char *uri,
                   OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_cbarg,
                   KH_KEY **key);
void kh_p11_init_prov(KH_PROV_CTX *prov);
void kh_p11_teardown(KH_PROV_CTX *prov);

/* key.c helpers */
const char *kh_key_type_name(const KH_KEY *key);   /* "RSA" or "EC" */
int kh_key_get_params_pub(const KH_KEY *key, OSSL_PARAM params[]);
/* Parameters from a key's raw public material; -1: ask the EVP_PKEY. */
int kh_key_get_params_raw(const KH_KEY *key, OSSL_PARAM params[]);

/* Helpers shared by sig.c and cipher.c */
int kh_md_nid_from_name(const char *name);
int kh_md_nid_from_param(const OSSL_PARAM *p);     /* NID_undef: bad */
const char *kh_md_name_from_nid(int nid);
int kh_md_size(int nid);                           /* 0: unknown */
/* A new reference to the digest for |nid|, fetched once, on first use. */
EVP_MD *kh_md_get(KH_PROV_CTX *prov, int nid);
void kh_md_cache_free(KH_PROV_CTX *prov);
/* RSA padding mode parameter, integer or name: RSA_*_PADDING, -1 bad. */
int kh_rsa_pad_from_param(const OSSL_PARAM *p);
int kh_rsa_pad_to_param(OSSL_PARAM *p, int pad);

#endif
