/* SPDX-License-Identifier: MIT */
/*
 * The network-free part of ACME (acme.h): just enough JSON to read ACME's
 * resources (objects, arrays, strings; numbers and literals skipped),
 * base64url, and problem documents. No allocation, bounded nesting; fuzzed.
 */
#include <stdio.h>
#include <string.h>

#include "acme.h"

#define JSON_MAX_DEPTH 32

static const char *ws(const char *p, const char *e)
{
    while (p < e && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')) {
        p++;
    }
    return p;
}

/* p at '"': returns the position after the closing quote, or NULL. */
static const char *skip_string(const char *p, const char *e)
{
    for (p++; p < e; p++) {
        if (*p == '\\') {
            p++;
            continue;
        }
        if (*p == '"') {
            return p + 1;
        }
        if ((unsigned char)*p < 0x20) {
            return NULL;
        }
    }
    return NULL;
}

/* Skips one value starting at p (no leading blanks); NULL when malformed. */
static const char *skip_value(const char *p, const char *e)
{
    const char *s = p;
    int depth = 0;

    if (p >= e) {
        return NULL;
    }
    if (*p == '"') {
        return skip_string(p, e);
    }
    if (*p == '{' || *p == '[') {
        /* bracket matching only: members are checked when they are read */
        while (p < e) {
            if (*p == '"') {
                p = skip_string(p, e);
                if (p == NULL) {
                    return NULL;
                }
                continue;
            }
            if (*p == '{' || *p == '[') {
                if (++depth > JSON_MAX_DEPTH) {
                    return NULL;
                }
            } else if (*p == '}' || *p == ']') {
                if (--depth == 0) {
                    return p + 1;
                }
            }
            p++;
        }
        return NULL;
    }
    while (p < e && strchr(",}] \t\r\n", *p) == NULL && *p != '\0') {
        p++;
    }
    return p > s ? p : NULL;
}

int kh_acme_json_get(KH_JSPAN obj, const char *key, KH_JSPAN *out)
{
    const char *p = obj.p, *e = obj.p + obj.n, *k, *v;
    size_t kl = strlen(key);

    if (p == NULL) {
        return 0;
    }
    p = ws(p, e);
    if (p >= e || *p != '{') {
        return 0;
    }
    p = ws(p + 1, e);
    if (p < e && *p == '}') {
        return 0;
    }
    while (p < e) {
        if (*p != '"') {
            return 0;
        }
        k = p + 1;
        p = skip_string(p, e);
        if (p == NULL) {
            return 0;
        }
        p = ws(p, e);
        if (p >= e || *p != ':') {
            return 0;
        }
        v = ws(p + 1, e);
        p = skip_value(v, e);
        if (p == NULL) {
            return 0;
        }
        /* key bytes are k .. closing quote; ACME keys carry no escapes */
        if (strncmp(k, key, kl) == 0 && k + kl < e && k[kl] == '"') {
            out->p = v;
            out->n = (size_t)(p - v);
            return 1;
        }
        p = ws(p, e);
        if (p < e && *p == ',') {
            p = ws(p + 1, e);
            continue;
        }
        return 0;
    }
    return 0;
}

int kh_acme_json_next(KH_JSPAN arr, size_t *pos, KH_JSPAN *elem)
{
    const char *p, *e = arr.p + arr.n, *v;

    if (arr.p == NULL) {
        return 0;
    }
    if (*pos == 0) {
        p = ws(arr.p, e);
        if (p >= e || *p != '[') {
            return 0;
        }
        p = ws(p + 1, e);
    } else {
        if (*pos > arr.n) {
            return 0;
        }
        p = ws(arr.p + *pos, e);
        if (p >= e || *p != ',') {
            return 0;
        }
        p = ws(p + 1, e);
    }
    if (p >= e || *p == ']') {
        return 0;
    }
    v = p;
    p = skip_value(v, e);
    if (p == NULL) {
        return 0;
    }
    elem->p = v;
    elem->n = (size_t)(p - v);
    *pos = (size_t)(p - arr.p);
    return 1;
}

static int hexval(char c)
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

int kh_acme_json_str(KH_JSPAN v, char *out, size_t outlen)
{
    const char *p = v.p, *e = v.p + v.n;
    size_t o = 0;
    int i, h, u;
    char c;

    if (outlen == 0 || p == NULL || v.n < 2 || *p != '"' || e[-1] != '"') {
        return 0;
    }
    for (p++; p < e - 1; p++) {
        c = *p;
        if (c == '\\') {
            if (++p >= e - 1) {
                return 0;
            }
            switch (*p) {
            case 'n': c = '\n'; break;
            case 't': c = '\t'; break;
            case 'r': c = '\r'; break;
            case 'b': c = '\b'; break;
            case 'f': c = '\f'; break;
            case 'u':
                if (e - 1 - p < 5) {
                    return 0;
                }
                for (u = 0, i = 1; i <= 4; i++) {
                    h = hexval(p[i]);
                    if (h < 0) {
                        return 0;
                    }
                    u = u * 16 + h;
                }
                p += 4;
                c = u >= 0x20 && u < 0x7f ? (char)u : '?';
                break;
            default: c = *p; break;
            }
        }
        if (o + 1 >= outlen) {
            return 0;
        }
        out[o++] = c;
    }
    out[o] = '\0';
    return 1;
}

