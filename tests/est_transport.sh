#!/bin/bash
# SPDX-License-Identifier: MIT
# HTTP done properly towards the CA: a CA that accepts the connection and
# then says nothing is given up after the configured timeout; a redirect
# (nginx answering 302 to the real EST server) is refused, not followed;
# a plain-http URL is refused. The identity stays as it was each time.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/est_lib.sh"

kh_est_cam
d=$KH_ESTD_DIR
fp=$(kh_est_cert_fp cam)
unchanged() {
    [ "$(kh_est_cert_fp cam)" = "$fp" ] || kh_fail "$1: identity changed"
    kh_est_works cam
}
setcfg() {   # setcfg KEY VALUE: replace a setting in cam.conf
    grep -v "^$1 = " "$KEYHOLD_CONF_DIR/cam.conf" >"$T/c.tmp"
    echo "$1 = $2" >>"$T/c.tmp"
    cat "$T/c.tmp" >"$KEYHOLD_CONF_DIR/cam.conf"
}

kh_log "a silent CA: connection accepted, nothing sent -> timeout"
sport=$(kh_free_port)
kh_bg python3 -c '
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(8)
conns = []
while True:
    c, _ = s.accept(); conns.append(c)
' "$sport"
kh_wait_port "$sport"
setcfg est-url "https://localhost:$sport/.well-known/est"
setcfg est-timeout 2
kh_must_fail_clean 4 -- timeout 30 "$KEYHOLD" renew cam --force
kh_expect_output "timed out"
unchanged "silent CA"

kh_log "a redirect is refused, not followed"
nport=$(kh_free_port)
KH_NGINX_LOCATION="return 302 https://localhost:$KH_ESTD_PORT\$request_uri;" \
    kh_nginx_start "$nport" "$d/tls.pem" "$d/tls.key" "" 1
curl -sS --cacert "$d/tls-ca.pem" -o /dev/null -w '%{http_code}' \
    "https://localhost:$nport/.well-known/est/cacerts" | kh_grepq 302 || kh_fail "nginx does not redirect"
setcfg est-url "https://localhost:$nport/.well-known/est"
before=$(grep -c "cacerts -> 200" "$d/estd.log" || true)
kh_must_fail_clean 4 -- "$KEYHOLD" renew cam --force
kh_expect_output "redirect"
[ "$(grep -c "cacerts -> 200" "$d/estd.log" || true)" = "$before" ] || kh_fail "the redirect was followed"
unchanged "redirect"

kh_log "a CA label in the URL: served when it matches, 404 named otherwise"
kh_estd_stop
kh_estd_start --label cams
setcfg est-url "https://localhost:$KH_ESTD_PORT/.well-known/est/cams"
"$KEYHOLD" renew cam --force >/dev/null || kh_fail "renew through the label"
grep -q "GET /.well-known/est/cams/cacerts -> 200" "$KH_ESTD_DIR/estd.log" || kh_fail "label not used"
fp=$(kh_est_cert_fp cam)
setcfg est-url "https://localhost:$KH_ESTD_PORT/.well-known/est/doors"
kh_must_fail_clean 4 -- "$KEYHOLD" renew cam --force
kh_expect_output "404"
unchanged "other label"

kh_log "plain http is refused"
kh_must_fail 1 -- "$KEYHOLD" enroll cam --est "http://localhost:$KH_ESTD_PORT"
kh_expect_output "https"
unchanged "http"
kh_log "ok"
