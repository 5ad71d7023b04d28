#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# doctor: all well -> exit 0 with "ok" findings; a loose PIN file, an
# unreachable token and a clock before the build date each reported as a
# problem with its fix (exit 5).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cli_lib.inc"

kh_cli_env
kh_cli_identity rec cam1.example.com
"$KEYHOLD" doctor >"$T/d.txt" || { cat "$T/d.txt"; kh_fail "doctor on a healthy appliance"; }
cat "$T/d.txt"
grep -q "^ok .*keyhold provider loads" "$T/d.txt" || kh_fail "provider finding"
grep -q "^ok .*token 'app'.*reachable" "$T/d.txt" || kh_fail "token finding"
grep -q "^ok .*RSA-PSS" "$T/d.txt" || kh_fail "mechanism finding"
grep -q "^ok .*PIN file" "$T/d.txt" || kh_fail "PIN file finding"
grep -q "0 problems" "$T/d.txt" || kh_fail "problem count"
kh_no_secrets "$T/d.txt" "$KH_CLI_PIN"

chmod 0644 "$T/app.pin"
rc=0; "$KEYHOLD" doctor >"$T/d2.txt" || rc=$?
[ "$rc" = 5 ] || kh_fail "doctor exit $rc with a loose PIN file"
grep -q "^PROBLEM .*PIN file .*chmod 0640" "$T/d2.txt" || kh_fail "PIN file fix"
chmod 0600 "$T/app.pin"

rc=0; faketime -f "@2020-01-01 00:00:00" "$KEYHOLD" doctor >"$T/d3.txt" || rc=$?
[ "$rc" = 5 ] || kh_fail "doctor exit $rc with a clock in 2020"
grep -q "^PROBLEM .*clock" "$T/d3.txt" || kh_fail "clock finding"

chmod 0777 "$T/tokens"
rc=0; "$KEYHOLD" doctor >"$T/d5.txt" || rc=$?
[ "$rc" = 5 ] || kh_fail "doctor exit $rc with a world-writable token dir"
grep -q "^PROBLEM .*SoftHSM token dir .*writable by everyone" "$T/d5.txt" || kh_fail "token dir finding"
chmod 0755 "$T/tokens"

mv "$T/tokens" "$T/tokens.away"; mkdir "$T/tokens"
rc=0; "$KEYHOLD" doctor >"$T/d4.txt" || rc=$?
[ "$rc" = 5 ] || kh_fail "doctor exit $rc without the token"
grep -q "^PROBLEM .*identity rec: token 'app' not found" "$T/d4.txt" || kh_fail "token finding"
kh_log "ok"
