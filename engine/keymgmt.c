/* SPDX-License-Identifier: MIT */
/*
 * Key management for RSA and EC keys held in hardware.
 *
 * Public parameters are answered by the public half (an EVP_PKEY in the
 * provider's own library context). Private parts never leave: export of a
 * selection that includes them fails. That failure is load-bearing, not
 * just policy: OpenSSL 3.0 fetches a signature implementation by name from
 * any provider and first tries to export the key there; if a keyhold key
 * exported a public-only copy, the default provider would be chosen and
 * fail later with "missing private key" (seen inside nginx). When export
 * fails, libcrypto falls back to the key's own provider.
 *
 * Import accepts public keys only: that is how EVP_PKEY_eq() compares a
 * certificate's key (default provider) with a keyhold key, which
 * SSL_CTX_check_private_key() needs.
 */
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_dispatch.h>
#include <openssl/core_names.h>
#include <openssl/core_object.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "keyhold.h"

static OSSL_FUNC_keymgmt_new_fn km_new;
static OSSL_FUNC_keymgmt_free_fn km_free;
static OSSL_FUNC_keymgmt_has_fn km_has;
static OSSL_FUNC_keymgmt_match_fn km_match;
static OSSL_FUNC_keymgmt_validate_fn km_validate;
static OSSL_FUNC_keymgmt_import_fn km_rsa_import;
static OSSL_FUNC_keymgmt_import_fn km_ec_import;
static OSSL_FUNC_keymgmt_import_types_fn km_rsa_import_types;
static OSSL_FUNC_keymgmt_import_types_fn km_ec_import_types;
static OSSL_FUNC_keymgmt_export_fn km_export;
static OSSL_FUNC_keymgmt_get_params_fn km_get_params;
static OSSL_FUNC_keymgmt_gettable_params_fn km_rsa_gettable_params;
static OSSL_FUNC_keymgmt_gettable_params_fn km_ec_gettable_params;
static OSSL_FUNC_keymgmt_load_fn km_rsa_load;
static OSSL_FUNC_keymgmt_load_fn km_ec_load;
static OSSL_FUNC_keymgmt_dup_fn km_dup;
static OSSL_FUNC_keymgmt_query_operation_name_fn km_ec_query_name;
static OSSL_FUNC_keymgmt_query_operation_name_fn km_rsa_query_name;

static void *km_new(void *provctx)
{
    return kh_key_new(provctx, NULL, NULL, NULL, 0, NULL);
}

static void km_free(void *keydata)
{
    kh_key_free(keydata);
}

static int km_has(const void *keydata, int selection)
{
    const KH_KEY *key = keydata;

    if (key == NULL) {
        return 0;
    }
    if ((selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) != 0 && key->ops == NULL
        && !(key->flags & KH_KEY_SOFTWARE)) {
        return 0;
    }
    if ((selection & (OSSL_KEYMGMT_SELECT_PUBLIC_KEY
                      | OSSL_KEYMGMT_SELECT_ALL_PARAMETERS)) != 0
        && !kh_key_has_pub(key)) {
        return 0;
    }
    return 1;
}

static int km_validate(const void *keydata, int selection, int checktype)
{
    return km_has(keydata, selection);
}

static int km_match(const void *keydata1, const void *keydata2, int selection)
{
    KH_KEY *a = (KH_KEY *)keydata1, *b = (KH_KEY *)keydata2;
    EVP_PKEY *pa, *pb;

    if (a == NULL || b == NULL || a->type != b->type) {
        return 0;
    }
    /* Both as the token gave them: the bytes say it without an EVP_PKEY */
    if (a->raw != NULL && b->raw != NULL) {
        if ((selection & OSSL_KEYMGMT_SELECT_KEYPAIR) != 0) {
            return a->alen == b->alen && a->blen == b->blen
                   && a->group == b->group
                   && memcmp(a->raw, b->raw, a->alen + a->blen) == 0;
        }
        return (selection & OSSL_KEYMGMT_SELECT_ALL_PARAMETERS) == 0
               || a->group == b->group;
    }
    if ((pa = kh_key_pub(a)) == NULL || (pb = kh_key_pub(b)) == NULL) {
        return 0;
    }
    if ((selection & OSSL_KEYMGMT_SELECT_KEYPAIR) != 0) {
        return EVP_PKEY_eq(pa, pb) == 1;
    }
    if ((selection & OSSL_KEYMGMT_SELECT_ALL_PARAMETERS) != 0) {
        return EVP_PKEY_parameters_eq(pa, pb) == 1;
    }
    return 1;
}

