#!/bin/bash
# SPDX-License-Identifier: MIT
# SCEP with a TPM identity (swtpm): an RSA key made in the TPM with
# --allow-decrypt signs the PKCSReq and opens the CertRep's envelope inside
# the TPM (the provider's asymmetric-cipher path), against the responder of
# tests/scep/; then a RenewalReq signed by the TPM key. A sign-only TPM
# identity is refused before any request.
# timeout: 240
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/scep_lib.inc"

export KEYHOLD_CONF_DIR=$T/conf KEYHOLD_STATE_DIR=$T/state
kh_need "$KEYHOLD" "$BUILD/keyhold.so" "$BUILD/keyhold-tpm" "$KH_SCEP_RESP"
mkdir -p "$KEYHOLD_CONF_DIR" "$KEYHOLD_STATE_DIR"
kh_swtpm_start
(umask 077; printf 'scep-secret-5' >"$T/challenge")

kh_scep_ca_ra
port=$(kh_free_port)
kh_scep_responder "$port"
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
