#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# TLS 1.3 (RSA-PSS) and TLS 1.2 (PKCS#1 v1.5 and PSS) with an RSA key in the
# token: `openssl s_server -key pkcs11:...` through keyhold, loaded from
# openssl.cnf before and after default and from the command line, no
# -propquery; clients openssl s_client, curl and gnutls-cli.
. "$(dirname "$0")/lib.sh"
TLS_ALG=RSA
TLS_KEY1=rsa2048 TLS_KEYTYPE1=rsa:2048 TLS_NAME1=RSA-2048
TLS_KEY2=rsa3072 TLS_KEYTYPE2=rsa:3072 TLS_NAME2=RSA-3072
TLS_CNF_HS=(1.3 "1.3 rsa_pss_rsae_sha384" "1.3 rsa_pss_rsae_sha512"
            1.2 "1.2 RSA+SHA256" "1.2 RSA+SHA512" "1.2 rsa_pss_rsae_sha256")
TLS_FLAGS_HS=(1.3 "1.2 RSA+SHA384")
. "$(dirname "$0")/p11_tls.inc"
