#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The host name must be in the CN or a DNS SAN (either is enough); IP
# identities need an IP SAN; a certificate without it is refused by the
# host check. KU/EKU: no serverAuth, or CA:TRUE, is refused by the usage check.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cli_lib.inc"

kh_cli_env
kh_cli_identity rec cam1.example.com
snap=$(kh_cli_snapshot rec)

kh_ca_sign "$T/ca" "$T/rec.csr" "$T/wrong.pem" "DNS:other.example.com"
# CN in the CSR is cam1.example.com: a cert with another CN and SAN
openssl x509 -req -in "$T/rec.csr" -CA "$T/ca/ca.pem" -CAkey "$T/ca/ca.key" -CAcreateserial \
    -days 7 -subj "/CN=other.example.com" -extfile <(printf 'subjectAltName=DNS:other.example.com\nextendedKeyUsage=serverAuth\n') \
    -out "$T/wrong2.pem" 2>/dev/null || cp "$T/wrong.pem" "$T/wrong2.pem"
kh_must_fail_clean 2 -- "$KEYHOLD" install rec "$T/wrong2.pem"
kh_expect_output "host check failed"
kh_expect_output "cam1.example.com"
kh_cli_still_works rec "$snap"

kh_log "CN only (no SAN) is enough for a DNS name"
openssl x509 -req -in "$T/rec.csr" -CA "$T/ca/ca.pem" -CAkey "$T/ca/ca.key" -CAcreateserial \
    -days 7 -extfile <(printf 'extendedKeyUsage=serverAuth\n') -out "$T/cnonly.pem" 2>/dev/null
"$KEYHOLD" install rec "$T/cnonly.pem" --no-reload || kh_fail "CN-only refused"
snap=$(kh_cli_snapshot rec)

kh_log "usage: no serverAuth, CA:TRUE"
openssl x509 -req -in "$T/rec.csr" -CA "$T/ca/ca.pem" -CAkey "$T/ca/ca.key" -CAcreateserial \
    -days 7 -extfile <(printf 'subjectAltName=DNS:cam1.example.com\nextendedKeyUsage=clientAuth\n') \
    -out "$T/noserver.pem" 2>/dev/null
kh_must_fail_clean 2 -- "$KEYHOLD" install rec "$T/noserver.pem"
kh_expect_output "serverAuth"
openssl x509 -req -in "$T/rec.csr" -CA "$T/ca/ca.pem" -CAkey "$T/ca/ca.key" -CAcreateserial \
    -days 7 -extfile <(printf 'subjectAltName=DNS:cam1.example.com\nbasicConstraints=critical,CA:TRUE\n') \
    -out "$T/isca.pem" 2>/dev/null
kh_must_fail_clean 2 -- "$KEYHOLD" install rec "$T/isca.pem"
kh_expect_output "CA:TRUE"
kh_cli_still_works rec "$snap"

kh_log "wildcards: one whole leftmost label only"
for pat in "*.com" "c*.example.com" "*.*.example.com" "*.cam1.example.com"; do
    openssl x509 -req -in "$T/rec.csr" -CA "$T/ca/ca.pem" -CAkey "$T/ca/ca.key" -CAcreateserial \
        -days 7 -subj "/CN=wild" -extfile <(printf 'subjectAltName=DNS:%s\n' "$pat") \
        -out "$T/wild.pem" 2>/dev/null
    kh_must_fail_clean 2 -- "$KEYHOLD" install rec "$T/wild.pem" --no-reload
    kh_expect_output "host check failed"
done
kh_cli_still_works rec "$snap"
openssl x509 -req -in "$T/rec.csr" -CA "$T/ca/ca.pem" -CAkey "$T/ca/ca.key" -CAcreateserial \
    -days 7 -subj "/CN=wild" -extfile <(printf 'subjectAltName=DNS:*.EXAMPLE.com\n') \
    -out "$T/wild.pem" 2>/dev/null
"$KEYHOLD" install rec "$T/wild.pem" --no-reload >/dev/null || kh_fail "*.example.com refused"
"$KEYHOLD" verify rec >/dev/null || kh_fail "verify with a wildcard"

kh_log "IP identity needs an IP SAN"
kh_cli_provision cam 192.168.7.9
kh_ca_sign "$T/ca" "$T/cam.csr" "$T/cam-dns.pem" "DNS:cam.example.com"
kh_must_fail_clean 2 -- "$KEYHOLD" install cam "$T/cam-dns.pem" --ca "$T/ca/ca.pem"
kh_expect_output "ip:192.168.7.9"
kh_ca_sign "$T/ca" "$T/cam.csr" "$T/cam-ip.pem" "IP:192.168.7.9"
"$KEYHOLD" install cam "$T/cam-ip.pem" --ca "$T/ca/ca.pem" || kh_fail "IP SAN refused"
"$KEYHOLD" verify cam >/dev/null || kh_fail "verify IP identity"
kh_log "ok"
