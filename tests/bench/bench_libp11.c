/* SPDX-License-Identifier: MIT */
/* The peer: libp11's pkcs11 engine (Debian libengine-pkcs11-openssl), loaded
 * the way its documentation shows, keys by the same pkcs11: URI. */
#define OPENSSL_SUPPRESS_DEPRECATED 1
#include <stdio.h>
#include <openssl/engine.h>

#include "kh_bench.h"

static ENGINE *engine;

static ENGINE *engine_get(void)
{
    ENGINE *e;

    if (engine != NULL) {
        return engine;
    }
    ENGINE_load_dynamic();
    e = ENGINE_by_id("dynamic");
    if (e == NULL
        || !ENGINE_ctrl_cmd_string(e, "SO_PATH", khb_env.engine, 0)
        || !ENGINE_ctrl_cmd_string(e, "ID", "pkcs11", 0)
        || !ENGINE_ctrl_cmd_string(e, "LIST_ADD", "1", 0)
        || !ENGINE_ctrl_cmd_string(e, "LOAD", NULL, 0)
        || !ENGINE_ctrl_cmd_string(e, "MODULE_PATH", khb_env.module, 0)
        || !ENGINE_ctrl_cmd_string(e, "PIN", khb_env.pin, 0)
        || !ENGINE_init(e)) {
        khb_ossl_err("libp11 engine");
        ENGINE_free(e);
        return NULL;
    }
    engine = e;
    return engine;
}

EVP_PKEY *khb_libp11_load(const char *label)
{
    ENGINE *e = engine_get();
    EVP_PKEY *pk;

    if (e == NULL) {
        return NULL;
    }
    pk = ENGINE_load_private_key(e, khb_uri(0, label, 0), NULL, NULL);
    if (pk == NULL) {
        khb_ossl_err("ENGINE_load_private_key");
    }
    return pk;
}
