/* SPDX-License-Identifier: MIT */
/*
 * An identity's state directory and the atomic install:
 *
 *   $STATE/NAME/gen-N/{cert,chain,fullchain,ca,key,identity}.pem
 *   $STATE/NAME/current -> gen-N      (switched by one rename(2))
 *   $STATE/NAME/cert.pem -> current/cert.pem ...   (stable paths)
 *   $STATE/NAME/status.json           (renewal state)
 *   $STATE/NAME/.lock                 (flock: one keyhold per identity)
 *
 * A generation is built completely and synced before `current` moves, so
 * a crash leaves the old generation in service and at most one incomplete
 * gen-N beyond it, which the next run removes. The previous generation is
 * kept (with its key) so a failed reload can switch back.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <syslog.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include "keyhold.h"
#include "kh_keyref.h"
#include "kh_pin.h"
#include "kh_uri.h"

static const char *const stable_files[] = {
    "cert.pem", "chain.pem", "fullchain.pem", "ca.pem", "key.pem",
    "identity.pem", NULL
};

int kh_state_idir(KH_CTX *ctx, const char *name, char *buf, size_t len)
{
    return kh_path(buf, len, "%s/%s", ctx->state_dir, name);
}

static int ensure_dir(const char *path, char *err, size_t errlen)
{
    if (mkdir(path, 0750) != 0 && errno != EEXIST) {
        return kh_seterr(err, errlen,
                         errno == EACCES || errno == EROFS || errno == EPERM
                             ? KH_EXIT_PERM : KH_EXIT_BROKEN,
                         "cannot create %s: %s%s", path, strerror(errno),
                         errno == EACCES ? " (run as root)" : "");
    }
    return KH_EXIT_OK;
}

int kh_lock(KH_CTX *ctx, const char *name, int *fd, char *err, size_t errlen)
{
    char idir[KH_PATH_MAX], path[KH_PATH_MAX];
    int rc;

    *fd = -1;
    rc = ensure_dir(ctx->state_dir, err, errlen);
    if (rc != KH_EXIT_OK) {
        return rc;
    }
    if (!kh_state_idir(ctx, name, idir, sizeof(idir))
        || !kh_path(path, sizeof(path), "%s/.lock", idir)) {
        return kh_seterr(err, errlen, KH_EXIT_REJECTED, "path too long");
    }
    rc = ensure_dir(idir, err, errlen);
    if (rc != KH_EXIT_OK) {
        return rc;
    }
    *fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0640);
    if (*fd < 0) {
        return kh_seterr(err, errlen,
                         errno == EACCES || errno == EROFS ? KH_EXIT_PERM
                                                           : KH_EXIT_BROKEN,
                         "cannot open %s: %s", path, strerror(errno));
    }
    if (flock(*fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;

        close(*fd);
        *fd = -1;
        if (e == EWOULDBLOCK) {
            return kh_seterr(err, errlen, KH_EXIT_BUSY,
                             "identity '%s' is busy: another keyhold run "
                             "holds its lock (try again later)", name);
        }
        return kh_seterr(err, errlen, KH_EXIT_BROKEN, "flock %s: %s", path,
                         strerror(e));
    }
    return KH_EXIT_OK;
}

void kh_unlock(int fd)
{
    if (fd >= 0) {
        flock(fd, LOCK_UN);
        close(fd);
    }
}

static unsigned gen_of(const char *s)
{
    char *end;
    unsigned long v;

    if (strncmp(s, "gen-", 4) != 0 || s[4] < '1' || s[4] > '9') {
        return 0;
    }
    v = strtoul(s + 4, &end, 10);
    if (*end != '\0' || v > 1000000000UL) {
        return 0;
    }
    return (unsigned)v;
}

unsigned kh_state_current_gen(KH_CTX *ctx, const char *name)
{
    char path[KH_PATH_MAX], target[256];
    ssize_t n;

    if (!kh_path(path, sizeof(path), "%s/%s/current", ctx->state_dir, name)) {
        return 0;
    }
    n = readlink(path, target, sizeof(target) - 1);
    if (n <= 0) {
        return 0;
    }
    target[n] = '\0';
    return gen_of(target);
}

unsigned kh_state_max_gen(KH_CTX *ctx, const char *name)
{
    char idir[KH_PATH_MAX];
    DIR *d;
    struct dirent *e;
    unsigned max = kh_state_current_gen(ctx, name), g;

    if (!kh_state_idir(ctx, name, idir, sizeof(idir))
        || (d = opendir(idir)) == NULL) {
        return max;
    }
    while ((e = readdir(d)) != NULL) {
        g = gen_of(e->d_name);
        if (g > max) {
            max = g;
        }
    }
    closedir(d);
    return max;
}

/* Stable symlinks NAME/f -> current/f (made once; they never change). */
static int ensure_links(const char *idir, char *err, size_t errlen)
{
    char link[KH_PATH_MAX], tmp[KH_PATH_MAX], target[64], have[64];
    int i;

    for (i = 0; stable_files[i] != NULL; i++) {
        ssize_t n;

        kh_path(link, sizeof(link), "%s/%s", idir, stable_files[i]);
        kh_path(target, sizeof(target), "current/%s", stable_files[i]);
        n = readlink(link, have, sizeof(have) - 1);
        if (n > 0) {
            have[n] = '\0';
            if (strcmp(have, target) == 0) {
                continue;
            }
        }
        kh_path(tmp, sizeof(tmp), "%s/.%s.tmp", idir, stable_files[i]);
        unlink(tmp);
        if (symlink(target, tmp) != 0 || rename(tmp, link) != 0) {
            unlink(tmp);
            return kh_seterr(err, errlen, KH_EXIT_BROKEN,
                             "cannot link %s: %s", link, strerror(errno));
        }
    }
    kh_fsync_dir(idir);
    return KH_EXIT_OK;
}

