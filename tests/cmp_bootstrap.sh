#!/bin/bash
# SPDX-License-Identifier: MIT
# CMP first enrolment signed by a factory bootstrap identity (its key in the
# token too) against `openssl cmp`'s mock server, which checks the signature
# against the test CA; the same with a server that does not trust that CA is
# refused with nothing changed, as is a request the CA rejects. Then a CA pinned only by fingerprint, found
# among the CA certificates of the ip (caPubs), and a wrong fingerprint
# refused.
. "$(dirname "$0")/lib.sh"

kh_enrol_appliance
(umask 077; printf 'cmp-secret-7' >"$T/cmp.secret")
kh_test_ca "$T/ca"
kh_test_ca "$T/otherca"
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/srv.key" \
    -subj "/CN=keyhold CMP test server" -out "$T/srv.csr" 2>/dev/null
kh_ca_sign "$T/ca" "$T/srv.csr" "$T/srv.pem" DNS:localhost

# identity NAME HOST: provisioned, its CSR signed by the test CA ($T/NAME.pem)
identity() {
    "$KEYHOLD" provision "$1" --token app --alg ec-p256 --host "$2" \
        --pin-file "$T/app.pin" --csr-out "$T/$1.csr" >/dev/null || kh_fail "provision $1"
    kh_ca_sign "$T/ca" "$T/$1.csr" "$T/$1.pem" "DNS:$2"
}
CMP_PID=
cmp_server() {
    local port
    if [ -n "$CMP_PID" ]; then
        kill "$CMP_PID" 2>/dev/null || true
        wait "$CMP_PID" 2>/dev/null || true
    fi
    port=$(kh_free_port)
    kh_bg openssl cmp -config "" -port "$port" "$@" >>"$T/cmp-server.log" 2>&1
    CMP_PID=$KH_LAST_PID
    kh_wait_port "$port"
    CMP_URL=http://127.0.0.1:$port/pkix/
}

kh_log "a factory bootstrap identity with a certificate from the CA"
identity factory factory.example
"$KEYHOLD" install factory "$T/factory.pem" --ca "$T/ca/ca.pem" >/dev/null \
    || kh_fail "install bootstrap cert"
identity cam cam1.example

kh_log "server does not trust the bootstrap's CA: refused, nothing installed"
cmp_server -srv_cert "$T/srv.pem" -srv_key "$T/srv.key" -srv_trusted "$T/otherca/ca.pem" \
    -rsp_cert "$T/cam.pem"
kh_must_fail 4 -- "$KEYHOLD" enroll cam --cmp "$CMP_URL" --ca "$T/ca/ca.pem" \
    --bootstrap factory
kh_expect_output "unchanged"
[ ! -e "$KEYHOLD_STATE_DIR/cam/current" ] || kh_fail "something was installed"

kh_log "ir signed by the bootstrap identity's hardware key"
cmp_server -srv_cert "$T/srv.pem" -srv_key "$T/srv.key" -srv_trusted "$T/ca/ca.pem" \
    -rsp_cert "$T/cam.pem"
"$KEYHOLD" enroll cam --cmp "$CMP_URL" --ca "$T/ca/ca.pem" --bootstrap factory \
    >"$T/enroll.out" 2>&1 || { cat "$T/enroll.out" "$T/cmp-server.log"; kh_fail "enroll"; }
cmp -s <(openssl x509 -in "$KEYHOLD_STATE_DIR/cam/cert.pem" -outform DER) \
       <(openssl x509 -in "$T/cam.pem" -outform DER) || kh_fail "not the issued certificate"
"$KEYHOLD" verify cam >/dev/null || kh_fail "keyhold verify cam"
"$KEYHOLD" verify factory >/dev/null || kh_fail "the bootstrap identity suffered"

kh_log "the CA rejects the request: its status text shown, nothing installed"
identity cam2 cam2.example
cmp_server -srv_ref keyhold-cmp -srv_secret pass:cmp-secret-7 -rsp_cert "$T/cam2.pem" \
    -pkistatus 2 -failure 25 -statusstring "device not registered"
kh_must_fail 4 -- "$KEYHOLD" enroll cam2 --cmp "$CMP_URL" --ref keyhold-cmp \
    --secret-file "$T/cmp.secret" --ca "$T/ca/ca.pem"
kh_expect_output "device not registered"
kh_expect_output "unchanged"
[ ! -e "$KEYHOLD_STATE_DIR/cam2/current" ] || kh_fail "cam2 installed after a rejection"
sed -i '/^ca = /d' "$KEYHOLD_CONF_DIR/cam2.conf"

kh_log "CA pinned by fingerprint, taken from the ip's caPubs"
cmp_server -srv_ref keyhold-cmp -srv_secret pass:cmp-secret-7 -rsp_cert "$T/cam2.pem" \
    -rsp_capubs "$T/ca/ca.pem"
kh_must_fail 2 -- "$KEYHOLD" enroll cam2 --cmp "$CMP_URL" --ref keyhold-cmp \
    --secret-file "$T/cmp.secret" --ca-fingerprint "sha256:$(printf '%064d' 0)"
kh_expect_output "fingerprint"
[ ! -e "$KEYHOLD_STATE_DIR/cam2/current" ] || kh_fail "cam2 installed with a wrong pin"
fp=$(openssl x509 -in "$T/ca/ca.pem" -noout -fingerprint -sha256 | cut -d= -f2 | tr -d :)
"$KEYHOLD" enroll cam2 --cmp "$CMP_URL" --ref keyhold-cmp --secret-file "$T/cmp.secret" \
    --ca-fingerprint "sha256:$fp" >"$T/enroll2.out" 2>&1 \
    || { cat "$T/enroll2.out" "$T/cmp-server.log"; kh_fail "enroll by fingerprint"; }
"$KEYHOLD" verify cam2 >/dev/null || kh_fail "keyhold verify cam2"
kh_log "ok"
