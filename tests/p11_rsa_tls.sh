#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# TLS 1.3 (RSA-PSS) and TLS 1.2 (PKCS#1 v1.5 and PSS) with an RSA key in the
# token: `openssl s_server -key pkcs11:...` through keyhold, loaded from
# openssl.cnf before and after default and from the command line, no
# -propquery; clients openssl s_client, curl and gnutls-cli.
. "$(dirname "$0")/lib.sh"
kh_need "$BUILD/keyhold.so"

kh_softhsm_token tok
kh_p11tool_keygen tok rsa2048 01 rsa:2048
kh_p11tool_keygen tok rsa3072 02 rsa:3072
kh_test_ca "$T/ca"
kh_p11_cert "$T/ca" tok 01 "$T/rsa2048.crt"
kh_p11_cert "$T/ca" tok 02 "$T/rsa3072.crt"

for order in first last; do
    kh_log "RSA-2048 key, keyhold loaded $order (openssl.cnf)"
    port=$(kh_free_port)
    cnf=$(kh_openssl_cnf $order)
    OPENSSL_CONF=$cnf kh_s_server "$port" -cert "$T/rsa2048.crt" -key "$(kh_p11_uri tok rsa2048)"
    kh_tls_clients "$port" "$T/ca/ca.pem" 1.3
    kh_tls_clients "$port" "$T/ca/ca.pem" 1.3 -sigalgs rsa_pss_rsae_sha384
    kh_tls_clients "$port" "$T/ca/ca.pem" 1.3 -sigalgs rsa_pss_rsae_sha512
    kh_tls_clients "$port" "$T/ca/ca.pem" 1.2
    kh_tls_clients "$port" "$T/ca/ca.pem" 1.2 -sigalgs RSA+SHA256
    kh_tls_clients "$port" "$T/ca/ca.pem" 1.2 -sigalgs RSA+SHA512
    kh_tls_clients "$port" "$T/ca/ca.pem" 1.2 -sigalgs rsa_pss_rsae_sha256
    kill "$KH_LAST_PID"; wait "$KH_LAST_PID" 2>/dev/null || true
done

kh_log "RSA-3072 key, keyhold loaded with -provider flags"
port=$(kh_free_port)
kh_s_server "$port" -cert "$T/rsa3072.crt" -key "$(kh_p11_uri tok rsa3072)" "${KH_PROV[@]}"
kh_tls_clients "$port" "$T/ca/ca.pem" 1.3
kh_tls_clients "$port" "$T/ca/ca.pem" 1.2 -sigalgs RSA+SHA384
kill "$KH_LAST_PID"; wait "$KH_LAST_PID" 2>/dev/null || true

kh_log "rsa2048 key, -provider default -provider keyhold (keyhold after default)"
port=$(kh_free_port)
kh_s_server "$port" -cert "$T/rsa2048.crt" -key "$(kh_p11_uri tok rsa2048)" -provider-path "$BUILD" \
    -provider default -provider keyhold
kh_tls_clients "$port" "$T/ca/ca.pem" 1.3
kh_tls_clients "$port" "$T/ca/ca.pem" 1.2
kill "$KH_LAST_PID"; wait "$KH_LAST_PID" 2>/dev/null || true

kh_log "must fail: the RSA-3072 certificate with the RSA-2048 key is refused at start"
kh_must_fail_clean timeout 20 openssl s_server -accept "127.0.0.1:$(kh_free_port)" -naccept 1 \
    -cert "$T/rsa3072.crt" -key "$(kh_p11_uri tok rsa2048)" "${KH_PROV[@]}"
kh_log "RSA TLS 1.3/1.2 handshakes verified by s_client, curl and gnutls-cli"
