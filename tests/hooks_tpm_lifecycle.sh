#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# firmware-hooks on an appliance with a TPM (swtpm, no resource manager) and
# a SoftHSM token: a TPM identity with a persistent key handle beside a
# token identity. pre-update -> new rootfs -> post-update proves both; after
# a TPM reset (swtpm restarted on its state) it still does; with the TPM
# gone post-update fails loudly for the TPM identity only. An air-gapped
# field-rekey gives it a new persistent key. factory-reset then evicts the
# persistent handles and leaves nothing: no keyhold handle in
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
tpm2_getcap handles-persistent | kh_grepq -i "$handle" || kh_fail "$handle not persistent in the TPM"
"$KEYHOLD" verify cam >/dev/null 2>&1 || kh_fail "TPM identity does not verify"

kh_log "pre-update, new rootfs, post-update"
"$HOOKS/pre-update" || kh_fail "pre-update failed"
grep '^identity cam ' "$KEYHOLD_STATE_DIR/update-manifest" | kh_grepq ' key=[0-9a-f]\{64\} ' ||
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

kh_log "air-gapped field-rekey of the TPM identity: a new persistent key"
"$HOOKS/field-rekey" cam --csr-out "$T/cam-new.csr" >"$T/rk1.out" 2>&1 || { cat "$T/rk1.out"; kh_fail "field-rekey cam --csr-out failed"; }
kh_ca_sign "$T/ca" "$T/cam-new.csr" "$T/cam-new.pem" "DNS:cam.localhost" 7 || kh_fail "CA sign"
"$HOOKS/field-rekey" cam --install "$T/cam-new.pem" >"$T/rk2.out" 2>&1 || { cat "$T/rk2.out"; kh_fail "field-rekey cam --install failed"; }
cat "$T/rk2.out"
new_uri=$("$KEYHOLD" status cam --json | sed -n 's/.*"key_uri": "\([^"]*\)".*/\1/p')
"$KEYHOLD" status cam --json | kh_grepq "\"key_uri\": \"tpm2:handle=" || kh_fail "rekeyed TPM key is not persistent"
"$KEYHOLD" verify cam >/dev/null 2>&1 || kh_fail "rekeyed TPM identity does not verify"
[ "$(openssl x509 -in "$T/cam-new.pem" -noout -pubkey)" != "$(openssl x509 -in "$T/cam.pem" -noout -pubkey)" ] ||
    kh_fail "TPM rekey kept the old key"
kh_log "cam now at ${new_uri:-?}; persistent: $(tpm2_getcap handles-persistent | tr '\n' ' ')"

kh_log "factory-reset evicts the persistent handles and leaves nothing"
"$HOOKS/factory-reset" --yes >"$T/reset.out" 2>&1 || { cat "$T/reset.out"; kh_fail "factory-reset failed"; }
cat "$T/reset.out"
if tpm2_getcap handles-persistent | kh_grepq -i '0x810000[2-3]'; then
    tpm2_getcap handles-persistent
    kh_fail "a keyhold persistent handle is left"
fi
[ -z "$(find "$KEYHOLD_STATE_DIR" -name '*.tss')" ] || kh_fail "TPM key files left"
out=$("$KEYHOLD" status --json)
[ "$(printf '%s' "$out" | tr -d ' \n\t')" = "[]" ] || kh_fail "status still lists: $out"
echo PASS
