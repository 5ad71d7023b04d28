#!/bin/bash
# SPDX-License-Identifier: MIT
# CMP enrolment against `openssl cmp` in its mock-server mode on loopback:
# an initial request (ir) protected by a reference + shared secret, with the
# proof of possession signed by the SoftHSM key; a wrong secret refused with
# a clear error and nothing changed; renewal and rekey as key update (kur)
# requests signed by the current hardware key. The ir is answered only
# after polling (pollReq/pollRep). The mock server hands out a
# fixed certificate (-rsp_cert), which the test CA issued for the CSR the
# identity's key made.
. "$(dirname "$0")/lib.sh"

kh_enrol_appliance
(umask 077; printf 'cmp-secret-42' >"$T/cmp.secret"; printf 'not-the-secret' >"$T/wrong.secret")
kh_test_ca "$T/ca"

# A CMP server signing its responses (for kur): a certificate from the CA.
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/srv.key" \
    -subj "/CN=keyhold CMP test server" -out "$T/srv.csr" 2>/dev/null
kh_ca_sign "$T/ca" "$T/srv.csr" "$T/srv.pem" DNS:localhost

# openssl 3.0's mock server answers a kur only when its oldCertID names the
# certificate it hands out (issuer + serial): the renewal certificates here
# therefore reuse the serial of the certificate they replace.
ca_sign_as() {
    local csr=$1 out=$2 old=$3 serial
    serial=$(openssl x509 -in "$old" -noout -serial | cut -d= -f2)
    KH_SAN="DNS:cam1.example,IP:127.0.0.1" openssl x509 -req -in "$csr" \
        -CA "$T/ca/ca.pem" -CAkey "$T/ca/ca.key" -set_serial "0x$serial" -days 8 \
        -extfile "$T/ca/ext-server.cnf" -out "$out" 2>/dev/null
}

# cmp_server RSP_CERT mac|sig: the mock server on a free port ($CMP_URL)
CMP_PID=
cmp_server() {
    local rsp=$1 mode=$2 port
    if [ -n "$CMP_PID" ]; then
        kill "$CMP_PID" 2>/dev/null || true
        wait "$CMP_PID" 2>/dev/null || true
    fi
    port=$(kh_free_port)
    if [ "$mode" = mac ]; then
        # the CA makes the client poll twice before it answers
        kh_bg openssl cmp -config "" -port "$port" -srv_ref keyhold-cmp \
            -srv_secret pass:cmp-secret-42 -rsp_cert "$rsp" \
            -rsp_extracerts "$T/ca/ca.pem" -poll_count 2 -check_after 0 \
            >>"$T/cmp-server.log" 2>&1
    else
        kh_bg openssl cmp -config "" -port "$port" -srv_cert "$T/srv.pem" \
            -srv_key "$T/srv.key" -srv_trusted "$T/ca/ca.pem" -rsp_cert "$rsp" \
            >>"$T/cmp-server.log" 2>&1
    fi
    CMP_PID=$KH_LAST_PID
    kh_wait_port "$port"
    CMP_URL=http://127.0.0.1:$port/pkix/
    if [ -f "$KEYHOLD_CONF_DIR/cam.conf" ]; then
        sed -i "s|^cmp-url = .*|cmp-url = $CMP_URL|" "$KEYHOLD_CONF_DIR/cam.conf"
    fi
}

kh_log "identity: key in SoftHSM, CSR signed by it, certificate from the test CA"
"$KEYHOLD" provision cam --token app --alg ec-p256 --host cam1.example \
    --san ip:127.0.0.1 --pin-file "$T/app.pin" --csr-out "$T/cam.csr" >/dev/null \
    || kh_fail "provision"
kh_ca_sign "$T/ca" "$T/cam.csr" "$T/cam1.pem" "DNS:cam1.example,IP:127.0.0.1"
cmp_server "$T/cam1.pem" mac

kh_log "wrong shared secret: the exchange fails, clear error, nothing installed"
kh_must_fail 4 -- "$KEYHOLD" enroll cam --cmp "$CMP_URL" --ca "$T/ca/ca.pem" \
    --ref keyhold-cmp --secret-file "$T/wrong.secret"
kh_expect_output "secret"
kh_expect_output "unchanged"
[ ! -e "$KEYHOLD_STATE_DIR/cam/current" ] || kh_fail "something was installed"
kh_no_secrets "$T/must_fail.out" not-the-secret