int kh_state_prepare(KH_CTX *ctx, const char *name, char *err, size_t errlen)
{
    char idir[KH_PATH_MAX], sub[KH_PATH_MAX];
    unsigned cur;
    DIR *d;
    struct dirent *e;
    int rc;

    rc = ensure_dir(ctx->state_dir, err, errlen);
    if (rc != KH_EXIT_OK) {
        return rc;
    }
    if (!kh_state_idir(ctx, name, idir, sizeof(idir))) {
        return kh_seterr(err, errlen, KH_EXIT_REJECTED, "path too long");
    }
    rc = ensure_dir(idir, err, errlen);
    if (rc != KH_EXIT_OK) {
        return rc;
    }
    cur = kh_state_current_gen(ctx, name);
    d = opendir(idir);
    if (d == NULL) {
        return kh_seterr(err, errlen, KH_EXIT_PERM, "cannot read %s: %s", idir,
                         strerror(errno));
    }
    while ((e = readdir(d)) != NULL) {
        unsigned g = gen_of(e->d_name);
        int stray = strstr(e->d_name, ".tmp") != NULL;

        if ((g > cur) || stray) {
            /* left by an interrupted install: never in service */
            kh_path(sub, sizeof(sub), "%s/%s", idir, e->d_name);
            kh_dbg(ctx, "recovery: removing %s", sub);
            kh_rm_rf(sub);
        }
    }
    closedir(d);
    kh_fsync_dir(idir);
    if (cur > 0) {
        return ensure_links(idir, err, errlen);
    }
    return KH_EXIT_OK;
}

int kh_manage_begin(KH_CTX *ctx, const char *what, const char *name,
                    int *lockfd, char *err, size_t errlen)
{
    int rc = kh_require_manage(ctx, what, err, errlen);

    if (rc == KH_EXIT_OK) {
        rc = kh_lock(ctx, name, lockfd, err, errlen);
    }
    if (rc == KH_EXIT_OK) {
        rc = kh_state_prepare(ctx, name, err, errlen);
    }
    return rc;
}

static int gen_key_uri(KH_CTX *ctx, const char *name, unsigned gen, char **uri)
{
    char path[KH_PATH_MAX], e[256];
    BIO *b;
    int ok;

    *uri = NULL;
    if (gen == 0
        || !kh_path(path, sizeof(path), "%s/%s/gen-%u/key.pem", ctx->state_dir,
                    name, gen)
        || (b = BIO_new_file(path, "r")) == NULL) {
        ERR_clear_error();
        return 0;
    }
    ok = kh_keyref_pem_read(b, uri, e, sizeof(e));
    BIO_free(b);
    ERR_clear_error();
    if (ok && *uri != NULL) {
        /* OPENSSL_malloc'd -> malloc'd for the callers */
        char *c = strdup(*uri);

        OPENSSL_free(*uri);
        *uri = c;
        return c != NULL;
    }
    return 0;
}

int kh_identity_key_uri(KH_CTX *ctx, const KH_IDENTITY *id, char **uri)
{
    const char *cfg = kh_id_get(id, "key-uri");

    if (gen_key_uri(ctx, id->name, kh_state_current_gen(ctx, id->name), uri)) {
        return KH_EXIT_OK;
    }
    if (cfg == NULL || *cfg == '\0') {
        *uri = NULL;
        return KH_EXIT_BROKEN;
    }
    *uri = strdup(cfg);
    return *uri != NULL ? KH_EXIT_OK : KH_EXIT_BROKEN;
}

int kh_identity_next_key_uri(KH_CTX *ctx, const KH_IDENTITY *id, char **uri)
{
    KH_STATUS_REC st;

    kh_status_read(ctx, id->name, &st);
    if (st.pending_key_uri[0] != '\0') {
        *uri = strdup(st.pending_key_uri);
        return *uri != NULL ? KH_EXIT_OK : KH_EXIT_BROKEN;
    }
    return kh_identity_key_uri(ctx, id, uri);
}

int kh_uri_key_id(const char *uri, char *hex, size_t hexlen)
{
    KH_P11_URI *u = NULL;
    char e[256];
    size_t i;

    if (hexlen > 0) {
        hex[0] = '\0';
    }
    if (uri == NULL || !kh_is_p11_uri(uri)
        || !kh_p11_uri_parse(uri, &u, e, sizeof(e))) {
        return 0;
    }
    if (!u->has_id || u->idlen * 2 + 1 > hexlen) {
        kh_p11_uri_free(u);
        return 0;
    }
    for (i = 0; i < u->idlen; i++) {
        snprintf(hex + 2 * i, 3, "%02x", u->id[i]);
    }
    kh_p11_uri_free(u);
    return 1;
}

