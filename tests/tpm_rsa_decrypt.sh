#!/bin/bash
# SPDX-License-Identifier: MIT
# RELIABILITY 2 on the TPM: RSA decryption inside the TPM (PKCS#1 v1.5 and
# OAEP) for a key made with --allow-decrypt, checked against encryption by
# the default provider with the public key; a sign-only TPM key refuses to
# decrypt by name and still signs.
. "$(dirname "$0")/lib.sh"
kh_need "$BUILD/keyhold.so" "$BUILD/keyhold-tpm"
kh_swtpm_start
KT=$BUILD/keyhold-tpm
"$KT" create --alg rsa-2048 --allow-decrypt --out "$T/dec.tss" --pub-out "$T/dec.pub"
"$KT" create --alg rsa-2048 --out "$T/sign.tss" --pub-out "$T/sign.pub"
printf 'session key for SCEP' >"$T/pt"

for pad in pkcs1 oaep; do
    openssl pkeyutl -encrypt -pubin -inkey "$T/dec.pub" -pkeyopt "rsa_padding_mode:$pad" \
        -in "$T/pt" -out "$T/ct.$pad"
    openssl pkeyutl -decrypt "${KH_PROV[@]}" -inkey "tpm2:file=$T/dec.tss" \
        -pkeyopt "rsa_padding_mode:$pad" -in "$T/ct.$pad" -out "$T/out.$pad" \
        || kh_fail "TPM decryption ($pad) failed"
    cmp -s "$T/pt" "$T/out.$pad" || kh_fail "TPM decryption ($pad) gave other bytes"
done
kh_log "decrypt-capable TPM key: PKCS#1 v1.5 and OAEP round trips"

openssl pkeyutl -encrypt -pubin -inkey "$T/sign.pub" -in "$T/pt" -out "$T/ct.sign"
kh_must_fail_clean openssl pkeyutl -decrypt "${KH_PROV[@]}" -inkey "tpm2:file=$T/sign.tss" \
    -in "$T/ct.sign" -out "$T/out.sign"
kh_expect_output "not allowed to decrypt"
[ ! -s "$T/out.sign" ] || kh_fail "a sign-only key produced plaintext"
echo msg >"$T/msg"
openssl dgst -sha256 "${KH_PROV[@]}" -sign "tpm2:file=$T/sign.tss" -out "$T/msg.sig" "$T/msg"
openssl dgst -sha256 -verify "$T/sign.pub" -signature "$T/msg.sig" "$T/msg" >/dev/null \
    || kh_fail "sign-only key no longer signs"
kh_log "sign-only TPM key: decryption refused by name, signing still works"
