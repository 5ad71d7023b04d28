/* SPDX-License-Identifier: MIT */
/*
 * The TPM 2.0 core shared by the provider and the CLI: one ESAPI connection
 * per process, keys loaded on demand under a storage parent, signing,
 * decryption, key creation, persistent handles and the TSS2 PRIVATE KEY
 * file format. Nothing here knows about OpenSSL providers: functions return
 * an enum kh_tpm_rc and write a message (never a secret) into err.
 */
#ifndef KH_ENGINE_TPM_H
#define KH_ENGINE_TPM_H

#include <stddef.h>
#include <stdint.h>
#include <openssl/evp.h>

enum kh_tpm_rc {
    KH_TPM_OK = 0,
    KH_TPM_ERR,           /* TPM or TSS failure (named in err) */
    KH_TPM_ERR_AUTH,      /* wrong auth value: never retried */
    KH_TPM_ERR_LOCKOUT,   /* dictionary-attack lockout in force */
    KH_TPM_ERR_COMM,      /* TPM unreachable (TCTI) */
    KH_TPM_ERR_INPUT,     /* malformed key file, URI or parameter */
    KH_TPM_ERR_NOTFOUND,  /* no object at that handle / no such file */
    KH_TPM_ERR_UNSUPPORTED
};

/* The standard storage parents. */
#define KH_TPM_RH_OWNER       0x40000001u
#define KH_TPM_SRK_HANDLE     0x81000001u
#define KH_TPM_PERSISTENT_MIN 0x81000000u
#define KH_TPM_PERSISTENT_MAX 0x81ffffffu

/* TSS2 PRIVATE KEY PEM label and type OIDs (TCG TPM 2.0 key files). */
#define KH_TPM_PEM_LABEL      "TSS2 PRIVATE KEY"
#define KH_TPM_OID_LOADABLE   "2.23.133.10.1.3"
#define KH_TPM_OID_SEALED     "2.23.133.10.1.5"

#define KH_TPM_AUTH_MAX 64

typedef struct kh_tpm_key KH_TPM_KEY;

/*
 * Process-wide configuration: the TCTI string ("swtpm:host=...,port=...",
 * "device:/dev/tpmrm0", "tabrmd:", ...). NULL means: $KEYHOLD_TPM_TCTI,
 * $TPM2TOOLS_TCTI, $TCTI, $TPM2OPENSSL_TCTI, then device:/dev/tpmrm0.
 * The value is captured now (servers that drop their environment in
 * worker processes keep it). A later call with NULL keeps an earlier
 * explicit value.
 */
void kh_tpm_configure(const char *tcti);
/* The TCTI string in use (for status/doctor output). */
const char *kh_tpm_tcti(void);

/*
 * Drops the connection (and the cached storage key context) when no key
 * holds it: the CLI calls this before letting the provider talk to a TPM
 * that serves one connection at a time, the provider at teardown.
 */
void kh_tpm_release(void);

/* Key objects (reference counted, thread-safe). */
enum kh_tpm_rc kh_tpm_key_from_handle(uint32_t handle, KH_TPM_KEY **out,
                                      char *err, size_t errlen);
enum kh_tpm_rc kh_tpm_key_from_der(const unsigned char *der, size_t derlen,
                                   KH_TPM_KEY **out, char *err,
                                   size_t errlen);
/* Reads a TSS2 PRIVATE KEY file (PEM or DER). */
enum kh_tpm_rc kh_tpm_key_from_file(const char *path, KH_TPM_KEY **out,
                                    char *err, size_t errlen);
KH_TPM_KEY *kh_tpm_key_up_ref(KH_TPM_KEY *k);
void kh_tpm_key_free(KH_TPM_KEY *k);

/*
 * Loads the key into the TPM and lets it go: proves the TPM answers and
 * still holds the key's storage parent (KH_TPM_ERR_NOTFOUND when the TPM
 * was cleared or the file belongs to another TPM).
 */
enum kh_tpm_rc kh_tpm_key_check(KH_TPM_KEY *k, char *err, size_t errlen);

/* 1 when the key was created with an empty auth value. */
int kh_tpm_key_empty_auth(const KH_TPM_KEY *k);
/* Copies the auth value into the key (wiped on free). */
enum kh_tpm_rc kh_tpm_key_set_auth(KH_TPM_KEY *k, const char *auth,
                                   size_t authlen, char *err, size_t errlen);
/* EVP_PKEY_RSA or EVP_PKEY_EC; bits of the modulus / curve. */
int kh_tpm_key_type(const KH_TPM_KEY *k);
int kh_tpm_key_bits(const KH_TPM_KEY *k);
int kh_tpm_key_can_sign(const KH_TPM_KEY *k);
int kh_tpm_key_can_decrypt(const KH_TPM_KEY *k);
uint32_t kh_tpm_key_handle(const KH_TPM_KEY *k);  /* 0 for a blob key */
/* The public half as an EVP_PKEY made in |libctx|. */
EVP_PKEY *kh_tpm_key_public(const KH_TPM_KEY *k, OSSL_LIB_CTX *libctx,
                            const char *propq, char *err, size_t errlen);

