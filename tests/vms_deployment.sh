#!/bin/bash
# SPDX-License-Identifier: MIT
# The video-management deployment end to end (docs/vms-deployment.md):
# a customer CA (keyhold-estd, CA key in a token), a management server, two
# recording servers (one on a TPM) and a mobile server, each a real nginx
# with its key in hardware, provisioned from scratch over EST; clients that
# trust only the CA and check host names; expiry warning and renewal without
# a failed handshake; an expired certificate refused and recovered with the
# bootstrap credentials; field rekey of one recording server while the rest
# keep working; factory reset of one appliance leaving no key behind.
# `make demo-vms` runs this same script with narration (VMS_DEMO=1).
# timeout: 420
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/est_lib.sh"
. "$(dirname "$0")/vms_lib.inc"
kh_need "$KEYHOLD" "$KEYHOLD_ESTD" "$BUILD/keyhold.so"
command -v faketime >/dev/null || kh_fail "faketime missing (make deps)"
trap 'rc=$?; vms_nginx_stop_all; (exit $rc); kh_cleanup' EXIT

vms_say "1. The customer CA: keyhold-estd on 127.0.0.1, its signing key in a SoftHSM token"
kh_estd_setup
kh_estd_start --days 30
kh_swtpm_start
for a in $VMS_APPLIANCES; do vms_appliance_setup "$a"; done

vms_say "   Every appliance generates its key in hardware and enrols over EST"
for a in $VMS_APPLIANCES; do
    vms_provision "$a"
    vms_say "   $a: $(vms_identity "$a") for $(vms_host "$a") provisioned, enrolled, verified"
done
# The TPM appliance's key is a TPM key, the others' live in their tokens.
vms_on rec2 "$KEYHOLD" status recording --json | jq -e '.[0].backend == "tpm2"' >/dev/null \
    || kh_fail "rec2: the recording key is not in the TPM"
vms_on rec1 "$KEYHOLD" status recording --json | jq -e '.[0].backend == "pkcs11"' >/dev/null \
    || kh_fail "rec1: the recording key is not in the token"
# Host name as CN only on one recording server, as DNS SAN only on the other.
openssl x509 -in "$T/rec1/state/recording/cert.pem" -noout -subject | kh_grepq "CN *= *rec1.vms.example" \
    || kh_fail "rec1: host name not in the subject CN"
if openssl x509 -in "$T/rec1/state/recording/cert.pem" -noout -ext subjectAltName 2>/dev/null \
    | kh_grepq "DNS:rec1.vms.example"; then kh_fail "rec1: host name must be in the CN only"; fi
openssl x509 -in "$T/rec2/state/recording/cert.pem" -noout -ext subjectAltName | kh_grepq "DNS:rec2.vms.example" \
    || kh_fail "rec2: host name not a DNS SAN"
if openssl x509 -in "$T/rec2/state/recording/cert.pem" -noout -subject | kh_grepq "CN *= *rec2.vms.example"; then
    kh_fail "rec2: host name must be in the SAN only"
fi

vms_say "2. Servers start (nginx, key reference files); clients check chain and host name"
for a in $VMS_APPLIANCES; do vms_nginx_start "$a" "$(kh_free_port)"; done
for a in rec1 rec2 mobile; do
    vms_check_clients "$a"
    vms_say "   $a: curl, openssl s_client and gnutls-cli verified $(vms_host "$a")"
done
for r in rec1 rec2; do
    out=$(vms_rec_to_mgmt "$r") || kh_fail "$r -> management: mutual TLS failed"
    case $out in *"CN=$(vms_host "$r")"* | *"CN=recording"*) ;;
        *) kh_fail "management did not see $r's client certificate: $out";; esac
    vms_say "   $r -> management: mutual TLS, both keys in hardware ($out)"
done
kh_must_fail vms_curl mgmt >/dev/null
vms_say "   a client without a certificate is refused by the management server"

# A client that does not trust the customer CA is refused.
kh_test_ca "$T/otherca"
kh_must_fail vms_curl mobile "$T/otherca/ca.pem" >/dev/null
kh_expect_output "certificate"
vms_say "   a client that trusts another CA is refused"
# A server certificate without the right host name is refused by the client.
port=$(vms_port mobile)
kh_must_fail curl -sS --fail --max-time 10 --cacert "$KH_ESTD_DIR/ca.pem" \
    --resolve "rec9.vms.example:$port:127.0.0.1" "https://rec9.vms.example:$port/"
kh_expect_output "rec9.vms.example"
kh_must_fail gnutls-cli --x509cafile "$KH_ESTD_DIR/ca.pem" --verify-hostname rec9.vms.example \
    -p "$port" 127.0.0.1 </dev/null
vms_say "   a certificate without the host the client asked for is refused"

