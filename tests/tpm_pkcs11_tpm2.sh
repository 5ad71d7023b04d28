#!/bin/bash
# SPDX-License-Identifier: MIT
# PKCS#11 over a TPM: a tpm2-pkcs11 token (Debian's libtpm2-pkcs11-1) on
# swtpm, used through keyhold's PKCS#11 backend exactly like SoftHSM:
# token and keys made with pkcs11-tool, EC and RSA (PKCS#1 and PSS)
# signatures verified by the default provider, a TLS 1.3 handshake with
# openssl s_server, and the wrong-PIN twin. Without a resource manager
# tpm2-pkcs11 leaves its primary key and sessions behind after each
# process: the test flushes them between processes (tpm2-pkcs11's
# limitation, not keyhold's).
# (tpm2_ptool needs a resource manager; pkcs11-tool's C_InitToken does not.)
. "$(dirname "$0")/lib.sh"
kh_need "$BUILD/keyhold.so" "$BUILD/tests/kh-signtest"
M=/usr/lib/x86_64-linux-gnu/pkcs11/libtpm2_pkcs11.so
kh_need "$M"
kh_swtpm_start
kh_test_ca "$T/ca"
export TPM2_PKCS11_TCTI=$KEYHOLD_TPM_TCTI TPM2_PKCS11_STORE=$T/p11store
export TPM2_PKCS11_LOG_LEVEL=0
mkdir -p "$T/p11store"
flush() {
    tpm2_flushcontext -t >/dev/null 2>&1 || true
    tpm2_flushcontext -l >/dev/null 2>&1 || true
    tpm2_flushcontext -s >/dev/null 2>&1 || true
}
p11() { pkcs11-tool --module "$M" "$@" >/dev/null 2>&1 || kh_fail "pkcs11-tool $*"; flush; }

p11 --init-token --label tpmtok --so-pin 5678
p11 --token-label tpmtok --login --login-type so --so-pin 5678 --init-pin --pin 1234
p11 --token-label tpmtok --login --pin 1234 --keypairgen --key-type EC:prime256v1 --label k1 --id 01
p11 --token-label tpmtok --login --pin 1234 --keypairgen --key-type rsa:2048 --label k2 --id 02
(umask 077; printf 1234 >"$T/pin"; printf 9999 >"$T/badpin")
U1="pkcs11:token=tpmtok;object=k1;type=private?module-path=$M&pin-source=file:$T/pin"
U2="pkcs11:token=tpmtok;object=k2;type=private?module-path=$M&pin-source=file:$T/pin"

"$BUILD/tests/kh-signtest" -k "$U1" -L last -P "$BUILD" -d sha256 -m both -o "$T/k1.pub" \
    || kh_fail "ECDSA through tpm2-pkcs11"
flush
for pad in pkcs1 pss; do
    "$BUILD/tests/kh-signtest" -k "$U2" -L last -P "$BUILD" -d sha256 -p "$pad" -s digest \
        -m both -o "$T/k2.pub" || kh_fail "RSA $pad through tpm2-pkcs11"
    flush
done
kh_log "tpm2-pkcs11 keys sign through keyhold's PKCS#11 backend (ECDSA, RSA PKCS#1, RSA-PSS)"

kh_pub_cert "$T/ca" "$T/k2.pub" "$T/k2.crt" || kh_fail "test CA could not certify the tpm2-pkcs11 key"
port=$(kh_free_port)
kh_s_server "$port" "${KH_PROV[@]}" -key "$U2" -cert "$T/k2.crt"
timeout 30 openssl s_client -connect "127.0.0.1:$port" -servername localhost -tls1_3 \
    -verify_return_error -CAfile "$T/ca/ca.pem" </dev/null >"$T/hs.out" 2>&1 \
    || { cat "$T/hs.out"; kh_fail "TLS 1.3 with a tpm2-pkcs11 RSA key"; }
grep -q "Verify return code: 0 (ok)" "$T/hs.out" || kh_fail "TLS 1.3 verification"
kill "$KH_LAST_PID"; wait "$KH_LAST_PID" 2>/dev/null || true
flush
kh_log "TLS 1.3 (RSA-PSS) with a tpm2-pkcs11 key behind s_server"

echo msg >"$T/msg"
kh_must_fail_clean openssl dgst -sha256 "${KH_PROV[@]}" \
    -sign "pkcs11:token=tpmtok;object=k1;type=private?module-path=$M&pin-source=file:$T/badpin" \
    -out "$T/x.sig" "$T/msg"
kh_expect_output "CKR_PIN_INCORRECT"
flush
