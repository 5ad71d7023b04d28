/* SPDX-License-Identifier: MIT */
/*
 * The TPM backend as the provider sees it: the backend operations table
 * (sign, decrypt) over engine/tpm's ESAPI core, an OSSL_STORE for "tpm2:"
 * URIs, the resolver for tpm2: URIs in key references, and the key maker
 * for "TSS2 PRIVATE KEY" files the provider's decoders (engine/decoder.c)
 * find. All of it lives in keyhold-tpm.so, loaded on first use
 * (engine/kh_tpm_module.h).
 *
 * URIs:
 *   tpm2:handle=0x81000010                 a persistent key
 *   tpm2:file=/var/lib/keyhold/x/key.tss   a TSS2 PRIVATE KEY file
 * followed by optional attributes (after ';' or '?', joined by ';' or '&'):
 *   pin-source=file:/path   the key's auth value, read from a file
 *   pin-source=credential:NAME   ... from $CREDENTIALS_DIRECTORY/NAME
 *   pin-value=SECRET        the auth value inline (tests only)
 * Values are percent-decoded. A key file whose emptyAuth flag is clear and
 * that has no pin-source asks the passphrase callback once.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/core_dispatch.h>
#include <openssl/core_names.h>
#include <openssl/core_object.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/store.h>
#include <openssl/x509.h>

#include "keyhold.h"
#include "kh_pin.h"
#include "internal.h"
#include "kh_tpm_module.h"

#define TPM_URI_MAX 4096

/* ---- errors ---------------------------------------------------------- */

static int reason_of(enum kh_tpm_rc rc, int dflt)
{
    switch (rc) {
    case KH_TPM_ERR_AUTH:
        return KH_R_LOGIN;
    case KH_TPM_ERR_LOCKOUT:
        return KH_R_PIN_LOCKED;
    case KH_TPM_ERR_COMM:
        return KH_R_TOKEN_GONE;
    case KH_TPM_ERR_INPUT:
        return KH_R_BAD_URI;
    case KH_TPM_ERR_NOTFOUND:
        return KH_R_NO_OBJECT;
    case KH_TPM_ERR_UNSUPPORTED:
        return KH_R_UNSUPPORTED;
    default:
        return dflt;
    }
}

/* ---- backend operations --------------------------------------------- */

/* 1 when |sig| is an RSA-PSS signature of |tbs| with that salt length. */
static int pss_verifies(KH_KEY *key, EVP_MD *md, int saltlen,
                        const unsigned char *sig, size_t siglen,
                        const unsigned char *tbs, size_t tbslen)
{
    EVP_PKEY_CTX *ctx;
    int ok = 0;

    ctx = EVP_PKEY_CTX_new_from_pkey(key->prov->libctx, key->pub, NULL);
    ERR_set_mark();
    if (ctx != NULL && EVP_PKEY_verify_init(ctx) > 0
        && EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PSS_PADDING) > 0
        && EVP_PKEY_CTX_set_signature_md(ctx, md) > 0
        && EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, md) > 0
        && EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, saltlen) > 0) {
        ok = EVP_PKEY_verify(ctx, sig, siglen, tbs, tbslen) == 1;
    }
    ERR_pop_to_mark();
    EVP_PKEY_CTX_free(ctx);
    return ok;
}

/*
 * Checks the TPM's PSS signature against the salt length asked for and
 * returns the salt length the TPM used (digest length or maximal), -1 when
 * neither verifies.
 */
static int tpm_pss_salt(KH_KEY *key, const KH_SIGN_PARAMS *p,
                        const unsigned char *sig, size_t siglen,
                        const unsigned char *tbs, size_t tbslen)
{
    EVP_MD *md;
    int cand[3], i, found = -1;

    md = EVP_MD_fetch(key->prov->libctx, OBJ_nid2sn(p->md_nid), NULL);
    if (md == NULL) {
        return -1;
    }
    cand[0] = p->saltlen;
    cand[1] = (int)tbslen;
    cand[2] = (key->bits - 1 + 7) / 8 - (int)tbslen - 2;
    for (i = 0; i < 3 && found < 0; i++) {
        if ((i == 0 || cand[i] != cand[0]) && cand[i] >= 0
            && pss_verifies(key, md, cand[i], sig, siglen, tbs, tbslen)) {
            found = cand[i];
        }
    }
    EVP_MD_free(md);
    return found;
}

