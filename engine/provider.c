/* SPDX-License-Identifier: MIT */
/*
 * The keyhold provider: entry point, configuration captured at load, and
 * the one list of algorithms it offers. The list is kept short on purpose:
 * every algorithm and decoder a provider registers is consulted by unrelated
 * fetches and decodes in the application, so keyhold offers exactly what a
 * hardware key needs and nothing else.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/params.h>
#include <openssl/provider.h>

#include "keyhold.h"
#include "kh_pin.h"

static OSSL_FUNC_provider_teardown_fn kh_teardown;
static OSSL_FUNC_provider_gettable_params_fn kh_gettable_params;
static OSSL_FUNC_provider_get_params_fn kh_get_params;
static OSSL_FUNC_provider_query_operation_fn kh_query;
static OSSL_FUNC_provider_get_reason_strings_fn kh_reason_strings;

static const OSSL_ALGORITHM kh_keymgmt[] = {
    { "RSA:rsaEncryption:1.2.840.113549.1.1.1", KH_PROPS,
      kh_rsa_keymgmt_functions, "keyhold RSA key in hardware" },
    { "EC:id-ecPublicKey:1.2.840.10045.2.1", KH_PROPS,
      kh_ec_keymgmt_functions, "keyhold EC key in hardware" },
    { NULL, NULL, NULL, NULL }
};

static const OSSL_ALGORITHM kh_signature[] = {
    { "RSA:rsaEncryption:1.2.840.113549.1.1.1", KH_PROPS,
      kh_rsa_signature_functions, "RSA PKCS#1 v1.5 and PSS in hardware" },
    { "ECDSA", KH_PROPS, kh_ecdsa_signature_functions,
      "ECDSA in hardware" },
    /* what keyhold's keymgmt names for its keys (keymgmt.c) */
    { KH_SIG_NAME_RSA, KH_PROPS, kh_rsa_signature_functions,
      "RSA PKCS#1 v1.5 and PSS in hardware" },
    { KH_SIG_NAME_ECDSA, KH_PROPS, kh_ecdsa_signature_functions,
      "ECDSA in hardware" },
    { NULL, NULL, NULL, NULL }
};

static const OSSL_ALGORITHM kh_asym_cipher[] = {
    { "RSA:rsaEncryption:1.2.840.113549.1.1.1", KH_PROPS,
      kh_rsa_asym_cipher_functions, "RSA decryption in hardware" },
    { NULL, NULL, NULL, NULL }
};

static const OSSL_ALGORITHM kh_encoder[] = {
    { "RSA:rsaEncryption:1.2.840.113549.1.1.1", KH_PROPS ",output=text",
      kh_rsa_text_encoder_functions, "public half and URI of a keyhold key" },
    { "EC:id-ecPublicKey:1.2.840.10045.2.1", KH_PROPS ",output=text",
      kh_ec_text_encoder_functions, "public half and URI of a keyhold key" },
    { NULL, NULL, NULL, NULL }
};

static const OSSL_ITEM kh_reasons[] = {
    { KH_R_INTERNAL, "internal error" },
    { KH_R_MALLOC, "out of memory" },
    { KH_R_BAD_URI, "bad key URI" },
    { KH_R_MODULE, "PKCS#11 module error" },
    { KH_R_NO_TOKEN, "no matching token" },
    { KH_R_AMBIGUOUS, "URI matches more than one object" },
    { KH_R_NO_OBJECT, "no matching object" },
    { KH_R_LOGIN, "login failed" },
    { KH_R_PIN_LOCKED, "user PIN locked" },
    { KH_R_PIN_FINAL_TRY, "refusing to spend the last PIN try" },
    { KH_R_NO_PIN, "no PIN available" },
    { KH_R_SIGN, "signature failed in the token" },
    { KH_R_DECRYPT, "decryption failed in the token" },
    { KH_R_NOT_PERMITTED, "operation not permitted for this key" },
    { KH_R_UNSUPPORTED, "unsupported" },
    { KH_R_BAD_PARAM, "bad parameter" },
    { KH_R_TOKEN_GONE, "token not present" },
    { KH_R_SESSION, "session error" },
    { KH_R_NO_PRIVATE_EXPORT, "private key material stays in the token" },
    { KH_R_KEY_REFERENCE, "bad key reference" },
    { KH_R_PUBLIC_KEY, "public key unavailable" },
    { KH_R_BUFFER, "buffer too small" },
    { 0, NULL }
};

