/* SPDX-License-Identifier: MIT */
/*
 * Plumbing of the CLI: messages, string lists, files written atomically
 * (temp, fsync, rename, fsync of the directory), recursive removal, JSON
 * string escaping and the crash points the crash tests aim at.
 */
#include <dirent.h>
#include <grp.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>

#include "keyhold.h"

static void vmsg(const char *kind, const char *fmt, va_list ap)
{
    char buf[2048];

    vsnprintf(buf, sizeof(buf), fmt, ap);
    fprintf(stderr, "keyhold: %s%s\n", kind, buf);
}

void kh_err(KH_CTX *ctx, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vmsg("", fmt, ap);
    va_end(ap);
    if (ctx != NULL && ctx->debug) {
        ERR_print_errors_fp(stderr);
    }
    ERR_clear_error();
}

void kh_warn(KH_CTX *ctx, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vmsg("warning: ", fmt, ap);
    va_end(ap);
}

void kh_dbg(KH_CTX *ctx, const char *fmt, ...)
{
    va_list ap;

    if (ctx == NULL || !ctx->debug) {
        return;
    }
    va_start(ap, fmt);
    vmsg("debug: ", fmt, ap);
    va_end(ap);
}

int kh_seterr(char *err, size_t errlen, int code, const char *fmt, ...)
{
    va_list ap;

    if (err != NULL && errlen > 0) {
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return code;
}

int kh_want_help(int argc, char **argv, const char *usage)
{
    int i;

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) {
            break;
        }
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            fputs(usage, stdout);
            return 1;
        }
    }
    return 0;
}

int kh_strlist_add(KH_STRLIST *l, const char *s)
{
    char **nv;
    char *c = strdup(s);

    if (c == NULL) {
        return 0;
    }
    nv = realloc(l->v, (l->n + 2) * sizeof(*nv));
    if (nv == NULL) {
        free(c);
        return 0;
    }
    l->v = nv;
    l->v[l->n++] = c;
    l->v[l->n] = NULL;
    return 1;
}

int kh_strlist_has(const KH_STRLIST *l, const char *s)
{
    size_t i;

    for (i = 0; i < l->n; i++) {
        if (strcmp(l->v[i], s) == 0) {
            return 1;
        }
    }
    return 0;
}

void kh_strlist_free(KH_STRLIST *l)
{
    size_t i;

    if (l == NULL) {
        return;
    }
    for (i = 0; i < l->n; i++) {
        free(l->v[i]);
    }
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

int kh_path(char *buf, size_t len, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(buf, len, fmt, ap);
    va_end(ap);
    return n >= 0 && (size_t)n < len;
}

int kh_fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc;

    if (fd < 0) {
        return 0;
    }
    rc = fsync(fd);
    close(fd);
    return rc == 0;
}

static int dir_of(const char *path, char *dir, size_t len)
{
    const char *slash = strrchr(path, '/');

    if (slash == NULL) {
        return kh_path(dir, len, ".");
    }
    if (slash == path) {
        return kh_path(dir, len, "/");
    }
    return kh_path(dir, len, "%.*s", (int)(slash - path), path);
}

static int write_all(int fd, const void *data, size_t len)
{
    const unsigned char *p = data;

    while (len > 0) {
        ssize_t w = write(fd, p, len);

        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            return 0;
        }
        p += w;
        len -= (size_t)w;
    }
    return 1;
}

int kh_write_new(const char *path, const void *data, size_t len, int mode,
                 char *err, size_t errlen)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                  mode);
    int ok = 0;

    if (fd < 0) {
        kh_seterr(err, errlen, 0, "cannot create %s: %s", path,
                  strerror(errno));
        return 0;
    }
    if (fchmod(fd, mode) != 0 || !write_all(fd, data, len) || fsync(fd) != 0) {
        kh_seterr(err, errlen, 0, "cannot write %s: %s", path,
                  strerror(errno));
        goto end;
    }
    ok = 1;
end:
    if (close(fd) != 0 && ok) {
        kh_seterr(err, errlen, 0, "cannot write %s: %s", path,
                  strerror(errno));
        ok = 0;
    }
    if (!ok) {
        unlink(path);
    }
    return ok;
}

int kh_write_atomic(const char *path, const void *data, size_t len, int mode,
                    char *err, size_t errlen)
{
    char tmp[KH_PATH_MAX];
    char dir[KH_PATH_MAX];

    if (!kh_path(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid())
        || !dir_of(path, dir, sizeof(dir))) {
        return kh_seterr(err, errlen, 0, "path too long: %s", path);
    }
    unlink(tmp);
    if (!kh_write_new(tmp, data, len, mode, err, errlen)) {
        return 0;
    }
    if (rename(tmp, path) != 0) {
        kh_seterr(err, errlen, 0, "cannot replace %s: %s", path,
                  strerror(errno));
        unlink(tmp);
        return 0;
    }
    kh_fsync_dir(dir);
    return 1;
}

