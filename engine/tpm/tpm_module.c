/* SPDX-License-Identifier: MIT */
/*
 * The TPM module's side of the seam (engine/kh_tpm_module.h): its one
 * exported entry point, and the provider functions the backend code calls
 * (kh_raise, kh_debug_printf, kh_key_*), forwarded to the provider that
 * loaded the module. Only kh_tpm_module_init leaves this module
 * (engine/tpm/keyhold-tpm.map), so these names never meet the provider's.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "keyhold.h"
#include "kh_tpm_module.h"

int kh_debug_on;

static const struct kh_tpm_host *host;

void kh_raise(KH_PROV_CTX *prov, const char *file, int line,
              const char *func, int reason, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    host->raise(prov, file, line, func, reason, msg);
}

void kh_debug_printf(const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    host->debug(msg);
}

KH_KEY *kh_key_new(KH_PROV_CTX *prov, const struct kh_backend_ops *ops,
                   void *bkey, EVP_PKEY *pub, unsigned int flags,
                   const char *uri)
{
    return host->key_new(prov, ops, bkey, pub, flags, uri);
}

void kh_key_free(KH_KEY *key)
{
    host->key_free(key);
}

const char *kh_key_type_name(const KH_KEY *key)
{
    return host->key_type_name(key);
}

int kh_tpm_module_init(const struct kh_tpm_host *h, struct kh_tpm_module *mod)
{
    /* a module from another build would read the structs differently */
    if (h->abi != KH_TPM_MODULE_ABI || strcmp(h->version, KH_VERSION) != 0
        || h->prov_ctx_size != sizeof(struct kh_prov_ctx)
        || h->key_size != sizeof(struct kh_key)) {
        return 0;
    }
    host = h;
    kh_debug_on = *h->debug_on;
    kh_tpm_prov_fill(mod);
    return 1;
}
