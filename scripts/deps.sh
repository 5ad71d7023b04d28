#!/bin/sh
# SPDX-License-Identifier: MIT
# Installs every Debian 12 package that keyhold's build, demo and tests need.
# Idempotent: with --if-missing it does nothing when all are present.
set -eu

PACKAGES="
build-essential pkg-config openssl libssl-dev
p11-kit libp11-kit-dev softhsm2 opensc
libtss2-dev tpm2-tools tpm2-openssl swtpm swtpm-tools
libtpm2-pkcs11-1 libtpm2-pkcs11-tools
libcurl4-openssl-dev curl
libp11-dev libengine-pkcs11-openssl
nginx gnutls-bin
libfaketime faketime
clang llvm libclang-rt-14-dev valgrind strace
jq procps psmisc iproute2 ca-certificates systemd
scep pebble python3
"

missing=""
for p in $PACKAGES; do
    if ! dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed'; then
        missing="$missing $p"
    fi
done

if [ -z "$missing" ]; then
    [ "${1:-}" = "--if-missing" ] || echo "deps: all packages present"
    exit 0
fi

echo "deps: installing:$missing"
if [ "$(id -u)" -ne 0 ]; then
    SUDO=sudo
else
    SUDO=
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
# shellcheck disable=SC2086
$SUDO apt-get install -y -q --no-install-recommends $missing
# nginx and other daemons must not keep running from the package install:
# the tests start their own instances on loopback.
if command -v systemctl >/dev/null 2>&1; then
    $SUDO systemctl disable --now nginx >/dev/null 2>&1 || true
fi
