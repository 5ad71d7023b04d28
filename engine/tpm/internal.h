/* SPDX-License-Identifier: MIT */
/* Private to engine/tpm/: the parsed TSS2 PRIVATE KEY file. */
#ifndef KH_ENGINE_TPM_INTERNAL_H
#define KH_ENGINE_TPM_INTERNAL_H

#include <tss2/tss2_esys.h>
#include "kh_tpm.h"

/* A TSS2 PRIVATE KEY (loadable key or sealed data), decoded. */
typedef struct kh_tpm_keyfile {
    int sealed;                 /* type 2.23.133.10.1.5 */
    int empty_auth;
    uint32_t parent;            /* 0x40000001 or a persistent handle */
    TPM2B_PUBLIC pub;
    TPM2B_PRIVATE priv;
    int has_pcr_policy;         /* one TPM2_PolicyPCR, sha256 bank */
    TPML_PCR_SELECTION pcrs;
} KH_TPM_KEYFILE;

enum kh_tpm_rc kh_tpm_keyfile_decode(const unsigned char *der, size_t derlen,
                                     KH_TPM_KEYFILE *kf, char *err,
                                     size_t errlen);
enum kh_tpm_rc kh_tpm_keyfile_encode(const KH_TPM_KEYFILE *kf,
                                     unsigned char **der, size_t *derlen,
                                     char *err, size_t errlen);

/* TPM2B_PUBLIC -> EVP_PKEY in libctx. */
EVP_PKEY *kh_tpm_pub_to_pkey(const TPM2B_PUBLIC *pub, OSSL_LIB_CTX *libctx,
                             const char *propq, char *err, size_t errlen);

#endif
