#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The stable state paths serve: nginx with ssl_certificate and
# ssl_certificate_key both $KEYHOLD_STATE_DIR/NAME/identity.pem (PIN from
# the provider's pin-source in openssl.cnf); `keyhold install` of a new
# certificate runs the identity's reload hook and nginx then serves it.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cli_lib.inc"

kh_cli_env
kh_cli_provision rec localhost
kh_cli_sign rec "$T/rec.pem" "DNS:localhost"
"$KEYHOLD" install rec "$T/rec.pem" --ca "$T/ca/ca.pem" >/dev/null
d=$KEYHOLD_STATE_DIR/rec
cnf=$(KH_CNF_EXTRA="pin-source = file:$T/app.pin" kh_openssl_cnf last)
port=$(kh_free_port)
kh_nginx_start "$port" "$d/identity.pem" "$d/identity.pem" "$cnf" 2
kh_tls_clients "$port" "$T/ca/ca.pem" 1.3
served() {
    openssl s_client -connect "127.0.0.1:$port" -servername localhost </dev/null 2>/dev/null \
        | openssl x509 -noout -fingerprint -sha256
}
[ "$(served)" = "$(openssl x509 -in "$T/rec.pem" -noout -fingerprint -sha256)" ] || kh_fail "first cert not served"

kh_log "install a new certificate; the reload hook makes nginx serve it"
echo "reload = kill -HUP $(cat "$T/nginx.pid")" >>"$KEYHOLD_CONF_DIR/rec.conf"
kh_cli_sign rec "$T/rec2.pem" "DNS:localhost"
"$KEYHOLD" install rec "$T/rec2.pem" >/dev/null || kh_fail "install with a reload hook"
want=$(openssl x509 -in "$T/rec2.pem" -noout -fingerprint -sha256)
for i in $(seq 1 50); do
    [ "$(served)" = "$want" ] && break
    sleep 0.2
done
[ "$(served)" = "$want" ] || kh_fail "nginx does not serve the new certificate after the reload"
kh_tls_clients "$port" "$T/ca/ca.pem" 1.2

kh_log "a failing hook rolls back"
echo "reload = false" >>"$KEYHOLD_CONF_DIR/rec.conf"
kh_cli_sign rec "$T/rec3.pem" "DNS:localhost"
kh_must_fail_clean 8 -- "$KEYHOLD" install rec "$T/rec3.pem"
kh_expect_output "rolling back"
cmp <(openssl x509 -in "$d/cert.pem" -outform DER) <(openssl x509 -in "$T/rec2.pem" -outform DER) \
    || kh_fail "not rolled back"
"$KEYHOLD" verify rec >/dev/null || kh_fail "verify after the rollback"
pkcs11-tool --module "$SOFTHSM_MODULE" --token-label app --read-object --type cert \
    --id "$(sed -n 's/^key-id = //p' "$KEYHOLD_CONF_DIR/rec.conf")" -o "$T/tokcert.der" >/dev/null 2>&1 \
    || kh_fail "no certificate object in the token"
cmp "$T/tokcert.der" <(openssl x509 -in "$T/rec2.pem" -outform DER) \
    || kh_fail "the token's certificate object was not rolled back"
kh_log "key.pem alone (a server with separate certificate and key files)"
port2=$(kh_free_port)
OPENSSL_CONF=$cnf kh_s_server "$port2" -cert "$d/fullchain.pem" -key "$d/key.pem"
OPENSSL_CONF=$cnf openssl pkey -in "$d/key.pem" -pubout >"$T/kp.pem" 2>"$T/kp.err" \
    || { cat "$T/kp.err"; kh_fail "key.pem does not load"; }
cmp "$T/kp.pem" <(openssl x509 -in "$d/cert.pem" -noout -pubkey) || kh_fail "key.pem is another key"
kh_tls_clients "$port2" "$T/ca/ca.pem" 1.3
kh_nginx_stop
if grep -E "exited on signal|\[alert\]|\[crit\]|\[emerg\]" "$T/nginx/logs/error.log"; then
    kh_fail "nginx logged a crash or a critical error"
fi
kh_log "ok"
