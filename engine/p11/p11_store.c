/* SPDX-License-Identifier: MIT */
/*
 * OSSL_STORE loader for RFC 7512 pkcs11: URIs, and the resolver the key
 * reference decoder uses. A URI must name one token and at most one private
 * key: anything else is an error that lists the candidates, raised before
 * any login or signature.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/core_object.h>
#include <openssl/err.h>
#include <openssl/store.h>

#include "internal.h"
#include "kh_p11util.h"

#define MAX_TOKENS 16
#define MAX_OBJS 64

enum item_kind { ITEM_PRIV, ITEM_PUB, ITEM_CERT };

struct item {
    enum item_kind kind;
    KH_KEY *key;            /* ITEM_PRIV */
    unsigned char *der;     /* ITEM_PUB (SPKI), ITEM_CERT */
    size_t derlen;
    const char *type;       /* "RSA"/"EC" for keys */
};

typedef struct p11_store_ctx {
    KH_PROV_CTX *prov;
    KH_P11_URI *u;
    char *uri;              /* normalised, never with pin-value */
    int expect;             /* OSSL_STORE_INFO_* or 0 */
    int gathered;
    int failed;
    struct item *items;
    size_t nitems, next;
} P11_STORE;

static OSSL_FUNC_store_open_fn st_open;
static OSSL_FUNC_store_settable_ctx_params_fn st_settable;
static OSSL_FUNC_store_set_ctx_params_fn st_set_params;
static OSSL_FUNC_store_load_fn st_load;
static OSSL_FUNC_store_eof_fn st_eof;
static OSSL_FUNC_store_close_fn st_close;
static OSSL_FUNC_store_export_object_fn st_export_object;

static void items_free(P11_STORE *st)
{
    size_t i;

    for (i = 0; i < st->nitems; i++) {
        kh_key_free(st->items[i].key);
        OPENSSL_free(st->items[i].der);
    }
    OPENSSL_free(st->items);
    st->items = NULL;
    st->nitems = 0;
}

static int item_add(P11_STORE *st, struct item *it)
{
    struct item *n = OPENSSL_realloc(st->items,
                                     (st->nitems + 1) * sizeof(*n));

    if (n == NULL) {
        return 0;
    }
    st->items = n;
    st->items[st->nitems++] = *it;
    return 1;
}

static void *st_open(void *provctx, const char *uri)
{
    KH_PROV_CTX *prov = provctx;
    P11_STORE *st;
    char err[256];

    st = OPENSSL_zalloc(sizeof(*st));
    if (st == NULL) {
        KH_raise(prov, KH_R_MALLOC, "out of memory");
        return NULL;
    }
    st->prov = prov;
    if (!kh_p11_uri_parse(uri, &st->u, err, sizeof(err))) {
        KH_raise(prov, KH_R_BAD_URI, "%s", err);
        OPENSSL_free(st);
        return NULL;
    }
    st->uri = kh_p11_uri_format(st->u, KH_URI_FMT_MODULE
                                           | KH_URI_FMT_PIN_SOURCE);
    if (st->uri == NULL) {
        KH_raise(prov, KH_R_MALLOC, "out of memory");
        kh_p11_uri_free(st->u);
        OPENSSL_free(st);
        return NULL;
    }
    return st;
}

static const OSSL_PARAM *st_settable(void *provctx)
{
    static const OSSL_PARAM tbl[] = {
        OSSL_PARAM_int(OSSL_STORE_PARAM_EXPECT, NULL),
        OSSL_PARAM_END
    };

    return tbl;
}

static int st_set_params(void *loaderctx, const OSSL_PARAM params[])
{
    P11_STORE *st = loaderctx;
    const OSSL_PARAM *p;

    p = OSSL_PARAM_locate_const(params, OSSL_STORE_PARAM_EXPECT);
    if (p != NULL && !OSSL_PARAM_get_int(p, &st->expect)) {
        return 0;
    }
    /* Searches (subject, issuer/serial, fingerprint, alias) are not
     * offered: a pkcs11 URI names its objects itself. */
    return 1;
}

