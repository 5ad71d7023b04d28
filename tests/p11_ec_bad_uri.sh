#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Malformed and ambiguous pkcs11: URIs give a clear error and a clean exit
# (an exit code, never a signal): bad percent-encoding, an unknown
# attribute, a token or key that does not exist, two tokens with the same
# label (refused before any login), two keys matching (no signature made).
. "$(dirname "$0")/lib.sh"
kh_need "$BUILD/keyhold.so"
SPY=/usr/lib/x86_64-linux-gnu/pkcs11-spy.so
kh_need "$SPY"

kh_softhsm_token tok
kh_p11tool_keygen tok ec256 01 EC:prime256v1
kh_p11tool_keygen tok twin 02 EC:prime256v1
kh_p11tool_keygen tok twin 03 EC:prime256v1
kh_softhsm_token dup
kh_softhsm_token dup
printf 'data\n' >"$T/data"
load() { openssl pkey -in "$1" "${KH_PROV[@]}" -noout; }
pin="pin-value=1234"

kh_log "bad percent-encoding"
kh_must_fail_clean load "pkcs11:token=tok;object=ec%4;type=private?$pin"
kh_expect_keyhold "percent"
kh_must_fail_clean load "pkcs11:token=tok;object=ec%zz56;type=private?$pin"
kh_expect_keyhold "percent"

kh_log "unknown attribute"
kh_must_fail_clean load "pkcs11:token=tok;object=ec256;colour=blue?$pin"
kh_expect_keyhold "unknown"
kh_expect_keyhold "colour"

kh_log "no such token"
kh_must_fail_clean load "pkcs11:token=nosuch;object=ec256;type=private?$pin"
kh_expect_keyhold "nosuch"

kh_log "no such key"
kh_must_fail_clean openssl dgst -sha256 -sign "pkcs11:token=tok;object=nothere;type=private?$pin" \
    "${KH_PROV[@]}" -out "$T/sig0" "$T/data"
[ ! -s "$T/sig0" ] || kh_fail "a signature was written for a missing key"

kh_log "two tokens match: refused, no C_Login"
export PKCS11SPY=$SOFTHSM_MODULE PKCS11SPY_OUTPUT=$T/spy.log
kh_must_fail_clean load "pkcs11:token=dup;object=k;type=private?module-path=$SPY&$pin"
grep -qiE "several|multiple|more than one|ambiguous|[0-9]+ tokens" "$T/must_fail.out" \
    || kh_fail "the error does not say that several tokens match"
if grep -q "C_Login" "$T/spy.log"; then kh_fail "logged in although the token was ambiguous"; fi

kh_log "two keys match: refused, no signature"
rm -f "$T/spy.log"
kh_must_fail_clean openssl dgst -sha256 -sign \
    "pkcs11:token=tok;object=twin;type=private?module-path=$SPY&$pin" \
    "${KH_PROV[@]}" -out "$T/sig" "$T/data"
grep -qiE "several|multiple|more than one|ambiguous|[0-9]+ keys|candidates" "$T/must_fail.out" \
    || kh_fail "the error does not say that several keys match"
if grep -qE "C_Sign(Init)?$" "$T/spy.log"; then kh_fail "signed with an ambiguous key"; fi
[ ! -s "$T/sig" ] || kh_fail "a signature was written for an ambiguous URI"
unset PKCS11SPY PKCS11SPY_OUTPUT

kh_log "the same key named by id works"
openssl dgst -sha256 -sign "pkcs11:token=tok;id=%02;type=private?$pin" "${KH_PROV[@]}" \
    -out "$T/sig" "$T/data" || kh_fail "signing by id failed"

kh_log "an overlong URI"
long=$(head -c 12000 /dev/zero | tr '\0' a)
kh_must_fail_clean load "pkcs11:token=tok;object=$long"
kh_log "every bad URI failed cleanly with a named reason"
