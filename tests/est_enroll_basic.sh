#!/bin/bash
# SPDX-License-Identifier: MIT
# First enrolment over EST with HTTP basic auth against keyhold-estd whose
# CA key is in a token: /cacerts pinned by file, hardware-signed CSR, the
# installed identity verified; the password never reaches argv or logs;
# a wrong password and an unpinned CA are refused with nothing changed.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/est_lib.sh"

kh_estd_setup
kh_estd_start
kh_est_identity cam cam1.example --san ip:127.0.0.1

kh_log "no CA pin and no --server-ca: refused (no trust on first use)"
kh_must_fail 1 -- "$KEYHOLD" enroll cam --est "$KH_ESTD_URL" --user dev1 \
    --password-file "$KH_ESTD_DIR/dev1.pw"
[ ! -e "$KEYHOLD_STATE_DIR/cam/current" ] || kh_fail "something was installed"

kh_log "wrong password: the CA refuses, nothing installed"
(umask 077; printf 'wrong' >"$T/wrong.pw")
kh_must_fail 4 -- "$KEYHOLD" enroll cam --est "$KH_ESTD_URL" \
    --server-ca "$KH_ESTD_DIR/tls-ca.pem" --ca "$KH_ESTD_DIR/ca.pem" \
    --user dev1 --password-file "$T/wrong.pw"
kh_expect_output "authentication"
[ ! -e "$KEYHOLD_STATE_DIR/cam/current" ] || kh_fail "something was installed"

kh_log "EST server not trusted (wrong --server-ca): refused"
kh_test_ca "$T/otherca"
kh_must_fail 4 -- "$KEYHOLD" enroll cam --server-ca "$T/otherca/ca.pem" \
    --user dev1 --password-file "$KH_ESTD_DIR/dev1.pw"

kh_log "enrolment with basic auth"
kh_est_enroll cam >"$T/enroll.out" 2>&1 || { cat "$T/enroll.out"; kh_fail "enroll"; }
cat "$T/enroll.out"
grep -q "issued /CN=cam1.example .* to user dev1" "$KH_ESTD_DIR/estd.log" \
    || kh_fail "estd did not log the issue to dev1"
openssl verify -CAfile "$KH_ESTD_DIR/ca.pem" "$KEYHOLD_STATE_DIR/cam/cert.pem" >/dev/null \
    || kh_fail "installed cert does not chain to the EST CA"
openssl x509 -in "$KEYHOLD_STATE_DIR/cam/cert.pem" -noout -ext subjectAltName \
    | kh_grepq "IP Address:127.0.0.1" || kh_fail "SAN not copied"
kh_est_works cam
"$KEYHOLD" status cam --json >"$T/st.json"
jq -e '.[0].state == "ok" or .state == "ok"' "$T/st.json" >/dev/null \
    || { cat "$T/st.json"; kh_fail "status not ok"; }

kh_log "settings stored for later runs; the password only as a file path"
grep -q "^est-url = $KH_ESTD_URL/.well-known/est" "$KEYHOLD_CONF_DIR/cam.conf" || kh_fail "est-url"
grep -q "^est-password-file = " "$KEYHOLD_CONF_DIR/cam.conf" || kh_fail "password file"
for f in "$KEYHOLD_CONF_DIR/cam.conf" "$KH_ESTD_DIR/estd.log" "$KEYHOLD_STATE_DIR/reports.jsonl" \
         "$KEYHOLD_STATE_DIR/audit.log" "$T/enroll.out"; do
    kh_no_secrets "$f" secret-dev1
done
grep -q '"op":"enroll".*"outcome":"ok"' "$KEYHOLD_STATE_DIR/reports.jsonl" || kh_fail "no report line"

kh_log "pinning by fingerprint works as well, a wrong fingerprint is refused"
kh_est_identity cam2 cam2.example
fp=$(openssl x509 -in "$KH_ESTD_DIR/ca.pem" -noout -fingerprint -sha256 | cut -d= -f2)
kh_must_fail 2 -- "$KEYHOLD" enroll cam2 --est "$KH_ESTD_URL" --server-ca "$KH_ESTD_DIR/tls-ca.pem" \
    --ca-fingerprint "sha256:$(printf '%064d' 0)" --user dev1 --password-file "$KH_ESTD_DIR/dev1.pw"
kh_expect_output "fingerprint"
[ ! -e "$KEYHOLD_STATE_DIR/cam2/current" ] || kh_fail "cam2 installed with a wrong pin"
"$KEYHOLD" enroll cam2 --ca-fingerprint "sha256:$fp" >/dev/null || kh_fail "enroll by fingerprint"
kh_est_works cam2
kh_log "ok"
