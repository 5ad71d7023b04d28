#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Scenario 15, the operator's side: the token hangs (every call into it
# blocks) -> `keyhold status` does not hang with it: within its timeout it
# reports the identity's token as "not responding" (state
# token-unreachable, exit 8), and recovers once the token answers.
# timeout: 180
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cli_lib.inc"
kh_need "$KH_SHIM"
# A short probe timeout keeps the test quick (default 10 s).
export KEYHOLD_TOKEN_TIMEOUT=3

kh_cli_env
kh_shim_setup
"$KEYHOLD" provision rec --token app --module "$KH_SHIM" --alg ec-p256 --host cam1.example.com \
    --pin-file "$T/app.pin" --csr-out "$T/rec.csr" >/dev/null || kh_fail "provision"
kh_cli_sign rec "$T/rec.pem" "DNS:cam1.example.com"
"$KEYHOLD" install rec "$T/rec.pem" --ca "$T/ca/ca.pem" >/dev/null || kh_fail "install"
"$KEYHOLD" status rec >/dev/null || kh_fail "status before the hang"

for fn in C_GetTokenInfo C_OpenSession C_FindObjectsInit C_GetAttributeValue; do
    kh_shim_set "block $fn max=150"
    rc=0
    start=$(date +%s)
    timeout 120 "$KEYHOLD" status rec --json >"$T/st.json" 2>"$T/st.err" || rc=$?
    took=$(( $(date +%s) - start ))
    cat "$T/st.err"
    [ "$rc" != 124 ] || kh_fail "status hung with the token ($fn blocked)"
    [ "$rc" = 8 ] || kh_fail "$fn blocked: status exit $rc (want 8)"
    [ "$(jq -r '.[0].state' "$T/st.json")" = token-unreachable ] || kh_fail "$fn blocked: state is not token-unreachable"
    grep -qi "not responding" "$T/st.err" "$T/st.json" || kh_fail "$fn blocked: no 'not responding'"
    kh_log "$fn blocked: status answered after ${took} s: token not responding"
    kh_shim_set
    "$KEYHOLD" status rec >/dev/null || kh_fail "status after the token recovered ($fn)"
done
kh_log "scenario 15 (status) ok"
