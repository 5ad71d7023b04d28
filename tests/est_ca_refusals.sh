#!/bin/bash
# SPDX-License-Identifier: MIT
# The CA answers wrongly (keyhold-estd's test-only knobs): a certificate for
# another key, for another host, already expired, not yet valid, signed by
# another CA with the same name, without serverAuth, with CA:TRUE; an HTML
# page, a 10 MiB body, bad base64, a PKCS#7 without certificates, a 503.
# Each is refused by name, the working identity is unchanged and verifies.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/est_lib.sh"

kh_est_cam --san ip:127.0.0.1
fp=$(kh_est_cert_fp cam)
gen=$(readlink "$KEYHOLD_STATE_DIR/cam/current")

unchanged() {
    [ "$(kh_est_cert_fp cam)" = "$fp" ] || kh_fail "$1: certificate changed"
    [ "$(readlink "$KEYHOLD_STATE_DIR/cam/current")" = "$gen" ] || kh_fail "$1: generation changed"
    kh_est_works cam
}

refuse() {   # refuse KNOB-ARGS EXIT WORD
    kh_log "CA misbehaves: $1"
    kh_estd_stop
    # shellcheck disable=SC2086
    kh_estd_start $1
    kh_must_fail_clean "$2" -- "$KEYHOLD" renew cam --force
    kh_expect_output "$3"
    unchanged "$1"
}

refuse "--test-issue wrong-key"      2 "another key"
refuse "--test-issue wrong-host"     2 "cam1.example"
refuse "--test-issue expired"        2 "expired"
refuse "--test-issue not-yet-valid"  2 "not yet valid"
refuse "--test-issue other-ca"       2 "chain"
refuse "--test-issue no-server-auth" 2 "serverAuth"
refuse "--test-issue ca-true"        2 "CA"
refuse "--test-body html"            4 "text/html"
refuse "--test-body huge"            4 "larger than"
refuse "--test-body bad-base64"      4 "base64"
refuse "--test-body empty-p7"        4 "no certificate"
refuse "--test-status 503"           4 "503"
grep -q '"outcome":"ok"' "$KEYHOLD_STATE_DIR/reports.jsonl" || kh_fail "no report"
kh_log "ok"
