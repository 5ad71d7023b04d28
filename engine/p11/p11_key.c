/* SPDX-License-Identifier: MIT */
/*
 * pkcs11 keys: object search, the public half, and the operations done in
 * the token (sign, decrypt). The sign path is the hot one: a pooled
 * session already logged in, the cached object handle, one C_SignInit and
 * one C_Sign, output built in caller or stack buffers (no heap).
 */
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/param_build.h>
#include <openssl/x509.h>

#include "internal.h"
#include "kh_p11util.h"

#define RAW_SIG_MAX 1024 /* RSA-8192 */

CK_RV kh_p11_find_objects(KH_P11_TOKEN *tok, CK_SESSION_HANDLE sess,
                          CK_ATTRIBUTE *tmpl, CK_ULONG n,
                          CK_OBJECT_HANDLE *out, CK_ULONG max, CK_ULONG *count)
{
    CK_FUNCTION_LIST_PTR fl = tok->mod->fl;
    KH_P11LOCK lk;
    CK_RV rv;

    *count = 0;
    /* SoftHSM reads the token's directory and any object file new to this
     * process here. */
    kh_p11_files_enter(tok->mod, &lk, 0);
    rv = fl->C_FindObjectsInit(sess, tmpl, n);
    if (rv == CKR_OK) {
        rv = fl->C_FindObjects(sess, out, max, count);
        fl->C_FindObjectsFinal(sess);
    }
    kh_p11_files_leave(&lk);
    return rv;
}

/* Reads one variable-length attribute into a new buffer. */
static CK_RV get_attr(KH_P11_TOKEN *tok, CK_SESSION_HANDLE sess,
                      CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE type,
                      unsigned char **val, CK_ULONG *len)
{
    CK_FUNCTION_LIST_PTR fl = tok->mod->fl;
    CK_ATTRIBUTE a = { type, NULL, 0 };
    CK_RV rv;

    *val = NULL;
    *len = 0;
    rv = fl->C_GetAttributeValue(sess, h, &a, 1);
    if (rv != CKR_OK) {
        return rv;
    }
    if (a.ulValueLen == CK_UNAVAILABLE_INFORMATION || a.ulValueLen > 65536) {
        return CKR_ATTRIBUTE_SENSITIVE;
    }
    a.pValue = OPENSSL_malloc(a.ulValueLen + 1);
    if (a.pValue == NULL) {
        return CKR_HOST_MEMORY;
    }
    rv = fl->C_GetAttributeValue(sess, h, &a, 1);
    if (rv != CKR_OK) {
        OPENSSL_free(a.pValue);
        return rv;
    }
    *val = a.pValue;
    *len = a.ulValueLen;
    return CKR_OK;
}

/* CKA_EC_PARAMS (namedCurve OID) -> a group name the default provider knows */
static const char *ec_group_name(const unsigned char *der, CK_ULONG len)
{
    const unsigned char *p = der;
    ASN1_OBJECT *obj = d2i_ASN1_OBJECT(NULL, &p, (long)len);
    int nid;

    if (obj == NULL) {
        return NULL;
    }
    nid = OBJ_obj2nid(obj);
    ASN1_OBJECT_free(obj);
    return nid == NID_undef ? NULL : OBJ_nid2sn(nid);
}

/* CKA_EC_POINT: DER OCTET STRING per PKCS#11; some modules hand the raw
 * point. Returns the point inside |v| (no copy). */
static const unsigned char *ec_point_unwrap(const unsigned char *v,
                                            size_t len, size_t *plen)
{
    size_t hdr, n;

    if (len >= 2 && v[0] == 0x04) {
        if (v[1] < 0x80) {
            hdr = 2;
            n = v[1];
        } else if (v[1] == 0x81 && len >= 3) {
            hdr = 3;
            n = v[2];
        } else if (v[1] == 0x82 && len >= 4) {
            hdr = 4;
            n = ((size_t)v[2] << 8) | v[3];
        } else {
            hdr = 0;
            n = 0;
        }
        /* an encoded point starts with 02, 03 or 04 (SEC 1, 2.3.3) */
        if (hdr != 0 && n > 0 && hdr + n == len && v[hdr] >= 0x02
            && v[hdr] <= 0x04) {
            *plen = n;
            return v + hdr;
        }
    }
    *plen = len;
    return v;
}