static const char *module_path_of(KH_PROV_CTX *prov, const KH_P11_URI *u)
{
    if (u->module_path != NULL) {
        return u->module_path;
    }
    if (prov->module_path != NULL) {
        return prov->module_path;
    }
    return KH_DEFAULT_P11_MODULE;
}

static CK_ULONG obj_template(const KH_P11_URI *u, CK_OBJECT_CLASS *cls,
                             CK_ATTRIBUTE *tmpl);
static void describe_obj(KH_P11_TOKEN *tok, CK_SESSION_HANDLE sess,
                         CK_OBJECT_HANDLE h, char *buf, size_t len);

/*
 * Keys the URI names that are visible without logging in: public keys and
 * certificates, counted by distinct CKA_ID (a key pair and its certificate
 * are one candidate). Private keys are usually invisible before login, and
 * a login must not be spent on a URI that turns out to be ambiguous.
 * Returns the count (0 when the token has no public twins), -1 on error.
 */
static int public_candidates(KH_PROV_CTX *prov, KH_P11_TOKEN *tok,
                             const KH_P11_URI *u, char *list, size_t listlen)
{
    static const CK_OBJECT_CLASS classes[2] = { CKO_PUBLIC_KEY,
                                                CKO_CERTIFICATE };
    unsigned char ids[MAX_OBJS][64];
    size_t idlens[MAX_OBJS], nids = 0, off = 0, i, c;
    CK_SESSION_HANDLE sess = CK_INVALID_HANDLE;
    CK_OBJECT_HANDLE objs[MAX_OBJS];
    CK_ULONG n, nt, j;
    char desc[300];

    if (list != NULL && listlen > 0) {
        list[0] = '\0';
    }
    if (kh_p11_session_get(prov, tok, &sess) != CKR_OK) {
        return -1;
    }
    for (c = 0; c < 2; c++) {
        CK_OBJECT_CLASS cls = classes[c];
        CK_ATTRIBUTE tmpl[3];

        nt = obj_template(u, &cls, tmpl);
        if (kh_p11_find_objects(tok, sess, tmpl, nt, objs, MAX_OBJS, &n)
            != CKR_OK) {
            continue;
        }
        for (j = 0; j < n && nids < MAX_OBJS; j++) {
            unsigned char id[64];
            CK_ATTRIBUTE a = { CKA_ID, id, sizeof(id) };

            if (tok->mod->fl->C_GetAttributeValue(sess, objs[j], &a, 1)
                    != CKR_OK
                || a.ulValueLen > sizeof(id)) {
                continue;
            }
            for (i = 0; i < nids; i++) {
                if (idlens[i] == a.ulValueLen
                    && memcmp(ids[i], id, a.ulValueLen) == 0) {
                    break;
                }
            }
            if (i < nids) {
                continue;
            }
            memcpy(ids[nids], id, a.ulValueLen);
            idlens[nids++] = a.ulValueLen;
            if (list != NULL && off < listlen) {
                describe_obj(tok, sess, objs[j], desc, sizeof(desc));
                off += (size_t)snprintf(list + off, listlen - off, "%s%s",
                                        off ? "; " : "", desc);
            }
        }
    }
    kh_p11_session_put(tok, sess);
    return (int)nids;
}

/*
 * Finds the one token the URI names. When several match, the one that
 * holds the key (seen through its public twins, without login) is taken;
 * otherwise the error lists the candidates.
 */
