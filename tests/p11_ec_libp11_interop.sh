#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Keys made by other tools work, and the same key and URI work with libp11's
# pkcs11 engine: a pkcs11-tool key and a GnuTLS p11tool key load and sign
# through keyhold; libp11 signs and keyhold verifies (with the token's
# public key object), keyhold signs and libp11 verifies.
. "$(dirname "$0")/lib.sh"
kh_need "$BUILD/keyhold.so" "$LIBP11_ENGINE"

kh_softhsm_token tok
kh_p11tool_keygen tok ec256 01 EC:prime256v1
GNUTLS_PIN=1234 p11tool --provider "$SOFTHSM_MODULE" --login --generate-privkey=ECDSA \
    --curve=secp256r1 --label gt --id=0a "pkcs11:token=tok" >/dev/null 2>&1 \
    || kh_fail "p11tool could not generate a key"
printf 'interop message\n' >"$T/data"

cat >"$T/libp11.cnf" <<CNF
openssl_conf = openssl_init
[openssl_init]
engines = engine_sect
[engine_sect]
pkcs11 = pkcs11_sect
[pkcs11_sect]
engine_id = pkcs11
dynamic_path = $LIBP11_ENGINE
MODULE_PATH = $SOFTHSM_MODULE
init = 0
CNF
libp11() {
    local sub=$1; shift
    OPENSSL_CONF=$T/libp11.cnf openssl "$sub" -engine pkcs11 -keyform engine "$@"
}

for key in ec256:01 gt:0a; do
    label=${key%:*} id=${key#*:}
    priv="pkcs11:token=tok;object=$label;type=private?pin-value=1234"
    pub="pkcs11:token=tok;object=$label;type=public"
    kh_p11_pubkey tok "$id" "$T/$label.pub.pem"

    kh_log "$label: keyhold signs, the default provider verifies"
    openssl dgst -sha256 -sign "$priv" "${KH_PROV[@]}" -out "$T/kh.sig" "$T/data"
    openssl dgst -sha256 -verify "$T/$label.pub.pem" -signature "$T/kh.sig" "$T/data" \
        || kh_fail "$label: keyhold signature does not verify"

    kh_log "$label: libp11 verifies keyhold's signature (same URI scheme)"
    libp11 dgst -sha256 -verify "$pub" -signature "$T/kh.sig" "$T/data" 2>"$T/e.err" \
        || { cat "$T/e.err"; kh_fail "$label: libp11 rejects keyhold's signature"; }

    kh_log "$label: libp11 signs with the same URI, keyhold verifies"
    libp11 dgst -sha256 -sign "$priv" -out "$T/p11.sig" "$T/data" 2>"$T/e.err" \
        || { cat "$T/e.err"; kh_fail "$label: libp11 cannot sign"; }
    openssl dgst -sha256 -verify "$pub" "${KH_PROV[@]}" -signature "$T/p11.sig" "$T/data" \
        || kh_fail "$label: keyhold rejects libp11's signature"

    kh_log "must fail: a changed message does not verify through keyhold"
    printf 'changed\n' >"$T/other"
    kh_must_fail_clean openssl dgst -sha256 -verify "$pub" "${KH_PROV[@]}" \
        -signature "$T/p11.sig" "$T/other"
done
kh_log "pkcs11-tool and p11tool keys sign through keyhold; libp11 interop both ways"
