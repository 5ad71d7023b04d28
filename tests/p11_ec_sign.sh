#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# ECDSA in the token: P-256 and P-384 keys sign with SHA-256/384/512, through
# EVP_DigestSign and prehashed EVP_PKEY_sign (kh-signtest) and through the
# openssl CLI; every signature is verified by the default provider alone
# with the public key (as exported by keyhold and as read from the token
# through Cryptoki). Both provider orders and openssl.cnf loading are covered.
. "$(dirname "$0")/lib.sh"
kh_need "$BUILD/keyhold.so" "$BUILD/tests/kh-signtest"
ST=$BUILD/tests/kh-signtest

kh_p11_tok_keys ec256 01 EC:prime256v1 ec384 02 EC:secp384r1
printf 'keyhold ecdsa test message\n' >"$T/data"

for key in ec256 ec384; do
    uri=$(kh_p11_uri tok $key)
    bits=${key#ec}
    for md in sha256 sha384 sha512; do
        for order in first last; do
            kh_log "$key $md digest-sign + prehashed sign, keyhold $order"
            "$ST" -k "$uri" -d $md -m both -n 3 -L $order -P "$BUILD" -o "$T/exp.pem" \
                >"$T/st.out" || kh_fail "$key $md ($order) failed"
            cat "$T/st.out"
            grep -q "bits=$bits provider=keyhold" "$T/st.out" || kh_fail "key not held by keyhold"
        done
    done
    # The public key keyhold exports is the token's public key.
    cmp <(openssl pkey -pubin -in "$T/exp.pem" -outform DER) \
        <(openssl pkey -pubin -in "$T/$key.pub.pem" -outform DER) \
        || kh_fail "$key: exported public key differs from the token's"

    kh_log "$key via openssl.cnf (both orders)"
    for order in first last; do
        OPENSSL_CONF=$(kh_openssl_cnf $order) "$ST" -k "$uri" -d sha256 >/dev/null \
            || kh_fail "$key via openssl.cnf ($order) failed"
    done

    kh_log "$key via the openssl CLI: dgst -sign and pkeyutl -sign on a digest"
    for md in sha256 sha384 sha512; do
        openssl dgst -$md -sign "$uri" "${KH_PROV[@]}" -out "$T/sig" "$T/data"
        openssl dgst -$md -verify "$T/$key.pub.pem" -signature "$T/sig" "$T/data" >/dev/null \
            || kh_fail "$key dgst -$md signature does not verify"
        openssl dgst -$md -binary -out "$T/dg" "$T/data"
        openssl pkeyutl -sign -inkey "$uri" "${KH_PROV[@]}" -pkeyopt digest:$md \
            -in "$T/dg" -out "$T/sig2"
        openssl pkeyutl -verify -pubin -inkey "$T/$key.pub.pem" -pkeyopt digest:$md \
            -in "$T/dg" -sigfile "$T/sig2" >/dev/null \
            || kh_fail "$key pkeyutl -sign ($md) does not verify"
    done
done

kh_log "must fail: a P-256 signature does not verify under the P-384 key"
openssl dgst -sha256 -sign "$(kh_p11_uri tok ec256)" "${KH_PROV[@]}" -out "$T/sig" "$T/data"
kh_must_fail openssl dgst -sha256 -verify "$T/ec384.pub.pem" -signature "$T/sig" "$T/data"
kh_log "ECDSA P-256/P-384 round trips verified"
