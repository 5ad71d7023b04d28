#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# status states and exit codes: ok/renew-due 0; expiring, hosts-changed,
# no-cert, clock-suspect 5; expired, key-missing, mismatch,
# token-unreachable 8. Time moved with libfaketime.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cli_lib.inc"

kh_cli_env
st() { # st NAME WANT-STATE WANT-EXIT [faketime spec]
    local rc=0 out
    if [ -n "${4:-}" ]; then
        out=$(faketime -f "$4" "$KEYHOLD" status "$1" --json 2>"$T/st.err") || rc=$?
    else
        out=$("$KEYHOLD" status "$1" --json 2>"$T/st.err") || rc=$?
    fi
    [ "$(jq -r '.[0].state' <<<"$out")" = "$2" ] || { echo "$out"; cat "$T/st.err"; kh_fail "$1: want $2"; }
    [ "$rc" = "$3" ] || kh_fail "$1 ($2): exit $rc, want $3"
    kh_log "$1: $2 (exit $rc)${4:+ at $4}"
}

kh_cli_provision nocert nocert.example.com
st nocert no-cert 5

kh_cli_provision rec cam1.example.com
kh_cli_sign rec "$T/rec.pem" "DNS:cam1.example.com" 30
"$KEYHOLD" install rec "$T/rec.pem" --ca "$T/ca/ca.pem" >/dev/null
st rec ok 0
st rec renew-due 0 "+22d"
st rec expiring 5 "+26d"
st rec expired 8 "+31d"
st rec clock-suspect 5 "@2020-01-01 00:00:00"
jq -e '.[0].days_left == 29 or .[0].days_left == 30' <("$KEYHOLD" status rec --json) >/dev/null \
    || kh_fail "days_left"

kh_cli_identity hosts hosts.example.com
"$KEYHOLD" set-hosts hosts --host hosts.example.com --san dns:new.example.com >/dev/null
st hosts hosts-changed 5
"$KEYHOLD" csr hosts -o "$T/hosts.csr"
openssl req -in "$T/hosts.csr" -noout -text | kh_has "DNS:new.example.com" || kh_fail "csr lacks new host"
kh_cli_sign hosts "$T/h2.pem" "DNS:hosts.example.com,DNS:new.example.com"
"$KEYHOLD" install hosts "$T/h2.pem" >/dev/null
st hosts ok 0

kh_cli_identity mism mism.example.com
cp "$T/rec.pem" "$KEYHOLD_STATE_DIR/mism/gen-1/cert.pem"
st mism mismatch 8

kh_cli_identity gone gone.example.com
id=$(sed -n 's/^key-id = //p' "$KEYHOLD_CONF_DIR/gone.conf")
for t in privkey pubkey cert; do
    pkcs11-tool --module "$SOFTHSM_MODULE" --token-label app --login --pin "$KH_CLI_PIN" \
        --delete-object --type "$t" --id "$id" >/dev/null 2>&1 || true
done
st gone key-missing 8

kh_cli_identity unreach unreach.example.com
sed -i 's/^token = app/token = absent/' "$KEYHOLD_CONF_DIR/unreach.conf"
st unreach token-unreachable 8

kh_log "overall exit is the worst state"
rc=0; "$KEYHOLD" status >/dev/null 2>&1 || rc=$?
[ "$rc" = 8 ] || kh_fail "overall exit $rc"
"$KEYHOLD" status --json >"$T/all.json" 2>/dev/null || true
jq -e 'length == 6' "$T/all.json" >/dev/null || kh_fail "6 identities"
kh_log "no identities: [] and exit 0"
KEYHOLD_CONF_DIR=$T/empty "$KEYHOLD" status --json | jq -e '. == []' >/dev/null || kh_fail "empty list"
kh_log "ok"
