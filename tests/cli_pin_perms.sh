#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# PIN file permissions: world-readable, group-writable or world-writable
# files are refused before they are read (exit 7), naming the file and the
# chmod fix; no PIN source at all fails at once (exit 6), never waits.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cli_lib.inc"

kh_cli_env
kh_cli_identity rec cam1.example.com
snap=$(kh_cli_snapshot rec)
for mode in 0644 0660 0606 0666 0604; do
    chmod "$mode" "$T/app.pin"
    kh_must_fail_clean 7 -- "$KEYHOLD" verify rec
    kh_expect_output "$T/app.pin"
    kh_expect_output "chmod 0640"
    kh_must_fail_clean 7 -- "$KEYHOLD" provision x --token app --host x.example.com \
        --pin-file "$T/app.pin"
    [ ! -e "$KEYHOLD_CONF_DIR/x.conf" ] || kh_fail "provisioned with a refused PIN file"
done
chmod 0640 "$T/app.pin"
kh_cli_still_works rec "$snap"
chmod 0600 "$T/app.pin"
kh_cli_still_works rec "$snap"
ln -s "$T/app.pin" "$T/link.pin"
sed -i "s|^pin-file = .*|pin-file = $T/link.pin|" "$KEYHOLD_CONF_DIR/rec.conf"
kh_must_fail_clean 7 -- "$KEYHOLD" verify rec
kh_expect_output "symbolic links are refused"
sed -i "s|^pin-file = .*|pin-file = $T/app.pin|" "$KEYHOLD_CONF_DIR/rec.conf"

kh_log "token init refuses a readable SO PIN file"
(umask 022; printf 9999 >"$T/loose.sopin")
kh_must_fail_clean 7 -- "$KEYHOLD" token init --label t2 --pin-file "$T/app.pin" \
    --so-pin-file "$T/loose.sopin"
kh_expect_output "loose.sopin"

kh_log "no PIN source: exit 6 at once"
sed -i '/^pin-file/d' "$KEYHOLD_CONF_DIR/rec.conf"
snap=$(kh_cli_snapshot rec)
rc=0; timeout 20 "$KEYHOLD" verify rec </dev/null >"$T/o" 2>&1 || rc=$?
cat "$T/o"
[ "$rc" = 6 ] || kh_fail "no PIN source: exit $rc"
grep -q "no PIN source" "$T/o" || kh_fail "message"
KEYHOLD_PIN_FILE=$T/app.pin "$KEYHOLD" verify rec >/dev/null || kh_fail "KEYHOLD_PIN_FILE"
mkdir -m 0700 "$T/creds"; cp "$T/app.pin" "$T/creds/keyhold-pin"
CREDENTIALS_DIRECTORY=$T/creds "$KEYHOLD" verify rec >/dev/null || kh_fail "credentials dir"
kh_log "ok"
