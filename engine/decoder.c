/* SPDX-License-Identifier: MIT */
/*
 * Decoder for the key reference ("KEYHOLD KEY REFERENCE" PEM, DER body
 * KeyholdKeyReference ::= SEQUENCE { version INTEGER (1), uri UTF8String }):
 * a file that names a hardware key by URI. An application that only reads a
 * key file (nginx ssl_certificate_key, PEM_read_bio_PrivateKey, openssl
 * -key/-in through OSSL_STORE) gets the hardware key when keyhold is loaded.
 *
 * The default provider's PEM-to-DER step turns any PEM block into DER; this
 * decoder takes DER input only, with its own structure name, so it is
 * skipped whenever a caller names another structure (certificate public
 * keys, PKCS#8) or wants no private key, and otherwise looks at six bytes
 * before stepping aside: other decodes pay next to nothing.
 *
 * Two consumers, two shapes of answer. A key decoder (PEM_read_bio_*,
 * OSSL_DECODER_CTX_new_for_pkey) builds the key from an object reference
 * with keyhold's keymgmt. OSSL_STORE's file: loader instead hands the
 * decoded object to the store core, which in OpenSSL 3.0 resolves references
 * only with the loader's own provider (default) and so cannot use one from
 * keyhold. When the reference is refused, the same object is offered again
 * by value (the DER reference itself): the store core then runs a key
 * decoder over it, which comes back here and succeeds by reference.
 */
#include <string.h>

#include <openssl/bio.h>
#include <openssl/core_dispatch.h>
#include <openssl/core_names.h>
#include <openssl/core_object.h>
#include <openssl/err.h>
#include <openssl/evp.h>

#include "keyhold.h"
#include "kh_keyref.h"
#include "kh_uri.h"

#define KH_REF_DER_MAX (KH_KEYREF_MAX_URI + 16)

typedef struct kh_dec_ctx {
    KH_PROV_CTX *prov;
    int type;                 /* EVP_PKEY_RSA or EVP_PKEY_EC */
} KH_DEC_CTX;

static OSSL_FUNC_decoder_newctx_fn dec_newctx_rsa;
static OSSL_FUNC_decoder_newctx_fn dec_newctx_ec;
static OSSL_FUNC_decoder_freectx_fn dec_freectx;
static OSSL_FUNC_decoder_does_selection_fn dec_does_selection;
static OSSL_FUNC_decoder_decode_fn dec_decode_der;
static OSSL_FUNC_decoder_decode_fn dec_decode_pem;
static OSSL_FUNC_decoder_newctx_fn pem_newctx;
static OSSL_FUNC_decoder_freectx_fn pem_freectx;
static OSSL_FUNC_decoder_export_object_fn dec_export_object;

static void *dec_newctx(void *provctx, int type)
{
    KH_DEC_CTX *ctx = OPENSSL_zalloc(sizeof(*ctx));

    if (ctx != NULL) {
        ctx->prov = provctx;
        ctx->type = type;
    }
    return ctx;
}

static void *dec_newctx_rsa(void *provctx)
{
    return dec_newctx(provctx, EVP_PKEY_RSA);
}

static void *dec_newctx_ec(void *provctx)
{
    return dec_newctx(provctx, EVP_PKEY_EC);
}

static void dec_freectx(void *vctx)
{
    OPENSSL_free(vctx);
}

/* A reference names a private key: public-only or parameter decodes skip it. */
static int dec_does_selection(void *provctx, int selection)
{
    return selection == 0
           || (selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) != 0;
}

/*
 * Reads the input when it starts like a key reference: SEQUENCE, INTEGER 1,
 * UTF8String. Returns the length read, 0 when it is not one (or too big).
 */
