#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Scenario 28: installing a generation writes each file to a temporary
# name, fsyncs it, renames it into place and fsyncs the directory (seen
# with strace), and a new generation is on disk before `current` points at
# it; nginx reloading in a loop while renewals and rekeys switch
# generations never loads a half-written or mismatched pair, and every
# handshake verifies (a replaced key stays usable for its grace period,
# so workers not yet reloaded keep signing).
# timeout: 300
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/est_lib.sh"
kh_need "$BUILD/tests/kh-hsloop"

kh_est_cam --san ip:127.0.0.1

# 1. The write order, as the kernel sees it.
strace -f -y -qq -e trace=openat,fsync,fdatasync,rename,renameat,renameat2,symlink,symlinkat \
    -o "$T/strace.log" "$KEYHOLD" renew cam --force >/dev/null 2>&1 || kh_fail "renew under strace"
python3 - "$T/strace.log" "$KEYHOLD_STATE_DIR" <<'PY' || kh_fail "install order is not temp -> fsync -> rename -> fsync(dir)"
import os, re, sys
log, state = sys.argv[1], sys.argv[2]
lines = open(log).read().splitlines()
fsyncs = []   # (index, path)
renames = []  # (index, old, new)
for i, l in enumerate(lines):
    m = re.search(r'f(?:data)?sync\(\d+<([^>]*)>\)\s*=\s*0', l)
    if m:
        fsyncs.append((i, m.group(1)))
    m = re.search(r'rename(?:at2?)?\((?:[^,]*, )?"([^"]+)", (?:[^,]*, )?"([^"]+)"', l)
    if m and ' = 0' in l:
        renames.append((i, m.group(1), m.group(2)))
bad = 0
checked = 0
for i, old, new in renames:
    if not os.path.abspath(new).startswith(os.path.abspath(state)):
        continue
    checked += 1
    d = os.path.dirname(os.path.abspath(new))
    is_link = os.path.islink(new) or os.path.islink(os.path.join(d, os.path.basename(new)))
    before = [p for j, p in fsyncs if j < i and os.path.abspath(p) == os.path.abspath(old)]
    after = [p for j, p in fsyncs if j > i and os.path.abspath(p) == d]
    if not is_link and not before:
        print("no fsync of %s before it was renamed to %s" % (old, new)); bad += 1
    if not after:
        print("no fsync of directory %s after renaming %s" % (d, new)); bad += 1
# The switch: every file created in the new generation, and the
# generation's directory, reach the disk before `current` points at it.
cur = [(i, new) for i, old, new in renames if os.path.basename(new) == "current"]
if not cur:
    print("no switch of 'current' seen"); bad += 1
for i, new in cur:
    gen = os.path.realpath(new)
    created = set()
    for j, l in enumerate(lines[:i]):
        m = re.search(r'openat\([^"]*"([^"]+)", [^)]*O_CREAT[^)]*\)\s*=\s*\d+', l)
        if m and os.path.abspath(m.group(1)).startswith(gen + "/"):
            created.add(os.path.abspath(m.group(1)))
    synced = set(os.path.abspath(p) for j, p in fsyncs if j < i)
    for f in sorted(created):
        if f not in synced:
            print("%s was not fsynced before the switch" % f); bad += 1
    if gen not in synced:
        print("directory %s was not fsynced before the switch" % gen); bad += 1
    print("switch to %s: %d new files, all fsynced first" % (os.path.basename(gen), len(created)))
print("%d renames into the state directory checked" % checked)
sys.exit(1 if bad or checked == 0 else 0)
PY
kh_log "every file and link renamed into place was fsynced first, and its directory after"

