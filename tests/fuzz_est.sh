#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Scenario 33: the EST response parsers: certs-only PKCS#7, Retry-After, base URL (scenario 30)
# under libFuzzer with ASan and UBSan for a few seconds: no finding.
# timeout: 120
exec "$(dirname "$0")/fuzz/run-target.sh" est
