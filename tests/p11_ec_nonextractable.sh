#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The EC private key cannot leave the token, and nothing keyhold writes
# contains it or the PIN: the token refuses CKA_VALUE and reports
# SENSITIVE / !EXTRACTABLE (asked directly through Cryptoki); `openssl pkey`
# through keyhold shows only the public half and cannot write the private
# key; the key reference holds only the URI (pin-value dropped); debug
# traces and error text do not contain the PIN. Twin: a key imported from
# software is reported as exposed.
. "$(dirname "$0")/lib.sh"
kh_need "$BUILD/keyhold.so" "$BUILD/tests/kh-p11attr" "$BUILD/tests/kh-keyref"
PIN=Kh-Pin-5813

kh_softhsm_token tok "$PIN"
kh_p11tool_keygen tok ec256 01 EC:prime256v1 "$PIN"
kh_p11_pubkey tok 01 "$T/pub.pem"
uri=$(kh_p11_uri tok ec256)

kh_log "the token refuses the private value"
"$BUILD/tests/kh-p11attr" -t tok -f "$T/tok.pin" -i 01

kh_log "openssl pkey -text through keyhold shows only the public half"
openssl pkey -in "$uri" "${KH_PROV[@]}" -text -noout >"$T/text.out" 2>&1 \
    || { cat "$T/text.out"; kh_fail "pkey -text failed"; }
cat "$T/text.out"
grep -q "pub:" "$T/text.out" || kh_fail "no public key in the text output"
if grep -qi "priv:" "$T/text.out"; then kh_fail "private part in the text output"; fi
kh_no_secrets "$T/text.out" "$PIN"
openssl pkey -in "$uri" "${KH_PROV[@]}" -pubout -out "$T/exp.pem"
cmp <(openssl pkey -pubin -in "$T/exp.pem" -outform DER) \
    <(openssl pkey -pubin -in "$T/pub.pem" -outform DER) || kh_fail "public key differs"

kh_log "must fail: writing the private key out (PEM, DER)"
kh_must_fail_clean openssl pkey -in "$uri" "${KH_PROV[@]}" -out "$T/priv.pem"
kh_no_secrets "$T/must_fail.out" "$PIN"
kh_must_fail_clean openssl pkey -in "$uri" "${KH_PROV[@]}" -outform DER -out "$T/priv.der"
[ ! -s "$T/priv.pem" ] || kh_no_secrets "$T/priv.pem"
[ ! -s "$T/priv.der" ] || kh_fail "a DER private key was written"

kh_log "the key reference carries only the URI, never the pin-value"
"$BUILD/tests/kh-keyref" "pkcs11:token=tok;object=ec256;type=private?pin-value=$PIN" >"$T/ref.pem"
ref=$("$BUILD/tests/kh-keyref" -r "$T/ref.pem")
echo "$ref"
case $ref in *pin-value*|*"$PIN"*) kh_fail "pin-value written into the reference";; esac
kh_no_secrets "$T/ref.pem" "$PIN"
openssl pkey -in "$T/ref.pem" "${KH_PROV[@]}" -text -noout >"$T/reftext.out" 2>&1 || true
kh_no_secrets "$T/reftext.out" "$PIN"

kh_log "debug traces and errors never show the PIN"
printf 'data\n' >"$T/data"
KEYHOLD_DEBUG=1 openssl dgst -sha256 -sign "pkcs11:token=tok;object=ec256;type=private?pin-value=$PIN" \
    "${KH_PROV[@]}" -out "$T/sig" "$T/data" 2>"$T/debug.log" \
    || { cat "$T/debug.log"; kh_fail "signing with pin-value failed"; }
kh_no_secrets "$T/debug.log" "$PIN"
KEYHOLD_DEBUG=1 kh_must_fail_clean openssl dgst -sha256 -sign \
    "pkcs11:token=tok;object=ec256;type=private?pin-value=Bad-Pin-9041" \
    "${KH_PROV[@]}" -out "$T/sig" "$T/data"
# openssl itself echoes the URI it was given ("Could not read private key
# from pkcs11:...pin-value=..."); what keyhold says must not contain a PIN.
grep -v "^Could not read private key from" "$T/must_fail.out" >"$T/kh_errors.out" || true
kh_no_secrets "$T/kh_errors.out" "$PIN" Bad-Pin-9041

kh_log "must fail: a key imported from software is reported as exposed"
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -outform DER -out "$T/soft.der" 2>/dev/null
pkcs11-tool --module "$SOFTHSM_MODULE" --token-label tok --login --pin "$PIN" \
    --write-object "$T/soft.der" --type privkey --id 09 --label soft >/dev/null
kh_must_fail "$BUILD/tests/kh-p11attr" -t tok -f "$T/tok.pin" -i 09
kh_expect_output "EXPOSED OR MISCONFIGURED"
kh_log "EC key is non-extractable and keyhold writes no secret"
