/* SPDX-License-Identifier: MIT */
/*
 * The TSS2 PRIVATE KEY format (TCG "TPM 2.0 Key Files", as written by
 * tpm2-openssl and the TPM2 OpenSSL engines), both ways, and the public
 * area of a TPM key turned into an EVP_PKEY:
 *
 *   TPMKey ::= SEQUENCE {
 *       type        OBJECT IDENTIFIER,     -- loadable key / sealed data
 *       emptyAuth   [0] EXPLICIT BOOLEAN OPTIONAL,
 *       policy      [1] EXPLICIT SEQUENCE OF TPMPolicy OPTIONAL,
 *       secret      [2] EXPLICIT OCTET STRING OPTIONAL,
 *       parent      INTEGER,               -- 0x40000001 or 0x81xxxxxx
 *       pubkey      OCTET STRING,          -- TPM2B_PUBLIC, marshalled
 *       privkey     OCTET STRING }         -- TPM2B_PRIVATE, marshalled
 *   TPMPolicy ::= SEQUENCE {
 *       commandCode   [0] EXPLICIT INTEGER,
 *       commandPolicy [1] EXPLICIT OCTET STRING }
 *
 * The only policy keyhold writes or follows is one TPM2_PolicyPCR (sealed
 * PINs); a file asking for anything else is refused by name.
 */
#include <stdio.h>
#include <string.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <openssl/asn1t.h>
#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/obj_mac.h>
#include <tss2/tss2_mu.h>

#include "internal.h"

typedef struct {
    ASN1_INTEGER *cc;
    ASN1_OCTET_STRING *policy;
} KH_TSSPOLICY;

typedef struct {
    ASN1_OBJECT *type;
    ASN1_BOOLEAN empty_auth;
    STACK_OF(KH_TSSPOLICY) *policy;
    ASN1_OCTET_STRING *secret;
    ASN1_INTEGER *parent;
    ASN1_OCTET_STRING *pubkey;
    ASN1_OCTET_STRING *privkey;
} KH_TSSKEY;

DEFINE_STACK_OF(KH_TSSPOLICY)

ASN1_SEQUENCE(KH_TSSPOLICY) = {
    ASN1_EXP(KH_TSSPOLICY, cc, ASN1_INTEGER, 0),
    ASN1_EXP(KH_TSSPOLICY, policy, ASN1_OCTET_STRING, 1)
} static_ASN1_SEQUENCE_END(KH_TSSPOLICY)

ASN1_SEQUENCE(KH_TSSKEY) = {
    ASN1_SIMPLE(KH_TSSKEY, type, ASN1_OBJECT),
    ASN1_EXP_OPT(KH_TSSKEY, empty_auth, ASN1_BOOLEAN, 0),
    ASN1_EXP_SEQUENCE_OF_OPT(KH_TSSKEY, policy, KH_TSSPOLICY, 1),
    ASN1_EXP_OPT(KH_TSSKEY, secret, ASN1_OCTET_STRING, 2),
    ASN1_SIMPLE(KH_TSSKEY, parent, ASN1_INTEGER),
    ASN1_SIMPLE(KH_TSSKEY, pubkey, ASN1_OCTET_STRING),
    ASN1_SIMPLE(KH_TSSKEY, privkey, ASN1_OCTET_STRING)
} static_ASN1_SEQUENCE_END(KH_TSSKEY)

IMPLEMENT_STATIC_ASN1_ALLOC_FUNCTIONS(KH_TSSPOLICY)
IMPLEMENT_STATIC_ASN1_ALLOC_FUNCTIONS(KH_TSSKEY)
IMPLEMENT_STATIC_ASN1_ENCODE_FUNCTIONS(KH_TSSKEY)

/* Upper bound for a key file: a TPM2B_PUBLIC and TPM2B_PRIVATE are small. */
#define KEYFILE_MAX (16 * 1024)