static const OSSL_PARAM *kh_gettable_params(void *provctx)
{
    static const OSSL_PARAM tbl[] = {
        OSSL_PARAM_DEFN(OSSL_PROV_PARAM_NAME, OSSL_PARAM_UTF8_PTR, NULL, 0),
        OSSL_PARAM_DEFN(OSSL_PROV_PARAM_VERSION, OSSL_PARAM_UTF8_PTR, NULL, 0),
        OSSL_PARAM_DEFN(OSSL_PROV_PARAM_BUILDINFO, OSSL_PARAM_UTF8_PTR, NULL,
                        0),
        OSSL_PARAM_DEFN(OSSL_PROV_PARAM_STATUS, OSSL_PARAM_INTEGER, NULL, 0),
        OSSL_PARAM_END
    };

    return tbl;
}

static int kh_get_params(void *provctx, OSSL_PARAM params[])
{
    OSSL_PARAM *p;

    p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_NAME);
    if (p != NULL && !OSSL_PARAM_set_utf8_ptr(p, "keyhold hardware keys")) {
        return 0;
    }
    p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_VERSION);
    if (p != NULL && !OSSL_PARAM_set_utf8_ptr(p, KH_VERSION)) {
        return 0;
    }
    p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_BUILDINFO);
    if (p != NULL && !OSSL_PARAM_set_utf8_ptr(p, "keyhold " KH_VERSION)) {
        return 0;
    }
    p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_STATUS);
    if (p != NULL && !OSSL_PARAM_set_int(p, 1)) {
        return 0;
    }
    return 1;
}

/*
 * Algorithm order. libcrypto answers a fetch without a property query
 * ("EC", "RSA", "ECDSA") with the first implementation it stored, and it
 * stores them in the order it walks the providers: activation order, or
 * name order once anything has looked a provider up by name (the store is
 * sorted then). With keyhold activated first, its EC keymgmt would answer
 * libssl's TLS group check (dropping P-256/P-384 from TLS 1.2) and
 * EVP_PKEY_CTX_new_from_name("EC") for software keys. So, on the first
 * query, keyhold asks the core for the default provider by name, which
 * sorts the provider list ("default" before "keyhold") for every later
 * walk; a keymgmt list handed out in that first walk is not stored
 * (no_cache), so it is stored again, after default's, in the next one.
 */
struct walk_order {
    KH_PROV_CTX *prov;
    int pos, default_pos, keyhold_pos;
};

static int walk_cb(OSSL_PROVIDER *p, void *arg)
{
    struct walk_order *w = arg;

    if (strcmp(OSSL_PROVIDER_get0_name(p), "default") == 0) {
        w->default_pos = w->pos;
    }
    if (OSSL_PROVIDER_get0_provider_ctx(p) == w->prov) {
        w->keyhold_pos = w->pos;
    }
    w->pos++;
    return 1;
}

/*
 * On the first query: sort the core's provider list and tell whether the
 * walk in progress visits keyhold before default. If so, the algorithms
 * handed out now must not be cached, or they would answer unqualified
 * fetches for good.
 */
static int settle_order(KH_PROV_CTX *prov, int operation_id)
{
    struct walk_order w = { prov, 0, -1, -1 };

    /* once per provider instance: each library context has its own list */
    if (__atomic_exchange_n(&prov->queried, 1, __ATOMIC_ACQ_REL)) {
        return 0;
    }
    /* NULL is the default library context here, as for every caller. */
    OSSL_PROVIDER_do_all(prov->app_libctx, walk_cb, &w);
    (void)OSSL_PROVIDER_available(prov->app_libctx, "default");
    KH_debug("first query (operation %d): walk order default %d keyhold %d",
             operation_id, w.default_pos, w.keyhold_pos);
    return w.default_pos > w.keyhold_pos && w.keyhold_pos >= 0;
}

