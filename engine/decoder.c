/* SPDX-License-Identifier: MIT */
/*
 * Decoders for the two key files that name a hardware key: the key
 * reference ("KEYHOLD KEY REFERENCE" PEM, DER body KeyholdKeyReference ::=
 * SEQUENCE { version INTEGER (1), uri UTF8String }), a file that names a key
 * by URI, and the TPM's own "TSS2 PRIVATE KEY" (TCG TPM 2.0 key file). An
 * application that only reads a key file (nginx ssl_certificate_key,
 * PEM_read_bio_PrivateKey, openssl -key/-in through OSSL_STORE) gets the
 * hardware key when keyhold is loaded.
 *
 * One decoder reads both, registered under the RSA and the EC key type
 * names (OpenSSL picks decoders for a key decode by type; whichever runs
 * first makes the key, of the type the file holds), because every decoder
 * a provider registers is looked at by every key decode in the application
 * (OpenSSL 3.0 runs one for the public key of each certificate it parses).
 * It answers does_selection for private keys only, so public-key and
 * parameter decodes leave it out before it is even instantiated, and steps
 * aside after twelve bytes (or the first line of PEM) that are not its own.
 * It reads the PEM forms itself; with store-key-files (provider.c) it takes
 * DER under the structure name "keyhold" instead, behind a separate PEM
 * step named "DER", as OSSL_STORE's file: loader needs.
 *
 * Two consumers, two shapes of answer. A key decoder (PEM_read_bio_*,
 * OSSL_DECODER_CTX_new_for_pkey) builds the key from an object reference
 * with keyhold's keymgmt. OSSL_STORE's file: loader instead hands the
 * decoded object to the store core, which in OpenSSL 3.0 resolves references
 * only with the loader's own provider (default) and so cannot use one from
 * keyhold. When the reference is refused, the same object is offered again
 * by value (the DER body itself): the store core then runs a key decoder
 * over it, which comes back here and succeeds by reference.
 */
#include <string.h>

#include <openssl/bio.h>
#include <openssl/core_dispatch.h>
#include <openssl/core_names.h>
#include <openssl/core_object.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "keyhold.h"
#include "kh_keyref.h"
#include "kh_uri.h"

/* The structure name the PEM step gives the DER bodies it passes on. */
#define KH_DEC_STRUCTURE "keyhold"
#define KH_REF_DER_MAX (KH_KEYREF_MAX_URI + 16)
#define KH_TSS2_LABEL "TSS2 PRIVATE KEY"
#define KH_TSS2_DER_MAX (16 * 1024)
/* the longest PEM file either label may have (TSS2: base64 of 16 KiB) */
#define KH_PEM_MAX (64 * 1024)

static OSSL_FUNC_decoder_newctx_fn dec_newctx;
static OSSL_FUNC_decoder_freectx_fn dec_freectx;
static OSSL_FUNC_decoder_does_selection_fn dec_does_selection;
static OSSL_FUNC_decoder_decode_fn dec_decode_file;
static OSSL_FUNC_decoder_decode_fn dec_decode_pem;
static OSSL_FUNC_decoder_export_object_fn dec_export_object;

/* The decoders keep no state of their own: the context is the provider's. */
static void *dec_newctx(void *provctx)
{
    return provctx;
}

static void dec_freectx(void *vctx)
{
}

/* Both files name a private key: public-only or parameter decodes skip. */
static int dec_does_selection(void *provctx, int selection)
{
    return selection == 0
           || (selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) != 0;
}

/* Reads up to |max| bytes (fewer only at the end of the input). */
static size_t read_upto(BIO *in, unsigned char *buf, size_t max)
{
    size_t got = 0;
    int n;

    while (got < max) {
        n = BIO_read(in, buf + got, (int)(max - got));
        if (n <= 0) {
            break;
        }
        got += (size_t)n;
    }
    return got;
}

