#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Scenario 6: a wrong PIN costs exactly one C_Login per run and is named
# ("PIN incorrect"); a token on its final PIN try, or locked, gets no login
# attempt at all and a clear message. Provider side, through openssl.
# timeout: 120
. "$(dirname "$0")/lib.sh"
kh_need "$BUILD/keyhold.so" "$KH_SHIM"

kh_r_token_key_cert
kh_shim_setup
echo "data to sign" >"$T/data"
(umask 077; printf '9999' >"$T/wrong.pin")
good="pkcs11:token=appl;object=srv;type=private?pin-source=file:$T/appl.pin&module-path=$KH_SHIM"
bad="pkcs11:token=appl;object=srv;type=private?pin-source=file:$T/wrong.pin&module-path=$KH_SHIM"
sign() {
    openssl pkeyutl -sign -inkey "$1" -in "$T/data" -rawin -digest sha256 \
        -out "$T/sig" "${KH_PROV[@]}"
}
# The token reports FLAGS: signing with the right PIN is refused before any
# C_Login, with a message matching REGEX (case-insensitive).
#   no_login FLAGS REGEX WHAT
no_login() {
    kh_shim_set "tokenflags $1"
    kh_shim_log_reset
    kh_must_fail_clean sign "$good"
    grep -qiE "$2" "$T/must_fail.out" || kh_fail "no clear '$3' message"
    [ "$(kh_shim_count C_Login)" = 0 ] || kh_fail "C_Login attempted on $3"
}

# 1. Wrong PIN: one C_Login, named.
kh_shim_log_reset
kh_must_fail_clean sign "$bad"
grep -qiE 'PIN_INCORRECT|PIN incorrect' "$T/must_fail.out" || kh_fail "the error does not say the PIN is incorrect"
kh_no_secrets "$T/must_fail.out" 9999 1234
[ "$(kh_shim_count C_Login)" = 1 ] || kh_fail "$(kh_shim_count C_Login) C_Login calls for one wrong PIN (want 1)"
[ "$(kh_shim_count C_Login CKR_PIN_INCORRECT)" = 1 ] || kh_fail "the one C_Login did not fail with CKR_PIN_INCORRECT"
kh_log "wrong PIN: exactly one C_Login, named"

# 2. Final try: refuse before C_Login, even with the right PIN.
no_login 'CKF_USER_PIN_FINAL_TRY CKF_USER_PIN_COUNT_LOW' 'final|last' "the token's final PIN try"
kh_log "final try: no login, clear message"

# 3. Locked: refuse before C_Login.
no_login CKF_USER_PIN_LOCKED 'lock' "a locked token"

# 4. Count low (not yet final): login allowed, signing works.
kh_shim_set 'tokenflags CKF_USER_PIN_COUNT_LOW'
kh_shim_log_reset
sign "$good" || kh_fail "signing refused although the PIN count is only low"
[ "$(kh_shim_count C_Login)" = 1 ] || kh_fail "want one login"

# 5. A server with a wrong PIN does not start, and tries once.
kh_shim_set
kh_shim_log_reset
port=$(kh_r_port)
kh_must_fail_clean timeout 60 openssl s_server -accept "127.0.0.1:$port" -naccept 1 -www \
    -key "$bad" -cert "$T/srv.pem" "${KH_PROV[@]}"
[ "$(kh_shim_count C_Login)" = 1 ] || kh_fail "s_server: $(kh_shim_count C_Login) C_Login calls with a wrong PIN"

# 6. The CLI: a wrong PIN is exit 6 after exactly one C_Login; on the
#    final try there is no login at all, and the message says why.
if [ -x "$KEYHOLD" ]; then
    export KEYHOLD_CONF_DIR=$T/conf KEYHOLD_STATE_DIR=$T/state
    kh_shim_set
    "$KEYHOLD" provision rec --token appl --module "$KH_SHIM" --alg ec-p256 --host cam1.example.com \
        --pin-file "$T/appl.pin" >/dev/null 2>&1 || kh_fail "provision"
    sed -i "s|^pin-file = .*|pin-file = $T/wrong.pin|" "$KEYHOLD_CONF_DIR/rec.conf"
    kh_shim_log_reset
    kh_must_fail_clean 6 -- "$KEYHOLD" csr rec -o "$T/x.csr"
    kh_expect_output "PIN_INCORRECT"
    kh_no_secrets "$T/must_fail.out" 9999 1234
    [ "$(kh_shim_count C_Login)" = 1 ] || kh_fail "CLI: $(kh_shim_count C_Login) C_Login calls for a wrong PIN (want 1)"
    sed -i "s|^pin-file = .*|pin-file = $T/appl.pin|" "$KEYHOLD_CONF_DIR/rec.conf"
    kh_shim_set 'tokenflags CKF_USER_PIN_FINAL_TRY'
    kh_shim_log_reset
    kh_must_fail_clean 6 -- "$KEYHOLD" csr rec -o "$T/x.csr"
    kh_expect_output "FINAL_TRY"
    [ "$(kh_shim_count C_Login)" = 0 ] || kh_fail "CLI: C_Login on the final PIN try"
    kh_shim_set
    "$KEYHOLD" csr rec -o "$T/x.csr" >/dev/null 2>&1 || kh_fail "CLI: the right PIN no longer works"
    kh_log "CLI: wrong PIN exit 6 after one login; final try exit 6 without a login"
fi
kh_log "scenario 6 ok"
