#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# firmware-hooks: nginx (2 workers, key reference through the openssl.cnf
# the units give servers) keeps answering while the identity's certificate
# is renewed over EST by `keyhold renew` (as keyhold-renew.service runs it)
# and nginx is reloaded by the identity's reload hook, and serves the new
# certificate after. A client loop runs through the whole renewal; every
# request must succeed.
# timeout: 240
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/hooks_lib.inc"

kh_hooks_est_recording
port=$(kh_free_port)
kh_hooks_nginx "$port" recording
# The reload hook, as a vendor configures it (systemctl reload nginx on an
# appliance; here the test's nginx master).
echo "reload = kill -HUP \$(cat $T/nginx.pid)" >>"$KEYHOLD_CONF_DIR/recording.conf"
old_fp=$(openssl x509 -in "$KEYHOLD_STATE_DIR/recording/cert.pem" -noout -fingerprint -sha256)

served_fp() {
    openssl s_client -connect "127.0.0.1:$port" -servername localhost </dev/null 2>/dev/null |
        openssl x509 -noout -fingerprint -sha256 2>/dev/null
}
[ "$(served_fp)" = "$old_fp" ] || kh_fail "nginx does not serve the installed certificate"

# Client loop: bounded, stops when told; records every failure.
: >"$T/fail.log"
(
    for i in $(seq 1 3000); do
        [ -e "$T/stop" ] && break
        if curl -sS --max-time 10 --cacert "$T/ca/ca.pem" --resolve "localhost:$port:127.0.0.1" \
            "https://localhost:$port/" -o /dev/null 2>>"$T/fail.log"; then
            echo ok >>"$T/ok.log"
        else
            echo "request $i failed" >>"$T/fail.log"
        fi
    done
) &
loop=$!
KH_BG_PIDS+=("$loop")
for i in $(seq 1 100); do [ -s "$T/ok.log" ] && break; sleep 0.1; done
[ -s "$T/ok.log" ] || kh_fail "client loop never succeeded"

kh_log "keyhold renew --all --force: re-enrolment, switch, reload hook"
rc=0
"$KEYHOLD" renew --all --force >"$T/renew.log" 2>&1 || rc=$?
cat "$T/renew.log"
# The renew unit's SuccessExitStatus: 0, 5 (needs attention) and 75 (busy).
case $rc in 0 | 5) ;; *) kh_fail "keyhold renew exit $rc" ;; esac
new_fp=$(openssl x509 -in "$KEYHOLD_STATE_DIR/recording/cert.pem" -noout -fingerprint -sha256)
[ "$new_fp" != "$old_fp" ] || kh_fail "renewed certificate is the old one"
ok=0
for i in $(seq 1 100); do
    if [ "$(served_fp)" = "$new_fp" ]; then ok=1; break; fi
    sleep 0.1
done
[ "$ok" = 1 ] || kh_fail "nginx does not serve the renewed certificate after the reload"
n_before=$(wc -l <"$T/ok.log")
for i in $(seq 1 100); do [ "$(wc -l <"$T/ok.log")" -gt $((n_before + 5)) ] && break; sleep 0.1; done
touch "$T/stop"
wait "$loop" || true
if grep -q . "$T/fail.log"; then cat "$T/fail.log"; kh_fail "requests failed during renewal + reload"; fi
kh_log "$(wc -l <"$T/ok.log") requests, none failed; new certificate served"

# keyhold-renew.service's own command lines, as installed, on this
# appliance: nothing is due right after the renewal, the exit status is one
# the unit counts as success, and the metrics file is written.
unit=$T/root/lib/systemd/system/keyhold-renew.service
start=$(sed -n 's/^ExecStart=//p' "$unit")
post=$(sed -n 's/^ExecStartPost=-//p' "$unit")
ok_codes=" 0 $(sed -n 's/^SuccessExitStatus=//p' "$unit") "
mkdir -p "$T/prom"
start=${start//\/usr\/bin\/keyhold/$KEYHOLD}
post=${post//\/usr\/bin\/keyhold/$KEYHOLD}
post=${post//\/var\/lib\/prometheus\/node-exporter/$T/prom}
rc=0
$start >"$T/unit-start.log" 2>&1 || rc=$?
case $ok_codes in *" $rc "*) ;; *) cat "$T/unit-start.log"; kh_fail "unit ExecStart exit $rc is a unit failure" ;; esac
[ "$(openssl x509 -in "$KEYHOLD_STATE_DIR/recording/cert.pem" -noout -fingerprint -sha256)" = "$new_fp" ] ||
    kh_fail "the timer's run renewed an identity that was not due"
$post >"$T/unit-post.log" 2>&1 || { cat "$T/unit-post.log"; kh_fail "unit ExecStartPost failed"; }
grep -q '^keyhold_certificate_not_after_seconds{identity="recording"}' "$T/prom/keyhold.prom" ||
    { cat "$T/prom/keyhold.prom"; kh_fail "no metrics written by the unit's ExecStartPost"; }
kh_log "renew unit's commands: exit $rc, metrics in keyhold.prom"
echo PASS
