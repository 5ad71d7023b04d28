#!/bin/bash
# SPDX-License-Identifier: MIT
# ACME enrolment against Debian's pebble on loopback: account key and
# certificate key in SoftHSM, JWS signed through the provider, http-01
# served by keyhold's own listener, finalize with the hardware CSR, the
# chain checked against pebble's root and installed; renewal through
# `keyhold renew --force`, rekey through `keyhold rekey`. Must-fail twins: the challenge port closed (an
# ACME error document, shown) and an untrusted ACME server, each leaving
# the identity unchanged; pebble refusing the account key as certificate
# key (badCSR) shown with the fix.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/acme_lib.inc"

kh_acme_setup
kh_acme_start
kh_acme_identity cam cam1.example --san ip:127.0.0.1
kh_acme_identity acct acct.example

kh_log "ACME server not trusted (no --server-ca): refused, nothing installed"
kh_must_fail 4 -- "$KEYHOLD" enroll cam --acme "$KH_ACME_URL" --ca "$KH_ACME_DIR/root.pem" \
    --challenge-port "$KH_ACME_CHPORT"
[ ! -e "$KEYHOLD_STATE_DIR/cam/current" ] || kh_fail "something was installed"

kh_log "http-01 unreachable (keyhold listens elsewhere): pebble's error document shown"
other=$(kh_free_port)
kh_must_fail 4 -- kh_acme_enroll cam --challenge-port "$other" --acme-account acct
kh_expect_output "urn:ietf:params:acme:error:connection"
kh_expect_output "the authorization for"
[ ! -e "$KEYHOLD_STATE_DIR/cam/current" ] || kh_fail "something was installed"

kh_log "account key = certificate key: pebble's badCSR document shown, with the fix"
# (another identity: pebble keeps refusing a key once it names an account)
kh_acme_identity cam0 cam0.example
kh_must_fail 4 -- kh_acme_enroll cam0
kh_expect_output "urn:ietf:params:acme:error:badCSR"
kh_expect_output "acme-account"
[ ! -e "$KEYHOLD_STATE_DIR/cam0/current" ] || kh_fail "something was installed"

kh_log "enrolment over ACME, the account key a second hardware identity"

kh_acme_enroll cam >"$T/enroll.out" 2>&1 || { cat "$T/enroll.out"; cat "$KH_ACME_DIR/pebble.log"; kh_fail "enroll"; }
cat "$T/enroll.out"
openssl verify -CAfile "$KH_ACME_DIR/root.pem" -untrusted "$KEYHOLD_STATE_DIR/cam/chain.pem" \
    "$KEYHOLD_STATE_DIR/cam/cert.pem" >/dev/null || kh_fail "cert does not chain to pebble's root"
openssl x509 -in "$KEYHOLD_STATE_DIR/cam/cert.pem" -noout -ext subjectAltName \
    | kh_grepq "DNS:cam1.example, IP Address:127.0.0.1" || kh_fail "SAN missing"
grep -q "validate w/ HTTP: http://127.0.0.1:" "$KH_ACME_DIR/pebble.log" \
    || kh_fail "the IP identifier was not validated"
"$KEYHOLD" verify cam >/dev/null || kh_fail "keyhold verify cam"
grep -q "^acme-url = $KH_ACME_URL" "$KEYHOLD_CONF_DIR/cam.conf" || kh_fail "acme-url not stored"
grep -q "^enrol-protocol = acme" "$KEYHOLD_CONF_DIR/cam.conf" || kh_fail "enrol-protocol"
grep -q "^acme-account = acct" "$KEYHOLD_CONF_DIR/cam.conf" || kh_fail "acme-account not stored"
fp1=$(kh_acme_cert_fp cam)

kh_log "renewal through keyhold renew --force (stored settings)"
"$KEYHOLD" renew cam --force >"$T/renew.out" 2>&1 || { cat "$T/renew.out"; kh_fail "renew"; }
fp2=$(kh_acme_cert_fp cam)
[ "$fp1" != "$fp2" ] || kh_fail "renew did not install a new certificate"
"$KEYHOLD" verify cam >/dev/null || kh_fail "verify after renew"

kh_log "rekey: a new hardware key, certified over ACME"
"$KEYHOLD" rekey cam >"$T/rekey.out" 2>&1 || { cat "$T/rekey.out"; kh_fail "rekey"; }
fp3=$(kh_acme_cert_fp cam)
[ "$fp3" != "$fp2" ] || kh_fail "rekey did not install a new certificate"
"$KEYHOLD" verify cam >/dev/null || kh_fail "verify after rekey"
fp2=$fp3

kh_log "renewal refused (challenge port taken over): old certificate stays"
sed -i "s/^acme-challenge-port = .*/acme-challenge-port = $other/" "$KEYHOLD_CONF_DIR/cam.conf"
kh_must_fail 4 -- "$KEYHOLD" renew cam --force
[ "$(kh_acme_cert_fp cam)" = "$fp2" ] || kh_fail "identity changed by a failed renewal"
"$KEYHOLD" verify cam >/dev/null || kh_fail "verify after failed renew"
kh_log "ok"