int kh_state_load_current(KH_CTX *ctx, const char *name, X509 **cert,
                          STACK_OF(X509) **chain, X509 **ca)
{
    char path[KH_PATH_MAX], e[256];
    unsigned gen = kh_state_current_gen(ctx, name);
    X509 *x = NULL;

    if (cert != NULL) {
        *cert = NULL;
    }
    if (chain != NULL) {
        *chain = NULL;
    }
    if (ca != NULL) {
        *ca = NULL;
    }
    if (gen == 0) {
        return 0;
    }
    if (cert != NULL) {
        kh_path(path, sizeof(path), "%s/%s/gen-%u/cert.pem", ctx->state_dir,
                name, gen);
        if (kh_certs_read(path, cert, NULL, e, sizeof(e)) != KH_EXIT_OK) {
            return 0;
        }
    }
    if (chain != NULL) {
        kh_path(path, sizeof(path), "%s/%s/gen-%u/chain.pem", ctx->state_dir,
                name, gen);
        if (kh_certs_read(path, &x, chain, e, sizeof(e)) == KH_EXIT_OK) {
            if (*chain == NULL) {
                *chain = sk_X509_new_null();
            }
            if (*chain != NULL) {
                sk_X509_insert(*chain, x, 0);
            } else {
                X509_free(x);
            }
        }
    }
    if (ca != NULL) {
        kh_path(path, sizeof(path), "%s/%s/gen-%u/ca.pem", ctx->state_dir,
                name, gen);
        kh_certs_read(path, ca, NULL, e, sizeof(e));
    }
    return 1;
}

/* Public key of the key |uri| without a login: the token's public object
 * (or the TPM backend). */
static int key_pub(KH_CTX *ctx, const KH_IDENTITY *id, KH_TOKEN *tok,
                   const char *uri, EVP_PKEY **pub, char *err, size_t errlen)
{
    char hex[130];

    *pub = NULL;
    if (uri != NULL && strncmp(uri, "tpm2:", 5) == 0) {
        if (kh_tpm_get_pubkey == NULL) {
            return kh_seterr(err, errlen, KH_EXIT_TOKEN,
                             "this keyhold has no TPM support");
        }
        return kh_tpm_get_pubkey(ctx, id, uri, pub, err, errlen);
    }
    if (!kh_uri_key_id(uri, hex, sizeof(hex))) {
        return kh_seterr(err, errlen, KH_EXIT_REJECTED,
                         "key URI '%s' names no CKA_ID", uri ? uri : "");
    }
    return kh_token_get_pubkey(tok, hex, pub, err, errlen);
}

static int append_pem(BIO *b, X509 *x)
{
    return PEM_write_bio_X509(b, x);
}

static int write_bio(const char *dir, const char *file, BIO *b, char *err,
                     size_t errlen)
{
    char path[KH_PATH_MAX];
    char *data = NULL;
    long len = BIO_get_mem_data(b, &data);

    kh_path(path, sizeof(path), "%s/%s", dir, file);
    if (!kh_write_new(path, data, (size_t)len, 0640, err, errlen)) {
        return 0;
    }
    return 1;
}

static X509 *load_ca(KH_CTX *ctx, const KH_IDENTITY *id, char *err,
                     size_t errlen)
{
    const char *cafile = kh_id_get(id, "ca");
    X509 *ca = NULL;

    if (cafile != NULL && *cafile != '\0') {
        if (kh_certs_read(cafile, &ca, NULL, err, errlen) != KH_EXIT_OK) {
            return NULL;
        }
        return ca;
    }
    kh_state_load_current(ctx, id->name, NULL, NULL, &ca);
    return ca;
}

static int switch_current(const char *idir, unsigned gen, char *err,
                          size_t errlen)
{
    char tmp[KH_PATH_MAX], cur[KH_PATH_MAX], target[32];

    kh_path(tmp, sizeof(tmp), "%s/.current.tmp", idir);
    kh_path(cur, sizeof(cur), "%s/current", idir);
    kh_path(target, sizeof(target), "gen-%u", gen);
    unlink(tmp);
    if (symlink(target, tmp) != 0) {
        return kh_seterr(err, errlen, KH_EXIT_BROKEN, "symlink %s: %s", tmp,
                         strerror(errno));
    }
    kh_crash_point("switch");
    if (rename(tmp, cur) != 0) {
        unlink(tmp);
        return kh_seterr(err, errlen, KH_EXIT_BROKEN, "rename %s: %s", cur,
                         strerror(errno));
    }
    kh_fsync_dir(idir);
    return KH_EXIT_OK;
}

/* Removes generations older than |keep_from| and destroys keys that no
 * kept generation, pending record or config references. */
/* What names a key for pruning: its CKA_ID (hex) for pkcs11:, the URI
 * itself for tpm2:. */
static int key_tag(const char *uri, char *tag, size_t len)
{
    if (uri == NULL) {
        return 0;
    }
    if (strncmp(uri, "tpm2:", 5) == 0) {
        return kh_path(tag, len, "%s", uri);
    }
    return kh_uri_key_id(uri, tag, len);
}

