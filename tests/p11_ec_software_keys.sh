#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# keyhold stays out of the way of software keys: with keyhold activated
# before (and after) the default provider, PEM and DER software keys (EC and
# RSA, plain and encrypted PKCS#8) load and sign as before, and s_server with
# a software key serves TLS 1.3/1.2 — the decoder claims only its own label.
. "$(dirname "$0")/lib.sh"
kh_need "$BUILD/keyhold.so"

kh_test_ca "$T/ca"
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$T/ec.pem" 2>/dev/null
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$T/rsa.pem" 2>/dev/null
openssl pkey -in "$T/ec.pem" -outform DER -out "$T/ec.der"
openssl pkcs8 -topk8 -in "$T/rsa.pem" -passout pass:secret-pass -out "$T/rsa.p8.pem"
openssl req -new -key "$T/ec.pem" -subj /CN=localhost -out "$T/ec.csr"
kh_ca_sign "$T/ca" "$T/ec.csr" "$T/ec.crt"
printf 'data\n' >"$T/data"

for order in first last; do
    cnf=$(kh_openssl_cnf $order)
    kh_log "keyhold $order: software keys load and sign"
    for k in ec.pem rsa.pem ec.der; do
        OPENSSL_CONF=$cnf openssl dgst -sha256 -sign "$T/$k" -out "$T/sig" "$T/data" \
            || kh_fail "software key $k does not sign with keyhold loaded $order"
        openssl dgst -sha256 -prverify "$T/$k" -signature "$T/sig" "$T/data" >/dev/null \
            || kh_fail "software key $k signature does not verify"
    done
    OPENSSL_CONF=$cnf openssl pkey -in "$T/rsa.p8.pem" -passin pass:secret-pass -noout \
        || kh_fail "encrypted PKCS#8 key does not load with keyhold loaded $order"
    OPENSSL_CONF=$cnf openssl pkey -in "$T/ec.pem" -text -noout | grep "priv:" >/dev/null \
        || kh_fail "software key lost its private part with keyhold loaded $order"

    kh_log "keyhold $order: s_server with a software key"
    kh_tls_serve_both "$cnf" -cert "$T/ec.crt" -key "$T/ec.pem"
done
kh_log "must fail: a wrong pass phrase is still refused"
kh_must_fail_clean env OPENSSL_CONF="$T/openssl.cnf" openssl pkey -in "$T/rsa.p8.pem" \
    -passin pass:wrong -noout
kh_log "software keys work unchanged with keyhold loaded"
