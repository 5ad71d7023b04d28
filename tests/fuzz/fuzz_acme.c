/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: what an ACME server sends back (provision/acme_parse.c):
 * the bounded JSON walker on orders, authorizations and challenges,
 * base64url, and RFC 7807 problem documents. Besides "no crash": every span
 * the walker hands out lies inside the input, and base64url decodes what it
 * encodes.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../provision/acme.h"

static const uint8_t *lo, *hi;

static void inside(KH_JSPAN s)
{
    if (s.n > 0 && ((const uint8_t *)s.p < lo
                    || (const uint8_t *)s.p + s.n > hi)) {
        abort();
    }
}

static void walk(KH_JSPAN obj, int depth)
{
    static const char *keys[] = { "status", "challenges", "identifier",
                                  "identifiers", "authorizations", "finalize",
                                  "certificate", "url", "token", "type",
                                  "value", "detail", "subproblems", "error" };
    char buf[512];
    size_t i, pos;
    KH_JSPAN v, e;
    int n;

    if (depth > 4) {
        return;
    }
    for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        if (!kh_acme_json_get(obj, keys[i], &v)) {
            continue;
        }
        inside(v);
        if (kh_acme_json_str(v, buf, sizeof(buf))
            && strlen(buf) >= sizeof(buf)) {
            abort();
        }
        (void)kh_acme_json_getstr(obj, keys[i], buf, sizeof(buf));
        pos = 0;
        for (n = 0; n < 1000 && kh_acme_json_next(v, &pos, &e); n++) {
            inside(e);
            walk(e, depth + 1);
        }
        walk(v, depth + 1);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char line[512], type[64], *s;
    unsigned char *dec, *again;
    char *enc;
    long m, m2;
    KH_JSPAN all;

    if (size < 1 || size > 65536) {
        return 0;
    }
    lo = data + 1;
    hi = data + size;
    switch (data[0] % 3) {
    case 0: {
        /*
         * A NUL after the span, as a received body has: libFuzzer's own
         * strncmp hook reads both strings eagerly and would fault past the
         * end of its buffer even where strncmp itself stops in time.
         */
        char *copy = malloc(size);

        if (copy == NULL) {
            break;
        }
        memcpy(copy, data + 1, size - 1);
        copy[size - 1] = '\0';
        lo = (const uint8_t *)copy;
        hi = (const uint8_t *)copy + size - 1;
        all.p = copy;
        all.n = size - 1;
        walk(all, 0);
        free(copy);
        break;
    }
    case 1:
        s = malloc(size);
        dec = malloc(size);
        again = malloc(size);
        enc = malloc(2 * size + 8);
        if (s == NULL || dec == NULL || again == NULL || enc == NULL) {
            goto b64_end;
        }
        memcpy(s, data + 1, size - 1);
        s[size - 1] = '\0';
        m = kh_acme_b64url_decode(s, dec, size);
        if (m >= 0) {
            if ((size_t)m > size) {
                abort();
            }
            if (kh_acme_b64url(dec, (size_t)m, enc, 2 * size + 8) == 0
                && m > 0) {
                abort();
            }
            m2 = kh_acme_b64url_decode(enc, again, size);
            if (m2 != m || memcmp(dec, again, (size_t)m) != 0) {
                abort();
            }
        }
    b64_end:
        free(s);
        free(dec);
        free(again);
        free(enc);
        break;
    default:
        if (kh_acme_problem((const char *)data + 1, size - 1, line,
                            sizeof(line), type, sizeof(type))) {
            if (memchr(line, '\0', sizeof(line)) == NULL
                || memchr(type, '\0', sizeof(type)) == NULL) {
                abort();
            }
        }
        break;
    }
    return 0;
}
