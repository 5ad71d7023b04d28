#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Truncated, empty, garbled certificates and a CSR given as certificate are
# refused (exit 2) with a message; DER is accepted as well as PEM.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cli_lib.inc"

kh_cli_env
kh_cli_identity rec cam1.example.com
snap=$(kh_cli_snapshot rec)
kh_cli_sign rec "$T/new.pem" "DNS:cam1.example.com"

head -c 300 "$T/new.pem" >"$T/trunc.pem"
head -n 5 "$T/new.pem" >"$T/trunc2.pem"; echo "-----END CERTIFICATE-----" >>"$T/trunc2.pem"
openssl x509 -in "$T/new.pem" -outform DER -out "$T/new.der"
head -c 200 "$T/new.der" >"$T/trunc.der"
: >"$T/empty.pem"
head -c 700 /dev/urandom >"$T/garbage.bin"
for f in trunc.pem trunc2.pem trunc.der empty.pem garbage.bin rec.csr; do
    kh_must_fail_clean 2 -- "$KEYHOLD" install rec "$T/$f" --ca "$T/ca/ca.pem"
    grep -qiE "truncat|empty|not a certificate|no certificate|damaged" "$T/must_fail.out" \
        || kh_fail "$f: the message does not say what is wrong"
    kh_cli_still_works rec "$snap"
done
kh_must_fail_clean 2 -- "$KEYHOLD" install rec "$T/nonexistent.pem"
kh_must_fail_clean 2 -- "$KEYHOLD" install rec "$T/new.pem" --ca "$T/trunc.pem"
kh_cli_still_works rec "$snap"

kh_log "DER accepted"
"$KEYHOLD" install rec "$T/new.der" || kh_fail "DER certificate refused"
[ "$(readlink "$KEYHOLD_STATE_DIR/rec/current")" = gen-2 ] || kh_fail "no gen-2"
cmp <(openssl x509 -in "$KEYHOLD_STATE_DIR/rec/cert.pem" -outform DER) "$T/new.der" \
    || kh_fail "installed cert differs"
"$KEYHOLD" verify rec >/dev/null || kh_fail "verify after DER install"
kh_log "ok"
