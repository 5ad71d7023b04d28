#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Scenario 33: host-name / SAN parsing and RFC 6125 matching (provision/names.c)
# under libFuzzer with ASan and UBSan for a few seconds: no finding.
# timeout: 120
exec "$(dirname "$0")/fuzz/run-target.sh" names
