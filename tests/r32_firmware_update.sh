#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# firmware-hooks: a firmware update on a SoftHSM appliance. Two identities,
# nginx serving one of them. pre-update records and proves them; the "new
# rootfs" is a fresh install of the units and hooks with every cache wiped
# (token, conf and state kept); post-update proves the same keys, matching
# certificates, verify, restarts nginx and checks it serves the identity.
# boot-check and server-check pass on the updated appliance.
# Must-fail twins: a key deleted from the token, and an unreadable token,
# each a loud exit 8 with no key created in their place (boot-check then
# exits 8 too); no manifest, exit 2; server-check of an unknown identity.
# timeout: 240
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/hooks_lib.inc"

kh_hooks_setup
kh_hooks_identity recording localhost
kh_hooks_identity management mgmt.localhost

port=$(kh_free_port)
kh_hooks_nginx "$port" recording
# Settings the way an appliance has them: /etc/default/keyhold (KEY=value,
# never run as shell code).
cat >"$KEYHOLD_HOOKS_CONF" <<CONF
# keyhold hooks settings
KEYHOLD_ENDPOINTS="recording=127.0.0.1:$port"
KEYHOLD_RESTART_CMD=$KH_NGINX_RESTART
KEYHOLD_HOOK_TIMEOUT='60'
KEYHOLD_UNKNOWN=\$(touch $T/ran-shell-code)
CONF

kh_log "pre-update"
"$HOOKS/pre-update" || kh_fail "pre-update failed on working identities"
grep -c '^identity ' "$KEYHOLD_STATE_DIR/update-manifest" | kh_grepq -x 2 || kh_fail "manifest lacks identities"
grep '^identity recording ' "$KEYHOLD_STATE_DIR/update-manifest" | kh_grepq ' key=[0-9a-f]\{64\} ' ||
    { cat "$KEYHOLD_STATE_DIR/update-manifest"; kh_fail "no hardware key fingerprint recorded"; }
objs_before=$(kh_hooks_count_objects)

kh_log "new rootfs: reinstall units and hooks, wipe caches, keep token and state"
kh_hooks_new_rootfs

kh_log "post-update"
"$HOOKS/post-update" >"$T/post.out" 2>&1 || { cat "$T/post.out"; kh_fail "post-update failed after a clean update"; }
cat "$T/post.out"
grep -q "recording: same key" "$T/post.out" || kh_fail "post-update did not prove recording's key"
grep -q "serves the identity's certificate" "$T/post.out" || kh_fail "endpoint not checked"
[ ! -e "$T/ran-shell-code" ] || kh_fail "the settings file was run as shell code"
[ "$(kh_hooks_count_objects)" = "$objs_before" ] || kh_fail "token objects changed across the update"
for op in pre-update post-update; do
    grep "\"$op\"" "$KEYHOLD_STATE_DIR/audit.log" | kh_grepq '"ok"' || kh_fail "no $op audit record"
done

kh_log "boot check and server check on the updated appliance"
"$HOOKS/boot-check" >"$T/boot.out" 2>&1 || { cat "$T/boot.out"; kh_fail "boot-check failed on working identities"; }
grep -q "recording: ok" "$T/boot.out" && grep -q "management: ok" "$T/boot.out" ||
    { cat "$T/boot.out"; kh_fail "boot-check did not report both identities ok"; }
"$HOOKS/server-check" recording || kh_fail "server-check refused a working identity"
kh_must_fail 2 -- "$HOOKS/server-check" nosuch

kh_log "must fail: no manifest"
mv "$KEYHOLD_STATE_DIR/update-manifest" "$T/manifest.saved"
kh_must_fail 2 -- "$HOOKS/post-update"
kh_expect_output "pre-update"
mv "$T/manifest.saved" "$KEYHOLD_STATE_DIR/update-manifest"

kh_log "must fail: token unreadable after the update"
saved=$SOFTHSM2_CONF
mkdir -p "$T/empty-tokens"
sed "s|^directories.tokendir = .*|directories.tokendir = $T/empty-tokens|" "$saved" >"$T/softhsm-empty.conf"
SOFTHSM2_CONF=$T/softhsm-empty.conf kh_must_fail 8 -- "$HOOKS/post-update" --no-restart
kh_expect_output "recording"
[ -z "$(ls -A "$T/empty-tokens")" ] || kh_fail "a token or key was created in place of the missing one"

kh_log "must fail: recording's key deleted from the token"
kh_hooks_delete_key recording
kh_must_fail 8 -- "$HOOKS/post-update" --no-restart
grep -qE "recording: (KEY MISSING|KEY CHANGED|VERIFY FAILED)" "$T/must_fail.out" ||
    kh_fail "post-update did not name the missing key loudly"
grep -q "management: same key" "$T/must_fail.out" || kh_fail "the healthy identity was not proven"
[ "$(kh_hooks_count_objects)" -lt "$objs_before" ] || kh_fail "a key was created in place of the deleted one"
kh_must_fail 8 -- "$HOOKS/boot-check"
kh_expect_output "recording"
echo PASS
