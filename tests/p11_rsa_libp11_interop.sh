#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# RSA interop with libp11's pkcs11 engine on the same key and URI: PKCS#1
# v1.5 and PSS signatures made by libp11 verify through keyhold (public key
# object in the token) and vice versa; a p11tool-made RSA key signs through
# keyhold.
. "$(dirname "$0")/lib.sh"
LIBP11_KEY=rsa2048 LIBP11_KEYTYPE=rsa:2048
LIBP11_P11TOOL_ARGS=(--generate-privkey=RSA --bits=2048)
. "$(dirname "$0")/p11_libp11.inc"

for key in rsa2048:01 gt:0a; do
    libp11_key "$key"
    for pad in pkcs1 pss; do
        opts=()
        [ $pad = pss ] && opts=(-sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:digest)
        kh_log "$label $pad: keyhold signs; default provider and libp11 verify"
        openssl dgst -sha256 -sign "$priv" "${KH_PROV[@]}" "${opts[@]}" -out "$T/kh.sig" "$T/data"
        openssl dgst -sha256 -verify "$T/$label.pub.pem" "${opts[@]}" -signature "$T/kh.sig" \
            "$T/data" || kh_fail "$label $pad: keyhold signature does not verify"
        libp11 dgst -sha256 -verify "$pub" "${opts[@]}" -signature "$T/kh.sig" "$T/data" \
            2>"$T/e.err" || { cat "$T/e.err"; kh_fail "$label $pad: libp11 rejects it"; }

        kh_log "$label $pad: libp11 signs with the same URI; keyhold verifies"
        libp11 dgst -sha256 -sign "$priv" "${opts[@]}" -out "$T/p11.sig" "$T/data" 2>"$T/e.err" \
            || { cat "$T/e.err"; kh_fail "$label $pad: libp11 cannot sign"; }
        openssl dgst -sha256 -verify "$pub" "${KH_PROV[@]}" "${opts[@]}" \
            -signature "$T/p11.sig" "$T/data" || kh_fail "$label $pad: keyhold rejects libp11's"
    done
done
kh_log "must fail: keyhold does not accept a PSS signature as PKCS#1 v1.5"
kh_must_fail_clean openssl dgst -sha256 -verify "pkcs11:token=tok;object=gt;type=public" \
    "${KH_PROV[@]}" -signature "$T/p11.sig" "$T/data"
kh_log "RSA keys interoperate with libp11 both ways"