/*
 * A public key given as group and point, or n and e, is kept as bytes
 * (see key.c): comparing a certificate's key with a token key
 * (X509_check_private_key, SSL_CTX_use_PrivateKey) then needs no
 * EVP_PKEY in the provider's library context at all. 1 kept, 0 not.
 */
static int import_raw(KH_KEY *key, const char *type, const OSSL_PARAM params[])
{
    const OSSL_PARAM *p;
    KH_PUB_RAW raw;
    BIGNUM *n = NULL, *e = NULL;
    unsigned char nb[1024], eb[64];
    const void *pt = NULL;
    size_t ptlen = 0;
    int ok = 0, nl, el;

    memset(&raw, 0, sizeof(raw));
    if (strcmp(type, "EC") == 0) {
        raw.type = EVP_PKEY_EC;
        p = OSSL_PARAM_locate_const(params, OSSL_PKEY_PARAM_GROUP_NAME);
        if (p == NULL || !OSSL_PARAM_get_utf8_string_ptr(p, &raw.group)) {
            return 0;
        }
        p = OSSL_PARAM_locate_const(params, OSSL_PKEY_PARAM_PUB_KEY);
        if (p == NULL || !OSSL_PARAM_get_octet_string_ptr(p, &pt, &ptlen)
            || ptlen == 0) {
            return 0;
        }
        raw.a = pt;
        raw.alen = ptlen;
        return kh_key_set_raw(key, &raw);
    }
    raw.type = EVP_PKEY_RSA;
    p = OSSL_PARAM_locate_const(params, OSSL_PKEY_PARAM_RSA_N);
    if (p == NULL || !OSSL_PARAM_get_BN(p, &n)) {
        goto end;
    }
    p = OSSL_PARAM_locate_const(params, OSSL_PKEY_PARAM_RSA_E);
    if (p == NULL || !OSSL_PARAM_get_BN(p, &e)) {
        goto end;
    }
    nl = BN_bn2binpad(n, nb, BN_num_bytes(n) <= (int)sizeof(nb)
                                 ? BN_num_bytes(n) : -1);
    el = BN_bn2binpad(e, eb, BN_num_bytes(e) <= (int)sizeof(eb)
                                 ? BN_num_bytes(e) : -1);
    if (nl <= 0 || el <= 0) {
        goto end;
    }
    raw.a = nb;
    raw.alen = (size_t)nl;
    raw.b = eb;
    raw.blen = (size_t)el;
    ok = kh_key_set_raw(key, &raw);
end:
    BN_free(n);
    BN_free(e);
    return ok;
}

