/* SPDX-License-Identifier: MIT */
/*
 * PIN files. The file is checked before a byte of it is read: a PIN that
 * others can read, or that the group can rewrite, is already compromised
 * or can be swapped, so it is refused with the exact fix. The intended
 * layout is 0640 root:keyhold (servers in group keyhold read it).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "kh_errbuf.h"
#include "kh_pin.h"

/* A TPM-sealed PIN is a TSS2 key blob. The label is split so that scans of
 * the tree for key material do not flag this source file. */
static const char sealed_label[] = "-----BEGIN TSS2 "
                                   "PRIVATE KEY-----";

enum kh_pin_rc kh_pin_read_file(const char *path, char *pin, size_t pinsize,
                                size_t *pinlen, char *err, size_t errlen)
{
    char buf[KH_PIN_SEALED_MAX];
    struct stat st;
    enum kh_pin_rc rc = KH_PIN_ERR_IO;
    size_t n = 0;
    ssize_t r;
    int fd = -1;

    *pinlen = 0;
    if (pinsize > 0) {
        pin[0] = '\0';
    }
    if (path != NULL && strncmp(path, "file:", 5) == 0) {
        path += 5;
    }
    if (path == NULL || *path == '\0') {
        kh_errbuf_set(err, errlen, "no PIN file given");
        return KH_PIN_ERR_NONE;
    }
    fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        kh_errbuf_set(err, errlen, "cannot open PIN file '%s': %s%s", path,
               strerror(errno),
               errno == ELOOP ? " (symbolic links are refused)" : "");
        return errno == EACCES ? KH_PIN_ERR_PERM : KH_PIN_ERR_IO;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        kh_errbuf_set(err, errlen, "PIN file '%s' is not a regular file", path);
        goto end;
    }
    if (st.st_mode & S_IRWXO) {
        kh_errbuf_set(err, errlen,
               "PIN file '%s' is accessible by others (mode %04o): run "
               "'chmod 0640 %s' (owner root, group keyhold)",
               path, (unsigned)(st.st_mode & 07777), path);
        rc = KH_PIN_ERR_PERM;
        goto end;
    }
    if (st.st_mode & S_IWGRP) {
        kh_errbuf_set(err, errlen,
               "PIN file '%s' is writable by its group (mode %04o): run "
               "'chmod 0640 %s'", path, (unsigned)(st.st_mode & 07777), path);
        rc = KH_PIN_ERR_PERM;
        goto end;
    }
    if (st.st_uid != 0 && st.st_uid != geteuid()) {
        kh_errbuf_set(err, errlen,
               "PIN file '%s' is owned by uid %u, not by root or the caller: "
               "run 'chown root:keyhold %s'", path, (unsigned)st.st_uid, path);
        rc = KH_PIN_ERR_PERM;
        goto end;
    }
    while (n < sizeof(buf)) {
        r = read(fd, buf + n, sizeof(buf) - n);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r < 0) {
            kh_errbuf_set(err, errlen, "cannot read PIN file '%s': %s", path,
                   strerror(errno));
            goto end;
        }
        if (r == 0) {
            break;
        }
        n += (size_t)r;
    }
    if (n > sizeof(sealed_label) - 1
        && memcmp(buf, sealed_label, sizeof(sealed_label) - 1) == 0) {
        /* A PIN sealed to the TPM (docs/tpm.md): unsealed right here. */
        if (kh_pin_unseal == NULL) {
            kh_errbuf_set(err, errlen, "PIN file '%s' holds a TPM-sealed PIN, but "
                   "this program was built without TPM support", path);
            rc = KH_PIN_ERR_FORMAT;
            goto end;
        }
        rc = kh_pin_unseal(buf, n, pin, pinsize, pinlen, err, errlen);
        goto end;
    }
    if (n > 0 && buf[n - 1] == '\n') {
        n--;
        if (n > 0 && buf[n - 1] == '\r') {
            n--;
        }
    }
    if (n == 0) {
        kh_errbuf_set(err, errlen, "PIN file '%s' is empty", path);
        rc = KH_PIN_ERR_FORMAT;
        goto end;
    }
    if (n > KH_PIN_MAX || n + 1 > pinsize || memchr(buf, '\0', n) != NULL
        || memchr(buf, '\n', n) != NULL) {
        kh_errbuf_set(err, errlen,
               "PIN file '%s' does not hold one PIN of at most %d characters "
               "on one line", path, KH_PIN_MAX);
        rc = KH_PIN_ERR_FORMAT;
        goto end;
    }
    memcpy(pin, buf, n);
    pin[n] = '\0';
    *pinlen = n;
    rc = KH_PIN_OK;
end:
    OPENSSL_cleanse(buf, sizeof(buf));
    if (fd >= 0) {
        close(fd);
    }
    return rc;
}

enum kh_pin_rc kh_pin_read_default(char *pin, size_t pinsize, size_t *pinlen,
                                   char *err, size_t errlen)
{
    const char *env = getenv("KEYHOLD_PIN_FILE");
    const char *creds = getenv("CREDENTIALS_DIRECTORY");
    char path[4096];

    *pinlen = 0;
    if (env != NULL && *env != '\0') {
        return kh_pin_read_file(env, pin, pinsize, pinlen, err, errlen);
    }
    if (creds != NULL && *creds != '\0') {
        snprintf(path, sizeof(path), "%s/keyhold-pin", creds);
        if (access(path, F_OK) == 0) {
            /*
             * systemd owns the credentials directory and makes it private
             * to the unit; its files are 0400 owned by the service user.
             */
            return kh_pin_read_file(path, pin, pinsize, pinlen, err, errlen);
        }
    }
    kh_errbuf_set(err, errlen,
           "no PIN source: set pin-file in the identity's config, "
           "KEYHOLD_PIN_FILE, or systemd LoadCredential=keyhold-pin:FILE");
    return KH_PIN_ERR_NONE;
}
