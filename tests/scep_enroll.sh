#!/bin/bash
# SPDX-License-Identifier: MIT
# SCEP end to end against the minimal responder of tests/scep/ (software
# CA on 127.0.0.1 with separate RA encryption and signing certificates):
# enroll (PKCSReq signed by a transient certificate for the SoftHSM RSA
# key, CertRep decrypted in the token) installs a server-auth certificate;
# a wrong challenge is refused with its failInfo, identity unchanged;
# PENDING answered by CertPoll (GetCertInitial) rounds within bounds, and
# refused clearly when the bound is reached; renew and rekey as RenewalReq
# signed by the current hardware key and certificate.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/scep_lib.inc"

kh_enrol_appliance "$KH_SCEP_RESP"
(umask 077; printf 'scep-secret-5' >"$T/challenge"; printf 'not-it' >"$T/wrong")

kh_log "CA and RA certificates (encryption: keyEncipherment, signing: digitalSignature)"
kh_scep_ca_ra

RESP_PID=
responder() {
    if [ -n "$RESP_PID" ]; then
        kill "$RESP_PID" 2>/dev/null || true
        wait "$RESP_PID" 2>/dev/null || true
    fi
    : >"$T/resp.log"
    port=$(kh_free_port)
    kh_scep_responder "$port" "$@"
    RESP_PID=$KH_SCEP_PID
    URL=http://127.0.0.1:$port/cgi-bin/pkiclient.exe
    if [ -f "$KEYHOLD_CONF_DIR/cam.conf" ]; then
        sed -i "s|^scep-url = .*|scep-url = $URL|" "$KEYHOLD_CONF_DIR/cam.conf"
    fi
}
responder

"$KEYHOLD" provision cam --token app --alg rsa-2048 --host cam1.example \
    --san ip:127.0.0.1 --allow-decrypt --pin-file "$T/app.pin" >/dev/null \
    || kh_fail "provision cam"

kh_log "wrong challenge: FAILURE badRequest, nothing installed"
kh_must_fail 4 -- "$KEYHOLD" enroll cam --scep "$URL" --challenge-file "$T/wrong" \
    --ca "$T/ca/ca.pem"
kh_expect_output "badRequest"
kh_expect_output "unchanged"
[ ! -e "$KEYHOLD_STATE_DIR/cam/current" ] || kh_fail "something was installed"
grep -q "PKCSReq refused: wrong challenge" "$T/resp.log" || kh_fail "responder saw no PKCSReq"

kh_log "enroll: PKCSReq with a transient self-signed certificate, installed"
"$KEYHOLD" enroll cam --scep "$URL" --challenge-file "$T/challenge" \
    --ca "$T/ca/ca.pem" >"$T/enroll.out" 2>&1 \
    || { cat "$T/enroll.out" "$T/resp.log"; kh_fail "enroll over SCEP"; }
cat "$T/enroll.out"
grep -q "PKCSReq signed by .* (self-signed)" "$T/resp.log" || kh_fail "no transient signer"
"$KEYHOLD" verify cam >/dev/null || kh_fail "keyhold verify cam"
openssl x509 -in "$KEYHOLD_STATE_DIR/cam/cert.pem" -noout -ext extendedKeyUsage \
    | kh_grepq "Server Authentication" || kh_fail "not a server-auth certificate"
grep -q "^enrol-protocol = scep" "$KEYHOLD_CONF_DIR/cam.conf" || kh_fail "enrol-protocol"
for f in "$KEYHOLD_CONF_DIR/cam.conf" "$T/enroll.out" "$KEYHOLD_STATE_DIR/audit.log" \
         "$KEYHOLD_STATE_DIR/reports.jsonl"; do
    [ -e "$f" ] && kh_no_secrets "$f" scep-secret-5
done
gen1=$(readlink "$KEYHOLD_STATE_DIR/cam/current")

kh_log "renew: RenewalReq signed by the current certificate and key"
"$KEYHOLD" renew cam --force >"$T/renew.out" 2>&1 \
    || { cat "$T/renew.out" "$T/resp.log"; kh_fail "renew over SCEP"; }
grep -q "RenewalReq signed by .*cam1.example" "$T/resp.log" \
    || { cat "$T/resp.log"; kh_fail "renewal not a RenewalReq signed by the current cert"; }
