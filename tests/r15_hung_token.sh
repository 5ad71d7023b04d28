#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Scenario 15: one C_Sign hangs in the token (a hung session) -> the other
# sessions keep signing meanwhile, and the hung one completes when the token
# answers again. (keyhold status reporting "token not responding" is
# checked here once the CLI is built.)
# timeout: 180
. "$(dirname "$0")/lib.sh"
kh_need "$BUILD/keyhold.so" "$KH_SHIM" "$BUILD/tests/kh-threadsign"

kh_r_token_key_cert
kh_shim_setup
kh_shim_set 'block C_Sign at=1 max=120'
"$BUILD/tests/kh-threadsign" -k "$(kh_shim_uri appl srv)" -t 4 -n 50 -L last -P "$BUILD" \
    >"$T/threads.out" 2>&1 &
ts=$!
KH_BG_PIDS+=("$ts")
kh_shim_wait 'fn=C_Sign .* blocked' 300

# While the first signature hangs, the other threads' signatures go on.
want=100
for i in $(seq 1 300); do
    n=$(kh_shim_count C_Sign CKR_OK)
    [ "$n" -ge "$want" ] && break
    kill -0 "$ts" 2>/dev/null || break
    sleep 0.1
done
n=$(kh_shim_count C_Sign CKR_OK)
grep -q 'released' "$KH_SHIM_LOG" && kh_fail "the hung call was released early"
[ "$n" -ge "$want" ] || { cat "$T/threads.out"; kh_fail "only $n signatures while one session hung (want >= $want)"; }
kh_log "$n signatures on other sessions while one C_Sign hung"

# The token answers again: the hung signature completes and verifies.
kh_shim_set
rc=0
wait "$ts" || rc=$?
cat "$T/threads.out"
[ "$rc" = 0 ] || kh_fail "kh-threadsign exited $rc after the token recovered"
grep -q 'released' "$KH_SHIM_LOG" || kh_fail "the hung call was never released"
kh_log "scenario 15 (provider part) ok"
