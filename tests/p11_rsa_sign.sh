#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# RSA in the token: 2048- and 3072-bit keys sign with PKCS#1 v1.5 and
# RSA-PSS (salt lengths digest/max/auto, fixed numbers, the -1/-2/-3 ctrl
# forms, a different MGF1 digest) over SHA-256/384/512, through
# EVP_DigestSign and prehashed EVP_PKEY_sign (kh-signtest) and the openssl
# CLI. The default provider alone verifies each signature with the exported
# public key, checking the exact PSS salt length.
. "$(dirname "$0")/lib.sh"
kh_need "$BUILD/keyhold.so" "$BUILD/tests/kh-signtest"
ST=$BUILD/tests/kh-signtest

kh_p11_tok_keys rsa2048 01 rsa:2048 rsa3072 02 rsa:3072
printf 'keyhold rsa test message\n' >"$T/data"

for key in rsa2048 rsa3072; do
    uri=$(kh_p11_uri tok $key)
    bits=${key#rsa}
    for md in sha256 sha384 sha512; do
        kh_log "$key $md PKCS#1 v1.5"
        "$ST" -k "$uri" -d $md -p pkcs1 -L last -P "$BUILD" -o "$T/exp.pem" >"$T/st.out" \
            || kh_fail "$key $md PKCS#1 v1.5 failed"
        grep -q "bits=$bits provider=keyhold" "$T/st.out" || kh_fail "key not held by keyhold"
        for salt in digest max auto 0 20 ctrl:-1 ctrl:-2 ctrl:-3; do
            kh_log "$key $md PSS salt=$salt"
            "$ST" -k "$uri" -d $md -p pss -s $salt -L last -P "$BUILD" >"$T/st.out" \
                || { cat "$T/st.out"; kh_fail "$key $md PSS salt $salt failed"; }
        done
    done
    kh_log "$key PSS with an explicit MGF1 digest, keyhold loaded first"
    "$ST" -k "$uri" -d sha384 -p pss -s digest -g sha384 -L first -P "$BUILD" >/dev/null \
        || kh_fail "$key PSS with an explicit MGF1 digest failed"
    # SoftHSM 2.6 refuses an MGF1 digest other than the message digest
    # (CKR_ARGUMENTS_BAD): that must be a clean, named error; a token that
    # accepts it must produce a signature that verifies.
    rc=0
    "$ST" -k "$uri" -d sha384 -p pss -s digest -g sha256 -L first -P "$BUILD" \
        >"$T/mgf.out" 2>&1 || rc=$?
    if [ $rc -ne 0 ]; then
        cat "$T/mgf.out"
        [ $rc -lt 128 ] || kh_fail "crash with a separate MGF1 digest"
        grep -q "CKR_" "$T/mgf.out" || kh_fail "separate MGF1 digest: error names no CKR"
    fi
    OPENSSL_CONF=$(kh_openssl_cnf first) "$ST" -k "$uri" -d sha256 -p pss >/dev/null \
        || kh_fail "$key PSS via openssl.cnf failed"
    cmp <(openssl pkey -pubin -in "$T/exp.pem" -outform DER) \
        <(openssl pkey -pubin -in "$T/$key.pub.pem" -outform DER) \
        || kh_fail "$key: exported public key differs from the token's"

    kh_log "$key via the openssl CLI"
    openssl dgst -sha256 -sign "$uri" "${KH_PROV[@]}" -out "$T/sig" "$T/data"
    openssl dgst -sha256 -verify "$T/$key.pub.pem" -signature "$T/sig" "$T/data" >/dev/null \
        || kh_fail "$key dgst PKCS#1 signature does not verify"
    openssl dgst -sha384 -sign "$uri" "${KH_PROV[@]}" -sigopt rsa_padding_mode:pss \
        -sigopt rsa_pss_saltlen:digest -out "$T/sig" "$T/data"
    openssl dgst -sha384 -verify "$T/$key.pub.pem" -sigopt rsa_padding_mode:pss \
        -sigopt rsa_pss_saltlen:48 -signature "$T/sig" "$T/data" >/dev/null \
        || kh_fail "$key dgst PSS signature does not verify with salt 48"
    openssl dgst -sha256 -binary -out "$T/dg" "$T/data"
    openssl pkeyutl -sign -inkey "$uri" "${KH_PROV[@]}" -pkeyopt digest:sha256 \
        -pkeyopt rsa_padding_mode:pss -pkeyopt rsa_pss_saltlen:max -in "$T/dg" -out "$T/sig2"
    openssl pkeyutl -verify -pubin -inkey "$T/$key.pub.pem" -pkeyopt digest:sha256 \
        -pkeyopt rsa_padding_mode:pss -pkeyopt rsa_pss_saltlen:$(( bits / 8 - 32 - 2 )) \
        -in "$T/dg" -sigfile "$T/sig2" >/dev/null \
        || kh_fail "$key pkeyutl PSS (max salt) does not verify"
done

kh_log "must fail: a PSS signature with salt 20 does not verify as salt 32"
uri=$(kh_p11_uri tok rsa2048)
openssl dgst -sha256 -sign "$uri" "${KH_PROV[@]}" -sigopt rsa_padding_mode:pss \
    -sigopt rsa_pss_saltlen:20 -out "$T/sig" "$T/data"
kh_must_fail openssl dgst -sha256 -verify "$T/rsa2048.pub.pem" -sigopt rsa_padding_mode:pss \
    -sigopt rsa_pss_saltlen:32 -signature "$T/sig" "$T/data"
kh_log "RSA PKCS#1 v1.5 and PSS round trips verified"