static size_t read_ref(BIO *in, unsigned char *buf, size_t bufsize)
{
    size_t got = 0, total, hdr;
    int n;

    while (got < 6) {
        n = BIO_read(in, buf + got, (int)(6 - got));
        if (n <= 0) {
            return 0;
        }
        got += (size_t)n;
    }

    if (buf[0] != 0x30) {
        return 0;
    }
    if (buf[1] < 0x80) {
        total = 2 + (size_t)buf[1];
        hdr = 2;
    } else if (buf[1] == 0x81) {
        total = 3 + (size_t)buf[2];
        hdr = 3;
    } else if (buf[1] == 0x82) {
        total = 4 + ((size_t)buf[2] << 8) + buf[3];
        hdr = 4;
    } else {
        return 0;
    }
    /* version INTEGER 1 and the UTF8String tag must follow the header */
    if (total > bufsize || total < hdr + 4) {
        return 0;
    }
    while (got < total && got < hdr + 4) {
        n = BIO_read(in, buf + got, (int)(hdr + 4 - got));
        if (n <= 0) {
            return 0;
        }
        got += (size_t)n;
    }
    if (got < hdr + 4 || buf[hdr] != 0x02 || buf[hdr + 1] != 0x01
        || buf[hdr + 2] != 0x01 || buf[hdr + 3] != 0x0c) {
        return 0;
    }
    while (got < total) {
        n = BIO_read(in, buf + got, (int)(total - got));
        if (n <= 0) {
            return 0;
        }
        got += (size_t)n;
    }
    return got;
}

static int resolve(KH_PROV_CTX *prov, const char *uri,
                   OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_cbarg,
                   KH_KEY **key)
{
    if (kh_is_p11_uri(uri)) {
        return kh_p11_resolve(prov, uri, pw_cb, pw_cbarg, key);
    }
    if (strncmp(uri, "tpm2:", 5) == 0 && kh_tpm_resolve != NULL) {
        return kh_tpm_resolve(prov, uri, pw_cb, pw_cbarg, key);
    }
    KH_raise(prov, KH_R_KEY_REFERENCE,
             "key reference names an unsupported URI scheme");
    return 0;
}

/*
 * Reads a PEM key reference block when the input starts with its BEGIN
 * line (what keyhold writes; identity.pem has the reference first). The
 * label check costs one small read for every other PEM input.
 * Returns 1 with *uri, 0 not ours, -1 ours but bad (error raised).
 */
static int read_pem_ref(KH_PROV_CTX *prov, BIO *in, char **uri)
{
    static const char begin[] = "-----BEGIN " KH_KEYREF_PEM_LABEL "-----";
    static const char end[] = "-----END " KH_KEYREF_PEM_LABEL "-----";
    char head[sizeof(begin)], err[256];
    BIO *mem = NULL;
    char buf[1024];
    size_t got = 0, total;
    int n, rc = -1;

    while (got < sizeof(begin) - 1) {
        n = BIO_read(in, head + got, (int)(sizeof(begin) - 1 - got));
        if (n <= 0) {
            return 0;
        }
        got += (size_t)n;
    }
    if (memcmp(head, begin, sizeof(begin) - 1) != 0) {
        return 0;
    }
    mem = BIO_new(BIO_s_mem());
    if (mem == NULL || BIO_write(mem, head, (int)got) != (int)got) {
        goto end;
    }
    /*
     * Up to our END line and not a byte further: identity.pem carries the
     * certificate chain after the reference, for the next load to read.
     */
    total = got;
    for (;;) {
        n = BIO_gets(in, buf, sizeof(buf));
        if (n <= 0) {
            KH_raise(prov, KH_R_KEY_REFERENCE,
                     "truncated key reference (no END line)");
            goto end;
        }
        total += (size_t)n;
        if (total > 65536 || BIO_write(mem, buf, n) != n) {
            KH_raise(prov, KH_R_KEY_REFERENCE, "key reference too large");
            goto end;
        }
        if (strncmp(buf, end, sizeof(end) - 1) == 0) {
            break;
        }
    }
    if (!kh_keyref_pem_read(mem, uri, err, sizeof(err))) {
        KH_raise(prov, KH_R_KEY_REFERENCE, "key reference: %s", err);
        goto end;
    }
    rc = 1;
end:
    BIO_free(mem);
    return rc;
}

