/* SPDX-License-Identifier: MIT */
/*
 * kh-p11attr: asks the token itself, through Cryptoki and nothing else,
 * whether a private key can leave it. The key must be CKA_SENSITIVE, not
 * CKA_EXTRACTABLE, ALWAYS_SENSITIVE and NEVER_EXTRACTABLE, and every
 * private component (CKA_PRIVATE_EXPONENT and the CRT values for RSA,
 * CKA_VALUE for EC) must be refused with CKR_ATTRIBUTE_SENSITIVE.
 *
 *   kh-p11attr -m module -t token-label -f pin-file (-i id-hex | -l label)
 *   kh-p11attr -m module -t token-label -F      (print the PIN flags only)
 *   kh-p11attr -m module -t token-label -x out.pem -i id-hex
 *       writes the public key object as a PEM SubjectPublicKeyInfo, built
 *       from CKA_MODULUS/CKA_PUBLIC_EXPONENT or CKA_EC_PARAMS/CKA_EC_POINT
 *       (no login; an independent source of the public key for tests)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>

#include "kh_p11util.h"
#include "kh_pin.h"

static CK_FUNCTION_LIST_PTR p11;

static int hex2bin(const char *hex, unsigned char *out, size_t outsize,
                   size_t *outlen)
{
    size_t n = strlen(hex), i;

    if (n % 2 != 0 || n / 2 > outsize) {
        return 0;
    }
    for (i = 0; i < n / 2; i++) {
        unsigned int b;

        if (sscanf(hex + 2 * i, "%2x", &b) != 1) {
            return 0;
        }
        out[i] = (unsigned char)b;
    }
    *outlen = n / 2;
    return 1;
}

static int find_slot(const char *label, CK_SLOT_ID *slot, CK_FLAGS *flags)
{
    CK_SLOT_ID slots[64];
    CK_ULONG n = 64, i;
    int found = 0;
    CK_RV rv;

    rv = p11->C_GetSlotList(CK_TRUE, slots, &n);
    if (rv != CKR_OK) {
        fprintf(stderr, "C_GetSlotList: %s\n", kh_ckr_name(rv));
        return 0;
    }
    for (i = 0; i < n; i++) {
        CK_TOKEN_INFO ti;
        char l[33];

        if (p11->C_GetTokenInfo(slots[i], &ti) != CKR_OK) {
            continue;
        }
        kh_p11_str(l, sizeof(l), ti.label, sizeof(ti.label));
        if (strcmp(l, label) == 0) {
            *slot = slots[i];
            *flags = ti.flags;
            found++;
        }
    }
    if (found != 1) {
        fprintf(stderr, "token '%s' found %d times\n", label, found);
        return 0;
    }
    return 1;
}

static int get_bool(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o,
                    CK_ATTRIBUTE_TYPE t, CK_BBOOL *val)
{
    CK_ATTRIBUTE a = { t, val, sizeof(*val) };

    return p11->C_GetAttributeValue(s, o, &a, 1) == CKR_OK;
}

/* 1 when the token refuses to reveal attribute |t| of |o|. */
static int refused(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o,
                   CK_ATTRIBUTE_TYPE t, const char *name)
{
    unsigned char buf[2048];
    CK_ATTRIBUTE q = { t, NULL, 0 };
    CK_ATTRIBUTE r = { t, buf, sizeof(buf) };
    CK_RV rv1, rv2;
    int ok;

    rv1 = p11->C_GetAttributeValue(s, o, &q, 1);
    rv2 = p11->C_GetAttributeValue(s, o, &r, 1);
    ok = rv1 == CKR_ATTRIBUTE_SENSITIVE && rv2 == CKR_ATTRIBUTE_SENSITIVE
         && q.ulValueLen == CK_UNAVAILABLE_INFORMATION
         && r.ulValueLen == CK_UNAVAILABLE_INFORMATION;
    printf("%s: %s%s\n", name, kh_ckr_name(rv2),
           ok ? " (refused)" : " (READABLE?)");
    OPENSSL_cleanse(buf, sizeof(buf));
    return ok;
}

