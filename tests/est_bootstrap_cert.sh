#!/bin/bash
# SPDX-License-Identifier: MIT
# First enrolment authenticated by a factory bootstrap identity (its key in
# the same token, its certificate from the bootstrap CA) over TLS client
# auth, no password; an RSA identity enrols too; a failed enrolment leaves
# an audit record and a report line, without the password anywhere.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/est_lib.sh"

kh_estd_setup
d=$KH_ESTD_DIR
kh_test_ca "$T/boot"
kh_estd_start --client-ca "$T/boot/ca.pem"

kh_log "factory bootstrap identity: key in hardware, cert from the bootstrap CA"
kh_est_identity factory factory-0042.example
KH_SAN=DNS:factory-0042.example openssl x509 -req -in "$KEYHOLD_STATE_DIR/factory/request.csr" \
    -CA "$T/boot/ca.pem" -CAkey "$T/boot/ca.key" -CAcreateserial -days 7 \
    -extfile "$T/boot/ext-server.cnf" -out "$T/factory.pem" 2>/dev/null || kh_fail "bootstrap CA signing"
"$KEYHOLD" install factory "$T/factory.pem" --ca "$T/boot/ca.pem" >/dev/null || kh_fail "install factory"

kh_log "enrol with --bootstrap factory (TLS client auth by the token, no password)"
kh_est_identity cam cam1.example
"$KEYHOLD" enroll cam --est "$KH_ESTD_URL" --server-ca "$d/tls-ca.pem" --ca "$d/ca.pem" \
    --bootstrap factory >/dev/null || kh_fail "enroll with the bootstrap identity"
grep -q "simpleenroll -> 200 issued /CN=cam1.example .* to /CN=factory-0042.example" "$d/estd.log" \
    || { cat "$d/estd.log"; kh_fail "estd did not authenticate the bootstrap certificate"; }
grep -q "^est-bootstrap = factory" "$KEYHOLD_CONF_DIR/cam.conf" || kh_fail "bootstrap not stored"
kh_est_works cam

kh_log "an RSA identity enrols as well"
kh_est_identity rsa rsa.example --alg rsa-2048     # the later --alg wins
kh_est_enroll rsa >/dev/null || kh_fail "enroll rsa"
openssl x509 -in "$KEYHOLD_STATE_DIR/rsa/cert.pem" -noout -text | kh_grepq "rsaEncryption" \
    || kh_fail "not an RSA certificate"
kh_est_works rsa
"$KEYHOLD" renew rsa --force >/dev/null || kh_fail "renew rsa"

kh_log "a failed enrolment is audited and reported, without secrets"
kh_est_identity cam2 cam2.example
(umask 077; printf 'not-the-password' >"$T/bad.pw")
kh_must_fail 4 -- "$KEYHOLD" enroll cam2 --est "$KH_ESTD_URL" --server-ca "$d/tls-ca.pem" \
    --ca "$d/ca.pem" --user dev1 --password-file "$T/bad.pw"
grep -q '"op":"enroll".*"identity":"cam2".*failed' "$KEYHOLD_STATE_DIR/audit.log" \
    || { tail -3 "$KEYHOLD_STATE_DIR/audit.log"; kh_fail "no audit record of the failure"; }
grep -q '"op":"enroll","identity":"cam2"' "$KEYHOLD_STATE_DIR/reports.jsonl" || kh_fail "no report line"
"$KEYHOLD" audit verify >/dev/null || kh_fail "audit chain broken"
for f in "$KEYHOLD_STATE_DIR/audit.log" "$KEYHOLD_STATE_DIR/reports.jsonl" "$d/estd.log" \
         "$KEYHOLD_STATE_DIR/cam2/status.json"; do
    kh_no_secrets "$f" not-the-password secret-dev1
done
kh_log "ok"
