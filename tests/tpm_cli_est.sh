#!/bin/bash
# SPDX-License-Identifier: MIT
# TPM identities through the whole CLI (swtpm, no resource manager):
#  - provision --tpm (key file) -> enrol over EST (keyhold-estd) -> verify
#    -> renew (simplereenroll authenticated by the TPM key) -> rekey (a new
#    TPM key in service) -> status shows backend tpm2;
#  - provision --persistent -> offline CSR -> install -> verify -> doctor
#    (TPM reachable, DA counter, key present) and the report's EK identity
#    -> zeroize evicts the handle and leaves no transient object behind.
# timeout: 240
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/est_lib.sh"
kh_need "$BUILD/keyhold-tpm"
kh_swtpm_start
kh_estd_setup
kh_estd_start

kh_log "provision --tpm, enrol over EST"
"$KEYHOLD" provision cam --tpm --alg ec-p256 --host localhost --san ip:127.0.0.1 >"$T/p.out" \
    || { cat "$T/p.out"; kh_fail "provision --tpm"; }
uri=$(sed -n 's/^key-uri = //p' "$KEYHOLD_CONF_DIR/cam.conf")
case $uri in tpm2:file=*) ;; *) kh_fail "key-uri is not a TPM key file: $uri";; esac
keyfile=${uri#tpm2:file=}; keyfile=${keyfile%%;*}
head -1 "$keyfile" | kh_grepq "BEGIN TSS2 PRIVATE KEY" || kh_fail "no TSS2 key file at $keyfile"
# Servers in group keyhold read it (it is wrapped by the TPM), nobody else.
[ "$(stat -c %a "$keyfile")" = 640 ] || kh_fail "key file mode $(stat -c %a "$keyfile"), want 640"
kh_est_enroll cam >"$T/e.out" 2>&1 || { cat "$T/e.out"; kh_fail "enroll"; }
kh_est_works cam
"$KEYHOLD" status cam --json >"$T/st.json"
jq -e '.[0].backend == "tpm2" and .[0].state == "ok"' "$T/st.json" >/dev/null \
    || { cat "$T/st.json"; kh_fail "status: backend tpm2, state ok"; }
fp1=$(kh_est_cert_fp cam)

kh_log "renew over EST (the TPM key authenticates the request)"
"$KEYHOLD" renew cam --force >"$T/r.out" 2>&1 || { cat "$T/r.out"; kh_fail "renew"; }
[ "$(kh_est_cert_fp cam)" != "$fp1" ] || kh_fail "renew installed no new certificate"
kh_est_works cam
[ "$(jq -r '.[0].key_uri' "$T/st.json")" = "$uri" ] || kh_fail "status key_uri differs from the provisioned key"
"$KEYHOLD" status cam --json >"$T/st1.json"
[ "$(jq -r '.[0].key_uri' "$T/st1.json")" = "$uri" ] || kh_fail "renew changed the key"

kh_log "rekey: a new TPM key in service"
"$KEYHOLD" rekey cam >"$T/k.out" 2>&1 || { cat "$T/k.out"; kh_fail "rekey"; }
# The key in service is the current generation's (key.pem), as status says.
"$KEYHOLD" status cam --json >"$T/st2.json"
uri2=$(jq -r '.[0].key_uri' "$T/st2.json")
[ "$uri2" != "$uri" ] || kh_fail "rekey kept the key"
case $uri2 in tpm2:file=*) ;; *) kh_fail "rekeyed key-uri: $uri2";; esac
kh_est_works cam
# (The old key file may be kept for the rekey grace period; renew or the
# timer destroys it later.)

kh_log "provision --persistent, offline CSR, install, verify, zeroize"
"$KEYHOLD" provision door --persistent 0x81000060 --alg rsa-2048 --host localhost \
    --csr-out "$T/door.csr" >"$T/p2.out" || { cat "$T/p2.out"; kh_fail "provision --persistent"; }
grep -q "^key-uri = tpm2:handle=0x81000060" "$KEYHOLD_CONF_DIR/door.conf" || kh_fail "door key-uri"
openssl req -in "$T/door.csr" -verify -noout 2>&1 | kh_grepq "verify OK" || kh_fail "door CSR signature"
kh_test_ca "$T/ca"
kh_ca_sign "$T/ca" "$T/door.csr" "$T/door.pem" "DNS:localhost"
"$KEYHOLD" install door "$T/door.pem" --ca "$T/ca/ca.pem" >/dev/null || kh_fail "install door"
"$KEYHOLD" verify door >/dev/null || kh_fail "verify door (RSA, persistent)"
"$BUILD/keyhold-tpm" exists 0x81000060 >/dev/null || kh_fail "0x81000060 not in the TPM"
"$KEYHOLD" doctor >"$T/doctor.out" 2>&1 || true
grep -q "ok .*identity door: TPM lockout counter 0 of" "$T/doctor.out" || { cat "$T/doctor.out"; kh_fail "doctor: DA state"; }
grep -q "ok .*identity door: TPM key tpm2:handle=0x81000060 present" "$T/doctor.out" \
    || { cat "$T/doctor.out"; kh_fail "doctor: TPM key"; }
grep -q "PROBLEM.*door.*PIN" "$T/doctor.out" && kh_fail "doctor asks a PIN for a TPM identity"
ek=$("$BUILD/keyhold-tpm" ek-id)
grep '"identity":"door"' "$KEYHOLD_STATE_DIR/reports.jsonl" | kh_grepq "\"token_serial\":\"$ek\"" \
    || kh_fail "provisioning report lacks the TPM's EK identity $ek"
"$KEYHOLD" zeroize door --yes >/dev/null || kh_fail "zeroize door"
if "$BUILD/keyhold-tpm" exists 0x81000060 >/dev/null; then kh_fail "zeroize left 0x81000060"; fi
[ "$(kh_tpm_transients)" = 0 ] || kh_fail "transients left: $(tpm2_getcap handles-transient)"
kh_est_works cam
kh_log "TPM identities: provision, EST enrol, renew, rekey, persistent install and zeroize ok"