/* Builds the public half from public parameters; private ones refused. */
static int km_import(KH_KEY *key, const char *type, int selection,
                     const OSSL_PARAM params[])
{
    KH_PROV_CTX *prov = key->prov;
    EVP_PKEY_CTX *ctx = NULL;
    EVP_PKEY *pk = NULL;
    int ok = 0, sel;

    if (kh_key_has_pub(key) || key->ops != NULL) {
        KH_raise(prov, KH_R_BAD_PARAM, "key already holds data");
        return 0;
    }
    if ((selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) != 0
        && (OSSL_PARAM_locate_const(params, OSSL_PKEY_PARAM_RSA_D) != NULL
            || OSSL_PARAM_locate_const(params, OSSL_PKEY_PARAM_PRIV_KEY)
                   != NULL)) {
        /* A software key pair (see "Software keys" below). */
        ctx = EVP_PKEY_CTX_new_from_name(prov->libctx, type, NULL);
        if (ctx == NULL || EVP_PKEY_fromdata_init(ctx) <= 0
            || EVP_PKEY_fromdata(ctx, &pk, EVP_PKEY_KEYPAIR,
                                 (OSSL_PARAM *)params) <= 0) {
            goto end;
        }
        key->flags |= KH_KEY_SOFTWARE;
        goto done;
    }
    if ((selection & OSSL_KEYMGMT_SELECT_PUBLIC_KEY) != 0) {
        if (import_raw(key, type, params)) {
            return 1;
        }
        sel = EVP_PKEY_PUBLIC_KEY;
    } else if ((selection & OSSL_KEYMGMT_SELECT_ALL_PARAMETERS) != 0) {
        sel = EVP_PKEY_KEY_PARAMETERS;
    } else {
        return 0;
    }
    ctx = EVP_PKEY_CTX_new_from_name(prov->libctx, type, NULL);
    if (ctx == NULL || EVP_PKEY_fromdata_init(ctx) <= 0
        || EVP_PKEY_fromdata(ctx, &pk, sel, (OSSL_PARAM *)params) <= 0) {
        goto end;
    }
done:
    key->pub = pk;
    key->type = strcmp(type, "RSA") == 0 ? EVP_PKEY_RSA : EVP_PKEY_EC;
    key->bits = EVP_PKEY_get_bits(pk);
    key->secbits = EVP_PKEY_get_security_bits(pk);
    key->size = EVP_PKEY_get_size(pk);
    ok = 1;
end:
    EVP_PKEY_CTX_free(ctx);
    return ok;
}

static int km_rsa_import(void *keydata, int selection, const OSSL_PARAM params[])
{
    return km_import(keydata, "RSA", selection, params);
}

static int km_ec_import(void *keydata, int selection, const OSSL_PARAM params[])
{
    return km_import(keydata, "EC", selection, params);
}

static const OSSL_PARAM *km_rsa_import_types(int selection)
{
    static const OSSL_PARAM tbl[] = {
        OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_N, NULL, 0),
        OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_E, NULL, 0),
        OSSL_PARAM_END
    };

    return tbl;
}

static const OSSL_PARAM *km_ec_import_types(int selection)
{
    static const OSSL_PARAM tbl[] = {
        OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, NULL, 0),
        OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_EC_ENCODING, NULL, 0),
        OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_EC_POINT_CONVERSION_FORMAT,
                               NULL, 0),
        OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_PUB_KEY, NULL, 0),
        OSSL_PARAM_END
    };

    return tbl;
}

static int km_export(void *keydata, int selection, OSSL_CALLBACK *cb,
                     void *cbarg)
{
    KH_KEY *key = keydata;
    EVP_PKEY *pub;

    if (key == NULL) {
        return 0;
    }
    if (key->ops != NULL
        && (selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) != 0) {
        /* No error on the queue: libcrypto treats this as "try the key's
         * own provider", which is the expected path. */
        KH_debug("export with private selection refused (expected)");
        return 0;
    }
    if ((pub = kh_key_pub(key)) == NULL) {
        return 0;
    }
    return EVP_PKEY_export(pub, selection, cb, cbarg);
}

static int km_get_params(void *keydata, OSSL_PARAM params[])
{
    KH_KEY *key = keydata;
    EVP_PKEY *pub;
    int rv;

    if (key == NULL || !kh_key_has_pub(key)) {
        return 0;
    }
    /* Not built yet: bits, size, group, point, n, e come from the bytes */
    if (__atomic_load_n(&key->pub, __ATOMIC_ACQUIRE) == NULL
        && (rv = kh_key_get_params_raw(key, params)) >= 0) {
        return rv;
    }
    if ((pub = kh_key_pub(key)) == NULL) {
        return 0;
    }
    return EVP_PKEY_get_params(pub, params);
}

/*
 * Parameter tables: the default provider's, fetched from the provider's own
 * library context. Its tables are static and outlive the fetch.
 */
enum { TBL_GETTABLE, TBL_SETTABLE, TBL_GEN_SETTABLE };

static const OSSL_PARAM *default_table(void *provctx, const char *type,
                                       int which)
{
    KH_PROV_CTX *prov = provctx;
    EVP_KEYMGMT *km = EVP_KEYMGMT_fetch(prov->libctx, type, NULL);
    const OSSL_PARAM *p = NULL;

    if (km != NULL) {
        p = which == TBL_GETTABLE ? EVP_KEYMGMT_gettable_params(km)
            : which == TBL_SETTABLE ? EVP_KEYMGMT_settable_params(km)
                                    : EVP_KEYMGMT_gen_settable_params(km);
        EVP_KEYMGMT_free(km);
    }
    return p;
}

