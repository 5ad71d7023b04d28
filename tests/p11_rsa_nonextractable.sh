#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The RSA private key cannot leave the token, and nothing keyhold writes
# contains it or the PIN: the token refuses CKA_PRIVATE_EXPONENT and the
# CRT values and reports SENSITIVE / !EXTRACTABLE (asked directly through Cryptoki); `openssl pkey`
# through keyhold shows only the public half and cannot write the private
# key; the key reference holds only the URI (pin-value dropped); debug
# traces and error text do not contain the PIN. Twin: a key imported from
# software is reported as exposed.
. "$(dirname "$0")/lib.sh"
NX_ALG=RSA
NX_KEY=rsa2048
NX_KEYTYPE=rsa:2048
NX_PUB_RE='Modulus'
NX_PRIV_RE='privateExponent|prime1|coefficient'
NX_PROV_ALG=rsa-2048
NX_GENPKEY=(-algorithm RSA -pkeyopt rsa_keygen_bits:2048)
. "$(dirname "$0")/p11_nonextractable.inc"
