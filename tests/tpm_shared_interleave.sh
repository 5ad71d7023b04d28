#!/bin/bash
# SPDX-License-Identifier: MIT
# Several processes sharing a TPM without resource manager (swtpm, 3
# transient slots) in keyhold's default mode there, where each process
# leaves its keys loaded between operations and the lock file's record says
# whose object is at which handle. Three s_servers with different key files
# and one with a persistent key take turns, while other processes (the
# openssl CLI with the same key file as the first server, keyhold-tpm
# creating a key) work in between: slots run out, objects of one process
# are flushed by another and their handles given to other keys. Every
# handshake is verified by the client against the server's certificate, so
# a server signing with whatever object now sits at its old handle would
# fail. Then the servers are killed (no exit handler runs): their objects
# stay until the next keyhold operation, which flushes them because their
# owners are gone. A running server keeps one object loaded, none when it
# has no usable lock file; an operation that died halfway (its mark left in
# the record) makes the next one flush every transient object; a process
# that signs without pause still lets a waiting one in; a process that
# exits normally leaves nothing.
. "$(dirname "$0")/lib.sh"
kh_need "$BUILD/keyhold.so" "$BUILD/keyhold-tpm"
kh_swtpm_start
kh_test_ca "$T/ca"
unset KEYHOLD_TPM_HOLD

KT=$BUILD/keyhold-tpm
"$KT" create --alg ec-p256 --out "$T/a.tss" --pub-out "$T/a.pub"
"$KT" create --alg rsa-2048 --out "$T/b.tss" --pub-out "$T/b.pub"
"$KT" create --alg ec-p384 --out "$T/c.tss" --pub-out "$T/c.pub"
"$KT" create --alg ec-p256 --persistent 0x81000070 --pub-out "$T/d.pub"

declare -A port pid
for s in a b c d; do
    kh_pub_cert "$T/ca" "$T/$s.pub" "$T/$s.crt" || kh_fail "test CA could not certify $s.pub"
    uri="tpm2:file=$T/$s.tss"
    [ "$s" = d ] && uri="tpm2:handle=0x81000070"
    port[$s]=$(kh_free_port)
    kh_s_server "${port[$s]}" "${KH_PROV[@]}" -key "$uri" -cert "$T/$s.crt"
    pid[$s]=$KH_LAST_PID
done

handshake() {
    timeout 20 openssl s_client -connect "127.0.0.1:${port[$1]}" -servername localhost \
        -tls1_3 -verify_return_error -CAfile "$T/ca/ca.pem" </dev/null >"$T/hs.out" 2>&1 \
        || { cat "$T/hs.out" "$T/s_server.${port[$1]}.log"; kh_fail "handshake with server $1 ($2)"; }
}

echo "shared TPM" >"$T/msg"
for round in 1 2 3; do
    for s in a b c d a; do
        handshake "$s" "round $round"
    done
    # Another process with the first server's key file.
    openssl dgst -sha256 "${KH_PROV[@]}" -sign "tpm2:file=$T/a.tss" -out "$T/msg.sig" "$T/msg" \
        || kh_fail "CLI signature, round $round"
    openssl dgst -sha256 -verify "$T/a.pub" -signature "$T/msg.sig" "$T/msg" >/dev/null \
        || kh_fail "CLI signature does not verify, round $round"
    handshake a "after the CLI, round $round"
    # A key creation needs the storage key and the new key in the TPM.
    "$KT" create --alg ec-p256 --out "$T/new$round.tss" || kh_fail "create, round $round"
    for s in c b a d; do
        handshake "$s" "after a key creation, round $round"
    done
done
# Many operations of one server in a row: its key stays loaded.
for i in 1 2 3 4 5; do
    handshake b "in a row ($i)"
done
kh_log "4 servers, the CLI and key creation took turns on the TPM: all handshakes verified"

for s in a b c d; do
    kill -0 "${pid[$s]}" 2>/dev/null || kh_fail "server $s died"
    kill "${pid[$s]}"
    wait "${pid[$s]}" 2>/dev/null || true
