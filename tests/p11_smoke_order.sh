#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The provider works whatever its place in openssl.cnf: with keyhold listed
# before and after default (no -propquery, no default_properties), a token
# key serves TLS 1.2 and 1.3 (ECDSA needs P-256 in libssl's group list), a
# key reference file loads through PEM_read_bio_PrivateKey (as nginx reads
# it, store-key-files = 0) and through OSSL_STORE (openssl pkey/dgst,
# store-key-files = auto),
# and software keys are still generated and used by the default provider.
. "$(dirname "$0")/lib.sh"
kh_need "$BUILD/keyhold.so" "$BUILD/tests/kh-pemload"

kh_softhsm_setup
kh_softhsm_token order
kh_p11tool_keygen order order-ec 0e01 EC:prime256v1
URI="pkcs11:token=order;object=order-ec;type=private"
pkcs11-tool --module "$SOFTHSM_MODULE" --token-label order --read-object \
    --type pubkey --id 0e01 -o "$T/pub.der" >/dev/null 2>&1
openssl pkey -pubin -inform DER -in "$T/pub.der" -out "$T/pub.pem"
kh_test_ca "$T/ca"
openssl req -new -provider-path "$BUILD" -provider keyhold -provider default \
    -key "$URI;pin-value=1234" -subj /CN=localhost -out "$T/srv.csr"
kh_ca_sign "$T/ca" "$T/srv.csr" "$T/srv.pem"
# A key reference as the CLI writes it (DER body: version 1, URI).
python3 - "$URI" >"$T/key.pem" <<'PY'
import base64, sys
uri = sys.argv[1].encode()
def tlv(t, b):
    n = len(b)
    l = bytes([n]) if n < 128 else bytes([0x81, n])
    return bytes([t]) + l + b
der = tlv(0x30, tlv(0x02, b"\x01") + tlv(0x0c, uri))
print("-----BEGIN KEYHOLD KEY REFERENCE-----")
print(base64.encodebytes(der).decode().strip())
print("-----END KEYHOLD KEY REFERENCE-----")
PY
head -c 1000 /dev/urandom >"$T/data"

for order in first last; do
    KH_CNF_EXTRA="pin-source = file:$T/order.pin
store-key-files = 0" kh_openssl_cnf "$order" >/dev/null
    kh_log "[$order] key reference through PEM_read_bio_PrivateKey, lean decoders"
    OPENSSL_CONF=$T/openssl.cnf "$BUILD/tests/kh-pemload" "$T/key.pem" \
        | kh_grepq "loaded EC key" || kh_fail "PEM reader did not load the reference"

    KH_CNF_EXTRA="pin-source = file:$T/order.pin" kh_openssl_cnf "$order" >/dev/null
    cp "$T/openssl.cnf" "$T/openssl-$order.cnf"
    export OPENSSL_CONF=$T/openssl-$order.cnf

    kh_log "[$order] software keys still come from the default provider"
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
        -out "$T/sw-$order.key"
    openssl dgst -sha256 -sign "$T/sw-$order.key" -out "$T/sw.sig" "$T/data"

    kh_log "[$order] key reference through OSSL_STORE (openssl pkey, dgst)"
    openssl pkey -in "$T/key.pem" -pubout -out "$T/ref-pub.pem"
    cmp -s "$T/ref-pub.pem" "$T/pub.pem" || kh_fail "reference gives another key"
    openssl dgst -sha256 -sign "$T/key.pem" -out "$T/ref.sig" "$T/data"
    env -u OPENSSL_CONF openssl dgst -sha256 -verify "$T/pub.pem" \
        -signature "$T/ref.sig" "$T/data" | kh_grepq "Verified OK" \
        || kh_fail "signature by reference does not verify"
    openssl pkey -in "$T/key.pem" -text -noout >"$T/text.txt"
    grep -q "URI: pkcs11:" "$T/text.txt" || kh_fail "text encoder: no URI"
    if grep -qi "priv:" "$T/text.txt"; then kh_fail "text shows a private part"; fi

    for proto in -tls1_2 -tls1_3; do
        kh_log "[$order] s_server with the token key, s_client $proto (P-256 only)"
        port=$(kh_free_port)
        kh_bg openssl s_server -accept "127.0.0.1:$port" -key "$T/key.pem" \
            -cert "$T/srv.pem" -naccept 1 -www -quiet
        kh_wait_port "$port"
        echo | env -u OPENSSL_CONF timeout 20 openssl s_client \
            -connect "127.0.0.1:$port" "$proto" -groups P-256 \
            -CAfile "$T/ca/ca.pem" -verify_return_error >"$T/cli.txt" 2>&1 \
            || { cat "$T/cli.txt"; kh_fail "[$order] $proto handshake failed"; }
        grep -q "Verify return code: 0" "$T/cli.txt" || kh_fail "no verified handshake"
        wait "$KH_LAST_PID" 2>/dev/null || true
    done
done
unset OPENSSL_CONF
echo "p11_smoke_order: ok"
