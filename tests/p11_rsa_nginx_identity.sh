#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# nginx with identity.pem (the key reference followed by the certificate
# chain) as BOTH ssl_certificate and ssl_certificate_key, RSA key in the
# token, four workers, keyhold loaded from OPENSSL_CONF. Every worker signs
# after fork (reset_on_fork = true); clients complete TLS 1.3 and 1.2.
. "$(dirname "$0")/lib.sh"
kh_need "$BUILD/keyhold.so" "$BUILD/tests/kh-keyref"

kh_softhsm_token tok
kh_p11tool_keygen tok rsa2048 01 rsa:2048
kh_test_ca "$T/ca"
kh_p11_cert "$T/ca" tok 01 "$T/cert.pem"
"$BUILD/tests/kh-keyref" "$(kh_p11_uri tok rsa2048)" >"$T/identity.pem"
cat "$T/cert.pem" "$T/ca/ca.pem" >>"$T/identity.pem"
kh_no_secrets "$T/identity.pem"

port=$(kh_free_port)
kh_nginx_start "$port" "$T/identity.pem" "$T/identity.pem" "$(kh_openssl_cnf last)" 4
kh_log "20 handshakes spread over 4 workers"
for i in $(seq 1 20); do
    curl -sS --fail --max-time 20 --cacert "$T/ca/ca.pem" -H 'Connection: close' \
        --resolve "localhost:$port:127.0.0.1" "https://localhost:$port/" >/dev/null \
        || kh_fail "curl handshake $i with nginx failed"
done
kh_tls_clients "$port" "$T/ca/ca.pem" 1.3
kh_tls_clients "$port" "$T/ca/ca.pem" 1.2 -sigalgs RSA+SHA256
kh_tls_clients "$port" "$T/ca/ca.pem" 1.2 -sigalgs rsa_pss_rsae_sha384
kh_nginx_stop
if grep -E "exited on signal|\[alert\]|\[crit\]|\[emerg\]" "$T/nginx/logs/error.log"; then
    kh_fail "nginx logged a crash or a critical error"
fi
kh_log "nginx served TLS with identity.pem as certificate and key"