int kh_acme_json_getstr(KH_JSPAN obj, const char *key, char *out,
                        size_t outlen)
{
    KH_JSPAN v;

    if (outlen > 0) {
        out[0] = '\0';
    }
    return kh_acme_json_get(obj, key, &v) && kh_acme_json_str(v, out, outlen);
}

size_t kh_acme_b64url(const unsigned char *in, size_t n, char *out,
                      size_t outlen)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnop"
                              "qrstuvwxyz0123456789-_";
    size_t i, o = 0;
    unsigned long w;

    if (outlen < (n + 2) / 3 * 4 + 1) {
        return 0;
    }
    for (i = 0; i + 2 < n; i += 3) {
        w = (unsigned long)in[i] << 16 | (unsigned long)in[i + 1] << 8
            | in[i + 2];
        out[o++] = tab[w >> 18 & 63];
        out[o++] = tab[w >> 12 & 63];
        out[o++] = tab[w >> 6 & 63];
        out[o++] = tab[w & 63];
    }
    if (n - i == 1) {
        w = (unsigned long)in[i] << 16;
        out[o++] = tab[w >> 18 & 63];
        out[o++] = tab[w >> 12 & 63];
    } else if (n - i == 2) {
        w = (unsigned long)in[i] << 16 | (unsigned long)in[i + 1] << 8;
        out[o++] = tab[w >> 18 & 63];
        out[o++] = tab[w >> 12 & 63];
        out[o++] = tab[w >> 6 & 63];
    }
    out[o] = '\0';
    return o;
}

static int b64val(char c)
{
    if (c >= 'A' && c <= 'Z') {
        return c - 'A';
    }
    if (c >= 'a' && c <= 'z') {
        return c - 'a' + 26;
    }
    if (c >= '0' && c <= '9') {
        return c - '0' + 52;
    }
    if (c == '-' || c == '+') {
        return 62;
    }
    if (c == '_' || c == '/') {
        return 63;
    }
    return -1;
}

long kh_acme_b64url_decode(const char *in, unsigned char *out, size_t outlen)
{
    unsigned long w = 0;
    size_t o = 0;
    int bits = 0, v;

    for (; *in != '\0' && *in != '='; in++) {
        if (*in == '\n' || *in == '\r' || *in == ' ') {
            continue;
        }
        v = b64val(*in);
        if (v < 0) {
            return -1;
        }
        w = (w << 6 | (unsigned long)v) & 0xffffff;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o >= outlen) {
                return -1;
            }
            out[o++] = (unsigned char)(w >> bits);
        }
    }
    return (long)o;
}

int kh_acme_problem(const char *body, size_t len, char *out, size_t outlen,
                    char *type, size_t typelen)
{
    static const char pfx[] = "urn:ietf:params:acme:error:";
    KH_JSPAN doc = { body, len }, subs, sub, idv;
    char t[160], detail[512], sd[256], ident[128];
    size_t pos = 0, o;
    int n = 0;

    if (body == NULL || !kh_acme_json_getstr(doc, "type", t, sizeof(t))) {
        return 0;
    }
    if (!kh_acme_json_getstr(doc, "detail", detail, sizeof(detail))) {
        detail[0] = '\0';
    }
    if (type != NULL && typelen > 0) {
        snprintf(type, typelen, "%s", strncmp(t, pfx, sizeof(pfx) - 1) == 0
                 ? t + sizeof(pfx) - 1 : t);
    }
    snprintf(out, outlen, "%s%s%s", t, detail[0] ? ": " : "", detail);
    if (kh_acme_json_get(doc, "subproblems", &subs)) {
        while (n < 4 && kh_acme_json_next(subs, &pos, &sub)) {
            ident[0] = '\0';
            if (kh_acme_json_get(sub, "identifier", &idv)) {
                kh_acme_json_getstr(idv, "value", ident, sizeof(ident));
            }
            if (!kh_acme_json_getstr(sub, "detail", sd, sizeof(sd))) {
                kh_acme_json_getstr(sub, "type", sd, sizeof(sd));
            }
            o = strlen(out);
            snprintf(out + o, outlen - o, "%s%s%s%s", n == 0 ? " (" : "; ",
                     ident, ident[0] ? ": " : "", sd);
            n++;
        }
        if (n > 0) {
            o = strlen(out);
            snprintf(out + o, outlen - o, ")");
        }
    }
    return 1;
}
