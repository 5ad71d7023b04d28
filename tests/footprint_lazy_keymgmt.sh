#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# key-files = no (footprint, docs/performance.md): keyhold loaded from openssl.cnf for
# programs that use keys only by URI. A pkcs11: URI key serves TLS
# (s_server -key pkcs11:..., clients openssl s_client, curl, gnutls-cli)
# and `openssl pkey -in pkcs11:... -pubout` works; a key reference file is
# refused, with an error that says no decoder took it. A process that only
# parses certificates never sees keyhold's keymgmt (so OpenSSL 3.0's
# per-certificate keymgmt walk does not pay for it); it appears with the
# first URI load; the same for a tpm2: URI (swtpm). With the default
# (key-files unset or yes) the key reference file works as before.
. "$(dirname "$0")/lib.sh"
kh_need "$BUILD/keyhold.so" "$BUILD/keyhold-tpm" "$BUILD/tests/kh-keyref" \
    "$BUILD/tests/kh-lazykm"

kh_p11_tok_keys ec256 01 EC:prime256v1
kh_test_ca "$T/ca"
kh_p11_cert "$T/ca" tok 01 "$T/cert.pem"
uri=$(kh_p11_uri tok ec256)
"$BUILD/tests/kh-keyref" "$uri" >"$T/key.pem"

for order in first last; do
    cnf=$(KH_CNF_EXTRA="key-files = no" kh_openssl_cnf $order)
    cp "$cnf" "$T/lazy.cnf"

    kh_log "key-files = no, keyhold $order: certificates alone never see keyhold's keymgmt"
    OPENSSL_CONF=$T/lazy.cnf "$BUILD/tests/kh-lazykm" "$T/ca/ca.pem" \
        >"$T/km.out" || kh_fail "kh-lazykm (certificate only) failed"
    cat "$T/km.out"
    grep -qx "keyhold keymgmts before: 0" "$T/km.out" \
        || kh_fail "keyhold keymgmt visible before any keyhold use"

    kh_log "key-files = no, keyhold $order: ... and sees it after a pkcs11: URI load"
    OPENSSL_CONF=$T/lazy.cnf "$BUILD/tests/kh-lazykm" "$T/ca/ca.pem" "$uri" \
        >"$T/km.out" || kh_fail "kh-lazykm with the URI failed"
    cat "$T/km.out"
    grep -qx "keyhold keymgmts before: 0" "$T/km.out" \
        || kh_fail "keyhold keymgmt visible before the URI load"
    grep -qx "key: ok" "$T/km.out" || kh_fail "no signature by the URI key"
    grep -qx "keyhold keymgmts after: 2" "$T/km.out" \
        || kh_fail "keyhold's RSA and EC keymgmt not offered after the URI load"
    # the documented limit: "provider=keyhold" key generation only after it
    grep -qx "keyhold keygen before: 0" "$T/km.out" \
        || kh_fail "provider=keyhold keygen worked before any keyhold use"
    grep -qx "keyhold keygen after: 1" "$T/km.out" \
        || kh_fail "provider=keyhold keygen fails after the URI load"

    kh_log "key-files = no, keyhold $order: openssl pkey -in pkcs11:... -pubout"
    OPENSSL_CONF=$T/lazy.cnf openssl pkey -in "$uri" -pubout -out "$T/exp.pem" \
        || kh_fail "pkey cannot load the pkcs11: URI"
    cmp <(openssl pkey -pubin -in "$T/exp.pem" -outform DER) \
        <(openssl pkey -pubin -in "$T/ec256.pub.pem" -outform DER) \
        || kh_fail "wrong public key from the URI"

    kh_log "key-files = no, keyhold $order: s_server -key pkcs11:... serves TLS 1.3 and 1.2"
    kh_tls_serve_both "$T/lazy.cnf" -cert "$T/cert.pem" -key "$uri"

    kh_log "key-files = no, keyhold $order: a key reference file is refused"
    kh_must_fail_clean env OPENSSL_CONF="$T/lazy.cnf" \
        openssl pkey -in "$T/key.pem" -pubout
    grep -q "unsupported" "$T/must_fail.out" \
        || kh_fail "the refusal does not say the key file is unsupported"
    # read as servers read ssl_certificate_key (PEM_read_bio_PrivateKey)
    kh_must_fail_clean env OPENSSL_CONF="$T/lazy.cnf" \
        "$BUILD/tests/kh-lazykm" "$T/ca/ca.pem" "$T/key.pem"
    grep -q "No supported data to decode" "$T/must_fail.out" \
        || kh_fail "the refusal does not say nothing decodes the key file"