enum kh_tpm_rc kh_tpm_keyfile_decode(const unsigned char *der, size_t derlen,
                                     KH_TPM_KEYFILE *kf, char *err,
                                     size_t errlen)
{
    KH_TSSKEY *tk = NULL;
    const unsigned char *p = der;
    char oid[64];
    uint64_t parent = 0;
    size_t off;
    enum kh_tpm_rc rc = KH_TPM_ERR_INPUT;
    TSS2_RC trc;

    memset(kf, 0, sizeof(*kf));
    if (der == NULL || derlen == 0 || derlen > KEYFILE_MAX) {
        snprintf(err, errlen, "TPM key file: empty or too large (%zu bytes)",
                 derlen);
        goto end;
    }
    tk = d2i_KH_TSSKEY(NULL, &p, (long)derlen);
    if (tk == NULL || p != der + derlen) {
        snprintf(err, errlen, "TPM key file: not a TSS2 PRIVATE KEY "
                 "structure (bad DER)");
        goto end;
    }
    if (OBJ_obj2txt(oid, sizeof(oid), tk->type, 1) <= 0) {
        snprintf(err, errlen, "TPM key file: unreadable type");
        goto end;
    }
    if (strcmp(oid, KH_TPM_OID_LOADABLE) == 0) {
        kf->sealed = 0;
    } else if (strcmp(oid, KH_TPM_OID_SEALED) == 0) {
        kf->sealed = 1;
    } else {
        snprintf(err, errlen, "TPM key file: type %s not supported "
                 "(only loadable keys %s and sealed data %s)", oid,
                 KH_TPM_OID_LOADABLE, KH_TPM_OID_SEALED);
        rc = KH_TPM_ERR_UNSUPPORTED;
        goto end;
    }
    kf->empty_auth = tk->empty_auth > 0;
    if (tk->secret != NULL) {
        snprintf(err, errlen, "TPM key file: importable keys with a secret "
                 "are not supported");
        rc = KH_TPM_ERR_UNSUPPORTED;
        goto end;
    }
    if (tk->policy != NULL && sk_KH_TSSPOLICY_num(tk->policy) > 0) {
        KH_TSSPOLICY *pol;
        uint64_t cc = 0;
        TPM2B_DIGEST pcr_digest;

        pol = sk_KH_TSSPOLICY_value(tk->policy, 0);
        if (sk_KH_TSSPOLICY_num(tk->policy) != 1
            || !ASN1_INTEGER_get_uint64(&cc, pol->cc)
            || cc != TPM2_CC_PolicyPCR) {
            snprintf(err, errlen, "TPM key file: policy other than one "
                     "TPM2_PolicyPCR is not supported");
            rc = KH_TPM_ERR_UNSUPPORTED;
            goto end;
        }
        off = 0;
        trc = Tss2_MU_TPM2B_DIGEST_Unmarshal(pol->policy->data,
                                             pol->policy->length, &off,
                                             &pcr_digest);
        if (trc == TSS2_RC_SUCCESS) {
            trc = Tss2_MU_TPML_PCR_SELECTION_Unmarshal(pol->policy->data,
                                                       pol->policy->length,
                                                       &off, &kf->pcrs);
        }
        if (trc != TSS2_RC_SUCCESS || off != (size_t)pol->policy->length) {
            snprintf(err, errlen, "TPM key file: malformed PolicyPCR");
            goto end;
        }
        kf->has_pcr_policy = 1;
    }
    if (!ASN1_INTEGER_get_uint64(&parent, tk->parent)
        || parent > UINT32_MAX) {
        snprintf(err, errlen, "TPM key file: parent handle out of range");
        goto end;
    }
    kf->parent = parent == 0 ? KH_TPM_RH_OWNER : (uint32_t)parent;
    if (kf->parent != KH_TPM_RH_OWNER
        && (kf->parent < KH_TPM_PERSISTENT_MIN
            || kf->parent > KH_TPM_PERSISTENT_MAX)) {
        snprintf(err, errlen, "TPM key file: parent 0x%08x is neither the "
                 "owner hierarchy nor a persistent key", kf->parent);
        rc = KH_TPM_ERR_UNSUPPORTED;
        goto end;
    }
    off = 0;
    trc = Tss2_MU_TPM2B_PUBLIC_Unmarshal(tk->pubkey->data,
                                         tk->pubkey->length, &off, &kf->pub);
    if (trc != TSS2_RC_SUCCESS || off != (size_t)tk->pubkey->length) {
        snprintf(err, errlen, "TPM key file: malformed public area");
        goto end;
    }
    off = 0;
    trc = Tss2_MU_TPM2B_PRIVATE_Unmarshal(tk->privkey->data,
                                          tk->privkey->length, &off,
                                          &kf->priv);
    if (trc != TSS2_RC_SUCCESS || off != (size_t)tk->privkey->length) {
        snprintf(err, errlen, "TPM key file: malformed private area");
        goto end;
    }
    if (!kf->sealed && kf->pub.publicArea.type != TPM2_ALG_RSA
        && kf->pub.publicArea.type != TPM2_ALG_ECC) {
        snprintf(err, errlen, "TPM key file: key type 0x%04x is neither "
                 "RSA nor ECC", kf->pub.publicArea.type);
        rc = KH_TPM_ERR_UNSUPPORTED;
        goto end;
    }
    if (kf->sealed && kf->pub.publicArea.type != TPM2_ALG_KEYEDHASH) {
        snprintf(err, errlen, "TPM key file: sealed object is not a "
                 "keyed-hash object");
        goto end;
    }
    rc = KH_TPM_OK;
end:
    KH_TSSKEY_free(tk);
    return rc;
}

