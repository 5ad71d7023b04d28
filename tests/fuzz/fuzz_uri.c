/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: the pkcs11: URI parser (engine/common/kh_uri.c).
 * Properties checked beyond "no crash, no leak": a parsed URI formats back
 * to a URI that parses to the same token, object and id, and the formatted
 * text never carries a pin-value.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kh_uri.h"

static int same_str(const char *a, const char *b)
{
    if (a == NULL || b == NULL) {
        return a == b;
    }
    return strcmp(a, b) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    KH_P11_URI *u = NULL, *v = NULL;
    char err[256], *s, *f;

    if (size > 8192) {
        return 0;
    }
    s = malloc(size + 1);
    if (s == NULL) {
        return 0;
    }
    memcpy(s, data, size);
    s[size] = '\0';
    (void)kh_is_p11_uri(s);
    if (kh_p11_uri_parse(s, &u, err, sizeof(err))) {
        f = kh_p11_uri_format(u, KH_URI_FMT_MODULE | KH_URI_FMT_PIN_SOURCE);
        if (f != NULL) {
            if (!kh_p11_uri_parse(f, &v, err, sizeof(err))) {
                abort(); /* our own output must parse */
            }
            if (v->pin_value != NULL) {
                abort(); /* a PIN must never be written back */
            }
            if (!same_str(u->token, v->token) || !same_str(u->object, v->object)
                || u->has_id != v->has_id || u->idlen != v->idlen
                || (u->idlen > 0 && memcmp(u->id, v->id, u->idlen) != 0)
                || u->type != v->type || u->slot_id != v->slot_id) {
                abort();
            }
            kh_p11_uri_free(v);
            free(f);
        }
        kh_p11_uri_free(u);
    } else if (strlen(err) >= sizeof(err)) {
        abort();
    }
    free(s);
    return 0;
}
