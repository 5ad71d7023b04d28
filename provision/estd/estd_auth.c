/* SPDX-License-Identifier: MIT */
/*
 * keyhold-estd: who may enrol. HTTP basic auth against an htpasswd-style
 * file of salted crypt(3) hashes (re-read on every request, so an operator
 * can edit it while the server runs), TLS client certificates checked
 * against the store that fits the operation, and the manual-approval spool:
 *   SPOOL/pending/ID    written when a request first arrives (CSR + who)
 *   SPOOL/approved/ID   created by the operator (--approve ID, or touch)
 *   SPOOL/rejected/ID   created by the operator (--reject ID) -> 403
 *   SPOOL/issued/ID     an approval is used once, then moved here
 * ID is derived from the request's public key and subject, so a client that
 * signs a fresh CSR for every poll keeps its place.
 */
#include <crypt.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <sys/stat.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "estd.h"

#define PW_MAX 256

int estd_auth_basic(ESTD_SERVER *srv, const char *authorization, char *user,
                    size_t userlen)
{
    unsigned char dec[PW_MAX * 2 + 8];
    char line[1024];
    struct crypt_data *cd = NULL;
    const char *b64 = authorization;
    const char *hash;
    char *pass, *colon, *got;
    FILE *f = NULL;
    size_t ulen, b64len;
    int n, ok = 0;

    user[0] = '\0';
    if (strncasecmp(b64, "Basic ", 6) != 0) {
        return 0;
    }
    b64 += 6;
    while (*b64 == ' ') {
        b64++;
    }
    b64len = strlen(b64);
    if (b64len == 0 || b64len > (sizeof(dec) - 8) / 3 * 4) {
        return 0;
    }
    n = EVP_DecodeBlock(dec, (const unsigned char *)b64, (int)b64len);
    if (n <= 0) {
        goto end;
    }
    /* EVP_DecodeBlock counts the padding as zero bytes: drop them */
    while (b64len > 0 && b64[b64len - 1] == '=' && n > 0) {
        b64len--;
        n--;
    }
    dec[n] = '\0';
    if (memchr(dec, '\0', (size_t)n) != NULL) {
        goto end;
    }
    colon = strchr((char *)dec, ':');
    if (colon == NULL) {
        goto end;
    }
    *colon = '\0';
    pass = colon + 1;
    ulen = strlen((char *)dec);
    snprintf(user, userlen, "%s", (char *)dec);

    f = fopen(srv->cfg.htpasswd, "r");
    if (f == NULL) {
        estd_log(srv, "cannot read %s: %s", srv->cfg.htpasswd,
                 strerror(errno));
        goto end;
    }
    cd = OPENSSL_zalloc(sizeof(*cd));
    if (cd == NULL) {
        goto end;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0] == '#' || strncmp(line, (char *)dec, ulen) != 0
            || line[ulen] != ':') {
            continue;
        }
        hash = line + ulen + 1;
        if (hash[0] != '$') {
            /* unsalted or unknown formats are not accepted */
            estd_log(srv, "htpasswd: user %s has no salted crypt(3) hash; "
                     "make one with keyhold-estd --hash-password", user);
            break;
        }
        got = crypt_r(pass, hash, cd);
        if (got != NULL && got[0] != '*' && strlen(got) == strlen(hash)
            && CRYPTO_memcmp(got, hash, strlen(hash)) == 0) {
            ok = 1;
        }
        break;
    }
end:
    if (f != NULL) {
        fclose(f);
    }
    if (cd != NULL) {
        OPENSSL_clear_free(cd, sizeof(*cd));
    }
    OPENSSL_cleanse(dec, sizeof(dec));
    OPENSSL_cleanse(line, sizeof(line));
    return ok;
}

int estd_auth_cert(X509_STORE *store, X509 *cert, STACK_OF(X509) *chain,
                   char *err, size_t errlen)
{
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    int ok = 0;

    if (store == NULL) {
        snprintf(err, errlen, "no CA configured for client certificates");
        goto end;
    }
    if (ctx == NULL || !X509_STORE_CTX_init(ctx, store, cert, chain)) {
        snprintf(err, errlen, "out of memory");
        goto end;
    }
    if (X509_verify_cert(ctx) == 1) {
        ok = 1;
    } else {
        snprintf(err, errlen, "%s",
                 X509_verify_cert_error_string(
                     X509_STORE_CTX_get_error(ctx)));
    }
end:
    ERR_clear_error();
    X509_STORE_CTX_free(ctx);
    return ok;
}

