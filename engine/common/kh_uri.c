/* SPDX-License-Identifier: MIT */
/*
 * RFC 7512 pkcs11: URI parsing and formatting. One parser for the provider,
 * the CLI and the fuzzer: strict about what it does not understand (an
 * unknown attribute or a bad percent-escape is an error that names it),
 * lenient only where peers are (libp11 writes pin-value in the path).
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#include "kh_errbuf.h"
#include "kh_uri.h"

#define URI_MAX 8192

int kh_is_p11_uri(const char *s)
{
    return s != NULL && strncasecmp(s, "pkcs11:", 7) == 0;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

/*
 * Percent-decodes [s, s+n) into a new buffer (NUL-terminated; *outlen
 * excludes the NUL). The attribute name is only used for the message.
 */
static unsigned char *pct_decode(const char *s, size_t n, size_t *outlen,
                                 const char *attr, char *err, size_t errlen)
{
    unsigned char *out = malloc(n + 1);
    size_t i, o = 0;

    if (out == NULL) {
        kh_errbuf_set(err, errlen, "out of memory");
        return NULL;
    }
    for (i = 0; i < n; i++) {
        if (s[i] == '%') {
            int hi, lo;

            if (i + 2 >= n || (hi = hexval((unsigned char)s[i + 1])) < 0
                || (lo = hexval((unsigned char)s[i + 2])) < 0) {
                kh_errbuf_set(err, errlen,
                       "bad percent-encoding in attribute '%s' (a '%%' must be "
                       "followed by two hex digits)", attr);
                free(out);
                return NULL;
            }
            out[o++] = (unsigned char)(hi << 4 | lo);
            i += 2;
        } else {
            out[o++] = (unsigned char)s[i];
        }
    }
    out[o] = '\0';
    *outlen = o;
    return out;
}

enum attr_kind { A_STR, A_ID, A_TYPE, A_SLOTID, A_SECRET };

struct attr_def {
    const char *name;
    enum attr_kind kind;
    size_t off;          /* offset of the char* (or special) field */
    int query;           /* 1: a query attribute (also tolerated in path) */
};

#define OFF(f) offsetof(KH_P11_URI, f)

static const struct attr_def attrs[] = {
    { "token", A_STR, OFF(token), 0 },
    { "manufacturer", A_STR, OFF(manufacturer), 0 },
    { "model", A_STR, OFF(model), 0 },
    { "serial", A_STR, OFF(serial), 0 },
    { "slot-description", A_STR, OFF(slot_description), 0 },
    { "slot-manufacturer", A_STR, OFF(slot_manufacturer), 0 },
    { "slot-id", A_SLOTID, 0, 0 },
    { "library-description", A_STR, OFF(library_description), 0 },
    { "library-manufacturer", A_STR, OFF(library_manufacturer), 0 },
    { "library-version", A_STR, OFF(library_version), 0 },
    { "object", A_STR, OFF(object), 0 },
    { "id", A_ID, 0, 0 },
    { "type", A_TYPE, 0, 0 },
    { "module-path", A_STR, OFF(module_path), 1 },
    { "module-name", A_STR, OFF(module_name), 1 },
    { "pin-source", A_STR, OFF(pin_source), 1 },
    { "pin-value", A_SECRET, OFF(pin_value), 1 },
};

static const struct {
    const char *name;
    enum kh_uri_type type;
} types[] = {
    { "private", KH_URI_TYPE_PRIVATE },
    { "public", KH_URI_TYPE_PUBLIC },
    { "cert", KH_URI_TYPE_CERT },
    { "secret-key", KH_URI_TYPE_SECRET_KEY },
    { "data", KH_URI_TYPE_DATA },
};

static void free_secret(char *s)
{
    if (s != NULL) {
        OPENSSL_cleanse(s, strlen(s));
        free(s);
    }
}

void kh_p11_uri_free(KH_P11_URI *u)
{
    size_t i;

    if (u == NULL) {
        return;
    }
    for (i = 0; i < sizeof(attrs) / sizeof(attrs[0]); i++) {
        char **field;

        if (attrs[i].kind != A_STR && attrs[i].kind != A_SECRET) {
            continue;
        }
        field = (char **)((char *)u + attrs[i].off);
        if (attrs[i].kind == A_SECRET) {
            free_secret(*field);
        } else {
            free(*field);
        }
    }
    free(u->id);
    free(u);
}