static int tpm_sign(KH_KEY *key, const KH_SIGN_PARAMS *p, unsigned char *sig,
                    size_t *siglen, size_t sigsize, const unsigned char *tbs,
                    size_t tbslen)
{
    KH_TPM_KEY *k = key->bkey;
    enum kh_tpm_sig scheme;
    enum kh_tpm_rc rc;
    char err[512];
    int known;

    switch (p->scheme) {
    case KH_SIG_ECDSA:
        scheme = KH_TPM_SIG_ECDSA;
        break;
    case KH_SIG_RSA_PKCS1:
        scheme = KH_TPM_SIG_RSA_PKCS1;
        break;
    case KH_SIG_RSA_PSS:
        scheme = KH_TPM_SIG_RSA_PSS;
        /* TPM2_Sign with RSAPSS uses MGF1 with the signing digest. */
        if (p->mgf1_md_nid != NID_undef && p->mgf1_md_nid != p->md_nid) {
            KH_raise(key->prov, KH_R_UNSUPPORTED, "TPM RSA-PSS needs the "
                     "MGF1 digest to be the signature digest");
            return 0;
        }
        break;
    default:
        KH_raise(key->prov, KH_R_UNSUPPORTED, "unknown signature scheme");
        return 0;
    }
    /*
     * The TPM picks the PSS salt itself; its choice per digest is learnt
     * from the first signature (checked in software) and a request it
     * cannot meet is refused before the TPM is asked again.
     */
    known = scheme == KH_TPM_SIG_RSA_PSS ? kh_tpm_key_pss_salt(k, p->md_nid)
                                         : -1;
    if (known >= 0 && known != p->saltlen) {
        KH_raise(key->prov, KH_R_UNSUPPORTED, "this TPM makes RSA-PSS "
                 "signatures with a %d-byte salt, not the %d bytes asked for",
                 known, p->saltlen);
        return 0;
    }
    rc = kh_tpm_key_sign(k, scheme, p->md_nid, p->saltlen, tbs, tbslen, sig,
                         siglen, sigsize, err, sizeof(err));
    if (rc != KH_TPM_OK) {
        KH_raise(key->prov, reason_of(rc, KH_R_SIGN), "%s", err);
        return 0;
    }
    if (scheme == KH_TPM_SIG_RSA_PSS && known < 0) {
        known = tpm_pss_salt(key, p, sig, *siglen, tbs, tbslen);
        if (known >= 0) {
            kh_tpm_key_pss_salt_set(k, p->md_nid, known);
        }
        if (known != p->saltlen) {
            KH_raise(key->prov, KH_R_UNSUPPORTED, "the TPM made an RSA-PSS "
                     "signature whose salt is not the %d bytes asked for "
                     "(it used %d; TLS 1.3 needs the digest length, %zu)",
                     p->saltlen, known, tbslen);
            return 0;
        }
    }
    return 1;
}

static int tpm_decrypt(KH_KEY *key, const KH_DEC_PARAMS *p,
                       unsigned char *out, size_t *outlen, size_t outsize,
                       const unsigned char *in, size_t inlen)
{
    KH_TPM_KEY *k = key->bkey;
    enum kh_tpm_rc rc;
    char err[512];
    int md = NID_undef;

    if (p->scheme == KH_DEC_RSA_OAEP) {
        md = p->oaep_md_nid == NID_undef ? NID_sha1 : p->oaep_md_nid;
        if (p->mgf1_md_nid != NID_undef && p->mgf1_md_nid != md) {
            KH_raise(key->prov, KH_R_UNSUPPORTED, "TPM OAEP needs the MGF1 "
                     "digest to be the OAEP digest");
            return 0;
        }
    }
    rc = kh_tpm_key_decrypt(k, md, p->label, p->labellen, in, inlen, out,
                            outlen, outsize, err, sizeof(err));
    if (rc != KH_TPM_OK) {
        KH_raise(key->prov, reason_of(rc, KH_R_DECRYPT), "%s", err);
        return 0;
    }
    return 1;
}

