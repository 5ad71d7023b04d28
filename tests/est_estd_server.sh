#!/bin/bash
# SPDX-License-Identifier: MIT
# keyhold-estd as a server, driven by independent clients (curl, openssl):
# RFC 7030 resources and media types, basic auth, a bootstrap client
# certificate, --require-both, labels, size limits, methods, a client that
# sends nothing (timeout) while others are served, concurrent clients, and
# the CA key in a token signing every issued certificate.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/est_lib.sh"

kh_need "$BUILD/tests/kh-keyref"
kh_estd_setup
d=$KH_ESTD_DIR
kh_test_ca "$T/boot"                                  # factory bootstrap CA
kh_must_fail 1 -- "$KEYHOLD_ESTD" --listen 127.0.0.1:1 --no-such-option
kh_estd_start --client-ca "$T/boot/ca.pem" --timeout 2 --max-request 4096
base=$KH_ESTD_URL/.well-known/est
C=(curl -sS --max-time 20 --cacert "$d/tls-ca.pem")

# a CSR made by openssl for a software key (not the point here)
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/dev.key" \
    -subj "/CN=dev.example" -addext "subjectAltName=DNS:dev.example,IP:10.1.2.3" \
    -outform DER -out "$T/dev.csr" 2>/dev/null
base64 "$T/dev.csr" >"$T/dev.b64"

kh_log "cacerts: certs-only PKCS#7, base64, application/pkcs7-mime"
"${C[@]}" -D "$T/h" -o "$T/cacerts.b64" "$base/cacerts" || kh_fail "cacerts"
grep -qi '^Content-Type: application/pkcs7-mime' "$T/h" || kh_fail "cacerts content type"
grep -qi '^Content-Transfer-Encoding: base64' "$T/h" || kh_fail "cacerts encoding"
base64 -d "$T/cacerts.b64" | openssl pkcs7 -inform DER -print_certs -out "$T/cacerts.pem" \
    || kh_fail "cacerts is not PKCS#7"
cmp <(openssl x509 -in "$T/cacerts.pem" -outform DER) <(openssl x509 -in "$d/ca.pem" -outform DER) \
    || kh_fail "cacerts does not hold the CA"
"${C[@]}" -o /dev/null "$base/mylabel/cacerts" || kh_fail "label path"
[ "$("${C[@]}" -o /dev/null -w '%{http_code}' "$base/csrattrs")" = 204 ] || kh_fail "csrattrs"
[ "$("${C[@]}" -o /dev/null -w '%{http_code}' "$base/nothing")" = 404 ] || kh_fail "404"
[ "$("${C[@]}" -o /dev/null -w '%{http_code}' -X POST --data x "$base/cacerts")" = 405 ] || kh_fail "405"
[ "$("${C[@]}" -o /dev/null -w '%{http_code}' "$base/simpleenroll")" = 405 ] || kh_fail "GET enroll"

P=(-H "Content-Type: application/pkcs10" --data-binary @"$T/dev.b64")
kh_log "simpleenroll: no credentials -> 401 with a Basic challenge"
"${C[@]}" -D "$T/h" -o "$T/body" "${P[@]}" "$base/simpleenroll"
grep -q '^HTTP/1.1 401' "$T/h" || kh_fail "no 401"
grep -qi '^WWW-Authenticate: Basic' "$T/h" || kh_fail "no challenge"
kh_log "wrong password -> 401"
[ "$("${C[@]}" -o /dev/null -w '%{http_code}' -u dev1:nope "${P[@]}" "$base/simpleenroll")" = 401 ] \
    || kh_fail "wrong password accepted"

kh_log "basic auth -> 200, the token CA signed a certificate with the CSR's names"
"${C[@]}" -u "dev1:secret-dev1" -D "$T/h" -o "$T/issued.b64" "${P[@]}" "$base/simpleenroll"
grep -q '^HTTP/1.1 200' "$T/h" || { cat "$T/h" "$T/issued.b64"; kh_fail "enroll not 200"; }
base64 -d "$T/issued.b64" | openssl pkcs7 -inform DER -print_certs -out "$T/issued.pem"
openssl verify -CAfile "$d/ca.pem" "$T/issued.pem" >/dev/null || kh_fail "issued cert does not verify"
openssl x509 -in "$T/issued.pem" -noout -text >"$T/issued.txt"
grep -q "DNS:dev.example, IP Address:10.1.2.3" "$T/issued.txt" || kh_fail "SANs not copied"
grep -q "TLS Web Server Authentication" "$T/issued.txt" || kh_fail "no serverAuth"
grep -q "CA:FALSE" "$T/issued.txt" || kh_fail "not CA:FALSE"
cmp <(openssl x509 -in "$T/issued.pem" -noout -pubkey) <(openssl pkey -in "$T/dev.key" -pubout) \
    || kh_fail "issued for another key"

