#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# A wrong PIN gives one C_Login (counted with OpenSC's pkcs11-spy between
# keyhold and SoftHSM), an error naming CKR_PIN_INCORRECT, no PIN in the
# error text, no crash, and no lockout: the right PIN works afterwards.
# A missing or world-readable PIN file is refused without any login.
. "$(dirname "$0")/lib.sh"
kh_need "$BUILD/keyhold.so" "$BUILD/tests/kh-p11attr"
SPY=/usr/lib/x86_64-linux-gnu/pkcs11-spy.so
kh_need "$SPY"

kh_softhsm_token tok Good-Pin-3141
kh_p11tool_keygen tok ec256 01 EC:prime256v1 Good-Pin-3141
printf 'data\n' >"$T/data"
export PKCS11SPY=$SOFTHSM_MODULE PKCS11SPY_OUTPUT=$T/spy.log
base="pkcs11:token=tok;object=ec256;type=private?module-path=$SPY"
sign() { rm -f "$T/spy.log"; openssl dgst -sha256 -sign "$1" "${KH_PROV[@]}" -out "$T/sig" "$T/data"; }
logins() { grep -c "C_Login" "$T/spy.log" || true; }

for round in 1 2; do
    kh_log "wrong pin-value ($round)"
    kh_must_fail_clean sign "$base&pin-value=Bad-Pin-2718"
    kh_expect_keyhold "CKR_PIN_INCORRECT"
    # openssl echoes its own argument (the URI); keyhold's errors must not.
    grep -v "^Could not read private key from" "$T/must_fail.out" >"$T/kh_errors.out" || true
    kh_no_secrets "$T/kh_errors.out" Bad-Pin-2718 Good-Pin-3141
    [ "$(logins)" = 1 ] || kh_fail "expected exactly one C_Login, saw $(logins)"
done

kh_log "wrong PIN in a pin-source file"
(umask 077; printf 'Bad-Pin-2718\n' >"$T/bad.pin")
kh_must_fail_clean sign "$base&pin-source=file:$T/bad.pin"
kh_expect_keyhold "CKR_PIN_INCORRECT"
kh_no_secrets "$T/must_fail.out" Bad-Pin-2718
[ "$(logins)" = 1 ] || kh_fail "expected exactly one C_Login, saw $(logins)"

kh_log "missing PIN file: refused before any login"
kh_must_fail_clean sign "$base&pin-source=file:$T/nonexistent.pin"
kh_expect_keyhold "nonexistent.pin"
[ "$(logins)" = 0 ] || kh_fail "logged in without a PIN"

kh_log "world-readable PIN file: refused before reading or logging in"
printf 'Good-Pin-3141' >"$T/open.pin"; chmod 0644 "$T/open.pin"
kh_must_fail_clean sign "$base&pin-source=file:$T/open.pin"
kh_no_secrets "$T/must_fail.out" Good-Pin-3141
[ "$(logins)" = 0 ] || kh_fail "logged in with a PIN from an unsafe file"
unset PKCS11SPY PKCS11SPY_OUTPUT

kh_log "no lockout: the token is not locked and the right PIN works"
"$BUILD/tests/kh-p11attr" -t tok -F || kh_fail "the user PIN is locked"
openssl dgst -sha256 -sign "$(kh_p11_uri tok ec256)" "${KH_PROV[@]}" -out "$T/sig" "$T/data" \
    || kh_fail "the right PIN does not work after wrong ones"
"$BUILD/tests/kh-p11attr" -t tok -F | grep "user-pin-count-low=0" >/dev/null \
    || kh_fail "failure counter not reset by a good login"
kh_log "wrong PINs: one login each, named error, no lockout"