static KH_P11_TOKEN *find_token(KH_PROV_CTX *prov, const KH_P11_URI *u,
                                const char *uri)
{
    KH_P11_MODULE *mod;
    KH_P11_TOKEN *found[MAX_TOKENS], *with = NULL;
    size_t n = 0, i, nwith = 0;
    char list[1024], desc[160];
    size_t off = 0;

    if (u->module_name != NULL && u->module_path == NULL) {
        KH_raise(prov, KH_R_UNSUPPORTED,
                 "module-name is not supported; use module-path= in the URI "
                 "or pkcs11-module-path in the provider config");
        return NULL;
    }
    mod = kh_p11_module_get(prov, module_path_of(prov, u));
    if (mod == NULL) {
        return NULL;
    }
    /*
     * None found: SoftHSM may have read its token files while another
     * process rewrote one; in a process that has no session of the module
     * yet, initialise it again and look again (bounded).
     */
    for (i = 0;; i++) {
        if (!kh_p11_tokens_match(prov, mod, u, found, MAX_TOKENS, &n)) {
            return NULL;
        }
        if (n > 0 || i == 3) {
            break;
        }
        usleep((useconds_t)(10000u << i));
        if (!kh_p11_module_rescan(prov, mod)) {
            break;
        }
        KH_debug("no token matched %s: module initialised again", uri);
    }
    if (n == 0) {
        KH_raise(prov, KH_R_NO_TOKEN,
                 "no token in %s matches %s (keyhold status lists tokens)",
                 mod->path, uri);
        return NULL;
    }
    if (n == 1) {
        return found[0];
    }
    if (n > MAX_TOKENS) {
        n = MAX_TOKENS;
    }
    list[0] = '\0';
    for (i = 0; i < n; i++) {
        int c = (u->object != NULL || u->has_id)
                    ? public_candidates(prov, found[i], u, NULL, 0) : 0;

        if (c > 0) {
            with = found[i];
            nwith++;
        }
        if (c > 0) {
            kh_p11_token_describe(found[i], desc, sizeof(desc));
            if (off < sizeof(list)) {
                off += (size_t)snprintf(list + off, sizeof(list) - off,
                                        "%s%s", off ? "; " : "", desc);
            }
        }
    }
    if (nwith == 1) {
        return with;
    }
    if (nwith == 0) {
        /* nothing visible without login: every matching token is listed */
        off = 0;
        list[0] = '\0';
        for (i = 0; i < n && off < sizeof(list); i++) {
            kh_p11_token_describe(found[i], desc, sizeof(desc));
            off += (size_t)snprintf(list + off, sizeof(list) - off, "%s%s",
                                    i ? "; " : "", desc);
        }
    }
    KH_raise(prov, KH_R_AMBIGUOUS,
             "%zu tokens match %s: %s (add token= or serial= to the URI)",
             nwith > 1 ? nwith : n, uri, list);
    return NULL;
}

static void describe_obj(KH_P11_TOKEN *tok, CK_SESSION_HANDLE sess,
                         CK_OBJECT_HANDLE h, char *buf, size_t len)
{
    unsigned char id[64];
    char label[65], idhex[2 * 64 + 1];
    CK_ATTRIBUTE a[2] = {
        { CKA_LABEL, label, sizeof(label) - 1 },
        { CKA_ID, id, sizeof(id) },
    };

    tok->mod->fl->C_GetAttributeValue(sess, h, a, 2);
    if (a[0].ulValueLen == CK_UNAVAILABLE_INFORMATION
        || a[0].ulValueLen >= sizeof(label)) {
        a[0].ulValueLen = 0;
    }
    label[a[0].ulValueLen] = '\0';
    if (a[1].ulValueLen == CK_UNAVAILABLE_INFORMATION
        || a[1].ulValueLen > sizeof(id)) {
        a[1].ulValueLen = 0;
    }
    kh_p11_hex(id, a[1].ulValueLen, idhex, sizeof(idhex));
    snprintf(buf, len, "object=%s id=%s", label, idhex);
}

static CK_ULONG obj_template(const KH_P11_URI *u, CK_OBJECT_CLASS *cls,
                             CK_ATTRIBUTE *tmpl)
{
    CK_ULONG n = 0;

    tmpl[n].type = CKA_CLASS;
    tmpl[n].pValue = cls;
    tmpl[n].ulValueLen = sizeof(*cls);
    n++;
    if (u->object != NULL) {
        tmpl[n].type = CKA_LABEL;
        tmpl[n].pValue = u->object;
        tmpl[n].ulValueLen = strlen(u->object);
        n++;
    }
    if (u->has_id) {
        tmpl[n].type = CKA_ID;
        tmpl[n].pValue = u->id;
        tmpl[n].ulValueLen = u->idlen;
        n++;
    }
    return n;
}

