# SPDX-License-Identifier: MIT
# Shared helpers for keyhold's scenario tests. Source it first:
#   . "$(dirname "$0")/lib.sh"
# Every test gets its own temp dir ($T), its own SoftHSM config and token
# directory, and cleanup of whatever it started, on any exit.
set -euo pipefail

KH_TOP=${KH_TOP:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
BUILD=${BUILD:-$KH_TOP/build}
export KH_TOP BUILD
KEYHOLD=$BUILD/keyhold
KEYHOLD_ESTD=$BUILD/keyhold-estd
KH_PROVIDER_DIR=$BUILD
SOFTHSM_MODULE=${SOFTHSM_MODULE:-/usr/lib/softhsm/libsofthsm2.so}
LIBP11_ENGINE=${LIBP11_ENGINE:-/usr/lib/x86_64-linux-gnu/engines-3/pkcs11.so}

T=$(mktemp -d "${TMPDIR:-/tmp}/kh-test.XXXXXX")
chmod 0755 "$T"
KH_BG_PIDS=()

kh_cleanup() {
    local rc=$?
    local p
    for p in "${KH_BG_PIDS[@]:-}"; do
        [ -n "$p" ] && kill "$p" 2>/dev/null || true
    done
    for p in "${KH_BG_PIDS[@]:-}"; do
        [ -n "$p" ] && kill -9 "$p" 2>/dev/null || true
    done
    if [ -f "$T/nginx.pid" ]; then kill "$(cat "$T/nginx.pid")" 2>/dev/null || true; fi
    if [ "${KH_KEEP:-0}" = 1 ]; then echo "kept $T"; else rm -rf "$T"; fi
    exit $rc
}
trap kh_cleanup EXIT
trap 'exit 130' INT TERM

kh_log() { echo "== $*"; }
kh_fail() { echo "FAIL: $*" >&2; exit 1; }
kh_skip() { echo "SKIP: $*"; exit 77; }

# Runs a command that must fail; prints its output. Optional: expected exit
# code as first argument when it is a number followed by --.
#   kh_must_fail cmd...        any non-zero exit
#   kh_must_fail 6 -- cmd...   exactly exit 6
kh_must_fail() {
    local want=""
    if [ "${2:-}" = "--" ]; then want=$1; shift 2; fi
    local rc=0
    "$@" >"$T/must_fail.out" 2>&1 || rc=$?
    cat "$T/must_fail.out"
    [ "$rc" -ne 0 ] || kh_fail "expected failure, got success: $*"
    if [ -n "$want" ] && [ "$rc" -ne "$want" ]; then
        kh_fail "expected exit $want, got $rc: $*"
    fi
    return 0
}

# Asserts that the last kh_must_fail output (or a file) contains a string.
kh_expect_output() {
    grep -qiF -- "$1" "${2:-$T/must_fail.out}" || kh_fail "output lacks '$1'"
}

# Starts a command in the background and registers it for cleanup.
kh_bg() {
    "$@" &
    KH_BG_PIDS+=($!)
    KH_LAST_PID=$!
}

# A TCP port that nobody listens on right now (bounded number of tries).
kh_free_port() {
    local i p
    for i in $(seq 1 200); do
        p=$(( 20000 + (RANDOM * 32768 + RANDOM) % 40000 ))
        if ! ss -Htln "sport = :$p" | grep -q .; then echo "$p"; return 0; fi
    done
    kh_fail "no free port"
}

# Waits (bounded) until something listens on 127.0.0.1:PORT.
kh_wait_port() {
    local port=$1 tries=${2:-100} i
    for i in $(seq 1 "$tries"); do
        if ss -Htln "sport = :$port" | grep -q .; then return 0; fi
        sleep 0.1
    done
    kh_fail "nothing listens on port $port"
}

# A SoftHSM configuration of this test's own; reset_on_fork shows fork bugs
# that real hardware has and SoftHSM would otherwise hide.
kh_softhsm_setup() {
    mkdir -p "$T/tokens"
    cat >"$T/softhsm2.conf" <<CONF
directories.tokendir = $T/tokens
objectstore.backend = file
log.level = ERROR
slots.removable = false
library.reset_on_fork = true
CONF
    export SOFTHSM2_CONF=$T/softhsm2.conf
}

# Creates a token: kh_softhsm_token LABEL [PIN] [SO-PIN]; writes $T/LABEL.pin
# (mode 0600) holding the user PIN.
kh_softhsm_token() {
    local label=$1 pin=${2:-1234} sopin=${3:-5678}
    [ -n "${SOFTHSM2_CONF:-}" ] || kh_softhsm_setup
    softhsm2-util --init-token --free --label "$label" --pin "$pin" --so-pin "$sopin" >/dev/null
    (umask 077; printf '%s' "$pin" >"$T/$label.pin")
}

# An EC or RSA key made by pkcs11-tool (an independent tool) inside a token.
#   kh_p11tool_keygen LABEL KEYLABEL ID-HEX EC:prime256v1|rsa:2048 [PIN]
kh_p11tool_keygen() {
    pkcs11-tool --module "$SOFTHSM_MODULE" --token-label "$1" --login --pin "${5:-1234}" \
        --keypairgen --key-type "$4" --label "$2" --id "$3" \
        --usage-sign >/dev/null
}

# openssl.cnf that activates keyhold beside default (order: $1 = first|last).
kh_openssl_cnf() {
    local order=${1:-last} f=$T/openssl.cnf
    {
        echo "openssl_conf = openssl_init"
        echo "[openssl_init]"
        echo "providers = provider_sect"
        echo "[provider_sect]"
        if [ "$order" = first ]; then
            echo "keyhold = keyhold_sect"; echo "default = default_sect"
        else
            echo "default = default_sect"; echo "keyhold = keyhold_sect"
        fi
        echo "[default_sect]"
        echo "activate = 1"
        echo "[keyhold_sect]"
        echo "module = $BUILD/keyhold.so"
        echo "activate = 1"
        [ -n "${KH_CNF_EXTRA:-}" ] && printf '%s\n' "$KH_CNF_EXTRA"
    } >"$f"
    echo "$f"
}

# A software test CA (for tests that are not about the CA's own key):
# kh_test_ca DIR [ec|rsa] -> DIR/ca.pem DIR/ca.key
kh_test_ca() {
    local d=$1 alg=${2:-ec}
    mkdir -p "$d"
    if [ "$alg" = rsa ]; then
        openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$d/ca.key" 2>/dev/null
    else
        openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$d/ca.key" 2>/dev/null
    fi
    openssl req -new -x509 -key "$d/ca.key" -subj "/CN=keyhold test CA" -days 30 \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -out "$d/ca.pem" 2>/dev/null
    cat >"$d/ext-server.cnf" <<CNF
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth,clientAuth
subjectAltName = \${ENV::KH_SAN}
CNF
}

# Signs a CSR with the test CA: kh_ca_sign DIR CSR OUT [SAN] [DAYS]
kh_ca_sign() {
    local d=$1 csr=$2 out=$3 san=${4:-DNS:localhost} days=${5:-7}
    KH_SAN=$san openssl x509 -req -in "$csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial \
        -days "$days" -extfile "$d/ext-server.cnf" -out "$out" 2>/dev/null
}

# Requires a built artefact, failing (not skipping) when it is absent.
kh_need() {
    local f
    for f in "$@"; do [ -e "$f" ] || kh_fail "missing $f (run make)"; done
}
