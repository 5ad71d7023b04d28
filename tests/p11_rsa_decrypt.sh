#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# RSA decryption in the token, only for keys that allow it: a key made with
# `keyhold provision --allow-decrypt` decrypts PKCS#1 v1.5 and OAEP (SHA-1,
# what SoftHSM 2.6 offers) ciphertexts made by the default provider with the
# public key; a sign-only key refuses to decrypt with a clear error and
# still signs. OAEP with SHA-256 either works or fails cleanly.
. "$(dirname "$0")/lib.sh"
kh_need "$BUILD/keyhold.so" "$KEYHOLD"

kh_softhsm_token tok
export KEYHOLD_CONF_DIR=$T/conf KEYHOLD_STATE_DIR=$T/state
unset KEYHOLD_PIN_FILE CREDENTIALS_DIRECTORY || true
for id in dec:--allow-decrypt signonly:; do
    name=${id%%:*} flag=${id#*:}
    "$KEYHOLD" provision "$name" --token tok --alg rsa-2048 --host localhost \
        --pin-file "$T/tok.pin" $flag >/dev/null || kh_fail "provision $name failed"
    openssl req -in "$KEYHOLD_STATE_DIR/$name/request.csr" -noout -pubkey >"$T/$name.pub.pem"
done
uri() { echo "$(sed -n 's/^key-uri = //p' "$KEYHOLD_CONF_DIR/$1.conf")?pin-source=file:$T/tok.pin"; }
head -c 32 /dev/urandom >"$T/secret"

kh_log "PKCS#1 v1.5: default provider encrypts, the token decrypts"
openssl pkeyutl -encrypt -pubin -inkey "$T/dec.pub.pem" -in "$T/secret" -out "$T/ct1"
openssl pkeyutl -decrypt -inkey "$(uri dec)" "${KH_PROV[@]}" -in "$T/ct1" -out "$T/pt1" \
    || kh_fail "PKCS#1 v1.5 decryption failed"
cmp "$T/secret" "$T/pt1" || kh_fail "PKCS#1 v1.5 plaintext differs"

kh_log "OAEP (SHA-1): default provider encrypts, the token decrypts"
openssl pkeyutl -encrypt -pubin -inkey "$T/dec.pub.pem" -pkeyopt rsa_padding_mode:oaep \
    -in "$T/secret" -out "$T/ct2"
openssl pkeyutl -decrypt -inkey "$(uri dec)" "${KH_PROV[@]}" -pkeyopt rsa_padding_mode:oaep \
    -in "$T/ct2" -out "$T/pt2" || kh_fail "OAEP decryption failed"
cmp "$T/secret" "$T/pt2" || kh_fail "OAEP plaintext differs"

kh_log "OAEP with SHA-256: works, or fails cleanly (SoftHSM 2.6 has SHA-1 only)"
openssl pkeyutl -encrypt -pubin -inkey "$T/dec.pub.pem" -pkeyopt rsa_padding_mode:oaep \
    -pkeyopt rsa_oaep_md:sha256 -pkeyopt rsa_mgf1_md:sha256 -in "$T/secret" -out "$T/ct3"
rc=0
openssl pkeyutl -decrypt -inkey "$(uri dec)" "${KH_PROV[@]}" -pkeyopt rsa_padding_mode:oaep \
    -pkeyopt rsa_oaep_md:sha256 -pkeyopt rsa_mgf1_md:sha256 -in "$T/ct3" -out "$T/pt3" \
    >"$T/oaep256.out" 2>&1 || rc=$?
if [ $rc -eq 0 ]; then
    cmp "$T/secret" "$T/pt3" || kh_fail "OAEP SHA-256 plaintext differs"
else
    cat "$T/oaep256.out"
    [ $rc -lt 128 ] || kh_fail "OAEP SHA-256 crashed"
    grep -q "keyhold" "$T/oaep256.out" || kh_fail "OAEP SHA-256 failed without a keyhold error"
fi

kh_log "must fail: the sign-only key refuses to decrypt, clearly"
openssl pkeyutl -encrypt -pubin -inkey "$T/signonly.pub.pem" -in "$T/secret" -out "$T/ct4"
kh_must_fail_clean openssl pkeyutl -decrypt -inkey "$(uri signonly)" "${KH_PROV[@]}" \
    -in "$T/ct4" -out "$T/pt4"
kh_expect_keyhold "decrypt"
[ ! -s "$T/pt4" ] || kh_fail "the sign-only key produced a plaintext"

kh_log "the sign-only key still signs"
printf 'data\n' >"$T/data"
openssl dgst -sha256 -sign "$(uri signonly)" "${KH_PROV[@]}" -out "$T/sig" "$T/data"
openssl dgst -sha256 -verify "$T/signonly.pub.pem" -signature "$T/sig" "$T/data" \
    || kh_fail "sign-only key signature does not verify"
kh_log "decryption only where allowed, PKCS#1 v1.5 and OAEP"
