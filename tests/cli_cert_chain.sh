#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# A certificate from another CA, or one whose intermediate is missing, is
# refused by the chain check; with the intermediate given (--chain, or
# after the cert in one PEM) it installs and serves the chain.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cli_lib.inc"

kh_cli_env
kh_cli_identity rec cam1.example.com
snap=$(kh_cli_snapshot rec)

kh_log "another CA"
kh_test_ca "$T/ca2"
kh_ca_sign "$T/ca2" "$T/rec.csr" "$T/other-ca.pem" "DNS:cam1.example.com"
kh_must_fail_clean 2 -- "$KEYHOLD" install rec "$T/other-ca.pem"
kh_expect_output "chain check failed"
kh_cli_still_works rec "$snap"
kh_must_fail_clean 2 -- "$KEYHOLD" install rec "$T/rec.pem" --ca "$T/ca2/ca.pem"
kh_expect_output "chain check failed"
kh_cli_still_works rec "$snap"

kh_log "an intermediate CA"
mkdir -p "$T/int"
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$T/int/ca.key" 2>/dev/null
openssl req -new -key "$T/int/ca.key" -subj "/CN=keyhold test intermediate" -out "$T/int/ca.csr"
printf 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n' >"$T/int/ext.cnf"
openssl x509 -req -in "$T/int/ca.csr" -CA "$T/ca/ca.pem" -CAkey "$T/ca/ca.key" -CAcreateserial \
    -days 20 -extfile "$T/int/ext.cnf" -out "$T/int/ca.pem" 2>/dev/null
cp "$T/ca/ext-server.cnf" "$T/int/ext-server.cnf"
kh_ca_sign "$T/int" "$T/rec.csr" "$T/leaf.pem" "DNS:cam1.example.com"
kh_must_fail_clean 2 -- "$KEYHOLD" install rec "$T/leaf.pem"
kh_expect_output "chain check failed"
kh_cli_still_works rec "$snap"
"$KEYHOLD" install rec "$T/leaf.pem" --chain "$T/int/ca.pem" || kh_fail "with --chain"
grep -c "BEGIN CERTIFICATE" "$KEYHOLD_STATE_DIR/rec/fullchain.pem" | kh_has -x 2 || kh_fail "fullchain"
"$KEYHOLD" verify rec >/dev/null || kh_fail "verify with intermediate"
cat "$T/leaf.pem" "$T/int/ca.pem" >"$T/bundle.pem"
"$KEYHOLD" install rec "$T/bundle.pem" || kh_fail "bundle with the chain"
openssl verify -CAfile "$T/ca/ca.pem" -untrusted "$KEYHOLD_STATE_DIR/rec/chain.pem" \
    "$KEYHOLD_STATE_DIR/rec/cert.pem" >/dev/null || kh_fail "served chain does not verify"
kh_log "ok"
