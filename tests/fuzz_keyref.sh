#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Scenario 33: the key-reference decoder (DER and PEM; scenario 21) under libFuzzer with ASan
# and UBSan for a few seconds: no finding.
# timeout: 120
exec "$(dirname "$0")/fuzz/run-target.sh" keyref