/*
 * key-files = no. OpenSSL 3.0 decodes the public key of every certificate
 * it parses by collecting every keymgmt of the key's type and testing
 * every decoder against all their names, so a provider's EC and RSA
 * keymgmt merely existing costs every software-key handshake 1-1.5 %.
 * Without key files, nothing needs keyhold's keymgmt before keyhold opens
 * a store: libcrypto loads a store's key reference with a keymgmt fetched
 * from the store's own provider (try_key_ref, evp_keymgmt_fetch_from_prov),
 * and that fetch asks keyhold again. So the keymgmt list is handed out,
 * not to be cached, as empty until the first keyhold store open, and as
 * the full list, cached, from then on. Key files cannot work this way:
 * PEM_read_bio_PrivateKey collects the keymgmts before any keyhold code
 * runs. The flag only goes from 0 to 1.
 */
static void keymgmt_turn_on(KH_PROV_CTX *prov)
{
    if (!__atomic_load_n(&prov->keymgmt_on, __ATOMIC_ACQUIRE)
        && !__atomic_exchange_n(&prov->keymgmt_on, 1, __ATOMIC_ACQ_REL)) {
        KH_debug("key-files = no: keymgmt offered from now on");
    }
}

static const OSSL_DISPATCH *dispatch_find(const OSSL_DISPATCH *tbl, int id)
{
    for (; tbl->function_id != 0; tbl++) {
        if (tbl->function_id == id) {
            return tbl;
        }
    }
    return NULL;
}

static void *lazy_open(const OSSL_DISPATCH *tbl, void *provctx,
                       const char *uri)
{
    const OSSL_DISPATCH *d = dispatch_find(tbl, OSSL_FUNC_STORE_OPEN);

    keymgmt_turn_on(provctx);
    return d != NULL ? OSSL_FUNC_store_open(d)(provctx, uri) : NULL;
}

static void *lazy_p11_open(void *provctx, const char *uri)
{
    return lazy_open(kh_p11_store_functions, provctx, uri);
}

static void *lazy_tpm_open(void *provctx, const char *uri)
{
    return lazy_open(kh_tpm_store_functions, provctx, uri);
}

/* |in| with its open replaced by |open|, into |out| (terminated). */
static void lazy_store_table(OSSL_DISPATCH *out, const OSSL_DISPATCH *in,
                             OSSL_FUNC_store_open_fn *open)
{
    int i;

    for (i = 0; in[i].function_id != 0 && i < KH_STORE_DISPATCH_MAX - 1;
         i++) {
        out[i] = in[i];
        if (in[i].function_id == OSSL_FUNC_STORE_OPEN) {
            out[i].function = (void (*)(void))open;
        }
    }
    out[i] = (OSSL_DISPATCH){ 0, NULL };
}

static const OSSL_ALGORITHM *kh_query(void *provctx, int operation_id,
                                      int *no_cache)
{
    KH_PROV_CTX *prov = provctx;

    *no_cache = 0;
    if (settle_order(prov, operation_id)) {
        *no_cache = 1;
    }
    switch (operation_id) {
    case OSSL_OP_KEYMGMT:
        if (!prov->key_files
            && !__atomic_load_n(&prov->keymgmt_on, __ATOMIC_ACQUIRE)) {
            /* asked again by every fetch and walk until turned on */
            *no_cache = 1;
            return NULL;
        }
        return kh_keymgmt;
    case OSSL_OP_SIGNATURE:
        return kh_signature;
    case OSSL_OP_ASYM_CIPHER:
        return kh_asym_cipher;
    case OSSL_OP_STORE:
        return prov->store_algs;
    case OSSL_OP_DECODER:
        return prov->key_files ? prov->decoder_algs : NULL;
    case OSSL_OP_ENCODER:
        return kh_encoder;
    default:
        return NULL;
    }
}

static const OSSL_ITEM *kh_reason_strings(void *provctx)
{
    return kh_reasons;
}