/* Resolves |uri| and hands the key on (see the top of the file). */
static int produce(KH_DEC_CTX *ctx, const char *uri, OSSL_CALLBACK *data_cb,
                   void *data_cbarg, OSSL_PASSPHRASE_CALLBACK *pw_cb,
                   void *pw_cbarg)
{
    KH_PROV_CTX *prov = ctx->prov;
    OSSL_PARAM params[5];
    int objtype = OSSL_OBJECT_PKEY;
    unsigned char *der = NULL;
    size_t derlen = 0;
    char err[256];
    KH_KEY *key = NULL;
    KH_OBJ_REF ref;
    int ok = 0;

    /* the URI itself is not traced: a hand-made file may hold a PIN */
    KH_debug("key reference read (%.8s...)", uri);
    if (!resolve(prov, uri, pw_cb, pw_cbarg, &key)) {
        return 0;
    }
    if (key->type != ctx->type) {
        ok = 1; /* the decoder for the other key type produces it */
        goto end;
    }
    ref.magic = KH_KEYREF_MAGIC;
    ref.key = key;
    params[0] = OSSL_PARAM_construct_int(OSSL_OBJECT_PARAM_TYPE, &objtype);
    params[1] = OSSL_PARAM_construct_utf8_string(
        OSSL_OBJECT_PARAM_DATA_TYPE, (char *)kh_key_type_name(key), 0);
    params[2] = OSSL_PARAM_construct_octet_string(OSSL_OBJECT_PARAM_REFERENCE,
                                                  &ref, sizeof(ref));
    params[3] = OSSL_PARAM_construct_end();
    ERR_set_mark();
    ok = data_cb(params, data_cbarg);
    ERR_pop_to_mark();
    if (ok) {
        goto end;
    }
    /* Refused by reference (OSSL_STORE file: loader): offer it by value. */
    if (!kh_keyref_der_encode(uri, &der, &derlen, err, sizeof(err))) {
        KH_raise(prov, KH_R_KEY_REFERENCE, "key reference: %s", err);
        goto end;
    }
    params[2] = OSSL_PARAM_construct_utf8_string(
        OSSL_OBJECT_PARAM_DATA_STRUCTURE, "keyhold-key-reference", 0);
    params[3] = OSSL_PARAM_construct_octet_string(OSSL_OBJECT_PARAM_DATA, der,
                                                  derlen);
    params[4] = OSSL_PARAM_construct_end();
    ok = data_cb(params, data_cbarg);
end:
    OPENSSL_free(der);
    kh_key_free(key);
    return ok;
}

static int dec_decode_der(void *vctx, OSSL_CORE_BIO *cin, int selection,
                          OSSL_CALLBACK *data_cb, void *data_cbarg,
                          OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_cbarg)
{
    KH_DEC_CTX *ctx = vctx;
    KH_PROV_CTX *prov = ctx->prov;
    unsigned char der[KH_REF_DER_MAX];
    BIO *in = NULL;
    char *uri = NULL;
    char err[256];
    size_t derlen;
    int ok = 0;

    in = BIO_new_from_core_bio(prov->libctx, cin);
    if (in == NULL) {
        goto end;
    }
    derlen = read_ref(in, der, sizeof(der));
    if (derlen == 0) {
        ok = 1; /* not ours: empty result, other decoders go on */
        goto end;
    }
    if (!kh_keyref_der_decode(der, derlen, &uri, err, sizeof(err))) {
        KH_raise(prov, KH_R_KEY_REFERENCE, "key reference: %s", err);
        goto end;
    }
    ok = produce(ctx, uri, data_cb, data_cbarg, pw_cb, pw_cbarg);
end:
    OPENSSL_free(uri);
    BIO_free(in);
    return ok;
}