static int find_private(P11_STORE *st, KH_P11_TOKEN *tok,
                        CK_SESSION_HANDLE sess, KH_KEY **out)
{
    KH_PROV_CTX *prov = st->prov;
    CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
    CK_ATTRIBUTE tmpl[3];
    CK_OBJECT_HANDLE objs[MAX_OBJS];
    CK_ULONG n = 0, nt, i;
    KH_P11_KEY *pk = NULL;
    EVP_PKEY *pub = NULL;
    KH_PUB_RAW raw;
    unsigned char *rbuf1 = NULL, *rbuf2 = NULL;
    unsigned int flags = 0;
    CK_KEY_TYPE kt;
    char list[1024], desc[300], tdesc[160];
    size_t off = 0;
    CK_RV rv;

    *out = NULL;
    nt = obj_template(st->u, &cls, tmpl);
    rv = kh_p11_find_objects(tok, sess, tmpl, nt, objs, MAX_OBJS, &n);
    if (rv != CKR_OK) {
        KH_raise(prov, KH_R_MODULE, "C_FindObjects: %s", kh_ckr_name(rv));
        return 0;
    }
    kh_p11_token_describe(tok, tdesc, sizeof(tdesc));
    if (n == 0) {
        return 1;
    }
    if (n > 1) {
        list[0] = '\0';
        for (i = 0; i < n; i++) {
            describe_obj(tok, sess, objs[i], desc, sizeof(desc));
            off += (size_t)snprintf(list + off, off < sizeof(list)
                                                    ? sizeof(list) - off : 0,
                                    "%s%s", i ? "; " : "", desc);
            if (off >= sizeof(list)) {
                break;
            }
        }
        KH_raise(prov, KH_R_AMBIGUOUS,
                 "%lu private keys in %s match %s: %s (add object= or id= "
                 "to the URI)", (unsigned long)n, tdesc, st->uri, list);
        return 0;
    }
    /* Its type, id, label and usage, in one token call. */
    pk = kh_p11_key_new(prov, tok, sess, objs[0], 0, &flags);
    if (pk == NULL) {
        return 0;
    }
    kt = pk->ktype;
    if (kt != CKK_RSA && kt != CKK_EC) {
        kh_p11_ops.key_free(pk);
        KH_raise(prov, KH_R_UNSUPPORTED,
                 "%s: the key %s is neither RSA nor EC", tdesc, st->uri);
        return 0;
    }
    /*
     * The public half as bytes from the token: the EVP_PKEY is built only
     * when something needs it (start-up to the first signature never
     * does). Only a key whose public half is in a certificate alone is
     * built now.
     */
    if (kh_p11_public_raw(tok, sess, objs[0], kt, pk->id, pk->idlen, &raw,
                          &rbuf1, &rbuf2)) {
        /* kh_key_new_raw owns pk from here, also when it fails */
        *out = kh_key_new_raw(prov, &kh_p11_ops, pk, &raw, flags, st->uri);
        OPENSSL_free(rbuf1);
        OPENSSL_free(rbuf2);
        if (*out == NULL) {
            KH_raise(prov, KH_R_PUBLIC_KEY, "%s: the public half of %s "
                     "could not be read", tdesc, st->uri);
            return 0;
        }
        kh_p11_key_set_bits(pk, (*out)->bits);
    } else {
        pub = kh_p11_public_half(prov, tok, sess, objs[0], kt, pk->id,
                                 pk->idlen);
        if (pub == NULL) {
            kh_p11_ops.key_free(pk);
            KH_raise(prov, KH_R_PUBLIC_KEY,
                     "%s: no public key for %s (no public key object, public "
                     "attributes or certificate with its CKA_ID)", tdesc,
                     st->uri);
            return 0;
        }
        kh_p11_key_set_bits(pk, EVP_PKEY_get_bits(pub));
        *out = kh_key_new(prov, &kh_p11_ops, pk, pub, flags, st->uri);
        if (*out == NULL) {
            KH_raise(prov, KH_R_MALLOC, "out of memory");
            return 0;
        }
    }
    KH_debug("%s: private key %s loaded (%s, %d bits)", tdesc, st->uri,
             kt == CKK_RSA ? "RSA" : "EC", (*out)->bits);
    return 1;
}

