#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Missing token: status says token-unreachable (exit 8), key operations exit
# 3 naming the token, provisioning on a token that does not exist changes
# nothing; when the token is back the identity works unchanged.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cli_lib.inc"

kh_cli_env
kh_cli_identity rec cam1.example.com
snap=$(kh_cli_snapshot rec)

kh_must_fail_clean 3 -- "$KEYHOLD" provision other --token nosuch --host o.example.com \
    --pin-file "$T/app.pin"
kh_expect_output "token 'nosuch' not found"
[ ! -e "$KEYHOLD_CONF_DIR/other.conf" ] || kh_fail "config for a missing token"

mv "$T/tokens" "$T/tokens.away"; mkdir "$T/tokens"
kh_must_fail_clean 8 -- "$KEYHOLD" status rec
kh_expect_output "token-unreachable"
rc=0; "$KEYHOLD" status --json >"$T/s.json" || rc=$?
[ "$rc" = 8 ] || kh_fail "status --json exit $rc"
[ "$(jq -r '.[0].state' "$T/s.json")" = token-unreachable ] || kh_fail "json state"
kh_must_fail_clean 3 -- "$KEYHOLD" csr rec
kh_must_fail_clean -- "$KEYHOLD" verify rec
kh_must_fail_clean 3 -- "$KEYHOLD" install rec "$T/rec.pem"
kh_expect_output "not found"
rm -rf "$T/tokens"; mv "$T/tokens.away" "$T/tokens"
kh_cli_still_works rec "$snap"
kh_log "ok"
