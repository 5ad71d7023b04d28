#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# nginx with the PEM key reference: `ssl_certificate_key key.pem` where
# key.pem only names the token key, nginx started with OPENSSL_CONF that
# activates keyhold (before and after default), two workers that have
# dropped the environment except SOFTHSM2_CONF. Handshakes from s_client,
# curl and gnutls-cli succeed; without keyhold nginx refuses the file.
. "$(dirname "$0")/lib.sh"
kh_need "$BUILD/keyhold.so" "$BUILD/tests/kh-keyref"

kh_softhsm_token tok
kh_p11tool_keygen tok ec256 01 EC:prime256v1
kh_test_ca "$T/ca"
kh_p11_cert "$T/ca" tok 01 "$T/cert.pem"
cat "$T/cert.pem" "$T/ca/ca.pem" >"$T/fullchain.pem"
uri=$(kh_p11_uri tok ec256)
"$BUILD/tests/kh-keyref" "$uri" >"$T/key.pem"
grep -q -- "-----BEGIN KEYHOLD KEY REFERENCE-----" "$T/key.pem" || kh_fail "no reference label"
[ "$("$BUILD/tests/kh-keyref" -r "$T/key.pem")" = "$uri" ] || kh_fail "reference is not just the URI"
kh_no_secrets "$T/key.pem"

for order in first last; do
    kh_log "nginx, 2 workers, key reference, keyhold loaded $order"
    port=$(kh_free_port)
    kh_nginx_start "$port" "$T/fullchain.pem" "$T/key.pem" "$(kh_openssl_cnf $order)" 2
    for i in $(seq 1 8); do
        out=$(curl -sS --fail --max-time 20 --cacert "$T/ca/ca.pem" \
            --resolve "localhost:$port:127.0.0.1" "https://localhost:$port/") \
            || kh_fail "curl handshake $i with nginx failed"
        [ "$out" = keyhold ] || kh_fail "unexpected body: $out"
    done
    kh_tls_clients "$port" "$T/ca/ca.pem" 1.3
    kh_tls_clients "$port" "$T/ca/ca.pem" 1.2
    kh_nginx_stop
    if grep -E "exited on signal|\[alert\]|\[crit\]|\[emerg\]" "$T/nginx/logs/error.log"; then
        kh_fail "nginx logged a crash or a critical error"
    fi
done

kh_log "must fail: without keyhold in openssl.cnf nginx cannot use the reference"
printf 'openssl_conf = openssl_init\n[openssl_init]\n' >"$T/plain.cnf"
kh_must_fail_clean env OPENSSL_CONF="$T/plain.cnf" nginx -t -p "$T/nginx" \
    -e "$T/nginx/logs/error.log" -c "$T/nginx/nginx.conf"
kh_log "nginx served TLS 1.3/1.2 with the hardware key named by key.pem"
