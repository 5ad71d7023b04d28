#!/bin/bash
# SPDX-License-Identifier: MIT
# keyhold-tpm, the low-level tool: the EK identity equals the one
# tpm2-tools derives (tpm2_createek), persistent keys are created, found
# and evicted (a taken handle and a missing one are refused by name), and
# the dictionary-attack state is reported.
. "$(dirname "$0")/lib.sh"
kh_need "$BUILD/keyhold-tpm"
kh_swtpm_start
KT=$BUILD/keyhold-tpm

id=$("$KT" ek-id)
tpm2_createek -c "$T/ek.ctx" -G ecc -u "$T/ek.pem" -f pem >/dev/null
tpm2_flushcontext -t >/dev/null
want=sha256:$(openssl pkey -pubin -in "$T/ek.pem" -outform DER | sha256sum | cut -d' ' -f1)
[ "$id" = "$want" ] || kh_fail "ek-id $id, tpm2_createek's EK gives $want"
[ "$("$KT" ek-id)" = "$id" ] || kh_fail "ek-id not stable"

"$KT" create --alg ec-p256 --persistent 0x81000070 --pub-out "$T/p.pub"
[ "$("$KT" exists 0x81000070)" = present ] || kh_fail "0x81000070 not present"
kh_must_fail_clean 2 -- "$KT" create --alg ec-p256 --persistent 0x81000070
kh_expect_output "is taken"
kh_must_fail_clean "$KT" create --alg ec-p256 --persistent 0x81000001
kh_expect_output "SRK"
"$KT" evict 0x81000070
kh_must_fail_clean 2 -- "$KT" exists 0x81000070
kh_must_fail_clean 2 -- "$KT" evict 0x81000070
kh_expect_output "no key at persistent handle"
"$KT" da | kh_grepq "^lockout_counter=0$" || kh_fail "da output"
[ "$(kh_tpm_transients)" = 0 ] || kh_fail "transients left"
kh_log "keyhold-tpm: ek-id, create/exists/evict, da"