/* Length of the DER header at |der| (2, 3 or 4), 0 if not a SEQUENCE. */
static size_t seq_header(const unsigned char *der, size_t len, size_t *total)
{
    if (len < 4 || der[0] != 0x30) {
        return 0;
    }
    if (der[1] < 0x80) {
        *total = 2 + (size_t)der[1];
        return 2;
    }
    if (der[1] == 0x81) {
        *total = 3 + (size_t)der[2];
        return 3;
    }
    if (der[1] == 0x82) {
        *total = 4 + ((size_t)der[2] << 8) + der[3];
        return 4;
    }
    return 0;
}

/* SEQUENCE { version INTEGER 1, uri UTF8String: a key reference. */
static int looks_keyref(const unsigned char *der, size_t len, size_t *total)
{
    size_t hdr = seq_header(der, len, total);

    return hdr != 0 && len >= hdr + 4 && *total <= KH_REF_DER_MAX
           && der[hdr] == 0x02 && der[hdr + 1] == 0x01
           && der[hdr + 2] == 0x01 && der[hdr + 3] == 0x0c;
}

/* SEQUENCE { OBJECT IDENTIFIER 2.23.133.10.1.3 or .5, ...: a TSS2 key. */
static int looks_tss2(const unsigned char *der, size_t len)
{
    static const unsigned char oid[] = { 0x06, 0x06, 0x67, 0x81, 0x05, 0x0a,
                                         0x01 };
    size_t total, hdr = seq_header(der, len, &total);

    return hdr != 0 && len >= hdr + 8
           && memcmp(der + hdr, oid, sizeof(oid)) == 0
           && (der[hdr + 7] == 0x03 || der[hdr + 7] == 0x05);
}

static int resolve(KH_PROV_CTX *prov, const char *uri,
                   OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_cbarg,
                   KH_KEY **key)
{
    if (kh_is_p11_uri(uri)) {
        return kh_p11_resolve(prov, uri, pw_cb, pw_cbarg, key);
    }
    if (strncmp(uri, "tpm2:", 5) == 0) {
        return kh_tpm_resolve(prov, uri, pw_cb, pw_cbarg, key);
    }
    KH_raise(prov, KH_R_KEY_REFERENCE,
             "key reference names an unsupported URI scheme");
    return 0;
}

/*
 * Hands |key| (made from the DER body |der|) on: by reference, and by
 * value when the reference is refused (see the top of the file).
 */
static int produce(KH_KEY *key, const unsigned char *der, size_t derlen,
                   OSSL_CALLBACK *data_cb, void *data_cbarg)
{
    OSSL_PARAM params[5];
    int objtype = OSSL_OBJECT_PKEY;
    KH_OBJ_REF ref;
    int ok;

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
        return 1;
    }
    /* Refused by reference (OSSL_STORE file: loader): offer it by value. */
    params[2] = OSSL_PARAM_construct_utf8_string(
        OSSL_OBJECT_PARAM_DATA_STRUCTURE, KH_DEC_STRUCTURE, 0);
    params[3] = OSSL_PARAM_construct_octet_string(OSSL_OBJECT_PARAM_DATA,
                                                  (void *)der, derlen);
    params[4] = OSSL_PARAM_construct_end();
    return data_cb(params, data_cbarg);
}

/* The two PEM labels. */
static const struct pem_label {
    const char *begin, *end, *what;
    int tss2;
} labels[] = {
    { "-----BEGIN " KH_TSS2_LABEL "-----", "-----END " KH_TSS2_LABEL "-----",
      KH_TSS2_LABEL, 1 },
    { "-----BEGIN " KH_KEYREF_PEM_LABEL "-----",
      "-----END " KH_KEYREF_PEM_LABEL "-----", "key reference", 0 },
};

/*
 * Which label the input starts with (NULL: neither); |head| holds the
 * first *got bytes already read. Reads the shorter BEGIN line first, and
 * the rest of the longer one only when it may be it.
 */
