#!/bin/bash
# SPDX-License-Identifier: MIT
# Reload hooks after a switch: a failing hook rolls the identity back to the
# previous certificate and key, runs the hooks again, and reports (exit 8);
# a rekey whose hook fails keeps the old key in service and the new one
# pending for the next try. An expired certificate can no longer
# authenticate itself: renew enrols again with the bootstrap password.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/est_lib.sh"

kh_est_cam
d=$KH_ESTD_DIR
cat >"$T/hook.sh" <<HOOK
#!/bin/sh
readlink "$KEYHOLD_STATE_DIR/cam/current" >>"$T/hook.log"
if [ -e "$T/hook.fail" ]; then rm -f "$T/hook.fail"; exit 3; fi
exit 0
HOOK
chmod +x "$T/hook.sh"
echo "reload = $T/hook.sh" >>"$KEYHOLD_CONF_DIR/cam.conf"
echo "rekey-grace = 0" >>"$KEYHOLD_CONF_DIR/cam.conf"   # destroy the old key at once
pub() { openssl x509 -in "$KEYHOLD_STATE_DIR/cam/cert.pem" -noout -pubkey; }
p11keys() {
    pkcs11-tool --module "$SOFTHSM_MODULE" --token-label app --login --pin 1111 \
        --list-objects --type privkey 2>/dev/null | grep -c "label: *keyhold:cam:" || true
}

kh_log "renew, hook passes"
"$KEYHOLD" renew cam --force >/dev/null || kh_fail "renew"
good=$(readlink "$KEYHOLD_STATE_DIR/cam/current")
[ "$(tail -1 "$T/hook.log")" = "$good" ] || kh_fail "hook did not see the new generation"
fp=$(kh_est_cert_fp cam)

kh_log "renew, hook fails: rollback, hooks run again, exit 8"
touch "$T/hook.fail"
kh_must_fail_clean 8 -- "$KEYHOLD" renew cam --force
kh_expect_output "rolled back"
[ "$(readlink "$KEYHOLD_STATE_DIR/cam/current")" = "$good" ] || kh_fail "not rolled back"
[ "$(kh_est_cert_fp cam)" = "$fp" ] || kh_fail "certificate not rolled back"
tail -2 "$T/hook.log" >"$T/last2"
[ "$(sed -n 2p "$T/last2")" = "$good" ] || kh_fail "hooks did not run again after the rollback"
[ "$(sed -n 1p "$T/last2")" != "$good" ] || kh_fail "the failing hook did not see the new generation"
kh_est_works cam

kh_log "rekey, hook fails: old key stays in service, new key pending"
pub0=$(pub)
touch "$T/hook.fail"
kh_must_fail_clean 8 -- "$KEYHOLD" rekey cam
[ "$(pub)" = "$pub0" ] || kh_fail "rekey not rolled back"
kh_est_works cam
[ "$(p11keys)" = 2 ] || kh_fail "expected old + pending key, got $(p11keys)"
kh_log "rekey again: reuses the pending key, then the old key goes"
"$KEYHOLD" rekey cam 2>"$T/rk.err" >/dev/null || { cat "$T/rk.err"; kh_fail "rekey"; }
grep -q "reusing the new key" "$T/rk.err" || kh_fail "pending key not reused"
[ "$(pub)" != "$pub0" ] || kh_fail "no new key"
[ "$(p11keys)" = 1 ] || kh_fail "old key not destroyed"
kh_est_works cam

kh_log "expired certificate: renew enrols again with the bootstrap password"
kh_estd_stop
kh_estd_start --days 90
before=$(grep -c "simpleenroll -> 200 .* to user dev1" "$d/estd.log" || true)
faketime -f "+40d" "$KEYHOLD" renew cam >"$T/exp.out" 2>&1 || { cat "$T/exp.out"; kh_fail "renew of an expired cert"; }
cat "$T/exp.out"
grep -q "expired" "$T/exp.out" || kh_fail "no word about the expired certificate"
[ "$(grep -c "simpleenroll -> 200 .* to user dev1" "$d/estd.log")" -gt "$before" ] \
    || kh_fail "not re-enrolled with the bootstrap credentials"
faketime -f "+40d" "$KEYHOLD" verify cam >/dev/null || kh_fail "identity does not work after re-enrolment"
kh_log "ok"
