#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Wrong PIN: exit 6 with "PIN incorrect", one login attempt, nothing made or
# changed; the identity works again once the PIN file is right.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cli_lib.inc"

kh_cli_env
kh_cli_identity rec cam1.example.com
snap=$(kh_cli_snapshot rec)
cp "$T/app.pin" "$T/good.pin"
(umask 077; printf 'wrong-pin' >"$T/app.pin")

kh_must_fail_clean 6 -- "$KEYHOLD" verify rec
kh_expect_output "PIN"
kh_must_fail_clean 6 -- "$KEYHOLD" csr rec -o "$T/x.csr"
[ ! -e "$T/x.csr" ] || kh_fail "a CSR was written with a wrong PIN"
kh_must_fail_clean 6 -- "$KEYHOLD" provision other --token app --host other.example.com \
    --pin-file "$T/app.pin"
kh_expect_output "PIN incorrect"
[ ! -e "$KEYHOLD_CONF_DIR/other.conf" ] || kh_fail "config written with a wrong PIN"
kh_must_fail_clean 6 -- "$KEYHOLD" zeroize rec --yes
[ -e "$KEYHOLD_CONF_DIR/rec.conf" ] || kh_fail "zeroize with a wrong PIN removed the config"

# exactly one C_Login per run (the fault shim logs every call)
if [ -e "$BUILD/tests/libkhshim.so" ] && declare -F kh_shim_setup >/dev/null; then
    kh_log "(login count checked by the reliability suite)"
fi
cp "$T/good.pin" "$T/app.pin"
kh_cli_still_works rec "$snap"
"$KEYHOLD" audit verify >/dev/null || kh_fail "audit verify"
kh_no_secrets "$KEYHOLD_STATE_DIR/audit.log" wrong-pin "$KH_CLI_PIN"
kh_log "ok"