/* The public attributes of one object (a public or private key). */
static int raw_from_object(KH_P11_TOKEN *tok, CK_SESSION_HANDLE sess,
                           CK_OBJECT_HANDLE h, CK_KEY_TYPE ktype,
                           KH_PUB_RAW *raw, unsigned char **buf1,
                           unsigned char **buf2)
{
    CK_ATTRIBUTE_TYPE t1 = ktype == CKK_RSA ? CKA_MODULUS : CKA_EC_POINT;
    CK_ATTRIBUTE_TYPE t2 = ktype == CKK_RSA ? CKA_PUBLIC_EXPONENT
                                            : CKA_EC_PARAMS;
    unsigned char v1[1024], v2[128];  /* RSA-8192, any named curve */
    CK_ATTRIBUTE a[2] = {
        { t1, v1, sizeof(v1) },
        { t2, v2, sizeof(v2) },
    };
    CK_ULONG l1 = 0, l2 = 0;

    memset(raw, 0, sizeof(*raw));
    *buf1 = *buf2 = NULL;
    /*
     * Both attributes in one call (a token call costs far more than the
     * stack buffers): the start-up of a server pays every one. Values that
     * do not fit are read with their length asked first.
     */
    if (tok->mod->fl->C_GetAttributeValue(sess, h, a, 2) == CKR_OK
        && a[0].ulValueLen != CK_UNAVAILABLE_INFORMATION
        && a[1].ulValueLen != CK_UNAVAILABLE_INFORMATION) {
        l1 = a[0].ulValueLen;
        l2 = a[1].ulValueLen;
        *buf1 = OPENSSL_memdup(v1, l1 > 0 ? l1 : 1);
        *buf2 = OPENSSL_memdup(v2, l2 > 0 ? l2 : 1);
        if (*buf1 == NULL || *buf2 == NULL) {
            goto fail;
        }
    } else if (get_attr(tok, sess, h, t1, buf1, &l1) != CKR_OK
               || get_attr(tok, sess, h, t2, buf2, &l2) != CKR_OK) {
        goto fail;
    }
    if (ktype == CKK_RSA) {
        if (l1 == 0 || l2 == 0) {
            goto fail;
        }
        raw->type = EVP_PKEY_RSA;
        raw->a = *buf1;
        raw->alen = l1;
        raw->b = *buf2;
        raw->blen = l2;
        return 1;
    }
    if ((raw->group = ec_group_name(*buf2, l2)) == NULL || l1 == 0) {
        goto fail;
    }
    raw->type = EVP_PKEY_EC;
    raw->a = ec_point_unwrap(*buf1, l1, &raw->alen);
    return 1;
fail:
    OPENSSL_free(*buf1);
    OPENSSL_free(*buf2);
    *buf1 = *buf2 = NULL;
    return 0;
}

/* The public half of one object as an EVP_PKEY in the provider's context */
static EVP_PKEY *pub_from_object(KH_PROV_CTX *prov, KH_P11_TOKEN *tok,
                                 CK_SESSION_HANDLE sess, CK_OBJECT_HANDLE h,
                                 CK_KEY_TYPE ktype)
{
    KH_PUB_RAW raw;
    unsigned char *b1, *b2;
    EVP_PKEY *pk;

    if (!raw_from_object(tok, sess, h, ktype, &raw, &b1, &b2)) {
        return NULL;
    }
    pk = kh_pub_raw_pkey(prov, &raw);
    OPENSSL_free(b1);
    OPENSSL_free(b2);
    return pk;
}

/* The public key object with the private key's CKA_ID, if there is one. */
static int find_pub_object(KH_P11_TOKEN *tok, CK_SESSION_HANDLE sess,
                           CK_KEY_TYPE ktype, const unsigned char *id,
                           size_t idlen, CK_OBJECT_HANDLE *h)
{
    CK_OBJECT_CLASS cls = CKO_PUBLIC_KEY;
    CK_ATTRIBUTE tmpl[3] = {
        { CKA_CLASS, &cls, sizeof(cls) },
        { CKA_KEY_TYPE, &ktype, sizeof(ktype) },
        { CKA_ID, (void *)id, idlen },
    };
    CK_OBJECT_HANDLE found[2];
    CK_ULONG n = 0;

    if (idlen == 0
        || kh_p11_find_objects(tok, sess, tmpl, 3, found, 2, &n) != CKR_OK
        || n == 0) {
        return 0;
    }
    *h = found[0];
    return 1;
}