static void prov_free(KH_PROV_CTX *prov)
{
    if (prov == NULL) {
        return;
    }
    kh_tpm_teardown(prov);
    if (prov->p11_registered) {
        kh_p11_teardown(prov);
    }
    kh_md_cache_free(prov);
    OSSL_PROVIDER_unload(prov->deflt);
    OSSL_LIB_CTX_free(prov->libctx);
    OPENSSL_free(prov->module_path);
    OPENSSL_free(prov->pin_source);
    OPENSSL_free(prov->tpm2_tcti);
    if (prov->cfg_pin != NULL) {
        OPENSSL_secure_clear_free(prov->cfg_pin, KH_PIN_MAX + 1);
    }
    OPENSSL_free(prov);
}

static void kh_teardown(void *provctx)
{
    prov_free(provctx);
}

static const OSSL_DISPATCH kh_dispatch[] = {
    { OSSL_FUNC_PROVIDER_TEARDOWN, (void (*)(void))kh_teardown },
    { OSSL_FUNC_PROVIDER_GETTABLE_PARAMS, (void (*)(void))kh_gettable_params },
    { OSSL_FUNC_PROVIDER_GET_PARAMS, (void (*)(void))kh_get_params },
    { OSSL_FUNC_PROVIDER_QUERY_OPERATION, (void (*)(void))kh_query },
    { OSSL_FUNC_PROVIDER_GET_REASON_STRINGS, (void (*)(void))kh_reason_strings },
    { 0, NULL }
};

/*
 * The algorithm lists, per provider instance (the decoders depend on its
 * configuration).
 *
 * Key files (the key reference and the TPM's TSS2 PRIVATE KEY) are read by
 * one decoder (engine/decoder.c), registered under both key type names
 * because OpenSSL picks decoders for a key decode by key type; whichever
 * runs first makes the key, of the type the file holds. Every decoder a
 * provider registers costs every certificate public-key decode in the
 * application something (OpenSSL 3.0 walks them all, and instantiates
 * every one named "DER" for each DER step), so by default they take PEM
 * input themselves: they join only the chains that decode private keys
 * from PEM (PEM_read_bio_PrivateKey, nginx) and are skipped by the
 * does_selection of every other decode.
 *
 * With store-key-files on (by default in the openssl command only) they
 * take DER input with keyhold's structure name instead, behind a PEM step
 * named "DER", which OSSL_STORE's file: loader (the openssl commands'
 * -key/-in) needs, at the price of that step in every certificate decode.
 * The tpm2: store is always listed; the TPM backend behind it is loaded
 * on first use (tpm_load.c).
 *
 * With key-files = no there are no decoders at all, and the stores' open
 * turns the keymgmt on first (see keymgmt_turn_on).
 */
static void fill_tables(KH_PROV_CTX *prov)
{
    const char *file_props = prov->store_key_files
        ? KH_PROPS ",input=der,structure=keyhold" : KH_PROPS ",input=pem";
    OSSL_ALGORITHM *st = prov->store_algs, *dec = prov->decoder_algs;
    const OSSL_DISPATCH *p11 = kh_p11_store_functions;
    const OSSL_DISPATCH *tpm = kh_tpm_store_functions;
    int i = 0;

    if (!prov->key_files) {
        lazy_store_table(prov->p11_store_lazy, p11, lazy_p11_open);
        lazy_store_table(prov->tpm_store_lazy, tpm, lazy_tpm_open);
        p11 = prov->p11_store_lazy;
        tpm = prov->tpm_store_lazy;
    }
    st[i++] = (OSSL_ALGORITHM){ "pkcs11", KH_PROPS, p11,
                                "pkcs11: URI store" };
    st[i++] = (OSSL_ALGORITHM){ "tpm2", KH_PROPS, tpm,
                                "tpm2: reference store" };
    st[i] = (OSSL_ALGORITHM){ NULL, NULL, NULL, NULL };

    i = 0;
    if (!prov->key_files) {
        dec[i] = (OSSL_ALGORITHM){ NULL, NULL, NULL, NULL };
        return;
    }
    dec[i++] = (OSSL_ALGORITHM){ "RSA:rsaEncryption:1.2.840.113549.1.1.1",
                                 file_props, kh_keyfile_decoder_functions,
                                 "keyhold key reference or TSS2 key" };
    dec[i++] = (OSSL_ALGORITHM){ "EC:id-ecPublicKey:1.2.840.10045.2.1",
                                 file_props, kh_keyfile_decoder_functions,
                                 "keyhold key reference or TSS2 key" };
    if (prov->store_key_files) {
        dec[i++] = (OSSL_ALGORITHM){ "DER", KH_PROPS ",input=pem",
                                     kh_keyfile_pem_decoder_functions,
                                     "keyhold key reference or TSS2 PEM "
                                     "step" };
    }
    dec[i] = (OSSL_ALGORITHM){ NULL, NULL, NULL, NULL };
}

