#!/bin/bash
# SPDX-License-Identifier: MIT
# Re-enrolment authenticated by the identity's own hardware key over TLS
# client auth (keyhold renew and, as interop, openssl s_client with the
# identity's PEM key reference), then rekey: a new key in the token, the old one destroyed
# once the new identity works; and the two-step offline rekey.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/est_lib.sh"

kh_est_cam --san ip:127.0.0.1 --role recording
d=$KH_ESTD_DIR
fp1=$(kh_est_cert_fp cam)
pub1=$(openssl x509 -in "$KEYHOLD_STATE_DIR/cam/cert.pem" -noout -pubkey)
p11keys() {
    pkcs11-tool --module "$SOFTHSM_MODULE" --token-label app --login --pin 1111 \
        --list-objects --type privkey 2>/dev/null | grep -c "label: *keyhold:cam:" || true
}

kh_log "renew when not due leaves it alone"
"$KEYHOLD" renew cam | tee "$T/r.out"
grep -q "not due" "$T/r.out" || kh_fail "renewed although not due"
[ "$(kh_est_cert_fp cam)" = "$fp1" ] || kh_fail "cert changed"

kh_log "renew --force: simplereenroll authenticated by the hardware key"
"$KEYHOLD" renew cam --force || kh_fail "renew --force"
grep -q "simplereenroll -> 200 issued /CN=cam1.example .* to /CN=cam1.example" "$d/estd.log" \
    || { cat "$d/estd.log"; kh_fail "estd did not see the client certificate"; }
[ "$(kh_est_cert_fp cam)" != "$fp1" ] || kh_fail "no new certificate"
[ "$(openssl x509 -in "$KEYHOLD_STATE_DIR/cam/cert.pem" -noout -pubkey)" = "$pub1" ] \
    || kh_fail "same-key renewal changed the key"
kh_est_works cam

kh_log "interop: openssl s_client authenticates with the PEM key reference and re-enrols"
"$KEYHOLD" csr cam -o "$T/cam.csr" >/dev/null || kh_fail "keyhold csr"
openssl req -in "$T/cam.csr" -outform DER | base64 >"$T/cam.b64"
{
    printf 'POST /.well-known/est/simplereenroll HTTP/1.1\r\nHost: localhost\r\n'
    printf 'Content-Type: application/pkcs10\r\nContent-Length: %d\r\nConnection: close\r\n\r\n' \
        "$(stat -c %s "$T/cam.b64")"
    cat "$T/cam.b64"
} >"$T/req.http"
before=$(grep -c "simplereenroll -> 200" "$d/estd.log")
cnf=$(KH_CNF_EXTRA="pin-source = file:$T/app.pin" kh_openssl_cnf last)
OPENSSL_CONF=$cnf openssl s_client -quiet -connect "127.0.0.1:$KH_ESTD_PORT" \
    -servername localhost -verify_return_error -CAfile "$d/tls-ca.pem" \
    -cert "$KEYHOLD_STATE_DIR/cam/cert.pem" -key "$KEYHOLD_STATE_DIR/cam/key.pem" \
    <"$T/req.http" >"$T/resp.http" 2>"$T/s_client.err" || true
grep -q "^HTTP/1.1 200" "$T/resp.http" || { cat "$T/s_client.err" "$T/resp.http"; kh_fail "s_client re-enrolment"; }
[ "$(grep -c "simplereenroll -> 200" "$d/estd.log")" -gt "$before" ] || kh_fail "estd did not issue"
sed '1,/^\r$/d' "$T/resp.http" | base64 -d | openssl pkcs7 -inform DER -print_certs -out "$T/sc.pem" \
    || kh_fail "s_client reply is not PKCS#7"
[ "$(openssl x509 -in "$T/sc.pem" -noout -pubkey)" = "$pub1" ] || kh_fail "s_client cert for another key"