/* Keys a rekey retired but keeps for a grace period: $STATE/NAME/
 * retired-keys, "DEADLINE URI" per line (written by the renewal code,
 * which destroys them after the deadline). Their tags join |keep|. */
static void keep_retired(KH_CTX *ctx, const char *name, KH_STRLIST *keep)
{
    char path[KH_PATH_MAX], tag[1100];
    char *buf = NULL, *line, *save = NULL;
    time_t now = time(NULL);

    if (!kh_path(path, sizeof(path), "%s/%s/retired-keys", ctx->state_dir,
                 name)
        || !kh_read_file(path, 1024 * 1024, &buf, NULL, NULL, 0)) {
        return;
    }
    for (line = strtok_r(buf, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        char *end = NULL;
        long long deadline = strtoll(line, &end, 10);

        if (end == line || end == NULL || *end != ' ') {
            continue;
        }
        while (*end == ' ') {
            end++;
        }
        if (deadline > (long long)now && key_tag(end, tag, sizeof(tag))
            && !kh_strlist_has(keep, tag)) {
            kh_strlist_add(keep, tag);
        }
    }
    free(buf);
}

/* Removes generations older than |keep_from| and destroys the keys that no
 * kept generation, pending record or retired-key grace period
 * references. */
static void prune(KH_CTX *ctx, KH_IDENTITY *id, KH_TOKEN *tok,
                  unsigned keep_from)
{
    char idir[KH_PATH_MAX], sub[KH_PATH_MAX], tag[1100], e[KH_ERR_MAX];
    KH_STRLIST keep = { 0 }, olds = { 0 };
    DIR *d;
    struct dirent *de;
    unsigned g, cur = kh_state_current_gen(ctx, id->name);
    char *uri = NULL;
    size_t i;

    if (!kh_state_idir(ctx, id->name, idir, sizeof(idir))) {
        return;
    }
    for (g = keep_from; g <= cur; g++) {
        if (gen_key_uri(ctx, id->name, g, &uri)) {
            if (key_tag(uri, tag, sizeof(tag))) {
                kh_strlist_add(&keep, tag);
            }
            free(uri);
        }
    }
    {
        KH_STATUS_REC st;

        kh_status_read(ctx, id->name, &st);
        if (key_tag(st.pending_key_uri, tag, sizeof(tag))) {
            kh_strlist_add(&keep, tag);
        }
    }
    keep_retired(ctx, id->name, &keep);
    if (keep.n == 0) {
        goto end;
    }
    d = opendir(idir);
    if (d == NULL) {
        goto end;
    }
    while ((de = readdir(d)) != NULL) {
        g = gen_of(de->d_name);
        if (g == 0 || g >= keep_from) {
            continue;
        }
        if (gen_key_uri(ctx, id->name, g, &uri)) {
            if (key_tag(uri, tag, sizeof(tag)) && !kh_strlist_has(&keep, tag)
                && !kh_strlist_has(&olds, tag)) {
                kh_strlist_add(&olds, tag);
            }
            free(uri);
        }
        kh_path(sub, sizeof(sub), "%s/%s", idir, de->d_name);
        kh_rm_rf(sub);
    }
    closedir(d);
    kh_fsync_dir(idir);
    for (i = 0; i < olds.n; i++) {
        int rc = KH_EXIT_TOKEN;

        if (strncmp(olds.v[i], "tpm2:", 5) == 0) {
            if (kh_tpm_key_destroy != NULL) {
                rc = kh_tpm_key_destroy(ctx, id, olds.v[i], e, sizeof(e));
            }
        } else if (tok != NULL) {
            rc = kh_token_destroy_id(tok, olds.v[i], NULL, e, sizeof(e));
        }
        if (rc == KH_EXIT_OK) {
            kh_audit(ctx, "key-destroy", id->name, olds.v[i], "ok",
                     "retired with its generation");
        }
    }
end:
    kh_strlist_free(&keep);
    kh_strlist_free(&olds);
}

int kh_identity_install(KH_CTX *ctx, KH_IDENTITY *id, const KH_INSTALL_REQ *req,
                        char *err, size_t errlen)
{
    char idir[KH_PATH_MAX], gdir[KH_PATH_MAX], hex[130] = "";
    char e2[KH_ERR_MAX];
    char pin[KH_PIN_MAX + 1];
    size_t pinlen = 0;
    const char *op = req->op != NULL ? req->op : "install";
    const char *backend = kh_id_get(id, "backend");
    KH_TOKEN *tok = NULL;
    EVP_PKEY *pub = NULL;
    X509 *ca = NULL;
    char *cands[2] = { NULL, NULL };
    const char *use_uri = NULL;
    KH_STATUS_REC st;
    BIO *b = NULL;
    unsigned cur, gen;
    int rc, i, staged = 0, is_tpm, switched = 0;

    if (backend == NULL) {
        backend = "pkcs11";
    }
    is_tpm = strcmp(backend, "tpm2") == 0;
    rc = kh_state_prepare(ctx, id->name, err, errlen);
    if (rc != KH_EXIT_OK) {
        return rc;
    }
    kh_state_idir(ctx, id->name, idir, sizeof(idir));
    kh_status_read(ctx, id->name, &st);

    /* which key is the certificate for? */
    if (req->key_uri != NULL) {
        cands[0] = strdup(req->key_uri);
    } else {
        if (st.pending_key_uri[0] != '\0') {
            cands[0] = strdup(st.pending_key_uri);
        }
        if (kh_identity_key_uri(ctx, id, &cands[1]) != KH_EXIT_OK) {
            cands[1] = NULL;
        }
    }
    if (!is_tpm) {
        rc = kh_token_open_identity(ctx, id, &tok, err, errlen);
        if (rc != KH_EXIT_OK) {
            goto end;
        }
    }
    rc = KH_EXIT_REJECTED;
    for (i = 0; i < 2; i++) {
        EVP_PKEY *p = NULL;

        if (cands[i] == NULL) {
            continue;
        }
        rc = key_pub(ctx, id, tok, cands[i], &p, err, errlen);
        if (rc != KH_EXIT_OK) {
            continue;
        }
        if (EVP_PKEY_eq(p, X509_get0_pubkey(req->cert)) == 1 || pub == NULL) {
            EVP_PKEY_free(pub);
            pub = p;
            use_uri = cands[i];
            if (EVP_PKEY_eq(p, X509_get0_pubkey(req->cert)) == 1) {
                break;
            }
        } else {
            EVP_PKEY_free(p);
        }
    }
    ERR_clear_error();
    if (pub == NULL) {
        if (rc == KH_EXIT_OK) {
            rc = kh_seterr(err, errlen, KH_EXIT_BROKEN,
                           "identity '%s' has no key (provision it first)",
                           id->name);
        }
        goto end;
    }
    /* the trust anchor */
    ca = req->ca != NULL ? X509_dup(req->ca) : load_ca(ctx, id, e2, sizeof(e2));
    rc = kh_cert_check(ctx, id, req->cert, req->chain, ca, pub, time(NULL),
                       err, errlen);
    if (rc != KH_EXIT_OK) {
        goto end;
    }
    kh_crash_point("checked");

    /* build gen-(N+1) */
    cur = kh_state_current_gen(ctx, id->name);
    gen = cur + 1;
    kh_path(gdir, sizeof(gdir), "%s/gen-%u", idir, gen);
    if (mkdir(gdir, 0750) != 0) {
        rc = kh_seterr(err, errlen, KH_EXIT_BROKEN, "cannot create %s: %s",
                       gdir, strerror(errno));
        goto end;
    }
    staged = 1;
    kh_crash_point("staging");
    rc = KH_EXIT_BROKEN;
    b = BIO_new(BIO_s_mem());
    if (b == NULL || !append_pem(b, req->cert)
        || !write_bio(gdir, "cert.pem", b, err, errlen)) {
        goto end;
    }
    (void)BIO_reset(b);
    for (i = 0; req->chain != NULL && i < sk_X509_num(req->chain); i++) {
        append_pem(b, sk_X509_value(req->chain, i));
    }
    if (!write_bio(gdir, "chain.pem", b, err, errlen)) {
        goto end;
    }
    (void)BIO_reset(b);
    append_pem(b, req->cert);
    for (i = 0; req->chain != NULL && i < sk_X509_num(req->chain); i++) {
        append_pem(b, sk_X509_value(req->chain, i));
    }
    if (!write_bio(gdir, "fullchain.pem", b, err, errlen)) {
        goto end;
    }
    (void)BIO_reset(b);
    append_pem(b, ca);
    if (!write_bio(gdir, "ca.pem", b, err, errlen)) {
        goto end;
    }
    (void)BIO_reset(b);
    if (!kh_keyref_pem_write(b, use_uri, e2, sizeof(e2))) {
        kh_seterr(err, errlen, KH_EXIT_BROKEN, "key reference: %s", e2);
        goto end;
    }
    if (!write_bio(gdir, "key.pem", b, err, errlen)) {
        goto end;
    }
    append_pem(b, req->cert);
    for (i = 0; req->chain != NULL && i < sk_X509_num(req->chain); i++) {
        append_pem(b, sk_X509_value(req->chain, i));
    }
    if (!write_bio(gdir, "identity.pem", b, err, errlen)) {
        goto end;
    }
    kh_crash_point("written");
    if (!kh_fsync_dir(gdir) || !kh_fsync_dir(idir)) {
        kh_seterr(err, errlen, KH_EXIT_BROKEN, "fsync %s: %s", gdir,
                  strerror(errno));
        goto end;
    }
    kh_crash_point("synced");

    /* the certificate joins its key in the token */
    if (!is_tpm && !req->no_token_cert) {
        char label[KH_NAME_MAX + 32];

        rc = kh_pin_obtain(ctx, id, pin, sizeof(pin), &pinlen, err, errlen);
        if (rc == KH_EXIT_OK) {
            rc = kh_token_login(tok, pin, pinlen, err, errlen);
        }
        if (rc != KH_EXIT_OK) {
            goto end;
        }
        kh_uri_key_id(use_uri, hex, sizeof(hex));
        snprintf(label, sizeof(label), "keyhold:%s:%u", id->name, gen);
        rc = kh_token_store_cert(tok, hex, label, req->cert, err, errlen);
        if (rc != KH_EXIT_OK) {
            goto end;
        }
        kh_crash_point("token-cert");
    }

    /* the switch */
    rc = switch_current(idir, gen, err, errlen);
    if (rc != KH_EXIT_OK) {
        goto end;
    }
    switched = 1;
    kh_crash_point("switched");
    rc = ensure_links(idir, err, errlen);
    if (rc != KH_EXIT_OK) {
        goto end;
    }
    kh_crash_point("links");
    kh_status_read(ctx, id->name, &st);
    st.generation = gen;
    st.building = 0;
    if (st.pending_key_uri[0] != '\0'
        && strcmp(st.pending_key_uri, use_uri) == 0) {
        st.pending_key_uri[0] = '\0';
    }
    st.warned_level = 0;
    st.warned_not_after = 0;
    kh_status_write(ctx, id->name, &st, e2, sizeof(e2));
    if (!req->no_prune && gen > 1) {
        /* pkcs11 keys are destroyed only with a logged-in session */
        prune(ctx, id, (tok != NULL && !req->no_token_cert) ? tok : NULL,
              gen - 1);
        if (tok != NULL && !req->no_token_cert) {
            kh_identity_clean_orphans(ctx, id, tok, e2, sizeof(e2));
        }
    }
    kh_crash_point("pruned");
    rc = KH_EXIT_OK;
end:
    if (rc != KH_EXIT_OK && staged && !switched) {
        kh_rm_rf(gdir);
        kh_fsync_dir(idir);
    }
    if (hex[0] == '\0' && use_uri != NULL) {
        kh_uri_key_id(use_uri, hex, sizeof(hex));
    }
    {
        char fpc[80] = "";

        kh_fp_cert(req->cert, fpc, sizeof(fpc));
        kh_audit(ctx, op, id->name, hex, rc == KH_EXIT_OK ? "ok" : "failed",
                 rc == KH_EXIT_OK ? fpc : err);
    }
    if (rc == KH_EXIT_OK && strcmp(op, "install") == 0) {
        /* enroll/renew/rekey write their own report line */
    }
    OPENSSL_cleanse(pin, sizeof(pin));
    BIO_free(b);
    X509_free(ca);
    EVP_PKEY_free(pub);
    free(cands[0]);
    free(cands[1]);
    kh_token_close(tok);
    return rc;
}

/* After a switch back, the token's certificate object follows the
 * generation in service again (best effort: it needs the PIN). */
static void resync_token_cert(KH_CTX *ctx, const KH_IDENTITY *id)
{
    const char *backend = kh_id_get(id, "backend");
    char pin[KH_PIN_MAX + 1], e2[KH_ERR_MAX], hex[130], label[KH_NAME_MAX + 32];
    size_t pinlen = 0;
    KH_TOKEN *tok = NULL;
    X509 *cert = NULL;
    char *uri = NULL;

    if (backend != NULL && strcmp(backend, "tpm2") == 0) {
        return;
    }
    if (!kh_state_load_current(ctx, id->name, &cert, NULL, NULL)
        || cert == NULL || kh_identity_key_uri(ctx, id, &uri) != KH_EXIT_OK
        || !kh_uri_key_id(uri, hex, sizeof(hex))) {
        goto end;
    }
    snprintf(label, sizeof(label), "keyhold:%s:%u", id->name,
             kh_state_current_gen(ctx, id->name));
    if (kh_pin_obtain(ctx, id, pin, sizeof(pin), &pinlen, e2, sizeof(e2))
            != KH_EXIT_OK
        || kh_token_open_identity(ctx, id, &tok, e2, sizeof(e2)) != KH_EXIT_OK
        || kh_token_login(tok, pin, pinlen, e2, sizeof(e2)) != KH_EXIT_OK
        || kh_token_store_cert(tok, hex, label, cert, e2, sizeof(e2))
               != KH_EXIT_OK) {
        kh_warn(ctx, "identity %s: the token's certificate object was not "
                "restored: %s", id->name, e2);
    }
end:
    OPENSSL_cleanse(pin, sizeof(pin));
    kh_token_close(tok);
    X509_free(cert);
    free(uri);
}

int kh_identity_rollback(KH_CTX *ctx, KH_IDENTITY *id, char *err, size_t errlen)
{
    char idir[KH_PATH_MAX], gdir[KH_PATH_MAX], e2[256];
    unsigned cur = kh_state_current_gen(ctx, id->name);
    struct stat sb;
    KH_STATUS_REC st;
    int rc;

    kh_state_idir(ctx, id->name, idir, sizeof(idir));
    kh_path(gdir, sizeof(gdir), "%s/gen-%u", idir, cur > 0 ? cur - 1 : 0);
    if (cur < 2 || stat(gdir, &sb) != 0) {
        return kh_seterr(err, errlen, KH_EXIT_BROKEN,
                         "identity '%s': no previous generation to roll back "
                         "to", id->name);
    }
    rc = switch_current(idir, cur - 1, err, errlen);
    if (rc != KH_EXIT_OK) {
        return rc;
    }
    kh_path(gdir, sizeof(gdir), "%s/gen-%u", idir, cur);
    kh_rm_rf(gdir);
    kh_fsync_dir(idir);
    kh_status_read(ctx, id->name, &st);
    st.generation = cur - 1;
    kh_status_write(ctx, id->name, &st, e2, sizeof(e2));
    resync_token_cert(ctx, id);
    kh_audit(ctx, "rollback", id->name, NULL, "ok", "previous generation");
    return KH_EXIT_OK;
}

int kh_run_hooks(KH_CTX *ctx, const KH_IDENTITY *id, char *err, size_t errlen)
{
    KH_STRLIST hooks = { 0 };
    size_t i;
    int rc = KH_EXIT_OK;

    kh_id_get_all(id, "reload", &hooks);
    for (i = 0; i < hooks.n; i++) {
        int st;

        fflush(stdout);
        fflush(stderr);
        kh_dbg(ctx, "reload hook: %s", hooks.v[i]);
        st = system(hooks.v[i]);
        if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            rc = kh_seterr(err, errlen, KH_EXIT_BROKEN,
                           "reload hook '%s' failed (%s %d)", hooks.v[i],
                           st != -1 && WIFEXITED(st) ? "exit" : "status",
                           st != -1 && WIFEXITED(st) ? WEXITSTATUS(st) : st);
            break;
        }
    }
    kh_strlist_free(&hooks);
    return rc;
}