EVP_PKEY *kh_p11_pubkey_from_object(KH_PROV_CTX *prov, KH_P11_TOKEN *tok,
                                    CK_SESSION_HANDLE sess,
                                    CK_OBJECT_HANDLE h)
{
    CK_KEY_TYPE kt = (CK_KEY_TYPE)-1;
    CK_ATTRIBUTE a = { CKA_KEY_TYPE, &kt, sizeof(kt) };

    if (tok->mod->fl->C_GetAttributeValue(sess, h, &a, 1) != CKR_OK
        || (kt != CKK_RSA && kt != CKK_EC)) {
        return NULL;
    }
    return pub_from_object(prov, tok, sess, h, kt);
}

static EVP_PKEY *cert_pub(KH_PROV_CTX *prov, KH_P11_TOKEN *tok,
                          CK_SESSION_HANDLE sess, CK_OBJECT_HANDLE h)
{
    unsigned char *der = NULL;
    CK_ULONG len = 0;
    const unsigned char *p;
    X509 *x = NULL;
    EVP_PKEY *pk = NULL;

    if (get_attr(tok, sess, h, CKA_VALUE, &der, &len) != CKR_OK) {
        return NULL;
    }
    /* Parsed in the provider's own context, never the application's. */
    x = X509_new_ex(prov->libctx, NULL);
    p = der;
    if (x != NULL && d2i_X509(&x, &p, (long)len) != NULL) {
        pk = X509_get_pubkey(x);
    }
    X509_free(x);
    OPENSSL_free(der);
    return pk;
}

EVP_PKEY *kh_p11_public_half(KH_PROV_CTX *prov, KH_P11_TOKEN *tok,
                             CK_SESSION_HANDLE sess, CK_OBJECT_HANDLE priv,
                             CK_KEY_TYPE ktype, const unsigned char *id,
                             size_t idlen)
{
    CK_OBJECT_HANDLE h[2];
    CK_ULONG n = 0;
    EVP_PKEY *pk = NULL;

    /* 1. the public key object with the same CKA_ID */
    if (find_pub_object(tok, sess, ktype, id, idlen, &h[0])
        && (pk = pub_from_object(prov, tok, sess, h[0], ktype)) != NULL) {
        return pk;
    }
    /* 2. public attributes on the private object itself (RSA) */
    if ((pk = pub_from_object(prov, tok, sess, priv, ktype)) != NULL) {
        return pk;
    }
    /* 3. the certificate with the same CKA_ID */
    if (idlen > 0) {
        CK_OBJECT_CLASS ccls = CKO_CERTIFICATE;
        CK_ATTRIBUTE ct[2] = {
            { CKA_CLASS, &ccls, sizeof(ccls) },
            { CKA_ID, (void *)id, idlen },
        };

        if (kh_p11_find_objects(tok, sess, ct, 2, h, 2, &n) == CKR_OK
            && n >= 1) {
            pk = cert_pub(prov, tok, sess, h[0]);
        }
    }
    return pk;
}

int kh_p11_public_raw(KH_P11_TOKEN *tok, CK_SESSION_HANDLE sess,
                      CK_OBJECT_HANDLE priv, CK_KEY_TYPE ktype,
                      const unsigned char *id, size_t idlen, KH_PUB_RAW *raw,
                      unsigned char **buf1, unsigned char **buf2)
{
    CK_OBJECT_HANDLE h;

    /* the order of kh_p11_public_half; a certificate is left to it */
    if (find_pub_object(tok, sess, ktype, id, idlen, &h)
        && raw_from_object(tok, sess, h, ktype, raw, buf1, buf2)) {
        return 1;
    }
    return raw_from_object(tok, sess, priv, ktype, raw, buf1, buf2);
}

static void p11_key_free(void *bkey)
{
    KH_P11_KEY *k = bkey;

    if (k == NULL) {
        return;
    }
    if (__atomic_sub_fetch(&k->refs, 1, __ATOMIC_ACQ_REL) > 0) {
        return;
    }
    OPENSSL_free(k);
}

