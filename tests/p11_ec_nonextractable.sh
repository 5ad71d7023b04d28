#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The EC private key cannot leave the token, and nothing keyhold writes
# contains it or the PIN: the token refuses CKA_VALUE and reports
# SENSITIVE / !EXTRACTABLE (asked directly through Cryptoki); `openssl pkey`
# through keyhold shows only the public half and cannot write the private
# key; the key reference holds only the URI (pin-value dropped); debug
# traces and error text do not contain the PIN. Twin: a key imported from
# software is reported as exposed.
. "$(dirname "$0")/lib.sh"
NX_ALG=EC
NX_KEY=ec256
NX_KEYTYPE=EC:prime256v1
NX_PUB_RE='pub:'
NX_PRIV_RE='priv:'
NX_PROV_ALG=ec-p256
NX_GENPKEY=(-algorithm EC -pkeyopt ec_paramgen_curve:P-256)
. "$(dirname "$0")/p11_nonextractable.inc"
