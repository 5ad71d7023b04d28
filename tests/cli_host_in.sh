#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# --host-in: the host as CN and DNS SAN (both, default), as CN only (cn: no
# DNS SAN for it, other SANs kept), or as DNS SAN only (san: CN is the
# identity's name). A certificate for either installs, verifies and
# serves the host name.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cli_lib.inc"

kh_cli_env
"$KEYHOLD" provision rec-1 --token app --host rec1.example.com --host-in cn \
    --san dns:rec1.local --pin-file "$T/app.pin" --csr-out "$T/rec-1.csr" >/dev/null
openssl req -in "$T/rec-1.csr" -noout -text >"$T/1.txt"
grep -q "Subject: CN = rec1.example.com" "$T/1.txt" || kh_fail "cn: CN"
grep -q "DNS:rec1.example.com" "$T/1.txt" && kh_fail "cn: host also a DNS SAN"
grep -q "DNS:rec1.local" "$T/1.txt" || kh_fail "cn: other SAN lost"
grep -q "^host-in = cn" "$KEYHOLD_CONF_DIR/rec-1.conf" || kh_fail "cn not stored"

"$KEYHOLD" provision rec-2 --token app --host rec2.example.com --host-in san \
    --pin-file "$T/app.pin" --csr-out "$T/rec-2.csr" >/dev/null
openssl req -in "$T/rec-2.csr" -noout -text >"$T/2.txt"
grep -q "Subject: CN = rec-2" "$T/2.txt" || kh_fail "san: CN is not the identity name"
grep -q "DNS:rec2.example.com" "$T/2.txt" || kh_fail "san: no DNS SAN"

kh_must_fail_clean 1 -- "$KEYHOLD" provision rec-3 --token app --host x.example.com \
    --host-in neither --pin-file "$T/app.pin"

kh_log "certificates as the CA would issue them, installed and served"
openssl x509 -req -in "$T/rec-1.csr" -CA "$T/ca/ca.pem" -CAkey "$T/ca/ca.key" -CAcreateserial \
    -days 7 -copy_extensions copy -out "$T/rec-1.pem" 2>/dev/null
openssl x509 -req -in "$T/rec-2.csr" -CA "$T/ca/ca.pem" -CAkey "$T/ca/ca.key" -CAcreateserial \
    -days 7 -copy_extensions copy -out "$T/rec-2.pem" 2>/dev/null
for n in rec-1 rec-2; do
    "$KEYHOLD" install "$n" "$T/$n.pem" --ca "$T/ca/ca.pem" >/dev/null || kh_fail "install $n"
    "$KEYHOLD" verify "$n" >/dev/null || kh_fail "verify $n"
    "$KEYHOLD" status "$n" >/dev/null || kh_fail "status $n"
done
"$KEYHOLD" set-hosts rec-2 --host rec2.example.com --host-in both >/dev/null
grep -q "^host-in = both" "$KEYHOLD_CONF_DIR/rec-2.conf" || kh_fail "set-hosts --host-in"
"$KEYHOLD" csr rec-2 | openssl req -noout -subject | kh_has "CN = rec2.example.com" \
    || kh_fail "host-in both after set-hosts"
kh_log "ok"
