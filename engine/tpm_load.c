/* SPDX-License-Identifier: MIT */
/*
 * The provider's end of the TPM backend: keyhold-tpm.so, the module beside
 * keyhold.so that holds the backend and links the tpm2-tss libraries, is
 * loaded here on first use (a tpm2: URI, a TSS2 PRIVATE KEY file, a key
 * reference naming a tpm2: URI). Loading and relocating the TSS libraries
 * costs a process about 1.7 M instructions, which a server that only uses
 * PKCS#11 keys never pays now.
 *
 * What must not wait for the module is captured at provider load: the TCTI
 * from the configuration or the environment (servers such as nginx clear
 * their workers' environment).
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_dispatch.h>

#include "keyhold.h"
#include "kh_pin.h"
#include "kh_tpm_module.h"

#define TCTI_MAX 512

static pthread_mutex_t mod_lock = PTHREAD_MUTEX_INITIALIZER;
static int mod_loaded;                  /* atomic: 1 once mod is filled */
static struct kh_tpm_module mod;
static char tcti_cfg[TCTI_MAX];         /* captured at provider load */

static void host_raise(KH_PROV_CTX *prov, const char *file, int line,
                       const char *func, int reason, const char *msg)
{
    kh_raise(prov, file, line, func, reason, "%s", msg);
}

static void host_debug(const char *msg)
{
    kh_debug_printf("%s", msg);
}

static const struct kh_tpm_host host = {
    .abi = KH_TPM_MODULE_ABI,
    .version = KH_VERSION,
    .prov_ctx_size = sizeof(struct kh_prov_ctx),
    .key_size = sizeof(struct kh_key),
    .debug_on = &kh_debug_on,
    .raise = host_raise,
    .debug = host_debug,
    .key_new = kh_key_new,
    .key_free = kh_key_free,
    .key_type_name = kh_key_type_name,
};

/* The module's path: beside the file this function was loaded from. */
static int module_path(char *buf, size_t buflen)
{
    Dl_info info;
    const char *slash;
    int n;

    if (dladdr((void *)module_path, &info) == 0 || info.dli_fname == NULL) {
        return 0;
    }
    slash = strrchr(info.dli_fname, '/');
    if (slash == NULL) {
        n = snprintf(buf, buflen, "%s", KH_TPM_MODULE_FILE);
    } else {
        n = snprintf(buf, buflen, "%.*s/%s", (int)(slash - info.dli_fname),
                     info.dli_fname, KH_TPM_MODULE_FILE);
    }
    return n > 0 && (size_t)n < buflen;
}

/*
 * The loaded module, or NULL with |err| naming the file and the reason.
 * A failure is not remembered: installing the module later makes the next
 * TPM key work without restarting the server.
 */
static const struct kh_tpm_module *load_module(char *err, size_t errlen)
{
    kh_tpm_module_init_fn *init;
    struct kh_tpm_module m;
    char path[4096];
    const char *why;
    void *dl;

    if (__atomic_load_n(&mod_loaded, __ATOMIC_ACQUIRE)) {
        return &mod;
    }
    pthread_mutex_lock(&mod_lock);
    if (mod_loaded) {
        pthread_mutex_unlock(&mod_lock);
        return &mod;
    }
    if (!module_path(path, sizeof(path))) {
        snprintf(path, sizeof(path), "%s", KH_TPM_MODULE_FILE);
    }
    dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (dl == NULL) {
        why = dlerror();
        snprintf(err, errlen, "TPM keys need the TPM backend module %s, "
                 "which cannot be loaded: %s", path,
                 why != NULL ? why : "unknown error");
        goto fail;
    }
    init = (kh_tpm_module_init_fn *)dlsym(dl, KH_TPM_MODULE_INIT);
    memset(&m, 0, sizeof(m));
    if (init == NULL || !init(&host, &m)) {
        snprintf(err, errlen, "%s is not the TPM backend module of this "
                 "keyhold.so (version %s): reinstall keyhold", path,
                 KH_VERSION);
        dlclose(dl);
        goto fail;
    }
    /* The module stays mapped for the life of the process: keys use it. */
    m.configure(tcti_cfg[0] != '\0' ? tcti_cfg : NULL);
    mod = m;
    KH_debug("TPM backend loaded from %s", path);
    __atomic_store_n(&mod_loaded, 1, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&mod_lock);
    return &mod;
fail:
    pthread_mutex_unlock(&mod_lock);
    return NULL;
}

/* The loaded module, or NULL with the error raised. */
static const struct kh_tpm_module *get_module(KH_PROV_CTX *prov)
{
    const struct kh_tpm_module *m;
    char err[4200];

    m = load_module(err, sizeof(err));
    if (m == NULL) {
        KH_raise(prov, KH_R_UNSUPPORTED, "%s", err);
    }
    return m;
}

/*
 * At provider load: the TCTI from the config (tpm2-tcti), else from the
 * environment variables the TPM core reads, in its order.
 */
void kh_tpm_init(KH_PROV_CTX *prov, const char *tcti)
{
    static const char *envs[] = {
        "KEYHOLD_TPM_TCTI", "TPM2TOOLS_TCTI", "TCTI", "TPM2OPENSSL_TCTI"
    };
    const char *v = tcti;
    size_t i;

    for (i = 0; i < sizeof(envs) / sizeof(envs[0])
                && (v == NULL || *v == '\0'); i++) {
        v = getenv(envs[i]);
    }
    pthread_mutex_lock(&mod_lock);
    if (v != NULL && *v != '\0'
        && (tcti != NULL || tcti_cfg[0] == '\0')) {
        snprintf(tcti_cfg, sizeof(tcti_cfg), "%s", v);
        if (mod_loaded) {
            mod.configure(tcti_cfg);
        }
    }
    pthread_mutex_unlock(&mod_lock);
}

