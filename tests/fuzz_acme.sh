#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Scenario 33: the ACME reply parsers (provision/acme_parse.c: JSON walker,
# base64url, problem documents) under libFuzzer with ASan and UBSan for a
# few seconds: no finding.
# timeout: 120
exec "$(dirname "$0")/fuzz/run-target.sh" acme