static const struct pem_label *read_begin(BIO *in, char *head, size_t *got)
{
    size_t n0 = strlen(labels[0].begin), n1 = strlen(labels[1].begin);

    if (*got < n0) {
        *got += read_upto(in, (unsigned char *)head + *got, n0 - *got);
    }
    if (*got < n0) {
        return NULL;
    }
    if (memcmp(head, labels[0].begin, n0) == 0) {
        return &labels[0];
    }
    if (memcmp(head, labels[1].begin, n0) != 0) {
        return NULL;
    }
    *got += read_upto(in, (unsigned char *)head + n0, n1 - n0);
    return *got == n1 && memcmp(head, labels[1].begin, n1) == 0 ? &labels[1]
                                                                : NULL;
}

/*
 * Copies the PEM block into |mem|, up to its END line and not a byte
 * further: identity.pem carries the certificate chain after the reference,
 * for the next load to read. 1 ok, 0 error raised.
 */
static int read_block(KH_PROV_CTX *prov, BIO *in, const struct pem_label *l,
                      const char *head, size_t headlen, BIO *mem)
{
    size_t total = headlen, endlen = strlen(l->end);
    char buf[1024];
    int n;

    if (BIO_write(mem, head, (int)headlen) != (int)headlen) {
        KH_raise(prov, KH_R_MALLOC, "out of memory");
        return 0;
    }
    for (;;) {
        n = BIO_gets(in, buf, sizeof(buf));
        if (n <= 0) {
            KH_raise(prov, KH_R_KEY_REFERENCE, l->tss2
                     ? "%s: truncated or malformed PEM"
                     : "truncated %s (no END line)", l->what);
            return 0;
        }
        total += (size_t)n;
        if (total > KH_PEM_MAX) {
            KH_raise(prov, KH_R_KEY_REFERENCE, "%s: file too large",
                     l->what);
            return 0;
        }
        if (BIO_write(mem, buf, n) != n) {
            KH_raise(prov, KH_R_MALLOC, "out of memory");
            return 0;
        }
        if (strncmp(buf, l->end, endlen) == 0) {
            return 1;
        }
    }
}

/* The DER body of the block in |mem|, checked. 1 ok, 0 error raised. */
static int block_der(KH_PROV_CTX *prov, const struct pem_label *l, BIO *mem,
                     unsigned char **der, size_t *derlen)
{
    char *uri = NULL, *name = NULL, *header = NULL;
    char err[256];
    long len = 0;
    int ok = 0;

    if (!l->tss2) {
        if (!kh_keyref_pem_read(mem, &uri, err, sizeof(err))) {
            KH_raise(prov, KH_R_KEY_REFERENCE, "key reference: %s", err);
            goto end;
        }
        if (!kh_keyref_der_encode(uri, der, derlen, err, sizeof(err))) {
            KH_raise(prov, KH_R_KEY_REFERENCE, "key reference: %s", err);
            goto end;
        }
        ok = 1;
        goto end;
    }
    ERR_set_mark();
    if (!PEM_read_bio(mem, &name, &header, der, &len)
        || strcmp(name, KH_TSS2_LABEL) != 0) {
        ERR_pop_to_mark();
        KH_raise(prov, KH_R_KEY_REFERENCE, "%s: truncated or malformed PEM",
                 l->what);
        goto end;
    }
    ERR_pop_to_mark();
    *derlen = (size_t)len;
    /* The label says TSS2: a body that is not one gets a named error. */
    ok = kh_tpm_check(prov, *der, *derlen);
end:
    if (!ok) {
        OPENSSL_free(*der);
        *der = NULL;
    }
    OPENSSL_free(uri);
    OPENSSL_free(name);
    OPENSSL_free(header);
    return ok;
}

/*
 * Makes the key a key-file body names (a key reference or a TSS2 key; any
 * other DER: *key stays NULL) and hands it on. 1 ok, 0 error raised.
 */
