#!/bin/sh
# Installs the dependencies, builds the module and runs the test suite
# twice: as built, and built with AddressSanitizer.

set -e

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

conf/deps.sh
make -s

# the npm packages some tests use (t/package.json, its lock file)
(cd t && npm ci --no-audit --no-fund --loglevel=error)
prove -r t/

make -s asan
CREOR_BUILD=build/asan CREOR_ASAN=1 prove -r t/
