#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Scenario 13: a URI that matches two keys, or two tokens -> an error that
# lists the candidates; no login and no signature happen.
# timeout: 120
. "$(dirname "$0")/lib.sh"
kh_need "$BUILD/keyhold.so" "$KH_SHIM"

kh_softhsm_token tokA
kh_softhsm_token tokB
# Two keys with the same label in one token (ids 0a and 0b), and a key with
# the same label in the other token too.
kh_p11tool_keygen tokA twin 0a EC:prime256v1
kh_p11tool_keygen tokA twin 0b EC:prime256v1
kh_p11tool_keygen tokB solo 0c EC:prime256v1
kh_shim_setup
echo "data to sign" >"$T/data"

sign() {
    openssl pkeyutl -sign -inkey "$1" -in "$T/data" -rawin -digest sha256 \
        -out "$T/sig" "${KH_PROV[@]}"
}

# 1. Two keys in one token.
kh_shim_log_reset
kh_must_fail_clean sign "pkcs11:token=tokA;object=twin;type=private?pin-source=file:$T/tokA.pin&module-path=$KH_SHIM"
grep -qiE '(%0a|0a)' "$T/must_fail.out" && grep -qiE '(%0b|0b)' "$T/must_fail.out" \
    || kh_fail "the error does not list both candidate keys (ids 0a and 0b)"
[ "$(kh_shim_count C_Login)" = 0 ] || kh_fail "C_Login happened for an ambiguous URI"
[ "$(kh_shim_count C_SignInit)" = 0 ] || kh_fail "a signature was started for an ambiguous URI"
kh_log "two keys: candidates listed, no login, no signature"

# 2. Two tokens: a URI naming no token, and keys named alike in both.
kh_p11tool_keygen tokB twin 0d EC:prime256v1
kh_shim_log_reset
kh_must_fail_clean sign "pkcs11:object=twin;type=private?pin-source=file:$T/tokA.pin&module-path=$KH_SHIM"
kh_expect_output tokA
kh_expect_output tokB
[ "$(kh_shim_count C_Login)" = 0 ] || kh_fail "C_Login happened for a URI matching two tokens"
[ "$(kh_shim_count C_SignInit)" = 0 ] || kh_fail "a signature was started for a URI matching two tokens"
kh_log "two tokens: candidates listed, no login, no signature"

# 3. Disambiguated, the same keys work.
kh_shim_log_reset
sign "pkcs11:token=tokA;object=twin;id=%0b;type=private?pin-source=file:$T/tokA.pin&module-path=$KH_SHIM" \
    || kh_fail "signing with an exact URI failed"
[ "$(kh_shim_count C_Login)" = 1 ] || kh_fail "want one login for an exact URI"
kh_log "scenario 13 ok"
