#!/bin/bash
# SPDX-License-Identifier: MIT
# Manual approval at the CA: keyhold-estd answers 202 + Retry-After until
# the operator approves; keyhold polls as told (seconds or an HTTP date),
# within its cap, then installs. A rejected request and a wait beyond the
# cap fail cleanly with nothing installed.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/est_lib.sh"

kh_estd_setup
d=$KH_ESTD_DIR
wait_pending() {
    local i
    for i in $(seq 1 600); do
        ls "$1"/pending/ 2>/dev/null | kh_grepq -v tmp && return 0
        sleep 0.1
    done
    kh_fail "no pending request in $1"
}
wait_pid() {   # bounded wait for a background enrolment
    local i
    for i in $(seq 1 900); do
        kill -0 "$1" 2>/dev/null || { wait "$1"; return $?; }
        sleep 0.1
    done
    kh_fail "enrolment still running after 90 s"
}

kh_log "Retry-After in seconds: pending, approved by the operator, installed"
kh_estd_start --manual --spool "$T/spool" --retry-after 1
kh_est_identity cam cam1.example
kh_est_enroll cam --poll-max 60 >"$T/e1.out" 2>&1 &
pid=$!
wait_pending "$T/spool"
"$KEYHOLD_ESTD" --spool "$T/spool" --list-pending | tee "$T/list"
grep -q "CN = cam1.example\|CN=cam1.example" "$T/list" || kh_fail "pending list lacks the request"
[ ! -e "$KEYHOLD_STATE_DIR/cam/current" ] || kh_fail "installed before approval"
"$KEYHOLD_ESTD" --spool "$T/spool" --approve all || kh_fail "approve"
wait_pid $pid || { cat "$T/e1.out"; kh_fail "enrolment failed after approval"; }
cat "$T/e1.out"
grep -q "waits for approval at the CA; asking again in 1 s" "$T/e1.out" || kh_fail "did not follow Retry-After"
grep -q "simpleenroll -> 202" "$d/estd.log" || kh_fail "no 202 logged"
grep -q "simpleenroll -> 200 issued /CN=cam1.example" "$d/estd.log" || kh_fail "no issue after approval"
kh_est_works cam

kh_log "Retry-After as an HTTP date"
kh_estd_stop
kh_estd_start --manual --spool "$T/spool2" --retry-after 2 --retry-after-date
kh_est_identity cam2 cam2.example
kh_est_enroll cam2 --poll-max 60 >"$T/e2.out" 2>&1 &
pid=$!
wait_pending "$T/spool2"
"$KEYHOLD_ESTD" --spool "$T/spool2" --approve all >/dev/null || kh_fail "approve"
wait_pid $pid || { cat "$T/e2.out"; kh_fail "enrolment (date) failed"; }
# an unparsed date would mean the 10 s default
grep -q "asking again in [0-2] s" "$T/e2.out" \
    || { cat "$T/e2.out"; kh_fail "HTTP-date Retry-After not followed"; }
kh_est_works cam2

kh_log "waiting longer than --poll-max: clear error, nothing installed"
kh_est_identity cam3 cam3.example
kh_must_fail 4 -- kh_est_enroll cam3 --poll-max 1
kh_expect_output "waits for approval"
[ ! -e "$KEYHOLD_STATE_DIR/cam3/current" ] || kh_fail "cam3 installed"

kh_log "rejected by the operator: refused, nothing installed"
id=$("$KEYHOLD_ESTD" --spool "$T/spool2" --list-pending | awk 'NR == 1 { print $1 }')
[ -n "$id" ] || kh_fail "cam3's request is not pending"
"$KEYHOLD_ESTD" --spool "$T/spool2" --reject "$id" >/dev/null || kh_fail "reject"
kh_must_fail 4 -- "$KEYHOLD" enroll cam3
kh_expect_output "rejected"
[ ! -e "$KEYHOLD_STATE_DIR/cam3/current" ] || kh_fail "cam3 installed after rejection"
kh_log "ok"
