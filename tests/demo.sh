#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# `make demo`: keyhold end to end on this machine, nothing outside the
# checkout touched (state in ./demo-state, re-created on every run). A
# SoftHSM token stands in for the appliance's secure element; `keyhold`
# initialises it, provisions an identity for localhost (key generated in the
# token, CSR signed there), a demo CA signs the request, `keyhold install`
# checks and installs the certificate; `openssl s_server` then serves TLS
# with only a key *file* (the key reference key.pem) and keyhold loaded from
# openssl.cnf, and s_client and curl connect and verify.
. "$(dirname "$0")/lib.sh"

STATE=$KH_TOP/demo-state
say() { printf '\n>> %s\n' "$*"; }
step() { printf '   %s\n' "$*"; }
run() { printf '   $ %s\n' "$*"; "$@" 2>&1 | sed 's/^/     /'; return "${PIPESTATUS[0]}"; }

kh_need "$BUILD/keyhold.so" "$KEYHOLD"

say "Preparing a fresh state directory: $STATE"
rm -rf "$STATE"
mkdir -p "$STATE/tokens" "$STATE/ca"
chmod 0700 "$STATE"
cat >"$STATE/softhsm2.conf" <<CONF
directories.tokendir = $STATE/tokens
objectstore.backend = file
log.level = ERROR
slots.removable = false
library.reset_on_fork = true
CONF
export SOFTHSM2_CONF=$STATE/softhsm2.conf
export KEYHOLD_CONF_DIR=$STATE/conf KEYHOLD_STATE_DIR=$STATE/state
unset KEYHOLD_PIN_FILE CREDENTIALS_DIRECTORY || true
(umask 077; openssl rand -hex 8 | tr -d '\n' >"$STATE/user.pin"
 openssl rand -hex 8 | tr -d '\n' >"$STATE/so.pin")
step "SoftHSM keeps its token files in $STATE/tokens"
step "PINs are random, in $STATE/user.pin and so.pin (mode 0600)"

say "Initialising a SoftHSM token 'demo' (a software stand-in for the hardware)"
run "$KEYHOLD" token init --label demo --pin-file "$STATE/user.pin" \
    --so-pin-file "$STATE/so.pin" || kh_fail "token init failed"

say "Provisioning identity 'web' for localhost: key generated inside the token"
run "$KEYHOLD" provision web --token demo --alg ec-p256 --host localhost \
    --pin-file "$STATE/user.pin" --csr-out "$STATE/web.csr" || kh_fail "provision failed"
step "the private key is sensitive and not extractable; the CSR was signed in the token"

say "A demo CA signs the request (software CA, for this demo only)"
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$STATE/ca/ca.key" 2>/dev/null
openssl req -new -x509 -key "$STATE/ca/ca.key" -subj "/CN=keyhold demo CA" -days 30 \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" -out "$STATE/ca/ca.pem" 2>/dev/null
cat >"$STATE/ca/server.ext" <<EXT
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost
EXT
openssl x509 -req -in "$STATE/web.csr" -CA "$STATE/ca/ca.pem" -CAkey "$STATE/ca/ca.key" \
    -CAcreateserial -days 7 -extfile "$STATE/ca/server.ext" -out "$STATE/web.pem" 2>/dev/null \
    || kh_fail "the demo CA could not sign the request"
step "$(openssl x509 -in "$STATE/web.pem" -noout -subject -issuer | tr '\n' ' ')"

say "Installing the certificate (key match, chain, host name, validity checked first)"
run "$KEYHOLD" install web "$STATE/web.pem" --ca "$STATE/ca/ca.pem" || kh_fail "install failed"
run "$KEYHOLD" status web || kh_fail "status is not ok"
run "$KEYHOLD" verify web || kh_fail "verify failed"
W=$KEYHOLD_STATE_DIR/web
step "servers use the stable paths $W/cert.pem, fullchain.pem, key.pem"
step "key.pem is a key reference: it names the key and holds no key material:"
sed 's/^/     | /' "$W/key.pem"

say "Loading keyhold into OpenSSL from an openssl.cnf (no application changes)"
cat >"$STATE/openssl.cnf" <<CNF
openssl_conf = openssl_init
[openssl_init]
providers = provider_sect
[provider_sect]
default = default_sect
keyhold = keyhold_sect
[default_sect]
activate = 1
[keyhold_sect]
module = $BUILD/keyhold.so
activate = 1
pin-source = file:$STATE/user.pin
CNF
sed 's/^/     | /' "$STATE/openssl.cnf"

PORT=8443
if [ -n "$(ss -Htln "sport = :$PORT")" ]; then PORT=$(kh_free_port); fi
say "Starting openssl s_server on 127.0.0.1:$PORT with -key key.pem"
OPENSSL_CONF=$STATE/openssl.cnf kh_s_server "$PORT" -cert "$W/cert.pem" -key "$W/key.pem"
step "listening; every TLS handshake is signed inside the token"

say "Connecting: openssl s_client -verify_return_error -verify_hostname localhost"
openssl s_client -connect "127.0.0.1:$PORT" -servername localhost -verify_return_error \
    -verify_hostname localhost -CAfile "$STATE/ca/ca.pem" </dev/null >"$STATE/s_client.log" 2>&1 \
    || { cat "$STATE/s_client.log"; kh_fail "s_client could not connect"; }
grep -q "Verify return code: 0 (ok)" "$STATE/s_client.log" || kh_fail "verification failed"
proto=$(sed -n 's/^New, \(TLSv[0-9.]*\), Cipher is .*/\1/p' "$STATE/s_client.log" | head -1)
cipher=$(sed -n 's/^New, TLSv[0-9.]*, Cipher is //p' "$STATE/s_client.log" | head -1)
sigtype=$(sed -n 's/^Peer signature type: *//p' "$STATE/s_client.log" | head -1)
step "handshake done: ${proto:-TLS}, ${cipher:-?}, server signature ${sigtype:-?}"
step "certificate chain verified against the demo CA; host name localhost matches"

say "Connecting: curl --cacert ca.pem https://localhost:$PORT/"
code=$(curl -sS --max-time 20 --cacert "$STATE/ca/ca.pem" --resolve "localhost:$PORT:127.0.0.1" \
    -o "$STATE/curl.out" -w '%{http_code}' "https://localhost:$PORT/") \
    || kh_fail "curl could not connect"
step "HTTP $code over verified TLS"

say "Shutting down"
kill "$KH_LAST_PID" 2>/dev/null || true
wait "$KH_LAST_PID" 2>/dev/null || true
step "s_server stopped; the state stays in $STATE for a look (the next run wipes it)"

cat <<SUMMARY

What happened: keyhold generated a key inside a SoftHSM token, had the token
sign a certificate request, checked and installed the certificate the demo CA
issued, and openssl s_server served TLS knowing only a key *file* (key.pem, a
reference to the token key) with the keyhold provider loaded from openssl.cnf.
openssl s_client and curl verified the certificate chain and the host name.
The private key never left the token.
SUMMARY