static int decode_body(KH_PROV_CTX *prov, const unsigned char *der,
                       size_t derlen, OSSL_CALLBACK *data_cb,
                       void *data_cbarg, OSSL_PASSPHRASE_CALLBACK *pw_cb,
                       void *pw_cbarg)
{
    KH_KEY *key = NULL;
    char *uri = NULL;
    char err[256];
    size_t total;
    int ok = 0;

    if (looks_tss2(der, derlen)) {
        /* any key type: the EVP_PKEY follows the key, not this decoder */
        if (!kh_tpm_decode(prov, der, derlen, 0, pw_cb, pw_cbarg, &key)) {
            goto end;
        }
    } else if (looks_keyref(der, derlen, &total) && total <= derlen) {
        if (!kh_keyref_der_decode(der, total, &uri, err, sizeof(err))) {
            KH_raise(prov, KH_R_KEY_REFERENCE, "key reference: %s", err);
            goto end;
        }
        derlen = total;
        /* the URI itself is not traced: a hand-made file may hold a PIN */
        KH_debug("key reference read (%.8s...)", uri);
        if (!resolve(prov, uri, pw_cb, pw_cbarg, &key)) {
            goto end;
        }
    } else if (looks_keyref(der, derlen, &total)) {
        KH_raise(prov, KH_R_KEY_REFERENCE, "key reference: truncated");
        goto end;
    }
    ok = key == NULL || produce(key, der, derlen, data_cb, data_cbarg);
end:
    kh_key_free(key);
    OPENSSL_free(uri);
    return ok;
}

/*
 * The key-file step, registered once per key type (OpenSSL picks decoders
 * by key type name) but making a key of whichever type the file holds, so
 * that the first step to run resolves it and the other never does. It
 * reads DER, and also the PEM forms itself where no PEM step is needed
 * (see provider.c).
 */
static int dec_decode_file(void *vctx, OSSL_CORE_BIO *cin, int selection,
                           OSSL_CALLBACK *data_cb, void *data_cbarg,
                           OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_cbarg)
{
    KH_PROV_CTX *prov = vctx;
    const struct pem_label *l;
    unsigned char *der = NULL;
    size_t headlen, derlen = 0, total = 0;
    char head[64];
    BIO *in = NULL, *mem = NULL;
    int ok = 0, tss2;

    in = BIO_new_from_core_bio(prov->libctx, cin);
    if (in == NULL) {
        goto end;
    }
    /* Twelve bytes tell whether it is ours; other decoders go on if not. */
    headlen = read_upto(in, (unsigned char *)head, 12);
    if (headlen == 12 && memcmp(head, "-----BEGIN ", 11) == 0) {
        l = read_begin(in, head, &headlen);
        if (l == NULL) {
            ok = 1;
            goto end;
        }
        mem = BIO_new(BIO_s_mem());
        ok = mem != NULL && read_block(prov, in, l, head, headlen, mem)
             && block_der(prov, l, mem, &der, &derlen)
             && decode_body(prov, der, derlen, data_cb, data_cbarg, pw_cb,
                            pw_cbarg);
        goto end;
    }
    tss2 = looks_tss2((unsigned char *)head, headlen);
    if (!tss2 && !looks_keyref((unsigned char *)head, headlen, &total)) {
        ok = 1;
        goto end;
    }
    /* a reference is read to its end only: more may follow in a file */
    der = OPENSSL_malloc(KH_TSS2_DER_MAX + 1);
    if (der == NULL) {
        goto end;
    }
    memcpy(der, head, headlen);
    derlen = headlen;
    if (tss2) {
        derlen += read_upto(in, der + headlen, KH_TSS2_DER_MAX + 1 - headlen);
        if (derlen > KH_TSS2_DER_MAX) {
            KH_raise(prov, KH_R_KEY_REFERENCE, KH_TSS2_LABEL ": too large");
            goto end;
        }
    } else if (headlen < total) {
        derlen += read_upto(in, der + headlen, total - headlen);
    }
    ok = decode_body(prov, der, derlen, data_cb, data_cbarg, pw_cb, pw_cbarg);
end:
    if (der != NULL) {
        OPENSSL_clear_free(der, derlen);
    }
    BIO_free(mem);
    BIO_free(in);
    return ok;
}

