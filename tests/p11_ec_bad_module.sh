#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# A missing or wrong PKCS#11 module gives a clear error naming it and a
# clean exit: module-path to a file that does not exist, to a file that is
# not a library, to a library that is not a PKCS#11 module, and a provider
# configuration (openssl.cnf) pointing at a missing module.
. "$(dirname "$0")/lib.sh"
kh_need "$BUILD/keyhold.so"

kh_softhsm_token tok
kh_p11tool_keygen tok ec256 01 EC:prime256v1
load() { openssl pkey -in "$1" "${KH_PROV[@]}" -noout; }
key="pkcs11:token=tok;object=ec256;type=private"

kh_log "module-path that does not exist"
kh_must_fail_clean load "$key?module-path=/nonexistent/libnope.so&pin-value=1234"
kh_expect_keyhold "/nonexistent/libnope.so"

kh_log "module-path to a file that is not a library"
printf 'not a library\n' >"$T/notalib.so"
kh_must_fail_clean load "$key?module-path=$T/notalib.so&pin-value=1234"
kh_expect_keyhold "notalib.so"

kh_log "module-path to a library that is not a PKCS#11 module"
libz=$(ls /usr/lib/x86_64-linux-gnu/libz.so.1 2>/dev/null || true)
if [ -n "$libz" ]; then
    kh_must_fail_clean load "$key?module-path=$libz&pin-value=1234"
    kh_expect_keyhold "C_GetFunctionList"
fi

kh_log "provider configuration names a missing module"
KH_CNF_EXTRA="pkcs11-module-path = /nonexistent/libconf.so" kh_openssl_cnf last >/dev/null
kh_must_fail_clean env OPENSSL_CONF="$T/openssl.cnf" openssl pkey -in "$key?pin-value=1234" -noout
kh_expect_keyhold "/nonexistent/libconf.so"

kh_log "the URI's module-path wins over the configuration"
OPENSSL_CONF="$T/openssl.cnf" openssl pkey -in "$key?module-path=$SOFTHSM_MODULE&pin-value=1234" \
    -noout || kh_fail "module-path in the URI did not override the configuration"
kh_log "every bad module failed cleanly with a named reason"