/* Handles one "name=value" (value still encoded) into u. */
static int set_attr(KH_P11_URI *u, const char *a, size_t alen, int in_query,
                    char *err, size_t errlen)
{
    const char *eq = memchr(a, '=', alen);
    char name[32];
    size_t nlen, vlen, declen = 0, i;
    const struct attr_def *def = NULL;
    unsigned char *val;
    int seen_slot = u->slot_id != -1;

    if (eq == NULL) {
        nlen = alen < sizeof(name) - 1 ? alen : sizeof(name) - 1;
        memcpy(name, a, nlen);
        name[nlen] = '\0';
        kh_errbuf_set(err, errlen, "attribute '%s' has no '=value'", name);
        return 0;
    }
    nlen = (size_t)(eq - a);
    if (nlen == 0 || nlen >= sizeof(name)) {
        kh_errbuf_set(err, errlen, "empty or overlong attribute name");
        return 0;
    }
    memcpy(name, a, nlen);
    name[nlen] = '\0';
    vlen = alen - nlen - 1;

    for (i = 0; i < sizeof(attrs) / sizeof(attrs[0]); i++) {
        if (strcmp(attrs[i].name, name) == 0) {
            def = &attrs[i];
            break;
        }
    }
    if (def == NULL) {
        if (strncmp(name, "x-", 2) == 0) {
            return 1; /* vendor attribute: RFC 7512 lets us ignore it */
        }
        kh_errbuf_set(err, errlen, "unknown %s attribute '%s'",
               in_query ? "query" : "path", name);
        return 0;
    }
    if (in_query && !def->query) {
        kh_errbuf_set(err, errlen, "'%s' is a path attribute; it must come before '?'",
               name);
        return 0;
    }
    val = pct_decode(eq + 1, vlen, &declen, name, err, errlen);
    if (val == NULL) {
        return 0;
    }
    if (def->kind != A_ID && memchr(val, '\0', declen) != NULL) {
        kh_errbuf_set(err, errlen, "attribute '%s' contains a NUL byte", name);
        goto fail;
    }

    switch (def->kind) {
    case A_STR:
    case A_SECRET: {
        char **field = (char **)((char *)u + def->off);

        if (*field != NULL) {
            kh_errbuf_set(err, errlen, "attribute '%s' given twice", name);
            goto fail;
        }
        *field = (char *)val;
        return 1;
    }
    case A_ID:
        if (u->has_id) {
            kh_errbuf_set(err, errlen, "attribute 'id' given twice");
            goto fail;
        }
        u->id = val;
        u->idlen = declen;
        u->has_id = 1;
        return 1;
    case A_TYPE:
        if (u->type != KH_URI_TYPE_ANY) {
            kh_errbuf_set(err, errlen, "attribute 'type' given twice");
            goto fail;
        }
        for (i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
            if (strcmp((char *)val, types[i].name) == 0) {
                u->type = types[i].type;
                free(val);
                return 1;
            }
        }
        kh_errbuf_set(err, errlen,
               "unknown object type '%.32s' (use private, public, cert, "
               "secret-key or data)", (char *)val);
        goto fail;
    case A_SLOTID: {
        char *end = NULL;
        long v;

        if (seen_slot) {
            kh_errbuf_set(err, errlen, "attribute 'slot-id' given twice");
            goto fail;
        }
        errno = 0;
        v = strtol((char *)val, &end, 10);
        if (declen == 0 || *end != '\0' || errno != 0 || v < 0) {
            kh_errbuf_set(err, errlen, "slot-id '%.32s' is not a decimal number",
                   (char *)val);
            goto fail;
        }
        u->slot_id = v;
        free(val);
        return 1;
    }
    }
fail:
    if (def->kind == A_SECRET) {
        OPENSSL_cleanse(val, declen);
    }
    free(val);
    return 0;
}

static int parse_list(KH_P11_URI *u, const char *s, size_t n, char sep,
                      int in_query, char *err, size_t errlen)
{
    size_t start = 0, i;

    for (i = 0; i <= n; i++) {
        if (i == n || s[i] == sep) {
            if (i > start
                && !set_attr(u, s + start, i - start, in_query, err, errlen)) {
                return 0;
            }
            start = i + 1;
        }
    }
    return 1;
}

int kh_p11_uri_parse(const char *uri, KH_P11_URI **out, char *err,
                     size_t errlen)
{
    KH_P11_URI *u;
    const char *p, *q;
    size_t len;

    *out = NULL;
    if (uri == NULL || !kh_is_p11_uri(uri)) {
        kh_errbuf_set(err, errlen, "not a pkcs11: URI (it must start with 'pkcs11:')");
        return 0;
    }
    len = strnlen(uri, URI_MAX + 1);
    if (len > URI_MAX) {
        kh_errbuf_set(err, errlen, "pkcs11: URI longer than %d bytes", URI_MAX);
        return 0;
    }
    for (p = uri; *p != '\0'; p++) {
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f) {
            kh_errbuf_set(err, errlen,
                   "pkcs11: URI contains a space or control/non-ASCII "
                   "character at offset %zu (percent-encode it)",
                   (size_t)(p - uri));
            return 0;
        }
    }
    u = calloc(1, sizeof(*u));
    if (u == NULL) {
        kh_errbuf_set(err, errlen, "out of memory");
        return 0;
    }
    u->slot_id = -1;
    p = uri + 7;
    q = strchr(p, '?');
    if (!parse_list(u, p, q != NULL ? (size_t)(q - p) : strlen(p), ';', 0,
                    err, errlen)) {
        goto fail;
    }
    if (q != NULL && !parse_list(u, q + 1, strlen(q + 1), '&', 1, err,
                                 errlen)) {
        goto fail;
    }
    *out = u;
    return 1;
