#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Scenario 4: with debugging on, the PIN appears nowhere: not in traces on
# stderr/stdout, not in error messages (also for a URI carrying pin-value,
# a wrong PIN, an ambiguous URI), not in a key reference made from a URI
# with a PIN, not in the text dump of a key; and for the CLI with --debug,
# not in its output, its argv or environment while it runs, or any state
# or config file.
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
# The CLI with --debug: provision, CSR, install, status, verify. The PIN
# is in no output, no state file, and -- caught while the token holds the
# CSR signature -- not in the process's argv or environment.
if [ -x "$KEYHOLD" ]; then
    kh_need "$KH_SHIM"
    kh_shim_setup
    export KEYHOLD_CONF_DIR=$T/conf KEYHOLD_STATE_DIR=$T/state
    kh_test_ca "$T/ca"
    cli=$T/cli.out
    : >"$cli"
    "$KEYHOLD" --debug provision rec --token appl --module "$KH_SHIM" --alg ec-p256 --host cam1.example.com \
        --pin-file "$T/appl.pin" --csr-out "$T/rec.csr" >>"$cli" 2>&1 || kh_fail "provision"
    kh_ca_sign "$T/ca" "$T/rec.csr" "$T/rec.pem" DNS:cam1.example.com
    "$KEYHOLD" --debug install rec "$T/rec.pem" --ca "$T/ca/ca.pem" >>"$cli" 2>&1 || kh_fail "install"
    "$KEYHOLD" --debug status --json >>"$cli" 2>&1 || true
    "$KEYHOLD" --debug verify rec >>"$cli" 2>&1 || kh_fail "verify"
    kh_shim_set 'block C_Sign at=1 max=60'
    "$KEYHOLD" --debug csr rec -o "$T/again.csr" >>"$cli" 2>&1 &
    csr=$!
    kh_shim_wait 'fn=C_Sign .* blocked' 300
    tr '\0' '\n' <"/proc/$csr/cmdline" >"$T/argv"
    tr '\0' '\n' <"/proc/$csr/environ" >"$T/environ"
    kh_shim_set
    wait "$csr" || kh_fail "csr under the shim"
    for f in "$cli" "$T/argv" "$T/environ"; do kh_no_secrets "$f" "$PIN"; done
    grep -q -- "--debug" "$T/argv" || kh_fail "did not catch the running CLI's argv"
    find "$KEYHOLD_STATE_DIR" "$KEYHOLD_CONF_DIR" -type f -print0 | xargs -0 grep -l -- "$PIN" && kh_fail "the PIN is in a state or config file"
    grep -qi "debug\|keyhold" "$cli" || kh_fail "no debug output from the CLI"
    kh_log "CLI --debug: PIN in no output, argv, environment, state or config file"
fi
kh_log "scenario 4 ok"
