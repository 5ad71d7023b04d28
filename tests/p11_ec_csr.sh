#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# X.509 signing with token keys (X509_REQ_sign_ctx / X509_sign_ctx need the
# provider's algorithm identifiers): `openssl req -new -key pkcs11:...`
# makes CSRs with ECDSA P-256 (SHA-256) and P-384 (SHA-384) signatures that
# verify, and a token-held CA key issues a certificate that `openssl
# verify` accepts.
. "$(dirname "$0")/lib.sh"
kh_need "$BUILD/keyhold.so"

kh_softhsm_token tok
kh_p11tool_keygen tok ec256 01 EC:prime256v1
kh_p11tool_keygen tok ca384 02 EC:secp384r1

kh_log "CSR signed by the P-256 token key"
openssl req -new -key "$(kh_p11_uri tok ec256)" "${KH_PROV[@]}" -subj /CN=localhost \
    -addext "subjectAltName=DNS:localhost" -out "$T/ec.csr"
openssl req -in "$T/ec.csr" -verify -noout || kh_fail "CSR does not verify"
openssl req -in "$T/ec.csr" -noout -text | grep "ecdsa-with-SHA256" >/dev/null || kh_fail "not ecdsa-with-SHA256"

kh_log "self-signed CA certificate with the P-384 token key, SHA-384"
openssl req -new -x509 -key "$(kh_p11_uri tok ca384)" "${KH_PROV[@]}" -sha384 -days 7 \
    -subj "/CN=keyhold token CA" -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" -out "$T/ca.pem"
openssl x509 -in "$T/ca.pem" -noout -text | grep "ecdsa-with-SHA384" >/dev/null || kh_fail "not ecdsa-with-SHA384"

kh_log "the token CA issues a certificate for the CSR"
printf 'basicConstraints=critical,CA:FALSE\nsubjectAltName=DNS:localhost\n' >"$T/ext.cnf"
openssl x509 -req -in "$T/ec.csr" -CA "$T/ca.pem" -CAkey "$(kh_p11_uri tok ca384)" "${KH_PROV[@]}" \
    -CAcreateserial -CAserial "$T/ca.srl" -days 7 -sha384 -extfile "$T/ext.cnf" -out "$T/leaf.pem"
openssl verify -CAfile "$T/ca.pem" "$T/leaf.pem" || kh_fail "issued certificate does not verify"

kh_log "must fail: the leaf does not verify against another CA"
kh_test_ca "$T/other"
kh_must_fail openssl verify -CAfile "$T/other/ca.pem" "$T/leaf.pem"
kh_log "CSRs and certificates signed in the token verify"
