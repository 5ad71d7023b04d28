#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# `make bench`: makes a fresh SoftHSM token (and, when the TPM backend is
# built, a swtpm) in a temp dir, keys and certificates for every path, then
# runs kh-bench, which prints the tables and writes the JSON file.
#   tests/bench/bench.sh KH-BENCH JSON-OUT
#   tests/bench/bench.sh KH-BENCH --profile OUT-DIR   (make bench-profile)
# The second form runs every signing path under callgrind instead and
# prints instructions per signature (stable on a busy machine), keeping the
# callgrind files in OUT-DIR for callgrind_annotate.
# Environment: BENCH_SECONDS (one measurement window, default 0.5),
# BENCH_ROUNDS (default 5), BENCH_TPM=0 to leave the TPM rows out,
# BENCH_CALLGRIND=0 to skip the instruction-count footprint, KH_KEEP=1 to
# keep the temp dir.
set -euo pipefail

KHB=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
JSON=$2
TOP=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-$TOP/build}
BUILD=$(cd "$BUILD" && pwd)
MODULE=${SOFTHSM_MODULE:-/usr/lib/softhsm/libsofthsm2.so}
ENGINE=${LIBP11_ENGINE:-/usr/lib/x86_64-linux-gnu/engines-3/pkcs11.so}

T=$(mktemp -d "${TMPDIR:-/tmp}/kh-bench.XXXXXX")
SWTPM_PID=
cleanup() {
    local rc=$?
    [ -n "$SWTPM_PID" ] && kill "$SWTPM_PID" 2>/dev/null || true
    if [ "${KH_KEEP:-0}" = 1 ]; then echo "kept $T"; else rm -rf "$T"; fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The bench's own token. Single process per measurement, no fork: the
# default reset_on_fork = false is what a server sees after its own fork
# handling anyway.
mkdir -p "$T/tokens"
cat >"$T/softhsm2.conf" <<CONF
directories.tokendir = $T/tokens
objectstore.backend = file
log.level = ERROR
slots.removable = false
CONF
export SOFTHSM2_CONF=$T/softhsm2.conf
# Every process starts from the same (empty) OpenSSL configuration.
export OPENSSL_CONF=/dev/null

PIN=1234
softhsm2-util --init-token --free --label bench --pin $PIN --so-pin 5678 >/dev/null
(umask 077; printf '%s' "$PIN" >"$T/pin")
p11() { pkcs11-tool --module "$MODULE" --token-label bench --login --pin $PIN "$@"; }
p11 --keypairgen --key-type EC:prime256v1 --label bench-ec --id 01 --usage-sign >/dev/null
p11 --keypairgen --key-type rsa:2048 --label bench-rsa --id 02 --usage-sign >/dev/null

# A software CA; certificates for the software keys and, with the public
# half read from the token, for the token keys.
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$T/ca.key" 2>/dev/null
openssl req -new -x509 -key "$T/ca.key" -subj "/CN=keyhold bench CA" -days 2 \
    -addext "basicConstraints=critical,CA:TRUE" -out "$T/ca.pem" 2>/dev/null
printf 'subjectAltName=DNS:localhost\nbasicConstraints=critical,CA:FALSE\n' >"$T/ext.cnf"
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$T/sw-ec.key" 2>/dev/null
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$T/sw-rsa.key" 2>/dev/null
# cert NAME CSR-KEY [FORCED-PUBKEY]
cert() {
    local force=()
    [ -n "${3:-}" ] && force=(-force_pubkey "$3")
    openssl req -new -key "$2" -subj "/CN=localhost" -out "$T/$1.csr" 2>/dev/null
    openssl x509 -req -in "$T/$1.csr" -CA "$T/ca.pem" -CAkey "$T/ca.key" -CAcreateserial \
        -days 2 -extfile "$T/ext.cnf" "${force[@]}" -out "$T/$1.crt" 2>/dev/null
}
cert sw-ec "$T/sw-ec.key"
cert sw-rsa "$T/sw-rsa.key"
for k in ec rsa; do
    p11 --read-object --type pubkey --label bench-$k -o "$T/hw-$k.pub.der" >/dev/null 2>&1
    openssl pkey -pubin -inform DER -in "$T/hw-$k.pub.der" -out "$T/hw-$k.pub.pem"
    cert hw-$k "$T/sw-$k.key" "$T/hw-$k.pub.pem"
done

# The provider as built when the bench starts: a private copy, so a
# rebuild of build/keyhold.so during the run cannot pull it away.
mkdir -p "$T/prov"
if [ -f "$BUILD/keyhold.so" ]; then
    # keyhold-tpm.so (the TPM backend, loaded on first use) goes beside it
    cp "$BUILD"/keyhold*.so "$T/prov/"
fi

export KHB_DIR=$T KHB_MODULE=$MODULE KHB_TOKEN=bench KHB_PIN=$PIN
export KHB_PROVIDER_DIR=$T/prov KHB_LIBP11_ENGINE=$ENGINE
"$KHB" keyref "pkcs11:token=bench;object=bench-ec;type=private?module-path=$MODULE&pin-source=file:$T/pin" \
    "$T/ec.keyref.pem"

# TPM rows: swtpm on loopback, keys made by tpm2-openssl (the peer) and
# read by both providers. Only when keyhold was built with its TPM backend.
unset KHB_TPM_TCTI
if [ "${BENCH_TPM:-1}" = 1 ] && ls "$TOP"/engine/tpm/*.c >/dev/null 2>&1 \
    && command -v swtpm >/dev/null; then
    mkdir -p "$T/tpm"
    # A free port pair; another test may take it first, so retry (bounded).
    for _ in 1 2 3 4 5; do
        port=$(( 24000 + RANDOM % 20000 ))
        if ss -Htln "sport = :$port or sport = :$((port + 1))" | grep -q .; then
            continue
        fi
        swtpm socket --tpm2 --server type=tcp,port=$port,bindaddr=127.0.0.1 \
            --ctrl type=tcp,port=$((port + 1)),bindaddr=127.0.0.1 --tpmstate dir="$T/tpm" \
            --flags not-need-init,startup-clear >"$T/swtpm.log" 2>&1 &
        SWTPM_PID=$!
        for _ in $(seq 1 100); do
            ss -Htln "sport = :$port" | grep -q . && break
            kill -0 "$SWTPM_PID" 2>/dev/null || break
            sleep 0.05
        done
        kill -0 "$SWTPM_PID" 2>/dev/null && break
        SWTPM_PID=
    done
    export TPM2OPENSSL_TCTI="swtpm:host=127.0.0.1,port=$port"
    export TPM2TOOLS_TCTI=$TPM2OPENSSL_TCTI
    if openssl genpkey -provider tpm2 -provider default -algorithm EC \
            -pkeyopt group:P-256 -out "$T/tpm-ec.tss" 2>"$T/tpm.err" \
        && openssl genpkey -provider tpm2 -provider default -algorithm RSA \
            -pkeyopt bits:2048 -out "$T/tpm-rsa.tss" 2>>"$T/tpm.err"; then
        for k in ec rsa; do
            openssl pkey -provider tpm2 -provider default -in "$T/tpm-$k.tss" \
                -pubout -out "$T/tpm-$k.pub.pem" 2>>"$T/tpm.err"
            cert tpm-$k "$T/sw-$k.key" "$T/tpm-$k.pub.pem"
        done
        # Both providers and tpm2-tools talk to swtpm through the counting
        # TCTI from here on (it forwards; the count costs one atomic add).
        count_lib=$(dirname "$KHB")/libtss2-tcti-khcount.so
        if [ -f "$count_lib" ]; then
            export KHB_TCTI_COUNT_LIB=$count_lib
            TPM2OPENSSL_TCTI="$count_lib:$TPM2OPENSSL_TCTI"
        fi
        export TPM2OPENSSL_TCTI TPM2TOOLS_TCTI=$TPM2OPENSSL_TCTI
        export KEYHOLD_TPM_TCTI=$TPM2OPENSSL_TCTI
        export KHB_TPM_TCTI=$TPM2OPENSSL_TCTI
    else
        echo "bench: TPM keys could not be made; TPM rows left out:" >&2
        tail -n 3 "$T/tpm.err" >&2
    fi
fi

# Instructions per operation: runs kh-bench ARGS under callgrind (only
# khb_prof_op counted) into FILE and prints the total divided by N.
#   ir_per FILE N ARGS...
ir_per() {
    local f=$1 n=$2 ir
    shift 2
    valgrind --tool=callgrind --toggle-collect=khb_prof_op \
        --callgrind-out-file="$f" "$KHB" "$@" >"$f.log" 2>&1 || return 1
    ir=$(sed -n 's/^totals: *\([0-9]*\).*/\1/p' "$f" | head -1)
    echo $(( ir / n ))
}