[ "$(readlink "$KEYHOLD_STATE_DIR/cam/current")" != "$gen1" ] || kh_fail "no new generation"
"$KEYHOLD" verify cam >/dev/null || kh_fail "verify after renew"

kh_log "rekey: new hardware key, RenewalReq signed by the old one"
oldpub=$(openssl x509 -in "$KEYHOLD_STATE_DIR/cam/cert.pem" -noout -pubkey)
"$KEYHOLD" rekey cam >"$T/rekey.out" 2>&1 \
    || { cat "$T/rekey.out" "$T/resp.log"; kh_fail "rekey over SCEP"; }
[ "$(openssl x509 -in "$KEYHOLD_STATE_DIR/cam/cert.pem" -noout -pubkey)" != "$oldpub" ] \
    || kh_fail "rekey kept the key"
[ "$(grep -c "RenewalReq signed by .*cam1.example" "$T/resp.log")" = 2 ] \
    || { cat "$T/resp.log"; kh_fail "rekey not a RenewalReq signed by the old certificate"; }
"$KEYHOLD" verify cam >/dev/null || kh_fail "verify after rekey"

kh_log "PENDING twice, then issued on the second CertPoll"
responder --pending 2
printf 'scep-poll-interval = 1\nscep-poll-max = 10\n' >>"$KEYHOLD_CONF_DIR/cam.conf"
gen3=$(readlink "$KEYHOLD_STATE_DIR/cam/current")
"$KEYHOLD" renew cam --force >"$T/pending.out" 2>&1 \
    || { cat "$T/pending.out" "$T/resp.log"; kh_fail "renew with PENDING"; }
cat "$T/pending.out"
grep -q "PENDING" "$T/pending.out" || kh_fail "PENDING not reported"
[ "$(grep -c "CertPoll: " "$T/resp.log")" = 2 ] || { cat "$T/resp.log"; kh_fail "not two CertPolls"; }
grep -q "CertPoll: SUCCESS" "$T/resp.log" || kh_fail "no CertPoll success"
[ "$(readlink "$KEYHOLD_STATE_DIR/cam/current")" != "$gen3" ] || kh_fail "no new generation"
"$KEYHOLD" verify cam >/dev/null || kh_fail "verify after pending"

kh_log "PENDING beyond scep-poll-max: a clear error, identity unchanged"
responder --pending 50
sed -i "s|^scep-poll-max = .*|scep-poll-max = 2|" "$KEYHOLD_CONF_DIR/cam.conf"
gen4=$(readlink "$KEYHOLD_STATE_DIR/cam/current")
kh_must_fail 4 -- "$KEYHOLD" renew cam --force
kh_expect_output "PENDING"
kh_expect_output "scep-poll-max"
[ "$(readlink "$KEYHOLD_STATE_DIR/cam/current")" = "$gen4" ] || kh_fail "identity changed"
"$KEYHOLD" verify cam >/dev/null || kh_fail "verify after refused renew"

kh_log "an old server (no POST, no Renewal, SHA-1, 3DES): GET, renewal as PKCSReq"
responder --legacy
gen5=$(readlink "$KEYHOLD_STATE_DIR/cam/current")
"$KEYHOLD" renew cam --force >"$T/legacy.out" 2>&1 \
    || { cat "$T/legacy.out" "$T/resp.log"; kh_fail "renew against an old server"; }
grep -q "PKIOperation by GET" "$T/resp.log" || { cat "$T/resp.log"; kh_fail "not by GET"; }
grep -q "PKCSReq signed by .* (self-signed)" "$T/resp.log" || kh_fail "not a PKCSReq"
[ "$(readlink "$KEYHOLD_STATE_DIR/cam/current")" != "$gen5" ] || kh_fail "no new generation"
"$KEYHOLD" verify cam >/dev/null || kh_fail "verify after legacy renew"
gen4=$(readlink "$KEYHOLD_STATE_DIR/cam/current")

kh_log "a CA that is not the pinned one: refused before any request"
kh_test_ca "$T/other" rsa
kh_must_fail 2 -- "$KEYHOLD" enroll cam --scep "$URL" --challenge-file "$T/challenge" \
    --ca "$T/other/ca.pem"
kh_expect_output "pinned CA"
[ "$(readlink "$KEYHOLD_STATE_DIR/cam/current")" = "$gen4" ] || kh_fail "identity changed"
kh_log "ok"
