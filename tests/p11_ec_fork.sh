#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Fork (SoftHSM with library.reset_on_fork = true, as lib.sh sets it): the
# parent loads the key and signs, forks; children (and their own children)
# and the parent all sign afterwards and every signature verifies. Also the
# cold case, where the first signature happens in the child.
. "$(dirname "$0")/lib.sh"
FORK_KEY=ec256 FORK_KEYTYPE=EC:prime256v1 FORK_N=20
. "$(dirname "$0")/p11_fork.inc"
