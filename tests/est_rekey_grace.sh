#!/bin/bash
# SPDX-License-Identifier: MIT
# Keys replaced by rekeys stay in the token for their grace period
# (rekey-grace), even across a second rekey and a renewal, so servers that
# have not reloaded keep signing; the first renew run after the grace
# destroys them and audits it.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/est_lib.sh"

kh_est_cam
p11keys() {
    pkcs11-tool --module "$SOFTHSM_MODULE" --token-label app --login --pin 1111 \
        --list-objects --type privkey 2>/dev/null | grep -c "label: *keyhold:cam:" || true
}
ref0=$(cat "$KEYHOLD_STATE_DIR/cam/key.pem")

kh_log "two rekeys and a renewal within the hour: every replaced key is kept"
"$KEYHOLD" rekey cam >/dev/null 2>&1 || kh_fail "rekey 1"
"$KEYHOLD" rekey cam >/dev/null 2>&1 || kh_fail "rekey 2"
"$KEYHOLD" renew cam --force >/dev/null 2>&1 || kh_fail "renew"
[ "$(p11keys)" = 3 ] || kh_fail "expected the key in service + 2 retired, got $(p11keys)"
[ "$(wc -l <"$KEYHOLD_STATE_DIR/cam/retired-keys")" = 2 ] || kh_fail "retired-keys should list 2 keys"
kh_log "the first key still signs (a server that never reloaded)"
cnf=$(KH_CNF_EXTRA="pin-source = file:$T/app.pin" kh_openssl_cnf last)
uri0=$(printf '%s\n' "$ref0" | sed -n '2,/END/p' | grep -v -- '-----' | base64 -d 2>/dev/null \
       | grep -ao 'pkcs11:[[:print:]]*' || true)
[ -n "$uri0" ] || kh_fail "cannot read the first key's URI"
echo probe >"$T/probe"
OPENSSL_CONF=$cnf openssl pkeyutl -sign -digest sha256 -rawin -inkey "$uri0" -in "$T/probe" \
    -out "$T/sig" 2>"$T/sig.err" || { cat "$T/sig.err"; kh_fail "retired key cannot sign within the grace"; }
kh_est_works cam

kh_log "after the grace the timer's renew destroys them"
faketime -f "+2h" "$KEYHOLD" renew cam >/dev/null 2>&1 || kh_fail "renew after the grace"
[ "$(p11keys)" = 1 ] || kh_fail "retired keys not destroyed: $(p11keys) keys"
[ ! -e "$KEYHOLD_STATE_DIR/cam/retired-keys" ] || kh_fail "retired-keys not emptied"
[ "$(grep -c '"op":"key-destroy".*replaced by rekey' "$KEYHOLD_STATE_DIR/audit.log")" -ge 2 ] \
    || kh_fail "destruction not audited"
kh_est_works cam
kh_log "ok"
