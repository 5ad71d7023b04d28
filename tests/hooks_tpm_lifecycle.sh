#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# firmware-hooks on an appliance with a TPM (swtpm, no resource manager) and
# a SoftHSM token: a TPM identity with a persistent key handle beside a
# token identity. pre-update -> new rootfs -> post-update proves both; after
# a TPM reset (swtpm restarted on its state) it still does; with the TPM
# gone post-update fails loudly for the TPM identity only. factory-reset
# then evicts the persistent handle and leaves nothing: no keyhold handle in
# `tpm2_getcap handles-persistent`, no key file, status lists nothing.
# timeout: 240
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/hooks_lib.inc"

kh_hooks_setup
kh_swtpm_start
handle=0x81000020
kh_hooks_identity recording localhost

# TPM identity: the key persistent at $handle (tpm-persistent in its config).
"$KEYHOLD" provision cam --tpm --alg ec-p256 --host cam.localhost >"$T/cam0.log" 2>&1 ||
    { cat "$T/cam0.log"; kh_fail "provision --tpm failed"; }
echo "tpm-persistent = $handle" >>"$KEYHOLD_CONF_DIR/cam.conf"
"$KEYHOLD" provision cam --tpm --alg ec-p256 --host cam.localhost --force \
    --csr-out "$T/cam.csr" >"$T/cam1.log" 2>&1 || { cat "$T/cam1.log"; kh_fail "provision --tpm (persistent) failed"; }
kh_ca_sign "$T/ca" "$T/cam.csr" "$T/cam.pem" "DNS:cam.localhost" 7 || kh_fail "CA sign"
"$KEYHOLD" install cam "$T/cam.pem" --ca "$T/ca/ca.pem" >"$T/cam2.log" 2>&1 ||
    { cat "$T/cam2.log"; kh_fail "install cam failed"; }
grep -q "^key-uri = tpm2:handle=$handle" "$KEYHOLD_CONF_DIR/cam.conf" || kh_fail "cam's key is not at $handle"
tpm2_getcap handles-persistent | grep -qi "$handle" || kh_fail "$handle not persistent in the TPM"
"$KEYHOLD" verify cam >/dev/null 2>&1 || kh_fail "TPM identity does not verify"

kh_log "pre-update, new rootfs, post-update"
"$HOOKS/pre-update" || kh_fail "pre-update failed"
grep '^identity cam ' "$KEYHOLD_STATE_DIR/update-manifest" | grep -q ' key=[0-9a-f]\{64\} ' ||
    kh_fail "no TPM key fingerprint in the manifest"
kh_hooks_new_rootfs
"$HOOKS/post-update" --no-restart >"$T/post1.out" 2>&1 || { cat "$T/post1.out"; kh_fail "post-update failed"; }
grep -q "cam: same key" "$T/post1.out" || kh_fail "TPM key not proven"

kh_log "TPM reset (swtpm restarted on its state): still the same keys"
kh_swtpm_restart
"$HOOKS/post-update" --no-restart >"$T/post2.out" 2>&1 || { cat "$T/post2.out"; kh_fail "post-update after TPM reset failed"; }

kh_log "must fail: the TPM does not answer"
kh_swtpm_kill
kh_must_fail 8 -- "$HOOKS/post-update" --no-restart
grep -qE "cam: (KEY MISSING|KEY CHANGED|VERIFY FAILED)" "$T/must_fail.out" || kh_fail "TPM failure not named"
grep -q "recording: same key" "$T/must_fail.out" || kh_fail "token identity not proven beside the TPM failure"
kh_swtpm_start "$KH_SWTPM_DIR"

kh_log "factory-reset evicts the persistent handle and leaves nothing"
"$HOOKS/factory-reset" --yes >"$T/reset.out" 2>&1 || { cat "$T/reset.out"; kh_fail "factory-reset failed"; }
cat "$T/reset.out"
if tpm2_getcap handles-persistent | grep -qi "$handle"; then kh_fail "$handle still persistent"; fi
[ -z "$(find "$KEYHOLD_STATE_DIR" -name '*.tss')" ] || kh_fail "TPM key files left"
out=$("$KEYHOLD" status --json)
[ "$(printf '%s' "$out" | tr -d ' \n\t')" = "[]" ] || kh_fail "status still lists: $out"
echo PASS
