#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Scenario 25: at renewal the CA returns a certificate whose CN/SAN lacks
# the appliance's host name -> refused, the old identity kept.
# timeout: 180
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/est_lib.sh"

kh_estd_setup
kh_estd_start
kh_est_identity cam cam1.example
kh_est_enroll cam >"$T/enroll.out" 2>&1 || { cat "$T/enroll.out"; kh_fail "enroll"; }
kh_r_renew_refused cam wrong-host 'host check failed.*cam1.example'
kh_log "scenario 25 ok"