/* ID = first 16 bytes of SHA-256(subject DER || SPKI DER), in hex. */
static int request_id(X509_REQ *csr, char *id, size_t idlen)
{
    unsigned char *sdr = NULL, *kdr = NULL, md[32];
    int sl, kl, i, ok = 0;
    EVP_MD_CTX *m = EVP_MD_CTX_new();

    sl = i2d_X509_NAME(X509_REQ_get_subject_name(csr), &sdr);
    kl = i2d_PUBKEY(X509_REQ_get0_pubkey(csr), &kdr);
    if (m == NULL || sl <= 0 || kl <= 0 || idlen < 33
        || EVP_DigestInit_ex(m, EVP_sha256(), NULL) != 1
        || EVP_DigestUpdate(m, sdr, (size_t)sl) != 1
        || EVP_DigestUpdate(m, kdr, (size_t)kl) != 1
        || EVP_DigestFinal_ex(m, md, NULL) != 1) {
        goto end;
    }
    for (i = 0; i < 16; i++) {
        snprintf(id + 2 * i, 3, "%02x", md[i]);
    }
    ok = 1;
end:
    EVP_MD_CTX_free(m);
    OPENSSL_free(sdr);
    OPENSSL_free(kdr);
    return ok;
}

static int spool_dirs(const char *spool)
{
    static const char *sub[] = { "pending", "approved", "rejected",
                                 "issued" };
    char p[4096];
    size_t i;

    if (mkdir(spool, 0750) != 0 && errno != EEXIST) {
        return 0;
    }
    for (i = 0; i < sizeof(sub) / sizeof(sub[0]); i++) {
        snprintf(p, sizeof(p), "%s/%s", spool, sub[i]);
        if (mkdir(p, 0750) != 0 && errno != EEXIST) {
            return 0;
        }
    }
    return 1;
}

int estd_auth_approval(ESTD_SERVER *srv, X509_REQ *csr, const char *who,
                       char *id, size_t idlen, char *err, size_t errlen)
{
    const char *spool = srv->cfg.spool;
    char p[4096], q[4096], tmp[4200];
    FILE *f;
    int fd;

    if (!request_id(csr, id, idlen) || !spool_dirs(spool)) {
        snprintf(err, errlen, "approval spool %s unusable", spool);
        return -1;
    }
    snprintf(p, sizeof(p), "%s/rejected/%s", spool, id);
    if (access(p, F_OK) == 0) {
        snprintf(err, errlen, "request %s was rejected by the operator", id);
        return -2;
    }
    snprintf(p, sizeof(p), "%s/approved/%s", spool, id);
    if (access(p, F_OK) == 0) {
        snprintf(q, sizeof(q), "%s/issued/%s", spool, id);
        if (rename(p, q) != 0) {
            snprintf(err, errlen, "cannot consume approval %s: %s", id,
                     strerror(errno));
            return -1;
        }
        snprintf(p, sizeof(p), "%s/pending/%s", spool, id);
        unlink(p);
        return 1;
    }
    snprintf(p, sizeof(p), "%s/pending/%s", spool, id);
    if (access(p, F_OK) == 0) {
        return 0;
    }
    /* one temp name per thread: two identical requests may race here */
    snprintf(tmp, sizeof(tmp), "%s.tmp.%ld.%lx", p, (long)getpid(),
             (unsigned long)pthread_self());
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW, 0640);
    f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (f == NULL) {
        if (fd >= 0) {
            close(fd);
        }
        snprintf(err, errlen, "cannot record pending request: %s",
                 strerror(errno));
        return -1;
    }
    fprintf(f, "# from: %s\n# received: %ld\n", who, (long)time(NULL));
    PEM_write_X509_REQ(f, csr);
    if (fclose(f) != 0 || rename(tmp, p) != 0) {
        unlink(tmp);
        snprintf(err, errlen, "cannot record pending request");
        return -1;
    }
    estd_log(srv, "request %s from %s waits for approval", id, who);
    return 0;
}

