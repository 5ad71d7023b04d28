#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Scenarios 21 and 33: the TSS2 PRIVATE KEY decoder (engine/tpm/tpm_keyfile.c)
# under libFuzzer with ASan and UBSan for a few seconds: no finding.
# timeout: 120
exec "$(dirname "$0")/fuzz/run-target.sh" tpmkey
