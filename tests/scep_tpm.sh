#!/bin/bash
# SPDX-License-Identifier: MIT
# SCEP with a TPM identity (swtpm): an RSA key made in the TPM with
# --allow-decrypt signs the PKCSReq and opens the CertRep's envelope inside
# the TPM (the provider's asymmetric-cipher path), against the responder of
# tests/scep/; then a RenewalReq signed by the TPM key. A sign-only TPM
# identity is refused before any request.
# timeout: 240
. "$(dirname "$0")/lib.sh"

export KEYHOLD_CONF_DIR=$T/conf KEYHOLD_STATE_DIR=$T/state
RESP=$BUILD/tests/scep-responder
kh_need "$KEYHOLD" "$BUILD/keyhold.so" "$BUILD/keyhold-tpm" "$RESP"
mkdir -p "$KEYHOLD_CONF_DIR" "$KEYHOLD_STATE_DIR"
kh_swtpm_start
(umask 077; printf 'scep-secret-5' >"$T/challenge")

kh_test_ca "$T/ca" rsa
for ra in enc sign; do
    openssl req -new -newkey rsa:2048 -nodes -keyout "$T/ra-$ra.key" \
        -subj "/CN=keyhold SCEP RA $ra" -out "$T/ra-$ra.csr" 2>/dev/null
    if [ $ra = enc ]; then ku=keyEncipherment; else ku=digitalSignature; fi
    printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,%s\n' $ku >"$T/ra-$ra.ext"
    openssl x509 -req -in "$T/ra-$ra.csr" -CA "$T/ca/ca.pem" -CAkey "$T/ca/ca.key" \
        -CAcreateserial -days 20 -extfile "$T/ra-$ra.ext" -out "$T/ra-$ra.pem" 2>/dev/null \
        || kh_fail "RA $ra certificate"
done
port=$(kh_free_port)
kh_bg "$RESP" --port "$port" --ca-cert "$T/ca/ca.pem" --ca-key "$T/ca/ca.key" \
    --ra-enc-cert "$T/ra-enc.pem" --ra-enc-key "$T/ra-enc.key" \
    --ra-sign-cert "$T/ra-sign.pem" --ra-sign-key "$T/ra-sign.key" \
    --challenge-file "$T/challenge" --days 7 --log "$T/resp.log"
kh_wait_port "$port"
URL=http://127.0.0.1:$port/scep

kh_log "sign-only TPM identity: refused, asks for --allow-decrypt"
"$KEYHOLD" provision so --tpm --alg rsa-2048 --host cam1.example >/dev/null \
    || kh_fail "provision --tpm sign-only"
kh_must_fail 1 -- "$KEYHOLD" enroll so --scep "$URL" --challenge-file "$T/challenge" \
    --ca "$T/ca/ca.pem"
kh_expect_output "allow-decrypt"
! grep -q PKCSReq "$T/resp.log" || kh_fail "a request was sent for a sign-only key"

kh_log "RSA TPM identity with --allow-decrypt: enroll, CertRep decrypted in the TPM"
"$KEYHOLD" provision cam --tpm --alg rsa-2048 --allow-decrypt --host cam1.example \
    --san ip:127.0.0.1 >/dev/null || kh_fail "provision --tpm"
"$KEYHOLD" enroll cam --scep "$URL" --challenge-file "$T/challenge" --ca "$T/ca/ca.pem" \
    >"$T/enroll.out" 2>&1 || { cat "$T/enroll.out" "$T/resp.log"; kh_fail "enroll over SCEP (TPM)"; }
"$KEYHOLD" verify cam >/dev/null || kh_fail "verify cam"
gen1=$(readlink "$KEYHOLD_STATE_DIR/cam/current")

kh_log "renew: RenewalReq signed by the TPM key"
"$KEYHOLD" renew cam --force >"$T/renew.out" 2>&1 \
    || { cat "$T/renew.out" "$T/resp.log"; kh_fail "renew over SCEP (TPM)"; }
grep -q "RenewalReq signed by .*cam1.example" "$T/resp.log" || kh_fail "no RenewalReq"
[ "$(readlink "$KEYHOLD_STATE_DIR/cam/current")" != "$gen1" ] || kh_fail "no new generation"
"$KEYHOLD" verify cam >/dev/null || kh_fail "verify after renew"
kh_log "ok"