void kh_tpm_teardown(KH_PROV_CTX *prov)
{
    if (__atomic_load_n(&mod_loaded, __ATOMIC_ACQUIRE)) {
        mod.release();
    }
}

int kh_tpm_resolve(KH_PROV_CTX *prov, const char *uri,
                   OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_cbarg,
                   KH_KEY **key)
{
    const struct kh_tpm_module *m = get_module(prov);

    *key = NULL;
    return m != NULL && m->resolve(prov, uri, pw_cb, pw_cbarg, key);
}

int kh_tpm_decode(KH_PROV_CTX *prov, const unsigned char *der, size_t derlen,
                  int type, OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_cbarg,
                  KH_KEY **key)
{
    const struct kh_tpm_module *m = get_module(prov);

    *key = NULL;
    return m != NULL && m->decode(prov, der, derlen, type, pw_cb, pw_cbarg,
                                  key);
}

int kh_tpm_check(KH_PROV_CTX *prov, const unsigned char *der, size_t derlen)
{
    const struct kh_tpm_module *m = get_module(prov);

    return m != NULL && m->check(prov, der, derlen);
}

/*
 * The PIN file reader (engine/common/kh_pin.c) calls this, through a weak
 * reference, for a PIN file that holds a PIN sealed to the TPM.
 */
enum kh_pin_rc kh_pin_unseal(const char *pem, size_t pemlen, char *pin,
                             size_t pinsize, size_t *pinlen, char *err,
                             size_t errlen)
{
    const struct kh_tpm_module *m = load_module(err, errlen);

    if (m == NULL) {
        return KH_PIN_ERR_FORMAT;
    }
    return m->unseal(pem, pemlen, pin, pinsize, pinlen, err, errlen);
}

/* ---- the tpm2: store, forwarded to the module ------------------------ */

static void (*store_fn(KH_PROV_CTX *prov, int id))(void)
{
    const struct kh_tpm_module *m = get_module(prov);
    const OSSL_DISPATCH *d;

    if (m == NULL) {
        return NULL;
    }
    for (d = m->store; d->function_id != 0; d++) {
        if (d->function_id == id) {
            return d->function;
        }
    }
    return NULL;
}

/*
 * The store context is the module's; it starts with the provider context
 * pointer (TPM_STORE in tpm_prov.c), which the forwarders below read.
 */
static void *st_open(void *provctx, const char *uri)
{
    OSSL_FUNC_store_open_fn *f =
        (OSSL_FUNC_store_open_fn *)store_fn(provctx, OSSL_FUNC_STORE_OPEN);

    return f != NULL ? f(provctx, uri) : NULL;
}

static const OSSL_PARAM *st_settable(void *provctx)
{
    OSSL_FUNC_store_settable_ctx_params_fn *f =
        (OSSL_FUNC_store_settable_ctx_params_fn *)store_fn(
            provctx, OSSL_FUNC_STORE_SETTABLE_CTX_PARAMS);

    return f != NULL ? f(provctx) : NULL;
}

static KH_PROV_CTX *st_prov(void *loaderctx)
{
    return *(KH_PROV_CTX **)loaderctx;
}

static int st_set_params(void *loaderctx, const OSSL_PARAM params[])
{
    OSSL_FUNC_store_set_ctx_params_fn *f =
        (OSSL_FUNC_store_set_ctx_params_fn *)store_fn(
            st_prov(loaderctx), OSSL_FUNC_STORE_SET_CTX_PARAMS);

    return f != NULL && f(loaderctx, params);
}

static int st_load(void *loaderctx, OSSL_CALLBACK *object_cb,
                   void *object_cbarg, OSSL_PASSPHRASE_CALLBACK *pw_cb,
                   void *pw_cbarg)
{
    OSSL_FUNC_store_load_fn *f = (OSSL_FUNC_store_load_fn *)store_fn(
        st_prov(loaderctx), OSSL_FUNC_STORE_LOAD);

    return f != NULL && f(loaderctx, object_cb, object_cbarg, pw_cb,
                          pw_cbarg);
}

static int st_eof(void *loaderctx)
{
    OSSL_FUNC_store_eof_fn *f = (OSSL_FUNC_store_eof_fn *)store_fn(
        st_prov(loaderctx), OSSL_FUNC_STORE_EOF);

    return f == NULL || f(loaderctx);
}

static int st_close(void *loaderctx)
{
    OSSL_FUNC_store_close_fn *f;

    if (loaderctx == NULL) {
        return 1;
    }
    f = (OSSL_FUNC_store_close_fn *)store_fn(st_prov(loaderctx),
                                             OSSL_FUNC_STORE_CLOSE);
    return f == NULL || f(loaderctx);
}

static int st_export_object(void *loaderctx, const void *reference,
                            size_t reference_sz, OSSL_CALLBACK *export_cb,
                            void *export_cbarg)
{
    return 0;                   /* private keys stay in the TPM */
}

const OSSL_DISPATCH kh_tpm_store_functions[] = {
    { OSSL_FUNC_STORE_OPEN, (void (*)(void))st_open },
    { OSSL_FUNC_STORE_SETTABLE_CTX_PARAMS, (void (*)(void))st_settable },
    { OSSL_FUNC_STORE_SET_CTX_PARAMS, (void (*)(void))st_set_params },
    { OSSL_FUNC_STORE_LOAD, (void (*)(void))st_load },
    { OSSL_FUNC_STORE_EOF, (void (*)(void))st_eof },
    { OSSL_FUNC_STORE_CLOSE, (void (*)(void))st_close },
    { OSSL_FUNC_STORE_EXPORT_OBJECT, (void (*)(void))st_export_object },
    { 0, NULL }
};
