#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Scenario 27: a renewal, a rekey, an install or a provision --force killed
# after each of its steps (key generation, CSR, CA response, checks,
# staging, each write, the switch, the hooks, ...; KEYHOLD_CRASH_AT aborts
# the process there, like kill -9)
# and then the next run -> the identity is exactly the old or exactly the
# new one (served certificate and hardware key match, keyhold verify
# passes), no half-built generation is left, and no key is left in the
# token that no generation uses.
# timeout: 600
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/est_lib.sh"

kh_est_cam
steps=$(grep -ho 'kh_crash_point("[a-z-]*")' "$KH_TOP"/provision/*.c | sed 's/.*("\(.*\)")/\1/' | sort -u)
[ -n "$steps" ] || kh_fail "no crash points found in provision/"

# Private-key ids in the token for identity cam (lower-case hex).
token_ids() {
    pkcs11-tool --module "$SOFTHSM_MODULE" --token-label app --login --pin 1111 \
        --list-objects --type privkey 2>/dev/null \
        | awk '/label:/ {l=$2} /ID:/ {if (l ~ /^keyhold:cam:/) print tolower($2)}' | sort -u
}
# Key ids the identity's generations, config, pending rekey and retired
# keys (in their grace period) refer to.
used_ids() {
    local f
    {
        sed -n 's/^key-id = //p' "$KEYHOLD_CONF_DIR/cam.conf"
        jq -r '.pending_key_uri // empty' "$KEYHOLD_STATE_DIR/cam/status.json" 2>/dev/null \
            | sed -n 's/.*[;:]id=\([^;?]*\).*/\1/p' | tr -d '%'
        # keys replaced by a rekey, kept for their grace period
        if [ -f "$KEYHOLD_STATE_DIR/cam/retired-keys" ]; then
            sed -n 's/.*[;:]id=\([^;?]*\).*/\1/p' "$KEYHOLD_STATE_DIR/cam/retired-keys" | tr -d '%'
        fi

        for f in "$KEYHOLD_STATE_DIR"/cam/gen-*/key.pem; do
            [ -e "$f" ] || continue
            "$BUILD/tests/kh-keyref" -r "$f" 2>/dev/null | sed -n 's/.*[;:]id=\([^;?]*\).*/\1/p' | tr -d '%'
        done
    } | tr 'A-F' 'a-f' | sort -u
}

consistent() {
    local what=$1 d=$KEYHOLD_STATE_DIR/cam certkey keyfp
    "$KEYHOLD" verify cam >"$T/verify.out" 2>&1 || { cat "$T/verify.out"; kh_fail "$what: keyhold verify fails"; }
    "$KEYHOLD" status cam --json >"$T/st.json" || true
    certkey=$(openssl x509 -in "$d/cert.pem" -noout -pubkey | openssl pkey -pubin -outform DER | sha256sum | cut -d' ' -f1)
    keyfp=$(jq -r '.[0].key_fingerprint' "$T/st.json")
    [ "$keyfp" = "sha256:$certkey" ] || kh_fail "$what: served certificate and hardware key differ (mixed identity)"
    cmp -s <(openssl x509 -in "$d/cert.pem" -outform DER) \
        <(openssl x509 -in "$d/current/cert.pem" -outform DER) || kh_fail "$what: cert.pem is not current's"
    for g in "$d"/gen-*; do
        [ -e "$g/cert.pem" ] && [ -e "$g/key.pem" ] || kh_fail "$what: incomplete generation $(basename "$g") left"
    done
    local orphans
    orphans=$(comm -23 <(token_ids) <(used_ids))
    [ -z "$orphans" ] || kh_fail "$what: orphan key(s) in the token: $orphans"
}

# A certificate for the identity's current key, signed by the EST CA, for
# installs by hand.
manual_cert() {
    "$KEYHOLD" csr cam -o "$T/cam.csr" >/dev/null 2>&1 || kh_fail "keyhold csr"
    openssl x509 -req -in "$T/cam.csr" -CA "$KH_ESTD_DIR/ca.pem" -CAkey "$KH_ESTD_CA_KEY" \
        "${KH_PROV[@]}" -CAcreateserial -days 5 -out "$T/manual.pem" -extfile <(printf \
        'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:cam1.example\n') \
        2>/dev/null || kh_fail "signing a certificate by hand"
}

crashed=0
for op in renew rekey install provision; do
    for step in $steps; do
        before=$(kh_est_cert_fp cam)
        rc=0
        case $op in
            renew) KEYHOLD_CRASH_AT=$step "$KEYHOLD" renew cam --force >"$T/crash.out" 2>&1 || rc=$?;;
            rekey) KEYHOLD_CRASH_AT=$step "$KEYHOLD" rekey cam >"$T/crash.out" 2>&1 || rc=$?;;
            install)
                manual_cert
                KEYHOLD_CRASH_AT=$step "$KEYHOLD" install cam "$T/manual.pem" --no-reload \
                    >"$T/crash.out" 2>&1 || rc=$?;;
            provision)
                # a new key for the identity; the old one serves until a
                # certificate for the new one is installed
                KEYHOLD_CRASH_AT=$step "$KEYHOLD" provision cam --force --token app --alg ec-p256 \
                    --host cam1.example --pin-file "$T/app.pin" >"$T/crash.out" 2>&1 || rc=$?;;
        esac
        if [ "$rc" = 0 ]; then
            continue    # this operation has no such step
        fi
        [ "$rc" -ge 128 ] || { cat "$T/crash.out"; kh_fail "$op at $step: exit $rc instead of the crash"; }
        crashed=$((crashed + 1))
        # The next run (the timer's renew) recovers; it must not fail.
        rc=0
        "$KEYHOLD" renew cam >"$T/next.out" 2>&1 || rc=$?
        [ "$rc" = 0 ] || { cat "$T/next.out"; kh_fail "$op at $step: the next renew run exited $rc"; }
        consistent "$op killed at $step"
        after=$(kh_est_cert_fp cam)
        kh_log "$op killed at $step: $( [ "$before" = "$after" ] && echo old || echo new ) identity, consistent"
    done
done
[ "$crashed" -ge 30 ] || kh_fail "only $crashed crash points were reached"
kh_log "scenario 27 ok ($crashed crashes)"
