#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# A certificate for another key (a software key, or another identity's
# hardware key) is refused by the key check; nothing changes.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cli_lib.inc"

kh_cli_env
kh_cli_identity rec cam1.example.com
kh_cli_identity mgmt cam1.example.com
snap=$(kh_cli_snapshot rec)
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/soft.key" \
    -subj "/CN=cam1.example.com" -out "$T/soft.csr" 2>/dev/null
kh_ca_sign "$T/ca" "$T/soft.csr" "$T/soft.pem" "DNS:cam1.example.com"
for c in soft.pem mgmt.pem; do
    kh_must_fail_clean 2 -- "$KEYHOLD" install rec "$T/$c"
    kh_expect_output "key check failed"
    kh_expect_output "another key"
    kh_cli_still_works rec "$snap"
done
kh_log "ok"
