#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Expired and not-yet-valid certificates are refused by the validity check;
# a not-before a little in the future (within the 5 minute skew, as CAs
# often issue) is accepted.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cli_lib.inc"

kh_cli_env
kh_cli_identity rec cam1.example.com
snap=$(kh_cli_snapshot rec)

KH_SAN=DNS:cam1.example.com faketime -f "-20d" /usr/bin/openssl x509 -req -in "$T/rec.csr" \
    -CA "$T/ca/ca.pem" -CAkey "$T/ca/ca.key" -CAcreateserial -days 7 \
    -extfile "$T/ca/ext-server.cnf" -out "$T/expired.pem" 2>/dev/null || kh_fail "sign expired"
kh_must_fail_clean 2 -- "$KEYHOLD" install rec "$T/expired.pem"
kh_expect_output "validity check failed"
kh_expect_output "expired"
kh_cli_still_works rec "$snap"

KH_SAN=DNS:cam1.example.com faketime -f "+2d" /usr/bin/openssl x509 -req -in "$T/rec.csr" \
    -CA "$T/ca/ca.pem" -CAkey "$T/ca/ca.key" -CAcreateserial -days 7 \
    -extfile "$T/ca/ext-server.cnf" -out "$T/future.pem" 2>/dev/null || kh_fail "sign future"
kh_must_fail_clean 2 -- "$KEYHOLD" install rec "$T/future.pem"
kh_expect_output "not yet valid"
kh_cli_still_works rec "$snap"

KH_SAN=DNS:cam1.example.com faketime -f "+120" /usr/bin/openssl x509 -req -in "$T/rec.csr" \
    -CA "$T/ca/ca.pem" -CAkey "$T/ca/ca.key" -CAcreateserial -days 7 \
    -extfile "$T/ca/ext-server.cnf" -out "$T/skew.pem" 2>/dev/null || kh_fail "sign skew"
"$KEYHOLD" install rec "$T/skew.pem" || kh_fail "not-before within the skew refused"
"$KEYHOLD" verify rec >/dev/null || kh_fail "verify"
kh_log "ok"
