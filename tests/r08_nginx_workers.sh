#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Scenario 8: nginx with 4 workers and a key-reference PEM as its
# ssl_certificate_key. 400 full handshakes all succeed; each worker that
# signs initialises the PKCS#11 library once (after the fork), logs in at
# most once, and no worker dies.
# timeout: 180
. "$(dirname "$0")/lib.sh"
kh_need "$BUILD/keyhold.so" "$KH_SHIM" "$BUILD/tests/kh-keyref" "$BUILD/tests/kh-hsloop"

kh_r_token_key_cert
kh_shim_setup
"$BUILD/tests/kh-keyref" "$(kh_shim_uri appl srv)" >"$T/key.pem"
grep -q "BEGIN KEYHOLD KEY REFERENCE" "$T/key.pem" || kh_fail "no key reference written"
kh_no_secrets "$T/key.pem" 1234
cnf=$(kh_openssl_cnf last)

port=$(kh_r_port)
d=$T/nginx
KH_NGINX_SHIM=1 kh_nginx_start "$port" "$T/srv.pem" "$T/key.pem" "$cnf" 4
master=$KH_NGINX_PID
kh_log "nginx master $master with 4 workers on $port"

"$BUILD/tests/kh-hsloop" -p "$port" -C "$T/ca/ca.pem" -n 200 -V 1.3 -k >"$T/hs13.out" 2>&1 \
    || { cat "$T/hs13.out" "$d/logs/error.log"; kh_fail "TLS 1.3 handshakes failed"; }
"$BUILD/tests/kh-hsloop" -p "$port" -C "$T/ca/ca.pem" -n 200 -V 1.2 -k >"$T/hs12.out" 2>&1 \
    || { cat "$T/hs12.out" "$d/logs/error.log"; kh_fail "TLS 1.2 handshakes failed"; }
cat "$T/hs13.out" "$T/hs12.out"
kill -0 "$master" || kh_fail "nginx master died"

# Which processes signed, and how often each initialised and logged in.
signers=$(grep 'fn=C_Sign .*rv=CKR_OK' "$KH_SHIM_LOG" | sed 's/^pid=\([0-9]*\) .*/\1/' | sort -u)
n=$(echo "$signers" | grep -c .)
kh_log "$n worker(s) signed"
[ "$n" -ge 2 ] || kh_fail "only $n worker signed: connections were not spread over the workers"
for p in $signers; do
    [ "$p" != "$master" ] || kh_fail "the master process signed handshakes"
    inits=$(grep -c "^pid=$p fn=C_Initialize " "$KH_SHIM_LOG" || true)
    logins=$(grep -c "^pid=$p fn=C_Login " "$KH_SHIM_LOG" || true)
    signs=$(grep -c "^pid=$p fn=C_Sign .*rv=CKR_OK" "$KH_SHIM_LOG" || true)
    kh_log "worker $p: $signs signatures, $inits C_Initialize, $logins C_Login"
    [ "$inits" = 1 ] || kh_fail "worker $p initialised $inits times (want once)"
    [ "$logins" -le 1 ] || kh_fail "worker $p logged in $logins times"
done
total=$(kh_shim_count C_Sign CKR_OK)
[ "$total" -ge 400 ] || kh_fail "only $total signatures for 400 handshakes"
if grep -E '\[(alert|crit|emerg)\]|exited on signal' "$d/logs/error.log"; then
    kh_fail "nginx logged a worker crash or a critical error"
fi
kh_log "scenario 8 ok"