enum kh_tpm_sig {
    KH_TPM_SIG_ECDSA = 1,      /* DER ECDSA-Sig-Value out */
    KH_TPM_SIG_RSA_PKCS1,      /* RSASSA-PKCS1-v1_5 */
    KH_TPM_SIG_RSA_PSS         /* RSASSA-PSS, MGF1 with the same digest */
};

/*
 * Signs |tbs|, a digest made with |md_nid| (NID_undef: chosen by length).
 * For PSS, |saltlen| is the salt the caller expects: the TPM picks the salt
 * length itself, so the signature is checked against it before returning.
 */
enum kh_tpm_rc kh_tpm_key_sign(KH_TPM_KEY *k, enum kh_tpm_sig scheme,
                               int md_nid, int saltlen,
                               const unsigned char *tbs, size_t tbslen,
                               unsigned char *sig, size_t *siglen,
                               size_t sigsize, char *err, size_t errlen);

/*
 * The RSA-PSS salt length this key's TPM was seen to use with a digest
 * (-1: not yet known). The TPM's rule does not change under a key, so the
 * caller checks the first signature per digest and remembers the result.
 */
int kh_tpm_key_pss_salt(const KH_TPM_KEY *k, int md_nid);
void kh_tpm_key_pss_salt_set(KH_TPM_KEY *k, int md_nid, int saltlen);

/* RSA decryption: oaep_md_nid == NID_undef means PKCS#1 v1.5. */
enum kh_tpm_rc kh_tpm_key_decrypt(KH_TPM_KEY *k, int oaep_md_nid,
                                  const unsigned char *label, size_t labellen,
                                  const unsigned char *in, size_t inlen,
                                  unsigned char *out, size_t *outlen,
                                  size_t outsize, char *err, size_t errlen);

/* Key creation. */
enum kh_tpm_alg {
    KH_TPM_ALG_EC_P256 = 1,
    KH_TPM_ALG_EC_P384,
    KH_TPM_ALG_RSA_2048,
    KH_TPM_ALG_RSA_3072
};

typedef struct kh_tpm_gen {
    enum kh_tpm_alg alg;
    int allow_decrypt;          /* adds the decrypt attribute */
    const char *auth;           /* NULL/empty: no auth value */
    size_t authlen;
    uint32_t persistent;        /* 0: key file only; else evict here */
} KH_TPM_GEN;

/*
 * Creates a key in the TPM. With gen->persistent the key is made persistent
 * at that handle (refused when the handle is taken) and *der is NULL;
 * otherwise *der and *derlen get the TSS2 PRIVATE KEY DER (OPENSSL_free).
 * The public half is returned in |pub| when not NULL (default libctx).
 */
enum kh_tpm_rc kh_tpm_key_create(const KH_TPM_GEN *gen, unsigned char **der,
                                 size_t *derlen, EVP_PKEY **pub, char *err,
                                 size_t errlen);
/* Removes a persistent key (TPM2_EvictControl). */
enum kh_tpm_rc kh_tpm_evict(uint32_t handle, char *err, size_t errlen);
/* 1 when an object exists at the persistent handle, 0 when not, -1 error */
int kh_tpm_handle_exists(uint32_t handle, char *err, size_t errlen);

/* Writes a TSS2 PRIVATE KEY PEM file (new file, O_EXCL, |mode|, fsync). */
int kh_tpm_pem_write(const char *path, const unsigned char *der,
                     size_t derlen, int mode, char *err, size_t errlen);

/*
 * The TPM's identity for provisioning reports: "sha256:HEX" of the
 * SubjectPublicKeyInfo of the endorsement key made with the TCG default
 * EK template (ECC P-256, or RSA-2048 without ECC), as tpm2_createek makes
 * it. |out| needs 72 bytes.
 */
enum kh_tpm_rc kh_tpm_ek_id(char *out, size_t outlen, char *err,
                            size_t errlen);

/* Lockout state (for status/doctor): counter, max tries, in lockout. */
enum kh_tpm_rc kh_tpm_da_info(uint32_t *counter, uint32_t *max_tries,
                              int *in_lockout, char *err, size_t errlen);

/*
 * Sealing a small secret (a token PIN) to the TPM: a sealed-data object
 * (type 2.23.133.10.1.5 in the TSS2 PRIVATE KEY format) under the SRK,
 * optionally bound by a PolicyPCR to the current values of the sha256 PCRs
 * in |pcr_mask| (bit n = PCR n).
 */
enum kh_tpm_rc kh_tpm_seal(const unsigned char *data, size_t datalen,
                           uint32_t pcr_mask, unsigned char **der,
                           size_t *derlen, char *err, size_t errlen);
enum kh_tpm_rc kh_tpm_unseal(const unsigned char *der, size_t derlen,
                             unsigned char *out, size_t *outlen,
                             size_t outsize, char *err, size_t errlen);

/* Reads a file (PEM or DER TSS2 PRIVATE KEY) into DER; OPENSSL_free it. */
enum kh_tpm_rc kh_tpm_file_read_der(const char *path, unsigned char **der,
                                    size_t *derlen, char *err,
                                    size_t errlen);

#endif
