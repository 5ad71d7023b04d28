#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The identity config: hand edits (comments, spacing, CRLF, keys other
# parts use) survive keyhold's own rewrites; a malformed line is refused
# naming the file and line (exit 2), nothing else changes.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cli_lib.inc"

kh_cli_env
kh_cli_identity rec cam1.example.com
c=$KEYHOLD_CONF_DIR/rec.conf
{
    printf '# site notes\r\n'
    printf 'est-url=https://est.example.com/.well-known/est\r\n'
    printf '   reload   =   systemctl reload nginx   \r\n'
    printf 'reload = systemctl reload vms-recorder\n'
} >>"$c"
"$KEYHOLD" set-hosts rec --host cam1.example.com --san dns:cam1.local >/dev/null || kh_fail "set-hosts"
grep -qx "est-url = https://est.example.com/.well-known/est" "$c" || kh_fail "unknown key lost"
[ "$(grep -c '^reload = ' "$c")" = 2 ] || kh_fail "repeated keys lost"
grep -qx "reload = systemctl reload nginx" "$c" || kh_fail "value not trimmed"
grep -qx "san = dns:cam1.local" "$c" || kh_fail "san not written"
[ "$(stat -c %a "$c")" = 640 ] || kh_fail "config mode $(stat -c %a "$c")"
# keyhold's rewrite keeps its values on one 'key = value' line each
grep -v '^#' "$c" | kh_has -v '^[a-z0-9._-]* = ' && kh_fail "rewritten config has odd lines"

cp "$c" "$T/good.conf"
echo "this line has no equals sign" >>"$c"
kh_must_fail_clean 2 -- "$KEYHOLD" status rec
kh_expect_output "rec.conf"
kh_expect_output "line "
kh_must_fail_clean 2 -- "$KEYHOLD" install rec "$T/rec.pem"
cp "$T/good.conf" "$c"
printf 'host = a\001b\n' >>"$c"
kh_must_fail_clean 2 -- "$KEYHOLD" verify rec
kh_expect_output "control character"
cp "$T/good.conf" "$c"
"$KEYHOLD" verify rec >/dev/null || kh_fail "verify with the restored config"
kh_log "ok"