/*
 * PEM step, named "DER" like the default provider's PEM-to-DER decoder (which
 * passes on known labels only): it turns a key reference PEM block into its
 * DER body, tagged with keyhold's structure name, for the DER step above.
 * Being a "DER" producer puts it in every chain that reads PEM, including
 * OSSL_STORE's file: loader; it steps aside after comparing the first line.
 */
static int dec_decode_pem(void *vctx, OSSL_CORE_BIO *cin, int selection,
                          OSSL_CALLBACK *data_cb, void *data_cbarg,
                          OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_cbarg)
{
    KH_PROV_CTX *prov = vctx;
    OSSL_PARAM params[4];
    int objtype = OSSL_OBJECT_PKEY;
    unsigned char *der = NULL;
    size_t derlen = 0;
    char err[256];
    BIO *in;
    char *uri = NULL;
    int ok = 0, rc;

    in = BIO_new_from_core_bio(prov->libctx, cin);
    if (in == NULL) {
        return 0;
    }
    rc = read_pem_ref(prov, in, &uri);
    if (rc == 0) {
        ok = 1; /* not ours */
        goto end;
    }
    if (rc < 0) {
        goto end;
    }
    if (!kh_keyref_der_encode(uri, &der, &derlen, err, sizeof(err))) {
        KH_raise(prov, KH_R_KEY_REFERENCE, "key reference: %s", err);
        goto end;
    }
    params[0] = OSSL_PARAM_construct_int(OSSL_OBJECT_PARAM_TYPE, &objtype);
    params[1] = OSSL_PARAM_construct_utf8_string(
        OSSL_OBJECT_PARAM_DATA_STRUCTURE, "keyhold-key-reference", 0);
    params[2] = OSSL_PARAM_construct_octet_string(OSSL_OBJECT_PARAM_DATA, der,
                                                  derlen);
    params[3] = OSSL_PARAM_construct_end();
    ok = data_cb(params, data_cbarg);
end:
    OPENSSL_free(der);
    OPENSSL_free(uri);
    BIO_free(in);
    return ok;
}

static void *pem_newctx(void *provctx)
{
    return provctx;
}

static void pem_freectx(void *vctx)
{
}

/* Private keys are not exported to other providers (see keymgmt.c). */
static int dec_export_object(void *vctx, const void *reference,
                             size_t reference_sz, OSSL_CALLBACK *export_cb,
                             void *export_cbarg)
{
    return 0;
}

#define DEC_COMMON \
    { OSSL_FUNC_DECODER_FREECTX, (void (*)(void))dec_freectx }, \
    { OSSL_FUNC_DECODER_DOES_SELECTION, (void (*)(void))dec_does_selection }, \
    { OSSL_FUNC_DECODER_EXPORT_OBJECT, (void (*)(void))dec_export_object }

const OSSL_DISPATCH kh_rsa_keyref_decoder_functions[] = {
    { OSSL_FUNC_DECODER_NEWCTX, (void (*)(void))dec_newctx_rsa },
    { OSSL_FUNC_DECODER_DECODE, (void (*)(void))dec_decode_der },
    DEC_COMMON,
    { 0, NULL }
};

const OSSL_DISPATCH kh_ec_keyref_decoder_functions[] = {
    { OSSL_FUNC_DECODER_NEWCTX, (void (*)(void))dec_newctx_ec },
    { OSSL_FUNC_DECODER_DECODE, (void (*)(void))dec_decode_der },
    DEC_COMMON,
    { 0, NULL }
};

const OSSL_DISPATCH kh_keyref_pem_decoder_functions[] = {
    { OSSL_FUNC_DECODER_NEWCTX, (void (*)(void))pem_newctx },
    { OSSL_FUNC_DECODER_FREECTX, (void (*)(void))pem_freectx },
    { OSSL_FUNC_DECODER_DOES_SELECTION, (void (*)(void))dec_does_selection },
    { OSSL_FUNC_DECODER_DECODE, (void (*)(void))dec_decode_pem },
    { 0, NULL }
};