if [ "$JSON" = --profile ]; then
    out=$3
    mkdir -p "$out"
    declare -A IR_SIGN
    printf '%-14s %-14s %12s %12s %8s\n' path algorithm "Ir/sign" "over raw" "raw/path"
    for alg in ecdsa-p256 rsa2048-pkcs1 rsa2048-pss; do
        n=200
        [ "$alg" = ecdsa-p256 ] || n=40
        raw=
        # PATH+reuse: one context re-initialised per signature
        paths="raw sw keyhold libp11 sw+reuse keyhold+reuse libp11+reuse"
        [ -n "${KHB_TPM_TCTI:-}" ] && paths="$paths tpm-keyhold tpm-keyhold-hold tpm-peer"
        for path in $paths; do
            f=$out/callgrind.$path.$alg
            [ "${path#tpm}" != "$path" ] && tpm2_flushcontext -t >/dev/null 2>&1
            if ! per=$(ir_per "$f" "$n" profile "$path" "$alg" "$n"); then
                printf '%-14s %-14s %12s\n' "$path" "$alg" "failed (see $f.log)"
                continue
            fi
            IR_SIGN[$path.$alg]=$per
            [ "$path" = raw ] && raw=$per
            if [ -n "$raw" ]; then
                printf '%-14s %-14s %12d %+12d %8s\n' "$path" "$alg" "$per" $(( per - raw )) \
                    "$(awk -v a="$raw" -v b="$per" 'BEGIN { printf "%.3f", a / b }')"
            else
                printf '%-14s %-14s %12d\n' "$path" "$alg" "$per"
            fi
        done
    done
    printf '\nfootprint: software-key TLS 1.3 handshake, instructions\n'
    for alg in ecdsa rsa; do
        plain=
        for v in plain loaded lazy; do
            f=$out/callgrind.hs-$v.$alg
            if ! ir=$(ir_per "$f" 50 profile-hs "$v" "$alg" 50); then
                printf '%-8s %-6s failed (see %s.log)\n' "$v" "$alg" "$f"
                continue
            fi
            if [ -z "$plain" ]; then
                plain=$ir
                printf '%-8s %-6s %12d\n' "$v" "$alg" "$ir"
            else
                printf '%-8s %-6s %12d %+d (%s%%)\n' "$v" "$alg" "$ir" $(( ir - plain )) \
                    "$(awk -v a="$ir" -v b="$plain" 'BEGIN { printf "%.2f", (a - b) * 100 / b }')"
            fi
        done
    done
    # Handshakes with each path's key; the limit in instructions is the
    # software handshake minus the software signature plus the raw C_Sign
    # (TLS 1.3 signs ECDSA P-256 or RSA-PSS), and limit / path is the
    # instruction view of the kh/lim ratio of the TLS table.
    printf '\nTLS 1.3 handshake, server key in each path, instructions (limit = sw - sw sign + raw sign)\n'
    printf '%-8s %-6s %12s %12s %8s\n' path key "Ir/handshake" "limit" "lim/path"
    for alg in ecdsa rsa; do
        salg=ecdsa-p256
        [ "$alg" = rsa ] && salg=rsa2048-pss
        limit=
        for path in sw keyhold libp11; do
            f=$out/callgrind.tls-$path.$alg
            if ! ir=$(ir_per "$f" 20 profile-tls "$path" "$alg" 20); then
                printf '%-8s %-6s failed (see %s.log)\n' "$path" "$alg" "$f"
                continue
            fi
            if [ "$path" = sw ] && [ -n "${IR_SIGN[sw.$salg]:-}" ] \
                    && [ -n "${IR_SIGN[raw.$salg]:-}" ]; then
                limit=$(( ir - IR_SIGN[sw.$salg] + IR_SIGN[raw.$salg] ))
            fi
            printf '%-8s %-6s %12d %12s %8s\n' "$path" "$alg" "$ir" "${limit:--}" \
                "$( [ -n "$limit" ] && [ "$path" != sw ] \
                    && awk -v a="$limit" -v b="$ir" 'BEGIN { printf "%.3f", a / b }')"
        done
    done
    printf '\nstart-up: whole process to first ECDSA signature, instructions\n'
    floor=
    for how in raw uri keyref libp11 sw; do
        f=$out/callgrind.start-$how
        if ! valgrind --tool=callgrind --callgrind-out-file="$f" "$KHB" first-sig "$how" \
                >"$f.log" 2>&1; then
            printf '%-8s failed (see %s.log)\n' "$how" "$f"
            continue
        fi
        ir=$(sed -n 's/^totals: *\([0-9]*\).*/\1/p' "$f" | head -1)
        [ "$how" = raw ] && floor=$ir
        printf '%-8s %12d %+12d\n' "$how" "$ir" $(( ir - ${floor:-$ir} ))
    done
    echo "callgrind files: $out (callgrind_annotate --inclusive=yes FILE)"
    exit 0