kh_log "ir with the shared secret: installed and verified"
"$KEYHOLD" enroll cam --cmp "$CMP_URL" --ca "$T/ca/ca.pem" --ref keyhold-cmp \
    --secret-file "$T/cmp.secret" >"$T/enroll.out" 2>&1 \
    || { cat "$T/enroll.out" "$T/cmp-server.log"; kh_fail "enroll over CMP"; }
cat "$T/enroll.out"
cmp -s <(openssl x509 -in "$KEYHOLD_STATE_DIR/cam/cert.pem" -outform DER) \
       <(openssl x509 -in "$T/cam1.pem" -outform DER) || kh_fail "not the issued certificate"
"$KEYHOLD" verify cam >/dev/null || kh_fail "keyhold verify cam"
grep -q "^enrol-protocol = cmp" "$KEYHOLD_CONF_DIR/cam.conf" || kh_fail "enrol-protocol"
grep -q "^cmp-ref = keyhold-cmp" "$KEYHOLD_CONF_DIR/cam.conf" || kh_fail "cmp-ref"
for f in "$KEYHOLD_CONF_DIR/cam.conf" "$KEYHOLD_STATE_DIR/reports.jsonl" \
         "$KEYHOLD_STATE_DIR/audit.log" "$T/enroll.out"; do
    [ -e "$f" ] && kh_no_secrets "$f" cmp-secret-42
done
gen1=$(readlink "$KEYHOLD_STATE_DIR/cam/current")

kh_log "renewal: kur signed by the current key, the server checks it against the CA"
ca_sign_as "$T/cam.csr" "$T/cam2.pem" "$T/cam1.pem"
cmp_server "$T/cam2.pem" sig
"$KEYHOLD" renew cam --force >"$T/renew.out" 2>&1 \
    || { cat "$T/renew.out" "$T/cmp-server.log"; kh_fail "renew over CMP (kur)"; }
cmp -s <(openssl x509 -in "$KEYHOLD_STATE_DIR/cam/cert.pem" -outform DER) \
       <(openssl x509 -in "$T/cam2.pem" -outform DER) || kh_fail "renewal not installed"
[ "$(readlink "$KEYHOLD_STATE_DIR/cam/current")" != "$gen1" ] || kh_fail "no new generation"
"$KEYHOLD" verify cam >/dev/null || kh_fail "verify after renew"

kh_log "a kur the server cannot verify (not our CA): refused, identity unchanged"
kh_test_ca "$T/otherca"
gen2=$(readlink "$KEYHOLD_STATE_DIR/cam/current")
kill "$CMP_PID" 2>/dev/null || true
wait "$CMP_PID" 2>/dev/null || true
port=$(kh_free_port)
kh_bg openssl cmp -config "" -port "$port" -srv_cert "$T/srv.pem" -srv_key "$T/srv.key" \
    -srv_trusted "$T/otherca/ca.pem" -rsp_cert "$T/cam2.pem" >>"$T/cmp-server.log" 2>&1
CMP_PID=$KH_LAST_PID
kh_wait_port "$port"
sed -i "s|^cmp-url = .*|cmp-url = http://127.0.0.1:$port/pkix/|" "$KEYHOLD_CONF_DIR/cam.conf"
kh_must_fail 4 -- "$KEYHOLD" renew cam --force
kh_expect_output "unchanged"
[ "$(readlink "$KEYHOLD_STATE_DIR/cam/current")" = "$gen2" ] || kh_fail "identity changed"
"$KEYHOLD" verify cam >/dev/null || kh_fail "verify after refused renew"

kh_log "rekey: new key in hardware, kur signed by the old key"
"$KEYHOLD" rekey cam --csr-out "$T/cam-new.csr" >/dev/null 2>&1 || kh_fail "rekey --csr-out"
ca_sign_as "$T/cam-new.csr" "$T/cam3.pem" "$T/cam2.pem"
cmp_server "$T/cam3.pem" sig
"$KEYHOLD" rekey cam >"$T/rekey.out" 2>&1 \
    || { cat "$T/rekey.out" "$T/cmp-server.log"; kh_fail "rekey over CMP (kur)"; }
cmp -s <(openssl x509 -in "$KEYHOLD_STATE_DIR/cam/cert.pem" -outform DER) \
       <(openssl x509 -in "$T/cam3.pem" -outform DER) || kh_fail "rekeyed cert not installed"
[ "$(openssl x509 -in "$T/cam3.pem" -noout -pubkey)" != \
  "$(openssl x509 -in "$T/cam2.pem" -noout -pubkey)" ] || kh_fail "rekey kept the key"
"$KEYHOLD" verify cam >/dev/null || kh_fail "verify after rekey"
kh_log "ok"