fail:
    kh_p11_uri_free(u);
    return 0;
}

/* A growable string for formatting. */
struct sbuf {
    char *p;
    size_t len, cap;
    int oom;
};

static void sb_putc(struct sbuf *b, char c)
{
    if (b->oom) {
        return;
    }
    if (b->len + 2 > b->cap) {
        size_t ncap = b->cap ? b->cap * 2 : 128;
        char *np = realloc(b->p, ncap);

        if (np == NULL) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = ncap;
    }
    b->p[b->len++] = c;
    b->p[b->len] = '\0';
}

static void sb_puts(struct sbuf *b, const char *s)
{
    while (*s != '\0') {
        sb_putc(b, *s++);
    }
}

/* RFC 7512 pchar-safe characters; '/' and '?' are also fine in a query. */
static int safe_char(unsigned char c, int in_query)
{
    if (isalnum(c) || strchr("-._~:[]@!$'()*+,=", c) != NULL) {
        return c != '\0';
    }
    if (in_query && (c == '/' || c == '?' || c == '|')) {
        return 1;
    }
    return 0;
}

static void sb_put_enc(struct sbuf *b, const unsigned char *v, size_t n,
                       int in_query, int force_hex)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t i;

    for (i = 0; i < n; i++) {
        if (!force_hex && safe_char(v[i], in_query)) {
            sb_putc(b, (char)v[i]);
        } else {
            sb_putc(b, '%');
            sb_putc(b, hex[v[i] >> 4]);
            sb_putc(b, hex[v[i] & 0xf]);
        }
    }
}

static void sb_attr(struct sbuf *b, int *first, char sep, const char *name,
                    const unsigned char *v, size_t n, int in_query,
                    int force_hex)
{
    if (!*first) {
        sb_putc(b, sep);
    }
    *first = 0;
    sb_puts(b, name);
    sb_putc(b, '=');
    sb_put_enc(b, v, n, in_query, force_hex);
}

char *kh_p11_uri_format(const KH_P11_URI *u, unsigned int flags)
{
    struct sbuf b = { NULL, 0, 0, 0 };
    int first = 1;
    size_t i;
    char num[32];

    sb_puts(&b, "pkcs11:");
    for (i = 0; i < sizeof(attrs) / sizeof(attrs[0]); i++) {
        const struct attr_def *d = &attrs[i];

        if (d->query) {
            continue;
        }
        if (d->kind == A_STR) {
            const char *v = *(char *const *)((const char *)u + d->off);

            if (v != NULL) {
                sb_attr(&b, &first, ';', d->name, (const unsigned char *)v,
                        strlen(v), 0, 0);
            }
        } else if (d->kind == A_ID && u->has_id) {
            sb_attr(&b, &first, ';', "id", u->id, u->idlen, 0, 1);
        } else if (d->kind == A_TYPE && u->type != KH_URI_TYPE_ANY) {
            size_t t;

            for (t = 0; t < sizeof(types) / sizeof(types[0]); t++) {
                if (types[t].type == u->type) {
                    sb_attr(&b, &first, ';', "type",
                            (const unsigned char *)types[t].name,
                            strlen(types[t].name), 0, 0);
                }
            }
        } else if (d->kind == A_SLOTID && u->slot_id >= 0) {
            snprintf(num, sizeof(num), "%ld", u->slot_id);
            sb_attr(&b, &first, ';', "slot-id", (unsigned char *)num,
                    strlen(num), 0, 0);
        }
    }
    first = 1;
    if ((flags & KH_URI_FMT_MODULE) && u->module_path != NULL) {
        sb_putc(&b, '?');
        sb_attr(&b, &first, '&', "module-path",
                (const unsigned char *)u->module_path, strlen(u->module_path),
                1, 0);
    }
    if ((flags & KH_URI_FMT_MODULE) && u->module_name != NULL) {
        if (first) {
            sb_putc(&b, '?');
        }
        sb_attr(&b, &first, '&', "module-name",
                (const unsigned char *)u->module_name, strlen(u->module_name),
                1, 0);
    }
    if ((flags & KH_URI_FMT_PIN_SOURCE) && u->pin_source != NULL) {
        if (first) {
            sb_putc(&b, '?');
        }
        sb_attr(&b, &first, '&', "pin-source",
                (const unsigned char *)u->pin_source, strlen(u->pin_source), 1,
                0);
    }
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p;
}
