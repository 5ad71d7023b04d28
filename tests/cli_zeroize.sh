#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# zeroize destroys the identity's key and certificate objects in the token,
# its state and its config; asks first (no terminal and no --yes: refuses,
# nothing changed); other identities and the audit log stay; --all with
# nothing left succeeds; a half-removed identity is finished off.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cli_lib.inc"

kh_cli_env
kh_cli_identity rec cam1.example.com
kh_cli_identity mgmt mgmt.example.com
snap=$(kh_cli_snapshot mgmt)
recid=$(sed -n 's/^key-id = //p' "$KEYHOLD_CONF_DIR/rec.conf")
objs() {
    pkcs11-tool --module "$SOFTHSM_MODULE" --token-label app --login --pin "$KH_CLI_PIN" \
        --list-objects 2>/dev/null
}
objs | kh_has -i "$recid" || kh_fail "rec objects missing before zeroize"

kh_must_fail_clean 1 -- "$KEYHOLD" zeroize rec </dev/null
kh_expect_output "--yes"
"$KEYHOLD" verify rec >/dev/null || kh_fail "unconfirmed zeroize changed rec"

"$KEYHOLD" zeroize rec --yes
objs | kh_has -i "ID: *$recid" && kh_fail "rec objects left in the token"
objs | kh_has "keyhold:rec:" && kh_fail "rec labels left in the token"
[ ! -e "$KEYHOLD_STATE_DIR/rec" ] || kh_fail "rec state left"
[ ! -e "$KEYHOLD_CONF_DIR/rec.conf" ] || kh_fail "rec config left"
kh_must_fail_clean 2 -- "$KEYHOLD" status rec
kh_cli_still_works mgmt "$snap"
"$KEYHOLD" audit verify >/dev/null || kh_fail "audit log after zeroize"
jq -e -s 'map(select(.op=="zeroize" and .identity=="rec" and .outcome=="ok")) | length == 1' \
    "$KEYHOLD_STATE_DIR/audit.log" >/dev/null || kh_fail "zeroize audit record"

kh_log "half-removed identity (config gone, state and key left)"
kh_cli_identity half half.example.com
halfid=$(sed -n 's/^key-id = //p' "$KEYHOLD_CONF_DIR/half.conf")
rm "$KEYHOLD_CONF_DIR/half.conf"
KEYHOLD_PIN_FILE=$T/app.pin "$KEYHOLD" zeroize --all --yes
objs | kh_has -i "ID: *$halfid" && kh_fail "half's key left"
objs | kh_has "Private Key Object" && kh_fail "keys left after --all"
[ -z "$(ls "$KEYHOLD_CONF_DIR")" ] || kh_fail "configs left"
ls "$KEYHOLD_STATE_DIR" | kh_has -vE '^(audit\.log|audit\.head|reports\.jsonl|tokens\.jsonl)$' \
    && kh_fail "state left: $(ls "$KEYHOLD_STATE_DIR")"
kh_log "--all again with nothing left: exit 0"
"$KEYHOLD" zeroize --all --yes || kh_fail "second --all"
"$KEYHOLD" status --json | jq -e '. == []' >/dev/null || kh_fail "status not empty"
"$KEYHOLD" audit verify >/dev/null || kh_fail "audit"
kh_log "ok"
