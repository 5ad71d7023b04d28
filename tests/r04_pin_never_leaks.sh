#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Scenario 4: with debugging on, the PIN appears nowhere: not in traces on
# stderr/stdout, not in error messages (also for a URI carrying pin-value,
# a wrong PIN, an ambiguous URI), not in a key reference made from a URI
# with a PIN, not in the text dump of a key. Provider side; the CLI's
# --debug, argv, environ and status are covered when the CLI is built.
# timeout: 120
. "$(dirname "$0")/lib.sh"
kh_need "$BUILD/keyhold.so" "$BUILD/tests/kh-keyref"

PIN=4711khSECRETpin
kh_softhsm_token appl "$PIN"
kh_p11tool_keygen appl srv 01 EC:prime256v1 "$PIN"
kh_p11tool_keygen appl dup 02 EC:prime256v1 "$PIN"
kh_p11tool_keygen appl dup 03 EC:prime256v1 "$PIN"
(umask 077; printf 'x%s' "$PIN" >"$T/wrong.pin")
echo "data to sign" >"$T/data"
export KEYHOLD_DEBUG=1
out=$T/all.out
: >"$out"
run() { "$@" >>"$out" 2>&1 || true; }
sign() { openssl pkeyutl -sign -inkey "$1" -in "$T/data" -rawin -digest sha256 -out "$T/sig" "${KH_PROV[@]}"; }

run sign "pkcs11:token=appl;object=srv;type=private?pin-source=file:$T/appl.pin"
[ -s "$T/sig" ] || kh_fail "signing with a PIN file failed"
run sign "pkcs11:token=appl;object=srv;type=private?pin-value=$PIN"
run sign "pkcs11:token=appl;object=srv;type=private?pin-source=file:$T/wrong.pin"
run sign "pkcs11:token=appl;object=dup;type=private?pin-value=$PIN"
run sign "pkcs11:token=nosuch;object=srv;type=private?pin-value=$PIN"
run sign "pkcs11:token=appl;object=srv;type=private?pin-value=$PIN&pin-source=file:$T/appl.pin"
"$BUILD/tests/kh-keyref" "pkcs11:token=appl;object=srv;type=private?pin-value=$PIN" >"$T/key.pem" 2>>"$out" || true
cat "$T/key.pem" >>"$out"
"$BUILD/tests/kh-keyref" -r "$T/key.pem" >>"$out" 2>&1 || true
cnf=$(kh_openssl_cnf last)
OPENSSL_CONF=$cnf run openssl pkey -in "$T/key.pem" -text -noout
OPENSSL_CONF=$cnf run openssl storeutl -text "pkcs11:token=appl;object=srv?pin-value=$PIN"

grep -q . "$out" || kh_fail "no output at all: the debug traces are missing"
grep -qi "keyhold" "$out" || kh_fail "no keyhold trace or message in the output"
# openssl's own tools echo a failing URI argument back ("Could not read
# private key from URI"); that is the caller's argv, not keyhold's output.
if grep -v -E '^(Could not (read|open|find)|Error opening|Unable to load)' "$out" | grep -n -- "$PIN"; then
    kh_fail "the PIN appears in the output above"
fi
kh_no_secrets "$T/key.pem" "$PIN" "pin-value"
kh_log "$(wc -l <"$out") lines of traces, errors, references and dumps: no PIN"
kh_log "scenario 4 (provider part) ok"