enum kh_tpm_rc kh_tpm_keyfile_encode(const KH_TPM_KEYFILE *kf,
                                     unsigned char **der, size_t *derlen,
                                     char *err, size_t errlen)
{
    KH_TSSKEY *tk = NULL;
    KH_TSSPOLICY *pol = NULL;
    uint8_t pubbuf[sizeof(TPM2B_PUBLIC)];
    uint8_t privbuf[sizeof(TPM2B_PRIVATE)];
    uint8_t polbuf[sizeof(TPM2B_DIGEST) + sizeof(TPML_PCR_SELECTION)];
    size_t publen = 0, privlen = 0, pollen = 0;
    unsigned char *out = NULL;
    int len;
    enum kh_tpm_rc rc = KH_TPM_ERR;

    *der = NULL;
    *derlen = 0;
    if (Tss2_MU_TPM2B_PUBLIC_Marshal(&kf->pub, pubbuf, sizeof(pubbuf),
                                     &publen) != TSS2_RC_SUCCESS
        || Tss2_MU_TPM2B_PRIVATE_Marshal(&kf->priv, privbuf, sizeof(privbuf),
                                         &privlen) != TSS2_RC_SUCCESS) {
        snprintf(err, errlen, "TPM key file: cannot marshal key areas");
        goto end;
    }
    tk = KH_TSSKEY_new();
    if (tk == NULL) {
        goto oom;
    }
    tk->type = OBJ_txt2obj(kf->sealed ? KH_TPM_OID_SEALED
                                      : KH_TPM_OID_LOADABLE, 1);
    if (tk->type == NULL) {
        goto oom;
    }
    /*
     * Written either way: older TPM2 engines and tpm2-openssl 1.1 read an
     * absent emptyAuth as "no auth needed".
     */
    tk->empty_auth = kf->empty_auth ? 0xff : 0;
    if (!ASN1_INTEGER_set_uint64(tk->parent, kf->parent)
        || !ASN1_OCTET_STRING_set(tk->pubkey, pubbuf, (int)publen)
        || !ASN1_OCTET_STRING_set(tk->privkey, privbuf, (int)privlen)) {
        goto oom;
    }
    if (kf->has_pcr_policy) {
        /* PolicyPCR parameters: pcrDigest (empty: current values) + pcrs */
        TPM2B_DIGEST empty = { .size = 0 };

        if (Tss2_MU_TPM2B_DIGEST_Marshal(&empty, polbuf, sizeof(polbuf),
                                         &pollen) != TSS2_RC_SUCCESS
            || Tss2_MU_TPML_PCR_SELECTION_Marshal(&kf->pcrs, polbuf,
                                                  sizeof(polbuf), &pollen)
               != TSS2_RC_SUCCESS) {
            snprintf(err, errlen, "TPM key file: cannot marshal policy");
            goto end;
        }
        tk->policy = sk_KH_TSSPOLICY_new_null();
        pol = KH_TSSPOLICY_new();
        if (tk->policy == NULL || pol == NULL
            || !ASN1_INTEGER_set_uint64(pol->cc, TPM2_CC_PolicyPCR)
            || !ASN1_OCTET_STRING_set(pol->policy, polbuf, (int)pollen)
            || !sk_KH_TSSPOLICY_push(tk->policy, pol)) {
            goto oom;
        }
        pol = NULL;
    }
    len = i2d_KH_TSSKEY(tk, &out);
    if (len <= 0) {
        goto oom;
    }
    *der = out;
    *derlen = (size_t)len;
    rc = KH_TPM_OK;
    goto end;
oom:
    snprintf(err, errlen, "TPM key file: out of memory while encoding");
end:
    KH_TSSPOLICY_free(pol);
    if (tk != NULL && tk->policy != NULL) {
        sk_KH_TSSPOLICY_pop_free(tk->policy, KH_TSSPOLICY_free);
        tk->policy = NULL;
    }
    KH_TSSKEY_free(tk);
    return rc;
}

