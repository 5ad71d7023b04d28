# SPDX-License-Identifier: MIT
# Helpers for the EST scenarios (tests/est_*.sh), sourced after lib.sh:
# a real keyhold-estd on 127.0.0.1 whose issuing CA key lives in a SoftHSM
# token (used through the keyhold provider), and SoftHSM identities that
# enrol against it. Not executable: tests/run does not run it.

KH_ESTD_DIR=$T/estd
export KEYHOLD_CONF_DIR=$T/conf KEYHOLD_STATE_DIR=$T/state

# The CA (key in token "estca"), a software TLS CA + server certificate for
# localhost/127.0.0.1, an htpasswd with user dev1 (password in
# $KH_ESTD_DIR/dev1.pw), all valid for years so faketime can move ahead.
kh_estd_setup() {
    local d=$KH_ESTD_DIR
    kh_need "$KEYHOLD" "$KEYHOLD_ESTD" "$BUILD/keyhold.so"
    mkdir -p "$d" "$KEYHOLD_CONF_DIR" "$KEYHOLD_STATE_DIR"
    [ -n "${SOFTHSM2_CONF:-}" ] || kh_softhsm_setup
    kh_softhsm_token estca 1234 5678
    kh_p11tool_keygen estca ca 01 EC:prime256v1
    KH_ESTD_CA_KEY="pkcs11:token=estca;object=ca;type=private?pin-source=file:$T/estca.pin"
    openssl req -new -x509 "${KH_PROV[@]}" -key "$KH_ESTD_CA_KEY" \
        -subj "/CN=keyhold EST test CA" -days 3650 \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" -out "$d/ca.pem" \
        || kh_fail "the token CA key could not sign its own certificate"
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$d/tls-ca.key" 2>/dev/null
    openssl req -new -x509 -key "$d/tls-ca.key" -subj "/CN=keyhold EST TLS CA" -days 3650 \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" \
        -out "$d/tls-ca.pem" 2>/dev/null
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$d/tls.key" \
        -subj "/CN=localhost" -out "$d/tls.csr" 2>/dev/null
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >"$d/tls.ext"
    openssl x509 -req -in "$d/tls.csr" -CA "$d/tls-ca.pem" -CAkey "$d/tls-ca.key" \
        -CAcreateserial -days 3650 -extfile "$d/tls.ext" -out "$d/tls.pem" 2>/dev/null
    printf 'secret-dev1\n' | "$KEYHOLD_ESTD" --hash-password | sed 's/^/dev1:/' >"$d/htpasswd"
    (umask 077; printf 'secret-dev1' >"$d/dev1.pw")
}

# Starts keyhold-estd on a free port (the same one again after a stop) with
# extra arguments; sets
# KH_ESTD_PORT, KH_ESTD_URL, KH_ESTD_PID. Log: $KH_ESTD_DIR/estd.log.
kh_estd_start() {
    local d=$KH_ESTD_DIR i
    KH_ESTD_PORT=${KH_ESTD_PORT:-$(kh_free_port)}   # a restart keeps the port
    kh_bg "$KEYHOLD_ESTD" --listen "127.0.0.1:$KH_ESTD_PORT" \
        --tls-cert "$d/tls.pem" --tls-key "$d/tls.key" \
        --ca-cert "$d/ca.pem" --ca-key "$KH_ESTD_CA_KEY" \
        --htpasswd "$d/htpasswd" --log "$d/estd.log" "$@"
    KH_ESTD_PID=$KH_LAST_PID
    for i in $(seq 1 100); do
        if ss -Htln "sport = :$KH_ESTD_PORT" | kh_grepq .; then
            KH_ESTD_URL=https://localhost:$KH_ESTD_PORT
            return 0
        fi
        kill -0 "$KH_ESTD_PID" 2>/dev/null || { cat "$d/estd.log"; kh_fail "keyhold-estd exited"; }
        sleep 0.1
    done
    cat "$d/estd.log"
    kh_fail "keyhold-estd does not listen"
}

kh_estd_stop() {
    local i
    kill "$KH_ESTD_PID" 2>/dev/null || true
    for i in $(seq 1 100); do
        kill -0 "$KH_ESTD_PID" 2>/dev/null || break
        sleep 0.1
    done
}

# A fresh identity in token "app" (created on first use):
#   kh_est_identity NAME HOST [provision args...]
kh_est_identity() {
    local name=$1 host=$2; shift 2
    if [ ! -f "$T/app.pin" ]; then
        (umask 077; printf '1111' >"$T/app.pin"; printf '2222' >"$T/app.so")
        "$KEYHOLD" token init --label app --pin-file "$T/app.pin" \
            --so-pin-file "$T/app.so" >/dev/null || kh_fail "token init"
    fi
    "$KEYHOLD" provision "$name" --token app --alg ec-p256 --host "$host" \
        --pin-file "$T/app.pin" "$@" >/dev/null || kh_fail "provision $name"
}

# First enrolment with basic auth against the running keyhold-estd:
#   kh_est_enroll NAME [more enroll args...]
kh_est_enroll() {
    local name=$1; shift
    "$KEYHOLD" enroll "$name" --est "$KH_ESTD_URL" --server-ca "$KH_ESTD_DIR/tls-ca.pem" \
        --ca "$KH_ESTD_DIR/ca.pem" --user dev1 --password-file "$KH_ESTD_DIR/dev1.pw" "$@"
}

# SHA-256 fingerprint of the identity's installed certificate.
kh_est_cert_fp() {
    openssl x509 -in "$KEYHOLD_STATE_DIR/$1/cert.pem" -noout -fingerprint -sha256 | cut -d= -f2
}

# The identity works: keyhold verify and the symlinked files agree.
kh_est_works() {
    "$KEYHOLD" verify "$1" >/dev/null || kh_fail "keyhold verify $1 fails"
}

# The usual start of an EST scenario: keyhold-estd set up and running, and
# identity "cam" (host cam1.example, more provision args if given) enrolled;
# the enrolment's output is in $T/enroll.out and shown when it fails.
#   kh_est_cam [PROVISION-ARGS...]
kh_est_cam() {
    kh_estd_setup
    kh_estd_start
    kh_est_identity cam cam1.example "$@"
    kh_est_enroll cam >"$T/enroll.out" 2>&1 || { cat "$T/enroll.out"; kh_fail "enroll"; }
}
