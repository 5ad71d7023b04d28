#!/bin/bash
# SPDX-License-Identifier: MIT
# The TPM backend is a module (keyhold-tpm.so beside keyhold.so) loaded on
# first use: a process that signs with a PKCS#11 key, or only parses
# certificates, never maps the tpm2-tss libraries; the first tpm2: URI, TSS2
# key file or key reference naming a tpm2: URI loads them. The must-fail
# twin: keyhold.so without its module (or with a foreign file in its place)
# refuses TPM keys with an error that names the file, and PKCS#11 keys keep
# working.
. "$(dirname "$0")/lib.sh"
kh_need "$BUILD/keyhold.so" "$BUILD/keyhold-tpm.so" "$BUILD/keyhold-tpm" \
    "$BUILD/tests/kh-keyref"
kh_softhsm_token tok
kh_p11tool_keygen tok ec256 01 EC:prime256v1
kh_swtpm_start
"$BUILD/keyhold-tpm" create --alg ec-p256 --out "$T/tpm.tss"
uri=$(kh_p11_uri tok ec256)
mkdir -p "$T/ldt"
printf 'footprint test message\n' >"$T/msg"

# sign KEY PROVIDER-DIR: one signature with the openssl command, the
# dynamic linker's library trace in $T/ld.out.
sign() {
    LD_DEBUG=libs LD_DEBUG_OUTPUT=$T/ldt/ld openssl dgst -sha256 \
        -provider-path "$2" -provider keyhold -provider default \
        -sign "$1" -out "$T/sig" "$T/msg"
}
# tss_loaded: whether the last sign() loaded the TSS libraries.
tss_loaded() {
    cat "$T"/ldt/ld.* >"$T/ld.out"
    rm -f "$T"/ldt/ld.*
    grep -q "calling init: .*libtss2-esys" "$T/ld.out"
}

kh_log "a pkcs11: key signs without loading the TSS libraries"
sign "$uri" "$BUILD" || kh_fail "pkcs11: signature failed"
! tss_loaded || kh_fail "a pkcs11: signature loaded libtss2-esys"
grep -q "calling init: .*keyhold.so" "$T/ld.out" \
    || kh_fail "keyhold.so not traced"

kh_log "a certificate and a public key parse without loading them either"
openssl req -new -x509 -key "$uri" -provider-path "$BUILD" -provider keyhold \
    -provider default -subj /CN=footprint -days 1 -out "$T/cert.pem"
LD_DEBUG=libs LD_DEBUG_OUTPUT=$T/ldt/ld openssl x509 -provider-path "$BUILD" \
    -provider keyhold -provider default -in "$T/cert.pem" -noout -pubkey \
    >/dev/null || kh_fail "x509 with keyhold loaded failed"
! tss_loaded || kh_fail "parsing a certificate loaded libtss2-esys"

kh_log "a tpm2: URI loads them on first use, and signs"
sign "tpm2:file=$T/tpm.tss" "$BUILD" || kh_fail "tpm2: signature failed"
tss_loaded || kh_fail "the TPM key was used without libtss2-esys?"
grep -q "calling init: .*keyhold-tpm.so" "$T/ld.out" \
    || kh_fail "keyhold-tpm.so was not loaded"

kh_log "a key reference naming a tpm2: URI, read as a PEM key file"
"$BUILD/tests/kh-keyref" "tpm2:file=$T/tpm.tss" >"$T/tpm.ref.pem"
KH_CNF_EXTRA="store-key-files = 1" kh_openssl_cnf last >/dev/null
OPENSSL_CONF=$T/openssl.cnf openssl dgst -sha256 -sign "$T/tpm.ref.pem" \
    -out "$T/sig" "$T/msg" || kh_fail "tpm2: key reference did not sign"
OPENSSL_CONF=$T/openssl.cnf openssl dgst -sha256 -sign "$T/tpm.tss" \
    -out "$T/sig" "$T/msg" || kh_fail "TSS2 key file did not sign"

kh_log "without keyhold-tpm.so: TPM keys refused by name, pkcs11: keys sign"
mkdir -p "$T/prov"
cp "$BUILD/keyhold.so" "$T/prov/"
kh_must_fail_clean sign "tpm2:file=$T/tpm.tss" "$T/prov"
kh_expect_output "keyhold-tpm.so"
kh_must_fail_clean sign "tpm2:handle=0x81000001" "$T/prov"
kh_expect_output "TPM backend module"
sign "$uri" "$T/prov" || kh_fail "pkcs11: key failed without the TPM module"

kh_log "a keyhold-tpm.so that is not keyhold's TPM module is refused by name"
cp /lib/x86_64-linux-gnu/libz.so.1 "$T/prov/keyhold-tpm.so"
kh_must_fail_clean sign "tpm2:file=$T/tpm.tss" "$T/prov"
kh_expect_output "is not the TPM backend module"
kh_log "the TPM backend loads on first use only; its absence is named"
