#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Scenario 14: a token without RSA-PSS. TLS 1.3 (which signs only with PSS)
# fails cleanly with the cause named; TLS 1.2 restricted to PKCS#1 v1.5
# signature algorithms works; raw RSA (CKM_RSA_X_509) is never used to
# fake PSS; the CLI makes EC keys by default and warns when RSA is forced.
# timeout: 120
. "$(dirname "$0")/lib.sh"
kh_need "$BUILD/keyhold.so" "$KH_SHIM"

kh_r_token_key_cert rsa:2048
kh_shim_setup
export KH_SHIM_FAULTS='hide CKM_RSA_PKCS_PSS CKM_SHA1_RSA_PKCS_PSS CKM_SHA224_RSA_PKCS_PSS CKM_SHA256_RSA_PKCS_PSS CKM_SHA384_RSA_PKCS_PSS CKM_SHA512_RSA_PKCS_PSS'
key=$(kh_shim_uri appl srv)

# The token really offers no PSS through the shim.
# (Not under ASan: pkcs11-tool with the instrumented shim trips over
# SoftHSM's own C++ allocations there; the shim's self-test covers hiding.)
if [ "${KH_ASAN:-0}" != 1 ]; then
    pkcs11-tool --module "$KH_SHIM" --token-label appl -M >"$T/mechs" 2>/dev/null || true
    grep -q '^ *RSA-PKCS,' "$T/mechs" || kh_fail "cannot list the token's mechanisms through the shim"
    if grep -q 'RSA-PKCS-PSS' "$T/mechs"; then
        kh_fail "the shim still offers RSA-PSS"
    fi
fi
kh_shim_log_reset

# 1. A server as configured for TLS 1.3: the handshake fails cleanly.
port=$(kh_r_port)
kh_s_server "$port" -key "$key" -cert "$T/srv.pem" "${KH_PROV[@]}"
srv=$KH_LAST_PID
if kh_r_handshake "$port" -tls1_3; then kh_fail "TLS 1.3 worked without RSA-PSS?"; fi
grep -qi alert "$T/hs.out" || { cat "$T/hs.out"; kh_fail "TLS 1.3: no alert to the client"; }
kh_r_alive "$srv" s_server
grep -qiE 'PSS|MECHANISM' "$T/s_server.$port.log" \
    || { cat "$T/s_server.$port.log"; kh_fail "the server's error does not name the missing mechanism"; }
kh_log "TLS 1.3 without PSS: clean failure, cause named"

# 2. A server limited to PKCS#1 v1.5 signatures: TLS 1.2 works (and again).
port2=$(kh_r_port)
kh_s_server "$port2" -key "$key" -cert "$T/srv.pem" -sigalgs 'RSA+SHA256:RSA+SHA384:RSA+SHA512' "${KH_PROV[@]}"
srv2=$KH_LAST_PID
for i in 1 2 3; do
    kh_r_handshake "$port2" -tls1_2 || { cat "$T/hs.out"; kh_fail "TLS 1.2 with PKCS#1 v1.5 failed ($i)"; }
done
grep -q "Peer signature type: RSA$" "$T/hs.out" || { cat "$T/hs.out"; kh_fail "TLS 1.2: not a PKCS#1 v1.5 signature"; }
if kh_r_handshake "$port2" -tls1_3; then kh_fail "TLS 1.3 worked with PKCS#1-only sigalgs?"; fi
kh_r_alive "$srv2" s_server
kh_log "TLS 1.2 with PKCS#1 v1.5: ok"

# 3. Never raw RSA, and every RSA signature was PKCS#1 v1.5 in the token.
if grep -qE 'fn=C_(Sign|Decrypt|Encrypt)Init .*mech=CKM_RSA_X_509' "$KH_SHIM_LOG"; then
    kh_fail "raw RSA (CKM_RSA_X_509) was used"
fi
grep -q 'fn=C_SignInit .*mech=CKM_RSA_PKCS rv=CKR_OK' "$KH_SHIM_LOG" \
    || kh_fail "no PKCS#1 v1.5 signature seen in the token"
# 4. The CLI on such a token: the default key is EC; a forced RSA key
#    comes with a warning that TLS 1.3 is impossible.
if [ -x "$KEYHOLD" ]; then
    export KEYHOLD_CONF_DIR=$T/conf KEYHOLD_STATE_DIR=$T/state
    "$KEYHOLD" provision dflt --token appl --module "$KH_SHIM" --host a.example \
        --pin-file "$T/appl.pin" >"$T/dflt.out" 2>&1 || { cat "$T/dflt.out"; kh_fail "provision (default alg)"; }
    grep -q '^alg = ec-' "$KEYHOLD_CONF_DIR/dflt.conf" || kh_fail "the default key on a token without PSS is not EC"
    "$KEYHOLD" provision forced --token appl --module "$KH_SHIM" --alg rsa-2048 --host b.example \
        --pin-file "$T/appl.pin" >"$T/forced.out" 2>&1 || { cat "$T/forced.out"; kh_fail "provision --alg rsa-2048"; }
    cat "$T/forced.out"
    grep -qi 'warning.*TLS 1.3' "$T/forced.out" || kh_fail "no warning that an RSA key cannot do TLS 1.3 here"
    kh_log "CLI: default key EC; forced RSA warns that TLS 1.3 is impossible"
fi
kh_log "scenario 14 ok"
