#!/bin/bash
# SPDX-License-Identifier: MIT
# keyhold status for a TPM identity (key file) tells the TPM's state, not
# just the file's: ok; token-unreachable (exit 8) with swtpm down;
# key-missing (exit 8) after the TPM was cleared (its storage key changed,
# the key file no longer loads), with doctor naming the reason.
. "$(dirname "$0")/lib.sh"
kh_need "$KEYHOLD" "$BUILD/keyhold.so"
kh_swtpm_start
kh_test_ca "$T/ca"
export KEYHOLD_CONF_DIR=$T/conf KEYHOLD_STATE_DIR=$T/state
"$KEYHOLD" provision cam --tpm --alg ec-p256 --host localhost --csr-out "$T/c.csr" >/dev/null
kh_ca_sign "$T/ca" "$T/c.csr" "$T/c.pem" DNS:localhost
"$KEYHOLD" install cam "$T/c.pem" --ca "$T/ca/ca.pem" >/dev/null
"$KEYHOLD" status cam --json >"$T/s0.json" || { cat "$T/s0.json"; kh_fail "status not ok"; }
[ "$(jq -r '.[0].state' "$T/s0.json")" = ok ] || kh_fail "state not ok"

kh_swtpm_kill
rc=0; "$KEYHOLD" status cam --json >"$T/s1.json" 2>"$T/s1.err" || rc=$?
[ "$rc" = 8 ] && [ "$(jq -r '.[0].state' "$T/s1.json")" = token-unreachable ] \
    || { cat "$T/s1.json" "$T/s1.err"; kh_fail "TPM down: want token-unreachable, exit 8 (got $rc)"; }
kh_swtpm_start "$KH_SWTPM_DIR"
"$KEYHOLD" status cam >/dev/null || kh_fail "status not ok once the TPM is back"

tpm2_clear
rc=0; "$KEYHOLD" status cam --json >"$T/s2.json" 2>/dev/null || rc=$?
[ "$rc" = 8 ] && [ "$(jq -r '.[0].state' "$T/s2.json")" = key-missing ] \
    || { cat "$T/s2.json"; kh_fail "TPM cleared: want key-missing, exit 8 (got $rc)"; }
"$KEYHOLD" doctor >"$T/doctor.out" 2>&1 || true
grep -q "PROBLEM.*cam.*cannot load the key file (TPM cleared" "$T/doctor.out" \
    || { cat "$T/doctor.out"; kh_fail "doctor does not say the TPM was cleared"; }
kh_log "TPM identity status: ok, token-unreachable, key-missing after a TPM clear"
