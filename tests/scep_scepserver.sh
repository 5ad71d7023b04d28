#!/bin/bash
# SPDX-License-Identifier: MIT
# SCEP interop against Debian's scepserver (an independent implementation)
# on 127.0.0.1 with its own depot and challenge, -allowrenew 0: the
# exchange (GetCACaps, GetCACert, PKCSReq signed by a transient certificate
# for the SoftHSM RSA key, CertRep decrypted in the token) succeeds, and
# keyhold refuses the client-auth-only certificate it issues for lacking
# server authentication, identity unchanged. A wrong challenge is refused
# with the failInfo named; EC and sign-only identities get a clear error.
. "$(dirname "$0")/lib.sh"

command -v scepserver >/dev/null || kh_fail "scepserver missing (Debian package scep, scripts/deps.sh)"
kh_enrol_appliance
(umask 077; printf 'scep-challenge-7' >"$T/challenge"; printf 'wrong-challenge' >"$T/wrong")

kh_log "scepserver: own depot (2048-bit CA), challenge, -allowrenew 0"
(cd "$T" && timeout 60 scepserver ca -init -depot "$T/depot" -keySize 2048 \
    -organization "keyhold SCEP interop" >/dev/null 2>&1) || kh_fail "scepserver ca -init"
port=$(kh_free_port)
kh_bg scepserver -depot "$T/depot" -port "$port" -challenge scep-challenge-7 \
    -allowrenew 0 >"$T/scepserver.log" 2>&1
kh_wait_port "$port"
URL=http://127.0.0.1:$port/scep
CAFP=sha256:$(openssl x509 -in "$T/depot/ca.pem" -noout -fingerprint -sha256 | cut -d= -f2 | tr -d :)

kh_log "EC identity: SCEP refused before any request, clearly"
"$KEYHOLD" provision ec --token app --alg ec-p256 --host cam1.example \
    --pin-file "$T/app.pin" >/dev/null || kh_fail "provision ec"
kh_must_fail 1 -- "$KEYHOLD" enroll ec --scep "$URL" --challenge-file "$T/challenge" \
    --ca-fingerprint "$CAFP"
kh_expect_output "RSA"

kh_log "sign-only RSA identity: refused, asks for --allow-decrypt"
"$KEYHOLD" provision so --token app --alg rsa-2048 --host cam1.example \
    --pin-file "$T/app.pin" >/dev/null || kh_fail "provision sign-only"
kh_must_fail 1 -- "$KEYHOLD" enroll so --scep "$URL" --challenge-file "$T/challenge" \
    --ca-fingerprint "$CAFP"
kh_expect_output "allow-decrypt"

kh_log "RSA identity with --allow-decrypt"
"$KEYHOLD" provision cam --token app --alg rsa-2048 --host cam1.example \
    --san ip:127.0.0.1 --allow-decrypt --pin-file "$T/app.pin" >/dev/null \
    || kh_fail "provision cam"

kh_log "wrong pin: refused, nothing installed"
kh_must_fail 2 -- "$KEYHOLD" enroll cam --scep "$URL" --challenge-file "$T/challenge" \
    --ca-fingerprint "sha256:$(printf '%064d' 0)"
kh_expect_output "pinned CA"

kh_log "wrong challenge: FAILURE with its failInfo, nothing installed"
kh_must_fail 4 -- "$KEYHOLD" enroll cam --scep "$URL" --challenge-file "$T/wrong" \
    --ca-fingerprint "$CAFP"
kh_expect_output "FAILURE"
kh_expect_output "badRequest"
kh_expect_output "unchanged"
[ ! -e "$KEYHOLD_STATE_DIR/cam/current" ] || kh_fail "something was installed"
kh_no_secrets "$T/must_fail.out" wrong-challenge

kh_log "right challenge: exchange succeeds, client-auth-only certificate refused"
kh_must_fail 2 -- "$KEYHOLD" enroll cam --scep "$URL" --challenge-file "$T/challenge" \
    --ca-fingerprint "$CAFP"
kh_expect_output "serverAuth"
kh_expect_output "unchanged"
[ ! -e "$KEYHOLD_STATE_DIR/cam/current" ] || kh_fail "something was installed"
# the server did issue it: the exchange itself worked
ls "$T/depot"/*.pem | kh_grepq -v 'ca.pem' || kh_fail "scepserver issued nothing"
for f in "$KEYHOLD_CONF_DIR/cam.conf" "$T/must_fail.out"; do
    kh_no_secrets "$f" scep-challenge-7
done
grep -q "^enrol-protocol = scep" "$KEYHOLD_CONF_DIR/cam.conf" || kh_fail "enrol-protocol"
kh_log "ok"
