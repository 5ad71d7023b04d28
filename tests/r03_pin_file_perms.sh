#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Scenario 3: a PIN file readable by others, writable by its group or owned
# by someone else is refused before its PIN is used; the message names the
# file and the fix (the CLI exits 7). 0600 and 0640 owned by root are
# accepted.
# timeout: 120
. "$(dirname "$0")/lib.sh"
kh_need "$BUILD/keyhold.so" "$KH_SHIM"

kh_r_token_key_cert
kh_shim_setup
echo "data to sign" >"$T/data"
pinf=$T/pins/appl.pin
mkdir -p "$T/pins"
chmod 0755 "$T/pins"
printf '1234' >"$pinf"
sign() {
    openssl pkeyutl -sign -inkey "pkcs11:token=appl;object=srv;type=private?pin-source=file:$pinf&module-path=$KH_SHIM" \
        -in "$T/data" -rawin -digest sha256 -out "$T/sig" "${KH_PROV[@]}"
}
refused() {
    kh_shim_log_reset
    kh_must_fail_clean sign
    kh_expect_output "$pinf"
    grep -qiE 'chmod|chown|0640|0600|permission|owner' "$T/must_fail.out" \
        || kh_fail "the message does not say how to fix the file ($1)"
    [ "$(kh_shim_count C_Login)" = 0 ] || kh_fail "the PIN was used although the file is $1"
    kh_log "$1: refused, file and fix named, no login"
}

chmod 0644 "$pinf"; refused "world-readable (0644)"
chmod 0604 "$pinf"; refused "world-readable (0604)"
chmod 0602 "$pinf"; refused "world-writable (0602)"
chmod 0660 "$pinf"; refused "group-writable (0660)"
chmod 0600 "$pinf"; chown nobody "$pinf"; refused "owned by nobody"
chown root "$pinf"

for mode in 0600 0640 0400; do
    chmod "$mode" "$pinf"
    sign || kh_fail "a $mode root-owned PIN file was refused"
done
kh_log "0600, 0640, 0400 owned by root: accepted"
# The CLI refuses such a file with exit 7 and the fix, before any login.
if [ -x "$KEYHOLD" ]; then
    export KEYHOLD_CONF_DIR=$T/conf KEYHOLD_STATE_DIR=$T/state
    "$KEYHOLD" provision rec --token appl --module "$KH_SHIM" --alg ec-p256 --host cam1.example.com \
        --pin-file "$pinf" >/dev/null 2>&1 || kh_fail "provision with a 0400 PIN file"
    chmod 0644 "$pinf"
    kh_shim_log_reset
    kh_must_fail_clean 7 -- "$KEYHOLD" csr rec -o "$T/x.csr"
    kh_expect_output "$pinf"
    grep -qiE 'chmod|chown' "$T/must_fail.out" || kh_fail "CLI: no fix named"
    [ "$(kh_shim_count C_Login)" = 0 ] || kh_fail "CLI: the PIN was used from a world-readable file"
    chmod 0640 "$pinf"
    "$KEYHOLD" csr rec -o "$T/x.csr" >/dev/null 2>&1 || kh_fail "CLI: 0640 PIN file refused"
    kh_log "CLI: world-readable PIN file -> exit 7 with the fix; 0640 accepted"
fi
kh_log "scenario 3 ok"
