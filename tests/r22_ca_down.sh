#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Scenario 22: the CA's port is closed, or it accepts and never answers ->
# each renewal ends within a bounded time with a network/CA error (4), the
# old identity keeps working, and status shows the error and the next try;
# repeated failures back off (doubling, with jitter), and the backoff
# tightens as the certificate's expiry nears.
# timeout: 300
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/est_lib.sh"

kh_estd_setup
# Certificates valid for 10 hours: near enough to expiry that the backoff
# is capped at a tenth of the time left (1 hour).
kh_estd_start --seconds 36000
kh_est_identity cam cam1.example
kh_est_enroll cam >"$T/enroll.out" 2>&1 || { cat "$T/enroll.out"; kh_fail "enroll"; }
fp=$(kh_est_cert_fp cam)
kh_estd_stop

epoch() { date -u -d "$1" +%s 2>/dev/null || echo "$1"; }
delays=()
for i in 1 2 3 4 5 6 7 8; do
    rc=0
    now=$(date -u +%s)
    timeout 120 "$KEYHOLD" renew cam --force >"$T/down.$i.out" 2>&1 || rc=$?
    [ "$rc" = 4 ] || { cat "$T/down.$i.out"; kh_fail "CA down, attempt $i: exit $rc (want 4)"; }
    "$KEYHOLD" status cam --json >"$T/st.json" || true
    next=$(jq -r '.[0].next_attempt' "$T/st.json")
    err=$(jq -r '.[0].last_error' "$T/st.json")
    [ -n "$err" ] && [ "$err" != null ] || kh_fail "status has no last_error"
    d=$(( $(epoch "$next") - now ))
    delays+=("$d")
done
cat "$T/down.1.out"
grep -qiE "connect|refused" "$T/down.1.out" || kh_fail "the error does not say the CA is unreachable"
kh_log "backoff after failures 1..8 (s): ${delays[*]}"
[ "${delays[0]}" -ge 230 ] && [ "${delays[0]}" -le 370 ] || kh_fail "first backoff ${delays[0]} s, want 300 s +-20 %"
[ "${delays[1]}" -ge 470 ] && [ "${delays[1]}" -le 730 ] || kh_fail "second backoff ${delays[1]} s, want 600 s +-20 %"
[ "${delays[2]}" -gt "${delays[0]}" ] || kh_fail "the backoff does not grow"
for i in 4 5 6 7; do
    [ "${delays[$i]}" -le 4330 ] || kh_fail "backoff ${delays[$i]} s: not capped at a tenth of the 10 h left"
    [ "${delays[$i]}" -ge 2870 ] || kh_fail "backoff ${delays[$i]} s: below the cap's jitter range"
done
[ "$(printf '%s\n' "${delays[@]:4}" | sort -u | wc -l)" -gt 1 ] || kh_fail "no jitter in the capped backoff"
[ "$(kh_est_cert_fp cam)" = "$fp" ] || kh_fail "the identity changed"
kh_est_works cam
kh_log "CA port closed: exit 4, old kept, backoff doubling with jitter, capped near expiry"

# A CA that accepts the connection and then says nothing.
port=$(kh_r_port)
python3 -c '
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(8)
conns = []
while True:
    c, _ = s.accept(); conns.append(c)
' "$port" &
KH_BG_PIDS+=("$!")
kh_wait_port "$port"
sed -i "s|^est-url = .*|est-url = https://localhost:$port/.well-known/est|" "$KEYHOLD_CONF_DIR/cam.conf"
rc=0
start=$(date +%s)
timeout 250 "$KEYHOLD" renew cam --force >"$T/silent.out" 2>&1 || rc=$?
cat "$T/silent.out"
[ "$rc" != 124 ] || kh_fail "renewal against a silent CA hung (killed after 250 s)"
[ "$rc" = 4 ] || kh_fail "silent CA: exit $rc (want 4)"
grep -qiE "time(d)? ?out" "$T/silent.out" || kh_fail "the error does not say the CA timed out"
kh_log "silent CA: gave up after $(( $(date +%s) - start )) s with a timeout error"
[ "$(kh_est_cert_fp cam)" = "$fp" ] || kh_fail "the identity changed"
kh_est_works cam
kh_log "scenario 22 ok"
