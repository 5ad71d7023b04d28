/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: the identity config parser (provision/config.c,
 * kh_config_parse_buf) and what the CLI derives from a parsed config: the
 * names the certificate must carry. No crash, no leak, bounded work.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../provision/keyhold.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    KH_IDENTITY *id;
    KH_STRLIST names = { 0 }, hosts = { 0 };
    char err[256];
    size_t i;

    if (size > 65536) {
        return 0;
    }
    id = kh_identity_new("fuzz");
    if (id == NULL) {
        return 0;
    }
    if (kh_config_parse_buf((const char *)data, size, id, err, sizeof(err))) {
        /* Every parsed entry is a NUL-terminated key and value. */
        for (i = 0; i < id->nkv; i++) {
            if (id->kv[i].key == NULL || id->kv[i].value == NULL) {
                abort();
            }
            (void)strlen(id->kv[i].key);
            (void)strlen(id->kv[i].value);
        }
        (void)kh_id_get(id, "key-uri");
        (void)kh_id_get_bool(id, "allow-decrypt", 0);
        kh_id_get_all(id, "host", &hosts);
        if (kh_identity_names(id, &names) && hosts.n > 0
            && names.n > 0 && strncmp(names.v[0], "dns:", 4) != 0
            && strncmp(names.v[0], "ip:", 3) != 0) {
            abort(); /* the host name is always typed */
        }
        kh_strlist_free(&names);
        kh_strlist_free(&hosts);
    } else if (memchr(err, '\0', sizeof(err)) == NULL) {
        abort();
    }
    kh_identity_free(id);
    return 0;
}