# 2. nginx reloading in a loop while renewals and rekeys switch generations.
cnf=$(KH_CNF_EXTRA="pin-source = file:$T/app.pin" kh_openssl_cnf last)
port=$(kh_r_port)
d=$T/nginx
kh_nginx_start "$port" "$KEYHOLD_STATE_DIR/cam/fullchain.pem" "$KEYHOLD_STATE_DIR/cam/key.pem" "$cnf" 2
: >"$T/stop"
(
    n=0
    while [ -e "$T/stop" ] && [ $n -lt 600 ]; do
        OPENSSL_CONF=$cnf nginx -p "$d" -e "$d/logs/error.log" -c "$d/nginx.conf" -s reload 2>>"$T/reload.err" || true
        "$BUILD/tests/kh-hsloop" -p "$port" -C "$KH_ESTD_DIR/ca.pem" -H cam1.example -n 3 -k >>"$T/hs.out" 2>&1 \
            || echo "HANDSHAKE FAILED" >>"$T/hs.out"
        n=$((n + 1))
        sleep 0.05
    done
) &
loop=$!
KH_BG_PIDS+=("$loop")
# SoftHSM's file store, read by several processes while nginx reloads,
# now and then lists no token for a moment (pkcs11-tool -L shows the same);
# such a run fails cleanly (exit 3) and is simply run again, as the timer
# would. A reload hit by it, or by a failed login in such a moment, is
# refused by nginx, which keeps serving the previous generation.
tolerable='cannot load certificate key .*(no matching token|No supported data to decode|login failed)'
# nginx opens the certificate and the key one after the other; a rekey's
# switch between the two opens gives it a mismatched pair, which nginx
# refuses ("key values mismatch") and keeps the old, matching one. keyhold
# cannot close that window for a reader that opens two files; its own
# reload hooks run after the switch and always see a matching pair.
# A renewal keeps the key, so for renewals nothing is tolerated.
mismatch_on_rekey=0
seen=0
for i in $(seq 1 10); do
    # every other switch is a rekey: a new key as well as a new certificate
    op=(renew cam --force)
    [ $((i % 2)) = 0 ] && op=(rekey cam)
    for try in 1 2 3; do
        rc=0
        "$KEYHOLD" "${op[@]}" >"$T/renew.out" 2>&1 || rc=$?
        [ "$rc" = 3 ] && grep -qE "not found|no token" "$T/renew.out" && continue
        break
    done
    [ "$rc" = 0 ] || { cat "$T/renew.out"; kh_fail "${op[0]} $i during the reload loop (exit $rc)"; }
    # what nginx said while this operation ran
    total=$(wc -l <"$d/logs/error.log")
    tail -n +$((seen + 1)) "$d/logs/error.log" | head -n $((total - seen)) \
        | grep -E '\[(emerg|crit|alert)\]|mismatch' | grep -vE "$tolerable" >"$T/bad.log" || true
    seen=$total
    if [ "${op[0]}" = rekey ] && [ -s "$T/bad.log" ] \
        && ! grep -v 'key values mismatch' "$T/bad.log" | kh_grepq .; then
        mismatch_on_rekey=$((mismatch_on_rekey + $(wc -l <"$T/bad.log")))
        : >"$T/bad.log"
    fi
    if [ -s "$T/bad.log" ]; then
        cat "$T/bad.log"
        kh_fail "nginx met a partial or mismatched pair during ${op[0]} $i"
    fi
done
rm -f "$T/stop"
wait "$loop" || true
reloads=$(grep -c "reconfiguring" "$d/logs/error.log" || true)
kh_log "$reloads reloads, $(grep -c '^handshakes' "$T/hs.out") handshake batches during 5 renewals and 5 rekeys"
tail -n +$((seen + 1)) "$d/logs/error.log" | grep -E '\[(emerg|crit|alert)\]|mismatch' \
    | grep -vE "$tolerable|key values mismatch" >"$T/bad.log" || true
[ ! -s "$T/bad.log" ] || { cat "$T/bad.log"; kh_fail "nginx complained after the last switch"; }
tolerated=$(grep -cE "$tolerable" "$d/logs/error.log" || true)
[ "$tolerated" = 0 ] || kh_log "note: $tolerated reload(s) could not reach the token (SoftHSM) and kept the old pair"
[ "$mismatch_on_rekey" = 0 ] || kh_log "note: $mismatch_on_rekey reload(s) raced a rekey's switch, were refused by nginx and kept the old pair"
if grep -q "HANDSHAKE FAILED" "$T/hs.out"; then
    grep -v '^handshakes: 3/3' "$T/hs.out" | head -20
    kh_fail "a handshake failed while generations switched"
fi
[ "$reloads" -ge 5 ] || kh_fail "only $reloads reloads happened"
kh_log "scenario 28 ok"
