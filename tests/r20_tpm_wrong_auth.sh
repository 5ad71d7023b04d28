#!/bin/bash
# SPDX-License-Identifier: MIT
# RELIABILITY 20: a wrong key auth value costs exactly one TPM attempt per
# process and gives one clear error; it is never retried, so the
# dictionary-attack counter is not exhausted (swtpm allows 3). A server
# whose key auth is wrong fails every handshake cleanly but spends one try
# in all; the right auth value then works.
. "$(dirname "$0")/lib.sh"
kh_need "$BUILD/keyhold.so" "$BUILD/keyhold-tpm" "$KEYHOLD"
kh_swtpm_start
kh_test_ca "$T/ca"
KT=$BUILD/keyhold-tpm
(umask 077; printf 'right-auth' >"$T/auth"; printf 'wrong-auth' >"$T/wrong")
"$KT" create --alg ec-p256 --out "$T/k.tss" --pub-out "$T/k.pub" --auth-file "$T/auth"
echo "message" >"$T/msg"
[ "$(kh_tpm_lockout_counter)" = 0 ] || kh_fail "lockout counter not 0 at start"

# One process, one wrong attempt: a clear error naming the cause.
kh_must_fail_clean openssl dgst -sha256 "${KH_PROV[@]}" \
    -sign "tpm2:file=$T/k.tss;pin-source=file:$T/wrong" -out "$T/x.sig" "$T/msg"
kh_expect_output "auth failed"
kh_expect_output "not retried"
[ "$(kh_tpm_lockout_counter)" = 1 ] || kh_fail "expected lockout counter 1, got $(kh_tpm_lockout_counter)"
"$KT" da | tee "$T/da.out"
grep -q "lockout_counter=1" "$T/da.out" || kh_fail "keyhold-tpm da does not show the counter"

# A server with the wrong auth: three handshakes fail, one TPM attempt.
kh_pub_cert "$T/ca" "$T/k.pub" "$T/k.crt" || kh_fail "test CA could not sign for the TPM key"
port=$(kh_free_port)
kh_s_server "$port" "${KH_PROV[@]}" -key "tpm2:file=$T/k.tss;pin-source=file:$T/wrong" -cert "$T/k.crt"
server=$KH_LAST_PID
for i in 1 2 3; do
    if timeout 20 openssl s_client -connect "127.0.0.1:$port" -tls1_3 </dev/null >"$T/hs.out" 2>&1 \
        && grep -q "Verify return code" "$T/hs.out" && ! grep -q "alert" "$T/hs.out"; then
        kh_fail "handshake $i succeeded with a wrong auth value"
    fi
done
kill -0 "$server" 2>/dev/null || kh_fail "s_server died"
kill "$server"; wait "$server" 2>/dev/null || true
grep -q "auth" "$T/s_server.$port.log" || { cat "$T/s_server.$port.log"; kh_fail "server log lacks the auth error"; }
[ "$(kh_tpm_lockout_counter)" = 2 ] \
    || kh_fail "three failed handshakes spent $(( $(kh_tpm_lockout_counter) - 1 )) tries, not one"
kh_log "wrong auth: one TPM attempt per process, counter 2 of 3"

# The right auth value still works (not locked out).
openssl dgst -sha256 "${KH_PROV[@]}" -sign "tpm2:file=$T/k.tss;pin-source=file:$T/auth" \
    -out "$T/ok.sig" "$T/msg"
openssl dgst -sha256 -verify "$T/k.pub" -signature "$T/ok.sig" "$T/msg" >/dev/null \
    || kh_fail "signature with the right auth does not verify"
grep -q "wrong-auth\|right-auth" "$T/s_server.$port.log" "$T/must_fail.out" \
    && kh_fail "an auth value appears in the output"
kh_log "right auth signs; no auth value in any output"

# The auth value as a systemd credential (LoadCredential=tpm-auth:...).
mkdir -p "$T/creds"
(umask 077; cp "$T/auth" "$T/creds/tpm-auth")
CREDENTIALS_DIRECTORY=$T/creds openssl dgst -sha256 "${KH_PROV[@]}" \
    -sign "tpm2:file=$T/k.tss;pin-source=credential:tpm-auth" -out "$T/cred.sig" "$T/msg" \
    || kh_fail "auth from a systemd credential"
kh_must_fail_clean env -u CREDENTIALS_DIRECTORY openssl dgst -sha256 "${KH_PROV[@]}" \
    -sign "tpm2:file=$T/k.tss;pin-source=credential:tpm-auth" -out "$T/cred.sig" "$T/msg"
kh_expect_output "CREDENTIALS_DIRECTORY"
[ "$(kh_tpm_lockout_counter)" = 2 ] || kh_fail "credential tests changed the lockout counter"

# The CLI: a TPM identity whose auth file now holds a wrong value -> exit 6
# ("auth incorrect"), one more try spent, nothing retried.
export KEYHOLD_CONF_DIR=$T/conf KEYHOLD_STATE_DIR=$T/state
tpm2_dictionarylockout -c      # counter back to 0 (empty lockout auth)
(umask 077; printf 'cli-auth' >"$T/cli.auth")
"$KEYHOLD" provision cam --tpm --tpm-auth-file "$T/cli.auth" --alg ec-p256 --host localhost \
    --csr-out "$T/cam.csr" >/dev/null || kh_fail "provision with a TPM auth file"
openssl req -in "$T/cam.csr" -verify -noout 2>&1 | kh_grepq "verify OK" || kh_fail "CSR signature"
before=$(kh_tpm_lockout_counter)
(umask 077; printf 'not-it' >"$T/cli.auth")
kh_must_fail_clean 6 -- "$KEYHOLD" csr cam -o "$T/cam2.csr"
kh_expect_output "auth failed"
[ "$before" = 0 ] && [ "$(kh_tpm_lockout_counter)" = 1 ] || kh_fail "keyhold csr spent more than one try"
kh_log "CLI: wrong TPM key auth -> exit 6, one try"
