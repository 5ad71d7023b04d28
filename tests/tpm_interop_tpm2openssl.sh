#!/bin/bash
# SPDX-License-Identifier: MIT
# Key files interoperate both ways with tpm2-openssl (Debian 1.1.1, which
# needs -propquery '?provider=tpm2' and, without a resource manager, leaves
# transient objects behind that the test flushes: the peer's limitation).
#  - EC and RSA keys made by `openssl genpkey -provider tpm2` (with and
#    without an auth value) sign through keyhold; the signatures verify with
#    the public key tpm2-openssl exports.
#  - Keys made by keyhold (file and persistent handle, with and without an
#    auth value) sign through tpm2-openssl; the signatures verify with the
#    public key keyhold wrote at creation.
#  - Must fail: a tpm2-openssl key with an auth value but none given.
. "$(dirname "$0")/lib.sh"
kh_need "$BUILD/keyhold.so" "$BUILD/keyhold-tpm" "$BUILD/tests/kh-signtest"
kh_swtpm_start
KT=$BUILD/keyhold-tpm
SIGNTEST=$BUILD/tests/kh-signtest
flush() { tpm2_flushcontext -t >/dev/null 2>&1 || true; }
echo "interop message" >"$T/msg"
(umask 077; printf 'sesame' >"$T/auth")

# tpm2-openssl -> keyhold
openssl genpkey "${KH_TPM2_PROV[@]}" -algorithm EC -pkeyopt group:P-256 -out "$T/peer-ec.pem"
flush
openssl genpkey "${KH_TPM2_PROV[@]}" -algorithm RSA -pkeyopt bits:2048 -out "$T/peer-rsa.pem"
flush
openssl genpkey "${KH_TPM2_PROV[@]}" -algorithm EC -pkeyopt group:P-256 \
    -pkeyopt user-auth:sesame -out "$T/peer-auth.pem"
flush
for k in peer-ec peer-rsa peer-auth; do
    pass=()
    [ "$k" = peer-auth ] && pass=(-passin pass:sesame)
    openssl pkey "${KH_TPM2_PROV[@]}" "${pass[@]}" -in "$T/$k.pem" -pubout -out "$T/$k.pub"
    flush
done
"$SIGNTEST" -k "tpm2:file=$T/peer-ec.pem" -L last -P "$BUILD" -d sha256 -m both -o "$T/kh-peer-ec.pub"
"$SIGNTEST" -k "tpm2:file=$T/peer-rsa.pem" -L last -P "$BUILD" -d sha256 -p pss -s digest -m both \
    -o "$T/kh-peer-rsa.pub"
"$SIGNTEST" -k "tpm2:file=$T/peer-auth.pem;pin-source=file:$T/auth" -L last -P "$BUILD" \
    -d sha384 -m both -o "$T/kh-peer-auth.pub"
for k in peer-ec peer-rsa peer-auth; do
    cmp -s "$T/$k.pub" "$T/kh-$k.pub" || kh_fail "$k: keyhold sees another public key than tpm2-openssl"
done
openssl dgst -sha256 "${KH_PROV[@]}" -sign "tpm2:file=$T/peer-rsa.pem" -out "$T/msg.sig" "$T/msg"
openssl dgst -sha256 -verify "$T/peer-rsa.pub" -signature "$T/msg.sig" "$T/msg" >/dev/null \
    || kh_fail "PKCS#1 signature with the tpm2-openssl RSA key does not verify"
# The key file itself, without a URI and without any property query
# (keyhold activated from openssl.cnf with store-key-files = 1).
KH_CNF_EXTRA="store-key-files = 1" kh_openssl_cnf last >/dev/null
OPENSSL_CONF=$T/openssl.cnf openssl dgst -sha256 -sign "$T/peer-ec.pem" -out "$T/msg2.sig" "$T/msg"
openssl dgst -sha256 -verify "$T/peer-ec.pub" -signature "$T/msg2.sig" "$T/msg" >/dev/null \
    || kh_fail "signature with the tpm2-openssl key file does not verify"
kh_log "tpm2-openssl keys (EC, RSA, EC with auth) sign through keyhold"

# The auth value through the passphrase callback (-passin), as tpm2-openssl
# itself takes it.
openssl dgst -sha256 "${KH_PROV[@]}" -passin pass:sesame -sign "tpm2:file=$T/peer-auth.pem" \
    -out "$T/msg3.sig" "$T/msg" || kh_fail "auth value from -passin"
openssl dgst -sha256 -verify "$T/peer-auth.pub" -signature "$T/msg3.sig" "$T/msg" >/dev/null \
    || kh_fail "signature with the -passin auth does not verify"

# Must fail: the auth value is needed and not given (no passphrase source).
kh_must_fail_clean openssl dgst -sha256 "${KH_PROV[@]}" -sign "tpm2:file=$T/peer-auth.pem" \
    -out "$T/x.sig" "$T/msg"

# keyhold -> tpm2-openssl
"$KT" create --alg ec-p256 --out "$T/kh-ec.tss" --pub-out "$T/kh-ec.pub"
"$KT" create --alg rsa-2048 --out "$T/kh-rsa.tss" --pub-out "$T/kh-rsa.pub"
"$KT" create --alg ec-p384 --out "$T/kh-auth.tss" --pub-out "$T/kh-auth.pub" --auth-file "$T/auth"
"$KT" create --alg ec-p256 --persistent 0x81000040 --pub-out "$T/kh-pers.pub"
for spec in "kh-ec:$T/kh-ec.tss" "kh-rsa:$T/kh-rsa.tss" "kh-auth:$T/kh-auth.tss" \
            "kh-pers:handle:0x81000040"; do
    name=${spec%%:*}
    key=${spec#*:}
    pass=()
    [ "$name" = kh-auth ] && pass=(-passin pass:sesame)
    openssl dgst -sha256 "${KH_TPM2_PROV[@]}" "${pass[@]}" -sign "$key" -out "$T/$name.sig" "$T/msg" \
        || kh_fail "tpm2-openssl cannot sign with keyhold's $name"
    flush
    openssl dgst -sha256 -verify "$T/$name.pub" -signature "$T/$name.sig" "$T/msg" >/dev/null \
        || kh_fail "tpm2-openssl signature with keyhold's $name does not verify"
done
kh_log "keyhold keys (EC, RSA, EC with auth, persistent) sign through tpm2-openssl"
[ "$(kh_tpm_transients)" = 0 ] || kh_fail "transients left: $(tpm2_getcap handles-transient)"