vms_say "3. Time moves to 5 days before expiry: keyhold warns, renewal renews, no handshake fails"
st=0
vms_on mobile faketime -f "+25d" "$KEYHOLD" status mobile >"$T/warn.out" 2>&1 || st=$?
cat "$T/warn.out"
[ "$st" -eq 5 ] || [ "$st" -eq 0 ] || kh_fail "status near expiry exited $st"
grep -Eqi "expir|renew" "$T/warn.out" || kh_fail "no expiry warning near expiry"
{ vms_on mobile faketime -f "+25d" "$KEYHOLD" status mobile --json || true; } \
    | jq -e '.[0].days_left <= 5 and (.[0].state == "expiring" or .[0].state == "renew-due")' >/dev/null \
    || kh_fail "status --json near expiry: days_left/state wrong"
declare -A before
for a in $VMS_APPLIANCES; do before[$a]=$(vms_cert_fp "$a"); done
rm -f "$T/loop.stop"
loops=()
for a in mgmt mobile rec1; do vms_loop "$a" 400 & loops+=($!); done
for a in $VMS_APPLIANCES; do
    vms_on "$a" faketime -f "+25d" "$KEYHOLD" renew --all >"$T/$a/renew.log" 2>&1 \
        || { cat "$T/$a/renew.log"; kh_fail "$a: renew --all near expiry"; }
    [ "$(vms_cert_fp "$a")" != "${before[$a]}" ] || kh_fail "$a: renew --all did not renew"
done
# Let the loops see the reloaded servers, then stop them (bounded).
for i in $(seq 1 100); do
    [ "$(vms_served_fp mobile)" = "$(vms_cert_fp mobile)" ] && break
    sleep 0.1
done
touch "$T/loop.stop"
wait "${loops[@]}"
for a in mgmt mobile rec1; do
    ok=$(cat "$T/loop.$a.ok"); fail=$(cat "$T/loop.$a.fail")
    vms_say "   client loop against $a during the renewals: $ok handshakes, $fail failed"
    [ "$fail" -eq 0 ] || { cat "$T/loop.$a.err"; kh_fail "$a: $fail handshakes failed during renewal"; }
    [ "$ok" -gt 0 ] || kh_fail "$a: the client loop made no handshake"
done
for a in rec1 rec2 mobile; do
    [ "$(vms_served_fp "$a")" = "$(vms_cert_fp "$a")" ] || kh_fail "$a: serves the old certificate after reload"
    vms_check_clients "$a"
done
vms_rec_to_mgmt rec2 >/dev/null || kh_fail "rec2 -> management after renewal"
vms_say "   every server renewed, reloaded and serves its new certificate"

vms_say "4. The clock passes the mobile server's expiry without renewal"
mport=$(vms_port mobile)
curl_later() {
    faketime -f "+31d" curl -sS --fail --max-time 10 --cacert "$KH_ESTD_DIR/ca.pem" \
        --resolve "mobile.vms.example:$mport:127.0.0.1" "https://mobile.vms.example:$mport/"
}
kh_must_fail curl_later
kh_expect_output "expired"
vms_say "   clients refuse the expired certificate, as the deployment would"
kh_must_fail 8 -- vms_on mobile faketime -f "+31d" "$KEYHOLD" status mobile
kh_expect_output "expired"
vms_say "   keyhold status says: expired (exit 8), and how to fix it"
# The CA lives in the same moved time; the expired certificate can no longer
# authenticate a re-enrolment, so renew falls back to the bootstrap password.
kh_estd_stop
cat >"$T/estd-faked" <<SH
#!/bin/sh
# libfaketime preloaded directly: the faketime program forks, and killing
# it would leave the server running.
LD_PRELOAD=/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1 FAKETIME="+31d" \\
    exec "$KEYHOLD_ESTD" "\$@"
SH
chmod +x "$T/estd-faked"
KEYHOLD_ESTD=$T/estd-faked kh_estd_start --days 30
vms_on mobile faketime -f "+31d" "$KEYHOLD" renew mobile >"$T/mobile/recover.log" 2>&1 \
    || { cat "$T/mobile/recover.log"; kh_fail "renew with bootstrap credentials after expiry"; }
{ vms_on mobile faketime -f "+31d" "$KEYHOLD" status mobile --json || true; } | jq -e '.[0].state == "ok"' >/dev/null \
    || kh_fail "mobile not ok after recovery"
for i in $(seq 1 100); do
    [ "$(vms_served_fp mobile)" = "$(vms_cert_fp mobile)" ] && break
    sleep 0.1
done
curl_later >/dev/null || kh_fail "clients still refused after recovery"
vms_say "   renew with the bootstrap credentials recovered it; clients connect again"
kh_estd_stop
kh_estd_start --days 30