static void tpm_key_free_op(void *bkey)
{
    kh_tpm_key_free(bkey);
}

static void *tpm_key_up_ref_op(void *bkey)
{
    return kh_tpm_key_up_ref(bkey);
}

static const struct kh_backend_ops tpm_ops = {
    .name = "tpm2",
    .sign = tpm_sign,
    .decrypt = tpm_decrypt,
    .key_free = tpm_key_free_op,
    .key_up_ref = tpm_key_up_ref_op,
};

/* Wraps a TPM key (taking it) into a provider key. */
static KH_KEY *wrap_key(KH_PROV_CTX *prov, KH_TPM_KEY *k, const char *uri)
{
    EVP_PKEY *pub;
    unsigned int flags = 0;
    char err[256];

    pub = kh_tpm_key_public(k, prov->libctx, NULL, err, sizeof(err));
    if (pub == NULL) {
        KH_raise(prov, KH_R_PUBLIC_KEY, "%s", err);
        kh_tpm_key_free(k);
        return NULL;
    }
    if (kh_tpm_key_can_sign(k)) {
        flags |= KH_KEY_CAN_SIGN;
    }
    if (kh_tpm_key_can_decrypt(k)) {
        flags |= KH_KEY_CAN_DECRYPT;
    }
    /* kh_key_new frees k and pub on failure. */
    return kh_key_new(prov, &tpm_ops, k, pub, flags, uri);
}

/* ---- URIs ------------------------------------------------------------ */

typedef struct tpm_uri {
    uint32_t handle;
    char *file;
    char *pin_source;
    char *pin_value;            /* secret: wiped on free */
} TPM_URI;

static void uri_free(TPM_URI *u)
{
    OPENSSL_free(u->file);
    OPENSSL_free(u->pin_source);
    if (u->pin_value != NULL) {
        OPENSSL_clear_free(u->pin_value, strlen(u->pin_value));
    }
    memset(u, 0, sizeof(*u));
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    c = tolower(c);
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    return -1;
}

/* Percent-decodes [s, s+len) into a new string; NULL on bad encoding. */
static char *pct_decode(const char *s, size_t len)
{
    char *out = OPENSSL_malloc(len + 1);
    size_t i, o = 0;

    if (out == NULL) {
        return NULL;
    }
    for (i = 0; i < len; i++) {
        if (s[i] == '%') {
            int h, l;

            if (i + 2 >= len) {
                goto bad;
            }
            h = hexval((unsigned char)s[i + 1]);
            l = hexval((unsigned char)s[i + 2]);
            if (h < 0 || l < 0 || (h == 0 && l == 0)) {
                goto bad;
            }
            out[o++] = (char)(h * 16 + l);
            i += 2;
        } else {
            out[o++] = s[i];
        }
    }
    out[o] = '\0';
    return out;
bad:
    OPENSSL_clear_free(out, len + 1);
    return NULL;
}