static int is_true(const char *v)
{
    return v != NULL && (strcmp(v, "1") == 0 || strcasecmp(v, "yes") == 0
                         || strcasecmp(v, "true") == 0
                         || strcasecmp(v, "on") == 0);
}

static int is_false(const char *v)
{
    return v != NULL && (strcmp(v, "0") == 0 || strcasecmp(v, "no") == 0
                         || strcasecmp(v, "false") == 0
                         || strcasecmp(v, "off") == 0);
}

static int read_config(KH_PROV_CTX *prov, const OSSL_DISPATCH *in)
{
    OSSL_FUNC_core_get_params_fn *get_params = NULL;
    char *module_path = NULL, *pin_source = NULL, *debug = NULL;
    char *tcti = NULL, *store_files = NULL, *key_files = NULL;
    OSSL_PARAM params[7];
    const OSSL_DISPATCH *d;

    for (d = in; d->function_id != 0; d++) {
        if (d->function_id == OSSL_FUNC_CORE_GET_PARAMS) {
            get_params = OSSL_FUNC_core_get_params(d);
        }
    }
    if (get_params == NULL) {
        return 1;
    }
    params[0] = OSSL_PARAM_construct_utf8_ptr("pkcs11-module-path",
                                              &module_path, 0);
    params[1] = OSSL_PARAM_construct_utf8_ptr("pin-source", &pin_source, 0);
    params[2] = OSSL_PARAM_construct_utf8_ptr("debug", &debug, 0);
    params[3] = OSSL_PARAM_construct_utf8_ptr("tpm2-tcti", &tcti, 0);
    params[4] = OSSL_PARAM_construct_utf8_ptr("store-key-files",
                                              &store_files, 0);
    params[5] = OSSL_PARAM_construct_utf8_ptr("key-files", &key_files, 0);
    params[6] = OSSL_PARAM_construct_end();
    if (!get_params(prov->handle, params)) {
        return 1;
    }
    if (module_path != NULL && *module_path != '\0') {
        prov->module_path = OPENSSL_strdup(module_path);
        if (prov->module_path == NULL) {
            return 0;
        }
    }
    if (pin_source != NULL && *pin_source != '\0') {
        prov->pin_source = OPENSSL_strdup(pin_source);
        if (prov->pin_source == NULL) {
            return 0;
        }
    }
    if (tcti != NULL && *tcti != '\0') {
        prov->tpm2_tcti = OPENSSL_strdup(tcti);
        if (prov->tpm2_tcti == NULL) {
            return 0;
        }
    }
    /*
     * store-key-files: 1/0, or "auto" (default): on in the openssl command
     * (whose -key/-in go through OSSL_STORE), off in servers and other
     * programs (PEM readers need no "DER"-named decoder).
     */
    if (store_files == NULL || strcasecmp(store_files, "auto") == 0) {
        prov->store_key_files =
            strcmp(program_invocation_short_name, "openssl") == 0;
    } else {
        prov->store_key_files = is_true(store_files);
    }
    if (is_true(debug)) {
        prov->debug = 1;
        kh_debug_on = 1;
    }
    /*
     * key-files: yes (default) or no. No: no key-file decoders, and the
     * keymgmt appears on the first keyhold store open (keymgmt_turn_on);
     * anything but a "no" keeps key files working.
     */
    prov->key_files = !is_false(key_files);
    if (key_files != NULL && !is_false(key_files) && !is_true(key_files)) {
        KH_debug("key-files = %s not understood: key files stay on",
                 key_files);
    }
    return 1;
}