static void *p11_key_up_ref(void *bkey)
{
    KH_P11_KEY *k = bkey;

    __atomic_add_fetch(&k->refs, 1, __ATOMIC_RELAXED);
    return k;
}

void kh_p11_key_set_bits(KH_P11_KEY *k, int bits)
{
    if (k->ktype == CKK_RSA) {
        k->sigsize = (size_t)(bits + 7) / 8;
    } else {
        k->sigsize = 2 * ((size_t)(bits + 7) / 8);
    }
}

KH_P11_KEY *kh_p11_key_new(KH_PROV_CTX *prov, KH_P11_TOKEN *tok,
                           CK_SESSION_HANDLE sess, CK_OBJECT_HANDLE h,
                           int bits, unsigned int *flags)
{
    KH_P11_KEY *k;
    CK_BBOOL can_sign = CK_FALSE, can_dec = CK_FALSE;
    CK_KEY_TYPE kt = (CK_KEY_TYPE)-1;
    unsigned char id[64], label[128];
    CK_ATTRIBUTE a[5] = {
        { CKA_KEY_TYPE, &kt, sizeof(kt) },
        { CKA_SIGN, &can_sign, sizeof(can_sign) },
        { CKA_DECRYPT, &can_dec, sizeof(can_dec) },
        { CKA_ID, id, sizeof(id) },
        { CKA_LABEL, label, sizeof(label) - 1 },
    };
    CK_RV rv;

    rv = tok->mod->fl->C_GetAttributeValue(sess, h, a, 5);
    /* An attribute that is missing or too long only marks itself. */
    if (rv != CKR_OK && rv != CKR_ATTRIBUTE_TYPE_INVALID
        && rv != CKR_BUFFER_TOO_SMALL && rv != CKR_ATTRIBUTE_SENSITIVE) {
        KH_raise(prov, KH_R_MODULE, "C_GetAttributeValue: %s",
                 kh_ckr_name(rv));
        return NULL;
    }
    k = OPENSSL_zalloc(sizeof(*k));
    if (k == NULL) {
        KH_raise(prov, KH_R_MALLOC, "out of memory");
        return NULL;
    }
    k->refs = 1;
    k->prov = prov;
    k->tok = tok;
    k->ktype = kt;
    if (a[3].ulValueLen != CK_UNAVAILABLE_INFORMATION
        && a[3].ulValueLen <= sizeof(k->id)) {
        memcpy(k->id, id, a[3].ulValueLen);
        k->idlen = a[3].ulValueLen;
    }
    if (a[4].ulValueLen != CK_UNAVAILABLE_INFORMATION
        && a[4].ulValueLen < sizeof(k->label)) {
        memcpy(k->label, label, a[4].ulValueLen);
        k->label[a[4].ulValueLen] = '\0';
        k->has_label = 1;
    }
    k->handle = h;
    k->hgen = tok->gen;
    kh_p11_key_set_bits(k, bits);
    *flags = 0;
    if (a[1].ulValueLen == sizeof(CK_BBOOL) && can_sign) {
        *flags |= KH_KEY_CAN_SIGN;
    }
    if (a[2].ulValueLen == sizeof(CK_BBOOL) && can_dec) {
        *flags |= KH_KEY_CAN_DECRYPT;
    }
    return k;
}

/* Finds the private key object again (after fork, or a stale handle). */
static CK_RV key_refind(KH_P11_KEY *k, CK_SESSION_HANDLE sess,
                        CK_OBJECT_HANDLE *h)
{
    CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
    CK_ATTRIBUTE tmpl[3] = {
        { CKA_CLASS, &cls, sizeof(cls) },
        { CKA_KEY_TYPE, &k->ktype, sizeof(k->ktype) },
        { CKA_ID, k->id, k->idlen },
    };
    CK_OBJECT_HANDLE found[2];
    CK_ULONG n = 0;
    CK_RV rv;

    if (k->idlen == 0) {
        tmpl[2].type = CKA_LABEL;
        tmpl[2].pValue = k->label;
        tmpl[2].ulValueLen = strlen(k->label);
    }
    rv = kh_p11_find_objects(k->tok, sess, tmpl, 3, found, 2, &n);
    if (rv != CKR_OK) {
        return rv;
    }
    if (n != 1) {
        return CKR_KEY_HANDLE_INVALID;
    }
    *h = found[0];
    __atomic_store_n(&k->handle, found[0], __ATOMIC_RELAXED);
    __atomic_store_n(&k->hgen, k->tok->gen, __ATOMIC_RELEASE);
    return CKR_OK;
}