done

# tpm2: URIs go through keyhold's other store: same switch.
kh_log "key-files = no: a tpm2: URI (swtpm) signs, a TSS2 key file is refused"
kh_swtpm_start
"$BUILD/keyhold-tpm" create --alg ec-p256 --persistent 0x81000031 \
    --pub-out "$T/tpm.pub" || kh_fail "keyhold-tpm create failed"
"$BUILD/keyhold-tpm" create --alg ec-p256 --out "$T/tpm.tss" \
    --pub-out "$T/tpm-file.pub" || kh_fail "keyhold-tpm create (file) failed"
OPENSSL_CONF=$T/lazy.cnf openssl pkey -in "tpm2:handle=0x81000031" -pubout \
    -out "$T/tpm-exp.pem" || kh_fail "pkey cannot load the tpm2: URI"
cmp <(openssl pkey -pubin -in "$T/tpm-exp.pem" -outform DER) \
    <(openssl pkey -pubin -in "$T/tpm.pub" -outform DER) \
    || kh_fail "wrong public key from the tpm2: URI"
OPENSSL_CONF=$T/lazy.cnf "$BUILD/tests/kh-lazykm" "$T/ca/ca.pem" \
    "tpm2:handle=0x81000031" >"$T/km.out" || kh_fail "kh-lazykm with tpm2: failed"
cat "$T/km.out"
grep -qx "keyhold keymgmts before: 0" "$T/km.out" \
    || kh_fail "keyhold keymgmt visible before the tpm2: load"
grep -qx "keyhold keymgmts after: 2" "$T/km.out" \
    || kh_fail "keyhold keymgmt not offered after the tpm2: load"
kh_must_fail_clean env OPENSSL_CONF="$T/lazy.cnf" \
    "$BUILD/tests/kh-lazykm" "$T/ca/ca.pem" "$T/tpm.tss"
kill "$KH_SWTPM_PID"; wait "$KH_SWTPM_PID" 2>/dev/null || true

for extra in "" "key-files = yes"; do
    cnf=$(KH_CNF_EXTRA="$extra" kh_openssl_cnf last)
    kh_log "key files ${extra:-by default}: the key reference file works"
    OPENSSL_CONF=$cnf openssl pkey -in "$T/key.pem" -pubout -out "$T/exp.pem" \
        || kh_fail "pkey cannot read the key reference (${extra:-default})"
    cmp <(openssl pkey -pubin -in "$T/exp.pem" -outform DER) \
        <(openssl pkey -pubin -in "$T/ec256.pub.pem" -outform DER) \
        || kh_fail "wrong public key from the key reference"
    OPENSSL_CONF=$cnf "$BUILD/tests/kh-lazykm" "$T/ca/ca.pem" >"$T/km.out" \
        || kh_fail "kh-lazykm failed (${extra:-default})"
    grep -qx "keyhold keymgmts before: 2" "$T/km.out" \
        || kh_fail "keymgmt not offered from the start (${extra:-default})"
    grep -qx "keyhold keygen before: 1" "$T/km.out" \
        || kh_fail "provider=keyhold keygen fails (${extra:-default})"
    OPENSSL_CONF=$cnf "$BUILD/tests/kh-lazykm" "$T/ca/ca.pem" "$T/key.pem" \
        >"$T/km.out" || kh_fail "PEM_read_bio_PrivateKey of the key reference failed"
    grep -qx "key: ok" "$T/km.out" || kh_fail "no signature by the key reference"
done
kh_tls_serve_both "$cnf" -cert "$T/cert.pem" -key "$T/key.pem"
kh_log "key-files = no: URIs work, key files are refused; default unchanged"
