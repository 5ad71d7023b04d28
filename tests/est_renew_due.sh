#!/bin/bash
# SPDX-License-Identifier: MIT
# keyhold renew --all renews only what is due (time moved with libfaketime),
# a second run while another holds an identity's lock exits 75 without
# touching it, and with the CA down the old identity stays intact, the error
# is clear, status shows it with the next attempt, and runs back off.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/est_lib.sh"
command -v faketime >/dev/null || kh_fail "faketime missing (make deps)"

kh_estd_setup
d=$KH_ESTD_DIR
kh_estd_start --days 30
kh_est_identity short short.example
kh_est_enroll short >/dev/null || kh_fail "enroll short"
kh_estd_stop
kh_estd_start --days 90
kh_est_identity long long.example
kh_est_enroll long >/dev/null || kh_fail "enroll long"
fps=$(kh_est_cert_fp short); fpl=$(kh_est_cert_fp long)
reenrolls() { grep -c "simplereenroll -> 200" "$d/estd.log" || true; }

kh_log "now: nothing is due"
"$KEYHOLD" renew --all | tee "$T/n1.out" || kh_fail "renew --all"
[ "$(reenrolls)" = 0 ] || kh_fail "renewed something not due"
kh_log "the per-appliance spread: stable between runs, within a tenth of the lifetime"
"$KEYHOLD" renew --all >"$T/n2.out" || kh_fail "renew --all (2)"
cmp -s "$T/n1.out" "$T/n2.out" || kh_fail "due times moved between runs"
c=$KEYHOLD_STATE_DIR/short/cert.pem
nb=$(date -d "$(openssl x509 -in "$c" -noout -startdate | cut -d= -f2)" +%s)
na=$(date -d "$(openssl x509 -in "$c" -noout -enddate | cut -d= -f2)" +%s)
due=$(date -d "$(sed -n 's/^short: not due (renewal from \(.*\))$/\1/p' "$T/n1.out")" +%s)
life=$((na - nb)); policy=$((nb + life * 67 / 100))
[ "$due" -le "$policy" ] && [ "$due" -ge $((policy - life / 10)) ] \
    || kh_fail "due $due not within [$((policy - life / 10)), $policy]"

kh_log "22 days later: the 30-day certificate is due, the 90-day one is not"
faketime -f "+22d" "$KEYHOLD" renew --all | tee "$T/r.out" || kh_fail "renew --all (+22d)"
[ "$(reenrolls)" = 1 ] || kh_fail "expected exactly one re-enrolment, got $(reenrolls)"
[ "$(kh_est_cert_fp short)" != "$fps" ] || kh_fail "short not renewed"
[ "$(kh_est_cert_fp long)" = "$fpl" ] || kh_fail "long renewed although not due"
grep -q "long: not due" "$T/r.out" || kh_fail "no 'not due' for long"
kh_est_works short
kh_log "and running it again changes nothing (idempotent)"
faketime -f "+22d" "$KEYHOLD" renew --all >/dev/null || kh_fail "second run"
[ "$(reenrolls)" = 1 ] || kh_fail "second run renewed again"

kh_log "busy: another run holds long's lock -> exit 75, untouched"
(exec 9>>"$KEYHOLD_STATE_DIR/long/.lock"; flock 9 && exec sleep 30) &
holder=$!
KH_BG_PIDS+=($holder)
held=0
for i in $(seq 1 100); do
    if ! flock -n "$KEYHOLD_STATE_DIR/long/.lock" true 2>/dev/null; then held=1; break; fi
    sleep 0.1
done
[ "$held" = 1 ] || kh_fail "the lock holder never got the lock"
kh_must_fail 75 -- "$KEYHOLD" renew long --force
[ "$(reenrolls)" = 1 ] || kh_fail "a busy identity reached the CA"
[ "$(kh_est_cert_fp long)" = "$fpl" ] || kh_fail "busy identity changed"
kill "$holder"; wait "$holder" 2>/dev/null || true

kh_log "CA down: old identity intact, clear error, next attempt recorded, backoff"
kh_estd_stop
kh_must_fail 4 -- faketime -f "+70d" "$KEYHOLD" renew long
kh_expect_output "connect"
kh_expect_output "next attempt"
[ "$(kh_est_cert_fp long)" = "$fpl" ] || kh_fail "failed renewal changed the identity"
kh_est_works long
"$KEYHOLD" status long --json >"$T/st.json" || true
jq -e 'if type == "array" then .[0] else . end | (.last_error | length > 0) and (.next_attempt != null)' \
    "$T/st.json" >/dev/null || { cat "$T/st.json"; kh_fail "status lacks last_error/next_attempt"; }
faketime -f "+70d" "$KEYHOLD" renew long | tee "$T/b.out" || kh_fail "backoff run failed"
grep -q "backing off" "$T/b.out" || kh_fail "no backoff"
kh_log "CA back: --force renews and clears the error"
kh_estd_start --days 90
faketime -f "+70d" "$KEYHOLD" renew long --force >/dev/null || kh_fail "renew after the CA came back"
[ "$(kh_est_cert_fp long)" != "$fpl" ] || kh_fail "not renewed"
"$KEYHOLD" status long --json >"$T/st.json" || true
jq -e 'if type == "array" then .[0] else . end | (.last_error // "") == ""' "$T/st.json" >/dev/null \
    || { cat "$T/st.json"; kh_fail "error not cleared"; }

kh_log "host names changed (set-hosts): due at once, enrolled again with the new names"
"$KEYHOLD" set-hosts short --host short.example --san dns:short2.example >/dev/null || kh_fail "set-hosts"
before=$(grep -c "simpleenroll -> 200 issued /CN=short.example .* to user dev1" "$d/estd.log" || true)
"$KEYHOLD" renew short 2>&1 | tee "$T/h.out" || kh_fail "renew after set-hosts"
grep -q "host names changed" "$T/h.out" || kh_fail "no word about the host names"
[ "$(grep -c "simpleenroll -> 200 issued /CN=short.example .* to user dev1" "$d/estd.log")" -gt "$before" ] \
    || kh_fail "not enrolled with the bootstrap credentials"
openssl x509 -in "$KEYHOLD_STATE_DIR/short/cert.pem" -noout -ext subjectAltName | kh_grepq "DNS:short2.example" \
    || kh_fail "new name missing"
kh_est_works short
kh_log "ok"
