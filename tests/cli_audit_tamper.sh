#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The audit log's hash chain: `keyhold audit verify` passes on the log as
# written and detects an edited record, a removed record and a cut tail
# (exit 2 naming the record); hooks can append records to the chain.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cli_lib.inc"

kh_cli_env
kh_cli_identity rec cam1.example.com
"$KEYHOLD" set-hosts rec --host cam1.example.com --san dns:x.example.com >/dev/null
"$KEYHOLD" audit record --op factory-reset --outcome ok --detail "test" || kh_fail "audit record"
log=$KEYHOLD_STATE_DIR/audit.log
"$KEYHOLD" audit verify | kh_has "intact" || kh_fail "fresh log"
n=$(wc -l <"$log")
[ "$n" -ge 5 ] || kh_fail "expected >= 5 records, got $n"
for f in who op identity key_id outcome time prev hash; do
    jq -e -s "all(has(\"$f\"))" "$log" >/dev/null || kh_fail "records lack $f"
done
jq -e -s 'map(.op) | index("provision") and index("install") and index("set-hosts") and index("factory-reset")' \
    "$log" >/dev/null || kh_fail "ops missing"
kh_no_secrets "$log" "$KH_CLI_PIN"
cp "$log" "$T/orig.log"; cp "$KEYHOLD_STATE_DIR/audit.head" "$T/orig.head"

kh_log "edited record"
sed -i '2s/"outcome":"ok"/"outcome":"failed"/' "$log"
kh_must_fail_clean 2 -- "$KEYHOLD" audit verify
kh_expect_output "record 2"
cp "$T/orig.log" "$log"

kh_log "edited record with its own hash recomputed"
python3 - "$log" <<'PY'
import hashlib, sys
p = sys.argv[1]
lines = open(p).read().split("\n")
l = lines[1].replace('"outcome":"ok"', '"outcome":"failed"')
body = l[:l.index(',"hash":"')]
lines[1] = body + ',"hash":"' + hashlib.sha256(body.encode()).hexdigest() + '"}'
open(p, "w").write("\n".join(lines))
PY
kh_must_fail_clean 2 -- "$KEYHOLD" audit verify
kh_expect_output "record 3"
cp "$T/orig.log" "$log"

kh_log "removed record"
sed -i '3d' "$log"
kh_must_fail_clean 2 -- "$KEYHOLD" audit verify
cp "$T/orig.log" "$log"

kh_log "cut tail"
sed -i '$d' "$log"
kh_must_fail_clean 2 -- "$KEYHOLD" audit verify
kh_expect_output "removed from the end"
cp "$T/orig.log" "$log"
"$KEYHOLD" audit verify >/dev/null || kh_fail "restored log"
kh_log "ok"
