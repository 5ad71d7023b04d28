/* SPDX-License-Identifier: MIT */
/*
 * Identity configuration: $KEYHOLD_CONF_DIR/NAME.conf, one `key = value`
 * per line, '#' comments, repeated keys for lists. Entries are kept in
 * order and unknown keys round-trip, so other parts (enrolment, renewal)
 * store their settings in the same file. The parser takes a buffer and has
 * no side effects (it is fuzzed).
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "keyhold.h"

#define KH_CONF_MAX (256 * 1024)
#define KH_CONF_LINE_MAX 4096

int kh_name_valid(const char *name)
{
    size_t i, n;

    if (name == NULL) {
        return 0;
    }
    n = strlen(name);
    if (n == 0 || n > KH_NAME_MAX || name[0] == '.' || name[0] == '-') {
        return 0;
    }
    if (strstr(name, "..") != NULL) {
        return 0;
    }
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];

        if (!isalnum(c) && c != '.' && c != '_' && c != '-') {
            return 0;
        }
    }
    return 1;
}

KH_IDENTITY *kh_identity_new(const char *name)
{
    KH_IDENTITY *id = calloc(1, sizeof(*id));

    if (id != NULL && name != NULL) {
        snprintf(id->name, sizeof(id->name), "%s", name);
    }
    return id;
}

void kh_identity_free(KH_IDENTITY *id)
{
    size_t i;

    if (id == NULL) {
        return;
    }
    for (i = 0; i < id->nkv; i++) {
        free(id->kv[i].key);
        free(id->kv[i].value);
    }
    free(id->kv);
    free(id);
}

int kh_id_add(KH_IDENTITY *id, const char *key, const char *value)
{
    KH_KV *nkv;
    char *k, *v;

    k = strdup(key);
    v = strdup(value);
    nkv = (k && v) ? realloc(id->kv, (id->nkv + 1) * sizeof(*nkv)) : NULL;
    if (nkv == NULL) {
        free(k);
        free(v);
        return 0;
    }
    id->kv = nkv;
    id->kv[id->nkv].key = k;
    id->kv[id->nkv].value = v;
    id->nkv++;
    return 1;
}

int kh_id_set(KH_IDENTITY *id, const char *key, const char *value)
{
    size_t i, o = 0;
    int replaced = 0;

    for (i = 0; i < id->nkv; i++) {
        if (strcmp(id->kv[i].key, key) == 0) {
            if (value != NULL && !replaced) {
                char *v = strdup(value);

                if (v == NULL) {
                    return 0;
                }
                free(id->kv[i].value);
                id->kv[i].value = v;
                replaced = 1;
                id->kv[o++] = id->kv[i];
                continue;
            }
            free(id->kv[i].key);
            free(id->kv[i].value);
            continue;
        }
        id->kv[o++] = id->kv[i];
    }
    id->nkv = o;
    if (value != NULL && !replaced) {
        return kh_id_add(id, key, value);
    }
    return 1;
}

const char *kh_id_get(const KH_IDENTITY *id, const char *key)
{
    size_t i;

    for (i = 0; id != NULL && i < id->nkv; i++) {
        if (strcmp(id->kv[i].key, key) == 0) {
            return id->kv[i].value;
        }
    }
    return NULL;
}

int kh_id_get_all(const KH_IDENTITY *id, const char *key, KH_STRLIST *out)
{
    size_t i;

    for (i = 0; id != NULL && i < id->nkv; i++) {
        if (strcmp(id->kv[i].key, key) == 0
            && !kh_strlist_add(out, id->kv[i].value)) {
            return 0;
        }
    }
    return 1;
}

int kh_id_get_bool(const KH_IDENTITY *id, const char *key, int dflt)
{
    const char *v = kh_id_get(id, key);

    if (v == NULL) {
        return dflt;
    }
    if (strcasecmp(v, "yes") == 0 || strcasecmp(v, "true") == 0
        || strcmp(v, "1") == 0 || strcasecmp(v, "on") == 0) {
        return 1;
    }
    if (strcasecmp(v, "no") == 0 || strcasecmp(v, "false") == 0
        || strcmp(v, "0") == 0 || strcasecmp(v, "off") == 0) {
        return 0;
    }
    return dflt;
}

static int key_char_ok(unsigned char c)
{
    return isalnum(c) || c == '-' || c == '_' || c == '.';
}

int kh_config_parse_buf(const char *buf, size_t len, KH_IDENTITY *out,
                        char *err, size_t errlen)
{
    char line[KH_CONF_LINE_MAX + 1];
    size_t pos = 0;
    long lineno = 0;

    if (len > KH_CONF_MAX) {
        return kh_seterr(err, errlen, 0, "config larger than %d bytes",
                         KH_CONF_MAX);
    }
    while (pos < len) {
        size_t start = pos, n, ks, ke, vs, ve;
        const char *nl = memchr(buf + pos, '\n', len - pos);

        n = nl != NULL ? (size_t)(nl - (buf + pos)) : len - pos;
        pos += n + (nl != NULL ? 1 : 0);
        lineno++;
        if (n > KH_CONF_LINE_MAX) {
            return kh_seterr(err, errlen, 0, "line %ld: longer than %d bytes",
                             lineno, KH_CONF_LINE_MAX);
        }
        memcpy(line, buf + start, n);
        line[n] = '\0';
        if (n > 0 && line[n - 1] == '\r') {
            line[--n] = '\0';
        }
        if (memchr(line, '\0', n) != NULL) {
            return kh_seterr(err, errlen, 0, "line %ld: NUL byte", lineno);
        }
        ks = 0;
        while (ks < n && isspace((unsigned char)line[ks])) {
            ks++;
        }
        if (ks == n || line[ks] == '#' || line[ks] == ';') {
            continue;
        }
        ke = ks;
        while (ke < n && key_char_ok((unsigned char)line[ke])) {
            ke++;
        }
        vs = ke;
        while (vs < n && (line[vs] == ' ' || line[vs] == '\t')) {
            vs++;
        }
        if (ke == ks || vs >= n || line[vs] != '=') {
            return kh_seterr(err, errlen, 0,
                             "line %ld: expected 'key = value'", lineno);
        }
        vs++;
        while (vs < n && (line[vs] == ' ' || line[vs] == '\t')) {
            vs++;
        }
        ve = n;
        while (ve > vs && isspace((unsigned char)line[ve - 1])) {
            ve--;
        }
        for (size_t i = vs; i < ve; i++) {
            if ((unsigned char)line[i] < 0x20 && line[i] != '\t') {
                return kh_seterr(err, errlen, 0,
                                 "line %ld: control character in value",
                                 lineno);
            }
        }
        line[ke] = '\0';
        line[ve] = '\0';
        if (!kh_id_add(out, line + ks, line + vs)) {
            return kh_seterr(err, errlen, 0, "out of memory");
        }
    }
    return 1;
}

static int conf_path(KH_CTX *ctx, const char *name, char *buf, size_t len)
{
    return kh_path(buf, len, "%s/%s.conf", ctx->conf_dir, name);
}

int kh_identity_exists(KH_CTX *ctx, const char *name)
{
    char path[KH_PATH_MAX];
    struct stat st;

    return kh_name_valid(name) && conf_path(ctx, name, path, sizeof(path))
        && stat(path, &st) == 0;
}

int kh_identity_load(KH_CTX *ctx, const char *name, KH_IDENTITY **out,
                     char *err, size_t errlen)
{
    char path[KH_PATH_MAX];
    char perr[KH_ERR_MAX];
    char *buf = NULL;
    size_t len = 0;
    KH_IDENTITY *id = NULL;
    int rc;

    *out = NULL;
    if (!kh_name_valid(name)) {
        return kh_seterr(err, errlen, KH_EXIT_REJECTED,
                         "invalid identity name '%s' (use letters, digits, "
                         "'.', '_', '-'; no '/' or '..')", name);
    }
    if (!conf_path(ctx, name, path, sizeof(path))) {
        return kh_seterr(err, errlen, KH_EXIT_REJECTED, "path too long");
    }
    if (access(path, F_OK) != 0 && errno == ENOENT) {
        return kh_seterr(err, errlen, KH_EXIT_REJECTED,
                         "unknown identity '%s' (no %s; see 'keyhold status' "
                         "for the identities, 'keyhold provision' to create "
                         "one)", name, path);
    }
    if (!kh_read_file(path, KH_CONF_MAX, &buf, &len, perr, sizeof(perr))) {
        rc = errno == EACCES ? KH_EXIT_PERM : KH_EXIT_REJECTED;
        return kh_seterr(err, errlen, rc, "%s%s", perr,
                         rc == KH_EXIT_PERM ? " (run as root)" : "");
    }
    id = kh_identity_new(name);
    if (id == NULL) {
        free(buf);
        return kh_seterr(err, errlen, KH_EXIT_BROKEN, "out of memory");
    }
    if (!kh_config_parse_buf(buf, len, id, perr, sizeof(perr))) {
        free(buf);
        kh_identity_free(id);
        return kh_seterr(err, errlen, KH_EXIT_REJECTED, "%s: %s (fix the file)",
                         path, perr);
    }
    free(buf);
    *out = id;
    return KH_EXIT_OK;
}

int kh_identity_load_cmd(KH_CTX *ctx, const char *what, const char *name,
                         KH_IDENTITY **out)
{
    char err[KH_ERR_MAX];
    int rc = kh_identity_load(ctx, name, out, err, sizeof(err));

    if (rc != KH_EXIT_OK) {
        kh_err(ctx, "%s: %s", what, err);
    }
    return rc;
}

const char *kh_arg_name(KH_CTX *ctx, const char *what, int argc, char **argv,
                        const char *usage, int *rc)
{
    const char *name;

    if (optind + 1 != argc) {
        fputs(usage, stderr);
        *rc = KH_EXIT_USAGE;
        return NULL;
    }
    name = argv[optind];
    if (!kh_name_valid(name)) {
        kh_err(ctx, "%s: invalid identity name '%s'", what, name);
        *rc = KH_EXIT_REJECTED;
        return NULL;
    }
    return name;
}

int kh_identity_save(KH_CTX *ctx, const KH_IDENTITY *id, char *err,
                     size_t errlen)
{
    char path[KH_PATH_MAX];
    char *buf = NULL;
    size_t len = 0, cap = 0, i;
    int ok;
    static const char head[] =
        "# keyhold identity (written by keyhold; 'key = value', lists repeat "
        "the key)\n";

    if (!conf_path(ctx, id->name, path, sizeof(path))) {
        return kh_seterr(err, errlen, KH_EXIT_REJECTED, "path too long");
    }
    if (mkdir(ctx->conf_dir, 0755) != 0 && errno != EEXIST) {
        return kh_seterr(err, errlen,
                         errno == EACCES || errno == EROFS ? KH_EXIT_PERM
                                                           : KH_EXIT_BROKEN,
                         "cannot create %s: %s", ctx->conf_dir,
                         strerror(errno));
    }
    cap = sizeof(head);
    for (i = 0; i < id->nkv; i++) {
        cap += strlen(id->kv[i].key) + strlen(id->kv[i].value) + 5;
    }
    buf = malloc(cap + 1);
    if (buf == NULL) {
        return kh_seterr(err, errlen, KH_EXIT_BROKEN, "out of memory");
    }
    len = (size_t)snprintf(buf, cap + 1, "%s", head);
    for (i = 0; i < id->nkv; i++) {
        len += (size_t)snprintf(buf + len, cap + 1 - len, "%s = %s\n",
                                id->kv[i].key, id->kv[i].value);
    }
    ok = kh_write_atomic(path, buf, len, 0640, err, errlen);
    free(buf);
    if (!ok) {
        return errno == EACCES || errno == EROFS || errno == EPERM
                   ? KH_EXIT_PERM : KH_EXIT_BROKEN;
    }
    return KH_EXIT_OK;
}

static int cmpstr(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int kh_identity_list(KH_CTX *ctx, KH_STRLIST *names)
{
    DIR *d = opendir(ctx->conf_dir);
    struct dirent *e;
    char name[KH_NAME_MAX + 1];

    if (d == NULL) {
        return errno == ENOENT;
    }
    while ((e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);

        if (n <= 5 || strcmp(e->d_name + n - 5, ".conf") != 0
            || n - 5 > KH_NAME_MAX) {
            continue;
        }
        memcpy(name, e->d_name, n - 5);
        name[n - 5] = '\0';
        if (kh_name_valid(name) && !kh_strlist_add(names, name)) {
            closedir(d);
            return 0;
        }
    }
    closedir(d);
    if (names->n > 1) {
        qsort(names->v, names->n, sizeof(char *), cmpstr);
    }
    return 1;
}