static int uri_parse(KH_PROV_CTX *prov, const char *uri, TPM_URI *u)
{
    const char *p, *end, *eq;
    size_t n;

    memset(u, 0, sizeof(*u));
    if (strncasecmp(uri, "tpm2:", 5) != 0) {
        KH_raise(prov, KH_R_BAD_URI, "not a tpm2: URI");
        return 0;
    }
    if (strlen(uri) > TPM_URI_MAX) {
        KH_raise(prov, KH_R_BAD_URI, "tpm2: URI too long");
        return 0;
    }
    for (p = uri + 5; *p != '\0'; p = *end != '\0' ? end + 1 : end) {
        end = p + strcspn(p, ";?&");
        n = (size_t)(end - p);
        if (n == 0) {
            continue;
        }
        eq = memchr(p, '=', n);
        if (eq == NULL) {
            KH_raise(prov, KH_R_BAD_URI, "tpm2: URI attribute without "
                     "'=' (expected handle=, file=, pin-source=)");
            goto bad;
        }
        if ((size_t)(eq - p) == 6 && strncmp(p, "handle", 6) == 0) {
            char *v = pct_decode(eq + 1, (size_t)(end - eq - 1)), *e;
            unsigned long h;

            if (v == NULL) {
                goto badenc;
            }
            h = strtoul(v, &e, 16);
            if (*v == '\0' || *e != '\0' || h < KH_TPM_PERSISTENT_MIN
                || h > KH_TPM_PERSISTENT_MAX) {
                KH_raise(prov, KH_R_BAD_URI, "tpm2: URI handle '%.20s' is "
                         "not a persistent handle (0x81000000-0x81ffffff)",
                         v);
                OPENSSL_free(v);
                goto bad;
            }
            OPENSSL_free(v);
            u->handle = (uint32_t)h;
        } else if ((size_t)(eq - p) == 4 && strncmp(p, "file", 4) == 0) {
            OPENSSL_free(u->file);
            u->file = pct_decode(eq + 1, (size_t)(end - eq - 1));
            if (u->file == NULL) {
                goto badenc;
            }
        } else if ((size_t)(eq - p) == 10
                   && strncmp(p, "pin-source", 10) == 0) {
            OPENSSL_free(u->pin_source);
            u->pin_source = pct_decode(eq + 1, (size_t)(end - eq - 1));
            if (u->pin_source == NULL) {
                goto badenc;
            }
        } else if ((size_t)(eq - p) == 9
                   && strncmp(p, "pin-value", 9) == 0) {
            if (u->pin_value != NULL) {
                OPENSSL_clear_free(u->pin_value, strlen(u->pin_value));
            }
            u->pin_value = pct_decode(eq + 1, (size_t)(end - eq - 1));
            if (u->pin_value == NULL) {
                goto badenc;
            }
        } else {
            KH_raise(prov, KH_R_BAD_URI, "tpm2: URI attribute '%.*s' "
                     "unknown (expected handle, file, pin-source, "
                     "pin-value)", (int)((eq - p) > 32 ? 32 : (eq - p)), p);
            goto bad;
        }
    }
    if ((u->handle != 0) == (u->file != NULL)) {
        KH_raise(prov, KH_R_BAD_URI, "tpm2: URI needs exactly one of "
                 "handle=0x81... or file=PATH");
        goto bad;
    }
    return 1;
badenc:
    KH_raise(prov, KH_R_BAD_URI, "tpm2: URI has bad percent-encoding");
bad:
    uri_free(u);
    return 0;
}

/* The URI without pin-value, for key->uri (written into key references). */
static char *uri_public(const char *uri)
{
    size_t len = strlen(uri);
    char *out = OPENSSL_malloc(len + 1);
    const char *p, *end;
    size_t o = 0;

    if (out == NULL) {
        return NULL;
    }
    memcpy(out, "tpm2:", 5);
    o = 5;
    for (p = uri + 5; *p != '\0'; p = *end != '\0' ? end + 1 : end) {
        end = p + strcspn(p, ";?&");
        if (end == p || strncmp(p, "pin-value=", 10) == 0) {
            continue;
        }
        if (o > 5) {
            out[o++] = ';';
        }
        memcpy(out + o, p, (size_t)(end - p));
        o += (size_t)(end - p);
    }
    out[o] = '\0';
    return out;
}

/* ---- auth ------------------------------------------------------------ */

