#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Provisioning an existing identity again is refused (exit 2, nothing
# changed); with --force a new key is made but the old one keeps serving
# until a certificate for the new key is installed, which then switches.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cli_lib.inc"

kh_cli_env
kh_cli_identity rec cam1.example.com
snap=$(kh_cli_snapshot rec)
oldid=$(sed -n 's/^key-id = //p' "$KEYHOLD_CONF_DIR/rec.conf")

kh_must_fail_clean 2 -- "$KEYHOLD" provision rec --token app --host cam1.example.com \
    --pin-file "$T/app.pin"
kh_expect_output "exists"
kh_expect_output "--force"
kh_cli_still_works rec "$snap"

kh_log "--force: new key pending, old one serving"
"$KEYHOLD" provision rec --token app --host cam1.example.com --pin-file "$T/app.pin" \
    --csr-out "$T/new.csr" --force
newpub=$(openssl req -in "$T/new.csr" -noout -pubkey)
[ "$newpub" != "$(openssl x509 -in "$T/rec.pem" -noout -pubkey)" ] || kh_fail "no new key"
"$KEYHOLD" verify rec >/dev/null || kh_fail "old identity broken by --force"
cmp "$T/rec.pem" "$KEYHOLD_STATE_DIR/rec/cert.pem" || kh_fail "served cert changed"
"$KEYHOLD" status rec >"$T/st.txt" || kh_fail "status not ok while pending"
grep -q "pending:" "$T/st.txt" || kh_fail "status does not show the pending key"
"$KEYHOLD" status rec --json | jq -e '.[0].pending_key_uri | startswith("pkcs11:")' >/dev/null \
    || kh_fail "status --json lacks pending_key_uri"
# a CSR now is for the pending key
"$KEYHOLD" csr rec -o "$T/again.csr"
[ "$(openssl req -in "$T/again.csr" -noout -pubkey)" = "$newpub" ] || kh_fail "csr not for the pending key"
# the old cert can still be installed again (same key) without losing the pending one
kh_log "install the new key's certificate"
cp "$T/new.csr" "$T/rec.csr"
kh_cli_sign rec "$T/new.pem" "DNS:cam1.example.com"
"$KEYHOLD" install rec "$T/new.pem"
[ "$(openssl x509 -in "$KEYHOLD_STATE_DIR/rec/cert.pem" -noout -pubkey)" = "$newpub" ] || kh_fail "not switched"
"$KEYHOLD" verify rec >/dev/null || kh_fail "verify with the new key"
jq -e '.pending_key_uri == ""' "$KEYHOLD_STATE_DIR/rec/status.json" >/dev/null || kh_fail "pending not cleared"
# the old key is kept with the previous generation (rollback), not more
pkcs11-tool --module "$SOFTHSM_MODULE" --token-label app --login --pin "$KH_CLI_PIN" \
    --list-objects --type privkey 2>/dev/null | grep -c "Private Key Object" >"$T/n"
[ "$(cat "$T/n")" = 2 ] || kh_fail "expected old + new key, found $(cat "$T/n")"
kh_log "a key in its grace period (retired-keys) survives pruning"
olduri=$(jq -r '.[0].key_uri' <("$KEYHOLD" status rec --json 2>/dev/null || true))
gen1uri=$(sed -n 's/^key-uri = //p' "$KEYHOLD_CONF_DIR/rec.conf")
echo "$(( $(date +%s) + 3600 )) $gen1uri" >"$KEYHOLD_STATE_DIR/rec/retired-keys"
kh_cli_sign rec "$T/graced.pem" "DNS:cam1.example.com"
"$KEYHOLD" install rec "$T/graced.pem" >/dev/null
"$KEYHOLD" install rec "$T/graced.pem" >/dev/null
pkcs11-tool --module "$SOFTHSM_MODULE" --token-label app --login --pin "$KH_CLI_PIN" \
    --list-objects --type privkey 2>/dev/null | grep -c "Private Key Object" >"$T/n"
[ "$(cat "$T/n")" = 2 ] || kh_fail "a key in its grace period was destroyed"
echo "$(( $(date +%s) - 10 )) $gen1uri" >"$KEYHOLD_STATE_DIR/rec/retired-keys"
[ -n "$olduri" ] || kh_fail "no key uri"

kh_log "past the grace period, the next install destroys the old key"
kh_cli_sign rec "$T/new2.pem" "DNS:cam1.example.com"
"$KEYHOLD" install rec "$T/new2.pem"
[ ! -e "$KEYHOLD_STATE_DIR/rec/gen-1" ] || kh_fail "gen-1 kept"
pkcs11-tool --module "$SOFTHSM_MODULE" --token-label app --login --pin "$KH_CLI_PIN" \
    --list-objects --type privkey 2>/dev/null | grep -c "label: *keyhold:rec:" >"$T/n"
[ "$(cat "$T/n")" = 1 ] || kh_fail "old key not destroyed ($(cat "$T/n") keys)"
pkcs11-tool --module "$SOFTHSM_MODULE" --token-label app --login --pin "$KH_CLI_PIN" \
    --list-objects 2>/dev/null | kh_has -i "ID: *$oldid" && kh_fail "old key id still present"
"$KEYHOLD" verify rec >/dev/null || kh_fail "verify"
"$KEYHOLD" audit verify >/dev/null || kh_fail "audit"
kh_log "ok"
