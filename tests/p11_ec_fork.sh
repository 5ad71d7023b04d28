#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Fork (SoftHSM with library.reset_on_fork = true, as lib.sh sets it): the
# parent loads the key and signs, forks; children (and their own children)
# and the parent all sign afterwards and every signature verifies. Also the
# cold case, where the first signature happens in the child.
. "$(dirname "$0")/lib.sh"
kh_need "$BUILD/keyhold.so" "$BUILD/tests/kh-forksign"
FS=$BUILD/tests/kh-forksign
kh_softhsm_setup
grep -q "reset_on_fork = true" "$SOFTHSM2_CONF" || kh_fail "reset_on_fork is not set"

kh_softhsm_token tok
kh_p11tool_keygen tok ec256 01 EC:prime256v1
uri=$(kh_p11_uri tok ec256)

kh_log "warm: parent signs, forks 4 children with grandchildren; all sign"
"$FS" -k "$uri" -f 4 -n 20 -g -L last -P "$BUILD" || kh_fail "warm fork failed"
kh_log "cold: fork before the first signature"
"$FS" -k "$uri" -c -f 4 -n 20 -L first -P "$BUILD" || kh_fail "cold fork failed"
kh_log "openssl.cnf loading, 2 children"
OPENSSL_CONF=$(kh_openssl_cnf last) "$FS" -k "$uri" -f 2 -n 10 || kh_fail "fork via openssl.cnf failed"
kh_log "parent and children signed after fork; all verified"