kh_log "a client asking Expect: 100-continue (RSA-3072 CSR) gets its 100 Continue"
openssl req -new -newkey rsa:3072 -nodes -keyout /dev/null -subj "/CN=big.example" \
    -outform DER -out "$T/big.csr" 2>/dev/null
base64 "$T/big.csr" >"$T/big.b64"
"${C[@]}" -v -u "dev1:secret-dev1" -H "Content-Type: application/pkcs10" -H "Expect: 100-continue" \
    --data-binary @"$T/big.b64" \
    -o "$T/big.p7" "$base/simpleenroll" 2>"$T/big.err" || kh_fail "RSA-3072 enrolment"
grep -q "< HTTP/1.1 100 Continue" "$T/big.err" || kh_fail "no 100 Continue"
grep -q "< HTTP/1.1 200" "$T/big.err" || kh_fail "RSA-3072 CSR not issued"

kh_log "a CSR whose signature does not verify -> 400"
python3 - "$T/dev.csr" "$T/bad.csr" <<'PY'
import sys
b = bytearray(open(sys.argv[1], 'rb').read()); b[-5] ^= 0x55
open(sys.argv[2], 'wb').write(b)
PY
base64 "$T/bad.csr" >"$T/bad.b64"
[ "$("${C[@]}" -u dev1:secret-dev1 -o "$T/body" -w '%{http_code}' -H "Content-Type: application/pkcs10" \
    --data-binary @"$T/bad.b64" "$base/simpleenroll")" = 400 ] || kh_fail "bad CSR accepted"
grep -qi "proof of possession\|not a PKCS#10" "$T/body" || kh_fail "bad CSR reason"

kh_log "bootstrap client certificate (chains to --client-ca) -> 200 without password"
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/boot.key" \
    -subj "/CN=factory-boot" -out "$T/boot.csr" 2>/dev/null
kh_ca_sign "$T/boot" "$T/boot.csr" "$T/boot.pem" "DNS:factory-boot"
[ "$("${C[@]}" --cert "$T/boot.pem" --key "$T/boot.key" -o /dev/null -w '%{http_code}' "${P[@]}" \
    "$base/simpleenroll")" = 200 ] || kh_fail "bootstrap cert refused"
grep -q "issued /CN=dev.example .* to /CN=factory-boot" "$d/estd.log" || kh_fail "log lacks client"
kh_log "a client certificate from another CA -> 401"
kh_test_ca "$T/rogue"
kh_ca_sign "$T/rogue" "$T/boot.csr" "$T/rogue.pem" "DNS:factory-boot"
[ "$("${C[@]}" --cert "$T/rogue.pem" --key "$T/boot.key" -o /dev/null -w '%{http_code}' "${P[@]}" \
    "$base/simpleenroll")" = 401 ] || kh_fail "rogue cert accepted"

kh_log "simplereenroll: needs the certificate being renewed; names must match"
openssl x509 -in "$T/issued.pem" -out "$T/issued1.pem"
[ "$("${C[@]}" -u dev1:secret-dev1 -o /dev/null -w '%{http_code}' "${P[@]}" "$base/simplereenroll")" = 401 ] \
    || kh_fail "reenroll without client cert"
[ "$("${C[@]}" --cert "$T/boot.pem" --key "$T/boot.key" -o /dev/null -w '%{http_code}' "${P[@]}" \
    "$base/simplereenroll")" = 401 ] || kh_fail "reenroll with the bootstrap cert"
[ "$("${C[@]}" --cert "$T/issued1.pem" --key "$T/dev.key" -o /dev/null -w '%{http_code}' "${P[@]}" \
    "$base/simplereenroll")" = 200 ] || kh_fail "reenroll refused"
openssl req -new -key "$T/dev.key" -subj "/CN=other.example" -outform DER -out "$T/o.csr"
base64 "$T/o.csr" >"$T/o.b64"
[ "$("${C[@]}" --cert "$T/issued1.pem" --key "$T/dev.key" -o "$T/body" -w '%{http_code}' \
    -H "Content-Type: application/pkcs10" --data-binary @"$T/o.b64" "$base/simplereenroll")" = 400 ] \
    || kh_fail "reenroll with other names accepted"
grep -q "subject differs" "$T/body" || kh_fail "reason for name change"

