#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Scenario 10: the token disappears while a TLS server uses it
# (CKR_DEVICE_REMOVED / CKR_TOKEN_NOT_PRESENT, also in the middle of a
# signature) -> the handshake ends with a TLS alert, the server does not
# crash, and when the token is back the next handshake works without a
# restart -- for s_server and for nginx's workers.
# timeout: 120
. "$(dirname "$0")/lib.sh"

kh_r_shim_server
kh_log "token present: handshake ok"

# 1. The whole device is gone: every call fails, no token in any slot.
kh_shim_set removed
kh_shim_log_reset
if kh_r_handshake "$port" -tls1_3; then kh_fail "handshake succeeded without the token"; fi
grep -qi "alert" "$T/hs.out" || { cat "$T/hs.out"; kh_fail "client got no TLS alert"; }
kh_r_alive "$srv" s_server
logins=$(kh_shim_count C_Login)
[ "$logins" -le 1 ] || kh_fail "$logins C_Login calls while the token was gone"
kh_log "token removed: TLS alert, server alive, $logins login attempts"

# A second attempt while still gone: still a clean failure.
if kh_r_handshake "$port" -tls1_2; then kh_fail "TLS 1.2 handshake succeeded without the token"; fi
kh_r_alive "$srv" s_server

# 2. Back: the first handshake works again, without restarting the server.
kh_shim_set
kh_r_handshake "$port" -tls1_3 || { cat "$T/hs.out"; kh_fail "no handshake after the token came back"; }
kh_log "token back: handshake ok without restart"

# 3. Gone in the middle of the signature (C_Sign answers TOKEN_NOT_PRESENT
#    and the token stays away), then back.
kh_shim_set 'fail C_Sign CKR_TOKEN_NOT_PRESENT at=1 do=closeall' 'removed CKR_TOKEN_NOT_PRESENT'
if kh_r_handshake "$port" -tls1_3; then kh_fail "handshake succeeded with the token pulled mid-signature"; fi
grep -qi "alert" "$T/hs.out" || { cat "$T/hs.out"; kh_fail "client got no TLS alert"; }
kh_r_alive "$srv" s_server
kh_shim_set
kh_r_handshake "$port" -tls1_3 || { cat "$T/hs.out"; kh_fail "no handshake after the token came back (2)"; }

# 4. DEVICE_REMOVED on one signature only (a glitch): the failed handshake
#    is clean and the next one works.
kh_shim_set 'fail C_Sign CKR_DEVICE_REMOVED at=1'
kh_r_handshake "$port" -tls1_3 || true
kh_r_alive "$srv" s_server
kh_r_handshake "$port" -tls1_3 || { cat "$T/hs.out"; kh_fail "no handshake after a one-off DEVICE_REMOVED"; }

# 5. The same under nginx with 4 workers on a key reference: every worker
#    fails cleanly while the token is away and serves again when it is back.
kh_need "$BUILD/tests/kh-keyref" "$BUILD/tests/kh-hsloop"
kh_shim_set
"$BUILD/tests/kh-keyref" "$(kh_shim_uri appl srv)" >"$T/key.pem"
cnf=$(kh_openssl_cnf last)
nport=$(kh_r_port)
d=$T/nginx
KH_NGINX_SHIM=1 kh_nginx_start "$nport" "$T/srv.pem" "$T/key.pem" "$cnf" 4
nginx_master=$KH_NGINX_PID
"$BUILD/tests/kh-hsloop" -p "$nport" -C "$T/ca/ca.pem" -n 40 >"$T/n1.out" 2>&1 \
    || { cat "$T/n1.out"; kh_fail "nginx: handshakes before the removal"; }
kh_shim_set removed
rc=0
"$BUILD/tests/kh-hsloop" -p "$nport" -C "$T/ca/ca.pem" -n 40 -k >"$T/n2.out" 2>&1 || rc=$?
grep -q "handshakes: 0/40 failed: 40" "$T/n2.out" || { cat "$T/n2.out"; kh_fail "nginx: handshakes succeeded without the token"; }
kill -0 "$nginx_master" || kh_fail "nginx died while the token was away"
kh_shim_set
"$BUILD/tests/kh-hsloop" -p "$nport" -C "$T/ca/ca.pem" -n 40 >"$T/n3.out" 2>&1 \
    || { cat "$T/n3.out"; kh_fail "nginx: no handshake after the token came back"; }
if grep -E 'exited on signal|\[alert\]' "$d/logs/error.log"; then kh_fail "an nginx worker crashed"; fi
kh_log "nginx, 4 workers: 40/40 fail cleanly while removed, 40/40 succeed after, no restart"

if grep -qE 'AddressSanitizer|runtime error:|Segmentation' "$T/s_server.$port.log"; then
    cat "$T/s_server.$port.log"; kh_fail "server reported a crash or sanitizer error"
fi
kh_log "scenario 10 ok"