fi

# Footprint in instructions too (callgrind counts do not move with the
# machine's load the way handshakes/s do): 20 software-key TLS 1.3
# handshakes without keyhold, with keyhold loaded, and with keyhold loaded
# with key-files = no (lazy).
if [ "${BENCH_CALLGRIND:-1}" = 1 ] && command -v valgrind >/dev/null; then
    for alg in ecdsa rsa; do
        for v in plain loaded lazy; do
            f=$T/callgrind.hs-$v.$alg
            if ir=$(ir_per "$f" 20 profile-hs "$v" "$alg" 20); then
                export "KHB_IR_HS_${v}_${alg}=$ir"
            fi
        done
    done
fi

echo "bench: machine: $(nproc) cores, $(uptime | sed 's/.*load/load/')" >&2
"$KHB" run "$JSON"

# The handshake limit's assumption, checked without keyhold: the raw
# C_Sign and a software-key TLS 1.3 handshake, each timed back to back and
# when they alternate (CPU time of the measuring thread). pair/sum > 1 is
# what a handshake with a token signature costs beyond the limit whoever
# calls the token.
printf '\nLimit check: raw C_Sign and software handshake, alone and alternating (CPU us, median of 5 rounds)\n'
printf '%-6s %10s %10s %10s %10s %10s\n' key "sign b2b" "sign in" "hs b2b" "hs in" "pair/sum"
"$KHB" cold-sign ecdsa 200 || echo "ecdsa  failed"
"$KHB" cold-sign rsa 60 || echo "rsa    failed"
