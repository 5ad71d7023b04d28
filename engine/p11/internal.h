/* SPDX-License-Identifier: MIT */
/*
 * Private state of the pkcs11 backend: loaded modules, the tokens found in
 * them (each with a session pool and its login), and per-key handles.
 *
 * Modules and tokens are process-wide (a module is initialised once per
 * process, and login state belongs to the process), shared by every
 * provider instance, and survive fork: a generation counter bumped in the
 * pthread_atfork child handler makes the first use in a child initialise
 * the module again, forget the parent's sessions and log in again with the
 * PIN kept from the first login.
 */
#ifndef KH_ENGINE_P11_INTERNAL_H
#define KH_ENGINE_P11_INTERNAL_H

#include <pthread.h>
#include <p11-kit/pkcs11.h>

#include "keyhold.h"
#include "kh_p11lock.h"
#include "kh_pin.h"
#include "kh_uri.h"

typedef struct kh_p11_module KH_P11_MODULE;
typedef struct kh_p11_token KH_P11_TOKEN;
typedef struct kh_p11_key KH_P11_KEY;

struct kh_p11_module {
    KH_P11_MODULE *next;
    char *path;
    void *dlh;
    CK_FUNCTION_LIST_PTR fl;
    int refs;                 /* provider instances using it (registry lock) */
    int we_initialized;       /* we called C_Initialize successfully */
    unsigned int gen;         /* fork generation of the last C_Initialize */
    pthread_mutex_t lock;
    KH_P11_TOKEN *tokens;
    char *softhsm_conf;       /* SOFTHSM2_CONF seen at load (see p11.c) */
    int opened;               /* sessions opened since C_Initialize */
    char *lockdir;            /* SoftHSM's token directory, or NULL (no
                                 token-file lock: kh_p11lock.h); set once */
    int lock_checked;         /* C_GetInfo looked at for it (module lock) */
};

struct kh_p11_token {
    KH_P11_TOKEN *next;
    KH_P11_MODULE *mod;
    CK_SLOT_ID slot;
    int present;              /* 0 after DEVICE_REMOVED/TOKEN_NOT_PRESENT */
    char label[33], manufacturer[33], model[17], serial[17];
    CK_FLAGS flags;           /* CK_TOKEN_INFO.flags at discovery */
    pthread_mutex_t lock;     /* pool, login, generation; never held
                                 across C_Sign */
    unsigned int gen;
    CK_SESSION_HANDLE *pool;  /* idle sessions */
    size_t npool, cappool;
    CK_SESSION_HANDLE login_session; /* keeps the login alive */
    int logged_in;
    char *pin;                /* secure heap, KH_PIN_MAX + 1, or NULL */
    size_t pinlen;
    CK_RV last_open_rv;       /* last C_OpenSession failure */
    unsigned char bad_pin[32]; /* salted hash of a PIN the token refused */
    unsigned char pin_salt[16];
    int has_bad_pin;
};

struct kh_p11_key {
    int refs;
    KH_PROV_CTX *prov;
    KH_P11_TOKEN *tok;
    CK_KEY_TYPE ktype;        /* CKK_RSA or CKK_EC */
    unsigned char id[64];
    size_t idlen;
    char label[128];
    int has_label;
    CK_OBJECT_HANDLE handle;  /* cached; valid while hgen == tok gen */
    unsigned int hgen;
    size_t sigsize;           /* RSA: modulus bytes; EC: 2 * field bytes */
};

/* p11.c */
extern unsigned int kh_p11_fork_gen;
/* Modules live until the last provider instance goes (teardown). */
KH_P11_MODULE *kh_p11_module_get(KH_PROV_CTX *prov, const char *path);
int kh_p11_module_ready(KH_PROV_CTX *prov, KH_P11_MODULE *mod);
int kh_p11_module_rescan(KH_PROV_CTX *prov, KH_P11_MODULE *mod);
/*
 * A section of calls that read (|exclusive| 0) or rewrite SoftHSM's token
 * files, under its token-file lock (no-op for other modules). Take no other
 * lock inside one.
 */
void kh_p11_files_enter(KH_P11_MODULE *mod, KH_P11LOCK *lk, int exclusive);
void kh_p11_files_leave(KH_P11LOCK *lk);
/* Tokens in |mod| matching |u| (all, when u has no token attributes). */
int kh_p11_tokens_match(KH_PROV_CTX *prov, KH_P11_MODULE *mod,
                        const KH_P11_URI *u, KH_P11_TOKEN **found,
                        size_t maxfound, size_t *nfound);
int kh_p11_token_login(KH_PROV_CTX *prov, KH_P11_TOKEN *tok,
                       const KH_P11_URI *u, OSSL_PASSPHRASE_CALLBACK *pw_cb,
                       void *pw_cbarg);
int kh_p11_token_needs_login(KH_P11_TOKEN *tok);
/* A session from the pool (opened when the pool is empty). */
CK_RV kh_p11_session_get(KH_PROV_CTX *prov, KH_P11_TOKEN *tok,
                         CK_SESSION_HANDLE *sess);
void kh_p11_session_put(KH_P11_TOKEN *tok, CK_SESSION_HANDLE sess);
void kh_p11_session_drop(KH_P11_TOKEN *tok, CK_SESSION_HANDLE sess);
/* Recovery after a failed call; returns 1 when a retry makes sense. */
int kh_p11_recover(KH_PROV_CTX *prov, KH_P11_TOKEN *tok, CK_RV rv);
void kh_p11_token_describe(const KH_P11_TOKEN *tok, char *buf, size_t len);

/* key.c */
extern const struct kh_backend_ops kh_p11_ops;
CK_RV kh_p11_find_objects(KH_P11_TOKEN *tok, CK_SESSION_HANDLE sess,
                          CK_ATTRIBUTE *tmpl, CK_ULONG n,
                          CK_OBJECT_HANDLE *out, CK_ULONG max, CK_ULONG *count);
EVP_PKEY *kh_p11_public_half(KH_PROV_CTX *prov, KH_P11_TOKEN *tok,
                             CK_SESSION_HANDLE sess, CK_OBJECT_HANDLE priv,
                             CK_KEY_TYPE ktype, const unsigned char *id,
                             size_t idlen);
EVP_PKEY *kh_p11_pubkey_from_object(KH_PROV_CTX *prov, KH_P11_TOKEN *tok,
                                    CK_SESSION_HANDLE sess,
                                    CK_OBJECT_HANDLE h);
/*
 * The public half's raw material (public key object with the private key's
 * CKA_ID, else the private object's own public attributes); the bytes live
 * in *buf1 and *buf2 (caller frees). 0 when neither has them.
 */
int kh_p11_public_raw(KH_P11_TOKEN *tok, CK_SESSION_HANDLE sess,
                      CK_OBJECT_HANDLE priv, CK_KEY_TYPE ktype,
                      const unsigned char *id, size_t idlen, KH_PUB_RAW *raw,
                      unsigned char **buf1, unsigned char **buf2);
/* |bits|: the key's size (RSA modulus, EC order bits); may come later
 * through kh_p11_key_set_bits. */
KH_P11_KEY *kh_p11_key_new(KH_PROV_CTX *prov, KH_P11_TOKEN *tok,
                           CK_SESSION_HANDLE sess, CK_OBJECT_HANDLE h,
                           int bits, unsigned int *flags);
void kh_p11_key_set_bits(KH_P11_KEY *k, int bits);
void kh_p11_hex(const unsigned char *in, size_t len, char *out,
                size_t outlen);

#endif
