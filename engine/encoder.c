/* SPDX-License-Identifier: MIT */
/*
 * Text encoder: `openssl pkey -in key.pem -text -noout` on a keyhold key
 * prints the public half and the key's URI; there is no private part to
 * print.
 */
#include <openssl/bio.h>
#include <openssl/core_dispatch.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>

#include "keyhold.h"

static OSSL_FUNC_encoder_newctx_fn enc_newctx;
static OSSL_FUNC_encoder_freectx_fn enc_freectx;
static OSSL_FUNC_encoder_does_selection_fn enc_does_selection;
static OSSL_FUNC_encoder_encode_fn enc_encode;
static OSSL_FUNC_encoder_import_object_fn enc_import_object;
static OSSL_FUNC_encoder_free_object_fn enc_free_object;

/*
 * Keys of other providers are not printed here (their own text encoder
 * does it): refusing the import makes libcrypto use that one.
 */
static void *enc_import_object(void *vctx, int selection,
                               const OSSL_PARAM params[])
{
    return NULL;
}

static void enc_free_object(void *obj)
{
}

static void *enc_newctx(void *provctx)
{
    return provctx;
}

static void enc_freectx(void *vctx)
{
}

static int enc_does_selection(void *provctx, int selection)
{
    return (selection & OSSL_KEYMGMT_SELECT_KEYPAIR) != 0;
}

static int enc_encode(void *vctx, OSSL_CORE_BIO *cout, const void *obj,
                      const OSSL_PARAM key_abstract[], int selection,
                      OSSL_PASSPHRASE_CALLBACK *cb, void *cbarg)
{
    KH_PROV_CTX *prov = vctx;
    KH_KEY *key = (KH_KEY *)obj;
    EVP_PKEY *pub;
    BIO *out;
    int ok = 0;

    if (key == NULL || key_abstract != NULL || (pub = kh_key_pub(key)) == NULL) {
        return 0;
    }
    out = BIO_new_from_core_bio(prov->libctx, cout);
    if (out == NULL) {
        return 0;
    }
    if (key->ops != NULL) {
        if (BIO_printf(out, "keyhold %s key in hardware (%s); the private "
                       "part cannot be read\n", kh_key_type_name(key),
                       key->ops->name) <= 0
            || BIO_printf(out, "URI: %s\n",
                          key->uri != NULL ? key->uri : "(none)") <= 0) {
            goto end;
        }
    }
    ok = EVP_PKEY_print_public(out, pub, 0, NULL) > 0;
end:
    BIO_free(out);
    return ok;
}

const OSSL_DISPATCH kh_rsa_text_encoder_functions[] = {
    { OSSL_FUNC_ENCODER_NEWCTX, (void (*)(void))enc_newctx },
    { OSSL_FUNC_ENCODER_FREECTX, (void (*)(void))enc_freectx },
    { OSSL_FUNC_ENCODER_DOES_SELECTION, (void (*)(void))enc_does_selection },
    { OSSL_FUNC_ENCODER_ENCODE, (void (*)(void))enc_encode },
    { OSSL_FUNC_ENCODER_IMPORT_OBJECT, (void (*)(void))enc_import_object },
    { OSSL_FUNC_ENCODER_FREE_OBJECT, (void (*)(void))enc_free_object },
    { 0, NULL }
};

const OSSL_DISPATCH kh_ec_text_encoder_functions[] = {
    { OSSL_FUNC_ENCODER_NEWCTX, (void (*)(void))enc_newctx },
    { OSSL_FUNC_ENCODER_FREECTX, (void (*)(void))enc_freectx },
    { OSSL_FUNC_ENCODER_DOES_SELECTION, (void (*)(void))enc_does_selection },
    { OSSL_FUNC_ENCODER_ENCODE, (void (*)(void))enc_encode },
    { OSSL_FUNC_ENCODER_IMPORT_OBJECT, (void (*)(void))enc_import_object },
    { OSSL_FUNC_ENCODER_FREE_OBJECT, (void (*)(void))enc_free_object },
    { 0, NULL }
};
