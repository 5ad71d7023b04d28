/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: the TSS2 PRIVATE KEY decoder (engine/tpm/tpm_keyfile.c,
 * scenario 21's "TPM blob"). A decoded file must encode again, and that
 * encoding must decode to the same key parts.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>

#include "internal.h"

/* tpm2-tss logs every unmarshalling error; the fuzzer makes millions. */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    setenv("TSS2_LOG", "all+NONE", 1);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    KH_TPM_KEYFILE kf, again;
    unsigned char *der = NULL;
    size_t derlen = 0;
    char err[256];

    if (size > 65536) {
        return 0;
    }
    memset(&kf, 0, sizeof(kf));
    if (kh_tpm_keyfile_decode(data, size, &kf, err, sizeof(err)) == KH_TPM_OK) {
        if (kh_tpm_keyfile_encode(&kf, &der, &derlen, err, sizeof(err))
            == KH_TPM_OK) {
            memset(&again, 0, sizeof(again));
            if (kh_tpm_keyfile_decode(der, derlen, &again, err, sizeof(err))
                != KH_TPM_OK
                || again.parent != kf.parent || again.sealed != kf.sealed
                || again.priv.size != kf.priv.size
                || memcmp(again.priv.buffer, kf.priv.buffer, kf.priv.size)
                       != 0) {
                abort();
            }
            OPENSSL_free(der);
        }
    }
    ERR_clear_error();
    return 0;
}