static int check_key(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o)
{
    static const struct {
        CK_ATTRIBUTE_TYPE t;
        const char *name;
        CK_BBOOL want;
    } flags[] = {
        { CKA_SENSITIVE, "CKA_SENSITIVE", CK_TRUE },
        { CKA_EXTRACTABLE, "CKA_EXTRACTABLE", CK_FALSE },
        { CKA_ALWAYS_SENSITIVE, "CKA_ALWAYS_SENSITIVE", CK_TRUE },
        { CKA_NEVER_EXTRACTABLE, "CKA_NEVER_EXTRACTABLE", CK_TRUE },
        { CKA_PRIVATE, "CKA_PRIVATE", CK_TRUE },
        { CKA_TOKEN, "CKA_TOKEN", CK_TRUE },
    };
    CK_KEY_TYPE kt = (CK_KEY_TYPE)-1;
    CK_ATTRIBUTE ka = { CKA_KEY_TYPE, &kt, sizeof(kt) };
    size_t i;
    int ok = 1;

    if (p11->C_GetAttributeValue(s, o, &ka, 1) != CKR_OK) {
        fprintf(stderr, "cannot read CKA_KEY_TYPE\n");
        return 0;
    }
    printf("key type: %s\n", kt == CKK_RSA ? "RSA" : kt == CKK_EC ? "EC"
                                                                   : "other");
    for (i = 0; i < sizeof(flags) / sizeof(flags[0]); i++) {
        CK_BBOOL v = 2;
        int good = get_bool(s, o, flags[i].t, &v) && v == flags[i].want;

        printf("%s: %s%s\n", flags[i].name, v == CK_TRUE ? "true"
                                          : v == CK_FALSE ? "false"
                                                          : "unreadable",
               good ? "" : " (WRONG)");
        ok &= good;
    }
    if (kt == CKK_RSA) {
        ok &= refused(s, o, CKA_PRIVATE_EXPONENT, "CKA_PRIVATE_EXPONENT");
        ok &= refused(s, o, CKA_PRIME_1, "CKA_PRIME_1");
        ok &= refused(s, o, CKA_PRIME_2, "CKA_PRIME_2");
        ok &= refused(s, o, CKA_EXPONENT_1, "CKA_EXPONENT_1");
        ok &= refused(s, o, CKA_EXPONENT_2, "CKA_EXPONENT_2");
        ok &= refused(s, o, CKA_COEFFICIENT, "CKA_COEFFICIENT");
    } else if (kt == CKK_EC) {
        ok &= refused(s, o, CKA_VALUE, "CKA_VALUE");
    } else {
        ok = 0;
    }
    return ok;
}

/* Reads one attribute into a malloc'd buffer. */
static unsigned char *get_attr(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o,
                               CK_ATTRIBUTE_TYPE t, CK_ULONG *len)
{
    CK_ATTRIBUTE a = { t, NULL, 0 };
    unsigned char *buf;

    if (p11->C_GetAttributeValue(s, o, &a, 1) != CKR_OK
        || a.ulValueLen == CK_UNAVAILABLE_INFORMATION
        || (buf = malloc(a.ulValueLen + 1)) == NULL) {
        return NULL;
    }
    a.pValue = buf;
    if (p11->C_GetAttributeValue(s, o, &a, 1) != CKR_OK) {
        free(buf);
        return NULL;
    }
    *len = a.ulValueLen;
    return buf;
}

