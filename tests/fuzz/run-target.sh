#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Runs one libFuzzer target briefly for 'make check' (scenario 33):
#   tests/fuzz/run-target.sh NAME
# on a copy of its seed corpus, for KH_FUZZ_SECONDS (default 5). A finding
# fails the test; the input is kept as $BUILD/fuzz/crash-NAME-* to replay
# with '$BUILD/fuzz/fuzz_NAME FILE'.
. "$(dirname "$0")/../lib.sh"

name=$1
bin=$BUILD/fuzz/fuzz_$name
kh_need "$bin"
mkdir -p "$T/corpus"
cp -r "$KH_TOP/tests/fuzz/corpus/$name/." "$T/corpus/"
dict=()
[ -f "$KH_TOP/tests/fuzz/$name.dict" ] && dict=(-dict="$KH_TOP/tests/fuzz/$name.dict")
rc=0
"$bin" -max_total_time="${KH_FUZZ_SECONDS:-5}" -rss_limit_mb=1024 -timeout=10 \
    -print_final_stats=1 "${dict[@]}" -artifact_prefix="$T/crash-" \
    "$T/corpus" >"$T/fuzz.log" 2>&1 || rc=$?
tail -n 25 "$T/fuzz.log"
if [ "$rc" -ne 0 ] || ls "$T"/crash-* >/dev/null 2>&1; then
    for f in "$T"/crash-*; do
        [ -e "$f" ] || continue
        cp "$f" "$BUILD/fuzz/crash-$name-$(basename "$f" | sed 's/^crash-//')"
        echo "finding kept: $BUILD/fuzz/crash-$name-$(basename "$f" | sed 's/^crash-//')"
    done
    kh_fail "fuzz_$name found a problem (exit $rc)"
fi
grep -q 'Done [0-9]* runs' "$T/fuzz.log" || kh_fail "fuzz_$name did not run"
kh_log "fuzz_$name: $(grep -o 'Done [0-9]* runs in [0-9]* second(s)' "$T/fuzz.log")"
