#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# token init (recorded in tokens.jsonl, label clash refused) and token
# set-pin: the new PIN works, the old one is then rejected (exit 6).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cli_lib.inc"

kh_cli_env
jq -e 'select(.label=="app") | (.serial|length) > 0 and (.pin_file|endswith("app.pin"))' \
    "$KEYHOLD_STATE_DIR/tokens.jsonl" >/dev/null || kh_fail "tokens.jsonl record"
softhsm2-util --show-slots | kh_has "Label: *app" || kh_fail "softhsm does not see token app"
kh_must_fail_clean 2 -- "$KEYHOLD" token init --label app --pin-file "$T/app.pin" \
    --so-pin-file "$T/app.sopin"
kh_expect_output "exists already"
kh_must_fail_clean 1 -- "$KEYHOLD" token init --label app
kh_cli_identity rec cam1.example.com

(umask 077; printf 'kh-new-pin-77' >"$T/new.pin")
"$KEYHOLD" token set-pin --label app --pin-file "$T/app.pin" --new-pin-file "$T/new.pin"
kh_must_fail_clean 6 -- "$KEYHOLD" verify rec
cp "$T/new.pin" "$T/app.pin"
"$KEYHOLD" verify rec >/dev/null || kh_fail "verify with the new PIN"
kh_no_secrets "$KEYHOLD_STATE_DIR/audit.log" kh-new-pin-77 "$KH_CLI_PIN"
kh_no_secrets "$KEYHOLD_STATE_DIR/tokens.jsonl" kh-new-pin-77 "$KH_CLI_PIN"
kh_log "ok"
