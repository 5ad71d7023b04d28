#!/bin/bash
# SPDX-License-Identifier: MIT
# RELIABILITY 18: swtpm without a resource manager (3 transient slots), five
# keys in one process, 100 signatures each, every one verified: no
# TPM_RC_OBJECT_MEMORY, and no transient handle left afterwards. Run twice:
# the default for such a TPM (connect, load, sign, flush per operation) and
# with keys held loaded (KEYHOLD_TPM_HOLD=1), where the least recently used
# key is flushed when the TPM runs out of slots.
. "$(dirname "$0")/lib.sh"
kh_need "$BUILD/keyhold.so" "$BUILD/keyhold-tpm"
kh_swtpm_start

KT=$BUILD/keyhold-tpm
uris=()
i=0
for alg in ec-p256 ec-p384 rsa-2048 ec-p256 rsa-2048; do
    i=$((i + 1))
    "$KT" create --alg "$alg" --out "$T/k$i.tss"
    uris+=("tpm2:file=$T/k$i.tss")
done

"$KT" sign-loop -n 100 -P "$BUILD" "${uris[@]}" | tee "$T/loop1.out"
grep -q "^500 signatures verified" "$T/loop1.out" || kh_fail "default mode: not 500 signatures"
[ "$(kh_tpm_transients)" = 0 ] || kh_fail "transients left: $(tpm2_getcap handles-transient)"

KEYHOLD_TPM_HOLD=1 "$KT" sign-loop -n 100 -P "$BUILD" "${uris[@]}" | tee "$T/loop2.out"
grep -q "^500 signatures verified" "$T/loop2.out" || kh_fail "held keys: not 500 signatures"
[ "$(kh_tpm_transients)" = 0 ] || kh_fail "transients left: $(tpm2_getcap handles-transient)"
kh_log "5 keys x 100 signatures twice, no OBJECT_MEMORY, no transient handles left"
