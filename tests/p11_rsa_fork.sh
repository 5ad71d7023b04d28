#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Fork with an RSA key (SoftHSM with library.reset_on_fork = true, as
# lib.sh sets it): the parent loads the key and signs, forks; children
# (and their own children) and the parent all sign afterwards and every
# signature verifies. Also the cold case: first signature in the child.
. "$(dirname "$0")/lib.sh"
FORK_KEY=rsa2048 FORK_KEYTYPE=rsa:2048 FORK_N=10
. "$(dirname "$0")/p11_fork.inc"