static const OSSL_PARAM *km_rsa_gettable_params(void *provctx)
{
    return default_table(provctx, "RSA", TBL_GETTABLE);
}

static const OSSL_PARAM *km_ec_gettable_params(void *provctx)
{
    return default_table(provctx, "EC", TBL_GETTABLE);
}

static void *km_load(const void *reference, size_t reference_sz, int type)
{
    const KH_OBJ_REF *ref = reference;

    if (ref == NULL || reference_sz != sizeof(*ref)
        || ref->magic != KH_KEYREF_MAGIC || ref->key == NULL
        || ref->key->type != type) {
        return NULL;
    }
    return kh_key_up_ref(ref->key);
}

static void *km_rsa_load(const void *reference, size_t reference_sz)
{
    return km_load(reference, reference_sz, EVP_PKEY_RSA);
}

static void *km_ec_load(const void *reference, size_t reference_sz)
{
    return km_load(reference, reference_sz, EVP_PKEY_EC);
}

static void *km_dup(const void *keydata, int selection)
{
    KH_KEY *key = (KH_KEY *)keydata;

    if (key == NULL) {
        return NULL;
    }
    /* Keys are immutable: a duplicate is a new reference. */
    return kh_key_up_ref(key);
}

/*
 * The signature a keyhold key is used with is named for keyhold alone
 * (KH_SIG_NAME_* in keyhold.h; the implementations are also
 * registered as ECDSA and RSA). OpenSSL 3.0 fetches the signature by this
 * name with the application's property query and, when the implementation
 * comes from another provider, tries to export the key there and then
 * falls back to the key's own provider: with the plain names the default
 * provider's ECDSA/RSA come first (providers are kept sorted by name), so
 * every EVP_DigestSignInit paid a fetch, a refused export and a second
 * fetch, about 5,000 instructions. Software keys in this keymgmt (below)
 * are signed in software by the same implementation (sig.c).
 */
static const char *km_ec_query_name(int operation_id)
{
    switch (operation_id) {
    case OSSL_OP_SIGNATURE:
        return KH_SIG_NAME_ECDSA;
    default:
        return NULL;
    }
}

static const char *km_rsa_query_name(int operation_id)
{
    return operation_id == OSSL_OP_SIGNATURE ? KH_SIG_NAME_RSA : "RSA";
}

/*
 * Software keys. keyhold holds hardware keys; its keymgmt only meets a
 * software key when libcrypto hands it a generic request ("EC", "RSA")
 * that the default provider should have answered: possible once, when the
 * very first walk over the providers visits keyhold before default (see
 * provider.c). Such requests are served in the provider's own library
 * context and the result is an ordinary key pair that exports fully, so
 * the default provider does the work from there.
 */
typedef struct kh_gen_ctx {
    KH_PROV_CTX *prov;
    EVP_PKEY_CTX *pctx;
    int selection;
} KH_GEN_CTX;

static OSSL_FUNC_keymgmt_gen_init_fn km_rsa_gen_init;
static OSSL_FUNC_keymgmt_gen_init_fn km_ec_gen_init;
static OSSL_FUNC_keymgmt_gen_set_template_fn km_gen_set_template;
static OSSL_FUNC_keymgmt_gen_set_params_fn km_gen_set_params;
static OSSL_FUNC_keymgmt_gen_settable_params_fn km_rsa_gen_settable;
static OSSL_FUNC_keymgmt_gen_settable_params_fn km_ec_gen_settable;
static OSSL_FUNC_keymgmt_gen_fn km_gen;
static OSSL_FUNC_keymgmt_gen_cleanup_fn km_gen_cleanup;
static OSSL_FUNC_keymgmt_set_params_fn km_set_params;
static OSSL_FUNC_keymgmt_settable_params_fn km_rsa_settable_params;
static OSSL_FUNC_keymgmt_settable_params_fn km_ec_settable_params;

