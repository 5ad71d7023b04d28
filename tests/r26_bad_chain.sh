#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Scenario 26: at renewal the CA returns a certificate that is expired, not
# yet valid, from another (untrusted) CA, a CA certificate, or without
# serverAuth -> each refused with its own reason, the old identity kept.
# An incomplete chain is refused at install.
# timeout: 300
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/est_lib.sh"

kh_est_cam
kh_r_renew_refused cam expired 'has expired'
kh_r_renew_refused cam not-yet-valid 'not yet valid'
kh_r_renew_refused cam other-ca 'does not chain'
kh_r_renew_refused cam ca-true 'CA:TRUE'
kh_r_renew_refused cam no-server-auth 'lacks serverAuth'

# Incomplete chain: a certificate from an intermediate of the trusted CA,
# installed without the intermediate -> refused; with it -> accepted.
fp=$(kh_est_cert_fp cam)
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/int.key" \
    -subj "/CN=keyhold test intermediate" -out "$T/int.csr" 2>/dev/null
printf 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign\n' >"$T/int.ext"
openssl x509 -req -in "$T/int.csr" -CA "$KH_ESTD_DIR/ca.pem" -CAkey "$KH_ESTD_CA_KEY" \
    "${KH_PROV[@]}" -CAcreateserial -days 30 -extfile "$T/int.ext" -out "$T/int.pem" 2>/dev/null \
    || kh_fail "the token CA could not sign an intermediate"
"$KEYHOLD" csr cam -o "$T/cam.csr" >/dev/null || kh_fail "keyhold csr"
printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=DNS:cam1.example\n' >"$T/leaf.ext"
openssl x509 -req -in "$T/cam.csr" -CA "$T/int.pem" -CAkey "$T/int.key" -CAcreateserial \
    -days 7 -extfile "$T/leaf.ext" -out "$T/leaf.pem" 2>/dev/null || kh_fail "intermediate signing"
kh_must_fail_clean 2 -- "$KEYHOLD" install cam "$T/leaf.pem" --no-reload
kh_expect_output "does not chain"
[ "$(kh_est_cert_fp cam)" = "$fp" ] || kh_fail "incomplete chain: the identity changed"
kh_est_works cam
"$KEYHOLD" install cam "$T/leaf.pem" --chain "$T/int.pem" --no-reload >/dev/null \
    || kh_fail "the complete chain was refused"
kh_est_works cam
kh_log "incomplete chain: refused; complete chain: accepted"
kh_log "scenario 26 ok"
