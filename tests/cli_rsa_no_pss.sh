#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# A token without RSA-PSS (the fault shim hides it): provision warns that
# an RSA identity cannot do TLS 1.3, doctor says so, and verify passes on
# TLS 1.2 with PKCS#1 v1.5 signatures, warning about TLS 1.3.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cli_lib.inc"
kh_need "$KH_SHIM"

kh_cli_env
kh_shim_setup
export KH_SHIM_FAULTS='hide CKM_RSA_PKCS_PSS CKM_SHA1_RSA_PKCS_PSS CKM_SHA224_RSA_PKCS_PSS CKM_SHA256_RSA_PKCS_PSS CKM_SHA384_RSA_PKCS_PSS CKM_SHA512_RSA_PKCS_PSS'
"$KEYHOLD" provision rsa --token app --module "$KH_SHIM" --alg rsa-2048 --host rsa.example.com \
    --pin-file "$T/app.pin" --csr-out "$T/rsa.csr" >"$T/p.out" 2>&1 || { cat "$T/p.out"; kh_fail "provision"; }
cat "$T/p.out"
grep -q "no RSA-PSS" "$T/p.out" || kh_fail "provision did not warn about TLS 1.3"
openssl req -in "$T/rsa.csr" -verify -noout 2>&1 | kh_has "verify OK" || kh_fail "CSR (PKCS#1 v1.5)"
kh_cli_sign rsa "$T/rsa.pem" "DNS:rsa.example.com"
"$KEYHOLD" install rsa "$T/rsa.pem" --ca "$T/ca/ca.pem" >/dev/null || kh_fail "install"
"$KEYHOLD" verify rsa >"$T/v.out" 2>&1 || { cat "$T/v.out"; kh_fail "verify without PSS"; }
cat "$T/v.out"
grep -q "TLS 1.3 handshake failed with this RSA key" "$T/v.out" || kh_fail "no TLS 1.3 warning"
rc=0; "$KEYHOLD" doctor >"$T/d.out" 2>&1 || rc=$?
[ "$rc" = 5 ] || kh_fail "doctor exit $rc"
grep -q "^PROBLEM .*lacks RSA-PSS: TLS 1.3 is impossible" "$T/d.out" || kh_fail "doctor finding"
if grep -q "fn=C_SignInit .*CKM_RSA_X_509" "$KH_SHIM_LOG" 2>/dev/null; then
    kh_fail "raw RSA used to fake PSS"
fi
kh_log "ok"
