/* SPDX-License-Identifier: MIT */
/*
 * Shared plumbing of the C test programs: loading providers the way an
 * application does, loading a key through OSSL_STORE, and turning its
 * exported public half into a key of a separate library context that holds
 * only the default provider (so that verification never touches keyhold).
 */
#ifndef KH_TESTS_TESTUTIL_H
#define KH_TESTS_TESTUTIL_H

#include <stddef.h>
#include <openssl/evp.h>
#include <openssl/store.h>
#include <p11-kit/pkcs11.h>

/*
 * Loads providers into the default library context. |order| is NULL (use
 * OPENSSL_CONF only), "first" (keyhold, then default) or "last" (default,
 * then keyhold); |path| is the directory holding keyhold.so.
 */
int kh_test_load_providers(const char *order, const char *path);

/* Loads the first private key behind |uri| (a pkcs11: URI or a key file). */
EVP_PKEY *kh_test_load_key(const char *uri);

/* The first private key of an opened |store| (NULL when there is none or
 * |store| is NULL); closes the store. */
EVP_PKEY *kh_test_store_pkey(OSSL_STORE_CTX *store);

/*
 * Exports the public half of |pkey| (i2d_PUBKEY) and imports it into a
 * library context with only the default provider. Optionally writes the
 * PEM form to |pem_out|. The returned key holds a reference on that
 * context; free it with kh_test_pub_free.
 */
EVP_PKEY *kh_test_public_copy(EVP_PKEY *pkey, const char *pem_out);
void kh_test_pub_free(EVP_PKEY *pub);

/* The library context of the public copies (only "default" loaded). */
OSSL_LIB_CTX *kh_test_verify_libctx(void);

/*
 * A new read-write session on the token labelled |token| of the PKCS#11
 * module at |module|, logged in as the user with the PIN on the first line
 * of |pinfile|. 1 with *f and *s set, or 0 after saying on stderr what
 * failed.
 */
int kh_test_p11_login(const char *module, const char *token,
                      const char *pinfile, CK_FUNCTION_LIST_PTR *f,
                      CK_SESSION_HANDLE *s);

/* Prints a message and the OpenSSL error queue to stderr. */
void kh_test_err(const char *fmt, ...);

#endif
