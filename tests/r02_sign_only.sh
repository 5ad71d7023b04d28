#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Scenario 2: a sign-only key cannot decrypt or derive -> refused cleanly,
# while signing with it still works; a key made for decryption decrypts.
# (PKCS#11 side through openssl; TPM keys in the tpm_* tests.)
# timeout: 120
. "$(dirname "$0")/lib.sh"
kh_need "$BUILD/keyhold.so" "$KH_SHIM" "$BUILD/tests/kh-p11gen"

kh_softhsm_token appl
# kh-p11gen spells out CKA_DECRYPT/CKA_DERIVE (pkcs11-tool leaves them to
# SoftHSM, whose default is TRUE).
gen() { "$BUILD/tests/kh-p11gen" -m "$SOFTHSM_MODULE" -t appl -p "$T/appl.pin" "$@"; }
gen -l rsasign -i 01 -k rsa
gen -l ecsign -i 02 -k ec
gen -l rsadec -i 03 -k rsa -d
kh_shim_setup
uri() { echo "pkcs11:token=appl;object=$1;type=private?pin-source=file:$T/appl.pin&module-path=$KH_SHIM"; }
echo "a secret session key" >"$T/plain"
echo "data to sign" >"$T/data"

# Public halves, read by pkcs11-tool.
kh_p11_pubkey appl 01 "$T/rsasign.pub"
kh_p11_pubkey appl 03 "$T/rsadec.pub"
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$T/peer.key" 2>/dev/null
openssl pkey -in "$T/peer.key" -pubout -out "$T/peer.pub"

# 1. RSA sign-only: decrypt refused, no plaintext; signing works.
openssl pkeyutl -encrypt -pubin -inkey "$T/rsasign.pub" -in "$T/plain" -out "$T/ct1"
kh_shim_log_reset
kh_must_fail_clean openssl pkeyutl -decrypt -inkey "$(uri rsasign)" -in "$T/ct1" -out "$T/pt1" "${KH_PROV[@]}"
[ ! -s "$T/pt1" ] || kh_fail "a sign-only key produced plaintext"
[ "$(kh_shim_count C_Decrypt CKR_OK)" = 0 ] || kh_fail "the token decrypted with a sign-only key"
openssl pkeyutl -sign -inkey "$(uri rsasign)" -in "$T/data" -rawin -digest sha256 -out "$T/sig1" "${KH_PROV[@]}" \
    || kh_fail "signing with the sign-only RSA key failed"
openssl pkeyutl -verify -pubin -inkey "$T/rsasign.pub" -in "$T/data" -rawin -digest sha256 -sigfile "$T/sig1" \
    || kh_fail "the RSA signature does not verify"
kh_log "RSA sign-only: decrypt refused, signing works"

# 2. EC sign-only: ECDH derive refused; signing works.
kh_shim_log_reset
kh_must_fail_clean openssl pkeyutl -derive -inkey "$(uri ecsign)" -peerkey "$T/peer.pub" -out "$T/shared" "${KH_PROV[@]}"
[ ! -s "$T/shared" ] || kh_fail "a sign-only EC key derived a secret"
[ "$(kh_shim_count C_DeriveKey CKR_OK)" = 0 ] || kh_fail "the token derived with a sign-only key"
openssl pkeyutl -sign -inkey "$(uri ecsign)" -in "$T/data" -rawin -digest sha256 -out "$T/sig2" "${KH_PROV[@]}" \
    || kh_fail "signing with the sign-only EC key failed"
kh_log "EC sign-only: derive refused, signing works"

# 3. A key made for decryption decrypts (PKCS#1 v1.5 and OAEP).
openssl pkeyutl -encrypt -pubin -inkey "$T/rsadec.pub" -in "$T/plain" -out "$T/ct3"
openssl pkeyutl -decrypt -inkey "$(uri rsadec)" -in "$T/ct3" -out "$T/pt3" "${KH_PROV[@]}" \
    || kh_fail "decryption with a decrypt-capable key failed"
cmp -s "$T/plain" "$T/pt3" || kh_fail "wrong plaintext"
openssl pkeyutl -encrypt -pubin -inkey "$T/rsadec.pub" -pkeyopt rsa_padding_mode:oaep -in "$T/plain" -out "$T/ct4"
openssl pkeyutl -decrypt -inkey "$(uri rsadec)" -pkeyopt rsa_padding_mode:oaep -in "$T/ct4" -out "$T/pt4" "${KH_PROV[@]}" \
    || kh_fail "OAEP decryption with a decrypt-capable key failed"
cmp -s "$T/plain" "$T/pt4" || kh_fail "wrong OAEP plaintext"
kh_log "decrypt-capable key: PKCS#1 and OAEP decrypt"
# 4. Identities from the CLI: sign-only by default; --allow-decrypt (SCEP)
#    identities decrypt.
if [ -x "$KEYHOLD" ]; then
    export KEYHOLD_CONF_DIR=$T/conf KEYHOLD_STATE_DIR=$T/state
    for n in sig dec; do
        extra=()
        [ "$n" = dec ] && extra=(--allow-decrypt)
        "$KEYHOLD" provision "$n" --token appl --alg rsa-2048 --host "$n.example" "${extra[@]}" \
            --pin-file "$T/appl.pin" --csr-out "$T/$n.csr" >/dev/null 2>&1 || kh_fail "provision $n"
        openssl req -in "$T/$n.csr" -pubkey -noout >"$T/$n.pub"
        openssl pkeyutl -encrypt -pubin -inkey "$T/$n.pub" -in "$T/plain" -out "$T/$n.ct"
        k="$(sed -n 's/^key-uri = //p' "$KEYHOLD_CONF_DIR/$n.conf")?pin-source=file:$T/appl.pin"
        if [ "$n" = sig ]; then
            kh_must_fail_clean openssl pkeyutl -decrypt -inkey "$k" -in "$T/$n.ct" -out "$T/$n.pt" "${KH_PROV[@]}"
            kh_expect_output "not permitted"
        else
            openssl pkeyutl -decrypt -inkey "$k" -in "$T/$n.ct" -out "$T/$n.pt" "${KH_PROV[@]}" \
                || kh_fail "an --allow-decrypt identity cannot decrypt"
            cmp -s "$T/plain" "$T/$n.pt" || kh_fail "wrong plaintext from the --allow-decrypt identity"
        fi
    done
    kh_log "CLI identities: sign-only refuses to decrypt, --allow-decrypt decrypts"
fi
kh_log "scenario 2 ok"