int kh_identity_clean_orphans(KH_CTX *ctx, const KH_IDENTITY *id, KH_TOKEN *t,
                              char *err, size_t errlen)
{
    KH_STRLIST ids = { 0 }, keep = { 0 };
    char hex[130], e2[256];
    unsigned g, cur = kh_state_current_gen(ctx, id->name);
    char *uri = NULL;
    KH_STATUS_REC st;
    size_t i;
    int rc;

    rc = kh_token_list_ids(t, id->name, &ids, err, errlen);
    if (rc != KH_EXIT_OK) {
        return rc;
    }
    for (g = cur > 1 ? cur - 1 : 1; g <= cur; g++) {
        if (gen_key_uri(ctx, id->name, g, &uri)) {
            if (kh_uri_key_id(uri, hex, sizeof(hex))) {
                kh_strlist_add(&keep, hex);
            }
            free(uri);
        }
    }
    /* the config's key-uri is the key in use only until a certificate is
     * installed; later the generations say which keys serve */
    if (cur == 0
        && kh_uri_key_id(kh_id_get(id, "key-uri"), hex, sizeof(hex))) {
        kh_strlist_add(&keep, hex);
    }
    kh_status_read(ctx, id->name, &st);
    if (kh_uri_key_id(st.pending_key_uri, hex, sizeof(hex))) {
        kh_strlist_add(&keep, hex);
    }
    keep_retired(ctx, id->name, &keep);
    for (i = 0; i < ids.n; i++) {
        if (kh_strlist_has(&keep, ids.v[i])) {
            continue;
        }
        if (kh_token_destroy_id(t, ids.v[i], NULL, e2, sizeof(e2))
            == KH_EXIT_OK) {
            kh_audit(ctx, "key-destroy", id->name, ids.v[i], "ok",
                     "orphan left by an interrupted run");
        }
    }
    kh_strlist_free(&ids);
    kh_strlist_free(&keep);
    return KH_EXIT_OK;
}