kh_log "rekey: a new key in the token; the old one kept for the grace period"
[ "$(p11keys)" = 1 ] || kh_fail "expected one key before rekey"
"$KEYHOLD" rekey cam 2>"$T/rk.err" || { cat "$T/rk.err"; kh_fail "rekey"; }
grep -q "kept for 3600 s (rekey-grace)" "$T/rk.err" || kh_fail "no word about the grace period"
pub2=$(openssl x509 -in "$KEYHOLD_STATE_DIR/cam/cert.pem" -noout -pubkey)
[ "$pub2" != "$pub1" ] || kh_fail "rekey kept the key"
[ "$(p11keys)" = 2 ] || kh_fail "old key not kept for servers that have not reloaded"
kh_est_works cam
kh_log "a renew run within the grace keeps it, one after it destroys it"
"$KEYHOLD" renew cam >/dev/null || kh_fail "renew (not due)"
[ "$(p11keys)" = 2 ] || kh_fail "old key destroyed within the grace period"
faketime -f "+2h" "$KEYHOLD" renew cam >/dev/null || kh_fail "renew after the grace"
[ "$(p11keys)" = 1 ] || kh_fail "old key not destroyed after the grace ($(p11keys) keys)"
grep -q '"op":"key-destroy".*replaced by rekey' "$KEYHOLD_STATE_DIR/audit.log" || kh_fail "no audit of the destruction"
kh_est_works cam
grep -q '"op":"rekey".*"outcome":"ok"' "$KEYHOLD_STATE_DIR/reports.jsonl" || kh_fail "no rekey report"

kh_log "offline rekey: CSR for a pending key, the old identity keeps serving"
"$KEYHOLD" rekey cam --csr-out "$T/r1.csr" || kh_fail "rekey --csr-out"
"$KEYHOLD" rekey cam --csr-out "$T/r2.csr" || kh_fail "rekey --csr-out again"
[ "$(openssl req -in "$T/r1.csr" -noout -pubkey)" = "$(openssl req -in "$T/r2.csr" -noout -pubkey)" ] \
    || kh_fail "second run made another key"
[ "$(openssl x509 -in "$KEYHOLD_STATE_DIR/cam/cert.pem" -noout -pubkey)" = "$pub2" ] \
    || kh_fail "the identity changed before install"
kh_est_works cam
printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=DNS:cam1.example,IP:127.0.0.1\n' >"$T/ext"
openssl x509 -req -in "$T/r2.csr" "${KH_PROV[@]}" -CA "$d/ca.pem" -CAkey "$KH_ESTD_CA_KEY" \
    -CAcreateserial -days 30 -extfile "$T/ext" -out "$T/r.pem" 2>/dev/null || kh_fail "CA signing"
"$KEYHOLD" install cam "$T/r.pem" --ca "$d/ca.pem" >/dev/null || kh_fail "install for the pending key"
[ "$(openssl x509 -in "$KEYHOLD_STATE_DIR/cam/cert.pem" -noout -pubkey)" = \
  "$(openssl req -in "$T/r2.csr" -noout -pubkey)" ] || kh_fail "not switched to the pending key"
kh_est_works cam

kh_log "offline rekey of an identity that never spoke EST (air-gapped site)"
kh_est_identity air air.example
printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=DNS:air.example\n' >"$T/ext-air"
openssl x509 -req -in "$KEYHOLD_STATE_DIR/air/request.csr" "${KH_PROV[@]}" -CA "$d/ca.pem" \
    -CAkey "$KH_ESTD_CA_KEY" -CAcreateserial -days 30 -extfile "$T/ext-air" -out "$T/air1.pem" 2>/dev/null
"$KEYHOLD" install air "$T/air1.pem" --ca "$d/ca.pem" >/dev/null || kh_fail "install air"
kh_estd_stop
"$KEYHOLD" rekey air --csr-out "$T/air.csr" || kh_fail "offline rekey needs no EST server"
openssl req -in "$T/air.csr" -noout -verify 2>/dev/null || kh_fail "air CSR does not verify"
openssl x509 -req -in "$T/air.csr" "${KH_PROV[@]}" -CA "$d/ca.pem" -CAkey "$KH_ESTD_CA_KEY" \
    -CAcreateserial -days 30 -extfile "$T/ext-air" -out "$T/air2.pem" 2>/dev/null
"$KEYHOLD" install air "$T/air2.pem" --ca "$d/ca.pem" >/dev/null || kh_fail "install air rekeyed"
kh_est_works air
kh_log "ok"
