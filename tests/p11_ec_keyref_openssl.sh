#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The PEM key reference through OSSL_STORE's file: loader, the way every
# openssl app loads a key *file*: `openssl pkey -in key.pem` shows the
# public half, `openssl dgst -sign key.pem` and `openssl req -key key.pem`
# sign in the token, `s_server -key key.pem` serves TLS (and so does
# identity.pem, reference + chain, as -cert and -key), and a C program
# opening key.pem with OSSL_STORE_open_ex signs (kh-signtest).
. "$(dirname "$0")/lib.sh"
kh_need "$BUILD/keyhold.so" "$BUILD/tests/kh-keyref" "$BUILD/tests/kh-signtest"

kh_softhsm_token tok
kh_p11tool_keygen tok ec256 01 EC:prime256v1
kh_p11_pubkey tok 01 "$T/pub.pem"
kh_test_ca "$T/ca"
kh_p11_cert "$T/ca" tok 01 "$T/cert.pem"
"$BUILD/tests/kh-keyref" "$(kh_p11_uri tok ec256)" >"$T/key.pem"
cat "$T/key.pem" "$T/cert.pem" "$T/ca/ca.pem" >"$T/identity.pem"
printf 'data\n' >"$T/data"

for order in first last; do
    # The openssl command reads key files through OSSL_STORE file: with the
    # provider's default (auto) setting.
    cnf=$(KH_CNF_EXTRA="store-key-files = auto" kh_openssl_cnf $order)
    kh_log "keyhold $order: openssl pkey -in key.pem shows the token's public key"
    OPENSSL_CONF=$cnf openssl pkey -in "$T/key.pem" -pubout -out "$T/exp.pem" \
        || kh_fail "pkey cannot read the key reference"
    cmp <(openssl pkey -pubin -in "$T/exp.pem" -outform DER) \
        <(openssl pkey -pubin -in "$T/pub.pem" -outform DER) || kh_fail "wrong public key"

    kh_log "keyhold $order: dgst -sign key.pem"
    OPENSSL_CONF=$cnf openssl dgst -sha256 -sign "$T/key.pem" -out "$T/sig" "$T/data"
    openssl dgst -sha256 -verify "$T/pub.pem" -signature "$T/sig" "$T/data" \
        || kh_fail "signature by key.pem does not verify"

    kh_log "keyhold $order: req -new -key key.pem (CSR signed in the token)"
    OPENSSL_CONF=$cnf openssl req -new -key "$T/key.pem" -subj /CN=localhost -out "$T/r.csr"
    openssl req -in "$T/r.csr" -verify -noout || kh_fail "CSR signature does not verify"

    kh_log "keyhold $order: OSSL_STORE_open_ex on key.pem in C (store-key-files = 1)"
    # Outside the openssl command the file: store path is opt-in (the
    # decoders it needs cost every software-key handshake a little).
    KH_CNF_EXTRA="store-key-files = 1" kh_openssl_cnf $order >/dev/null
    cp "$T/openssl.cnf" "$T/store.cnf"
    cnf=$(KH_CNF_EXTRA="store-key-files = auto" kh_openssl_cnf $order)
    OPENSSL_CONF=$T/store.cnf "$BUILD/tests/kh-signtest" -k "$T/key.pem" -d sha256 >/dev/null \
        || kh_fail "kh-signtest with key.pem failed"

    kh_log "keyhold $order: s_server -key key.pem"
    kh_tls_serve_both "$cnf" -cert "$T/cert.pem" -key "$T/key.pem"

    kh_log "keyhold $order: s_server -cert identity.pem -key identity.pem"
    port=$(kh_free_port)
    OPENSSL_CONF=$cnf kh_s_server "$port" -cert "$T/identity.pem" -key "$T/identity.pem"
    kh_tls_clients "$port" "$T/ca/ca.pem" 1.3
    kill "$KH_LAST_PID"; wait "$KH_LAST_PID" 2>/dev/null || true
done

kh_log "must fail: a garbled key reference is refused cleanly"
sed '2s/^..../AAAA/' "$T/key.pem" >"$T/bad.pem"
kh_must_fail_clean env OPENSSL_CONF="$T/openssl.cnf" openssl pkey -in "$T/bad.pem" -noout
kh_log "the key reference works wherever openssl reads a key file"