enum kh_tpm_rc kh_tpm_file_read_der(const char *path, unsigned char **der,
                                    size_t *derlen, char *err, size_t errlen)
{
    BIO *in = NULL;
    unsigned char buf[KEYFILE_MAX * 2 + 1];
    char *name = NULL, *header = NULL;
    unsigned char *data = NULL;
    long len = 0;
    int n;
    enum kh_tpm_rc rc = KH_TPM_ERR_INPUT;

    *der = NULL;
    *derlen = 0;
    in = BIO_new_file(path, "rb");
    if (in == NULL) {
        snprintf(err, errlen, "TPM key file %s: %s", path,
                 errno != 0 ? strerror(errno) : "cannot open");
        rc = KH_TPM_ERR_NOTFOUND;
        goto end;
    }
    n = BIO_read(in, buf, sizeof(buf));
    if (n <= 0 || (size_t)n >= sizeof(buf)) {
        snprintf(err, errlen, "TPM key file %s: %s", path,
                 n <= 0 ? "empty" : "too large");
        goto end;
    }
    if ((size_t)n > 10 && memcmp(buf, "-----BEGIN", 10) == 0) {
        BIO *mem = BIO_new_mem_buf(buf, n);

        if (mem == NULL
            || !PEM_read_bio(mem, &name, &header, &data, &len)) {
            BIO_free(mem);
            snprintf(err, errlen, "TPM key file %s: bad PEM", path);
            goto end;
        }
        BIO_free(mem);
        if (strcmp(name, KH_TPM_PEM_LABEL) != 0) {
            snprintf(err, errlen, "TPM key file %s: PEM label '%.40s', "
                     "expected '%s'", path, name, KH_TPM_PEM_LABEL);
            goto end;
        }
        *der = data;
        *derlen = (size_t)len;
        data = NULL;
    } else {
        *der = OPENSSL_memdup(buf, (size_t)n);
        if (*der == NULL) {
            snprintf(err, errlen, "out of memory");
            rc = KH_TPM_ERR;
            goto end;
        }
        *derlen = (size_t)n;
    }
    rc = KH_TPM_OK;
end:
    OPENSSL_free(name);
    OPENSSL_free(header);
    OPENSSL_free(data);
    OPENSSL_cleanse(buf, sizeof(buf));
    BIO_free(in);
    return rc;
}

int kh_tpm_pem_write(const char *path, const unsigned char *der,
                     size_t derlen, int mode, char *err, size_t errlen)
{
    BIO *out = NULL;
    FILE *fp = NULL;
    int fd, ok = 0;

    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
              mode);
    if (fd < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        goto end;
    }
    /* The mode asked for, whatever the caller's umask. */
    if (fchmod(fd, (mode_t)mode) != 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        close(fd);
        unlink(path);
        goto end;
    }
    fp = fdopen(fd, "w");
    if (fp == NULL) {
        close(fd);
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        goto end;
    }
    out = BIO_new_fp(fp, BIO_CLOSE);
    if (out == NULL) {
        fclose(fp);
        snprintf(err, errlen, "%s: out of memory", path);
        goto end;
    }
    if (!PEM_write_bio(out, KH_TPM_PEM_LABEL, "", der, (long)derlen)
        || BIO_flush(out) <= 0 || fsync(fd) != 0) {
        snprintf(err, errlen, "%s: write failed", path);
        goto end;
    }
    ok = 1;
