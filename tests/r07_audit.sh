#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Scenario 7: every management operation (token init, provision, enrol,
# renew, rekey, install, zeroize, a failed renewal, a hook's record) writes
# exactly one audit record naming who, what, which identity, which key and
# the outcome, and never a secret; the records are hash-chained, so an
# edited or removed record is found by `keyhold audit verify`; zeroize
# keeps the log.
# timeout: 240
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/est_lib.sh"

kh_estd_setup
kh_estd_start
log=$KEYHOLD_STATE_DIR/audit.log

# Runs one operation and checks it added exactly one record for OP.
#   op_once OP OUTCOME -- command...
op_once() {
    local op=$1 outcome=$2 before after n; shift 3
    before=$(jq -r --arg op "$op" 'select(.op == $op) | .seq' "$log" 2>/dev/null | wc -l)
    "$@" >"$T/op.out" 2>&1 || true
    after=$(jq -r --arg op "$op" 'select(.op == $op) | .seq' "$log" | wc -l)
    n=$(( after - before ))
    [ "$n" = 1 ] || { cat "$T/op.out"; kh_fail "$op wrote $n audit records (want 1)"; }
    jq -e -s --arg op "$op" --arg o "$outcome" \
        '[.[] | select(.op == $op)] | last | (.outcome == $o) and (.who | length > 0) and (.time | length > 0)' \
        "$log" >/dev/null || { tail -n 1 "$log"; kh_fail "$op: record lacks who/time or outcome $outcome"; }
    kh_log "$op: one record, outcome $outcome"
}

kh_est_identity cam cam1.example     # token init + provision
[ "$(jq -r 'select(.op == "token-init") | .outcome' "$log" | wc -l)" = 1 ] || kh_fail "token init: not one record"
[ "$(jq -r 'select(.op == "provision") | .identity' "$log")" = cam ] || kh_fail "provision: no record naming the identity"
keyid=$(sed -n 's/^key-id = //p' "$KEYHOLD_CONF_DIR/cam.conf")
jq -e --arg k "$keyid" 'select(.op == "provision") | .key_id == $k' "$log" >/dev/null \
    || kh_fail "provision: the record does not name the key id"
op_once enroll ok -- kh_est_enroll cam
op_once renew ok -- "$KEYHOLD" renew cam --force
op_once rekey ok -- "$KEYHOLD" rekey cam
"$KEYHOLD" csr cam -o "$T/cam.csr" >/dev/null
openssl x509 -req -in "$T/cam.csr" -CA "$KH_ESTD_DIR/ca.pem" -CAkey "$KH_ESTD_CA_KEY" "${KH_PROV[@]}" \
    -CAcreateserial -days 5 -extfile <(printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:cam1.example\n') \
    -out "$T/manual.pem" 2>/dev/null || kh_fail "manual signing"
op_once install ok -- "$KEYHOLD" install cam "$T/manual.pem" --no-reload
kh_estd_stop
op_once renew failed -- "$KEYHOLD" renew cam --force
op_once factory-reset ok -- "$KEYHOLD" audit record --op factory-reset --outcome ok --detail "test"
op_once zeroize ok -- "$KEYHOLD" zeroize cam --yes
[ -s "$log" ] || kh_fail "zeroize removed the audit log"

# No secrets: PINs, the EST password, key material.
# (The PINs are short digit strings that also occur inside the records'
# hex hashes, so they are matched as whole words.)
kh_no_secrets "$log" secret-dev1 "BEGIN "
if grep -nwE '1111|2222' "$log"; then kh_fail "a PIN is in the audit log"; fi
"$KEYHOLD" audit verify >"$T/verify.out" 2>&1 || { cat "$T/verify.out"; kh_fail "audit verify fails on an intact log"; }
kh_log "$(wc -l <"$log") records, no secret, chain verifies"

# An edited record is found, by its number.
cp "$log" "$T/audit.orig"
n=$(wc -l <"$log")
mid=$(( n / 2 ))
sed -i "${mid}s/\"outcome\":\"ok\"/\"outcome\":\"failed\"/; ${mid}s/\"outcome\":\"failed\"\\(.*\\)\"outcome\":\"failed\"/\"outcome\":\"ok\"\\1/" "$log"
if cmp -s "$log" "$T/audit.orig"; then
    sed -i "${mid}s/\"who\":\"/\"who\":\"x/" "$log"
fi
kh_must_fail 2 -- "$KEYHOLD" audit verify
kh_expect_output "$mid"
# A removed record is found.
cp "$T/audit.orig" "$log"
sed -i "${mid}d" "$log"
kh_must_fail 2 -- "$KEYHOLD" audit verify
# A reordered log is found.
cp "$T/audit.orig" "$log"
{ sed -n "$((mid + 1))p" "$T/audit.orig"; sed -n "${mid}p" "$T/audit.orig"; } >"$T/swap"
{ head -n $((mid - 1)) "$T/audit.orig"; cat "$T/swap"; tail -n +$((mid + 2)) "$T/audit.orig"; } >"$log"
kh_must_fail 2 -- "$KEYHOLD" audit verify
cp "$T/audit.orig" "$log"
"$KEYHOLD" audit verify >/dev/null || kh_fail "the restored log does not verify"
kh_log "edited, removed and reordered records are detected"
kh_log "scenario 7 ok"
