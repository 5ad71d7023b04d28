#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# firmware-hooks: the technician's field-rekey, end to end. An identity
# enrolled with keyhold-estd and served by nginx is rekeyed online: new key
# in the token, enrolment, switch, nginx reload, summary with the new
# fingerprint, nginx serving it.
# Interrupted (keyhold killed at the switch)
# the old identity keeps working and a rerun completes; run twice is fine;
# CA down -> exit 4, nothing changed. (The air-gapped form is
# hooks_field_rekey_offline.sh.)
# timeout: 300
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/hooks_lib.inc"

kh_hooks_est_recording
"$KEYHOLD" verify recording >/dev/null 2>&1 || kh_fail "enrolled identity does not verify"
port=$(kh_free_port)
kh_hooks_nginx "$port" recording
export KEYHOLD_ENDPOINTS="recording=127.0.0.1:$port" KEYHOLD_RESTART_CMD="$KH_NGINX_RESTART"
S=$KEYHOLD_STATE_DIR/recording

cert_fp() { openssl x509 -in "$1" -noout -fingerprint -sha256 | sed 's/.*=//; s/://g' | tr A-F a-f; }
key_fp() { openssl x509 -in "$1" -noout -pubkey | openssl pkey -pubin -outform DER | openssl dgst -sha256 -r | cut -d' ' -f1; }

kh_log "online rekey"
fp0=$(cert_fp "$S/cert.pem"); k0=$(key_fp "$S/cert.pem")
"$HOOKS/field-rekey" recording >"$T/rekey1.out" 2>&1 || { cat "$T/rekey1.out"; kh_fail "field-rekey failed"; }
cat "$T/rekey1.out"
fp1=$(cert_fp "$S/cert.pem"); k1=$(key_fp "$S/cert.pem")
[ "$fp1" != "$fp0" ] && [ "$k1" != "$k0" ] || kh_fail "no new key and certificate after field-rekey"
grep -q "new certificate  sha256:$fp1" "$T/rekey1.out" || kh_fail "summary lacks the new certificate fingerprint"
grep -q "serves the identity's certificate" "$T/rekey1.out" || kh_fail "nginx not checked after the rekey"
grep -q "new key          sha256:$k1" "$T/rekey1.out" || kh_fail "summary lacks the new key fingerprint"
grep '"field-rekey"' "$KEYHOLD_STATE_DIR/audit.log" | kh_grepq '"ok"' || kh_fail "no field-rekey audit record"

kh_log "interrupted rekey (keyhold killed at the switch): old identity intact, rerun completes"
rc=0
KEYHOLD_CRASH_AT=switch "$HOOKS/field-rekey" recording >"$T/rekey2.out" 2>&1 || rc=$?
cat "$T/rekey2.out"
[ "$rc" -ne 0 ] || kh_fail "field-rekey succeeded although keyhold was killed"
[ "$(cert_fp "$S/cert.pem")" = "$fp1" ] || kh_fail "interrupted rekey changed the identity"
"$KEYHOLD" verify recording >/dev/null 2>&1 || kh_fail "old identity broken by the interrupted rekey"
"$HOOKS/field-rekey" recording >"$T/rekey3.out" 2>&1 || { cat "$T/rekey3.out"; kh_fail "rerun after interruption failed"; }
fp3=$(cert_fp "$S/cert.pem")
[ "$fp3" != "$fp1" ] || kh_fail "rerun did not rekey"

kh_log "CA down: exit 4, nothing changed"
kill "$KH_ESTD_PID"; wait "$KH_ESTD_PID" 2>/dev/null || true
kh_must_fail 4 -- "$HOOKS/field-rekey" recording
[ "$(cert_fp "$S/cert.pem")" = "$fp3" ] || kh_fail "failed rekey changed the identity"
"$KEYHOLD" verify recording >/dev/null 2>&1 || kh_fail "identity broken by a failed rekey"

echo PASS
