#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Scenario 9: forks at awkward moments. Between DigestSignUpdate and
# DigestSignFinal: the parent's signature is valid, the child's Final
# either fails cleanly or yields a valid signature (never a crash, hang or
# bad signature). Inside the PIN callback: the child can load and use the
# key while the parent waits in the callback, and no one deadlocks.
# timeout: 120
. "$(dirname "$0")/lib.sh"
kh_need "$BUILD/keyhold.so" "$BUILD/tests/kh-forkmid"

kh_softhsm_token appl
kh_p11tool_keygen appl ec 01 EC:prime256v1
kh_p11tool_keygen appl rsa 02 rsa:2048

for k in ec rsa; do
    "$BUILD/tests/kh-forkmid" -m update -k "$(kh_p11_uri appl $k)" -P "$BUILD" \
        >"$T/update.$k.out" 2>&1 || { cat "$T/update.$k.out"; kh_fail "fork between Update and Final ($k)"; }
    cat "$T/update.$k.out"
    grep -q "parent: ok; child exit [02]$" "$T/update.$k.out" || kh_fail "unexpected outcome ($k)"
done

# The parent's URI has no PIN source, so the PIN comes from the callback.
"$BUILD/tests/kh-forkmid" -m pincb -k "pkcs11:token=appl;object=ec;type=private" \
    -K "$(kh_p11_uri appl ec)" -p "$T/appl.pin" -P "$BUILD" >"$T/pincb.out" 2>&1 \
    || { cat "$T/pincb.out"; kh_fail "fork inside the PIN callback"; }
cat "$T/pincb.out"
grep -q "child in PIN callback: signed" "$T/pincb.out" || kh_fail "the child could not sign"
grep -q "parent: ok; PIN callback child exit 0" "$T/pincb.out" || kh_fail "the parent did not finish"
kh_log "scenario 9 ok"
