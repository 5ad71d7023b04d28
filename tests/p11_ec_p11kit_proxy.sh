#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# keyhold through p11-kit's proxy module (module-path=p11-kit-proxy.so, which
# loads every registered module, SoftHSM among them): the token key loads,
# signs, and serves a TLS 1.3 handshake; the proxy's other modules (e.g.
# tpm2-pkcs11 without a TPM) do not get in the way.
. "$(dirname "$0")/lib.sh"
PROXY=/usr/lib/x86_64-linux-gnu/p11-kit-proxy.so
kh_need "$BUILD/keyhold.so" "$PROXY"
# tpm2-pkcs11, if registered, keeps its store under HOME: keep it in $T.
export TPM2_PKCS11_STORE=$T/tpm2-pkcs11 HOME=$T
mkdir -p "$TPM2_PKCS11_STORE"

kh_softhsm_token tok
kh_p11tool_keygen tok ec256 01 EC:prime256v1
kh_p11_pubkey tok 01 "$T/pub.pem"
uri="pkcs11:token=tok;object=ec256;type=private?module-path=$PROXY&pin-source=file:$T/tok.pin"
printf 'data\n' >"$T/data"

kh_log "sign through p11-kit-proxy"
openssl dgst -sha256 -sign "$uri" "${KH_PROV[@]}" -out "$T/sig" "$T/data" 2>"$T/err" \
    || { cat "$T/err"; kh_fail "signing through p11-kit-proxy failed"; }
openssl dgst -sha256 -verify "$T/pub.pem" -signature "$T/sig" "$T/data" \
    || kh_fail "signature through p11-kit-proxy does not verify"

kh_log "the proxy as the provider's configured module, TLS 1.3"
kh_test_ca "$T/ca"
kh_p11_cert "$T/ca" tok 01 "$T/cert.pem"
KH_CNF_EXTRA="pkcs11-module-path = $PROXY" kh_openssl_cnf last >/dev/null
port=$(kh_free_port)
OPENSSL_CONF=$T/openssl.cnf kh_s_server "$port" -cert "$T/cert.pem" -key "$(kh_p11_uri tok ec256)"
kh_tls_clients "$port" "$T/ca/ca.pem" 1.3
kh_log "p11-kit-proxy works as the PKCS#11 module"
