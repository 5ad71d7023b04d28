/* SPDX-License-Identifier: MIT */
/*
 * Where the CLI gets the user PIN: the identity's pin-file, then
 * $KEYHOLD_PIN_FILE, then systemd's credentials directory, then a prompt
 * with echo off — only when stdin is a terminal. Never argv; with no source
 * the command fails at once instead of waiting for input.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "keyhold.h"
#include "kh_pin.h"

static int map_pin_rc(enum kh_pin_rc rc)
{
    switch (rc) {
    case KH_PIN_OK:
        return KH_EXIT_OK;
    case KH_PIN_ERR_PERM:
        return KH_EXIT_PERM;
    case KH_PIN_ERR_NONE:
        return KH_EXIT_PIN;
    case KH_PIN_ERR_FORMAT:
    case KH_PIN_ERR_IO:
    default:
        return KH_EXIT_PIN;
    }
}

/* A symbolic link is refused like a loose mode: a permission problem. */
static int map_file_rc(const char *path, enum kh_pin_rc rc)
{
    struct stat st;

    if (rc == KH_PIN_ERR_IO && path != NULL) {
        if (strncmp(path, "file:", 5) == 0) {
            path += 5;
        }
        if (lstat(path, &st) == 0 && S_ISLNK(st.st_mode)) {
            return KH_EXIT_PERM;
        }
    }
    return map_pin_rc(rc);
}

int kh_pin_from_file(const char *path, char *pin, size_t pinsize,
                     size_t *pinlen, char *err, size_t errlen)
{
    return map_file_rc(path, kh_pin_read_file(path, pin, pinsize, pinlen, err,
                                              errlen));
}

static int prompt(const char *what, char *pin, size_t pinsize, size_t *pinlen,
                  char *err, size_t errlen)
{
    struct termios old, quiet;
    FILE *tty = fopen("/dev/tty", "r+");
    int ok = 0;
    size_t n;

    if (tty == NULL) {
        return kh_seterr(err, errlen, KH_EXIT_PIN, "cannot open the terminal");
    }
    /* no stdio buffer of our own holds the PIN after it was read */
    setvbuf(tty, NULL, _IONBF, 0);
    if (tcgetattr(fileno(tty), &old) != 0) {
        fclose(tty);
        return kh_seterr(err, errlen, KH_EXIT_PIN, "no terminal for a prompt");
    }
    quiet = old;
    quiet.c_lflag &= ~(tcflag_t)(ECHO | ECHONL);
    fprintf(tty, "%s: ", what);
    fflush(tty);
    tcsetattr(fileno(tty), TCSAFLUSH, &quiet);
    if (fgets(pin, (int)pinsize, tty) != NULL) {
        n = strlen(pin);
        while (n > 0 && (pin[n - 1] == '\n' || pin[n - 1] == '\r')) {
            pin[--n] = '\0';
        }
        *pinlen = n;
        ok = n > 0;
    }
    tcsetattr(fileno(tty), TCSAFLUSH, &old);
    fputc('\n', tty);
    fclose(tty);
    if (!ok) {
        OPENSSL_cleanse(pin, pinsize);
        return kh_seterr(err, errlen, KH_EXIT_PIN, "no PIN entered");
    }
    return KH_EXIT_OK;
}

int kh_pin_obtain(KH_CTX *ctx, const KH_IDENTITY *id, char *pin,
                  size_t pinsize, size_t *pinlen, char *err, size_t errlen)
{
    const char *file = id != NULL ? kh_id_get(id, "pin-file") : NULL;
    enum kh_pin_rc rc;

    *pinlen = 0;
    if (file != NULL && *file != '\0') {
        kh_dbg(ctx, "PIN from the identity's pin-file %s", file);
        return map_file_rc(file, kh_pin_read_file(file, pin, pinsize, pinlen,
                                                  err, errlen));
    }
    rc = kh_pin_read_default(pin, pinsize, pinlen, err, errlen);
    if (rc != KH_PIN_ERR_NONE) {
        return map_file_rc(getenv("KEYHOLD_PIN_FILE"), rc);
    }
    if (isatty(STDIN_FILENO)) {
        return prompt("Token user PIN", pin, pinsize, pinlen, err, errlen);
    }
    return kh_seterr(err, errlen, KH_EXIT_PIN,
                     "no PIN source: set pin-file in the identity's config, "
                     "KEYHOLD_PIN_FILE, or systemd LoadCredential=keyhold-pin:"
                     "FILE (or run on a terminal to be asked)");
}
