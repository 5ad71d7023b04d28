#!/bin/bash
# SPDX-License-Identifier: MIT
# nginx with 4 workers and a TPM key file (ssl_certificate_key = the TSS2
# PRIVATE KEY file, keyhold from openssl.cnf, workers without the TCTI in
# their environment) on swtpm without a resource manager: 3 clients x 20
# handshakes at once, all succeed; the workers take turns on the TPM under
# keyhold's lock and leave no transient object behind.
. "$(dirname "$0")/lib.sh"
kh_need "$BUILD/keyhold.so" "$BUILD/keyhold-tpm"
kh_swtpm_start
kh_test_ca "$T/ca"
"$BUILD/keyhold-tpm" create --alg ec-p256 --out "$T/k.tss" --pub-out "$T/k.pub"
kh_pub_cert "$T/ca" "$T/k.pub" "$T/k.crt" || kh_fail "test CA could not certify the TPM key"
cnf=$(kh_openssl_cnf last)
port=$(kh_free_port)
OPENSSL_CONF=$cnf kh_nginx_start "$port" "$T/k.crt" "$T/k.tss" "$cnf" 4

client() {
    local i
    for i in $(seq 1 20); do
        curl -sS --fail --max-time 20 --cacert "$T/ca/ca.pem" --tlsv1.3 \
            --resolve "localhost:$port:127.0.0.1" "https://localhost:$port/" >/dev/null \
            || { echo "client $1: handshake $i failed"; return 1; }
    done
}
pids=()
for c in 1 2 3; do
    client "$c" >"$T/client$c.out" 2>&1 &
    pids+=($!)
done
for c in 1 2 3; do
    wait "${pids[$((c - 1))]}" || { cat "$T/client$c.out" "$T/nginx/logs/error.log"; kh_fail "client $c"; }
done
kh_nginx_stop
[ "$(kh_tpm_transients)" = 0 ] || kh_fail "transients left: $(tpm2_getcap handles-transient)"
kh_log "nginx, 4 workers: 60 concurrent TLS 1.3 handshakes with a TPM key, none failed"