static int key_auth(KH_PROV_CTX *prov, KH_TPM_KEY *k, const TPM_URI *u,
                    OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_cbarg)
{
    char auth[KH_PIN_MAX + 1];
    size_t len = 0;
    char err[512];
    enum kh_pin_rc prc;
    int ok = 0;

    if (u != NULL && u->pin_value != NULL) {
        len = strlen(u->pin_value);
        if (len >= sizeof(auth)) {
            KH_raise(prov, KH_R_BAD_URI, "tpm2: pin-value too long");
            goto end;
        }
        memcpy(auth, u->pin_value, len);
    } else if (u != NULL && u->pin_source != NULL) {
        const char *src = u->pin_source;
        char path[4096];

        /* credential:NAME = systemd's LoadCredential=NAME:... for the unit */
        if (strncmp(src, "credential:", 11) == 0) {
            const char *dir = getenv("CREDENTIALS_DIRECTORY");

            if (dir == NULL || *dir == '\0' || strchr(src + 11, '/') != NULL
                || (size_t)snprintf(path, sizeof(path), "%s/%s", dir,
                                    src + 11) >= sizeof(path)) {
                KH_raise(prov, KH_R_NO_PIN, "TPM key auth: %s needs "
                         "$CREDENTIALS_DIRECTORY (systemd LoadCredential=) "
                         "and a plain name", src);
                goto end;
            }
            src = path;
        }
        prc = kh_pin_read_file(src, auth, sizeof(auth), &len, err,
                               sizeof(err));
        if (prc != KH_PIN_OK) {
            KH_raise(prov, KH_R_NO_PIN, "TPM key auth: %s", err);
            goto end;
        }
    } else if (kh_tpm_key_empty_auth(k)) {
        ok = 1;
        goto end;
    } else {
        OSSL_PARAM params[2];

        params[0] = OSSL_PARAM_construct_utf8_string(
            OSSL_PASSPHRASE_PARAM_INFO, "TPM key auth value", 0);
        params[1] = OSSL_PARAM_construct_end();
        if (pw_cb == NULL
            || !pw_cb(auth, sizeof(auth) - 1, &len, params, pw_cbarg)) {
            KH_raise(prov, KH_R_NO_PIN, "the TPM key needs an auth value "
                     "(pin-source= in the URI, or a passphrase)");
            goto end;
        }
    }
    if (kh_tpm_key_set_auth(k, auth, len, err, sizeof(err)) != KH_TPM_OK) {
        KH_raise(prov, KH_R_BAD_PARAM, "%s", err);
        goto end;
    }
    ok = 1;
end:
    OPENSSL_cleanse(auth, sizeof(auth));
    return ok;
}

/* Opens the key a parsed URI names, auth set. */
static KH_KEY *open_uri_key(KH_PROV_CTX *prov, const char *uri,
                            const TPM_URI *u, OSSL_PASSPHRASE_CALLBACK *pw_cb,
                            void *pw_cbarg)
{
    KH_TPM_KEY *k = NULL;
    KH_KEY *key;
    enum kh_tpm_rc rc;
    char *pub_uri;
    char err[512];

    if (u->handle != 0) {
        rc = kh_tpm_key_from_handle(u->handle, &k, err, sizeof(err));
    } else {
        rc = kh_tpm_key_from_file(u->file, &k, err, sizeof(err));
    }
    if (rc != KH_TPM_OK) {
        KH_raise(prov, rc == KH_TPM_ERR_INPUT ? KH_R_KEY_REFERENCE
                                              : reason_of(rc, KH_R_NO_OBJECT),
                 "%s", err);
        return NULL;
    }
    if (!key_auth(prov, k, u, pw_cb, pw_cbarg)) {
        kh_tpm_key_free(k);
        return NULL;
    }
    pub_uri = uri_public(uri);
    if (pub_uri == NULL) {
        kh_tpm_key_free(k);
        KH_raise(prov, KH_R_MALLOC, "out of memory");
        return NULL;
    }
    key = wrap_key(prov, k, pub_uri);
    OPENSSL_free(pub_uri);
    return key;
}

static int tpm_resolve(KH_PROV_CTX *prov, const char *uri,
                       OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_cbarg,
                       KH_KEY **key)
{
    TPM_URI u;

    *key = NULL;
    if (!uri_parse(prov, uri, &u)) {
        return 0;
    }
    *key = open_uri_key(prov, uri, &u, pw_cb, pw_cbarg);
    uri_free(&u);
    return *key != NULL;
}

/* ---- store ----------------------------------------------------------- */

