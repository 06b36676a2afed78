#!/bin/sh
# Installs what building, running and testing the module needs, on Debian
# or Ubuntu.  Does nothing for packages already there.

set -e

PKGS="build-essential nginx nginx-dev liblmdb-dev libyajl-dev libssl-dev \
      perl curl wrk iproute2 gdb dpkg-dev debhelper lmdb-utils prometheus \
      chromium strace libfaketime"

# make fuzz (docs/fuzzing.md): clang's libFuzzer and lld
[ "$1" = "--fuzz" ] && PKGS="$PKGS clang lld libclang-rt-14-dev"

missing=""
for p in $PKGS; do
    dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done

# the tests' npm packages need Node.js and npm (any recent ones will do)
command -v npm >/dev/null 2>&1 || missing="$missing nodejs npm"

[ -z "$missing" ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
else
    SUDO="sudo"
fi

echo "installing:$missing" >&2
$SUDO apt-get update -q >/dev/null
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q $missing >/dev/null

# Debian's own nginx service (port 80) is left as it is: the gateway, its
# tests and benchmarks run nginx instances of their own on other ports.