/*
 * Servers that drop privileges or the environment after loading (nginx
 * workers) may not read the PIN file later: read it once now and keep it
 * in the secure heap. A failure here is only traced; login reports it.
 */
static void capture_pin(KH_PROV_CTX *prov)
{
    char err[256];
    size_t len = 0;
    enum kh_pin_rc rc;

    if (prov->pin_source == NULL) {
        return;
    }
    prov->cfg_pin = OPENSSL_secure_zalloc(KH_PIN_MAX + 1);
    if (prov->cfg_pin == NULL) {
        return;
    }
    rc = kh_pin_read_file(prov->pin_source, prov->cfg_pin, KH_PIN_MAX + 1,
                          &len, err, sizeof(err));
    if (rc != KH_PIN_OK) {
        KH_debug("config pin-source not read at load: %s", err);
        OPENSSL_secure_clear_free(prov->cfg_pin, KH_PIN_MAX + 1);
        prov->cfg_pin = NULL;
        return;
    }
    prov->cfg_pinlen = len;
}

int OSSL_provider_init(const OSSL_CORE_HANDLE *handle, const OSSL_DISPATCH *in,
                       const OSSL_DISPATCH **out, void **provctx)
{
    KH_PROV_CTX *prov;
    const OSSL_DISPATCH *d;
    const char *env;

    prov = OPENSSL_zalloc(sizeof(*prov));
    if (prov == NULL) {
        return 0;
    }
    prov->handle = handle;
    prov->key_files = 1;
    for (d = in; d->function_id != 0; d++) {
        switch (d->function_id) {
        case OSSL_FUNC_CORE_NEW_ERROR:
            prov->core_new_error = OSSL_FUNC_core_new_error(d);
            break;
        case OSSL_FUNC_CORE_SET_ERROR_DEBUG:
            prov->core_set_error_debug = OSSL_FUNC_core_set_error_debug(d);
            break;
        case OSSL_FUNC_CORE_VSET_ERROR:
            prov->core_vset_error = OSSL_FUNC_core_vset_error(d);
            break;
        case OSSL_FUNC_CORE_GET_LIBCTX:
            prov->app_libctx = (OSSL_LIB_CTX *)OSSL_FUNC_core_get_libctx(d)(
                handle);
            break;
        default:
            break;
        }
    }
    if (prov->core_new_error == NULL || prov->core_set_error_debug == NULL
        || prov->core_vset_error == NULL) {
        prov->core_new_error = NULL;
    }
    env = getenv("KEYHOLD_DEBUG");
    if (env != NULL && *env != '\0' && strcmp(env, "0") != 0) {
        kh_debug_on = 1;
        prov->debug = 1;
    }
    if (!read_config(prov, in)) {
        goto err;
    }
    /*
     * The provider's own library context: the public halves of keys and
     * software digests live here, with the default provider, so that the
     * provider never fetches from the application's context (which may
     * have keyhold loaded before default, or not default at all).
     */
    prov->libctx = OSSL_LIB_CTX_new_from_dispatch(handle, in);
    if (prov->libctx == NULL) {
        goto err;
    }
    prov->deflt = OSSL_PROVIDER_load(prov->libctx, "default");
    if (prov->deflt == NULL) {
        goto err;
    }
    capture_pin(prov);
    kh_p11_init_prov(prov);
    prov->p11_registered = 1;
    fill_tables(prov);
    kh_tpm_init(prov, prov->tpm2_tcti);
    KH_debug("provider loaded (module-path %s, pin-source %s, key files %s)",
             prov->module_path != NULL ? prov->module_path : "(default)",
             prov->pin_source != NULL ? "set" : "unset",
             prov->key_files ? "on" : "off: URIs only");
    *out = kh_dispatch;
    *provctx = prov;
    return 1;
err:
    prov_free(prov);
    return 0;
}