static CK_RV key_handle(KH_P11_KEY *k, CK_SESSION_HANDLE sess,
                        CK_OBJECT_HANDLE *h)
{
    unsigned int g = __atomic_load_n(&k->hgen, __ATOMIC_ACQUIRE);

    if (g == k->tok->gen && g == __atomic_load_n(&kh_p11_fork_gen,
                                                 __ATOMIC_ACQUIRE)) {
        *h = __atomic_load_n(&k->handle, __ATOMIC_RELAXED);
        if (*h != CK_INVALID_HANDLE) {
            return CKR_OK;
        }
    }
    return key_refind(k, sess, h);
}

static int is_session_error(CK_RV rv)
{
    return rv == CKR_SESSION_HANDLE_INVALID || rv == CKR_SESSION_CLOSED
           || rv == CKR_CRYPTOKI_NOT_INITIALIZED
           || rv == CKR_USER_NOT_LOGGED_IN || rv == CKR_DEVICE_REMOVED
           || rv == CKR_TOKEN_NOT_PRESENT || rv == CKR_DEVICE_ERROR
           || rv == CKR_SLOT_ID_INVALID;
}

typedef CK_RV op_fn(CK_FUNCTION_LIST_PTR fl, CK_SESSION_HANDLE sess,
                    CK_MECHANISM *mech, CK_OBJECT_HANDLE h,
                    const unsigned char *in, size_t inlen,
                    unsigned char *out, CK_ULONG *outlen);

static CK_RV do_sign(CK_FUNCTION_LIST_PTR fl, CK_SESSION_HANDLE sess,
                     CK_MECHANISM *mech, CK_OBJECT_HANDLE h,
                     const unsigned char *in, size_t inlen,
                     unsigned char *out, CK_ULONG *outlen)
{
    CK_RV rv = fl->C_SignInit(sess, mech, h);

    if (rv != CKR_OK) {
        return rv;
    }
    return fl->C_Sign(sess, (CK_BYTE_PTR)in, (CK_ULONG)inlen, out, outlen);
}

static CK_RV do_decrypt(CK_FUNCTION_LIST_PTR fl, CK_SESSION_HANDLE sess,
                        CK_MECHANISM *mech, CK_OBJECT_HANDLE h,
                        const unsigned char *in, size_t inlen,
                        unsigned char *out, CK_ULONG *outlen)
{
    CK_RV rv = fl->C_DecryptInit(sess, mech, h);

    if (rv != CKR_OK) {
        return rv;
    }
    return fl->C_Decrypt(sess, (CK_BYTE_PTR)in, (CK_ULONG)inlen, out, outlen);
}

/*
 * Runs one token operation on a pooled session with the recovery rules:
 * a stale object handle is found again, a lost session/login/module state
 * is rebuilt; either way exactly one retry. A removed token fails now;
 * the next call finds it again by its attributes.
 */
