/* SPDX-License-Identifier: MIT */
/*
 * The seam between the provider (keyhold.so) and its TPM backend, which is
 * built as a separate module (keyhold-tpm.so, installed beside keyhold.so)
 * and loaded with dlopen() the first time a TPM key is used: a tpm2: URI, a
 * "TSS2 PRIVATE KEY" file, or a key reference naming a tpm2: URI. A server
 * that only uses PKCS#11 keys never maps the tpm2-tss libraries.
 *
 * The module exports one symbol, kh_tpm_module_init. The provider hands it
 * the few provider functions the backend calls (the module cannot see the
 * provider's symbols: keyhold.so exports nothing but OSSL_provider_init) and
 * gets back the backend's entry points.
 */
#ifndef KH_ENGINE_TPM_MODULE_H
#define KH_ENGINE_TPM_MODULE_H

#include <stddef.h>

#include <openssl/core.h>
#include <openssl/core_dispatch.h>

#include "backend.h"
#include "kh_pin.h"

#define KH_TPM_MODULE_FILE "keyhold-tpm.so"
#define KH_TPM_MODULE_INIT "kh_tpm_module_init"
/*
 * Both files come from one build and are installed together; the module
 * refuses a host of another keyhold version, ABI number (bumped when the
 * structs below change) or size of struct kh_prov_ctx / struct kh_key.
 */
#define KH_TPM_MODULE_ABI  1

/* What the provider lends the module. */
struct kh_tpm_host {
    unsigned int abi;
    const char *version;                /* KH_VERSION */
    size_t prov_ctx_size;               /* sizeof(struct kh_prov_ctx) */
    size_t key_size;                    /* sizeof(struct kh_key) */
    int *debug_on;                      /* the provider's kh_debug_on */
    /* an error with its text already formatted by the module */
    void (*raise)(KH_PROV_CTX *prov, const char *file, int line,
                  const char *func, int reason, const char *msg);
    void (*debug)(const char *msg);
    KH_KEY *(*key_new)(KH_PROV_CTX *prov, const struct kh_backend_ops *ops,
                       void *bkey, EVP_PKEY *pub, unsigned int flags,
                       const char *uri);
    void (*key_free)(KH_KEY *key);
    const char *(*key_type_name)(const KH_KEY *key);
};

/* What the module gives back. Every function raises its own errors. */
struct kh_tpm_module {
    /* Process-wide TCTI (NULL: the environment, read now) */
    void (*configure)(const char *tcti);
    /* Drops the TPM connection when no key holds it (provider teardown). */
    void (*release)(void);
    /* A tpm2: URI naming one key -> a key with backend ops, auth set. */
    int (*resolve)(KH_PROV_CTX *prov, const char *uri,
                   OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_cbarg,
                   KH_KEY **key);
    /*
     * A TSS2 PRIVATE KEY (DER) -> a key with auth set. |type| 0: any;
     * EVP_PKEY_EC/RSA: 1 with *key NULL when the file holds the other.
     */
    int (*decode)(KH_PROV_CTX *prov, const unsigned char *der, size_t derlen,
                  int type, OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_cbarg,
                  KH_KEY **key);
    /* 1 when |der| parses as a TSS2 PRIVATE KEY; else 0, error raised. */
    int (*check)(KH_PROV_CTX *prov, const unsigned char *der, size_t derlen);
    /* A PIN sealed to the TPM (engine/common/kh_pin.h: kh_pin_unseal). */
    enum kh_pin_rc (*unseal)(const char *pem, size_t pemlen, char *pin,
                             size_t pinsize, size_t *pinlen, char *err,
                             size_t errlen);
    /* The tpm2: store's dispatch table. */
    const OSSL_DISPATCH *store;
};

typedef int kh_tpm_module_init_fn(const struct kh_tpm_host *host,
                                  struct kh_tpm_module *mod);

/* Inside the module: engine/tpm/tpm_prov.c fills in its entry points. */
void kh_tpm_prov_fill(struct kh_tpm_module *mod);

#endif
