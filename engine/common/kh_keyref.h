/* SPDX-License-Identifier: MIT */
/*
 * The PEM key reference: a file that names a hardware key by URI and holds
 * no key material. Servers that only read a key *file* get the hardware key
 * when the keyhold provider is loaded (its decoder claims this label only).
 *
 *   -----BEGIN KEYHOLD KEY REFERENCE-----
 *   base64(DER  KeyholdKeyReference ::= SEQUENCE {
 *                   version INTEGER (1),
 *                   uri     UTF8String })
 *   -----END KEYHOLD KEY REFERENCE-----
 *
 * A pkcs11: URI is normalised before it is written: pin-value is dropped.
 */
#ifndef KH_COMMON_KEYREF_H
#define KH_COMMON_KEYREF_H

#include <stddef.h>
#include <openssl/bio.h>

#define KH_KEYREF_PEM_LABEL "KEYHOLD KEY REFERENCE"
#define KH_KEYREF_MAX_URI 4096

/* URI -> DER body (OPENSSL_malloc'd). 1 ok, 0 with err. */
int kh_keyref_der_encode(const char *uri, unsigned char **der, size_t *derlen,
                         char *err, size_t errlen);

/* DER body -> URI (OPENSSL_malloc'd, NUL-terminated, validated). */
int kh_keyref_der_decode(const unsigned char *der, size_t derlen, char **uri,
                         char *err, size_t errlen);

/* Writes the PEM form of a reference to |out|. */
int kh_keyref_pem_write(BIO *out, const char *uri, char *err, size_t errlen);

/*
 * Reads the first PEM block of |in|; it must carry the reference label.
 * Returns 1 with *uri set, 0 with err (including "not a key reference").
 */
int kh_keyref_pem_read(BIO *in, char **uri, char *err, size_t errlen);

/* Checks a URI accepted inside a reference: "pkcs11:" or "tpm2:" scheme,
 * printable ASCII, bounded length. */
int kh_keyref_uri_ok(const char *uri, char *err, size_t errlen);

#endif