static CK_RV run_op(KH_P11_KEY *k, op_fn *op, CK_MECHANISM *mech,
                    const unsigned char *in, size_t inlen, unsigned char *out,
                    CK_ULONG *outlen)
{
    KH_P11_TOKEN *tok = k->tok;
    CK_SESSION_HANDLE sess = CK_INVALID_HANDLE;
    CK_OBJECT_HANDLE h;
    CK_ULONG outsize = *outlen;
    CK_RV rv;
    int attempt;

    for (attempt = 0; attempt < 2; attempt++) {
        *outlen = outsize;
        rv = kh_p11_session_get(k->prov, tok, &sess);
        if (rv == CKR_OK) {
            rv = key_handle(k, sess, &h);
            if (rv == CKR_OK) {
                /* the module's own OpenSSL errors stay out of the queue:
                 * libssl reads a non-empty queue as a failed handshake */
                ERR_set_mark();
                rv = op(tok->mod->fl, sess, mech, h, in, inlen, out, outlen);
                ERR_pop_to_mark();
            }
        }
        if (rv == CKR_OK) {
            kh_p11_session_put(tok, sess);
            return CKR_OK;
        }
        if (rv == CKR_KEY_HANDLE_INVALID || rv == CKR_OBJECT_HANDLE_INVALID) {
            kh_p11_session_put(tok, sess);
            __atomic_store_n(&k->handle, CK_INVALID_HANDLE, __ATOMIC_RELAXED);
            continue;
        }
        if (is_session_error(rv)) {
            if (sess != CK_INVALID_HANDLE && rv != CKR_USER_NOT_LOGGED_IN) {
                kh_p11_session_drop(tok, sess);
            } else if (sess != CK_INVALID_HANDLE) {
                kh_p11_session_put(tok, sess);
            }
            sess = CK_INVALID_HANDLE;
            if (attempt == 0 && kh_p11_recover(k->prov, tok, rv)) {
                /* Handles do not survive a new login or initialisation. */
                __atomic_store_n(&k->handle, CK_INVALID_HANDLE,
                                 __ATOMIC_RELAXED);
                continue;
            }
            return rv;
        }
        /* The operation ended with the error: the session is reusable. */
        kh_p11_session_put(tok, sess);
        return rv;
    }
    return rv;
}

static CK_MECHANISM_TYPE md_ckm(int nid)
{
    switch (nid) {
    case NID_sha1:
        return CKM_SHA_1;
    case NID_sha224:
        return CKM_SHA224;
    case NID_sha256:
        return CKM_SHA256;
    case NID_sha384:
        return CKM_SHA384;
    case NID_sha512:
        return CKM_SHA512;
#ifdef CKM_SHA3_256
    case NID_sha3_256:
        return CKM_SHA3_256;
    case NID_sha3_384:
        return CKM_SHA3_384;
    case NID_sha3_512:
        return CKM_SHA3_512;
#endif
    default:
        return CKM_VENDOR_DEFINED;
    }
}

static CK_RSA_PKCS_MGF_TYPE md_mgf(int nid)
{
    switch (nid) {
    case NID_sha1:
        return CKG_MGF1_SHA1;
    case NID_sha224:
        return CKG_MGF1_SHA224;
    case NID_sha256:
        return CKG_MGF1_SHA256;
    case NID_sha384:
        return CKG_MGF1_SHA384;
    case NID_sha512:
        return CKG_MGF1_SHA512;
    default:
        return 0;
    }
}

/* DER DigestInfo prefixes (RFC 8017, 9.2 note 1). */
static const unsigned char *digestinfo_prefix(int nid, size_t *len)
{
    static const unsigned char sha1[] = {
        0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a,
        0x05, 0x00, 0x04, 0x14 };
    static const unsigned char sha224[] = {
        0x30, 0x2d, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65,
        0x03, 0x04, 0x02, 0x04, 0x05, 0x00, 0x04, 0x1c };
    static const unsigned char sha256[] = {
        0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65,
        0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20 };
    static const unsigned char sha384[] = {
        0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65,
        0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0x04, 0x30 };
    static const unsigned char sha512[] = {
        0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65,
        0x03, 0x04, 0x02, 0x03, 0x05, 0x00, 0x04, 0x40 };
    static const unsigned char sha3_256[] = {
        0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65,
        0x03, 0x04, 0x02, 0x08, 0x05, 0x00, 0x04, 0x20 };
    static const unsigned char sha3_384[] = {
        0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65,
        0x03, 0x04, 0x02, 0x09, 0x05, 0x00, 0x04, 0x30 };
    static const unsigned char sha3_512[] = {
        0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65,
        0x03, 0x04, 0x02, 0x0a, 0x05, 0x00, 0x04, 0x40 };

    switch (nid) {
    case NID_sha1:
        *len = sizeof(sha1);
        return sha1;
    case NID_sha224:
        *len = sizeof(sha224);
        return sha224;
    case NID_sha256:
        *len = sizeof(sha256);
        return sha256;
    case NID_sha384:
        *len = sizeof(sha384);
        return sha384;
    case NID_sha512:
        *len = sizeof(sha512);
        return sha512;
    case NID_sha3_256:
        *len = sizeof(sha3_256);
        return sha3_256;
    case NID_sha3_384:
        *len = sizeof(sha3_384);
        return sha3_384;
    case NID_sha3_512:
        *len = sizeof(sha3_512);
        return sha3_512;
    default:
        *len = 0;
        return NULL;
    }
}

