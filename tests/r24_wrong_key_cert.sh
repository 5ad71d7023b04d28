#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Scenario 24: at renewal the CA returns a certificate for another public
# key -> refused by name, the old identity kept and serving, a retry
# scheduled.
# timeout: 180
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/est_lib.sh"

kh_est_cam
kh_r_renew_refused cam wrong-key 'another key'
kh_log "scenario 24 ok"
