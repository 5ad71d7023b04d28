#!/bin/bash
# SPDX-License-Identifier: MIT
# `make demo-vms`: the video-management deployment of tests/vms_deployment.sh,
# narrated step by step and ending with a table of every server.
export VMS_DEMO=1
exec "$(dirname "$0")/vms_deployment.sh"