static int find_public(P11_STORE *st, KH_P11_TOKEN *tok,
                       CK_SESSION_HANDLE sess, CK_OBJECT_CLASS want)
{
    KH_PROV_CTX *prov = st->prov;
    CK_OBJECT_CLASS cls = want;
    CK_ATTRIBUTE tmpl[3];
    CK_OBJECT_HANDLE objs[MAX_OBJS];
    CK_ULONG n = 0, nt, i;
    CK_RV rv;

    nt = obj_template(st->u, &cls, tmpl);
    rv = kh_p11_find_objects(tok, sess, tmpl, nt, objs, MAX_OBJS, &n);
    if (rv != CKR_OK) {
        KH_raise(prov, KH_R_MODULE, "C_FindObjects: %s", kh_ckr_name(rv));
        return 0;
    }
    for (i = 0; i < n; i++) {
        struct item it;

        memset(&it, 0, sizeof(it));
        if (want == CKO_CERTIFICATE) {
            CK_ATTRIBUTE a = { CKA_VALUE, NULL, 0 };

            if (tok->mod->fl->C_GetAttributeValue(sess, objs[i], &a, 1)
                    != CKR_OK
                || a.ulValueLen == 0 || a.ulValueLen > 65536) {
                continue;
            }
            it.der = OPENSSL_malloc(a.ulValueLen);
            if (it.der == NULL) {
                return 0;
            }
            a.pValue = it.der;
            if (tok->mod->fl->C_GetAttributeValue(sess, objs[i], &a, 1)
                != CKR_OK) {
                OPENSSL_free(it.der);
                continue;
            }
            it.kind = ITEM_CERT;
            it.derlen = a.ulValueLen;
        } else {
            EVP_PKEY *pk = kh_p11_pubkey_from_object(prov, tok, sess,
                                                     objs[i]);
            unsigned char *der = NULL;
            int len;

            if (pk == NULL) {
                continue;
            }
            len = i2d_PUBKEY(pk, &der);
            it.type = EVP_PKEY_is_a(pk, "RSA") ? "RSA" : "EC";
            EVP_PKEY_free(pk);
            if (len <= 0) {
                continue;
            }
            it.kind = ITEM_PUB;
            it.der = der;
            it.derlen = (size_t)len;
        }
        if (!item_add(st, &it)) {
            OPENSSL_free(it.der);
            return 0;
        }
    }
    return 1;
}

/*
 * Collects what the URI names, in the order apps want them: the private
 * key first, then public keys, then certificates.
 */