done
left=$(kh_tpm_transients)
kh_log "after killing the servers: $left transient objects left"
"$KT" da >/dev/null || kh_fail "keyhold-tpm da"
[ "$(kh_tpm_transients)" = 0 ] \
    || kh_fail "the next keyhold operation left the dead servers' objects: $(tpm2_getcap handles-transient)"

# A running server keeps its key loaded between handshakes...
port[a]=$(kh_free_port)
kh_s_server "${port[a]}" "${KH_PROV[@]}" -key "tpm2:file=$T/a.tss" -cert "$T/a.crt"
pid[a]=$KH_LAST_PID
handshake a "kept key"
[ "$(kh_tpm_transients)" = 1 ] || kh_fail "server a keeps no key loaded: $(tpm2_getcap handles-transient)"
kill "${pid[a]}"; wait "${pid[a]}" 2>/dev/null || true
"$KT" da >/dev/null || kh_fail "keyhold-tpm da"
# ...but not without a usable lock file (no record to trust): then it
# loads, signs and flushes in each operation.
port[b]=$(kh_free_port)
KEYHOLD_TPM_LOCK=$T/no-such-dir/tpm.lock \
    kh_s_server "${port[b]}" "${KH_PROV[@]}" -key "tpm2:file=$T/b.tss" -cert "$T/b.crt"
pid[b]=$KH_LAST_PID
handshake b "without a lock file"
[ "$(kh_tpm_transients)" = 0 ] || kh_fail "a key was kept without a lock file: $(tpm2_getcap handles-transient)"
kill "${pid[b]}"; wait "${pid[b]}" 2>/dev/null || true

# A keyhold process that died inside an operation leaves its "busy" mark in
# the record (written by hand here: magic, seq, busy=1, no entries) and
# maybe objects nobody knows of (one made by tpm2-tools here): the next
# keyhold operation flushes every transient object.
tpm2_createprimary -C o -c "$T/junk.ctx" >/dev/null || kh_fail "tpm2_createprimary"
[ "$(kh_tpm_transients)" = 1 ] || kh_fail "tpm2_createprimary left no object to find"
{ printf 'khtpmL01\x07\0\0\0\0\0\0\0\x01\0\0\0\0\0\0\0'; head -c 512 /dev/zero; } >"$KEYHOLD_TPM_LOCK"
"$KT" da >/dev/null || kh_fail "keyhold-tpm da after a died operation"
[ "$(kh_tpm_transients)" = 0 ] || kh_fail "a died operation's mark did not flush: $(tpm2_getcap handles-transient)"

# A process signing without pause keeps the TPM from one signature to the
# next, but lets a waiting process in: the CLI signs while the loop runs.
"$KT" sign-loop -n 20000 -P "$BUILD" "tpm2:file=$T/c.tss" >"$T/loop.out" 2>&1 &
loop=$!
for i in $(seq 1 100); do
    [ -s "$T/loop.out" ] || ! kill -0 "$loop" 2>/dev/null || [ "$(kh_tpm_transients)" != 0 ] && break
    sleep 0.05
done
openssl dgst -sha256 "${KH_PROV[@]}" -sign "tpm2:file=$T/a.tss" -out "$T/msg.sig" "$T/msg" \
    || kh_fail "CLI signature beside a signing loop"
kill -0 "$loop" 2>/dev/null || { cat "$T/loop.out"; kh_fail "the CLI got the TPM only after the loop ended"; }
kill "$loop"; wait "$loop" 2>/dev/null || true
"$KT" da >/dev/null || kh_fail "keyhold-tpm da after the loop"

# A process that exits normally flushes what it left loaded.
openssl dgst -sha256 "${KH_PROV[@]}" -sign "tpm2:file=$T/b.tss" -out "$T/msg.sig" "$T/msg" \
    || kh_fail "CLI signature at the end"
[ "$(kh_tpm_transients)" = 0 ] || kh_fail "transients left after a normal exit: $(tpm2_getcap handles-transient)"
kh_log "killed servers' objects flushed by the next keyhold operation; a normal exit leaves none"
