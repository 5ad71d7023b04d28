#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Scenario 25: at renewal the CA returns a certificate whose CN/SAN lacks
# the appliance's host name -> refused, the old identity kept.
# timeout: 180
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/est_lib.sh"

kh_est_cam
kh_r_renew_refused cam wrong-host 'host check failed.*cam1.example'
kh_log "scenario 25 ok"