kh_log "request size limit -> 413; wrong media type -> 415"
head -c 8000 /dev/zero | tr '\0' 'A' >"$T/big"
[ "$("${C[@]}" -u dev1:secret-dev1 -o /dev/null -w '%{http_code}' -H "Content-Type: application/pkcs10" \
    --data-binary @"$T/big" "$base/simpleenroll")" = 413 ] || kh_fail "no 413"
[ "$("${C[@]}" -u dev1:secret-dev1 -o /dev/null -w '%{http_code}' -H "Content-Type: text/plain" \
    --data-binary @"$T/dev.b64" "$base/simpleenroll")" = 415 ] || kh_fail "no 415"

kh_log "malformed HTTP gets a named error, never a crash"
raw() {   # raw FILE -> status line of the answer
    timeout 20 openssl s_client -quiet -connect "127.0.0.1:$KH_ESTD_PORT" -servername localhost \
        <"$1" 2>/dev/null | head -1 | tr -d '\r'
}
printf 'HELLO\r\n\r\n' >"$T/m1"
printf 'GET /.well-known/est/cacerts HTTP/1.1\r\nNoColonHere\r\n\r\n' >"$T/m2"
printf 'POST /.well-known/est/simpleenroll HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n' >"$T/m3"
printf 'POST /.well-known/est/simpleenroll HTTP/1.1\r\nHost: x\r\n\r\n' >"$T/m4"
{ printf 'GET /.well-known/est/cacerts HTTP/1.1\r\nX-Pad: '; head -c 20000 /dev/zero | tr '\0' a; printf '\r\n\r\n'; } >"$T/m5"
printf 'POST /.well-known/est/simpleenroll HTTP/1.1\r\nContent-Length: -5\r\n\r\n' >"$T/m6"
[ "$(raw "$T/m1")" = "HTTP/1.1 400 Bad Request" ] || kh_fail "garbage request line"
[ "$(raw "$T/m2")" = "HTTP/1.1 400 Bad Request" ] || kh_fail "header without colon"
[ "$(raw "$T/m3")" = "HTTP/1.1 411 Length Required" ] || kh_fail "chunked body"
[ "$(raw "$T/m4")" = "HTTP/1.1 411 Length Required" ] || kh_fail "POST without length"
[ "$(raw "$T/m5")" = "HTTP/1.1 431 Request Header Fields Too Large" ] || kh_fail "huge head"
[ "$(raw "$T/m6")" = "HTTP/1.1 400 Bad Request" ] || kh_fail "negative length"
kill -0 "$KH_ESTD_PID" || kh_fail "keyhold-estd died"

kh_log "a silent client is timed out while others are served concurrently"
exec 7<>"/dev/tcp/127.0.0.1/$KH_ESTD_PORT"
pids=()
for i in $(seq 1 12); do
    "${C[@]}" -o "$T/par.$i" "$base/cacerts" & pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || kh_fail "a concurrent client failed"; done
for i in $(seq 1 12); do cmp -s "$T/par.$i" "$T/cacerts.b64" || kh_fail "client $i got another answer"; done
for i in $(seq 1 200); do
    grep -q "TLS handshake failed" "$d/estd.log" && break
    sleep 0.1
done
grep -q "TLS handshake failed" "$d/estd.log" || kh_fail "the silent client was not timed out"
exec 7>&-

kh_log "--require-both: a password alone is not enough"
kh_estd_stop
kh_estd_start --client-ca "$T/boot/ca.pem" --require-both
base=$KH_ESTD_URL/.well-known/est
[ "$("${C[@]}" -u dev1:secret-dev1 -o /dev/null -w '%{http_code}' "${P[@]}" "$base/simpleenroll")" = 401 ] \
    || kh_fail "password alone accepted"
[ "$("${C[@]}" -u dev1:secret-dev1 --cert "$T/boot.pem" --key "$T/boot.key" -o /dev/null -w '%{http_code}' \
    "${P[@]}" "$base/simpleenroll")" = 200 ] || kh_fail "both refused"
kh_no_secrets "$d/estd.log" secret-dev1

