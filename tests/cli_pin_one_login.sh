#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Wrong PIN: every command tries exactly one C_Login (seen by the fault
# shim) and exits 6; a token on its final PIN try is not logged into at
# all; the PIN never reaches the shim's log, the audit log or the output.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cli_lib.inc"
kh_need "$KH_SHIM"

kh_cli_env
kh_shim_setup
"$KEYHOLD" provision rec --token app --module "$KH_SHIM" --host cam1.example.com \
    --pin-file "$T/app.pin" --csr-out "$T/rec.csr" >/dev/null || kh_fail "provision"
kh_cli_sign rec "$T/rec.pem" "DNS:cam1.example.com"
"$KEYHOLD" install rec "$T/rec.pem" --ca "$T/ca/ca.pem" >/dev/null || kh_fail "install"
snap=$(kh_cli_snapshot rec)
cp "$T/app.pin" "$T/good.pin"
(umask 077; printf 'kh-wrong-9911' >"$T/app.pin")
kh_cli_sign rec "$T/rec2.pem" "DNS:cam1.example.com"
for cmd in "verify rec" "csr rec -o $T/x.csr" "install rec $T/rec2.pem" \
           "provision other --token app --module $KH_SHIM --host o.example.com --pin-file $T/app.pin"; do
    kh_shim_log_reset
    # shellcheck disable=SC2086
    kh_must_fail_clean 6 -- "$KEYHOLD" $cmd
    n=$(kh_shim_count C_Login)
    [ "$n" = 1 ] || { cat "$KH_SHIM_LOG"; kh_fail "$cmd: $n C_Login calls, want exactly 1"; }
    [ "$(kh_shim_count C_Login CKR_PIN_INCORRECT)" = 1 ] || kh_fail "$cmd: login not refused"
    kh_log "$cmd: one login, exit 6"
done
[ ! -e "$T/x.csr" ] || kh_fail "a CSR was written"

kh_log "final PIN try: no login at all"
kh_shim_set "tokenflags +CKF_USER_PIN_FINAL_TRY"
cp "$T/good.pin" "$T/app.pin"
for cmd in "install rec $T/rec2.pem" "zeroize rec --yes"; do
    kh_shim_log_reset
    # shellcheck disable=SC2086
    kh_must_fail_clean 6 -- "$KEYHOLD" $cmd
    kh_expect_output "final PIN try"
    [ "$(kh_shim_count C_Login)" = 0 ] || kh_fail "$cmd logged in on the final try"
done
kh_shim_set
kh_cli_still_works rec "$snap"
for f in "$KH_SHIM_LOG" "$KEYHOLD_STATE_DIR/audit.log"; do
    kh_no_secrets "$f" kh-wrong-9911 "$KH_CLI_PIN"
done
kh_log "ok"