static int gather(P11_STORE *st, OSSL_PASSPHRASE_CALLBACK *pw_cb,
                  void *pw_cbarg, int priv_only)
{
    KH_PROV_CTX *prov = st->prov;
    const KH_P11_URI *u = st->u;
    KH_P11_TOKEN *tok;
    CK_SESSION_HANDLE sess = CK_INVALID_HANDLE;
    int want_priv, want_pub, want_cert, ok = 0;
    KH_KEY *key = NULL;
    CK_RV rv;

    want_priv = (u->type == KH_URI_TYPE_ANY || u->type == KH_URI_TYPE_PRIVATE)
                && (st->expect == 0 || st->expect == OSSL_STORE_INFO_PKEY);
    want_pub = !priv_only
               && (u->type == KH_URI_TYPE_ANY || u->type == KH_URI_TYPE_PUBLIC)
               && (st->expect == 0 || st->expect == OSSL_STORE_INFO_PUBKEY);
    want_cert = !priv_only
                && (u->type == KH_URI_TYPE_ANY || u->type == KH_URI_TYPE_CERT)
                && (st->expect == 0 || st->expect == OSSL_STORE_INFO_CERT);
    if (u->type == KH_URI_TYPE_SECRET_KEY || u->type == KH_URI_TYPE_DATA) {
        KH_raise(prov, KH_R_UNSUPPORTED,
                 "%s: only private keys, public keys and certificates load",
                 st->uri);
        return 0;
    }
    tok = find_token(prov, u, st->uri);
    if (tok == NULL) {
        return 0;
    }
    if (want_priv && kh_p11_token_needs_login(tok)) {
        char list[1024];
        int c = public_candidates(prov, tok, u, list, sizeof(list));

        if (c > 1) {
            KH_raise(prov, KH_R_AMBIGUOUS,
                     "%d keys match %s: %s (add object= or id= to the URI; "
                     "not logged in)", c, st->uri, list);
            return 0;
        }
    }
    if (want_priv) {
        int soft = u->type == KH_URI_TYPE_ANY && st->expect == 0;

        ERR_set_mark();
        if (!kh_p11_token_login(prov, tok, u, pw_cb, pw_cbarg)) {
            /* A general listing without any PIN source still shows the
             * public objects; a wrong PIN or a locked token is an error. */
            if (soft && ERR_GET_REASON(ERR_peek_last_error()) == KH_R_NO_PIN) {
                ERR_pop_to_mark();
                want_priv = 0;
            } else {
                ERR_clear_last_mark();
                return 0;
            }
        } else {
            ERR_clear_last_mark();
        }
    }
    rv = kh_p11_session_get(prov, tok, &sess);
    if (rv != CKR_OK) {
        KH_raise(prov, KH_R_SESSION, "C_OpenSession: %s", kh_ckr_name(rv));
        return 0;
    }
    if (want_priv) {
        if (!find_private(st, tok, sess, &key)) {
            goto end;
        }
        if (key != NULL) {
            struct item it;

            memset(&it, 0, sizeof(it));
            it.kind = ITEM_PRIV;
            it.key = key;
            it.type = kh_key_type_name(key);
            if (!item_add(st, &it)) {
                kh_key_free(key);
                goto end;
            }
        }
    }
    if (want_pub && !find_public(st, tok, sess, CKO_PUBLIC_KEY)) {
        goto end;
    }
    if (want_cert && !find_public(st, tok, sess, CKO_CERTIFICATE)) {
        goto end;
    }
    ok = 1;
end:
    kh_p11_session_put(tok, sess);
    return ok;
}