static int id_ok(const char *id)
{
    size_t i, n = strlen(id);

    if (n == 0 || n > 64) {
        return 0;
    }
    for (i = 0; i < n; i++) {
        if (!((id[i] >= '0' && id[i] <= '9')
              || (id[i] >= 'a' && id[i] <= 'f'))) {
            return 0;
        }
    }
    return 1;
}

static int decide_one(const char *spool, const char *id, int approve)
{
    char p[4096], q[4096];
    int fd;

    snprintf(p, sizeof(p), "%s/pending/%s", spool, id);
    snprintf(q, sizeof(q), "%s/%s/%s", spool, approve ? "approved"
                                                      : "rejected", id);
    if (access(p, F_OK) != 0) {
        fprintf(stderr, "keyhold-estd: no pending request %s in %s\n", id,
                spool);
        return 1;
    }
    fd = open(q, O_WRONLY | O_CREAT | O_NOFOLLOW, 0640);
    if (fd < 0) {
        fprintf(stderr, "keyhold-estd: cannot write %s: %s\n", q,
                strerror(errno));
        return 1;
    }
    close(fd);
    printf("%s %s\n", approve ? "approved" : "rejected", id);
    return 0;
}

int estd_spool_decide(const char *spool, const char *id, int approve)
{
    char p[4096];
    struct dirent *de;
    DIR *d;
    int rc = 0;

    if (!spool_dirs(spool)) {
        fprintf(stderr, "keyhold-estd: spool %s unusable\n", spool);
        return 1;
    }
    if (strcmp(id, "all") != 0) {
        if (!id_ok(id)) {
            fprintf(stderr, "keyhold-estd: bad request id '%s'\n", id);
            return 1;
        }
        return decide_one(spool, id, approve);
    }
    snprintf(p, sizeof(p), "%s/pending", spool);
    d = opendir(p);
    if (d == NULL) {
        return 1;
    }
    while ((de = readdir(d)) != NULL) {
        if (id_ok(de->d_name)) {
            rc |= decide_one(spool, de->d_name, approve);
        }
    }
    closedir(d);
    return rc;
}

int estd_spool_list(const char *spool)
{
    char p[4096];
    struct dirent *de;
    DIR *d;
    X509_REQ *req;
    FILE *f;

    snprintf(p, sizeof(p), "%s/pending", spool);
    d = opendir(p);
    if (d == NULL) {
        return 0;
    }
    while ((de = readdir(d)) != NULL) {
        char *subj = NULL;

        if (!id_ok(de->d_name)) {
            continue;
        }
        snprintf(p, sizeof(p), "%s/pending/%s", spool, de->d_name);
        f = fopen(p, "r");
        req = f != NULL ? PEM_read_X509_REQ(f, NULL, NULL, NULL) : NULL;
        if (f != NULL) {
            fclose(f);
        }
        if (req != NULL) {
            subj = X509_NAME_oneline(X509_REQ_get_subject_name(req), NULL, 0);
        }
        printf("%s %s\n", de->d_name, subj != NULL ? subj : "?");
        OPENSSL_free(subj);
        X509_REQ_free(req);
    }
    closedir(d);
    return 0;
}

int estd_hash_password(void)
{
    char pw[PW_MAX + 2], salt[CRYPT_GENSALT_OUTPUT_SIZE];
    struct crypt_data *cd = OPENSSL_zalloc(sizeof(*cd));
    char *h;
    size_t n;
    int rc = 1;

    if (cd == NULL) {
        return 1;
    }
    if (fgets(pw, sizeof(pw), stdin) == NULL) {
        fprintf(stderr, "keyhold-estd: no password on stdin\n");
        goto end;
    }
    n = strcspn(pw, "\r\n");
    if (n == 0 || n > PW_MAX) {
        fprintf(stderr, "keyhold-estd: password empty or too long\n");
        goto end;
    }
    pw[n] = '\0';
    if (crypt_gensalt_rn(NULL, 0, NULL, 0, salt, sizeof(salt)) == NULL) {
        fprintf(stderr, "keyhold-estd: no salt: %s\n", strerror(errno));
        goto end;
    }
    h = crypt_r(pw, salt, cd);
    if (h == NULL || h[0] == '*') {
        fprintf(stderr, "keyhold-estd: crypt failed\n");
        goto end;
    }
    printf("%s\n", h);
    rc = 0;
end:
    OPENSSL_cleanse(pw, sizeof(pw));
    OPENSSL_clear_free(cd, sizeof(*cd));
    return rc;
}
