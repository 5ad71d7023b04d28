#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Keys made by other tools work, and the same key and URI work with libp11's
# pkcs11 engine: a pkcs11-tool key and a GnuTLS p11tool key load and sign
# through keyhold; libp11 signs and keyhold verifies (with the token's
# public key object), keyhold signs and libp11 verifies.
. "$(dirname "$0")/lib.sh"
LIBP11_KEY=ec256 LIBP11_KEYTYPE=EC:prime256v1
LIBP11_P11TOOL_ARGS=(--generate-privkey=ECDSA --curve=secp256r1)
. "$(dirname "$0")/p11_libp11.inc"

for key in ec256:01 gt:0a; do
    libp11_key "$key"

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