/*
 * The PEM step (store-key-files only): a key reference or TSS2 PRIVATE KEY
 * block at the start of the input becomes its DER body, tagged "keyhold",
 * for the key-file decoder above.
 */
static int dec_decode_pem(void *vctx, OSSL_CORE_BIO *cin, int selection,
                          OSSL_CALLBACK *data_cb, void *data_cbarg,
                          OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_cbarg)
{
    KH_PROV_CTX *prov = vctx;
    const struct pem_label *l;
    OSSL_PARAM params[4];
    int objtype = OSSL_OBJECT_PKEY;
    unsigned char *der = NULL;
    size_t derlen = 0, headlen;
    char head[64];
    BIO *in, *mem = NULL;
    int ok = 0;

    in = BIO_new_from_core_bio(prov->libctx, cin);
    if (in == NULL) {
        return 0;
    }
    headlen = 0;
    l = read_begin(in, head, &headlen);
    if (l == NULL) {
        ok = 1; /* not ours */
        goto end;
    }
    mem = BIO_new(BIO_s_mem());
    if (mem == NULL || !read_block(prov, in, l, head, headlen, mem)
        || !block_der(prov, l, mem, &der, &derlen)) {
        goto end;
    }
    params[0] = OSSL_PARAM_construct_int(OSSL_OBJECT_PARAM_TYPE, &objtype);
    params[1] = OSSL_PARAM_construct_utf8_string(
        OSSL_OBJECT_PARAM_DATA_STRUCTURE, KH_DEC_STRUCTURE, 0);
    params[2] = OSSL_PARAM_construct_octet_string(OSSL_OBJECT_PARAM_DATA, der,
                                                  derlen);
    params[3] = OSSL_PARAM_construct_end();
    ok = data_cb(params, data_cbarg);
end:
    if (der != NULL) {
        OPENSSL_clear_free(der, derlen);
    }
    BIO_free(mem);
    BIO_free(in);
    return ok;
}

/*
 * libcrypto calls this (unchecked) when it picked another provider's
 * keymgmt for our object; refusing makes it try keyhold's own, which
 * loads the reference. Private keys never leave (see keymgmt.c).
 */
static int dec_export_object(void *vctx, const void *reference,
                             size_t reference_sz, OSSL_CALLBACK *export_cb,
                             void *export_cbarg)
{
    return 0;
}

/* One table, registered under both key type names (provider.c). */
const OSSL_DISPATCH kh_keyfile_decoder_functions[] = {
    { OSSL_FUNC_DECODER_NEWCTX, (void (*)(void))dec_newctx },
    { OSSL_FUNC_DECODER_FREECTX, (void (*)(void))dec_freectx },
    { OSSL_FUNC_DECODER_DOES_SELECTION, (void (*)(void))dec_does_selection },
    { OSSL_FUNC_DECODER_DECODE, (void (*)(void))dec_decode_file },
    { OSSL_FUNC_DECODER_EXPORT_OBJECT, (void (*)(void))dec_export_object },
    { 0, NULL }
};

const OSSL_DISPATCH kh_keyfile_pem_decoder_functions[] = {
    { OSSL_FUNC_DECODER_NEWCTX, (void (*)(void))dec_newctx },
    { OSSL_FUNC_DECODER_FREECTX, (void (*)(void))dec_freectx },
    { OSSL_FUNC_DECODER_DOES_SELECTION, (void (*)(void))dec_does_selection },
    { OSSL_FUNC_DECODER_DECODE, (void (*)(void))dec_decode_pem },
    { 0, NULL }
};
