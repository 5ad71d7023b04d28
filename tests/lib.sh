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
    kh_release_ports 2>/dev/null || true
    if [ "${KH_KEEP:-0}" = 1 ]; then echo "kept $T"; else rm -rf "$T"; fi
    exit $rc
}
trap kh_cleanup EXIT
trap 'exit 130' INT TERM

kh_log() { echo "== $*"; }
# "grep -q" for the end of a pipe: reads all of its input, so that under
# pipefail the writer never dies of SIGPIPE (and fails the pipe) when the
# match comes early. Takes grep's options and arguments.
kh_grepq() { grep "$@" >/dev/null; }
kh_fail() { echo "FAIL: $*" >&2; exit 1; }
# The faketime program names a semaphore and a shared memory object after
# its own PID and removes them only when it ends normally; one that was
# killed leaves them behind, and a later faketime that happens to get the
# same PID stops with "sem_open: File exists". Every test's faketime runs
# through this: the PID it will have is ours in sh -c (exec keeps it), so
# names carrying it can only be stale, and are removed first.
faketime() {
    sh -c 'rm -f "/dev/shm/sem.faketime_sem_$$" "/dev/shm/faketime_shm_$$"
           exec faketime "$@"' faketime "$@"
}
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

# A TCP/UDP port that nobody listens on right now and that no other test of
# this machine has been handed (bounded number of tries). Each port handed
# out is reserved by an atomic mkdir under $KH_PORT_LOCKS, owned by this
# test's shell, so neither two calls of one test nor two tests running side
# by side can get the same port before either has bound it; the reservation
# is released when the test ends, and one whose owner died is taken over.
KH_PORT_LOCKS=${KH_PORT_LOCKS:-${TMPDIR:-/tmp}/keyhold-test-ports}
# Reserves port P for this test; fails if another live test holds it.
kh_port_reserve() {
    local p=$1 owner
    mkdir -p "$KH_PORT_LOCKS"
    if ! mkdir "$KH_PORT_LOCKS/$p" 2>/dev/null; then
        owner=$(cat "$KH_PORT_LOCKS/$p/owner" 2>/dev/null || true)
        if [ -n "$owner" ] && ! kill -0 "$owner" 2>/dev/null; then
            rm -rf "$KH_PORT_LOCKS/$p"
        fi
        return 1
    fi
    echo "$$" >"$KH_PORT_LOCKS/$p/owner"
}

kh_free_port() {
    local i p
    for i in $(seq 1 400); do
        # below the kernel's ephemeral range (32768-60999), where client
        # connections could hold a port between this check and the bind
        p=$(( 20000 + (RANDOM * 32768 + RANDOM) % 12768 ))
        kh_port_reserve "$p" || continue
        if ss -Htuan "sport = :$p" | kh_grepq .; then continue; fi
        echo "$p"
        return 0
    done
    kh_fail "no free port"
}

