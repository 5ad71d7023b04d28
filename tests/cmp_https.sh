#!/bin/bash
# SPDX-License-Identifier: MIT
# CMP over HTTPS: nginx on 127.0.0.1 terminates TLS in front of `openssl
# cmp`'s mock server; keyhold verifies the TLS server against --server-ca
# (and its name), then enrols with the shared secret. With a --server-ca
# that did not issue the TLS certificate the handshake is refused with a
# clear error and nothing changes.
. "$(dirname "$0")/lib.sh"

kh_enrol_appliance /usr/sbin/nginx
(umask 077; printf 'cmp-secret-9' >"$T/cmp.secret")
kh_test_ca "$T/ca"
kh_test_ca "$T/tlsca"
kh_test_ca "$T/otherca"
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/tls.key" \
    -subj "/CN=localhost" -out "$T/tls.csr" 2>/dev/null
kh_ca_sign "$T/tlsca" "$T/tls.csr" "$T/tls.pem" "DNS:localhost,IP:127.0.0.1"

"$KEYHOLD" provision cam --token app --alg ec-p256 --host cam1.example \
    --pin-file "$T/app.pin" --csr-out "$T/cam.csr" >/dev/null || kh_fail "provision"
kh_ca_sign "$T/ca" "$T/cam.csr" "$T/cam.pem" DNS:cam1.example

cport=$(kh_free_port)
kh_bg openssl cmp -config "" -port "$cport" -srv_ref keyhold-cmp \
    -srv_secret pass:cmp-secret-9 -rsp_cert "$T/cam.pem" >"$T/cmp-server.log" 2>&1
kh_wait_port "$cport"
tport=$(kh_free_port)
while [ "$tport" = "$cport" ]; do tport=$(kh_free_port); done
# Started by kh_nginx_start, not kh_bg: kh_bg's cleanup SIGKILLs the master
# right after SIGTERM, which left the worker running after the test.
KH_NGINX_LOCATION="proxy_pass http://127.0.0.1:$cport;" \
    kh_nginx_start "$tport" "$T/tls.pem" "$T/tls.key" "" 1
URL=https://127.0.0.1:$tport/pkix/

kh_log "TLS server not issued by --server-ca: refused, nothing installed"
kh_must_fail 4 -- "$KEYHOLD" enroll cam --cmp "$URL" --server-ca "$T/otherca/ca.pem" \
    --ca "$T/ca/ca.pem" --ref keyhold-cmp --secret-file "$T/cmp.secret"
kh_expect_output "TLS"
kh_expect_output "--server-ca"
[ ! -e "$KEYHOLD_STATE_DIR/cam/current" ] || kh_fail "something was installed"

kh_log "ir over HTTPS with the shared secret"
"$KEYHOLD" enroll cam --cmp "$URL" --server-ca "$T/tlsca/ca.pem" --ca "$T/ca/ca.pem" \
    --ref keyhold-cmp --secret-file "$T/cmp.secret" >"$T/enroll.out" 2>&1 \
    || { cat "$T/enroll.out" "$T/cmp-server.log"; kh_fail "enroll over https"; }
cmp -s <(openssl x509 -in "$KEYHOLD_STATE_DIR/cam/cert.pem" -outform DER) \
       <(openssl x509 -in "$T/cam.pem" -outform DER) || kh_fail "not the issued certificate"
"$KEYHOLD" verify cam >/dev/null || kh_fail "keyhold verify cam"
kh_log "ok"
