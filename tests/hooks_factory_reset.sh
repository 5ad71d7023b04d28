#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# firmware-hooks: factory-reset on a SoftHSM appliance. Two identities in a
# token keyhold created, one in a vendor token keyhold did not create. The
# reset is killed midway (as by a power cut): servers then refuse to start,
# and the boot check completes it. Afterwards nothing is left: status lists
# no identity, the keyhold token is gone (overwritten and deleted), the
# vendor token keeps its own object but no keyhold object, PIN files,
# configs and state are gone, and the audit log is intact with the reset as
# its last record. A second run is harmless; --wipe-audit removes the log.
# timeout: 240
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/hooks_lib.inc"

kh_hooks_setup
# A vendor token with an object of its own (same PIN for brevity).
softhsm2-util --init-token --free --label vendor --pin "$KH_HOOKS_PIN" --so-pin vendor-so-PIN >/dev/null
kh_p11tool_keygen vendor vendor-own 0a0b EC:prime256v1 "$KH_HOOKS_PIN"
kh_hooks_identity recording localhost
kh_hooks_identity mobile mobile.localhost
"$KEYHOLD" provision management --token "pkcs11:token=vendor" --alg ec-p256 \
    --host mgmt.localhost --csr-out "$T/management.csr" >/dev/null 2>&1 ||
    kh_fail "provision in the vendor token failed"
serial=$(sed -n 's/.*"serial" *: *"\([^"]*\)".*/\1/p' "$KEYHOLD_STATE_DIR/tokens.jsonl" | head -n 1)
[ -n "$serial" ] || kh_fail "token init did not record the token in tokens.jsonl"
tokendir=$(sed -n 's/^directories.tokendir = //p' "$SOFTHSM2_CONF")
[ "$(ls "$tokendir" | wc -l)" = 2 ] || kh_fail "expected two token dirs"
cp "$T/user.pin" "$T/pin.copy"

kh_log "factory-reset killed after zeroize"
rc=0
KEYHOLD_HOOK_CRASH_AT=zeroized "$HOOKS/factory-reset" --yes >"$T/reset1.out" 2>&1 || rc=$?
cat "$T/reset1.out"
[ "$rc" = 137 ] || kh_fail "expected the reset to be killed (137), got $rc"
[ -e "$KEYHOLD_STATE_DIR/.factory-reset" ] || kh_fail "no reset mark after the interruption"

kh_log "a half-reset identity keeps its server down"
kh_must_fail 8 -- "$HOOKS/server-check" recording
kh_expect_output "factory reset"

kh_log "boot check completes the reset"
"$HOOKS/boot-check" >"$T/boot.out" 2>&1 || { cat "$T/boot.out"; kh_fail "boot-check did not complete the reset"; }
cat "$T/boot.out"
grep -q "interrupted factory reset" "$T/boot.out" || kh_fail "boot-check did not say it completed a reset"

kh_log "nothing is left"
[ ! -e "$KEYHOLD_STATE_DIR/.factory-reset" ] || kh_fail "reset mark still there"
out=$("$KEYHOLD" status --json) || kh_fail "status --json failed after the reset"
[ "$(printf '%s' "$out" | tr -d ' \n\t')" = "[]" ] || kh_fail "status still lists: $out"
[ -z "$(ls -A "$KEYHOLD_CONF_DIR")" ] || { ls -la "$KEYHOLD_CONF_DIR"; kh_fail "conf dir not empty"; }
left=$(ls -A "$KEYHOLD_STATE_DIR" | grep -v -e '^audit\.log$' -e '^audit\.head$' || true)
[ -z "$left" ] || kh_fail "state dir holds more than the audit log: $left"
[ ! -e "$T/user.pin" ] && [ ! -e "$T/so.pin" ] || kh_fail "PIN files left"
[ "$(ls "$tokendir" | wc -l)" = 1 ] || kh_fail "keyhold's token directory not deleted"
if softhsm2-util --show-slots 2>/dev/null | kh_grepq "Serial number: *$serial"; then
    kh_fail "token $serial still present"
fi
KH_P=$KH_HOOKS_PIN pkcs11-tool --module "$SOFTHSM_MODULE" --token-label vendor --login --pin env:KH_P \
    --list-objects >"$T/vendor.objs" 2>&1 || { cat "$T/vendor.objs"; kh_fail "vendor token unusable"; }
grep -q 'label: *vendor-own' "$T/vendor.objs" || kh_fail "the vendor's own object was destroyed"
if grep -q 'label: *keyhold:' "$T/vendor.objs"; then cat "$T/vendor.objs"; kh_fail "keyhold object left in vendor token"; fi
tail -n 1 "$KEYHOLD_STATE_DIR/audit.log" | kh_grepq 'factory-reset' ||
    { tail -n 3 "$KEYHOLD_STATE_DIR/audit.log"; kh_fail "the reset is not the audit log's last record"; }
"$KEYHOLD" audit verify >"$T/audit.out" 2>&1 || { cat "$T/audit.out"; kh_fail "audit log chain broken by the reset"; }
kh_no_secrets "$KEYHOLD_STATE_DIR/audit.log" "$KH_HOOKS_PIN" "$KH_HOOKS_SOPIN"

kh_log "a second run on a reset appliance is harmless"
"$HOOKS/factory-reset" --yes >"$T/reset2.out" 2>&1 || { cat "$T/reset2.out"; kh_fail "second reset failed"; }
kh_must_fail 1 -- "$HOOKS/factory-reset" </dev/null
kh_expect_output "--yes"

kh_log "--wipe-audit"
"$HOOKS/factory-reset" --yes --wipe-audit >"$T/reset3.out" 2>&1 || { cat "$T/reset3.out"; kh_fail "reset --wipe-audit failed"; }
[ -z "$(ls -A "$KEYHOLD_STATE_DIR")" ] || kh_fail "state left after --wipe-audit: $(ls -A "$KEYHOLD_STATE_DIR")"
echo PASS
