#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Scenario 30: the EST server answers garbage -- a 10 MiB body, bad base64,
# a PKCS#7 with no certificate, an HTML page served with 200, HTTP errors
# -> each renewal fails with a named error, memory stays bounded, and the
# old identity keeps working. (keyhold has no CMP client yet, so malformed
# CMP is not exercised here.)
# timeout: 240
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/est_lib.sh"

kh_est_cam
fp=$(kh_est_cert_fp cam)

# bad MODE-ARGS... -- REASON-REGEX
bad() {
    local args=() re
    while [ "$1" != "--" ]; do args+=("$1"); shift; done
    re=$2
    kh_r_estd_restart cam "${args[@]}"
    rc=0
    /usr/bin/time -f '%M' -o "$T/rss" timeout 120 "$KEYHOLD" renew cam --force >"$T/bad.out" 2>&1 || rc=$?
    cat "$T/bad.out"
    [ "$rc" != 124 ] || kh_fail "${args[*]}: renewal hung"
    [ "$rc" -ne 0 ] && [ "$rc" -lt 128 ] || kh_fail "${args[*]}: exit $rc (want a clean failure)"
    grep -qiE -- "$re" "$T/bad.out" || kh_fail "${args[*]}: the error does not name '$re'"
    rss=$(tail -n 1 "$T/rss")
    [ "$rss" -lt 131072 ] || kh_fail "${args[*]}: keyhold used $rss kB"
    [ "$(kh_est_cert_fp cam)" = "$fp" ] || kh_fail "${args[*]}: the identity changed"
    kh_est_works cam
    kh_log "${args[*]}: exit $rc, named error, ${rss} kB max, old identity kept"
}

bad --test-body huge -- 'larger than|too large'
bad --test-body bad-base64 -- 'base64|decode|PKCS#7|not'
bad --test-body empty-p7 -- 'no certificate|0 cert|empty|no cert'
bad --test-body html -- 'html|text/|error page|not application/pkcs7'
bad --test-status 500 -- '500'
bad --test-status 404 -- '404'
bad --test-status 401 -- '401|auth'
bad --test-status 302 -- '302|redirect'
kh_log "scenario 30 ok"