static int st_load(void *loaderctx, OSSL_CALLBACK *object_cb,
                   void *object_cbarg, OSSL_PASSPHRASE_CALLBACK *pw_cb,
                   void *pw_cbarg)
{
    P11_STORE *st = loaderctx;
    OSSL_PARAM params[5];
    struct item *it;
    KH_OBJ_REF ref;
    int objtype, n = 0;

    if (!st->gathered) {
        st->gathered = 1;
        if (!gather(st, pw_cb, pw_cbarg, 0)) {
            st->failed = 1;
            return 0;
        }
        if (st->nitems == 0) {
            KH_raise(st->prov, KH_R_NO_OBJECT, "no object matches %s%s",
                     st->uri,
                     st->expect == OSSL_STORE_INFO_PKEY
                         ? " (looking for a private key)" : "");
            st->failed = 1;
            return 0;
        }
    }
    if (st->next >= st->nitems) {
        return 0;
    }
    it = &st->items[st->next++];
    switch (it->kind) {
    case ITEM_PRIV:
        objtype = OSSL_OBJECT_PKEY;
        ref.magic = KH_KEYREF_MAGIC;
        ref.key = it->key;
        params[n++] = OSSL_PARAM_construct_int(OSSL_OBJECT_PARAM_TYPE,
                                               &objtype);
        params[n++] = OSSL_PARAM_construct_utf8_string(
            OSSL_OBJECT_PARAM_DATA_TYPE, (char *)it->type, 0);
        params[n++] = OSSL_PARAM_construct_octet_string(
            OSSL_OBJECT_PARAM_REFERENCE, &ref, sizeof(ref));
        break;
    case ITEM_PUB:
        objtype = OSSL_OBJECT_PKEY;
        params[n++] = OSSL_PARAM_construct_int(OSSL_OBJECT_PARAM_TYPE,
                                               &objtype);
        params[n++] = OSSL_PARAM_construct_utf8_string(
            OSSL_OBJECT_PARAM_DATA_TYPE, (char *)it->type, 0);
        params[n++] = OSSL_PARAM_construct_utf8_string(
            OSSL_OBJECT_PARAM_DATA_STRUCTURE, "SubjectPublicKeyInfo", 0);
        params[n++] = OSSL_PARAM_construct_octet_string(
            OSSL_OBJECT_PARAM_DATA, it->der, it->derlen);
        break;
    case ITEM_CERT:
    default:
        objtype = OSSL_OBJECT_CERT;
        params[n++] = OSSL_PARAM_construct_int(OSSL_OBJECT_PARAM_TYPE,
                                               &objtype);
        params[n++] = OSSL_PARAM_construct_octet_string(
            OSSL_OBJECT_PARAM_DATA, it->der, it->derlen);
        break;
    }
    params[n] = OSSL_PARAM_construct_end();
    return object_cb(params, object_cbarg);
}

static int st_eof(void *loaderctx)
{
    P11_STORE *st = loaderctx;

    return st->failed || (st->gathered && st->next >= st->nitems);
}

static int st_close(void *loaderctx)
{
    P11_STORE *st = loaderctx;

    if (st == NULL) {
        return 1;
    }
    items_free(st);
    kh_p11_uri_free(st->u);
    free(st->uri);
    OPENSSL_free(st);
    return 1;
}

/*
 * Asked when libcrypto picked another provider's keymgmt for our key: only
 * public keys (never a private key's public half) are exported, so that
 * libcrypto falls back to keyhold's own keymgmt for private keys.
 */
static int st_export_object(void *loaderctx, const void *reference,
                            size_t reference_sz, OSSL_CALLBACK *export_cb,
                            void *export_cbarg)
{
    return 0;
}

const OSSL_DISPATCH kh_p11_store_functions[] = {
    { OSSL_FUNC_STORE_OPEN, (void (*)(void))st_open },
    { OSSL_FUNC_STORE_SETTABLE_CTX_PARAMS, (void (*)(void))st_settable },
    { OSSL_FUNC_STORE_SET_CTX_PARAMS, (void (*)(void))st_set_params },
    { OSSL_FUNC_STORE_LOAD, (void (*)(void))st_load },
    { OSSL_FUNC_STORE_EOF, (void (*)(void))st_eof },
    { OSSL_FUNC_STORE_CLOSE, (void (*)(void))st_close },
    { OSSL_FUNC_STORE_EXPORT_OBJECT, (void (*)(void))st_export_object },
    { 0, NULL }
};

int kh_p11_resolve(KH_PROV_CTX *prov, const char *uri,
                   OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_cbarg,
                   KH_KEY **key)
{
    P11_STORE *st;
    int ok = 0;

    *key = NULL;
    st = st_open(prov, uri);
    if (st == NULL) {
        return 0;
    }
    st->expect = OSSL_STORE_INFO_PKEY;
    if (!gather(st, pw_cb, pw_cbarg, 1)) {
        goto end;
    }
    if (st->nitems == 0 || st->items[0].kind != ITEM_PRIV) {
        KH_raise(prov, KH_R_NO_OBJECT, "no private key matches %s", st->uri);
        goto end;
    }
    *key = kh_key_up_ref(st->items[0].key);
    ok = 1;
end:
    st_close(st);
    return ok;
}
