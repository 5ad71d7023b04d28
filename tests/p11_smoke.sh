#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Smoke test of the provider: it loads, the pkcs11 store loads an EC key
# from a SoftHSM token, `openssl dgst -sign` signs in the token through a
# pkcs11: URI, and the signature verifies with the default provider using
# the public key read from the token by an independent tool (pkcs11-tool).
. "$(dirname "$0")/lib.sh"
kh_need "$BUILD/keyhold.so"
PROV=(-provider-path "$BUILD" -provider keyhold -provider default)

kh_log "provider loads"
openssl list -providers "${PROV[@]}" >"$T/providers.txt"
grep -q "keyhold" "$T/providers.txt" || kh_fail "keyhold not listed"
grep -A3 "keyhold" "$T/providers.txt" | kh_grepq "status: active" \
    || kh_fail "keyhold not active"

kh_log "token with an EC P-256 key made by pkcs11-tool"
kh_softhsm_setup
kh_softhsm_token smoke
kh_p11tool_keygen smoke smoke-ec 5a01 EC:prime256v1
pkcs11-tool --module "$SOFTHSM_MODULE" --token-label smoke --read-object \
    --type pubkey --id 5a01 -o "$T/pub.der" >/dev/null 2>&1 \
    || kh_fail "pkcs11-tool cannot read the public key"
openssl pkey -pubin -inform DER -in "$T/pub.der" -out "$T/pub.pem"

head -c 4096 /dev/urandom >"$T/data"
URI="pkcs11:token=smoke;object=smoke-ec;type=private"

kh_log "ECDSA SHA-256 signature in the token (pin-value)"
openssl dgst -sha256 -sign "$URI;pin-value=1234" "${PROV[@]}" \
    -out "$T/sig1" "$T/data"
openssl dgst -sha256 -verify "$T/pub.pem" -signature "$T/sig1" "$T/data" \
    | kh_grepq "Verified OK" || kh_fail "signature 1 does not verify"

kh_log "same with pin-source and keyhold loaded before default"
openssl dgst -sha384 -sign "$URI;pin-source=file:$T/smoke.pin" \
    -provider-path "$BUILD" -provider default -provider keyhold \
    -out "$T/sig2" "$T/data"
openssl dgst -sha384 -verify "$T/pub.pem" -signature "$T/sig2" "$T/data" \
    | kh_grepq "Verified OK" || kh_fail "signature 2 does not verify"

kh_log "public half through the store matches the token's public key"
openssl pkey "${PROV[@]}" -in "$URI;pin-value=1234" -pubout -out "$T/pub2.pem"
cmp -s "$T/pub.pem" "$T/pub2.pem" || kh_fail "public keys differ"

kh_log "a signature over other data does not verify (sanity)"
echo other >"$T/other"
if openssl dgst -sha256 -verify "$T/pub.pem" -signature "$T/sig1" "$T/other" \
    >/dev/null 2>&1; then
    kh_fail "signature verified over the wrong data"
fi

kh_log "wrong PIN: clear error naming CKR_PIN_INCORRECT"
kh_must_fail openssl dgst -sha256 -sign "$URI;pin-value=9999" "${PROV[@]}" \
    -out "$T/sig3" "$T/data"
kh_expect_output CKR_PIN_INCORRECT
echo "p11_smoke: ok"