/* ------------------------------------------------------------------ */
/* status.json: a flat object written by us, read back by a small scanner. */

static const char *json_find(const char *buf, const char *key)
{
    char pat[64];
    const char *p;

    snprintf(pat, sizeof(pat), "\"%s\":", key);
    p = strstr(buf, pat);
    return p != NULL ? p + strlen(pat) : NULL;
}

static long long json_int(const char *buf, const char *key)
{
    const char *p = json_find(buf, key);

    return p != NULL ? strtoll(p, NULL, 10) : 0;
}

static void json_string(const char *buf, const char *key, char *out,
                        size_t outlen)
{
    const char *p = json_find(buf, key);
    size_t o = 0;

    out[0] = '\0';
    if (p == NULL || *p != '"') {
        return;
    }
    for (p++; *p != '\0' && *p != '"' && o + 1 < outlen; p++) {
        if (*p == '\\' && p[1] != '\0') {
            p++;
            if (*p == 'n') {
                out[o++] = '\n';
            } else if (*p == 'u') {
                out[o++] = '?';
                p += strlen(p) >= 5 ? 4 : 0;
            } else {
                out[o++] = *p;
            }
            continue;
        }
        out[o++] = *p;
    }
    out[o] = '\0';
}

int kh_status_read(KH_CTX *ctx, const char *name, KH_STATUS_REC *st)
{
    char path[KH_PATH_MAX];
    char *buf = NULL;

    memset(st, 0, sizeof(*st));
    if (!kh_path(path, sizeof(path), "%s/%s/status.json", ctx->state_dir,
                 name)
        || !kh_read_file(path, 65536, &buf, NULL, NULL, 0)) {
        st->generation = kh_state_current_gen(ctx, name);
        return 0;
    }
    st->generation = (unsigned)json_int(buf, "generation");
    st->building = (unsigned)json_int(buf, "building");
    st->last_attempt = json_int(buf, "last_attempt");
    st->last_success = json_int(buf, "last_success");
    st->next_attempt = json_int(buf, "next_attempt");
    st->failures = json_int(buf, "failures");
    st->failures_total = json_int(buf, "failures_total");
    st->warned_level = (int)json_int(buf, "warned_level");
    st->warned_not_after = json_int(buf, "warned_not_after");
    json_string(buf, "last_error", st->last_error, sizeof(st->last_error));
    json_string(buf, "pending_key_uri", st->pending_key_uri,
                sizeof(st->pending_key_uri));
    free(buf);
    /* the symlink is the truth for the generation in use */
    st->generation = kh_state_current_gen(ctx, name);
    return 1;
}

