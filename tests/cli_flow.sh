#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Whole flow through the CLI: token init -> provision -> CSR checked by
# `openssl req -verify` (signature, CN, SANs, EKU) -> test CA signs ->
# install -> status --json parsed -> verify; the key never left the token.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cli_lib.inc"

kh_cli_env
"$KEYHOLD" --version | kh_has '^keyhold ' || kh_fail "--version"
"$KEYHOLD" --help | kh_has provision || kh_fail "--help"
for c in token provision csr install status doctor set-hosts verify zeroize audit; do
    "$KEYHOLD" "$c" --help >/dev/null || kh_fail "$c --help"
done

kh_log "provision"
"$KEYHOLD" provision rec --token pkcs11:token=app --alg ec-p256 --host cam1.example.com \
    --san dns:cam1.local,ip:192.168.1.10 --role recording --pin-file "$T/app.pin" \
    --csr-out "$T/rec.csr"
openssl req -in "$T/rec.csr" -verify -noout 2>&1 | kh_has "verify OK" || kh_fail "CSR signature"
openssl req -in "$T/rec.csr" -noout -text >"$T/csr.txt"
grep -q "Subject: CN = cam1.example.com" "$T/csr.txt" || kh_fail "CSR CN"
grep -q "DNS:cam1.example.com, DNS:cam1.local, IP Address:192.168.1.10" "$T/csr.txt" || kh_fail "CSR SANs"
grep -q "TLS Web Server Authentication, TLS Web Client Authentication" "$T/csr.txt" || kh_fail "CSR EKU"
grep -q "Digital Signature" "$T/csr.txt" || kh_fail "CSR KU"
grep -q "^role = recording" "$KEYHOLD_CONF_DIR/rec.conf" || kh_fail "config role"
grep -q "^pin-file = " "$KEYHOLD_CONF_DIR/rec.conf" || kh_fail "config pin-file"

# the key is in the token, sensitive, not extractable (independent tool)
id=$(sed -n 's/^key-id = //p' "$KEYHOLD_CONF_DIR/rec.conf")
pkcs11-tool --module "$SOFTHSM_MODULE" --token-label app --login --pin "$KH_CLI_PIN" \
    --list-objects >"$T/objs.txt" 2>/dev/null
grep -q "label: *keyhold:rec:1" "$T/objs.txt" || kh_fail "key label"
grep -A6 "Private Key Object" "$T/objs.txt" | kh_has "sensitive" || kh_fail "not sensitive"
grep -A8 "Private Key Object" "$T/objs.txt" | kh_has -i "never extractable" \
    || kh_log "(pkcs11-tool prints no 'never extractable' line)"

kh_log "status before a certificate: no-cert, exit 5"
rc=0; "$KEYHOLD" status rec --json >"$T/s0.json" || rc=$?
[ "$rc" = 5 ] || kh_fail "status without cert: exit $rc"
[ "$(jq -r '.[0].state' "$T/s0.json")" = no-cert ] || kh_fail "state no-cert"

kh_log "sign and install"
kh_cli_sign rec "$T/rec.pem" "DNS:cam1.example.com,DNS:cam1.local,IP:192.168.1.10"
"$KEYHOLD" install rec "$T/rec.pem" --ca "$T/ca/ca.pem"
d=$KEYHOLD_STATE_DIR/rec
for f in cert.pem chain.pem fullchain.pem ca.pem key.pem identity.pem; do
    [ -L "$d/$f" ] && [ -e "$d/$f" ] || kh_fail "state file $f"
done
[ "$(readlink "$d/current")" = gen-1 ] || kh_fail "current -> gen-1"
grep -q "BEGIN KEYHOLD KEY REFERENCE" "$d/key.pem" || kh_fail "key.pem is no reference"
grep -q "BEGIN KEYHOLD KEY REFERENCE" "$d/identity.pem" || kh_fail "identity.pem lacks the reference"
grep -q "BEGIN CERTIFICATE" "$d/identity.pem" || kh_fail "identity.pem lacks the chain"
for f in "$d"/current/*; do kh_no_secrets "$f" "$KH_CLI_PIN"; done
pkcs11-tool --module "$SOFTHSM_MODULE" --token-label app --list-objects --type cert 2>/dev/null \
    | kh_has "keyhold:rec" || kh_fail "certificate not stored in the token"

kh_log "status --json"
"$KEYHOLD" status --json >"$T/s.json"
jq -e 'length == 1' "$T/s.json" >/dev/null || kh_fail "one identity"
for k in name backend key_uri algorithm subject sans issuer not_before not_after days_left state last_error next_attempt; do
    jq -e ".[0] | has(\"$k\")" "$T/s.json" >/dev/null || kh_fail "status JSON lacks $k"
done
[ "$(jq -r '.[0].state' "$T/s.json")" = ok ] || kh_fail "state not ok"
[ "$(jq -r '.[0].name' "$T/s.json")" = rec ] || kh_fail "name"
[ "$(jq -r '.[0].backend' "$T/s.json")" = pkcs11 ] || kh_fail "backend"
[ "$(jq -r '.[0].algorithm' "$T/s.json")" = ec-p256 ] || kh_fail "algorithm"
jq -e '.[0].sans | index("ip:192.168.1.10")' "$T/s.json" >/dev/null || kh_fail "sans"
[ "$(jq -r '.[0].days_left' "$T/s.json")" -ge 6 ] || kh_fail "days_left"
jq -r '.[0].key_uri' "$T/s.json" | kh_has '^pkcs11:token=app;id=' || kh_fail "key_uri"
jq -r '.[0].key_uri' "$T/s.json" | kh_has -i 'pin' && kh_fail "key_uri carries a PIN"
certfp=$(openssl x509 -in "$T/rec.pem" -outform DER | sha256sum | cut -d' ' -f1)
[ "$(jq -r '.[0].cert_fingerprint' "$T/s.json")" = "sha256:$certfp" ] || kh_fail "cert_fingerprint"
keyfp=$(openssl x509 -in "$T/rec.pem" -noout -pubkey | openssl pkey -pubin -outform DER | sha256sum | cut -d' ' -f1)
[ "$(jq -r '.[0].key_fingerprint' "$T/s.json")" = "sha256:$keyfp" ] || kh_fail "key_fingerprint"

kh_log "verify, and a server using the key reference"
"$KEYHOLD" verify rec | kh_has ok || kh_fail "verify"
"$KEYHOLD" csr rec -o "$T/again.csr"
openssl req -in "$T/again.csr" -verify -noout 2>&1 | kh_has "verify OK" || kh_fail "csr again"
cmp <(openssl req -in "$T/again.csr" -noout -pubkey) <(openssl req -in "$T/rec.csr" -noout -pubkey) \
    || kh_fail "csr: another key"

kh_log "reports.jsonl and audit"
jq -e 'select(.op=="provision" and .identity=="rec") | .public_key_fingerprint | startswith("sha256:")' \
    "$KEYHOLD_STATE_DIR/reports.jsonl" >/dev/null || kh_fail "provisioning report"
jq -e -s 'map(.op) | index("install")' "$KEYHOLD_STATE_DIR/audit.log" >/dev/null || kh_fail "audit install"
"$KEYHOLD" audit verify || kh_fail "audit verify"
kh_no_secrets "$KEYHOLD_STATE_DIR/audit.log" "$KH_CLI_PIN"
kh_no_secrets "$KEYHOLD_STATE_DIR/reports.jsonl" "$KH_CLI_PIN"
kh_log "ok"
