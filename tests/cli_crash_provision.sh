#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Crash during provision (KEYHOLD_CRASH_AT=keygen|config|csr): the next
# run converges — a key made before the config was written is an orphan
# and is destroyed when the identity is provisioned again; after the
# config was written the identity exists and `keyhold csr` finishes it.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cli_lib.inc"

kh_cli_env
keys() {
    pkcs11-tool --module "$SOFTHSM_MODULE" --token-label app --login --pin "$KH_CLI_PIN" \
        --list-objects --type privkey 2>/dev/null | grep -c "label: *keyhold:$1:" || true
}
for step in keygen config; do
    rc=0
    KEYHOLD_CRASH_AT=$step "$KEYHOLD" provision "p-$step" --token app --host h.example.com \
        --pin-file "$T/app.pin" >"$T/o" 2>&1 || rc=$?
    [ "$rc" -ge 128 ] || { cat "$T/o"; kh_fail "no crash at $step"; }
    [ ! -e "$KEYHOLD_CONF_DIR/p-$step.conf" ] || kh_fail "$step: config written before the crash point"
    [ "$(keys "p-$step")" = 1 ] || kh_fail "$step: expected the orphan key"
    "$KEYHOLD" provision "p-$step" --token app --host h.example.com --pin-file "$T/app.pin" \
        --csr-out "$T/p-$step.csr" >/dev/null || kh_fail "$step: provision again"
    [ "$(keys "p-$step")" = 1 ] || kh_fail "$step: orphan key not destroyed ($(keys "p-$step") keys)"
    id=$(sed -n 's/^key-id = //p' "$KEYHOLD_CONF_DIR/p-$step.conf")
    pkcs11-tool --module "$SOFTHSM_MODULE" --token-label app --login --pin "$KH_CLI_PIN" \
        --list-objects --type privkey 2>/dev/null | kh_has -i "ID: *$id" || kh_fail "$step: the kept key is not the config's"
    kh_log "crash at $step: orphan destroyed on the next run"
done

rc=0
KEYHOLD_CRASH_AT=csr "$KEYHOLD" provision p-csr --token app --host c.example.com \
    --pin-file "$T/app.pin" >"$T/o" 2>&1 || rc=$?
[ "$rc" -ge 128 ] || { cat "$T/o"; kh_fail "no crash at csr"; }
[ -e "$KEYHOLD_CONF_DIR/p-csr.conf" ] || kh_fail "csr: config missing"
"$KEYHOLD" csr p-csr -o "$T/p-csr.csr" || kh_fail "csr after a crash"
kh_cli_sign p-csr "$T/p-csr.pem" "DNS:c.example.com"
"$KEYHOLD" install p-csr "$T/p-csr.pem" --ca "$T/ca/ca.pem" >/dev/null || kh_fail "install"
"$KEYHOLD" verify p-csr >/dev/null || kh_fail "verify"
[ "$(keys p-csr)" = 1 ] || kh_fail "csr: extra keys"
kh_log "re-provisioning an identity that never had a certificate"
"$KEYHOLD" provision p-keygen --force --token app --host h.example.com --pin-file "$T/app.pin" \
    >/dev/null || kh_fail "--force"
[ "$(keys p-keygen)" = 1 ] || kh_fail "the replaced key of a cert-less identity was kept"
kh_log "ok"