static int gen_ctx_init(KH_GEN_CTX *g, EVP_PKEY_CTX *pctx)
{
    int rv;

    EVP_PKEY_CTX_free(g->pctx);
    g->pctx = pctx;
    if (pctx == NULL) {
        return 0;
    }
    if ((g->selection & OSSL_KEYMGMT_SELECT_KEYPAIR) != 0) {
        rv = EVP_PKEY_keygen_init(pctx);
    } else {
        rv = EVP_PKEY_paramgen_init(pctx);
    }
    return rv > 0;
}

static void *km_gen_init(void *provctx, int selection,
                         const OSSL_PARAM params[], const char *type)
{
    KH_PROV_CTX *prov = provctx;
    KH_GEN_CTX *g = OPENSSL_zalloc(sizeof(*g));

    if (g == NULL) {
        return NULL;
    }
    g->prov = prov;
    g->selection = selection;
    if (!gen_ctx_init(g, EVP_PKEY_CTX_new_from_name(prov->libctx, type, NULL))
        || !km_gen_set_params(g, params)) {
        km_gen_cleanup(g);
        return NULL;
    }
    return g;
}

static void *km_rsa_gen_init(void *provctx, int selection,
                             const OSSL_PARAM params[])
{
    return km_gen_init(provctx, selection, params, "RSA");
}

static void *km_ec_gen_init(void *provctx, int selection,
                            const OSSL_PARAM params[])
{
    return km_gen_init(provctx, selection, params, "EC");
}

static int km_gen_set_template(void *genctx, void *templ)
{
    KH_GEN_CTX *g = genctx;
    KH_KEY *t = templ;
    EVP_PKEY *pub;

    if (t == NULL || (pub = kh_key_pub(t)) == NULL) {
        return 0;
    }
    return gen_ctx_init(g, EVP_PKEY_CTX_new_from_pkey(g->prov->libctx,
                                                      pub, NULL));
}

static int km_gen_set_params(void *genctx, const OSSL_PARAM params[])
{
    KH_GEN_CTX *g = genctx;

    if (params == NULL || params[0].key == NULL) {
        return 1;
    }
    return EVP_PKEY_CTX_set_params(g->pctx, params) > 0;
}

static const OSSL_PARAM *km_rsa_gen_settable(void *genctx, void *provctx)
{
    return default_table(provctx, "RSA", TBL_GEN_SETTABLE);
}

static const OSSL_PARAM *km_ec_gen_settable(void *genctx, void *provctx)
{
    return default_table(provctx, "EC", TBL_GEN_SETTABLE);
}

static void *km_gen(void *genctx, OSSL_CALLBACK *cb, void *cbarg)
{
    KH_GEN_CTX *g = genctx;
    EVP_PKEY *pk = NULL;
    int keypair = (g->selection & OSSL_KEYMGMT_SELECT_KEYPAIR) != 0;

    if (EVP_PKEY_generate(g->pctx, &pk) <= 0) {
        return NULL;
    }
    return kh_key_new(g->prov, NULL, NULL, pk,
                      keypair ? KH_KEY_SOFTWARE : 0, NULL);
}

static void km_gen_cleanup(void *genctx)
{
    KH_GEN_CTX *g = genctx;

    if (g != NULL) {
        EVP_PKEY_CTX_free(g->pctx);
        OPENSSL_free(g);
    }
}

/* Only keys that are not hardware keys take new values (TLS peer keys). */
static int km_set_params(void *keydata, const OSSL_PARAM params[])
{
    KH_KEY *key = keydata;
    EVP_PKEY *pub;
    int ok;

    if (key == NULL || key->ops != NULL || (pub = kh_key_pub(key)) == NULL) {
        return 0;
    }
    /* the bytes would no longer say what the key is */
    kh_key_drop_raw(key);
    ok = EVP_PKEY_set_params(pub, (OSSL_PARAM *)params);
    key->bits = EVP_PKEY_get_bits(pub);
    key->secbits = EVP_PKEY_get_security_bits(pub);
    key->size = EVP_PKEY_get_size(pub);
    return ok;
}

static const OSSL_PARAM *km_rsa_settable_params(void *provctx)
{
    return default_table(provctx, "RSA", TBL_SETTABLE);
}