int kh_status_write(KH_CTX *ctx, const char *name, const KH_STATUS_REC *st,
                    char *err, size_t errlen)
{
    char path[KH_PATH_MAX];
    char e[1100], pk[2200], buf[8192];
    int n;

    if (!kh_path(path, sizeof(path), "%s/%s/status.json", ctx->state_dir,
                 name)) {
        return kh_seterr(err, errlen, KH_EXIT_BROKEN, "path too long");
    }
    kh_json_str(e, sizeof(e), st->last_error);
    kh_json_str(pk, sizeof(pk), st->pending_key_uri);
    n = snprintf(buf, sizeof(buf),
                 "{\"name\":\"%s\",\"generation\":%u,\"building\":%u,"
                 "\"last_attempt\":%lld,\"last_success\":%lld,"
                 "\"next_attempt\":%lld,\"failures\":%lld,"
                 "\"failures_total\":%lld,\"last_error\":%s,"
                 "\"pending_key_uri\":%s,\"warned_level\":%d,"
                 "\"warned_not_after\":%lld}\n",
                 name, st->generation, st->building, st->last_attempt,
                 st->last_success, st->next_attempt, st->failures,
                 st->failures_total, e, pk, st->warned_level,
                 st->warned_not_after);
    if (n < 0 || (size_t)n >= sizeof(buf)
        || !kh_write_atomic(path, buf, (size_t)n, 0640, err, errlen)) {
        return KH_EXIT_BROKEN;
    }
    return KH_EXIT_OK;
}