static EVP_PKEY *pub_from_token(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o)
{
    CK_KEY_TYPE kt = (CK_KEY_TYPE)-1;
    CK_ATTRIBUTE ka = { CKA_KEY_TYPE, &kt, sizeof(kt) };
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    EVP_PKEY *pkey = NULL;
    unsigned char *a = NULL, *b = NULL;
    CK_ULONG alen = 0, blen = 0;
    BIGNUM *n = NULL, *e = NULL;
    ASN1_OBJECT *curve = NULL;
    ASN1_OCTET_STRING *point = NULL;
    const unsigned char *p;

    if (bld == NULL || p11->C_GetAttributeValue(s, o, &ka, 1) != CKR_OK) {
        goto end;
    }
    if (kt == CKK_RSA) {
        if ((a = get_attr(s, o, CKA_MODULUS, &alen)) == NULL
            || (b = get_attr(s, o, CKA_PUBLIC_EXPONENT, &blen)) == NULL
            || (n = BN_bin2bn(a, (int)alen, NULL)) == NULL
            || (e = BN_bin2bn(b, (int)blen, NULL)) == NULL
            || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n)
            || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e)) {
            goto end;
        }
        ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", "provider=default");
    } else if (kt == CKK_EC) {
        if ((a = get_attr(s, o, CKA_EC_PARAMS, &alen)) == NULL
            || (b = get_attr(s, o, CKA_EC_POINT, &blen)) == NULL) {
            goto end;
        }
        p = a;
        curve = d2i_ASN1_OBJECT(NULL, &p, (long)alen);
        p = b;
        point = d2i_ASN1_OCTET_STRING(NULL, &p, (long)blen);
        if (curve == NULL || point == NULL || OBJ_obj2nid(curve) == NID_undef
            || !OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME,
                                                OBJ_nid2sn(OBJ_obj2nid(curve)),
                                                0)
            || !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY,
                                                 point->data,
                                                 (size_t)point->length)) {
            goto end;
        }
        ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", "provider=default");
    }
    if (ctx == NULL || (params = OSSL_PARAM_BLD_to_param(bld)) == NULL
        || EVP_PKEY_fromdata_init(ctx) <= 0
        || EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) <= 0) {
        pkey = NULL;
    }
end:
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    EVP_PKEY_CTX_free(ctx);
    BN_free(n);
    BN_free(e);
    ASN1_OBJECT_free(curve);
    ASN1_OCTET_STRING_free(point);
    free(a);
    free(b);
    return pkey;
}

static int export_pub(CK_SESSION_HANDLE s, const unsigned char *id,
                      size_t idlen, const char *out)
{
    CK_OBJECT_CLASS cls = CKO_PUBLIC_KEY;
    CK_ATTRIBUTE tmpl[2] = {
        { CKA_CLASS, &cls, sizeof(cls) },
        { CKA_ID, (void *)id, idlen },
    };
    CK_OBJECT_HANDLE objs[4];
    CK_ULONG nobj = 0;
    EVP_PKEY *pkey = NULL;
    FILE *f = NULL;
    int ok = 0;

    if (p11->C_FindObjectsInit(s, tmpl, 2) != CKR_OK
        || p11->C_FindObjects(s, objs, 4, &nobj) != CKR_OK
        || p11->C_FindObjectsFinal(s) != CKR_OK || nobj != 1) {
        fprintf(stderr, "expected exactly one public key, found %lu\n",
                (unsigned long)nobj);
        return 0;
    }
    pkey = pub_from_token(s, objs[0]);
    if (pkey == NULL) {
        fprintf(stderr, "cannot build the public key from its attributes\n");
        return 0;
    }
    f = fopen(out, "w");
    ok = f != NULL && PEM_write_PUBKEY(f, pkey);
    if (f != NULL && fclose(f) != 0) {
        ok = 0;
    }
    if (!ok) {
        fprintf(stderr, "cannot write %s\n", out);
    }
    EVP_PKEY_free(pkey);
    return ok;
}