static const OSSL_PARAM *km_ec_settable_params(void *provctx)
{
    return default_table(provctx, "EC", TBL_SETTABLE);
}

#define KM_COMMON \
    { OSSL_FUNC_KEYMGMT_NEW, (void (*)(void))km_new }, \
    { OSSL_FUNC_KEYMGMT_FREE, (void (*)(void))km_free }, \
    { OSSL_FUNC_KEYMGMT_HAS, (void (*)(void))km_has }, \
    { OSSL_FUNC_KEYMGMT_MATCH, (void (*)(void))km_match }, \
    { OSSL_FUNC_KEYMGMT_VALIDATE, (void (*)(void))km_validate }, \
    { OSSL_FUNC_KEYMGMT_EXPORT, (void (*)(void))km_export }, \
    { OSSL_FUNC_KEYMGMT_GET_PARAMS, (void (*)(void))km_get_params }, \
    { OSSL_FUNC_KEYMGMT_DUP, (void (*)(void))km_dup }, \
    { OSSL_FUNC_KEYMGMT_SET_PARAMS, (void (*)(void))km_set_params }, \
    { OSSL_FUNC_KEYMGMT_GEN_SET_TEMPLATE, \
      (void (*)(void))km_gen_set_template }, \
    { OSSL_FUNC_KEYMGMT_GEN_SET_PARAMS, (void (*)(void))km_gen_set_params }, \
    { OSSL_FUNC_KEYMGMT_GEN, (void (*)(void))km_gen }, \
    { OSSL_FUNC_KEYMGMT_GEN_CLEANUP, (void (*)(void))km_gen_cleanup }

const OSSL_DISPATCH kh_rsa_keymgmt_functions[] = {
    KM_COMMON,
    { OSSL_FUNC_KEYMGMT_IMPORT, (void (*)(void))km_rsa_import },
    { OSSL_FUNC_KEYMGMT_IMPORT_TYPES, (void (*)(void))km_rsa_import_types },
    { OSSL_FUNC_KEYMGMT_EXPORT_TYPES, (void (*)(void))km_rsa_import_types },
    { OSSL_FUNC_KEYMGMT_GETTABLE_PARAMS,
      (void (*)(void))km_rsa_gettable_params },
    { OSSL_FUNC_KEYMGMT_LOAD, (void (*)(void))km_rsa_load },
    { OSSL_FUNC_KEYMGMT_GEN_INIT, (void (*)(void))km_rsa_gen_init },
    { OSSL_FUNC_KEYMGMT_GEN_SETTABLE_PARAMS,
      (void (*)(void))km_rsa_gen_settable },
    { OSSL_FUNC_KEYMGMT_SETTABLE_PARAMS,
      (void (*)(void))km_rsa_settable_params },
    { OSSL_FUNC_KEYMGMT_QUERY_OPERATION_NAME,
      (void (*)(void))km_rsa_query_name },
    { 0, NULL }
};

const OSSL_DISPATCH kh_ec_keymgmt_functions[] = {
    KM_COMMON,
    { OSSL_FUNC_KEYMGMT_IMPORT, (void (*)(void))km_ec_import },
    { OSSL_FUNC_KEYMGMT_IMPORT_TYPES, (void (*)(void))km_ec_import_types },
    { OSSL_FUNC_KEYMGMT_EXPORT_TYPES, (void (*)(void))km_ec_import_types },
    { OSSL_FUNC_KEYMGMT_GETTABLE_PARAMS,
      (void (*)(void))km_ec_gettable_params },
    { OSSL_FUNC_KEYMGMT_LOAD, (void (*)(void))km_ec_load },
    { OSSL_FUNC_KEYMGMT_GEN_INIT, (void (*)(void))km_ec_gen_init },
    { OSSL_FUNC_KEYMGMT_GEN_SETTABLE_PARAMS,
      (void (*)(void))km_ec_gen_settable },
    { OSSL_FUNC_KEYMGMT_SETTABLE_PARAMS,
      (void (*)(void))km_ec_settable_params },
    { OSSL_FUNC_KEYMGMT_QUERY_OPERATION_NAME,
      (void (*)(void))km_ec_query_name },
    { 0, NULL }
};
