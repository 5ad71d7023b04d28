#!/bin/bash
# SPDX-License-Identifier: MIT
# Which CA keyhold accepts from /cacerts: the pinned root publishing a new
# issuing intermediate is followed (the chain is installed); an unrelated CA
# is refused by name with the identity unchanged, until an operator enrols
# again with the new --ca; with only --server-ca the CA is pinned by
# fingerprint, loudly.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/est_lib.sh"

kh_est_cam
d=$KH_ESTD_DIR

kh_log "the pinned root now issues through an intermediate: followed"
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$T/int.key" 2>/dev/null
openssl req -new -key "$T/int.key" -subj "/CN=keyhold EST issuing CA 2" -out "$T/int.csr"
printf 'basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\n' >"$T/int.ext"
openssl x509 -req -in "$T/int.csr" "${KH_PROV[@]}" -CA "$d/ca.pem" -CAkey "$KH_ESTD_CA_KEY" \
    -CAcreateserial -days 365 -extfile "$T/int.ext" -out "$T/int.pem" 2>/dev/null \
    || kh_fail "root (token) could not sign the intermediate"
kh_estd_stop
KH_ESTD_CA_KEY_SAVED=$KH_ESTD_CA_KEY
kh_bg "$KEYHOLD_ESTD" --listen "127.0.0.1:$KH_ESTD_PORT" --tls-cert "$d/tls.pem" --tls-key "$d/tls.key" \
    --ca-cert "$T/int.pem" --ca-key "$T/int.key" --ca-chain "$d/ca.pem" \
    --htpasswd "$d/htpasswd" --log "$d/estd.log"
KH_ESTD_PID=$KH_LAST_PID
kh_wait_port "$KH_ESTD_PORT"
"$KEYHOLD" renew cam --force >/dev/null || kh_fail "renew through the intermediate"
openssl x509 -in "$KEYHOLD_STATE_DIR/cam/cert.pem" -noout -issuer | kh_grepq "issuing CA 2" \
    || kh_fail "not issued by the intermediate"
grep -q "BEGIN CERTIFICATE" "$KEYHOLD_STATE_DIR/cam/chain.pem" || kh_fail "intermediate not installed"
openssl verify -CAfile "$d/ca.pem" -untrusted "$KEYHOLD_STATE_DIR/cam/chain.pem" \
    "$KEYHOLD_STATE_DIR/cam/cert.pem" >/dev/null || kh_fail "installed chain does not verify"
kh_est_works cam
fp=$(kh_est_cert_fp cam)

kh_log "an unrelated CA behind the same EST server: refused, identity unchanged"
kh_estd_stop
kh_test_ca "$T/other"
kh_bg "$KEYHOLD_ESTD" --listen "127.0.0.1:$KH_ESTD_PORT" --tls-cert "$d/tls.pem" --tls-key "$d/tls.key" \
    --ca-cert "$T/other/ca.pem" --ca-key "$T/other/ca.key" --htpasswd "$d/htpasswd" --log "$d/estd.log"
KH_ESTD_PID=$KH_LAST_PID
kh_wait_port "$KH_ESTD_PORT"
kh_must_fail_clean 2 -- "$KEYHOLD" renew cam --force
kh_expect_output "pinned CA"
[ "$(kh_est_cert_fp cam)" = "$fp" ] || kh_fail "identity changed"
kh_est_works cam
kh_log "the operator moves the identity to the new CA on purpose"
"$KEYHOLD" enroll cam --ca "$T/other/ca.pem" >/dev/null || kh_fail "enroll with the new --ca"
openssl verify -CAfile "$T/other/ca.pem" "$KEYHOLD_STATE_DIR/cam/cert.pem" >/dev/null || kh_fail "not moved"
kh_est_works cam

kh_log "only --server-ca: the single CA of /cacerts is pinned by fingerprint, loudly"
kh_est_identity cam2 cam2.example
"$KEYHOLD" enroll cam2 --est "$KH_ESTD_URL" --server-ca "$d/tls-ca.pem" --user dev1 \
    --password-file "$d/dev1.pw" >/dev/null 2>"$T/tofu.err" || { cat "$T/tofu.err"; kh_fail "enroll cam2"; }
cat "$T/tofu.err"
want=$(openssl x509 -in "$T/other/ca.pem" -noout -fingerprint -sha256 | cut -d= -f2 | tr -d : | tr A-F a-f)
grep -q "trusting the CA" "$T/tofu.err" || kh_fail "not announced"
grep -q "^ca-fingerprint = sha256:$want" "$KEYHOLD_CONF_DIR/cam2.conf" || kh_fail "fingerprint not pinned"
kh_est_works cam2
kh_log "ok"