vms_say "5. Field rekey of recording server rec1 while the others keep working"
old_fp=$(vms_cert_fp rec1)
old_uri=$(vms_on rec1 "$KEYHOLD" status recording --json | jq -r '.[0].key_uri')
make -C "$KH_TOP" -s --no-print-directory BUILD="$BUILD" install-hooks PREFIX=/usr \
    DESTDIR="$T/root" >"$T/install-hooks.log" 2>&1 || { cat "$T/install-hooks.log"; kh_fail "install-hooks"; }
HOOKS=$T/root/usr/lib/keyhold/hooks
rm -f "$T/loop.stop" "$T"/loop.*.fail
loops=()
vms_loop rec2 300 & loops+=($!)
VMS_LOOP_CLIENT=rec2 vms_loop mgmt 300 & loops+=($!)
vms_on rec1 env KEYHOLD="$KEYHOLD" KEYHOLD_HOOKS_SYSLOG=0 KEYHOLD_HOOKS_CONF=$T/none \
    KEYHOLD_PROVIDER_PATH="$BUILD" KEYHOLD_OPENSSL_CONF="$T/rec1/openssl.cnf" \
    KEYHOLD_RESTART_CMD="kill -HUP \$(cat $T/rec1/nginx.pid)" \
    "$HOOKS/field-rekey" recording >"$T/rekey.log" 2>&1 \
    || { cat "$T/rekey.log"; kh_fail "field-rekey rec1"; }
[ "$VMS_DEMO" = 1 ] && sed 's/^/   | /' "$T/rekey.log"
touch "$T/loop.stop"
wait "${loops[@]}"
for a in rec2 mgmt; do
    fail=$(cat "$T/loop.$a.fail")
    [ "$fail" -eq 0 ] || { cat "$T/loop.$a.err"; kh_fail "$a: $fail handshakes failed during rec1's rekey"; }
done
new_uri=$(vms_on rec1 "$KEYHOLD" status recording --json | jq -r '.[0].key_uri')
[ "$new_uri" != "$old_uri" ] || kh_fail "field-rekey kept the old key"
[ "$(vms_cert_fp rec1)" != "$old_fp" ] || kh_fail "field-rekey kept the old certificate"
for i in $(seq 1 100); do
    [ "$(vms_served_fp rec1)" = "$(vms_cert_fp rec1)" ] && break
    sleep 0.1
done
[ "$(vms_served_fp rec1)" = "$(vms_cert_fp rec1)" ] || kh_fail "rec1 does not serve its rekeyed certificate"
vms_check_clients rec1
vms_rec_to_mgmt rec1 >/dev/null || kh_fail "rec1 -> management with the new key"
vms_say "   rec1 has a new hardware key and certificate; rec2 and management never failed"

vms_say "6. Factory reset of the mobile appliance"
kill "$(cat "$T/mobile/nginx.pid")" 2>/dev/null || true
vms_on mobile env KEYHOLD="$KEYHOLD" KEYHOLD_HOOKS_SYSLOG=0 KEYHOLD_HOOKS_CONF=$T/none \
    KEYHOLD_PROVIDER_PATH="$BUILD" KEYHOLD_RESTART_CMD=true \
    "$HOOKS/factory-reset" --yes >"$T/reset.log" 2>&1 \
    || { cat "$T/reset.log"; kh_fail "factory-reset mobile"; }
[ "$(vms_on mobile "$KEYHOLD" status --json)" = "[]" ] || kh_fail "identities left after factory reset"
left=$(SOFTHSM2_CONF=$T/mobile/softhsm2.conf softhsm2-util --show-slots 2>/dev/null \
    | grep -c "Label: *mobile" || true)
if [ "$left" -ne 0 ]; then
    KH_P=$(cat "$T/mobile/user.pin" 2>/dev/null || echo none)
    n=$(SOFTHSM2_CONF=$T/mobile/softhsm2.conf KH_P=$KH_P pkcs11-tool --module "$SOFTHSM_MODULE" \
        --token-label mobile --login --pin env:KH_P --list-objects 2>/dev/null | grep -c "Object" || true)
    [ "$n" -eq 0 ] || kh_fail "objects left in the mobile token after factory reset"
fi
[ ! -e "$T/mobile/state/mobile" ] || kh_fail "mobile state left after factory reset"
if grep -rl "KEYHOLD KEY REFERENCE" "$T/mobile" 2>/dev/null | grep -v nginx | kh_grepq .; then
    kh_fail "key references left after factory reset"
fi
for a in rec1 rec2; do vms_check_clients "$a"; done
vms_rec_to_mgmt rec2 >/dev/null || kh_fail "rec2 -> management after mobile's reset"
vms_say "   the mobile appliance holds no key, certificate or PIN; the others still serve"

[ "$VMS_DEMO" = 1 ] && vms_table
vms_nginx_stop_all
kh_log "VMS deployment: provisioning, host names, renewal, expiry, rekey and reset ok"
