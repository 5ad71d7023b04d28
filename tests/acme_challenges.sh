#!/bin/bash
# SPDX-License-Identifier: MIT
# ACME beyond the basic http-01 run, against pebble on loopback: tls-alpn-01
# answered by keyhold's transient TLS listener with an acmeIdentifier
# certificate signed by the hardware key; http-01 through a web root served
# by another web server; RS256 and ES384 account keys; external account binding (a wrong MAC key refused
# with pebble's error document, nothing installed); and pebble rejecting a
# third of all nonces, which badNonce retries absorb.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/acme_lib.inc"

kh_acme_setup
KH_ACME_EAB_REQUIRED=true
KH_ACME_EAB_KEYS='"kid-1": "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W"'
PEBBLE_WFE_NONCEREJECT=30
kh_acme_start
(umask 077; printf 'zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W\n' >"$T/eab.key"
 printf 'AAAAZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W\n' >"$T/wrong.key")
# account keys in the token: RSA (RS256) for web, P-384 (ES384) for tls
KH_ACME_ALG=rsa-2048 kh_acme_identity acct acct.example
KH_ACME_ALG=ec-p384 kh_acme_identity acct384 acct384.example
kh_acme_identity web web1.example
kh_acme_identity tls tls1.example
echo "acme-account = acct" >>"$KEYHOLD_CONF_DIR/web.conf"
echo "acme-account = acct384" >>"$KEYHOLD_CONF_DIR/tls.conf"

kh_log "EAB required: none given -> refused naming the fix"
kh_must_fail 1 -- kh_acme_enroll web
kh_expect_output "--eab-kid"
kh_log "EAB with a wrong MAC key -> pebble's error document, nothing installed"
kh_must_fail 4 -- kh_acme_enroll web --eab-kid kid-1 --eab-hmac-file "$T/wrong.key"
kh_expect_output "urn:ietf:params:acme:error:"
[ ! -e "$KEYHOLD_STATE_DIR/web/current" ] || kh_fail "something was installed"

kh_log "http-01 through a web root served by another web server"
mkdir -p "$T/www"
kh_bg python3 -m http.server --bind 127.0.0.1 --directory "$T/www" "$KH_ACME_CHPORT" \
    >"$T/www.log" 2>&1
kh_wait_port "$KH_ACME_CHPORT"
KEYHOLD_DEBUG=1 kh_acme_enroll web --webroot "$T/www" --eab-kid kid-1 --eab-hmac-file "$T/eab.key" \
    >"$T/web.out" 2>&1 || { cat "$T/web.out"; tail -20 "$KH_ACME_DIR/pebble.log"; kh_fail "webroot enroll"; }
grep -v "^keyhold" "$T/web.out" || true
grep -q "GET /.well-known/acme-challenge/" "$T/www.log" || kh_fail "web server not asked"
[ -z "$(ls -A "$T/www/.well-known/acme-challenge")" ] || kh_fail "token files left behind"
"$KEYHOLD" verify web >/dev/null || kh_fail "verify web"
grep -q "acme-eab-kid = kid-1" "$KEYHOLD_CONF_DIR/web.conf" || kh_fail "eab kid not stored"
grep -q "^acme-webroot = $T/www" "$KEYHOLD_CONF_DIR/web.conf" || kh_fail "webroot not stored"
if grep -rqs "zWNDZM6eQGHW" "$KEYHOLD_CONF_DIR" "$KEYHOLD_STATE_DIR" "$T/web.out"; then
    kh_fail "the EAB key leaked"
fi

kh_log "tls-alpn-01: keyhold's TLS listener, certificate signed by the hardware key"
KEYHOLD_DEBUG=1 kh_acme_enroll tls --challenge tls-alpn-01 --challenge-port "$KH_ACME_TLSPORT" \
    --eab-kid kid-1 --eab-hmac-file "$T/eab.key" >"$T/tls.out" 2>&1 \
    || { cat "$T/tls.out"; tail -20 "$KH_ACME_DIR/pebble.log"; kh_fail "tls-alpn-01 enroll"; }
grep -v "^keyhold" "$T/tls.out" || true
! grep -q "validate w/ HTTP: http://tls1.example" "$KH_ACME_DIR/pebble.log" \
    || kh_fail "pebble validated tls1.example over http-01"
grep -q "^acme-challenge = tls-alpn-01" "$KEYHOLD_CONF_DIR/tls.conf" || kh_fail "challenge not stored"
"$KEYHOLD" verify tls >/dev/null || kh_fail "verify tls"
kh_log "tls-alpn-01 renewal"
KEYHOLD_DEBUG=1 "$KEYHOLD" renew tls --force >"$T/tlsr.out" 2>&1 || { cat "$T/tlsr.out"; kh_fail "renew tls"; }

grep -q "ACME account .*RS256" "$T/web.out" || kh_fail "web: not an RS256 account"
grep -q "ACME account .*ES384" "$T/tls.out" || kh_fail "tls: not an ES384 account"
kh_log "badNonce answers retried with the fresh nonce: $(cat "$T"/{web,tls,tlsr}.out | grep -c badNonce)"
cat "$T"/{web,tls,tlsr}.out | kh_grepq "badNonce" || kh_fail "no badNonce retry seen (PEBBLE_WFE_NONCEREJECT)"
kh_log "ok"
