#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Concurrency with RSA: one RSA-2048 key shared by 8 threads signing with
# PSS, then with PKCS#1 v1.5; every signature verified by the default
# provider.
. "$(dirname "$0")/lib.sh"
kh_need "$BUILD/keyhold.so" "$BUILD/tests/kh-threadsign"
TS=$BUILD/tests/kh-threadsign

kh_softhsm_token tok
kh_p11tool_keygen tok rsa2048 01 rsa:2048
uri=$(kh_p11_uri tok rsa2048)

# One process after the other: SoftHSM loses sight of a token while
# another process logs in to it, which is not what this test is about.
kh_log "8 threads x 25 PSS signatures, keyhold loaded first"
"$TS" -k "$uri" -t 8 -n 25 -p pss -L first -P "$BUILD" || kh_fail "PSS run failed"
kh_log "8 threads x 25 PKCS#1 v1.5 SHA-384 signatures, keyhold loaded last"
"$TS" -k "$uri" -t 8 -n 25 -p pkcs1 -d sha384 -L last -P "$BUILD" || kh_fail "PKCS#1 run failed"
kh_log "all threaded RSA signatures verified"
