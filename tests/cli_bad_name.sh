#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Identity names with '/' or '..' (or other path tricks) are refused before
# anything touches the disk or the token (exit 2).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cli_lib.inc"

kh_cli_env
kh_cli_identity rec cam1.example.com
snap=$(kh_cli_snapshot rec)
for name in "../evil" "a/b" ".." "." "../../etc/passwd" ".hidden" "a..b" "rec/../rec" ""; do
    kh_must_fail_clean 2 -- "$KEYHOLD" provision "$name" --token app --host x.example.com \
        --pin-file "$T/app.pin"
    kh_expect_output "invalid identity name"
    kh_must_fail_clean 2 -- "$KEYHOLD" status "$name"
    kh_must_fail_clean 2 -- "$KEYHOLD" install "$name" "$T/rec.pem"
done
[ ! -e "$T/evil" ] && [ ! -e "$T/conf/../evil.conf" ] || kh_fail "a file escaped the conf dir"
[ "$(ls "$KEYHOLD_CONF_DIR")" = rec.conf ] || kh_fail "conf dir changed"
pkcs11-tool --module "$SOFTHSM_MODULE" --token-label app --login --pin "$KH_CLI_PIN" \
    --list-objects --type privkey 2>/dev/null | grep -c "Private Key Object" >"$T/n"
[ "$(cat "$T/n")" = 1 ] || kh_fail "a key was generated for a bad name"
kh_cli_still_works rec "$snap"
kh_log "ok"
