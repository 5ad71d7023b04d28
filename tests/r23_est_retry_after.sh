#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Scenario 23: the EST server answers 202 Accepted + Retry-After (in
# seconds, or as an HTTP date) until a person approves the request ->
# keyhold waits as told and installs once approved; a Retry-After beyond
# the client's cap (--poll-max) ends at once with "run again later",
# nothing installed.
# timeout: 180
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/est_lib.sh"

kh_estd_setup
spool=$T/spool
mkdir -p "$spool"

# Waits (bounded) until the server holds a pending request, then approves it.
approve_when_pending() {
    local i
    for i in $(seq 1 300); do
        "$KEYHOLD_ESTD" --spool "$spool" --list-pending >"$T/pending" 2>/dev/null || true
        if [ -s "$T/pending" ]; then
            "$KEYHOLD_ESTD" --spool "$spool" --approve all >/dev/null
            return 0
        fi
        sleep 0.1
    done
    return 1
}

run_case() {
    local name=$1 host=$2; shift 2
    kh_estd_start --manual --spool "$spool" "$@"
    kh_est_identity "$name" "$host"
    kh_est_enroll "$name" --poll-max 60 >"$T/$name.out" 2>&1 &
    local pid=$!
    KH_BG_PIDS+=("$pid")
    approve_when_pending || kh_fail "$name: no request became pending at the CA"
    local rc=0
    wait "$pid" || rc=$?
    cat "$T/$name.out"
    [ "$rc" = 0 ] || kh_fail "$name: enroll exited $rc after the approval"
    grep -q "waits for approval at the CA; asking again in" "$T/$name.out" \
        || kh_fail "$name: keyhold did not report the wait"
    kh_est_works "$name"
    kh_estd_stop
}

# 1. Retry-After in seconds.
run_case secs cam1.example --retry-after 2
grep -q "asking again in 2 s" "$T/secs.out" || kh_fail "did not wait the 2 s the server asked for"
kh_log "202 + Retry-After: 2 -> waited 2 s, installed after approval"

# 2. Retry-After as an HTTP date.
run_case date cam2.example --retry-after 3 --retry-after-date
grep -qE "asking again in [1-4] s" "$T/date.out" || kh_fail "did not follow the HTTP-date Retry-After"
kh_log "202 + Retry-After: <HTTP date> -> waited as told, installed"

# 3. Beyond the cap: no long sleep, a clear message, nothing installed.
kh_estd_start --manual --spool "$spool" --retry-after 3600
kh_est_identity capped cam3.example
rc=0
start=$(date +%s)
timeout 60 "$KEYHOLD" enroll capped --est "$KH_ESTD_URL" --server-ca "$KH_ESTD_DIR/tls-ca.pem" \
    --ca "$KH_ESTD_DIR/ca.pem" --user dev1 --password-file "$KH_ESTD_DIR/dev1.pw" \
    --poll-max 60 >"$T/capped.out" 2>&1 || rc=$?
cat "$T/capped.out"
[ "$rc" = 4 ] || kh_fail "Retry-After beyond the cap: exit $rc (want 4)"
[ $(( $(date +%s) - start )) -lt 50 ] || kh_fail "keyhold slept although the wait exceeds its cap"
grep -q "run again later" "$T/capped.out" || kh_fail "no 'run again later' advice"
[ ! -e "$KEYHOLD_STATE_DIR/capped/current" ] || kh_fail "something was installed"
kh_log "Retry-After beyond --poll-max: exit 4 at once, nothing installed"
kh_log "scenario 23 ok"
