#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Concurrency: one ECDSA key shared by 8 threads, 50 signatures each, every
# signature verified by the default provider; with keyhold loaded before
# and after default, and with a P-384 key of a second token.
. "$(dirname "$0")/lib.sh"
kh_need "$BUILD/keyhold.so" "$BUILD/tests/kh-threadsign"
TS=$BUILD/tests/kh-threadsign

kh_softhsm_token tok
kh_softhsm_token second
kh_p11tool_keygen tok ec256 01 EC:prime256v1
kh_p11tool_keygen second ec384 02 EC:secp384r1

for order in first last; do
    kh_log "8 threads x 50 ECDSA P-256 signatures, keyhold $order"
    "$TS" -k "$(kh_p11_uri tok ec256)" -t 8 -n 50 -L $order -P "$BUILD" \
        || kh_fail "threaded signing failed (keyhold $order)"
done
kh_log "a P-384 key of a second token, 4 threads x 40 SHA-384 signatures"
"$TS" -k "$(kh_p11_uri second ec384)" -t 4 -n 40 -d sha384 -L last -P "$BUILD" \
    || kh_fail "threaded signing with the second token failed"
kh_log "all threaded ECDSA signatures verified"
