#!/bin/bash
# SPDX-License-Identifier: MIT
# Scenario 30, CMP side: a CMP server that answers garbage (random bytes, a
# truncated PKIMessage, an HTML page with 200, a 10 MiB body, an empty body,
# a 500) → each renewal refused with a named error, bounded memory, and the
# working identity kept: same certificate, keyhold verify passes.
# The identity is first enrolled for real against `openssl cmp` in server mode.
# timeout: 180
. "$(dirname "$0")/lib.sh"

command -v python3 >/dev/null || kh_fail "python3 missing (make deps)"
kh_enrol_appliance
(umask 077; printf 'cmp-secret-30' >"$T/cmp.secret")
kh_test_ca "$T/ca"

kh_log "a working identity, enrolled over CMP"
"$KEYHOLD" provision cam --token app --alg ec-p256 --host cam1.example \
    --pin-file "$T/app.pin" --csr-out "$T/cam.csr" >/dev/null || kh_fail "provision"
kh_ca_sign "$T/ca" "$T/cam.csr" "$T/cam1.pem" "DNS:cam1.example"
port=$(kh_free_port)
kh_bg openssl cmp -config "" -port "$port" -srv_ref keyhold-cmp \
    -srv_secret pass:cmp-secret-30 -rsp_cert "$T/cam1.pem" \
    -rsp_extracerts "$T/ca/ca.pem" >>"$T/cmp-server.log" 2>&1
good_pid=$KH_LAST_PID
kh_wait_port "$port"
"$KEYHOLD" enroll cam --cmp "http://127.0.0.1:$port/pkix/" --ca "$T/ca/ca.pem" \
    --ref keyhold-cmp --secret-file "$T/cmp.secret" >"$T/enroll.out" 2>&1 \
    || { cat "$T/enroll.out" "$T/cmp-server.log"; kh_fail "CMP enrolment"; }
"$KEYHOLD" verify cam >/dev/null || kh_fail "verify after enrolment"
fp=$(openssl x509 -in "$KEYHOLD_STATE_DIR/cam/cert.pem" -noout -fingerprint -sha256)
kill "$good_pid"; wait "$good_pid" 2>/dev/null || true

# A misbehaving CMP server: the answer's kind comes from $T/mode.
bad_port=$(kh_free_port)
cat >"$T/bad_cmp.py" <<'PY'
import http.server, os, sys
MODE_FILE, PORT = sys.argv[1], int(sys.argv[2])
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass
    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        req = self.rfile.read(min(n, 1 << 20))
        mode = open(MODE_FILE).read().strip()
        status, ctype = 200, "application/pkixcmp"
        if mode == "random":
            body = os.urandom(700)
        elif mode == "truncated":
            # the request's own DER, cut short: a PKIMessage that ends early
            body = req[: max(1, len(req) // 2)]
        elif mode == "html":
            ctype, body = "text/html", b"<html><body>Login required</body></html>"
        elif mode == "huge":
            body = b"\x30\x84\x00\xa0\x00\x00" + b"A" * (10 << 20)
        elif mode == "empty":
            body = b""
        else:
            status, ctype, body = 500, "text/plain", b"internal error"
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass
http.server.HTTPServer(("127.0.0.1", PORT), H).serve_forever()
PY
echo random >"$T/mode"
kh_bg python3 "$T/bad_cmp.py" "$T/mode" "$bad_port"
kh_wait_port "$bad_port"
sed -i "s|^cmp-url = .*|cmp-url = http://127.0.0.1:$bad_port/pkix/|" "$KEYHOLD_CONF_DIR/cam.conf"

for mode in random truncated html huge empty status500; do
    kh_log "CMP server answers: $mode"
    echo "$mode" >"$T/mode"
    rc=0
    # bounded memory: a 10 MiB answer must not need more than this (not
    # under ASan, whose shadow memory alone is far larger)
    if [ "${KH_ASAN:-0}" = 1 ]; then
        "$KEYHOLD" renew cam --force >"$T/r.out" 2>&1 || rc=$?
    else
        ( ulimit -v 1048576; "$KEYHOLD" renew cam --force ) >"$T/r.out" 2>&1 || rc=$?
    fi
    cat "$T/r.out"
    [ "$rc" -eq 4 ] || [ "$rc" -eq 2 ] || kh_fail "$mode: exit $rc, want 4 (CA error) or 2"
    grep -qi "cmp\|CA\|server" "$T/r.out" || kh_fail "$mode: the error names neither CMP nor the CA"
    grep -qi "unchanged" "$T/r.out" || kh_fail "$mode: the error does not say the identity is unchanged"
    [ "$(openssl x509 -in "$KEYHOLD_STATE_DIR/cam/cert.pem" -noout -fingerprint -sha256)" = "$fp" ] \
        || kh_fail "$mode: the certificate changed"
    "$KEYHOLD" verify cam >/dev/null || kh_fail "$mode: the working identity no longer verifies"
done
jq -e '.last_error != null and .last_error != ""' "$KEYHOLD_STATE_DIR/cam/status.json" >/dev/null \
    || kh_fail "status.json records no last error"
kh_log "malformed CMP answers: each refused by name, identity kept"
