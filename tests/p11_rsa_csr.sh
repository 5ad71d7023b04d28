#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# X.509 signing with an RSA token key: CSRs with sha256WithRSAEncryption and
# with RSASSA-PSS (parameters in the algorithm identifier) verify, and the
# token key as a CA issues a certificate that `openssl verify` accepts.
. "$(dirname "$0")/lib.sh"
kh_need "$BUILD/keyhold.so"

kh_softhsm_token tok
kh_p11tool_keygen tok rsa2048 01 rsa:2048
uri=$(kh_p11_uri tok rsa2048)

kh_log "CSR with PKCS#1 v1.5 / SHA-256"
openssl req -new -key "$uri" "${KH_PROV[@]}" -subj /CN=localhost -out "$T/p1.csr"
openssl req -in "$T/p1.csr" -verify -noout || kh_fail "PKCS#1 CSR does not verify"
openssl req -in "$T/p1.csr" -noout -text | grep "sha256WithRSAEncryption" >/dev/null \
    || kh_fail "not sha256WithRSAEncryption"

kh_log "CSR with RSA-PSS / SHA-384, salt = digest length"
openssl req -new -key "$uri" "${KH_PROV[@]}" -subj /CN=localhost -sha384 \
    -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:digest -out "$T/pss.csr"
openssl req -in "$T/pss.csr" -verify -noout || kh_fail "PSS CSR does not verify"
openssl req -in "$T/pss.csr" -noout -text >"$T/pss.txt"
grep -q "rsassaPss" "$T/pss.txt" || kh_fail "not RSASSA-PSS"
grep -q "Salt Length: 0x30" "$T/pss.txt" || { cat "$T/pss.txt"; kh_fail "PSS salt is not 48"; }

kh_log "the token key as a CA"
openssl req -new -x509 -key "$uri" "${KH_PROV[@]}" -days 7 -subj "/CN=keyhold RSA token CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" \
    -out "$T/ca.pem"
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/leaf.key" \
    -subj /CN=leaf -out "$T/leaf.csr" 2>/dev/null
openssl x509 -req -in "$T/leaf.csr" -CA "$T/ca.pem" -CAkey "$uri" "${KH_PROV[@]}" \
    -CAserial "$T/ca.srl" -CAcreateserial -days 7 -out "$T/leaf.pem"
openssl verify -CAfile "$T/ca.pem" "$T/leaf.pem" || kh_fail "issued certificate does not verify"
kh_log "must fail: the leaf does not verify against another CA"
kh_test_ca "$T/other" rsa
kh_must_fail openssl verify -CAfile "$T/other/ca.pem" "$T/leaf.pem"
kh_log "RSA CSRs (PKCS#1 v1.5, PSS) and certificates signed in the token verify"