# Releases the ports this test reserved (called on exit).
kh_release_ports() {
    local d
    [ -d "$KH_PORT_LOCKS" ] || return 0
    for d in "$KH_PORT_LOCKS"/*/; do
        [ -f "${d}owner" ] || continue
        if [ "$(cat "${d}owner" 2>/dev/null)" = "$$" ]; then rm -rf "$d"; fi
    done
}

# Waits (bounded) until something listens on 127.0.0.1:PORT.
kh_wait_port() {
    local port=$1 tries=${2:-100} i
    for i in $(seq 1 "$tries"); do
        if ss -Htln "sport = :$port" | kh_grepq .; then return 0; fi
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

# ---------------------------------------------------------------------------
# Provider scenario helpers (p11_* tests, demo).

# make check-asan: the provider and the helpers are built with ASan/UBSan.
# Foreign programs that dlopen the instrumented provider (openssl, nginx) need
# the sanitizer runtimes loaded first, and leak reports from them are noise.
# Only those get the preload, through wrappers early in PATH (so `env`,
# `timeout` and kh_bg find them too): preloading libasan into everything
# makes some programs (curl) hang.
if [ "${KH_ASAN:-0}" = 1 ]; then
    KH_ASAN_RT=$(${CC:-cc} -print-file-name=libasan.so)
    KH_UBSAN_RT=$(${CC:-cc} -print-file-name=libubsan.so)
    [ -e "$KH_ASAN_RT" ] || kh_fail "KH_ASAN=1 but no libasan.so ($KH_ASAN_RT)"
    KH_ASAN_PRELOAD=$KH_ASAN_RT
    [ -e "$KH_UBSAN_RT" ] && KH_ASAN_PRELOAD="$KH_ASAN_PRELOAD:$KH_UBSAN_RT"
    export ASAN_OPTIONS=${KH_ASAN_OPTIONS:-detect_leaks=0:verify_asan_link_order=0:exitcode=86:halt_on_error=1:detect_odr_violation=0}
    export UBSAN_OPTIONS=${KH_UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1:exitcode=87}
    mkdir -p "$T/asan-bin"
    # Other uninstrumented programs that load keyhold.so can be added with
    # KH_ASAN_WRAP="curl ..." (set before sourcing lib.sh).
    for kh_prog in openssl nginx ${KH_ASAN_WRAP:-}; do
        kh_real=$(PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin command -v "$kh_prog" || true)
        [ -n "$kh_real" ] || continue
        printf '#!/bin/sh\nLD_PRELOAD="%s${LD_PRELOAD:+:$LD_PRELOAD}" exec %s "$@"\n' \
            "$KH_ASAN_PRELOAD" "$kh_real" >"$T/asan-bin/$kh_prog"
        chmod 0755 "$T/asan-bin/$kh_prog"
    done
    export PATH="$T/asan-bin:$PATH"
fi

# Command-line form of loading keyhold beside default (no -propquery).
KH_PROV=(-provider-path "$BUILD" -provider keyhold -provider default)

# Like kh_must_fail, but the failure must also be clean: an exit code (not
# a signal), no sanitizer report, no core dump.
#   kh_must_fail_clean [N --] cmd...
kh_must_fail_clean() {
    local want=""
    if [ "${2:-}" = "--" ]; then want=$1; shift 2; fi
    local rc=0
    "$@" >"$T/must_fail.out" 2>&1 || rc=$?
    cat "$T/must_fail.out"
    [ "$rc" -ne 0 ] || kh_fail "expected failure, got success: $*"
    [ "$rc" -lt 128 ] || kh_fail "crashed (exit $rc, signal $((rc - 128))): $*"
    if grep -qE 'AddressSanitizer|runtime error:|LeakSanitizer|Segmentation fault' "$T/must_fail.out"; then
        kh_fail "sanitizer report or crash: $*"
    fi
    if [ -n "$want" ] && [ "$rc" -ne "$want" ]; then
        kh_fail "expected exit $want, got $rc: $*"
    fi
    return 0
}

# The private-key URI of a key in a test token (PIN from $T/TOKEN.pin).
#   kh_p11_uri TOKEN KEYLABEL  -> pkcs11:token=..;object=..;type=private?pin-source=file:..
kh_p11_uri() {
    echo "pkcs11:token=$1;object=$2;type=private?pin-source=file:$T/$1.pin"
}

# The public key of a token key, built from the token's public key object
# by kh-p11attr straight through Cryptoki (not by keyhold; pkcs11-tool cannot
# export P-384 keys).
#   kh_p11_pubkey TOKEN ID-HEX OUT.pem
kh_p11_pubkey() {
    kh_need "$BUILD/tests/kh-p11attr"
    "$BUILD/tests/kh-p11attr" -m "$SOFTHSM_MODULE" -t "$1" -i "$2" -x "$3" \
        || kh_fail "cannot read public key $2 of token $1"
}

# A certificate from the test CA (kh_test_ca) for a token key, made without
# the key's help (the CA signs the token's public key object).
#   kh_p11_cert CADIR TOKEN ID-HEX OUT.pem [SAN] [CN]
kh_p11_cert() {
    local d=$1 tok=$2 id=$3 out=$4 san=${5:-DNS:localhost} cn=${6:-localhost}
    kh_p11_pubkey "$tok" "$id" "$T/certpub.$$.pem"
    kh_pub_cert "$d" "$T/certpub.$$.pem" "$out" "$san" "$cn" \
        || kh_fail "test CA could not sign a certificate for $tok/$id"
    rm -f "$T/certpub.$$.pem"
}

# Starts `openssl s_server -www` on 127.0.0.1:PORT in the background with the
# given extra arguments (key, cert, provider flags, versions) and waits until
# it listens. Output goes to $T/s_server.PORT.log. Env vars for the server
# only: put them before the call, e.g. OPENSSL_CONF=... kh_s_server ...
kh_s_server() {
    local port=$1; shift
    kh_bg openssl s_server -accept "127.0.0.1:$port" -naccept 1000 -www "$@" \
        >"$T/s_server.$port.log" 2>&1 </dev/null
    local pid=$KH_LAST_PID i
    for i in $(seq 1 100); do
        if [ -n "$(ss -Htln "sport = :$port")" ]; then return 0; fi
        if ! kill -0 "$pid" 2>/dev/null; then
            cat "$T/s_server.$port.log"
            kh_fail "s_server exited before listening on $port"
        fi
        sleep 0.1
    done
    cat "$T/s_server.$port.log"
    kh_fail "s_server does not listen on $port"
}

# Three independent TLS clients against localhost:PORT, each verifying the
# chain to CAFILE and the name localhost: openssl s_client, curl, gnutls-cli.
#   kh_tls_clients PORT CAFILE 1.2|1.3 [s_client extra args...]
kh_tls_clients() {
    local port=$1 ca=$2 ver=$3; shift 3
    local sv gv cv
    case $ver in
        1.3) sv=-tls1_3; gv=+VERS-TLS1.3; cv=(--tlsv1.3 --tls-max 1.3);;
        1.2) sv=-tls1_2; gv=+VERS-TLS1.2; cv=(--tlsv1.2 --tls-max 1.2);;
        *) kh_fail "kh_tls_clients: version $ver";;
    esac
    openssl s_client -connect "127.0.0.1:$port" -servername localhost \
        -verify_return_error -verify_hostname localhost -CAfile "$ca" "$sv" "$@" \
        </dev/null >"$T/s_client.out" 2>&1 \
        || { cat "$T/s_client.out"; kh_fail "s_client TLS $ver handshake failed"; }
    grep -q "Verify return code: 0 (ok)" "$T/s_client.out" \
        || { cat "$T/s_client.out"; kh_fail "s_client: verification not ok"; }
    grep -q "Protocol *: TLSv$ver\|New, TLSv$ver" "$T/s_client.out" \
        || { cat "$T/s_client.out"; kh_fail "s_client: not TLS $ver"; }
    curl -sS --fail --max-time 20 --cacert "$ca" "${cv[@]}" \
        --resolve "localhost:$port:127.0.0.1" "https://localhost:$port/" \
        -o "$T/curl.out" 2>"$T/curl.err" \
        || { cat "$T/curl.err"; kh_fail "curl TLS $ver failed"; }
    gnutls-cli --x509cafile "$ca" --verify-hostname localhost -p "$port" \
        --priority "NORMAL:-VERS-ALL:$gv" 127.0.0.1 </dev/null >"$T/gnutls.out" 2>&1 \
        || { cat "$T/gnutls.out"; kh_fail "gnutls-cli TLS $ver handshake failed"; }
    grep -q "Handshake was completed" "$T/gnutls.out" \
        || { cat "$T/gnutls.out"; kh_fail "gnutls-cli: no completed handshake"; }
    kh_log "TLS $ver: s_client, curl and gnutls-cli verified the chain and completed"
}

# nginx in the foreground (daemon off) under $T, master + WORKERS workers,
# started with OPENSSL_CONF=CNF so that keyhold is loaded from openssl.cnf
# (CNF empty: OPENSSL_CONF left alone). Its configuration is
# $T/nginx/nginx.conf. Optional, set for the call:
#   KH_NGINX_USER="USER [GROUP]"  the workers' account (default root)
#   KH_NGINX_SHIM=1  the workers see the fault shim's environment, each has
#                    its own listening socket (reuseport) and every handshake
#                    is a full one (no session cache, no tickets)
#   KH_NGINX_LOCATION="DIRECTIVES"  what location / does (default: answers
#                    200 "keyhold"), e.g. "proxy_pass http://127.0.0.1:P;"
#   kh_nginx_start PORT CERT KEY CNF [WORKERS]
kh_nginx_start() {
    local port=$1 cert=$2 key=$3 cnf=$4 workers=${5:-2} d=$T/nginx
    local shim_env="" listen_opt="" ssl_opt=""
    local location=${KH_NGINX_LOCATION:-'return 200 "keyhold\n";'}
    if [ "${KH_NGINX_SHIM:-0}" = 1 ]; then
        shim_env=$'env KH_SHIM_CONTROL;\nenv KH_SHIM_LOG;\nenv KH_SHIM_MODULE;\n'
        listen_opt=" reuseport"
        ssl_opt=$'        ssl_session_cache off;\n        ssl_session_tickets off;\n'
    fi
    mkdir -p "$d/tmp" "$d/logs"
    cat >"$d/nginx.conf" <<NGX
user ${KH_NGINX_USER:-root};
worker_processes $workers;
daemon off;
master_process on;
pid $T/nginx.pid;
error_log $d/logs/error.log notice;
env SOFTHSM2_CONF;
${shim_env}events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path $d/tmp/body;
    proxy_temp_path $d/tmp/proxy;
    fastcgi_temp_path $d/tmp/fastcgi;
    uwsgi_temp_path $d/tmp/uwsgi;
    scgi_temp_path $d/tmp/scgi;
    server {
        listen 127.0.0.1:$port ssl$listen_opt;
        server_name localhost;
        ssl_certificate $cert;
        ssl_certificate_key $key;
        ssl_protocols TLSv1.2 TLSv1.3;
${ssl_opt}        location / { $location }
    }
}
NGX
    # Not registered with kh_bg: its cleanup would SIGKILL the master right
    # after SIGTERM and orphan the workers. kh_cleanup TERMs $T/nginx.pid,
    # and the master then stops its workers.
    if [ -n "$cnf" ]; then
        OPENSSL_CONF=$cnf nginx -p "$d" -e "$d/logs/error.log" -c "$d/nginx.conf" \
            >"$d/logs/stdout.log" 2>&1 </dev/null &
    else
        nginx -p "$d" -e "$d/logs/error.log" -c "$d/nginx.conf" \
            >"$d/logs/stdout.log" 2>&1 </dev/null &
    fi
    KH_NGINX_PID=$!
    local pid=$KH_NGINX_PID i
    for i in $(seq 1 100); do
        if [ -n "$(ss -Htln "sport = :$port")" ]; then return 0; fi
        if ! kill -0 "$pid" 2>/dev/null; then
            cat "$d/logs/stdout.log" "$d/logs/error.log" 2>/dev/null
            kh_fail "nginx exited before listening on $port"
        fi
        sleep 0.1
    done
    cat "$d/logs/error.log"
    kh_fail "nginx does not listen on $port"
}

# Stops the nginx of kh_nginx_start (fast shutdown) and waits, bounded,
# until the master and its workers are gone.
kh_nginx_stop() {
    local i
    [ -n "${KH_NGINX_PID:-}" ] || return 0
    kill "$KH_NGINX_PID" 2>/dev/null || true
    for i in $(seq 1 100); do
        kill -0 "$KH_NGINX_PID" 2>/dev/null || break
        sleep 0.1
    done
    wait "$KH_NGINX_PID" 2>/dev/null || true
    KH_NGINX_PID=
}

# Fails when any given file contains private key PEM or the string $2..:
#   kh_no_secrets FILE [STRING...]
kh_no_secrets() {
    local f=$1 s; shift
    if grep -q -- "PRIVATE KEY-----" "$f"; then kh_fail "$f contains a PRIVATE KEY block"; fi
    for s in "$@"; do
        if grep -qF -- "$s" "$f"; then kh_fail "$f contains a secret string"; fi
    done
}

# ---------------------------------------------------------------------------
# Fault shim (tests/p11shim, reliability tests r*). The shim is a PKCS#11
# module wrapping SoftHSM; tests load it instead of SoftHSM and steer it by
# rewriting its control file while the program under test runs. Rules are
# described in docs/reliability.md.
KH_SHIM=$BUILD/tests/libkhshim.so

# Exports the shim's control and log files ($T/shim.control, $T/shim.log).
kh_shim_setup() {
    kh_need "$KH_SHIM"
    export KH_SHIM_CONTROL=$T/shim.control KH_SHIM_LOG=$T/shim.log
    export KH_SHIM_MODULE=$SOFTHSM_MODULE
    : >"$KH_SHIM_CONTROL"
    : >"$KH_SHIM_LOG"
}

# Replaces the shim's rules atomically: kh_shim_set 'rule' ['rule'...].
# No argument: no faults. A rule's call counter restarts on every change.
kh_shim_set() {
    { printf '# %s\n' "$(date +%s%N)"; [ $# -eq 0 ] || printf '%s\n' "$@"; } \
        >"$KH_SHIM_CONTROL.tmp"
    mv -f "$KH_SHIM_CONTROL.tmp" "$KH_SHIM_CONTROL"
}

# Number of logged calls of a function, optionally with a given rv:
#   kh_shim_count C_Login [CKR_PIN_INCORRECT]
kh_shim_count() {
    local n
    n=$(grep -c -- "fn=$1 .*rv=${2:-CKR_}" "$KH_SHIM_LOG" 2>/dev/null) || true
    echo "${n:-0}"
}

# Forgets the calls logged so far (the shim appends, so truncating is safe).
kh_shim_log_reset() {
    : >"$KH_SHIM_LOG"
}

# A private-key URI that loads the key through the shim:
#   kh_shim_uri TOKEN KEYLABEL
kh_shim_uri() {
    echo "$(kh_p11_uri "$1" "$2")&module-path=$KH_SHIM"
}

# Waits (bounded, default 10 s) until the shim log has a line matching a
# regular expression: kh_shim_wait 'fn=C_Sign .* blocked' [TRIES]
kh_shim_wait() {
    local re=$1 tries=${2:-100} i
    for i in $(seq 1 "$tries"); do
        if grep -qE -- "$re" "$KH_SHIM_LOG" 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    kh_fail "the shim never logged '$re'"
}

# ---------------------------------------------------------------------------
# TPM helpers (tpm_* tests): a swtpm of the test's own, reached over its TCP
# socket without a resource manager (the hardest case: one connection at a
# time, three transient object slots).

# Starts swtpm on 127.0.0.1 (state in $T/tpm) and points keyhold,
# tpm2-tools and tpm2-openssl at it: exports KH_SWTPM_PORT, KEYHOLD_TPM_TCTI,
# TPM2TOOLS_TCTI, TPM2OPENSSL_TCTI. kh_swtpm_start [STATEDIR]
kh_swtpm_start() {
    KH_SWTPM_DIR=${1:-${KH_SWTPM_DIR:-$T/tpm}}
    mkdir -p "$KH_SWTPM_DIR"
    if [ -z "${KH_SWTPM_PORT:-}" ]; then
        # Below the ephemeral range (32768-): keyhold connects once per
        # operation, and a client socket in TIME-WAIT that happened to get
        # port P or P+1 as its own would stop swtpm (no SO_REUSEADDR) from
        # binding again after a restart.
        local i p
        for i in $(seq 1 200); do
            p=$(( 20000 + (RANDOM * 32768 + RANDOM) % 12000 ))
            kh_port_reserve "$p" || continue
            kh_port_reserve "$((p + 1))" || continue
            if ! ss -Htan "( sport = :$p or sport = :$((p + 1)) )" | kh_grepq .; then
                KH_SWTPM_PORT=$p
                break
            fi
        done
        [ -n "${KH_SWTPM_PORT:-}" ] || kh_fail "no two free ports for swtpm"
    fi
    kh_bg swtpm socket --tpm2 \
        --server "type=tcp,port=$KH_SWTPM_PORT,bindaddr=127.0.0.1" \
        --ctrl "type=tcp,port=$((KH_SWTPM_PORT + 1)),bindaddr=127.0.0.1" \
        --tpmstate "dir=$KH_SWTPM_DIR" --flags not-need-init,startup-clear \
        >>"$T/swtpm.log" 2>&1 </dev/null
    KH_SWTPM_PID=$KH_LAST_PID
    kh_wait_port "$KH_SWTPM_PORT"
    KEYHOLD_TPM_TCTI="swtpm:host=127.0.0.1,port=$KH_SWTPM_PORT"
    TPM2TOOLS_TCTI=$KEYHOLD_TPM_TCTI
    TPM2OPENSSL_TCTI=$KEYHOLD_TPM_TCTI
    # keyhold's per-TPM lock file (no resource manager) inside the test dir
    KEYHOLD_TPM_LOCK=$T/tpm.lock
    export KH_SWTPM_PORT KH_SWTPM_DIR KEYHOLD_TPM_TCTI TPM2TOOLS_TCTI TPM2OPENSSL_TCTI
    export KEYHOLD_TPM_LOCK
}

# Kills swtpm hard (kill -9, as a crash would) and waits until it is gone.
kh_swtpm_kill() {
    local i
    kill -9 "$KH_SWTPM_PID" 2>/dev/null || true
    for i in $(seq 1 100); do
        kill -0 "$KH_SWTPM_PID" 2>/dev/null || break
        sleep 0.05
    done
    for i in $(seq 1 100); do
        ss -Htln "sport = :$KH_SWTPM_PORT" | kh_grepq . || return 0
        sleep 0.05
    done
    kh_fail "swtpm still listens after kill -9"
}

# kill -9 and start again on the same port and state (a TPM reset).
kh_swtpm_restart() {
    kh_swtpm_kill
    kh_swtpm_start "$KH_SWTPM_DIR"
}

# The number of transient objects loaded in the TPM right now.
kh_tpm_transients() {
    tpm2_getcap handles-transient 2>/dev/null | grep -c '^- 0x' || true
}

# The TPM's dictionary-attack lockout counter (TPM2_PT_LOCKOUT_COUNTER).
kh_tpm_lockout_counter() {
    local v
    v=$(tpm2_getcap properties-variable | awk '/TPM2_PT_LOCKOUT_COUNTER/ { print $2 }')
    [ -n "$v" ] || kh_fail "tpm2_getcap shows no TPM2_PT_LOCKOUT_COUNTER"
    echo $((v))
}

# OpenSSL command-line flags for the peer provider tpm2-openssl, which in
# Debian's 1.1.1 must be asked for by property query.
KH_TPM2_PROV=(-provider tpm2 -provider default -propquery '?provider=tpm2')

# Reliability scenarios: a token 'appl' with a key 'srv' (id 01; default EC
# P-256, or e.g. rsa:2048), the test CA in $T/ca and a certificate for the
# key in $T/srv.pem (SAN localhost).
#   kh_r_token_key_cert [KEYTYPE]
kh_r_token_key_cert() {
    kh_softhsm_token appl
    kh_p11tool_keygen appl srv 01 "${1:-EC:prime256v1}"
    kh_test_ca "$T/ca"
    kh_p11_cert "$T/ca" appl 01 "$T/srv.pem"
}

# One TLS handshake by s_client against 127.0.0.1:PORT verifying the chain to
# the test CA; returns non-zero when it fails. Output in $T/hs.out.
#   kh_r_handshake PORT [s_client args...]
kh_r_handshake() {
    local port=$1; shift
    timeout 30 openssl s_client -connect "127.0.0.1:$port" -servername localhost \
        -verify_return_error -CAfile "$T/ca/ca.pem" "$@" </dev/null >"$T/hs.out" 2>&1 \
        && grep -q "Verify return code: 0 (ok)" "$T/hs.out"
}

# Fails unless process PID is still running (the server survived a fault).
kh_r_alive() {
    kill -0 "$1" 2>/dev/null || kh_fail "${2:-server} (pid $1) is gone"
}

# A free TCP port below the kernel's ephemeral range (so no client socket,
# not even one in TIME-WAIT, holds it) and unused in any state.
kh_r_port() {
    local i p lo
    lo=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
    for i in $(seq 1 200); do
        p=$(( 20000 + (RANDOM * 32768 + RANDOM) % (lo - 20000) ))
        if ! ss -Htan "sport = :$p" | kh_grepq .; then echo "$p"; return 0; fi
    done
    kh_fail "no free port"
}

# Like kh_expect_output, but the string must be in a line keyhold raised
# (its error-queue entries carry "keyhold:"), not in openssl's echo of its
# own arguments.
kh_expect_keyhold() {
    grep -F "keyhold" "${2:-$T/must_fail.out}" | grep -iF -- "$1" >/dev/null \
        || kh_fail "no keyhold error mentions '$1'"
}

# Renewal against a CA that issues a bad certificate (keyhold-estd's test
# knob): refused with the expected reason, the old identity kept and still
# working, the failure and the next attempt recorded in status. Needs
# est_lib.sh and an enrolled identity; restarts keyhold-estd.
#   kh_r_renew_refused NAME ESTD-TEST-ISSUE REASON-REGEX
kh_r_renew_refused() {
    local name=$1 mode=$2 re=$3 fp rc=0
    fp=$(kh_est_cert_fp "$name")
    kh_estd_stop
    kh_estd_start --test-issue "$mode"
    # The restarted server listens on a new port: point the identity at it.
    sed -i "s|^est-url = .*|est-url = $KH_ESTD_URL/.well-known/est|" "$KEYHOLD_CONF_DIR/$name.conf"
    "$KEYHOLD" renew "$name" --force >"$T/renew.$mode.out" 2>&1 || rc=$?
    cat "$T/renew.$mode.out"
    [ "$rc" = 2 ] || kh_fail "$mode: renew exited $rc (want 2, certificate refused)"
    grep -qiE -- "$re" "$T/renew.$mode.out" || kh_fail "$mode: the refusal does not name '$re'"
    [ "$(kh_est_cert_fp "$name")" = "$fp" ] || kh_fail "$mode: the installed certificate changed"
    kh_est_works "$name"
    "$KEYHOLD" status "$name" --json >"$T/status.$mode.json" || true
    jq -e '.[0].last_error | strings | length > 0' "$T/status.$mode.json" >/dev/null \
        || { cat "$T/status.$mode.json"; kh_fail "$mode: status shows no last_error"; }
    jq -e '.[0].next_attempt | (strings or numbers)' "$T/status.$mode.json" >/dev/null \
        || { cat "$T/status.$mode.json"; kh_fail "$mode: status shows no next attempt"; }
    kh_log "$mode: refused ($re), old identity kept, retry scheduled"
}

# Restarts keyhold-estd with extra arguments and points identity NAME at it
# (a restarted server listens on a new port): kh_r_estd_restart NAME ARGS...
kh_r_estd_restart() {
    local name=$1; shift
    kh_estd_stop
    kh_estd_start "$@"
    sed -i "s|^est-url = .*|est-url = $KH_ESTD_URL/.well-known/est|" "$KEYHOLD_CONF_DIR/$name.conf"
}

# Reliability scenarios with a server under faults: kh_r_token_key_cert,
# the fault shim, and openssl s_server loading the key through the shim on
# a free port; its first handshake must succeed. Sets port and srv (the
# server's pid).
#   kh_r_shim_server
kh_r_shim_server() {
    kh_need "$BUILD/keyhold.so" "$KH_SHIM"
    kh_r_token_key_cert
    kh_shim_setup
    port=$(kh_r_port)
    kh_s_server "$port" -key "$(kh_shim_uri appl srv)" -cert "$T/srv.pem" "${KH_PROV[@]}"
    srv=$KH_LAST_PID
    kh_r_handshake "$port" -tls1_3 || { cat "$T/hs.out"; kh_fail "first handshake failed"; }
}

# A fault the provider must recover from: the shim's log is reset, its
# rules set, and a TLS 1.3 handshake against PORT must still complete.
#   kh_r_recovers PORT WHAT RULE...   (fails with "no recovery from WHAT")
kh_r_recovers() {
    local port=$1 what=$2; shift 2
    kh_shim_log_reset
    kh_shim_set "$@"
    kh_r_handshake "$port" -tls1_3 || { cat "$T/hs.out"; kh_fail "no recovery from $what"; }
}

# A fault the handshake cannot survive: the shim's log is reset, its rules
# set, and a TLS 1.3 handshake against PORT must fail cleanly, with the
# server SRV-PID still alive afterwards.
#   kh_r_refused PORT SRV-PID WHEN RULE...  (fails with "handshake succeeded WHEN")
kh_r_refused() {
    local port=$1 pid=$2 when=$3; shift 3
    kh_shim_log_reset
    kh_shim_set "$@"
    if kh_r_handshake "$port" -tls1_3; then kh_fail "handshake succeeded $when"; fi
    kh_r_alive "$pid" s_server
}

# The appliance of the enrolment scenarios (CMP, SCEP): KEYHOLD_CONF_DIR and
# KEYHOLD_STATE_DIR under $T, and a SoftHSM token "app" made by `keyhold
# token init` with the user PIN 1111 in $T/app.pin and the SO PIN 2222 in
# $T/app.so. kh_enrol_appliance [MORE-NEEDED-FILES...]
kh_enrol_appliance() {
    export KEYHOLD_CONF_DIR=$T/conf KEYHOLD_STATE_DIR=$T/state
    kh_need "$KEYHOLD" "$BUILD/keyhold.so" "$@"
    mkdir -p "$KEYHOLD_CONF_DIR" "$KEYHOLD_STATE_DIR"
    kh_softhsm_setup
    (umask 077; printf '1111' >"$T/app.pin"; printf '2222' >"$T/app.so")
    "$KEYHOLD" token init --label app --pin-file "$T/app.pin" --so-pin-file "$T/app.so" \
        >/dev/null || kh_fail "token init"
}

# An openssl s_server (kh_s_server) with the given arguments on a free
# port, loaded with OPENSSL_CONF=CNF when CNF is not empty (the clients
# never see it), checked by kh_tls_clients with TLS 1.3 and 1.2 against
# the test CA in $T/ca, then stopped.
#   kh_tls_serve_both CNF|"" [s_server args...]
kh_tls_serve_both() {
    local cnf=$1 port; shift
    port=$(kh_free_port)
    if [ -n "$cnf" ]; then
        OPENSSL_CONF=$cnf kh_s_server "$port" "$@"
    else
        kh_s_server "$port" "$@"
    fi
    kh_tls_clients "$port" "$T/ca/ca.pem" 1.3
    kh_tls_clients "$port" "$T/ca/ca.pem" 1.2
    kill "$KH_LAST_PID"; wait "$KH_LAST_PID" 2>/dev/null || true
}

# Token "tok" with keys made by pkcs11-tool, each given as LABEL ID TYPE
# (kh_p11tool_keygen's arguments), and each key's public half read from the
# token into $T/LABEL.pub.pem.
#   kh_p11_tok_keys LABEL ID TYPE [LABEL ID TYPE...]
kh_p11_tok_keys() {
    kh_softhsm_token tok
    while [ $# -ge 3 ]; do
        kh_p11tool_keygen tok "$1" "$2" "$3"
        kh_p11_pubkey tok "$2" "$T/$1.pub.pem"
        shift 3
    done
}

# A certificate from the test CA (kh_test_ca) for the public key in PUB
# (PEM), made without the private key's help (-force_pubkey); non-zero when
# the CA could not sign. kh_p11_cert uses it for token keys.
#   kh_pub_cert CADIR PUB OUT [SAN] [CN]
kh_pub_cert() {
    local d=$1 pub=$2 out=$3 san=${4:-DNS:localhost} cn=${5:-localhost} rc=0
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout /dev/null -subj "/CN=$cn" -out "$T/cert.$$.csr" 2>/dev/null
    KH_SAN=$san openssl x509 -req -in "$T/cert.$$.csr" -force_pubkey "$pub" \
        -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial -days 7 \
        -extfile "$d/ext-server.cnf" -out "$out" 2>/dev/null || rc=$?
    rm -f "$T/cert.$$.csr"
    return $rc
}
