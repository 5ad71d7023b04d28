#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The public half of a token key is kept as the token's bytes and answers
# what libssl and libcrypto ask (bits, security bits, largest signature,
# group, encoded point, n, e) without building an EVP_PKEY. Checked on the
# sizes where a wrong answer shows: P-521 (odd order bits, a 139-byte
# largest signature), RSA-3072, against what the default provider says for
# the token's public key read by pkcs11-tool (an RSA-2560 key, a size with
# no canonical security bits, takes the path that builds the EVP_PKEY):
#   - the exported public key and the bits are the token's;
#   - TLS 1.3 and 1.2 handshakes (the size and security bits decide the
#     buffers and the signature algorithms);
#   - a certificate for another key of the same curve is refused at start
#     (the key/certificate match compares the bytes).
. "$(dirname "$0")/lib.sh"
kh_need "$BUILD/keyhold.so" "$BUILD/tests/kh-signtest"
ST=$BUILD/tests/kh-signtest

kh_softhsm_token tok
kh_p11tool_keygen tok ec521 01 EC:secp521r1
kh_p11tool_keygen tok ec521b 02 EC:secp521r1
kh_p11tool_keygen tok rsa3072 03 rsa:3072
kh_p11tool_keygen tok rsa2560 04 rsa:2560
kh_test_ca "$T/ca"
kh_p11_cert "$T/ca" tok 01 "$T/ec521.crt"
kh_p11_cert "$T/ca" tok 02 "$T/ec521b.crt"
kh_p11_cert "$T/ca" tok 03 "$T/rsa3072.crt"
kh_p11_cert "$T/ca" tok 04 "$T/rsa2560.crt"

for key in ec521:01:521:sha512 rsa3072:03:3072:sha384 rsa2560:04:2560:sha256; do
    IFS=: read -r label id bits md <<<"$key"
    uri=$(kh_p11_uri tok "$label")
    kh_p11_pubkey tok "$id" "$T/$label.pub.pem"

    kh_log "$label: bits, signatures and the exported public key"
    "$ST" -k "$uri" -d "$md" -m both -n 2 -L last -P "$BUILD" -o "$T/exp.pem" >"$T/st.out" \
        || kh_fail "$label: kh-signtest failed"
    grep -q "bits=$bits provider=keyhold" "$T/st.out" \
        || kh_fail "$label: bits not $bits: $(cat "$T/st.out")"
    cmp <(openssl pkey -pubin -in "$T/exp.pem" -outform DER) \
        <(openssl pkey -pubin -in "$T/$label.pub.pem" -outform DER) \
        || kh_fail "$label: exported public key differs from the token's"
    openssl pkey -in "$uri" "${KH_PROV[@]}" -pubout -out "$T/pubout.pem"
    cmp <(openssl pkey -pubin -in "$T/pubout.pem" -outform DER) \
        <(openssl pkey -pubin -in "$T/$label.pub.pem" -outform DER) \
        || kh_fail "$label: pkey -pubout differs from the token's public key"
    openssl pkey -in "$uri" "${KH_PROV[@]}" -noout -text >"$T/text.out"
    grep -q "($bits bit)" "$T/text.out" || kh_fail "$label: text encoder: $(head -3 "$T/text.out")"

    kh_log "$label: TLS 1.3 and 1.2"
    kh_tls_serve_both "" -cert "$T/$label.crt" -key "$uri" "${KH_PROV[@]}"
done

kh_log "must fail: the certificate of another P-521 key is refused at start"
kh_must_fail_clean timeout 20 openssl s_server -accept "127.0.0.1:$(kh_free_port)" -naccept 1 \
    -cert "$T/ec521b.crt" -key "$(kh_p11_uri tok ec521)" "${KH_PROV[@]}"
kh_log "must fail: an RSA certificate with the P-521 key is refused at start"
kh_must_fail_clean timeout 20 openssl s_server -accept "127.0.0.1:$(kh_free_port)" -naccept 1 \
    -cert "$T/rsa3072.crt" -key "$(kh_p11_uri tok ec521)" "${KH_PROV[@]}"
kh_log "public halves answered from the token's bytes: P-521, RSA-3072, RSA-2560"