end:
    BIO_free(out);
    return ok;
}

static int tpm_curve_nid(TPM2_ECC_CURVE curve)
{
    switch (curve) {
    case TPM2_ECC_NIST_P256:
        return NID_X9_62_prime256v1;
    case TPM2_ECC_NIST_P384:
        return NID_secp384r1;
    case TPM2_ECC_NIST_P521:
        return NID_secp521r1;
    default:
        return NID_undef;
    }
}

EVP_PKEY *kh_tpm_pub_to_pkey(const TPM2B_PUBLIC *pub, OSSL_LIB_CTX *libctx,
                             const char *propq, char *err, size_t errlen)
{
    const TPMT_PUBLIC *pa = &pub->publicArea;
    OSSL_PARAM_BLD *bld = NULL;
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *pctx = NULL;
    EVP_PKEY *pkey = NULL;
    BIGNUM *n = NULL, *e = NULL;
    unsigned char point[1 + 2 * 66];
    const char *type;

    bld = OSSL_PARAM_BLD_new();
    if (bld == NULL) {
        goto oom;
    }
    if (pa->type == TPM2_ALG_RSA) {
        uint32_t exp = pa->parameters.rsaDetail.exponent;

        type = "RSA";
        n = BN_bin2bn(pa->unique.rsa.buffer, pa->unique.rsa.size, NULL);
        e = BN_new();
        if (n == NULL || e == NULL
            || !BN_set_word(e, exp == 0 ? 65537 : exp)
            || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n)
            || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e)) {
            goto oom;
        }
    } else if (pa->type == TPM2_ALG_ECC) {
        int nid = tpm_curve_nid(pa->parameters.eccDetail.curveID);
        size_t flen, xl = pa->unique.ecc.x.size, yl = pa->unique.ecc.y.size;

        type = "EC";
        if (nid == NID_undef) {
            snprintf(err, errlen, "TPM key: curve 0x%04x not supported",
                     pa->parameters.eccDetail.curveID);
            goto end;
        }
        flen = nid == NID_X9_62_prime256v1 ? 32
               : nid == NID_secp384r1 ? 48 : 66;
        if (xl > flen || yl > flen) {
            snprintf(err, errlen, "TPM key: malformed EC point");
            goto end;
        }
        /* Uncompressed point; the TPM may drop leading zero bytes. */
        memset(point, 0, sizeof(point));
        point[0] = 0x04;
        memcpy(point + 1 + (flen - xl), pa->unique.ecc.x.buffer, xl);
        memcpy(point + 1 + flen + (flen - yl), pa->unique.ecc.y.buffer, yl);
        if (!OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME,
                                             OBJ_nid2sn(nid), 0)
            || !OSSL_PARAM_BLD_push_octet_string(bld,
                                                 OSSL_PKEY_PARAM_PUB_KEY,
                                                 point, 1 + 2 * flen)) {
            goto oom;
        }
    } else {
        snprintf(err, errlen, "TPM key: type 0x%04x is neither RSA nor ECC",
                 pa->type);
        goto end;
    }
    params = OSSL_PARAM_BLD_to_param(bld);
    pctx = EVP_PKEY_CTX_new_from_name(libctx, type, propq);
    if (params == NULL || pctx == NULL || EVP_PKEY_fromdata_init(pctx) <= 0
        || EVP_PKEY_fromdata(pctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) <= 0) {
        snprintf(err, errlen, "TPM key: cannot build the %s public key",
                 type);
        pkey = NULL;
        goto end;
    }
    goto end;
oom:
    snprintf(err, errlen, "out of memory");
end:
    BN_free(n);
    BN_free(e);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    EVP_PKEY_CTX_free(pctx);
    return pkey;
}