int main(int argc, char **argv)
{
    const char *module = KH_DEFAULT_P11_MODULE, *token = NULL, *pinfile = NULL;
    const char *idhex = NULL, *label = NULL, *pubout = NULL;
    char err[256], pin[KH_PIN_MAX + 1];
    size_t pinlen = 0, idlen = 0;
    unsigned char id[128];
    void *dlh = NULL;
    CK_SLOT_ID slot = 0;
    CK_FLAGS tflags = 0;
    CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
    CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
    CK_ATTRIBUTE tmpl[2];
    CK_OBJECT_HANDLE objs[8];
    CK_ULONG nobj = 0, ntmpl = 1;
    CK_RV rv;
    int c, flags_only = 0, ok = 0, inited = 0;

    while ((c = getopt(argc, argv, "m:t:f:i:l:Fx:")) != -1) {
        switch (c) {
        case 'm': module = optarg; break;
        case 't': token = optarg; break;
        case 'f': pinfile = optarg; break;
        case 'i': idhex = optarg; break;
        case 'l': label = optarg; break;
        case 'F': flags_only = 1; break;
        case 'x': pubout = optarg; break;
        default:
            fprintf(stderr, "usage: kh-p11attr -m module -t token -f pinfile "
                    "(-i idhex | -l label) | -F\n");
            return 2;
        }
    }
    if (token == NULL || (pubout != NULL && idhex == NULL)
        || (!flags_only && pubout == NULL && (pinfile == NULL
                                          || (idhex == NULL
                                              && label == NULL)))) {
        fprintf(stderr, "kh-p11attr: need -t, and -f with -i or -l\n");
        return 2;
    }
    if (!kh_p11_module_open(module, &dlh, &p11, err, sizeof(err))) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    rv = p11->C_Initialize(NULL);
    if (rv != CKR_OK) {
        fprintf(stderr, "C_Initialize: %s\n", kh_ckr_name(rv));
        goto end;
    }
    inited = 1;
    if (!find_slot(token, &slot, &tflags)) {
        goto end;
    }
    if (flags_only) {
        printf("user-pin-count-low=%d user-pin-final-try=%d "
               "user-pin-locked=%d\n", !!(tflags & CKF_USER_PIN_COUNT_LOW),
               !!(tflags & CKF_USER_PIN_FINAL_TRY),
               !!(tflags & CKF_USER_PIN_LOCKED));
        ok = !(tflags & CKF_USER_PIN_LOCKED);
        goto end;
    }
    if (pubout != NULL) {
        if (!hex2bin(idhex, id, sizeof(id), &idlen)) {
            fprintf(stderr, "bad id '%s'\n", idhex);
            goto end;
        }
        rv = p11->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &s);
        if (rv != CKR_OK) {
            fprintf(stderr, "C_OpenSession: %s\n", kh_ckr_name(rv));
            goto end;
        }
        ok = export_pub(s, id, idlen, pubout);
        goto end;
    }
    if (kh_pin_read_file(pinfile, pin, sizeof(pin), &pinlen, err,
                         sizeof(err)) != KH_PIN_OK) {
        fprintf(stderr, "%s\n", err);
        goto end;
    }
    rv = p11->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &s);
    if (rv == CKR_OK) {
        rv = p11->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)pin, pinlen);
    }
    if (rv != CKR_OK) {
        fprintf(stderr, "open/login: %s\n", kh_ckr_name(rv));
        goto end;
    }
    tmpl[0] = (CK_ATTRIBUTE){ CKA_CLASS, &cls, sizeof(cls) };
    if (idhex != NULL) {
        if (!hex2bin(idhex, id, sizeof(id), &idlen)) {
            fprintf(stderr, "bad id '%s'\n", idhex);
            goto end;
        }
        tmpl[ntmpl++] = (CK_ATTRIBUTE){ CKA_ID, id, idlen };
    } else {
        tmpl[ntmpl++] = (CK_ATTRIBUTE){ CKA_LABEL, (void *)label,
                                        strlen(label) };
    }
    if (p11->C_FindObjectsInit(s, tmpl, ntmpl) != CKR_OK
        || p11->C_FindObjects(s, objs, 8, &nobj) != CKR_OK
        || p11->C_FindObjectsFinal(s) != CKR_OK || nobj != 1) {
        fprintf(stderr, "expected exactly one private key, found %lu\n",
                (unsigned long)nobj);
        goto end;
    }
    ok = check_key(s, objs[0]);
    printf("%s\n", ok ? "the private key cannot leave the token"
                      : "PRIVATE KEY IS EXPOSED OR MISCONFIGURED");
end:
    OPENSSL_cleanse(pin, sizeof(pin));
    if (s != CK_INVALID_HANDLE) {
        p11->C_CloseSession(s);
    }
    if (inited) {
        p11->C_Finalize(NULL);
    }
    return ok ? 0 : 1;
}