typedef struct tpm_store {
    KH_PROV_CTX *prov;
    char *uri;
    TPM_URI u;
    int expect;
    int done;
    int failed;
} TPM_STORE;

static OSSL_FUNC_store_open_fn ts_open;
static OSSL_FUNC_store_settable_ctx_params_fn ts_settable;
static OSSL_FUNC_store_set_ctx_params_fn ts_set_params;
static OSSL_FUNC_store_load_fn ts_load;
static OSSL_FUNC_store_eof_fn ts_eof;
static OSSL_FUNC_store_close_fn ts_close;

static void *ts_open(void *provctx, const char *uri)
{
    KH_PROV_CTX *prov = provctx;
    TPM_STORE *st = OPENSSL_zalloc(sizeof(*st));

    if (st == NULL) {
        KH_raise(prov, KH_R_MALLOC, "out of memory");
        return NULL;
    }
    st->prov = prov;
    kh_tpm_configure(NULL);
    if (!uri_parse(prov, uri, &st->u)) {
        OPENSSL_free(st);
        return NULL;
    }
    st->uri = uri_public(uri);
    if (st->uri == NULL) {
        uri_free(&st->u);
        OPENSSL_free(st);
        return NULL;
    }
    return st;
}

static const OSSL_PARAM *ts_settable(void *provctx)
{
    static const OSSL_PARAM tbl[] = {
        OSSL_PARAM_int(OSSL_STORE_PARAM_EXPECT, NULL),
        OSSL_PARAM_END
    };

    return tbl;
}

static int ts_set_params(void *loaderctx, const OSSL_PARAM params[])
{
    TPM_STORE *st = loaderctx;
    const OSSL_PARAM *p;

    p = OSSL_PARAM_locate_const(params, OSSL_STORE_PARAM_EXPECT);
    if (p != NULL && !OSSL_PARAM_get_int(p, &st->expect)) {
        return 0;
    }
    return 1;
}

static int ts_load(void *loaderctx, OSSL_CALLBACK *object_cb,
                   void *object_cbarg, OSSL_PASSPHRASE_CALLBACK *pw_cb,
                   void *pw_cbarg)
{
    TPM_STORE *st = loaderctx;
    OSSL_PARAM params[5];
    KH_OBJ_REF ref;
    KH_KEY *key = NULL;
    unsigned char *der = NULL;
    int objtype = OSSL_OBJECT_PKEY, derlen, ok = 0, n = 0;

    if (st->done) {
        return 0;
    }
    st->done = 1;
    if (st->expect != 0 && st->expect != OSSL_STORE_INFO_PKEY
        && st->expect != OSSL_STORE_INFO_PUBKEY) {
        return 0;               /* no certificates or parameters here */
    }
    key = open_uri_key(st->prov, st->uri, &st->u, pw_cb, pw_cbarg);
    if (key == NULL) {
        st->failed = 1;
        return 0;
    }
    params[n++] = OSSL_PARAM_construct_int(OSSL_OBJECT_PARAM_TYPE, &objtype);
    params[n++] = OSSL_PARAM_construct_utf8_string(
        OSSL_OBJECT_PARAM_DATA_TYPE, (char *)kh_key_type_name(key), 0);
    if (st->expect == OSSL_STORE_INFO_PUBKEY) {
        derlen = i2d_PUBKEY(key->pub, &der);
        if (derlen <= 0) {
            KH_raise(st->prov, KH_R_PUBLIC_KEY, "cannot encode the public "
                     "key");
            goto end;
        }
        params[n++] = OSSL_PARAM_construct_utf8_string(
            OSSL_OBJECT_PARAM_DATA_STRUCTURE, "SubjectPublicKeyInfo", 0);
        params[n++] = OSSL_PARAM_construct_octet_string(
            OSSL_OBJECT_PARAM_DATA, der, (size_t)derlen);
    } else {
        ref.magic = KH_KEYREF_MAGIC;
        ref.key = key;
        params[n++] = OSSL_PARAM_construct_octet_string(
            OSSL_OBJECT_PARAM_REFERENCE, &ref, sizeof(ref));
    }
    params[n] = OSSL_PARAM_construct_end();
    ok = object_cb(params, object_cbarg);
end:
    OPENSSL_free(der);
    kh_key_free(key);
    return ok;
}

