#!/bin/bash
# SPDX-License-Identifier: MIT
# TPM keys under a threaded and a forking server: 4 threads x 25
# signatures with one shared key (the ESYS context is serialised by its
# lock); a parent that signed, then forked 3 children (and grandchildren)
# that all sign at once: each child drops the parent's connection without
# touching it and opens its own; three separate processes signing at the
# same time. All signatures verify; no transient handle is left.
. "$(dirname "$0")/lib.sh"
kh_need "$BUILD/keyhold.so" "$BUILD/keyhold-tpm" "$BUILD/tests/kh-threadsign" "$BUILD/tests/kh-forksign"
kh_swtpm_start
"$BUILD/keyhold-tpm" create --alg ec-p256 --out "$T/ec.tss"
"$BUILD/keyhold-tpm" create --alg rsa-2048 --out "$T/rsa.tss"

for hold in 0 1; do
    export KEYHOLD_TPM_HOLD=$hold
    "$BUILD/tests/kh-threadsign" -k "tpm2:file=$T/ec.tss" -t 4 -n 25 -L last -P "$BUILD" \
        || kh_fail "threads, EC, hold=$hold"
    "$BUILD/tests/kh-threadsign" -k "tpm2:file=$T/rsa.tss" -t 4 -n 10 -p pss -L last -P "$BUILD" \
        || kh_fail "threads, RSA-PSS, hold=$hold"
    [ "$(kh_tpm_transients)" = 0 ] || kh_fail "transients left (threads, hold=$hold)"
done
# Forked children: without a resource manager they take turns on the TPM,
# so the default per-operation mode is the one a forking server uses there.
export KEYHOLD_TPM_HOLD=0
"$BUILD/tests/kh-forksign" -k "tpm2:file=$T/ec.tss" -f 3 -n 10 -g -L last -P "$BUILD" \
    || kh_fail "fork after signing"
"$BUILD/tests/kh-forksign" -k "tpm2:file=$T/rsa.tss" -c -f 3 -n 5 -L last -P "$BUILD" \
    || kh_fail "fork before the first signature"
[ "$(kh_tpm_transients)" = 0 ] || kh_fail "transients left (fork)"

# Separate processes at once: swtpm switches connections between commands,
# so keyhold processes serialise each operation with a lock file.
pids=()
for i in 1 2 3; do
    "$BUILD/tests/kh-signtest" -k "tpm2:file=$T/ec.tss" -L last -P "$BUILD" -d sha256 -m both \
        -n 20 >"$T/par$i.out" 2>&1 &
    pids+=($!)
done
for i in 1 2 3; do
    wait "${pids[$((i - 1))]}" || { cat "$T/par$i.out"; kh_fail "concurrent process $i"; }
done
[ "$(kh_tpm_transients)" = 0 ] || kh_fail "transients left (processes)"
kh_log "threads and forked children sign with TPM keys; nothing left loaded"
