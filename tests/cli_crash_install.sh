#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Crash at every step of install (KEYHOLD_CRASH_AT aborts there): the
# identity is the old or the new one, complete, never a mix; the next run
# cleans up and installs.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cli_lib.inc"

kh_cli_env
kh_cli_identity rec cam1.example.com
d=$KEYHOLD_STATE_DIR/rec

consistent() {
    local cert key ident
    cert=$(openssl x509 -in "$d/cert.pem" -outform DER | sha256sum)
    # identity.pem = reference + fullchain; its first cert is cert.pem
    ident=$(openssl x509 -in "$d/identity.pem" -outform DER | sha256sum)
    [ "$cert" = "$ident" ] || kh_fail "identity.pem and cert.pem differ after a crash at $1"
    cmp -s <(openssl x509 -in "$d/fullchain.pem" -outform DER) <(openssl x509 -in "$d/cert.pem" -outform DER) \
        || kh_fail "fullchain.pem and cert.pem differ after a crash at $1"
    grep -q "BEGIN KEYHOLD KEY REFERENCE" "$d/key.pem" || kh_fail "key.pem missing after $1"
    "$KEYHOLD" verify rec >/dev/null || kh_fail "identity broken after a crash at $1"
}

n=0
for step in checked staging written synced token-cert switch switched links pruned; do
    n=$((n + 1))
    kh_cli_sign rec "$T/c$n.pem" "DNS:cam1.example.com"
    old=$(openssl x509 -in "$d/cert.pem" -outform DER | sha256sum)
    new=$(openssl x509 -in "$T/c$n.pem" -outform DER | sha256sum)
    rc=0
    KEYHOLD_CRASH_AT=$step "$KEYHOLD" install rec "$T/c$n.pem" >"$T/crash.out" 2>&1 || rc=$?
    [ "$rc" -ge 128 ] || { cat "$T/crash.out"; kh_fail "no crash at $step (exit $rc)"; }
    now=$(openssl x509 -in "$d/cert.pem" -outform DER | sha256sum)
    case $step in
        checked|staging|written|synced|token-cert|switch)
            [ "$now" = "$old" ] || kh_fail "crash at $step before the switch, yet the cert changed";;
        *)
            [ "$now" = "$new" ] || kh_fail "crash at $step after the switch, yet the old cert serves";;
    esac
    consistent "$step"
    # the next run recovers: at most the current and previous generation + nothing half-made
    "$KEYHOLD" install rec "$T/c$n.pem" >/dev/null || kh_fail "install after a crash at $step"
    cur=$(readlink "$d/current")
    for g in "$d"/gen-*; do
        [ "$(basename "$g")" = "$cur" ] && continue
        [ "${g##*gen-}" -lt "${cur#gen-}" ] || kh_fail "left-over $g after $step"
    done
    ls -a "$d" | kh_has '\.tmp' && kh_fail "temp files left after $step"
    consistent "after-$step"
    kh_log "crash at $step: consistent, recovered"
done
"$KEYHOLD" audit verify >/dev/null || kh_fail "audit log damaged by crashes"
kh_log "ok"
