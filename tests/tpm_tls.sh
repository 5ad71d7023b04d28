#!/bin/bash
# SPDX-License-Identifier: MIT
# TLS 1.3 and 1.2 handshakes with keys in the TPM (swtpm, no resource
# manager): openssl s_server with an ECDSA P-256 key file (-key FILE) and an
# RSA-2048 persistent key (TLS 1.3 = RSA-PSS with salt = digest length), checked by
# three independent clients (s_client, curl, gnutls-cli); then nginx with
# two workers reading the TSS2 PRIVATE KEY file itself as
# ssl_certificate_key (keyhold's decoder, provider activated from
# openssl.cnf, workers without the TCTI environment).
. "$(dirname "$0")/lib.sh"
kh_need "$BUILD/keyhold.so" "$BUILD/keyhold-tpm"
kh_swtpm_start
kh_test_ca "$T/ca"

KT=$BUILD/keyhold-tpm
"$KT" create --alg ec-p256 --out "$T/ec.tss" --pub-out "$T/ec.pub"
"$KT" create --alg rsa-2048 --persistent 0x81000030 --pub-out "$T/rsa.pub"
"$KT" create --alg rsa-2048 --out "$T/rsa.tss" --pub-out "$T/rsa-file.pub"

# Certificates from the test CA for the public keys (the CA never sees
# the private keys).
for k in ec rsa rsa-file; do
    kh_pub_cert "$T/ca" "$T/$k.pub" "$T/$k.crt" || kh_fail "test CA could not certify $k.pub"
done

# The EC key is given as the key file itself (OSSL_STORE file: loader and
# keyhold's TSS2 decoder), the RSA key by its persistent handle.
filecnf=$T/filekeys.cnf
KH_CNF_EXTRA="store-key-files = 1" kh_openssl_cnf last >/dev/null
mv "$T/openssl.cnf" "$filecnf"
for spec in "ec:$T/ec.tss" "rsa:tpm2:handle=0x81000030"; do
    name=${spec%%:*}
    uri=${spec#*:}
    port=$(kh_free_port)
    if [ "$name" = ec ]; then
        # A plain key file for the openssl commands (OSSL_STORE file:)
        # needs store-key-files = 1 in keyhold's openssl.cnf section.
        OPENSSL_CONF=$filecnf kh_s_server "$port" -key "$uri" -cert "$T/$name.crt"
    else
        kh_s_server "$port" "${KH_PROV[@]}" -key "$uri" -cert "$T/$name.crt"
    fi
    kh_tls_clients "$port" "$T/ca/ca.pem" 1.3
    kh_tls_clients "$port" "$T/ca/ca.pem" 1.2
    kill "$KH_LAST_PID"
    wait "$KH_LAST_PID" 2>/dev/null || true
    kh_log "s_server with $name key in the TPM: TLS 1.3 and 1.2 ok"
done
[ "$(kh_tpm_transients)" = 0 ] || kh_fail "transients left: $(tpm2_getcap handles-transient)"

# nginx: the key file itself as ssl_certificate_key, two workers taking turns
# on a TPM that serves one connection at a time.
cnf=$(kh_openssl_cnf last)
port=$(kh_free_port)
OPENSSL_CONF=$cnf kh_nginx_start "$port" "$T/rsa-file.crt" "$T/rsa.tss" "$cnf" 2
for i in 1 2 3; do
    kh_tls_clients "$port" "$T/ca/ca.pem" 1.3
done
kh_tls_clients "$port" "$T/ca/ca.pem" 1.2
kh_nginx_stop
kh_log "nginx with a TSS2 PRIVATE KEY file: TLS 1.3 and 1.2 ok"
