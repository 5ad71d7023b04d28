#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Scenario 5: the service account (nginx's workers, running as an
# unprivileged user whose group may read the key reference and the PIN
# file) signs TLS handshakes with the identity's key, but every management
# operation it tries -- provision, rekey, install, set-hosts, zeroize, token
# init and set-pin -- exits 7 (permission denied) and changes nothing.
# timeout: 180
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cli_lib.inc"
kh_need "$BUILD/tests/kh-hsloop"

svc_uid=$(id -u nobody)
svc_gid=$(getent group nogroup | cut -d: -f3)
[ -n "$svc_gid" ] || svc_gid=65534
kh_cli_env
kh_cli_identity rec cam1.example.com
snap=$(kh_cli_snapshot rec)

# The appliance's layout: the service group may read (not write) the token,
# the identity's state and the PIN file; the config stays root's.
chmod 0755 "$T"
chgrp -R "$svc_gid" "$T/tokens" "$KEYHOLD_STATE_DIR" "$T/app.pin" "$T/softhsm2.conf"
chmod -R g+rwX "$T/tokens"
chmod -R g+rX,g-w "$KEYHOLD_STATE_DIR"
chmod 0640 "$T/app.pin"
chmod 0644 "$T/softhsm2.conf"
objects() {
    pkcs11-tool --module "$SOFTHSM_MODULE" --token-label app --login --pin "$KH_CLI_PIN" \
        --list-objects 2>/dev/null | grep -c "Object" || true
}
nobj=$(objects)

# 1. nginx's workers run as the service account and sign handshakes.
cnf=$(KH_CNF_EXTRA="pin-source = file:$T/app.pin" kh_openssl_cnf last)
port=$(kh_r_port)
d=$T/nginx
KH_NGINX_USER="nobody $(getent group "$svc_gid" | cut -d: -f1)" \
    kh_nginx_start "$port" "$KEYHOLD_STATE_DIR/rec/fullchain.pem" "$KEYHOLD_STATE_DIR/rec/key.pem" "$cnf" 2
"$BUILD/tests/kh-hsloop" -p "$port" -C "$T/ca/ca.pem" -H cam1.example.com -n 20 >"$T/hs.out" 2>&1 \
    || { cat "$T/hs.out" "$d/logs/error.log"; kh_fail "the service account could not serve TLS"; }
cat "$T/hs.out"
ps -o user= --ppid "$(cat "$T/nginx.pid")" >"$T/workers"
grep -qx nobody "$T/workers" || kh_fail "nginx workers do not run as nobody"
kh_log "nginx workers as nobody: 20 handshakes signed by the token key"

# 2. The same account may manage nothing.
as_svc() {
    setpriv --reuid="$svc_uid" --regid="$svc_gid" --clear-groups \
        env SOFTHSM2_CONF="$SOFTHSM2_CONF" KEYHOLD_CONF_DIR="$KEYHOLD_CONF_DIR" \
        KEYHOLD_STATE_DIR="$KEYHOLD_STATE_DIR" "$KEYHOLD" "$@"
}
(umask 027; printf 'new-pin-9' >"$T/new.pin"); chgrp "$svc_gid" "$T/new.pin"
for cmd in "provision x2 --token app --alg ec-p256 --host x2.example --pin-file $T/app.pin" \
           "rekey rec" \
           "install rec $T/rec.pem" \
           "set-hosts rec --host other.example" \
           "zeroize rec --yes" \
           "zeroize --all --yes" \
           "token init --label evil --pin-file $T/app.pin --so-pin-file $T/app.pin" \
           "token set-pin --label app --pin-file $T/app.pin --new-pin-file $T/new.pin"; do
    # shellcheck disable=SC2086
    kh_must_fail_clean 7 -- as_svc $cmd
    kh_cli_still_works rec "$snap"
    [ "$(objects)" = "$nobj" ] || kh_fail "'$cmd' changed the token's objects"
    kh_log "service account: '$cmd' -> exit 7, nothing changed"
done
[ ! -e "$KEYHOLD_CONF_DIR/x2.conf" ] || kh_fail "an identity was created"

# Reading is allowed: status works for the service account.
as_svc status rec >/dev/null 2>&1 || true
kh_log "scenario 5 ok"