/* Writes one DER INTEGER from a big-endian unsigned value. */
static size_t der_int(unsigned char *out, const unsigned char *v, size_t n)
{
    size_t o = 0;

    while (n > 1 && v[0] == 0) {
        v++;
        n--;
    }
    out[o++] = 0x02;
    if (v[0] & 0x80) {
        out[o++] = (unsigned char)(n + 1);
        out[o++] = 0x00;
    } else {
        out[o++] = (unsigned char)n;
    }
    memcpy(out + o, v, n);
    return o + n;
}

/* r||s (PKCS#11) -> DER ECDSA-Sig-Value (what OpenSSL expects). */
static int ecdsa_to_der(const unsigned char *raw, size_t rawlen,
                        unsigned char *out, size_t outsize, size_t *outlen)
{
    unsigned char body[2 * (3 + 66 + 1)];
    size_t half = rawlen / 2, blen, hdr;

    if (rawlen == 0 || (rawlen & 1) || half > 66) {
        return 0;
    }
    blen = der_int(body, raw, half);
    blen += der_int(body + blen, raw + half, half);
    hdr = blen < 128 ? 2 : 3;
    if (outsize < hdr + blen) {
        return 0;
    }
    out[0] = 0x30;
    if (blen < 128) {
        out[1] = (unsigned char)blen;
    } else {
        out[1] = 0x81;
        out[2] = (unsigned char)blen;
    }
    memcpy(out + hdr, body, blen);
    *outlen = hdr + blen;
    return 1;
}

static int p11_sign(KH_KEY *key, const KH_SIGN_PARAMS *sp, unsigned char *sig,
                    size_t *siglen, size_t sigsize, const unsigned char *tbs,
                    size_t tbslen)
{
    KH_P11_KEY *k = key->bkey;
    KH_PROV_CTX *prov = key->prov;
    unsigned char raw[RAW_SIG_MAX];
    unsigned char di[19 + 64];
    const unsigned char *in = tbs;
    size_t inlen = tbslen;
    CK_MECHANISM mech = { CKM_ECDSA, NULL, 0 };
    CK_RSA_PKCS_PSS_PARAMS pss;
    CK_ULONG rawlen = sizeof(raw);
    CK_RV rv;
    char desc[160];

    if (k->sigsize > sizeof(raw)) {
        KH_raise(prov, KH_R_UNSUPPORTED, "key too large");
        return 0;
    }
    switch (sp->scheme) {
    case KH_SIG_ECDSA:
        mech.mechanism = CKM_ECDSA;
        break;
    case KH_SIG_RSA_PKCS1: {
        const unsigned char *pfx = NULL;
        size_t pfxlen = 0;

        mech.mechanism = CKM_RSA_PKCS;
        if (sp->md_nid != NID_undef && sp->md_nid != NID_md5_sha1) {
            pfx = digestinfo_prefix(sp->md_nid, &pfxlen);
            if (pfx == NULL || tbslen != (size_t)pfx[pfxlen - 1]
                || pfxlen + tbslen > sizeof(di)) {
                KH_raise(prov, KH_R_BAD_PARAM,
                         "digest length does not match the digest");
                return 0;
            }
            memcpy(di, pfx, pfxlen);
            memcpy(di + pfxlen, tbs, tbslen);
            in = di;
            inlen = pfxlen + tbslen;
        }
        break;
    }
    case KH_SIG_RSA_PSS:
        memset(&pss, 0, sizeof(pss));
        pss.hashAlg = md_ckm(sp->md_nid);
        pss.mgf = md_mgf(sp->mgf1_md_nid);
        pss.sLen = (CK_ULONG)sp->saltlen;
        if (pss.hashAlg == CKM_VENDOR_DEFINED || pss.mgf == 0
            || sp->saltlen < 0) {
            KH_raise(prov, KH_R_BAD_PARAM, "unsupported PSS parameters");
            return 0;
        }
        mech.mechanism = CKM_RSA_PKCS_PSS;
        mech.pParameter = &pss;
        mech.ulParameterLen = sizeof(pss);
        break;
    default:
        KH_raise(prov, KH_R_UNSUPPORTED, "unknown signature scheme");
        return 0;
    }
    rv = run_op(k, do_sign, &mech, in, inlen, raw, &rawlen);
    OPENSSL_cleanse(di, sizeof(di));
    if (rv != CKR_OK) {
        const char *hint = kh_ckr_hint(rv);

        kh_p11_token_describe(k->tok, desc, sizeof(desc));
        KH_raise(prov, rv == CKR_DEVICE_REMOVED || rv == CKR_TOKEN_NOT_PRESENT
                           ? KH_R_TOKEN_GONE : KH_R_SIGN,
                 "%s, key '%s': C_Sign: %s%s%s%s", desc, k->label,
                 kh_ckr_name(rv), hint != NULL ? " (" : "",
                 hint != NULL ? hint : "", hint != NULL ? ")" : "");
        return 0;
    }
    if (sp->scheme == KH_SIG_ECDSA) {
        if (!ecdsa_to_der(raw, rawlen, sig, sigsize, siglen)) {
            KH_raise(prov, KH_R_SIGN, "bad ECDSA signature from token");
            return 0;
        }
        return 1;
    }
    if (rawlen > sigsize) {
        KH_raise(prov, KH_R_BUFFER, "signature buffer too small");
        return 0;
    }
    memcpy(sig, raw, rawlen);
    *siglen = rawlen;
    return 1;
}

