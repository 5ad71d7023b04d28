#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Expiry warnings: one per threshold (30/14/7/1 days, scaled down for short
# certificates), emitted once by status, recorded in status.json; a new
# certificate starts over.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cli_lib.inc"

kh_cli_env
kh_cli_provision rec cam1.example.com
kh_cli_sign rec "$T/rec.pem" "DNS:cam1.example.com" 30
"$KEYHOLD" install rec "$T/rec.pem" --ca "$T/ca/ca.pem" >/dev/null
warn() { # warn FAKETIME -> number of warning lines on stderr
    faketime -f "$1" "$KEYHOLD" status rec >/dev/null 2>"$T/w.err" || true
    grep -c "warning: identity rec: certificate expires" "$T/w.err" || true
}
[ "$(warn +1d)" = 0 ] || kh_fail "warning on a fresh certificate"
[ "$(warn +21d)" = 1 ] || kh_fail "no warning past the first threshold (30-day cert: 10 days)"
[ "$(warn +21d)" = 0 ] || kh_fail "first threshold warned twice"
[ "$(warn +22d)" = 0 ] || kh_fail "first threshold warned twice (later run)"
[ "$(warn +26d)" = 1 ] || kh_fail "second threshold (5 days)"
[ "$(warn +26d)" = 0 ] || kh_fail "second threshold twice"
[ "$(warn +28d)" = 1 ] || kh_fail "third threshold (2.5 days)"
[ "$(warn +708h)" = 1 ] || kh_fail "fourth threshold (1.25 days)"
[ "$(warn +709h)" = 0 ] || kh_fail "fourth twice"
jq -e '.warned_level == 4' "$KEYHOLD_STATE_DIR/rec/status.json" >/dev/null || kh_fail "level not recorded"
kh_log "a new certificate starts over"
kh_cli_sign rec "$T/rec2.pem" "DNS:cam1.example.com" 30
"$KEYHOLD" install rec "$T/rec2.pem" >/dev/null
[ "$(warn +21d)" = 1 ] || kh_fail "new cert: first threshold"
kh_log "ok"
