#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Another keyhold holding an identity's lock: management commands exit 75
# ("busy") at once without touching it; other identities are unaffected.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cli_lib.inc"

kh_cli_env
kh_cli_identity rec cam1.example.com
kh_cli_identity mgmt mgmt.example.com
snap=$(kh_cli_snapshot rec)
kh_cli_sign rec "$T/new.pem" "DNS:cam1.example.com"
exec 9>"$KEYHOLD_STATE_DIR/rec/.lock"
flock -n 9 || kh_fail "cannot take the lock in the test"
kh_must_fail_clean 75 -- timeout 20 "$KEYHOLD" install rec "$T/new.pem"
kh_expect_output "busy"
kh_must_fail_clean 75 -- timeout 20 "$KEYHOLD" set-hosts rec --host x.example.com
kh_must_fail_clean 75 -- timeout 20 "$KEYHOLD" zeroize rec --yes
kh_must_fail_clean 75 -- timeout 20 "$KEYHOLD" provision rec --force --token app \
    --host cam1.example.com --pin-file "$T/app.pin"
"$KEYHOLD" status rec >/dev/null || kh_fail "status must not need the lock"
kh_cli_sign mgmt "$T/m2.pem" "DNS:mgmt.example.com"
"$KEYHOLD" install mgmt "$T/m2.pem" >/dev/null || kh_fail "other identity blocked"
exec 9>&-
kh_cli_still_works rec "$snap"
"$KEYHOLD" install rec "$T/new.pem" >/dev/null || kh_fail "install after the lock was released"
kh_log "ok"
