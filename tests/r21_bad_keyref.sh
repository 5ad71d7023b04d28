#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Scenario 21: truncated, empty, huge or garbled key references and TPM key
# blobs -> a named error, never a crash: read as servers read key files,
# in nginx, and as tpm2:file= URIs.
# (The decoders are also fuzzed: fuzz_keyref.sh.)
# timeout: 180
. "$(dirname "$0")/lib.sh"
kh_need "$BUILD/keyhold.so" "$BUILD/tests/kh-keyref" "$BUILD/tests/kh-pemload"

kh_r_token_key_cert
cnf=$(kh_openssl_cnf last)
"$BUILD/tests/kh-keyref" "$(kh_p11_uri appl srv)" >"$T/good.pem"
# Servers read key files with PEM_read_bio_PrivateKey (nginx); kh-pemload
# does the same. (OpenSSL 3.0's file: store, used by `openssl pkey -in`,
# cannot hand out keys that live in another provider.)
OPENSSL_CONF=$cnf "$BUILD/tests/kh-pemload" -c "$T/srv.pem" "$T/good.pem" || kh_fail "the good reference does not load"
# ... also as the very first thing a program does (some servers read the
# key before the certificate).
OPENSSL_CONF=$cnf "$BUILD/tests/kh-pemload" "$T/good.pem" || kh_fail "the good reference does not load first"

b64=$(sed -n '2,/-----END/p' "$T/good.pem" | grep -v -- '-----' | tr -d '\n')
pem() { printf -- '-----BEGIN %s-----\n%s\n-----END %s-----\n' "$1" "$2" "$1"; }
der_b64() { python3 -c 'import base64,sys; print(base64.b64encode(bytes.fromhex(sys.argv[1])).decode())' "$1"; }
mkdir -p "$T/bad"
: >"$T/bad/empty.pem"
pem "KEYHOLD KEY REFERENCE" "" >"$T/bad/empty-body.pem"
pem "KEYHOLD KEY REFERENCE" "${b64:0:20}" >"$T/bad/truncated.pem"
head -c 40 "$T/good.pem" >"$T/bad/cut-file.pem"
pem "KEYHOLD KEY REFERENCE" "${b64:0:10}!!!!${b64:14}" >"$T/bad/garbled-b64.pem"
pem "KEYHOLD KEY REFERENCE" "$(der_b64 3003020102)" >"$T/bad/no-uri.pem"
pem "KEYHOLD KEY REFERENCE" "$(der_b64 300d020102$(printf "0c08706b637331313a7a"))" >"$T/bad/version2.pem"
pem "KEYHOLD KEY REFERENCE" "$(der_b64 3015020101$(printf "0c1066696c653a2f6574632f706173737764"))" >"$T/bad/file-scheme.pem"
pem "KEYHOLD KEY REFERENCE" "$(der_b64 3010020101$(printf '0c0b706b637331313a00783d31'))" >"$T/bad/nul-in-uri.pem"
pem "KEYHOLD KEY REFERENCE" "$(der_b64 3013020101$(printf '0c0e706b637331313a746f6b656e3d25'))" >"$T/bad/bad-pct.pem"
{ echo "-----BEGIN KEYHOLD KEY REFERENCE-----"
  head -c 12582912 /dev/zero | base64 -w 64
  echo "-----END KEYHOLD KEY REFERENCE-----"; } >"$T/bad/huge.pem"
pem "TSS2 PRIVATE KEY" "" >"$T/bad/tss2-empty.pem"
pem "TSS2 PRIVATE KEY" "$(der_b64 300a06066781050a0103010100)" >"$T/bad/tss2-truncated.pem"
pem "TSS2 PRIVATE KEY" "AAAAAAAAAAAAAAAA" >"$T/bad/tss2-garbled.pem"
head -c 4096 /dev/urandom | base64 -w 64 | { echo "-----BEGIN TSS2 PRIVATE KEY-----"; cat; echo "-----END TSS2 PRIVATE KEY-----"; } >"$T/bad/tss2-random.pem"

for f in "$T"/bad/*.pem; do
    name=$(basename "$f" .pem)
    OPENSSL_CONF=$cnf kh_must_fail_clean timeout 60 "$BUILD/tests/kh-pemload" -c "$T/srv.pem" "$f" >/dev/null
    cp "$T/must_fail.out" "$T/$name.err"
    # A named error: a reference or TPM blob says what is wrong with it.
    case $name in
        empty) re='no supported data|could not read|unable to load|key';;
        tss2-*) re='TSS2|TPM';;
        *) re='key reference|key URI';;
    esac
    grep -qiE "$re" "$T/$name.err" || { cat "$T/$name.err"; kh_fail "$name: no named error"; }
    kh_log "$name: refused: $(grep -iE 'keyhold|reference|TSS2' "$T/$name.err" | head -1 | cut -c1-160)"
done

# The same files as nginx's ssl_certificate_key: nginx refuses the
# configuration with the reason, and does not crash.
for name in truncated garbled-b64 version2 file-scheme nul-in-uri huge tss2-garbled tss2-random; do
    d=$T/nginx.$name
    mkdir -p "$d/logs"
    cat >"$d/nginx.conf" <<NGX
error_log $d/logs/error.log notice;
pid $d/nginx.pid;
events { worker_connections 8; }
http {
    server {
        listen 127.0.0.1:$(kh_r_port) ssl;
        ssl_certificate $T/srv.pem;
        ssl_certificate_key $T/bad/$name.pem;
    }
}
NGX
    OPENSSL_CONF=$cnf kh_must_fail_clean timeout 60 nginx -t -p "$d" -e "$d/logs/error.log" -c "$d/nginx.conf"
    grep -qiE 'key reference|TSS2|TPM' "$T/must_fail.out" "$d/logs/error.log" \
        || kh_fail "nginx -t with $name: no named error"
done
kh_log "nginx refuses each bad key file with a named error, without crashing"

# TPM key blobs named by URI go through keyhold's store: named errors.
for name in tss2-empty tss2-truncated tss2-garbled tss2-random; do
    OPENSSL_CONF=$cnf kh_must_fail_clean timeout 60 openssl pkey -in "tpm2:file=$T/bad/$name.pem" -noout
    grep -qiE 'TPM key file|TSS2' "$T/must_fail.out" || kh_fail "tpm2:file= $name: no named error"
done
kh_log "tpm2:file= URIs with bad blobs: named errors"

# Memory stays bounded on the huge file (12 MiB of base64): well under 256 MiB.
OPENSSL_CONF=$cnf /usr/bin/time -f '%M' -o "$T/maxrss" "$BUILD/tests/kh-pemload" -c "$T/srv.pem" "$T/bad/huge.pem" \
    >/dev/null 2>&1 || true
[ "$(cat "$T/maxrss" | tail -1)" -lt 262144 ] || kh_fail "the huge reference used $(tail -1 "$T/maxrss") kB"
kh_log "scenario 21 ok"