int kh_read_file(const char *path, size_t max, char **buf, size_t *len,
                 char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    struct stat st;
    char *b = NULL;
    size_t n = 0;

    *buf = NULL;
    if (len != NULL) {
        *len = 0;
    }
    if (fd < 0) {
        kh_seterr(err, errlen, 0, "cannot open %s: %s", path,
                  strerror(errno));
        return 0;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        kh_seterr(err, errlen, 0, "%s is not a regular file", path);
        close(fd);
        return 0;
    }
    if ((size_t)st.st_size > max) {
        kh_seterr(err, errlen, 0, "%s is too large (%lld bytes, at most %zu)",
                  path, (long long)st.st_size, max);
        close(fd);
        return 0;
    }
    b = malloc((size_t)st.st_size + 1);
    if (b == NULL) {
        close(fd);
        return kh_seterr(err, errlen, 0, "out of memory");
    }
    while (n < (size_t)st.st_size) {
        ssize_t r = read(fd, b + n, (size_t)st.st_size - n);

        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r < 0) {
            kh_seterr(err, errlen, 0, "cannot read %s: %s", path,
                      strerror(errno));
            free(b);
            close(fd);
            return 0;
        }
        if (r == 0) {
            break;
        }
        n += (size_t)r;
    }
    close(fd);
    b[n] = '\0';
    *buf = b;
    if (len != NULL) {
        *len = n;
    }
    return 1;
}

int kh_rm_rf(const char *path)
{
    struct stat st;
    DIR *d;
    struct dirent *e;
    char sub[KH_PATH_MAX];
    int ok = 1;

    if (lstat(path, &st) != 0) {
        return errno == ENOENT;
    }
    if (!S_ISDIR(st.st_mode)) {
        return unlink(path) == 0;
    }
    d = opendir(path);
    if (d == NULL) {
        return 0;
    }
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) {
            continue;
        }
        if (!kh_path(sub, sizeof(sub), "%s/%s", path, e->d_name)
            || !kh_rm_rf(sub)) {
            ok = 0;
        }
    }
    closedir(d);
    if (rmdir(path) != 0) {
        ok = 0;
    }
    return ok;
}

void kh_crash_point(const char *step)
{
    const char *at = getenv("KEYHOLD_CRASH_AT");

    if (at != NULL && strcmp(at, step) == 0) {
        fprintf(stderr, "keyhold: KEYHOLD_CRASH_AT=%s: aborting\n", step);
        abort();
    }
}

void kh_json_str(char *out, size_t outlen, const char *s)
{
    size_t o = 0;

    if (outlen < 3) {
        if (outlen > 0) {
            out[0] = '\0';
        }
        return;
    }
    out[o++] = '"';
    for (; s != NULL && *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        char esc[8];
        size_t el;

        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            el = 2;
        } else if (c == '\n') {
            memcpy(esc, "\\n", 2);
            el = 2;
        } else if (c < 0x20 || c == 0x7f) {
            snprintf(esc, sizeof(esc), "\\u%04x", c);
            el = 6;
        } else {
            esc[0] = (char)c;
            el = 1;
        }
        if (o + el + 2 > outlen) {
            break;
        }
        memcpy(out + o, esc, el);
        o += el;
    }
    out[o++] = '"';
    out[o] = '\0';
}

int kh_require_manage(KH_CTX *ctx, const char *what, char *err, size_t errlen)
{
    struct group *g;
    gid_t groups[256];
    int n, i, member = 0;

    if (geteuid() == 0) {
        return KH_EXIT_OK;
    }
    /* the service accounts that sign through servers are in group keyhold:
     * they may read and sign, never manage keys */
    g = getgrnam("keyhold");
    if (g != NULL) {
        member = getegid() == g->gr_gid;
        n = getgroups(256, groups);
        for (i = 0; i < n && !member; i++) {
            member = groups[i] == g->gr_gid;
        }
    }
    if (member) {
        return kh_seterr(err, errlen, KH_EXIT_PERM,
                         "%s is a management command: run it as root (members "
                         "of group keyhold may only use identities)", what);
    }
    if ((access(ctx->state_dir, F_OK) == 0 && access(ctx->state_dir, W_OK) != 0)
        || (access(ctx->conf_dir, F_OK) == 0
            && access(ctx->conf_dir, W_OK) != 0)) {
        return kh_seterr(err, errlen, KH_EXIT_PERM,
                         "%s: cannot write %s or %s: permission denied (run "
                         "as root)", what, ctx->state_dir, ctx->conf_dir);
    }
    return KH_EXIT_OK;
}

int kh_manage_args(KH_CTX *ctx, const char *what, const char *prefix, int all,
                   int argc, const char *usage)
{
    char err[KH_ERR_MAX];
    int rc;

    if ((all && optind != argc) || (!all && optind + 1 != argc)) {
        fputs(usage, stderr);
        return KH_EXIT_USAGE;
    }
    rc = kh_require_manage(ctx, what, err, sizeof(err));
    if (rc != KH_EXIT_OK) {
        kh_err(ctx, "%s%s", prefix, err);
    }
    return rc;
}
