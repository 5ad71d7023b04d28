#!/bin/bash
# SPDX-License-Identifier: MIT
# Every TPM signature keyhold offers, through OSSL_STORE and tpm2: URIs,
# verified by the default provider with the exported public key: ECDSA
# P-256/P-384 with SHA-256/384/512, RSA-2048 PKCS#1 v1.5 and PSS (salt =
# digest length, the TPM's rule and TLS 1.3's), RSA-3072, digest-sign and
# prehashed, a key file and a persistent handle. The must-fail twin: an
# RSA-PSS salt the TPM cannot make is refused by name, not signed wrongly.
. "$(dirname "$0")/lib.sh"
kh_need "$BUILD/keyhold.so" "$BUILD/keyhold-tpm" "$BUILD/tests/kh-signtest"
kh_swtpm_start

KT=$BUILD/keyhold-tpm
SIGNTEST=$BUILD/tests/kh-signtest
for alg in ec-p256 ec-p384 rsa-2048; do
    "$KT" create --alg "$alg" --out "$T/$alg.tss" --pub-out "$T/$alg.pub"
done
"$KT" create --alg rsa-2048 --persistent 0x81000020 --pub-out "$T/pers.pub"
head -1 "$T/ec-p256.tss" | kh_grepq -- "-----BEGIN TSS2 PRIVATE KEY-----" \
    || kh_fail "key file is not a TSS2 PRIVATE KEY"

for alg in ec-p256 ec-p384; do
    for md in sha256 sha384 sha512; do
        "$SIGNTEST" -k "tpm2:file=$T/$alg.tss" -L last -P "$BUILD" -d "$md" -m both -n 3 \
            -o "$T/$alg.$md.pub" || kh_fail "$alg $md"
        cmp -s <(openssl pkey -pubin -in "$T/$alg.pub" -outform DER) \
            <(openssl pkey -pubin -in "$T/$alg.$md.pub" -outform DER) \
            || kh_fail "$alg: public key differs from the one at creation"
    done
done
kh_log "ECDSA P-256/P-384 x SHA-256/384/512 verified"

for uri in "tpm2:file=$T/rsa-2048.tss" "tpm2:handle=0x81000020"; do
    for md in sha256 sha384 sha512; do
        "$SIGNTEST" -k "$uri" -L last -P "$BUILD" -d "$md" -p pkcs1 -m both -n 2 \
            || kh_fail "$uri PKCS#1 $md"
        "$SIGNTEST" -k "$uri" -L last -P "$BUILD" -d "$md" -p pss -s digest -m both -n 2 \
            || kh_fail "$uri PSS $md"
    done
done
kh_log "RSA-2048 PKCS#1 v1.5 and PSS (file and persistent handle) verified"

"$KT" create --alg rsa-3072 --out "$T/rsa-3072.tss"
"$SIGNTEST" -k "tpm2:file=$T/rsa-3072.tss" -L last -P "$BUILD" -d sha384 -p pss -s digest -m both \
    || kh_fail "RSA-3072 PSS"
"$SIGNTEST" -k "tpm2:file=$T/rsa-3072.tss" -L last -P "$BUILD" -d sha256 -p pkcs1 -m both \
    || kh_fail "RSA-3072 PKCS#1"
kh_log "RSA-3072 PKCS#1 v1.5 and PSS verified"

# The openssl CLI on the same keys, verified by openssl without keyhold.
echo "keyhold tpm message" >"$T/msg"
openssl dgst -sha256 "${KH_PROV[@]}" -sign "tpm2:handle=0x81000020" \
    -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:digest \
    -out "$T/msg.sig" "$T/msg"
openssl dgst -sha256 -verify "$T/pers.pub" -sigopt rsa_padding_mode:pss \
    -sigopt rsa_pss_saltlen:digest -signature "$T/msg.sig" "$T/msg" >/dev/null \
    || kh_fail "openssl dgst PSS signature does not verify"

# Must fail: a maximal PSS salt is not what the TPM makes; refused by name.
kh_must_fail_clean openssl dgst -sha256 "${KH_PROV[@]}" -sign "tpm2:file=$T/rsa-2048.tss" \
    -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:max -out "$T/bad.sig" "$T/msg"
kh_expect_output "salt"

# No transient object of ours is left in the TPM.
[ "$(kh_tpm_transients)" = 0 ] || kh_fail "transient objects left: $(tpm2_getcap handles-transient)"
kh_log "tpm sign: all schemes verified, no transient handles left"
