#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Scenario 12: the token forgot the login (CKR_USER_NOT_LOGGED_IN) once ->
# one re-login, the operation succeeds. The PIN source gone -> a clean error
# naming it (CLI exit 6), no login attempt; a running server that read its
# PIN at start goes on.
# timeout: 120
. "$(dirname "$0")/lib.sh"

kh_r_shim_server

# 1. Logged out behind the provider's back, found at C_Sign.
kh_r_recovers "$port" "a lost login" 'fail C_Sign CKR_USER_NOT_LOGGED_IN at=1 do=logout'
[ "$(kh_shim_count C_Login)" = 1 ] || kh_fail "want exactly one re-login, got $(kh_shim_count C_Login)"
kh_log "lost login at C_Sign: one re-login, handshake ok"

# 2. Found at C_SignInit.
kh_r_recovers "$port" "a lost login at C_SignInit" 'fail C_SignInit CKR_USER_NOT_LOGGED_IN at=1 do=logout'
[ "$(kh_shim_count C_Login)" = 1 ] || kh_fail "want exactly one re-login, got $(kh_shim_count C_Login)"

# 3. The token keeps saying "not logged in": one login, then a clean failure.
kh_r_refused "$port" "$srv" "although every C_Sign fails" \
    'fail C_Sign CKR_USER_NOT_LOGGED_IN'
logins=$(kh_shim_count C_Login)
[ "$logins" -le 1 ] || kh_fail "$logins logins in one failing handshake (login loop)"
kh_shim_set
kh_r_handshake "$port" -tls1_3 || { cat "$T/hs.out"; kh_fail "no handshake after the fault ended"; }

# 4. The PIN file is gone: a new process cannot log in, and says why --
#    the running server, which keeps the PIN it read at start, goes on.
if [ -x "$KEYHOLD" ]; then
    export KEYHOLD_CONF_DIR=$T/conf KEYHOLD_STATE_DIR=$T/state
    "$KEYHOLD" provision rec --token appl --module "$KH_SHIM" --alg ec-p256 --host cam1.example.com \
        --pin-file "$T/appl.pin" >/dev/null 2>&1 || kh_fail "provision"
fi
cp "$T/appl.pin" "$T/appl.pin.saved"
rm -f "$T/appl.pin"
kh_r_handshake "$port" -tls1_3 || { cat "$T/hs.out"; kh_fail "the running server needs the PIN file again"; }
kh_shim_log_reset
echo "data to sign" >"$T/data"
kh_must_fail_clean openssl pkeyutl -sign -inkey "$(kh_shim_uri appl srv)" -in "$T/data" \
    -rawin -digest sha256 -out "$T/sig" "${KH_PROV[@]}"
kh_expect_output "appl.pin"
[ "$(kh_shim_count C_Login)" = 0 ] || kh_fail "C_Login attempted without a PIN"
[ "$(kh_shim_count C_Sign)" = 0 ] || kh_fail "C_Sign attempted without a login"
if [ -x "$KEYHOLD" ]; then
    kh_shim_log_reset
    kh_must_fail_clean 6 -- "$KEYHOLD" csr rec -o "$T/x.csr"
    kh_expect_output "appl.pin"
    [ "$(kh_shim_count C_Login)" = 0 ] || kh_fail "CLI: C_Login attempted without a PIN"
fi
kh_log "PIN source gone: clean error naming it, no login; the running server goes on"
kh_log "scenario 12 ok"
