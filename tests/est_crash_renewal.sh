#!/bin/bash
# SPDX-License-Identifier: MIT
# keyhold killed at every step of a renewal and of a rekey
# (KEYHOLD_CRASH_AT aborts at named points; and a real kill -9 while it
# waits for the CA): afterwards the identity is old or new, complete, and
# `keyhold verify` passes; the next run recovers, and no orphan key or
# half-built generation is left.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/est_lib.sh"

kh_est_cam
echo "rekey-grace = 0" >>"$KEYHOLD_CONF_DIR/cam.conf"   # destroy replaced keys at once
p11keys() {
    pkcs11-tool --module "$SOFTHSM_MODULE" --token-label app --login --pin 1111 \
        --list-objects --type privkey 2>/dev/null | grep -c "label: *keyhold:cam:" || true
}
crash() {   # crash CMD STEP
    local rc=0
    KEYHOLD_CRASH_AT=$2 "$KEYHOLD" "$1" cam ${3:-} >"$T/crash.out" 2>&1 || rc=$?
    grep -q "KEYHOLD_CRASH_AT=$2" "$T/crash.out" || { cat "$T/crash.out"; kh_fail "$1 never reached step $2"; }
    [ "$rc" -ge 128 ] || kh_fail "$1 at $2: not killed (exit $rc)"
    "$KEYHOLD" verify cam >/dev/null 2>&1 || { "$KEYHOLD" verify cam; kh_fail "$1 killed at $2: identity broken"; }
}

for step in est-csr est-response est-checked checked staging written synced token-cert \
            switch switched links pruned est-installed est-hooks; do
    kh_log "renew killed at $step"
    crash renew "$step" --force
done
"$KEYHOLD" renew cam --force >/dev/null || kh_fail "renew after the crashes"
kh_est_works cam

for step in rekey-keygen est-csr est-response checked written switched links est-installed est-hooks; do
    kh_log "rekey killed at $step"
    crash rekey "$step"
done
kh_log "a key left by a rekey killed after keygen goes with the next renewal"
"$KEYHOLD" renew cam --force >/dev/null 2>&1 || kh_fail "renew"
[ "$(p11keys)" = 1 ] || kh_fail "renew left $(p11keys) keys"
crash rekey rekey-keygen
[ "$(p11keys)" = 2 ] || kh_fail "expected an orphan after keygen, got $(p11keys) keys"
"$KEYHOLD" renew cam --force >/dev/null 2>&1 || kh_fail "renew after keygen crash"
[ "$(p11keys)" = 1 ] || kh_fail "orphan key survived the renewal"
"$KEYHOLD" rekey cam >/dev/null 2>&1 || kh_fail "rekey after the crashes"
kh_est_works cam
[ "$(p11keys)" = 1 ] || kh_fail "orphan keys left: $(p11keys) keys for cam"
ngen=$(find "$KEYHOLD_STATE_DIR/cam" -maxdepth 1 -name 'gen-*' | wc -l)
[ "$ngen" -le 2 ] || kh_fail "$ngen generations left"

kh_log "kill -9 while waiting for the CA's approval"
kh_estd_stop
kh_estd_start --manual --spool "$T/spool" --retry-after 1
fp=$(kh_est_cert_fp cam)
"$KEYHOLD" renew cam --force >"$T/wait.out" 2>&1 &
pid=$!
for i in $(seq 1 600); do
    ls "$T/spool/pending/" 2>/dev/null | kh_grepq . && break
    sleep 0.1
done
kh_log "meanwhile a second run (the technician) finds the identity busy"
kh_must_fail 75 -- "$KEYHOLD" renew cam --force
[ "$(ls "$T/spool/pending/" | wc -l)" = 1 ] || kh_fail "the busy run reached the CA"
kill -9 "$pid"
wait "$pid" 2>/dev/null || true
[ "$(kh_est_cert_fp cam)" = "$fp" ] || kh_fail "identity changed"
kh_est_works cam
"$KEYHOLD_ESTD" --spool "$T/spool" --approve all >/dev/null
"$KEYHOLD" renew cam --force >/dev/null 2>&1 || kh_fail "renew after kill -9 (lock left behind?)"
[ "$(kh_est_cert_fp cam)" != "$fp" ] || kh_fail "not renewed"
kh_est_works cam
kh_log "ok"
