/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: what an EST server sends back (provision/est_parse.c):
 * the certs-only PKCS#7 reply (base64 or DER, with or without a
 * content type), Retry-After values and EST base URLs (scenario 30:
 * garbage, huge bodies, zero certificates -> a named error, bounded
 * memory, no crash).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509.h>

#include "../../provision/est.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    STACK_OF(X509) *certs = NULL;
    char err[256], url[1024], *s;
    long secs = -1;

    if (size < 1) {
        return 0;
    }
    switch (data[0] % 5) {
    case 0:
    case 1:
    case 2: {
        static const char *types[] = { NULL, "application/pkcs7-mime",
                                       "text/html; charset=utf-8" };

        if (kh_est_parse_certs(data + 1, size - 1, types[data[0] % 5],
                               &certs, err, sizeof(err))) {
            if (certs == NULL || sk_X509_num(certs) < 1) {
                abort(); /* success means at least one certificate */
            }
            sk_X509_pop_free(certs, X509_free);
        } else if (certs != NULL || err[0] == '\0') {
            abort(); /* failure leaves nothing behind and says why */
        }
        break;
    }
    case 3:
        s = malloc(size);
        if (s == NULL) {
            break;
        }
        memcpy(s, data + 1, size - 1);
        s[size - 1] = '\0';
        if (kh_http_parse_retry_after(s, 1795000000, &secs) && secs < 0) {
            abort(); /* a wait is never negative */
        }
        free(s);
        break;
    default:
        s = malloc(size);
        if (s == NULL) {
            break;
        }
        memcpy(s, data + 1, size - 1);
        s[size - 1] = '\0';
        if (kh_est_base_url(s, url, sizeof(url), err, sizeof(err))
            && strlen(url) >= sizeof(url)) {
            abort();
        }
        free(s);
        break;
    }
    ERR_clear_error();
    return 0;
}
