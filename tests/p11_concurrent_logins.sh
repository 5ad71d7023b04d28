#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Several processes load one SoftHSM key side by side, each initialising the
# module and logging in: SoftHSM reads its token files at C_Initialize and
# rewrites the token's file at every C_Login, so without keyhold's token-file
# lock some of them lose the token or its PIN. Three workers run fork trees
# (kh-forksign: every child initialises the module again and logs in) while
# a fourth loads the PEM key reference in fresh openssl processes; every
# load and every signature must succeed and verify. Then a lock held from
# outside for longer than keyhold waits: a load still succeeds (bounded
# wait, no deadlock) and says it went on without the lock; once the lock is
# free again, a load takes it without waiting.
. "$(dirname "$0")/lib.sh"
kh_need "$BUILD/keyhold.so" "$BUILD/tests/kh-forksign" "$BUILD/tests/kh-keyref"
FS=$BUILD/tests/kh-forksign
RUNS=16       # fork trees per worker
CHILDREN=8    # children per tree, each a fresh module instance and login
LOADS=20      # openssl processes loading the key reference

kh_softhsm_setup
grep -q "reset_on_fork = true" "$SOFTHSM2_CONF" || kh_fail "reset_on_fork is not set"
kh_softhsm_token tok
kh_p11tool_keygen tok ec256 01 EC:prime256v1
kh_p11_pubkey tok 01 "$T/pub.pem"
uri=$(kh_p11_uri tok ec256)
"$BUILD/tests/kh-keyref" "$uri" >"$T/key.pem"
cnf=$(KH_CNF_EXTRA="store-key-files = auto" kh_openssl_cnf last)
printf '%032d' 7 >"$T/dgst"

forker() {
    local w=$1 i
    for i in $(seq 1 $RUNS); do
        if ! "$FS" -k "$uri" -f $CHILDREN -n 2 -L last -P "$BUILD" \
                >"$T/fork.$w.$i.log" 2>&1; then
            echo "fork tree $w.$i" >>"$T/failed"
        fi
    done
}

loader() {
    local i
    for i in $(seq 1 $LOADS); do
        if ! OPENSSL_CONF=$cnf openssl pkeyutl -sign -inkey "$T/key.pem" \
                -in "$T/dgst" -out "$T/sig.$i" >"$T/load.$i.log" 2>&1; then
            echo "key reference load $i" >>"$T/failed"
        elif ! openssl pkeyutl -verify -pubin -inkey "$T/pub.pem" \
                -in "$T/dgst" -sigfile "$T/sig.$i" >/dev/null 2>&1; then
            echo "key reference signature $i does not verify" >>"$T/failed"
        fi
    done
}

kh_log "3 workers x $RUNS fork trees of $CHILDREN children, 1 worker x $LOADS openssl loads, side by side"
pids=()
for w in 1 2 3; do forker $w & pids+=($!); done
loader & pids+=($!)
for p in "${pids[@]}"; do wait "$p"; done
if [ -s "$T/failed" ]; then
    cat "$T/failed"
    cat "$T"/fork.*.log "$T"/load.*.log | grep -v "all verified" | sort | uniq -c | head -20
    kh_fail "$(wc -l <"$T/failed") of $((3 * RUNS + LOADS)) runs failed beside each other"
fi
n=$(cat "$T"/fork.*.log | grep -c "all verified" || true)
[ "$n" -eq $((3 * RUNS)) ] || kh_fail "only $n of $((3 * RUNS)) fork trees verified"
kh_log "all $((3 * RUNS * (CHILDREN + 1) + LOADS)) processes loaded the key, signed and verified"

kh_log "the token directory locked from outside longer than keyhold waits: the load goes on without the lock"
# The subshell becomes the sleep, which keeps fd 9 and the lock until killed.
( exec 9<"$T/tokens"; flock -x 9; touch "$T/held"; exec sleep 60 ) &
holder=$!
KH_BG_PIDS+=($holder)
for i in $(seq 1 50); do [ -e "$T/held" ] && break; sleep 0.1; done
[ -e "$T/held" ] || kh_fail "the outside lock holder did not start"
OPENSSL_CONF=$cnf KEYHOLD_DEBUG=1 timeout 60 openssl pkeyutl -sign -inkey "$T/key.pem" \
    -in "$T/dgst" -out "$T/sig.held" >"$T/held.log" 2>&1 \
    || { cat "$T/held.log"; kh_fail "no signature while the lock was held elsewhere"; }
openssl pkeyutl -verify -pubin -inkey "$T/pub.pem" -in "$T/dgst" -sigfile "$T/sig.held" \
    >/dev/null || kh_fail "signature made beside the held lock does not verify"
kh_grepq -F "token-file lock on $T/tokens not taken" "$T/held.log" \
    || { cat "$T/held.log"; kh_fail "keyhold did not wait for the token-file lock"; }
kill "$holder"; wait "$holder" 2>/dev/null || true
kh_log "the lock free again: a load takes it without waiting"
OPENSSL_CONF=$cnf KEYHOLD_DEBUG=1 openssl pkeyutl -sign -inkey "$T/key.pem" \
    -in "$T/dgst" -out "$T/sig.free" >"$T/free.log" 2>&1 \
    || { cat "$T/free.log"; kh_fail "no signature after the lock was freed"; }
openssl pkeyutl -verify -pubin -inkey "$T/pub.pem" -in "$T/dgst" -sigfile "$T/sig.free" \
    >/dev/null || kh_fail "signature made after the lock was freed does not verify"
! kh_grepq -F "not taken" "$T/free.log" || { cat "$T/free.log"; kh_fail "a free lock was not taken"; }
kh_log "concurrent logins all succeeded; a lock held elsewhere delays, never blocks"
