/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: host-name and SAN handling (provision/names.c): the
 * SAN list parser, RFC 6125 matching and a certificate's names. Besides
 * "no crash": matching ignores the case of the host name, and a pattern
 * with no '*' matches nothing but itself (ignoring case and one trailing
 * dot).
 */
#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/x509.h>

#include "../../provision/keyhold.h"

static char *cstr(const uint8_t *p, size_t n)
{
    char *s = malloc(n + 1);

    if (s != NULL) {
        memcpy(s, p, n);
        s[n] = '\0';
    }
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    KH_STRLIST l = { 0 };
    char err[256], *a = NULL, *b = NULL, *up = NULL;
    const uint8_t *sep;
    size_t i, alen;

    if (size < 1 || size > 16384) {
        return 0;
    }
    switch (data[0] % 3) {
    case 0:
        a = cstr(data + 1, size - 1);
        if (a != NULL && kh_sans_parse(a, &l, err, sizeof(err))) {
            for (i = 0; i < l.n; i++) {
                if (strncmp(l.v[i], "dns:", 4) != 0
                    && strncmp(l.v[i], "ip:", 3) != 0) {
                    abort();
                }
            }
        }
        kh_strlist_free(&l);
        break;
    case 1:
        /* pattern NUL host */
        sep = memchr(data + 1, 0, size - 1);
        if (sep == NULL) {
            break;
        }
        alen = (size_t)(sep - (data + 1));
        a = cstr(data + 1, alen);
        b = cstr(sep + 1, size - 2 - alen);
        up = b != NULL ? strdup(b) : NULL;
        if (a == NULL || b == NULL || up == NULL) {
            break;
        }
        for (i = 0; up[i] != '\0'; i++) {
            up[i] = (char)toupper((unsigned char)up[i]);
        }
        if (kh_host_matches(a, b) != kh_host_matches(a, up)) {
            abort();
        }
        if (strchr(a, '*') == NULL && kh_host_matches(a, b)) {
            /* equal but for case and one trailing dot each */
            size_t la = strlen(a), lb = strlen(b);

            la -= la > 0 && a[la - 1] == '.';
            lb -= lb > 0 && b[lb - 1] == '.';
            if (la != lb || strncasecmp(a, b, la) != 0) {
                abort();
            }
        }
        break;
    default: {
        const unsigned char *p = data + 1;
        X509 *x = d2i_X509(NULL, &p, (long)(size - 1));

        if (x != NULL) {
            (void)kh_cert_has_name(x, "dns:localhost");
            (void)kh_cert_has_name(x, "dns:cam01.example.net");
            (void)kh_cert_has_name(x, "ip:127.0.0.1");
            (void)kh_cert_has_name(x, "ip:::1");
            X509_free(x);
        }
        break;
    }
    }
    free(a);
    free(b);
    free(up);
    return 0;
}
