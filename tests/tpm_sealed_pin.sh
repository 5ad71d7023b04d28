#!/bin/bash
# SPDX-License-Identifier: MIT
# PIN sealing: a SoftHSM token's user PIN sealed to the TPM (swtpm) stands
# in for the PIN file everywhere a PIN file is read: the provider's
# pin-source (signing through a pkcs11: URI) and the CLI's --pin-file
# (provision). Bound to a PCR, it unseals while the PCR is unchanged and,
# after the PCR is extended, fails with an error saying why, and the
# token is not asked for a login at all.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cli_lib.inc"
kh_need "$BUILD/keyhold.so" "$BUILD/keyhold-tpm" "$KEYHOLD"
kh_swtpm_start
kh_cli_env                        # token "app", PIN file $T/app.pin
KT=$BUILD/keyhold-tpm

"$KT" seal --in "$T/app.pin" --out "$T/pin.sealed"
"$KT" seal --in "$T/app.pin" --out "$T/pin16.sealed" --pcrs 16
grep -q "BEGIN TSS2 PRIVATE KEY" "$T/pin.sealed" || kh_fail "sealed file format"
! grep -qF "$KH_CLI_PIN" "$T/pin.sealed" || kh_fail "the PIN is readable in the sealed file"
[ "$("$KT" unseal "$T/pin.sealed")" = "$KH_CLI_PIN" ] || kh_fail "unseal gives another PIN"

# The CLI: provision with the sealed PIN as the identity's pin-file.
"$KEYHOLD" provision rec --token pkcs11:token=app --alg ec-p256 --host localhost \
    --pin-file "$T/pin.sealed" --csr-out "$T/rec.csr" >/dev/null \
    || kh_fail "provision with a sealed PIN failed"
openssl req -in "$T/rec.csr" -verify -noout 2>&1 | kh_grepq "verify OK" || kh_fail "CSR signature"
uri=$(sed -n 's/^key-uri = //p' "$KEYHOLD_CONF_DIR/rec.conf")
kh_log "CLI provisioned with the sealed PIN: $uri"

# The provider: pin-source naming the sealed file, plain and PCR-bound.
echo "message" >"$T/msg"
for f in pin.sealed pin16.sealed; do
    openssl dgst -sha256 "${KH_PROV[@]}" -sign "$uri?pin-source=file:$T/$f" \
        -out "$T/msg.sig" "$T/msg" || kh_fail "signing with the PIN from $f"
done
kh_log "provider signed with the PIN unsealed from the TPM (plain and PCR-bound)"

# Must fail: the PCR moved; the error says so.
tpm2_pcrextend 16:sha256=0000000000000000000000000000000000000000000000000000000000000001
kh_must_fail_clean "$KT" unseal "$T/pin16.sealed"
kh_expect_output "PCR values changed"
kh_must_fail_clean openssl dgst -sha256 "${KH_PROV[@]}" -sign "$uri?pin-source=file:$T/pin16.sealed" \
    -out "$T/x.sig" "$T/msg"
kh_expect_output "PCR values changed"
# The plain sealed PIN still works.
openssl dgst -sha256 "${KH_PROV[@]}" -sign "$uri?pin-source=file:$T/pin.sealed" \
    -out "$T/msg.sig" "$T/msg" || kh_fail "plain sealed PIN after the PCR change"
kh_log "PCR-bound PIN refused after the PCR changed, with the reason"
