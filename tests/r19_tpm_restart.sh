#!/bin/bash
# SPDX-License-Identifier: MIT
# RELIABILITY 19: the TPM goes away under a running server. swtpm is killed
# with -9 and restarted (a TPM reset: transient objects and saved contexts
# are gone) between two handshakes of the same openssl s_server; while it
# is down, handshakes fail cleanly and the server lives on; once it is back
# the next handshake succeeds without restarting the server. Both modes:
# per-operation connections (default without resource manager) and a held
# connection (KEYHOLD_TPM_HOLD=1), with a key file and a persistent key.
. "$(dirname "$0")/lib.sh"
kh_need "$BUILD/keyhold.so" "$BUILD/keyhold-tpm"
kh_swtpm_start
kh_test_ca "$T/ca"
KT=$BUILD/keyhold-tpm
"$KT" create --alg ec-p256 --out "$T/ec.tss" --pub-out "$T/ec.pub"
"$KT" create --alg rsa-2048 --persistent 0x81000050 --pub-out "$T/rsa.pub"
for k in ec rsa; do
    kh_pub_cert "$T/ca" "$T/$k.pub" "$T/$k.crt" || kh_fail "test CA could not sign for the $k key"
done

handshake() {
    timeout 20 openssl s_client -connect "127.0.0.1:$1" -servername localhost -tls1_3 \
        -verify_return_error -CAfile "$T/ca/ca.pem" </dev/null >"$T/hs.out" 2>&1
}

for hold in 0 1; do
    for spec in "ec:tpm2:file=$T/ec.tss" "rsa:tpm2:handle=0x81000050"; do
        name=${spec%%:*}
        uri=${spec#*:}
        port=$(kh_free_port)
        KEYHOLD_TPM_HOLD=$hold kh_s_server "$port" "${KH_PROV[@]}" -key "$uri" -cert "$T/$name.crt"
        server=$KH_LAST_PID
        handshake "$port" || { cat "$T/hs.out"; kh_fail "first handshake ($name, hold=$hold)"; }

        kh_swtpm_restart
        handshake "$port" || { cat "$T/hs.out"; kh_fail "handshake after swtpm restart ($name, hold=$hold)"; }

        kh_swtpm_kill
        if handshake "$port"; then kh_fail "handshake succeeded with swtpm down"; fi
        kill -0 "$server" 2>/dev/null || kh_fail "s_server died while the TPM was down"
        grep -q "keyhold" "$T/s_server.$port.log" \
            || { cat "$T/s_server.$port.log"; kh_fail "no keyhold error in the server log"; }
        kh_swtpm_start "$KH_SWTPM_DIR"
        handshake "$port" || { cat "$T/hs.out"; kh_fail "handshake after swtpm came back ($name, hold=$hold)"; }
        kill -0 "$server" 2>/dev/null || kh_fail "s_server died"
        kill "$server"
        wait "$server" 2>/dev/null || true
        kh_log "$name key, hold=$hold: survived a TPM reset and an outage"
    done
done

# A held key flushed behind keyhold's back (tpm2_flushcontext): the next
# handshake reloads it.
port=$(kh_free_port)
KEYHOLD_TPM_HOLD=1 kh_s_server "$port" "${KH_PROV[@]}" -key "tpm2:file=$T/ec.tss" -cert "$T/ec.crt"
server=$KH_LAST_PID
handshake "$port" || { cat "$T/hs.out"; kh_fail "handshake before the flush"; }
tpm2_flushcontext -t
handshake "$port" || { cat "$T/hs.out"; kh_fail "handshake after the key was flushed"; }
kill "$server"; wait "$server" 2>/dev/null || true
kh_log "a key flushed by someone else is reloaded"

# Every kill -9 is an unclean shutdown, which the TPM counts as a failed
# authorization; keys without an auth value are created noDA, so they keep
# working even when that counter reaches lockout.
kh_log "lockout counter after the kills: $(kh_tpm_lockout_counter)"
echo "after the outages" >"$T/msg"
openssl dgst -sha256 "${KH_PROV[@]}" -sign "tpm2:file=$T/ec.tss" -out "$T/msg.sig" "$T/msg" \
    || kh_fail "key unusable after unclean shutdowns"
openssl dgst -sha256 -verify "$T/ec.pub" -signature "$T/msg.sig" "$T/msg" >/dev/null \
    || kh_fail "signature after the outages does not verify"
