#!/bin/bash
# SPDX-License-Identifier: MIT
# RELIABILITY 21 (scenario side): truncated, empty, huge, garbled and
# foreign TPM key files and bad tpm2: URIs each give a named error and no
# crash (tpm2:file= through the store); the good key keeps signing.
. "$(dirname "$0")/lib.sh"
kh_need "$BUILD/keyhold.so" "$BUILD/keyhold-tpm"
kh_swtpm_start
KT=$BUILD/keyhold-tpm
"$KT" create --alg ec-p256 --out "$T/good.tss"
echo "msg" >"$T/msg"
sign() { openssl dgst -sha256 "${KH_PROV[@]}" -sign "$1" -out "$T/x.sig" "$T/msg"; }

: >"$T/empty.tss"
head -c 100 "$T/good.tss" >"$T/trunc.tss"
sed '2s/^..../AAAA/' "$T/good.tss" >"$T/garbled.tss"
{ echo "-----BEGIN TSS2 PRIVATE KEY-----"; head -c 300000 /dev/zero | base64 -w 64;
  echo "-----END TSS2 PRIVATE KEY-----"; } >"$T/huge.tss"
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$T/soft.tss" 2>/dev/null
# A valid structure with another type OID (importable key 2.23.133.10.1.4).
body=$(sed '1d;$d' "$T/good.tss" | base64 -d | xxd -p | tr -d '\n' | sed 's/0606678105 0a0103/X/; s/06066781050a0103/06066781050a0104/')
{ echo "-----BEGIN TSS2 PRIVATE KEY-----"; echo "$body" | xxd -r -p | base64 -w 64;
  echo "-----END TSS2 PRIVATE KEY-----"; } >"$T/oid.tss"

for f in empty trunc garbled huge soft oid missing; do
    kh_must_fail_clean sign "tpm2:file=$T/$f.tss"
    grep -qiE "TPM key file" "$T/must_fail.out" \
        || kh_fail "$f: error does not say what is wrong"
done
kh_expect_output "No such file"
kh_must_fail_clean sign "tpm2:file=$T/soft.tss"
kh_expect_output "expected 'TSS2 PRIVATE KEY'"
for uri in "tpm2:" "tpm2:handle=0x1234" "tpm2:handle=zz" "tpm2:file=$T/good.tss;bogus=1" \
           "tpm2:file=%ZZ" "tpm2:handle=0x81000099"; do
    kh_must_fail_clean sign "$uri"
done
kh_expect_output "no key at persistent handle 0x81000099"
# The same files given as key files (OSSL_STORE file: and keyhold's
# decoder, which the openssl commands reach with store-key-files = 1).
KH_CNF_EXTRA="store-key-files = 1" kh_openssl_cnf last >/dev/null
sign() { OPENSSL_CONF=$T/openssl.cnf openssl dgst -sha256 -sign "$1" -out "$T/x.sig" "$T/msg"; }
kh_must_fail_clean sign "$T/trunc.tss"
kh_expect_output "TSS2 PRIVATE KEY: truncated or malformed PEM"
kh_must_fail_clean sign "$T/empty.tss"
kh_must_fail_clean sign "$T/garbled.tss"
kh_expect_output "not a TSS2 PRIVATE KEY structure"
sign "$T/good.tss" || kh_fail "the good key file no longer signs"
sign "tpm2:file=$T/good.tss" || kh_fail "the good key no longer signs"
kh_log "bad key files and URIs: named errors, no crash; the good key still signs"
