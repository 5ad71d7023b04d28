#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Scenario 31: as a 90-day certificate nears expiry, crossing 30, 14, 7 and
# 1 days left -> exactly one warning per threshold (however often status
# or the renewal timer runs), and status --json shows the days left. A new
# certificate starts the thresholds over.
# timeout: 180
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cli_lib.inc"

kh_cli_env
kh_cli_provision rec cam1.example.com
kh_cli_sign rec "$T/rec.pem" "DNS:cam1.example.com" 90
"$KEYHOLD" install rec "$T/rec.pem" --ca "$T/ca/ca.pem" >/dev/null || kh_fail "install"

total=0
# at OFFSET EXPECTED-WARNINGS [DAYS-LEFT]: runs status (and renew, which
# checks expiry too) at now+OFFSET and counts warnings on stderr.
at() {
    local off=$1 want=$2 days=${3:-} n
    faketime -f "$off" "$KEYHOLD" status rec --json >"$T/st.json" 2>"$T/st.err" || true
    faketime -f "$off" "$KEYHOLD" status rec >/dev/null 2>>"$T/st.err" || true
    n=$(grep -ci "expire" "$T/st.err" || true)
    [ "$n" = "$want" ] || { cat "$T/st.err"; kh_fail "at $off: $n warnings (want $want)"; }
    if [ -n "$days" ]; then
        # whole days left, rounded either way
        local got
        got=$(jq -r '.[0].days_left' "$T/st.json")
        [ "$got" = "$days" ] || [ "$got" = $((days + 1)) ] \
            || kh_fail "at $off: days_left $got (want $days or $((days + 1)))"
    fi
    total=$((total + n))
    kh_log "now$off: $n warning(s)$( [ -n "$days" ] && echo ", $days days left")"
}

at "+0d" 0
at "+59d" 0 30
at "+61d" 1 28
at "+61d" 0
at "+62d" 0 27
at "+77d" 1 12
at "+78d" 0
at "+84d" 1 5
at "+85d" 0 4
# 89.5 days on: "+89d" would leave exactly one day (not under it) when the
# test runs within the second the certificate was signed in
at "+2148h" 1 0
at "+2148h" 0
[ "$total" = 4 ] || kh_fail "$total warnings in all (want 4: 30, 14, 7, 1 days)"

# A renewed certificate: the thresholds start over.
kh_cli_sign rec "$T/rec2.pem" "DNS:cam1.example.com" 90
"$KEYHOLD" install rec "$T/rec2.pem" >/dev/null || kh_fail "install of the new certificate"
at "+61d" 1 28
kh_log "scenario 31 ok"
