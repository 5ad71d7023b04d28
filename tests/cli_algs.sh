#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Every --alg through provision -> sign -> install -> verify, an unknown
# one refused; --allow-decrypt is recorded and only then may the RSA key
# decrypt (the token's CKA_DECRYPT).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cli_lib.inc"

kh_cli_env
for alg in ec-p384 rsa-2048 rsa-3072; do
    kh_cli_provision "id-$alg" "$alg.example.com" "" "$alg"
    openssl req -in "$T/id-$alg.csr" -verify -noout 2>&1 | kh_has "verify OK" || kh_fail "$alg CSR"
    kh_cli_sign "id-$alg" "$T/id-$alg.pem" "DNS:$alg.example.com"
    "$KEYHOLD" install "id-$alg" "$T/id-$alg.pem" --ca "$T/ca/ca.pem" >/dev/null || kh_fail "$alg install"
    "$KEYHOLD" verify "id-$alg" >/dev/null || kh_fail "$alg verify"
    [ "$("$KEYHOLD" status "id-$alg" --json | jq -r '.[0].algorithm')" = "$alg" ] || kh_fail "$alg status"
    kh_log "$alg ok"
done
openssl req -in "$T/id-ec-p384.csr" -noout -text | kh_has "ecdsa-with-SHA384" || kh_fail "P-384 CSR digest"
openssl req -in "$T/id-rsa-2048.csr" -noout -text | kh_has "Key Encipherment" || kh_fail "RSA KU"
kh_must_fail_clean 1 -- "$KEYHOLD" provision bad --token app --alg dsa-1024 --host x.example.com \
    --pin-file "$T/app.pin"
kh_expect_output "unknown --alg"

kh_log "decrypt only with --allow-decrypt"
"$KEYHOLD" provision scep --token app --alg rsa-2048 --host scep.example.com --allow-decrypt \
    --pin-file "$T/app.pin" >/dev/null
grep -q "^allow-decrypt = yes" "$KEYHOLD_CONF_DIR/scep.conf" || kh_fail "allow-decrypt not recorded"
grep -q "^allow-decrypt = no" "$KEYHOLD_CONF_DIR/id-rsa-2048.conf" || kh_fail "default not sign-only"
attrs() {
    pkcs11-tool --module "$SOFTHSM_MODULE" --token-label app --login --pin "$KH_CLI_PIN" \
        --list-objects --type privkey 2>/dev/null | awk -v l="label: *keyhold:$1:" '
            /Private Key Object/ {p=0} $0 ~ l {p=1} p && /Usage:/ {print}'
}
attrs scep | kh_has decrypt || kh_fail "scep key cannot decrypt"
attrs id-rsa-2048 | kh_has decrypt && kh_fail "sign-only key may decrypt"
kh_log "ok"
