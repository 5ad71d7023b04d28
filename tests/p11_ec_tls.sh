#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# TLS 1.3 and 1.2 with an ECDSA key in the token: `openssl s_server -key
# pkcs11:...` through keyhold (loaded from openssl.cnf before and after the
# default provider, and from the command line; never a -propquery), checked
# by three clients: openssl s_client, curl and gnutls-cli (an independent
# TLS stack, so a signature bug cannot cancel itself out).
. "$(dirname "$0")/lib.sh"
TLS_ALG=ECDSA
TLS_KEY1=ec256 TLS_KEYTYPE1=EC:prime256v1 TLS_NAME1=P-256
TLS_KEY2=ec384 TLS_KEYTYPE2=EC:secp384r1 TLS_NAME2=P-384
TLS_CNF_HS=(1.3 1.2)
TLS_FLAGS_HS=(1.3 "1.2 ECDSA+SHA384" "1.2 ECDSA+SHA256")
. "$(dirname "$0")/p11_tls.inc"
