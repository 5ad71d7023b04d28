#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Scenario 29: the renewal timer and a technician renew the same identity
# at the same moment -> one proceeds, the other exits "busy" (75) at once
# and changes nothing; the CA sees exactly one request.
# timeout: 180
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/est_lib.sh"
kh_need "$KH_SHIM"

kh_estd_setup
kh_estd_start
kh_shim_setup
kh_est_identity cam cam1.example --module "$KH_SHIM"
kh_est_enroll cam >"$T/enroll.out" 2>&1 || { cat "$T/enroll.out"; kh_fail "enroll"; }
fp0=$(kh_est_cert_fp cam)
reqs0=$(grep -c "simplereenroll" "$KH_ESTD_DIR/estd.log" || true)

# The first renewal hangs in the token while it signs its CSR (the shim
# blocks that C_Sign), so it holds the identity's lock for a while.
kh_shim_set 'block C_Sign at=1 max=120'
"$KEYHOLD" renew cam --force >"$T/first.out" 2>&1 &
first=$!
KH_BG_PIDS+=("$first")
kh_shim_wait 'fn=C_Sign .* blocked' 300

# The second one meanwhile: busy, at once.
rc=0
timeout 60 "$KEYHOLD" renew cam --force >"$T/second.out" 2>&1 || rc=$?
cat "$T/second.out"
[ "$rc" = 75 ] || kh_fail "the second renewal exited $rc (want 75 busy)"
grep -qi "busy" "$T/second.out" || kh_fail "the second renewal does not say 'busy'"
rc=0
timeout 60 "$KEYHOLD" renew --all --force >"$T/third.out" 2>&1 || rc=$?
[ "$rc" = 75 ] || { cat "$T/third.out"; kh_fail "renew --all during a renewal exited $rc (want 75)"; }
[ "$(kh_est_cert_fp cam)" = "$fp0" ] || kh_fail "the identity changed while the first renewal hung"

# Let the first one go: it completes.
kh_shim_set
rc=0
wait "$first" || rc=$?
cat "$T/first.out"
[ "$rc" = 0 ] || kh_fail "the first renewal exited $rc"
[ "$(kh_est_cert_fp cam)" != "$fp0" ] || kh_fail "the first renewal installed nothing"
reqs1=$(grep -c "simplereenroll" "$KH_ESTD_DIR/estd.log" || true)
[ $(( reqs1 - reqs0 )) = 1 ] || kh_fail "the CA saw $(( reqs1 - reqs0 )) renewal requests (want 1)"
kh_est_works cam
kh_log "scenario 29 ok"