kh_log "TLS key in the token too (pkcs11: URI), and a factory station with a CA key file"
kh_estd_stop
kh_p11tool_keygen estca tls 02 EC:prime256v1
kh_p11_pubkey estca 02 "$T/tlspub.pem"
openssl x509 -req -in "$d/tls.csr" -force_pubkey "$T/tlspub.pem" -CA "$d/tls-ca.pem" \
    -CAkey "$d/tls-ca.key" -CAcreateserial -days 30 -extfile "$d/tls.ext" -out "$T/tls-tok.pem" 2>/dev/null
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out "$T/swca.key" 2>/dev/null
openssl req -new -x509 -key "$T/swca.key" -subj "/CN=factory station CA" -days 30 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" -out "$T/swca.pem"
port2=$(kh_free_port)
kh_bg "$KEYHOLD_ESTD" --listen "[::1]:$port2" --tls-cert "$T/tls-tok.pem" \
    --tls-key "pkcs11:token=estca;object=tls;type=private?pin-source=file:$T/estca.pin" \
    --ca-cert "$T/swca.pem" --ca-key "$T/swca.key" --allow-anonymous --log "$d/estd2.log"
kh_wait_port "$port2"
for v in 1.2 1.3; do
    "${C[@]}" --tlsv$v --tls-max $v --resolve "localhost:$port2:::1" -o "$T/e2.b64" "${P[@]}" \
        "https://localhost:$port2/.well-known/est/simpleenroll" || kh_fail "TLS $v with the token key"
    base64 -d "$T/e2.b64" | openssl pkcs7 -inform DER -print_certs -out "$T/e2.pem"
    openssl verify -CAfile "$T/swca.pem" "$T/e2.pem" >/dev/null || kh_fail "file CA did not issue"
done
openssl x509 -in "$T/e2.pem" -noout -text | kh_grepq "ecdsa-with-SHA384" || kh_fail "P-384 CA not SHA-384"

kh_log "CA key as a keyhold key reference file; the PIN comes from --pin-file"
"$BUILD/tests/kh-keyref" "pkcs11:token=estca;object=ca;type=private" >"$T/ca.ref"
port3=$(kh_free_port)
kh_bg "$KEYHOLD_ESTD" --listen "127.0.0.1:$port3" --tls-cert "$d/tls.pem" --tls-key "$d/tls.key" \
    --ca-cert "$d/ca.pem" --ca-key "$T/ca.ref" \
    --pin-file "$T/estca.pin" --allow-anonymous --log "$d/estd3.log"
kh_wait_port "$port3"
"${C[@]}" --resolve "localhost:$port3:127.0.0.1" -o "$T/e3.b64" "${P[@]}" \
    "https://localhost:$port3/.well-known/est/simpleenroll" || kh_fail "enrol with --pin-file"
base64 -d "$T/e3.b64" | openssl pkcs7 -inform DER -print_certs | openssl verify -CAfile "$d/ca.pem" >/dev/null \
    || kh_fail "token CA (PIN from --pin-file) did not issue"
kh_log "an RSA CA key in the token signs too (PKCS#1 v1.5 through the provider)"
kh_p11tool_keygen estca rsaca 03 rsa:2048
rk="pkcs11:token=estca;object=rsaca;type=private?pin-source=file:$T/estca.pin"
openssl req -new -x509 "${KH_PROV[@]}" -key "$rk" -subj "/CN=RSA token CA" -days 30 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" \
    -out "$T/rsaca.pem" || kh_fail "RSA CA certificate"
port4=$(kh_free_port)
kh_bg "$KEYHOLD_ESTD" --listen "127.0.0.1:$port4" --tls-cert "$d/tls.pem" --tls-key "$d/tls.key" \
    --ca-cert "$T/rsaca.pem" --ca-key "$rk" --allow-anonymous --log "$d/estd4.log"
kh_wait_port "$port4"
"${C[@]}" --resolve "localhost:$port4:127.0.0.1" -o "$T/e4.b64" "${P[@]}" \
    "https://localhost:$port4/.well-known/est/simpleenroll" || kh_fail "enrol at the RSA CA"
base64 -d "$T/e4.b64" | openssl pkcs7 -inform DER -print_certs -out "$T/e4.pem"
openssl verify -CAfile "$T/rsaca.pem" "$T/e4.pem" >/dev/null || kh_fail "RSA token CA did not issue"
openssl x509 -in "$T/e4.pem" -noout -text | kh_grepq sha256WithRSAEncryption || kh_fail "not RSA-signed"

kh_log "a wrong PIN: the server refuses to start, saying so"
(umask 077; printf '9999' >"$T/bad.pin")
kh_must_fail_clean 1 -- timeout 20 "$KEYHOLD_ESTD" --listen "127.0.0.1:$(kh_free_port)" --tls-cert "$d/tls.pem" \
    --tls-key "$d/tls.key" --ca-cert "$d/ca.pem" --ca-key "pkcs11:token=estca;object=ca;type=private" \
    --pin-file "$T/bad.pin" --allow-anonymous
kh_expect_output "PIN"
kh_log "ok"
