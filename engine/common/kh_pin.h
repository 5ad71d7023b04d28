/* SPDX-License-Identifier: MIT */
/* PIN sources shared by the provider and the CLI. PINs live in caller-owned
 * fixed buffers that the caller wipes (OPENSSL_cleanse) when done. */
#ifndef KH_COMMON_PIN_H
#define KH_COMMON_PIN_H

#include <stddef.h>

#define KH_PIN_MAX 256

enum kh_pin_rc {
    KH_PIN_OK = 0,
    KH_PIN_ERR_IO,      /* missing or unreadable file */
    KH_PIN_ERR_PERM,    /* world-accessible, group-writable, wrong owner */
    KH_PIN_ERR_FORMAT,  /* empty or longer than KH_PIN_MAX */
    KH_PIN_ERR_NONE     /* no PIN source configured/available */
};

/*
 * Reads a PIN from |path| ("file:" prefix allowed). The file's mode and
 * owner are checked before it is read: refused when accessible by others,
 * writable by the group, or owned by anyone but root or the caller.
 * A single trailing newline (LF or CRLF) is stripped. |pin| gets NUL-terminated.
 */
enum kh_pin_rc kh_pin_read_file(const char *path, char *pin, size_t pinsize,
                                size_t *pinlen, char *err, size_t errlen);

/*
 * A PIN file may instead hold a PIN sealed to the TPM (a TSS2 PRIVATE KEY
 * PEM of the sealed-data type, made by `keyhold-tpm seal`): the same
 * permission checks apply, then kh_pin_unseal (engine/tpm, linked where
 * TPM support is) unseals it. Without TPM support such a file is refused.
 */
#define KH_PIN_SEALED_MAX 4096
enum kh_pin_rc kh_pin_unseal(const char *pem, size_t pemlen, char *pin,
                             size_t pinsize, size_t *pinlen, char *err,
                             size_t errlen) __attribute__((weak));

/*
 * The CLI/daemon PIN search order when no explicit source is given:
 * $KEYHOLD_PIN_FILE, then $CREDENTIALS_DIRECTORY/keyhold-pin.
 * Returns KH_PIN_ERR_NONE when neither exists.
 */
enum kh_pin_rc kh_pin_read_default(char *pin, size_t pinsize, size_t *pinlen,
                                   char *err, size_t errlen);

#endif