static int p11_decrypt(KH_KEY *key, const KH_DEC_PARAMS *dp,
                       unsigned char *out, size_t *outlen, size_t outsize,
                       const unsigned char *in, size_t inlen)
{
    KH_P11_KEY *k = key->bkey;
    KH_PROV_CTX *prov = key->prov;
    unsigned char buf[RAW_SIG_MAX];
    CK_MECHANISM mech = { CKM_RSA_PKCS, NULL, 0 };
    CK_RSA_PKCS_OAEP_PARAMS oaep;
    CK_ULONG len = sizeof(buf);
    CK_RV rv;
    char desc[160];

    if (dp->scheme == KH_DEC_RSA_OAEP) {
        memset(&oaep, 0, sizeof(oaep));
        oaep.hashAlg = md_ckm(dp->oaep_md_nid);
        oaep.mgf = md_mgf(dp->mgf1_md_nid);
        if (oaep.hashAlg == CKM_VENDOR_DEFINED || oaep.mgf == 0) {
            KH_raise(prov, KH_R_BAD_PARAM, "unsupported OAEP digest");
            return 0;
        }
        if (dp->labellen > 0) {
            oaep.source = CKZ_DATA_SPECIFIED;
            oaep.pSourceData = (void *)dp->label;
            oaep.ulSourceDataLen = dp->labellen;
        }
        mech.mechanism = CKM_RSA_PKCS_OAEP;
        mech.pParameter = &oaep;
        mech.ulParameterLen = sizeof(oaep);
    }
    rv = run_op(k, do_decrypt, &mech, in, inlen, buf, &len);
    if (rv != CKR_OK) {
        const char *hint = kh_ckr_hint(rv);

        kh_p11_token_describe(k->tok, desc, sizeof(desc));
        KH_raise(prov, rv == CKR_KEY_FUNCTION_NOT_PERMITTED
                           ? KH_R_NOT_PERMITTED : KH_R_DECRYPT,
                 "%s, key '%s': C_Decrypt: %s%s%s%s", desc, k->label,
                 kh_ckr_name(rv), hint != NULL ? " (" : "",
                 hint != NULL ? hint : "", hint != NULL ? ")" : "");
        OPENSSL_cleanse(buf, sizeof(buf));
        return 0;
    }
    if (len > outsize) {
        KH_raise(prov, KH_R_BUFFER, "output buffer too small");
        OPENSSL_cleanse(buf, sizeof(buf));
        return 0;
    }
    memcpy(out, buf, len);
    *outlen = len;
    OPENSSL_cleanse(buf, sizeof(buf));
    return 1;
}

const struct kh_backend_ops kh_p11_ops = {
    "pkcs11",
    p11_sign,
    p11_decrypt,
    p11_key_free,
    p11_key_up_ref,
};