static int ts_eof(void *loaderctx)
{
    TPM_STORE *st = loaderctx;

    return st->done || st->failed;
}

static int ts_close(void *loaderctx)
{
    TPM_STORE *st = loaderctx;

    if (st == NULL) {
        return 1;
    }
    uri_free(&st->u);
    OPENSSL_free(st->uri);
    OPENSSL_free(st);
    return 1;
}

static int ts_export_object(void *loaderctx, const void *reference,
                            size_t reference_sz, OSSL_CALLBACK *export_cb,
                            void *export_cbarg)
{
    return 0;                   /* private keys stay in the TPM */
}

static const OSSL_DISPATCH store_functions[] = {
    { OSSL_FUNC_STORE_OPEN, (void (*)(void))ts_open },
    { OSSL_FUNC_STORE_SETTABLE_CTX_PARAMS, (void (*)(void))ts_settable },
    { OSSL_FUNC_STORE_SET_CTX_PARAMS, (void (*)(void))ts_set_params },
    { OSSL_FUNC_STORE_LOAD, (void (*)(void))ts_load },
    { OSSL_FUNC_STORE_EOF, (void (*)(void))ts_eof },
    { OSSL_FUNC_STORE_CLOSE, (void (*)(void))ts_close },
    { OSSL_FUNC_STORE_EXPORT_OBJECT, (void (*)(void))ts_export_object },
    { 0, NULL }
};

/* ---- TSS2 PRIVATE KEY files ---------------------------------------- */

/* Makes the key a TSS2 PRIVATE KEY (DER) holds, of |type| or (0) any. */
static int tpm_decode(KH_PROV_CTX *prov, const unsigned char *der,
                      size_t derlen, int type, OSSL_PASSPHRASE_CALLBACK *pw_cb,
                      void *pw_cbarg, KH_KEY **key)
{
    KH_TPM_KEY *k = NULL;
    enum kh_tpm_rc rc;
    char err[512];

    *key = NULL;
    rc = kh_tpm_key_from_der(der, derlen, &k, err, sizeof(err));
    if (rc != KH_TPM_OK) {
        KH_raise(prov, rc == KH_TPM_ERR_INPUT
                       ? KH_R_KEY_REFERENCE
                       : reason_of(rc, KH_R_KEY_REFERENCE), "%s", err);
        return 0;
    }
    if (type != 0 && kh_tpm_key_type(k) != type) {
        kh_tpm_key_free(k);
        return 1;               /* the other key type's decoder makes it */
    }
    kh_tpm_configure(NULL);
    if (!key_auth(prov, k, NULL, pw_cb, pw_cbarg)) {
        kh_tpm_key_free(k);
        return 0;
    }
    *key = wrap_key(prov, k, NULL);
    return *key != NULL;
}

/* The label said TSS2: a body that is not one gets a named error. */
static int tpm_check(KH_PROV_CTX *prov, const unsigned char *der,
                     size_t derlen)
{
    KH_TPM_KEYFILE kf;
    enum kh_tpm_rc rc;
    char err[512];

    ERR_set_mark();
    rc = kh_tpm_keyfile_decode(der, derlen, &kf, err, sizeof(err));
    ERR_pop_to_mark();
    OPENSSL_cleanse(&kf, sizeof(kf));
    if (rc != KH_TPM_OK) {
        KH_raise(prov, KH_R_KEY_REFERENCE, "%s", err);
        return 0;
    }
    return 1;
}

void kh_tpm_prov_fill(struct kh_tpm_module *mod)
{
    mod->configure = kh_tpm_configure;
    mod->release = kh_tpm_release;
    mod->resolve = tpm_resolve;
    mod->decode = tpm_decode;
    mod->check = tpm_check;
    mod->unseal = kh_pin_unseal;
    mod->store = store_functions;
}
