#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# status --prometheus: the metrics of the issue in the text exposition
# format; --prometheus-file writes them atomically.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cli_lib.inc"

kh_cli_env
kh_cli_identity rec cam1.example.com
kh_cli_provision mgmt mgmt.example.com
rc=0; "$KEYHOLD" status --prometheus >"$T/m.txt" || rc=$?
[ "$rc" = 5 ] || kh_fail "exit $rc (no-cert identity: 5)"
cat "$T/m.txt"
na=$(date -d "$(openssl x509 -in "$T/rec.pem" -noout -enddate | cut -d= -f2)" +%s)
grep -qx "keyhold_certificate_not_after_seconds{identity=\"rec\"} $na" "$T/m.txt" || kh_fail "not_after metric"
grep -qx 'keyhold_identity_state{identity="rec",state="ok"} 1' "$T/m.txt" || kh_fail "state ok"
grep -qx 'keyhold_identity_state{identity="rec",state="expired"} 0' "$T/m.txt" || kh_fail "state expired 0"
grep -qx 'keyhold_identity_state{identity="mgmt",state="no-cert"} 1' "$T/m.txt" || kh_fail "no-cert"
grep -q '^keyhold_renewal_last_success_seconds{identity="rec"} [0-9]' "$T/m.txt" || kh_fail "last success"
grep -q '^keyhold_renewal_failures_total{identity="rec"} [0-9]' "$T/m.txt" || kh_fail "failures"
for m in keyhold_certificate_not_after_seconds keyhold_identity_state \
         keyhold_renewal_last_success_seconds keyhold_renewal_failures_total; do
    grep -q "^# TYPE $m " "$T/m.txt" || kh_fail "TYPE $m"
    grep -q "^# HELP $m " "$T/m.txt" || kh_fail "HELP $m"
done
# every sample line: name{labels} number
grep -v '^#' "$T/m.txt" | kh_has -vE '^[a-z_]+\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\} -?[0-9.e+]+$' \
    && kh_fail "malformed sample line"
mkdir "$T/textfile"
"$KEYHOLD" status --prometheus-file "$T/textfile/keyhold.prom" >"$T/out" 2>&1 || true
[ ! -s "$T/out" ] || { cat "$T/out"; kh_fail "--prometheus-file printed"; }
cmp "$T/textfile/keyhold.prom" "$T/m.txt" || kh_fail "file differs"
ls "$T/textfile" | kh_has -v '^keyhold.prom$' && kh_fail "temp file left"
kh_log "ok"
