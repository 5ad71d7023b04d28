#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Unknown identity: every command says so (exit 2) and names the fix;
# the existing identity is untouched.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cli_lib.inc"

kh_cli_env
kh_cli_identity rec cam1.example.com
snap=$(kh_cli_snapshot rec)
for cmd in "status nosuch" "csr nosuch" "verify nosuch" "install nosuch $T/rec.pem" \
           "set-hosts nosuch --host x.example.com" "zeroize nosuch --yes"; do
    # shellcheck disable=SC2086
    kh_must_fail_clean 2 -- "$KEYHOLD" $cmd
    kh_expect_output "unknown identity"
done
kh_must_fail_clean 1 -- "$KEYHOLD" nosuchcommand
kh_must_fail_clean 1 -- "$KEYHOLD" status --bogus
[ ! -e "$KEYHOLD_STATE_DIR/nosuch" ] || kh_fail "state dir made for an unknown identity"
kh_cli_still_works rec "$snap"
kh_log "ok"
