#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# firmware-hooks: field-rekey at an air-gapped site. The identity was
# installed by hand (test CA, no EST configuration, no route to any CA):
# the new key's CSR goes out on "removable media" (twice: the same pending
# key, the old key serving meanwhile), the certificate comes back and is
# installed (twice: the second run is a no-op; a wrong one is refused, 2).
# timeout: 240
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/hooks_lib.inc"

kh_hooks_setup
cert_fp() { openssl x509 -in "$1" -noout -fingerprint -sha256 | sed 's/.*=//; s/://g' | tr A-F a-f; }
key_fp() { openssl x509 -in "$1" -noout -pubkey | openssl pkey -pubin -outform DER | openssl dgst -sha256 -r | cut -d' ' -f1; }

kh_hooks_identity mobile mobile.localhost
M=$KEYHOLD_STATE_DIR/mobile
fpm=$(cert_fp "$M/cert.pem")
mkdir -p "$T/usb"
"$HOOKS/field-rekey" mobile --csr-out "$T/usb/m1.csr" || kh_fail "field-rekey --csr-out failed"
"$HOOKS/field-rekey" mobile --csr-out "$T/usb/m2.csr" || kh_fail "second --csr-out failed"
p1=$(openssl req -in "$T/usb/m1.csr" -noout -pubkey | openssl dgst -sha256 -r)
p2=$(openssl req -in "$T/usb/m2.csr" -noout -pubkey | openssl dgst -sha256 -r)
[ "$p1" = "$p2" ] || kh_fail "second --csr-out made another key instead of reusing the pending one"
[ "$(cert_fp "$M/cert.pem")" = "$fpm" ] || kh_fail "--csr-out changed the identity in service"
"$KEYHOLD" verify mobile >/dev/null 2>&1 || kh_fail "old key stopped working while the new one is pending"
openssl req -in "$T/usb/m1.csr" -noout -verify 2>/dev/null || kh_fail "CSR signature does not verify"
kh_ca_sign "$T/ca" "$T/usb/m1.csr" "$T/usb/m.pem" "DNS:mobile.localhost" 7 || kh_fail "CA sign"
"$HOOKS/field-rekey" mobile --install "$T/usb/m.pem" >"$T/gap.out" 2>&1 || { cat "$T/gap.out"; kh_fail "--install failed"; }
cat "$T/gap.out"
fp4=$(cert_fp "$M/cert.pem")
[ "$fp4" = "$(cert_fp "$T/usb/m.pem")" ] || kh_fail "the air-gapped certificate is not in service"
[ "$(key_fp "$M/cert.pem")" != "$(key_fp "$T/mobile.pem")" ] ||
    kh_fail "air-gapped rekey kept the old key"
grep -q "new certificate  sha256:$fp4" "$T/gap.out" || kh_fail "summary lacks the new fingerprint"
"$HOOKS/field-rekey" mobile --install "$T/usb/m.pem" >"$T/gap2.out" 2>&1 || { cat "$T/gap2.out"; kh_fail "second --install failed"; }
grep -q "already installed" "$T/gap2.out" || kh_fail "second --install did not recognise the installed certificate"
kh_must_fail 2 -- "$HOOKS/field-rekey" mobile --install "$T/ca/ca.pem"
[ "$(cert_fp "$M/cert.pem")" = "$fp4" ] || kh_fail "a refused certificate changed the identity"
echo PASS
