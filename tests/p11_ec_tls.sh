#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# TLS 1.3 and 1.2 with an ECDSA key in the token: `openssl s_server -key
# pkcs11:...` through keyhold (loaded from openssl.cnf before and after the
# default provider, and from the command line; never a -propquery), checked
# by three clients: openssl s_client, curl and gnutls-cli (an independent
# TLS stack, so a signature bug cannot cancel itself out).
. "$(dirname "$0")/lib.sh"
kh_need "$BUILD/keyhold.so"

kh_softhsm_token tok
kh_p11tool_keygen tok ec256 01 EC:prime256v1
kh_p11tool_keygen tok ec384 02 EC:secp384r1
kh_test_ca "$T/ca"
kh_p11_cert "$T/ca" tok 01 "$T/ec256.crt"
kh_p11_cert "$T/ca" tok 02 "$T/ec384.crt"

for order in first last; do
    kh_log "P-256 key, keyhold loaded $order (openssl.cnf)"
    port=$(kh_free_port)
    cnf=$(kh_openssl_cnf $order)
    OPENSSL_CONF=$cnf kh_s_server "$port" -cert "$T/ec256.crt" -key "$(kh_p11_uri tok ec256)"
    kh_tls_clients "$port" "$T/ca/ca.pem" 1.3
    kh_tls_clients "$port" "$T/ca/ca.pem" 1.2
    kill "$KH_LAST_PID"; wait "$KH_LAST_PID" 2>/dev/null || true
done

kh_log "P-384 key, keyhold loaded with -provider flags"
port=$(kh_free_port)
kh_s_server "$port" -cert "$T/ec384.crt" -key "$(kh_p11_uri tok ec384)" "${KH_PROV[@]}"
kh_tls_clients "$port" "$T/ca/ca.pem" 1.3
kh_tls_clients "$port" "$T/ca/ca.pem" 1.2 -sigalgs ECDSA+SHA384
kh_tls_clients "$port" "$T/ca/ca.pem" 1.2 -sigalgs ECDSA+SHA256
kill "$KH_LAST_PID"; wait "$KH_LAST_PID" 2>/dev/null || true

kh_log "ec256 key, -provider default -provider keyhold (keyhold after default)"
port=$(kh_free_port)
kh_s_server "$port" -cert "$T/ec256.crt" -key "$(kh_p11_uri tok ec256)" -provider-path "$BUILD" \
    -provider default -provider keyhold
kh_tls_clients "$port" "$T/ca/ca.pem" 1.3
kh_tls_clients "$port" "$T/ca/ca.pem" 1.2
kill "$KH_LAST_PID"; wait "$KH_LAST_PID" 2>/dev/null || true

kh_log "must fail: the P-384 certificate with the P-256 key is refused at start"
kh_must_fail_clean timeout 20 openssl s_server -accept "127.0.0.1:$(kh_free_port)" -naccept 1 \
    -cert "$T/ec384.crt" -key "$(kh_p11_uri tok ec256)" "${KH_PROV[@]}"
kh_log "ECDSA TLS 1.3/1.2 handshakes verified by s_client, curl and gnutls-cli"
