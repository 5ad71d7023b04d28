#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The appliance setup: an identity made by `keyhold provision` + `install`
# (its key.pem carries no PIN source), nginx pointed at the stable paths
# (fullchain.pem, key.pem; then identity.pem for both), the PIN given once
# in openssl.cnf (`pin-source` of the keyhold section) and read by the nginx
# master. Handshakes through two workers succeed, even with the PIN file gone
# after start (workers log in with the PIN the master read); a wrong PIN
# file in the configuration makes `nginx -t` fail cleanly.
. "$(dirname "$0")/lib.sh"
kh_need "$BUILD/keyhold.so" "$KEYHOLD"

kh_softhsm_token tok Kh-Pin-7719
kh_test_ca "$T/ca"
export KEYHOLD_CONF_DIR=$T/conf KEYHOLD_STATE_DIR=$T/state
unset KEYHOLD_PIN_FILE CREDENTIALS_DIRECTORY || true
"$KEYHOLD" provision web --token tok --alg ec-p256 --host localhost --pin-file "$T/tok.pin" \
    --csr-out "$T/web.csr" >/dev/null || kh_fail "provision failed"
kh_ca_sign "$T/ca" "$T/web.csr" "$T/web.pem"
"$KEYHOLD" install web "$T/web.pem" --ca "$T/ca/ca.pem" >/dev/null || kh_fail "install failed"
W=$KEYHOLD_STATE_DIR/web
grep -q "pin" <("$BUILD/tests/kh-keyref" -r "$W/key.pem") && kh_fail "key.pem names a PIN source"

KH_CNF_EXTRA="pin-source = file:$T/tok.pin" kh_openssl_cnf last >/dev/null
cp "$T/openssl.cnf" "$T/good.cnf"
for pair in "fullchain.pem key.pem" "identity.pem identity.pem"; do
    set -- $pair
    kh_log "nginx with ssl_certificate $1, ssl_certificate_key $2"
    port=$(kh_free_port)
    kh_nginx_start "$port" "$W/$1" "$W/$2" "$T/good.cnf" 2
    # The master read the PIN at load; workers log in after fork with the
    # PIN kept in memory, so the file may go away now.
    mv "$T/tok.pin" "$T/tok.pin.away"
    for i in $(seq 1 6); do
        curl -sS --fail --max-time 20 --cacert "$T/ca/ca.pem" \
            --resolve "localhost:$port:127.0.0.1" "https://localhost:$port/" >/dev/null \
            || kh_fail "handshake $i failed"
    done
    kh_tls_clients "$port" "$T/ca/ca.pem" 1.3
    kh_tls_clients "$port" "$T/ca/ca.pem" 1.2
    kh_nginx_stop
    mv "$T/tok.pin.away" "$T/tok.pin"
    if grep -E "exited on signal|\[alert\]|\[crit\]" "$T/nginx/logs/error.log"; then
        kh_fail "nginx logged a crash or a critical error"
    fi
done

kh_log "must fail: openssl.cnf names a PIN file with the wrong PIN"
(umask 077; printf 'not-the-pin' >"$T/wrong.pin")
KH_CNF_EXTRA="pin-source = file:$T/wrong.pin" kh_openssl_cnf last >/dev/null
kh_must_fail_clean env OPENSSL_CONF="$T/openssl.cnf" nginx -t -p "$T/nginx" \
    -e "$T/nginx/logs/error.log" -c "$T/nginx/nginx.conf"
kh_expect_keyhold "CKR_PIN_INCORRECT"
kh_no_secrets "$T/must_fail.out" not-the-pin "$(cat "$T/tok.pin")"
kh_log "nginx serves the provisioned identity with the PIN from openssl.cnf"
