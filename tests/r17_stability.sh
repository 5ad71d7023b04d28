#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Scenario 17: 10 000 full TLS handshakes against one s_server process with
# a token key -> all succeed, and the server's PKCS#11 sessions, open file
# descriptors and memory stay where they were after warm-up.
# (The valgrind half of the scenario is r17_valgrind.sh.)
# timeout: 400
. "$(dirname "$0")/lib.sh"
kh_need "$BUILD/keyhold.so" "$KH_SHIM" "$BUILD/tests/kh-hsloop"

total=${KH_R17_HANDSHAKES:-10000}
kh_r_token_key_cert
kh_shim_setup
port=$(kh_r_port)
# -no_cache: s_server's own TLS session cache would grow for reasons that
# are not keyhold's.
cnf=$(kh_openssl_cnf last)
OPENSSL_CONF=$cnf kh_bg openssl s_server -accept "127.0.0.1:$port" -www -no_cache \
    -key "$(kh_shim_uri appl srv)" -cert "$T/srv.pem" >"$T/s_server.log" 2>&1 </dev/null
srv=$KH_LAST_PID
kh_wait_port "$port"

snapshot() {
    local fds rss sessions
    fds=$(ls "/proc/$srv/fd" | wc -l)
    rss=$(awk '/^VmRSS/ {print $2}' "/proc/$srv/status")
    sessions=$(( $(kh_shim_count C_OpenSession CKR_OK) - $(kh_shim_count C_CloseSession CKR_OK) ))
    echo "$fds $rss $sessions"
}

"$BUILD/tests/kh-hsloop" -p "$port" -C "$T/ca/ca.pem" -n 500 -V 1.3 >"$T/warm.out" 2>&1 \
    || { cat "$T/warm.out"; kh_fail "warm-up handshakes failed"; }
read -r fds0 rss0 ses0 < <(snapshot)
kh_log "after warm-up: $fds0 fds, RSS ${rss0} kB, $ses0 open sessions"

rest=$(( total - 500 ))
half=$(( rest / 2 ))
"$BUILD/tests/kh-hsloop" -p "$port" -C "$T/ca/ca.pem" -n "$half" -V 1.3 >"$T/run1.out" 2>&1 \
    || { cat "$T/run1.out"; kh_fail "TLS 1.3 handshakes failed"; }
"$BUILD/tests/kh-hsloop" -p "$port" -C "$T/ca/ca.pem" -n $(( rest - half )) -V 1.2 >"$T/run2.out" 2>&1 \
    || { cat "$T/run2.out"; kh_fail "TLS 1.2 handshakes failed"; }
cat "$T/warm.out" "$T/run1.out" "$T/run2.out"
kh_r_alive "$srv" s_server
read -r fds1 rss1 ses1 < <(snapshot)
kh_log "after $total handshakes: $fds1 fds, RSS ${rss1} kB, $ses1 open sessions"

signs=$(kh_shim_count C_Sign CKR_OK)
[ "$signs" -ge "$total" ] || kh_fail "$signs signatures for $total handshakes"
[ "$fds1" -le "$fds0" ] || kh_fail "file descriptors grew: $fds0 -> $fds1"
[ "$ses1" -le "$ses0" ] || kh_fail "PKCS#11 sessions grew: $ses0 -> $ses1"
# Memory: a bounded allowance for allocator noise, far below what leaking
# even a few bytes per handshake would add over ~9500 handshakes.
# (Under ASan the allocator's quarantine holds freed memory on purpose:
# memory is checked by the plain run and by r17_valgrind.sh.)
if [ "${KH_ASAN:-0}" != 1 ]; then
    [ $(( rss1 - rss0 )) -le 4096 ] || kh_fail "memory grew by $(( rss1 - rss0 )) kB"
fi
[ "$(kh_shim_count C_Login)" -le 1 ] || kh_fail "more than one login in one server's life"
kh_log "scenario 17 (stability) ok"