int kh_status_record_attempt(KH_CTX *ctx, const char *name, int ok,
                             const char *error, time_t next_attempt)
{
    KH_STATUS_REC st;
    char e[256];

    kh_status_read(ctx, name, &st);
    st.last_attempt = (long long)time(NULL);
    st.next_attempt = (long long)next_attempt;
    if (ok) {
        st.last_success = st.last_attempt;
        st.failures = 0;
        st.last_error[0] = '\0';
    } else {
        st.failures++;
        st.failures_total++;
        snprintf(st.last_error, sizeof(st.last_error), "%s",
                 error != NULL ? error : "failed");
    }
    return kh_status_write(ctx, name, &st, e, sizeof(e));
}

void kh_expiry_thresholds(long long lifetime, long long th[4])
{
    static const long long days[4] = { 30, 14, 7, 1 };
    static const long long div[4] = { 3, 6, 12, 24 };
    int i;

    for (i = 0; i < 4; i++) {
        long long cap = lifetime > 0 ? lifetime / div[i] : 0;

        th[i] = days[i] * 86400;
        if (th[i] > cap) {
            th[i] = cap;
        }
    }
}

void kh_expiry_warn(KH_CTX *ctx, const KH_IDENTITY *id, X509 *cert, time_t now)
{
    struct tm tnb, tna;
    long long nb, na, th[4], left;
    KH_STATUS_REC st;
    int level = 0, i;
    char e[256];

    if (cert == NULL || kh_clock_suspect(now)
        || ASN1_TIME_to_tm(X509_get0_notBefore(cert), &tnb) != 1
        || ASN1_TIME_to_tm(X509_get0_notAfter(cert), &tna) != 1) {
        return;
    }
    nb = (long long)timegm(&tnb);
    na = (long long)timegm(&tna);
    kh_expiry_thresholds(na - nb, th);
    left = na - (long long)now;
    for (i = 0; i < 4; i++) {
        if (left < th[i]) {
            level = i + 1;
        }
    }
    kh_status_read(ctx, id->name, &st);
    if (st.warned_not_after != na) {
        st.warned_level = 0;
        st.warned_not_after = na;
    }
    if (level == 0 || level <= st.warned_level) {
        return;
    }
    {
        char msg[300];

        if (left <= 0) {
            snprintf(msg, sizeof(msg),
                     "identity %s: certificate has expired", id->name);
        } else {
            snprintf(msg, sizeof(msg),
                     "identity %s: certificate expires in %lld days %lld "
                     "hours (warning threshold %lld s; renew: keyhold renew "
                     "%s)", id->name, left / 86400, (left % 86400) / 3600,
                     th[level - 1], id->name);
        }
        kh_warn(ctx, "%s", msg);
        openlog("keyhold", LOG_PID, LOG_DAEMON);
        syslog(LOG_WARNING, "%s", msg);
        closelog();
    }
    st.warned_level = level;
    kh_status_write(ctx, id->name, &st, e, sizeof(e));
}
