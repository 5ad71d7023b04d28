/* SPDX-License-Identifier: MIT */
/*
 * Decoder for the PEM key reference ("KEYHOLD KEY REFERENCE"): a file that
 * names a hardware key by URI. An application that only reads a key file
 * (nginx ssl_certificate_key, PEM_read_bio_PrivateKey, openssl -key) gets
 * the hardware key when keyhold is loaded.
 *
 * Footprint: the decoder sees PEM input of every private key decode, so it
 * looks at the first PEM header line only and steps aside at once (empty
 * result, no error) unless the label is ours.
 */
#include <string.h>

#include <openssl/bio.h>
#include <openssl/core_dispatch.h>
#include <openssl/core_names.h>
#include <openssl/core_object.h>
#include <openssl/evp.h>

#include "keyhold.h"
#include "kh_keyref.h"
#include "kh_uri.h"

#define KH_REF_BEGIN "-----BEGIN " KH_KEYREF_PEM_LABEL "-----"
#define KH_REF_END "-----END " KH_KEYREF_PEM_LABEL "-----"
#define KH_REF_MAX_PEM (KH_KEYREF_MAX_URI * 2 + 256)

typedef struct kh_dec_ctx {
    KH_PROV_CTX *prov;
    int type;                 /* EVP_PKEY_RSA or EVP_PKEY_EC */
} KH_DEC_CTX;

static OSSL_FUNC_decoder_newctx_fn dec_newctx_rsa;
static OSSL_FUNC_decoder_newctx_fn dec_newctx_ec;
static OSSL_FUNC_decoder_freectx_fn dec_freectx;
static OSSL_FUNC_decoder_does_selection_fn dec_does_selection;
static OSSL_FUNC_decoder_decode_fn dec_decode;
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

static void chomp(char *s)
{
    size_t n = strlen(s);

    while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' '
                     || s[n - 1] == '\t')) {
        s[--n] = '\0';
    }
}

/*
 * Reads the reference block into |mem| when the first non-empty line is our
 * BEGIN line. Returns 1 ours, 0 not ours, -1 ours but malformed/too big.
 */
static int read_block(BIO *in, BIO *mem)
{
    char line[256];
    int i, n, total = 0;

    for (i = 0; i < 4; i++) {
        n = BIO_gets(in, line, sizeof(line));
        if (n <= 0) {
            return 0;
        }
        chomp(line);
        if (line[0] != '\0') {
            break;
        }
    }
    if (i == 4 || strcmp(line, KH_REF_BEGIN) != 0) {
        return 0;
    }
    BIO_printf(mem, "%s\n", line);
    for (;;) {
        n = BIO_gets(in, line, sizeof(line));
        if (n <= 0) {
            return -1; /* no END line */
        }
        total += n;
        if (total > KH_REF_MAX_PEM) {
            return -1;
        }
        chomp(line);
        BIO_printf(mem, "%s\n", line);
        if (strcmp(line, KH_REF_END) == 0) {
            return 1;
        }
    }
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

static int dec_decode(void *vctx, OSSL_CORE_BIO *cin, int selection,
                      OSSL_CALLBACK *data_cb, void *data_cbarg,
                      OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_cbarg)
{
    KH_DEC_CTX *ctx = vctx;
    KH_PROV_CTX *prov = ctx->prov;
    BIO *in = NULL, *mem = NULL;
    char *uri = NULL;
    char err[256];
    KH_KEY *key = NULL;
    int ok = 0, rc;

    in = BIO_new_from_core_bio(prov->libctx, cin);
    mem = BIO_new(BIO_s_mem());
    if (in == NULL || mem == NULL) {
        goto end;
    }
    rc = read_block(in, mem);
    if (rc == 0) {
        ok = 1; /* not ours: empty result, let other decoders try */
        goto end;
    }
    if (rc < 0) {
        KH_raise(prov, KH_R_KEY_REFERENCE,
                 "truncated or oversized key reference");
        goto end;
    }
    if (!kh_keyref_pem_read(mem, &uri, err, sizeof(err))) {
        KH_raise(prov, KH_R_KEY_REFERENCE, "key reference: %s", err);
        goto end;
    }
    KH_debug("key reference names %s", uri);
    if (!resolve(prov, uri, pw_cb, pw_cbarg, &key)) {
        goto end;
    }
    if (key->type != ctx->type) {
        ok = 1; /* the decoder for the other key type produces it */
        goto end;
    }
    {
        OSSL_PARAM params[4];
        int objtype = OSSL_OBJECT_PKEY;
        KH_OBJ_REF ref;

        ref.magic = KH_KEYREF_MAGIC;
        ref.key = key;
        params[0] = OSSL_PARAM_construct_int(OSSL_OBJECT_PARAM_TYPE, &objtype);
        params[1] = OSSL_PARAM_construct_utf8_string(
            OSSL_OBJECT_PARAM_DATA_TYPE, (char *)kh_key_type_name(key), 0);
        params[2] = OSSL_PARAM_construct_octet_string(
            OSSL_OBJECT_PARAM_REFERENCE, &ref, sizeof(ref));
        params[3] = OSSL_PARAM_construct_end();
        ok = data_cb(params, data_cbarg);
    }
end:
    kh_key_free(key);
    OPENSSL_free(uri);
    BIO_free(mem);
    BIO_free(in);
    return ok;
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
    { OSSL_FUNC_DECODER_DECODE, (void (*)(void))dec_decode }, \
    { OSSL_FUNC_DECODER_EXPORT_OBJECT, (void (*)(void))dec_export_object }

const OSSL_DISPATCH kh_rsa_keyref_decoder_functions[] = {
    { OSSL_FUNC_DECODER_NEWCTX, (void (*)(void))dec_newctx_rsa },
    DEC_COMMON,
    { 0, NULL }
};

const OSSL_DISPATCH kh_ec_keyref_decoder_functions[] = {
    { OSSL_FUNC_DECODER_NEWCTX, (void (*)(void))dec_newctx_ec },
    DEC_COMMON,
    { 0, NULL }
};
