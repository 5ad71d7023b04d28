#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# firmware-hooks: what the boot check and a server's pre-start check make of
# each identity state. ok -> boot 0, server starts; hosts changed (needs
# attention) -> boot 5, which keyhold-boot.service counts as success, and
# the server still starts; provisioned but no certificate yet (half
# provisioned) -> the server refuses to start and the boot check says
# which identity and what to run.
# timeout: 120
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/hooks_lib.inc"

kh_hooks_setup
kh_hooks_identity recording localhost

"$HOOKS/boot-check" >"$T/b1.out" 2>&1 || { cat "$T/b1.out"; kh_fail "boot-check on an ok identity"; }
grep -q "recording: ok" "$T/b1.out" || kh_fail "boot-check did not log recording ok"
"$HOOKS/server-check" recording || kh_fail "server-check refused an ok identity"

kh_log "hosts changed: needs attention, still serving"
"$KEYHOLD" set-hosts recording --host rec.localhost >/dev/null 2>&1 || kh_fail "set-hosts failed"
rc=0
"$HOOKS/boot-check" >"$T/b2.out" 2>&1 || rc=$?
cat "$T/b2.out"
[ "$rc" = 5 ] || kh_fail "boot-check exit $rc for hosts-changed, want 5"
grep -q "recording: .*needs attention" "$T/b2.out" || kh_fail "attention not logged"
grep -q '^SuccessExitStatus=5 75$' "$T/root/lib/systemd/system/keyhold-boot.service" ||
    kh_fail "keyhold-boot.service would count 5 as failure"
"$HOOKS/server-check" recording || kh_fail "server-check refused an identity that only needs attention"

kh_log "half provisioned (key, no certificate): server refuses, boot names it"
"$KEYHOLD" provision mobile --token "pkcs11:token=appliance" --alg ec-p256 \
    --host mobile.localhost >/dev/null 2>&1 || kh_fail "provision mobile"
kh_must_fail 8 -- "$HOOKS/server-check" mobile
kh_expect_output "half provisioned"
rc=0
"$HOOKS/boot-check" >"$T/b3.out" 2>&1 || rc=$?
cat "$T/b3.out"
[ "$rc" = 5 ] || [ "$rc" = 8 ] || kh_fail "boot-check exit $rc with a half-provisioned identity"
grep -q "mobile: .*keyhold \(status\|verify\) mobile" "$T/b3.out" || kh_fail "boot-check did not name mobile and the command to run"
echo PASS
