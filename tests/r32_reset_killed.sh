#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# firmware-hooks (reliability scenario 32): a factory reset killed after each of its steps (recorded,
# zeroized, tokens, files) and run again completes: no identity, no key
# object, no keyhold token, no PIN file, reference or certificate left,
# the audit log intact; while it is unfinished a server refuses to start.
# timeout: 180
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/hooks_lib.inc"

kh_hooks_setup
tokendir=$(sed -n 's/^directories.tokendir = //p' "$SOFTHSM2_CONF")
for step in recorded zeroized tokens files; do
    kh_log "reset killed after '$step'"
    if [ ! -e "$T/user.pin" ]; then
        # The previous round removed the token and its PIN files.
        kh_hooks_pins
        "$KEYHOLD" token init --label appliance --pin-file "$T/user.pin" \
            --so-pin-file "$T/so.pin" >/dev/null 2>&1 || kh_fail "token init"
    fi
    kh_hooks_identity recording localhost >/dev/null
    rc=0
    KEYHOLD_HOOK_CRASH_AT=$step "$HOOKS/factory-reset" --yes >"$T/r1.out" 2>&1 || rc=$?
    [ "$rc" = 137 ] || { cat "$T/r1.out"; kh_fail "reset not killed at $step (exit $rc)"; }
    kh_must_fail 8 -- "$HOOKS/server-check" recording
    "$HOOKS/factory-reset" --yes >"$T/r2.out" 2>&1 || { cat "$T/r2.out"; kh_fail "rerun after '$step' failed"; }
    grep -q "resuming" "$T/r2.out" || kh_fail "rerun did not resume the recorded reset"
    out=$("$KEYHOLD" status --json)
    [ "$(printf '%s' "$out" | tr -d ' \n\t')" = "[]" ] || kh_fail "after '$step': status lists $out"
    [ -z "$(ls -A "$KEYHOLD_CONF_DIR")" ] || kh_fail "after '$step': configs left"
    left=$(ls -A "$KEYHOLD_STATE_DIR" | grep -v -e '^audit\.log$' -e '^audit\.head$' || true)
    [ -z "$left" ] || kh_fail "after '$step': state left: $left"
    [ -z "$(ls -A "$tokendir")" ] || kh_fail "after '$step': token left"
    [ ! -e "$T/user.pin" ] && [ ! -e "$T/so.pin" ] || kh_fail "after '$step': PIN files left"
    "$KEYHOLD" audit verify >/dev/null 2>&1 || kh_fail "after '$step': audit chain broken"
    tail -n 1 "$KEYHOLD_STATE_DIR/audit.log" | kh_grepq '"factory-reset"' || kh_fail "after '$step': reset not last in audit"
done
echo PASS
