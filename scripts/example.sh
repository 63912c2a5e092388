#!/bin/sh
# Build tunnel and run the producer/consumer example on in-process threads
# (no server). Usage: scripts/example.sh [lua5.4|lua5.3|lua5.2|lua5.1|luajit]
# Installs only what that needs (scripts/deps.sh example), when it can;
# when it cannot, it says what is missing and builds with what is there.
set -e
cd "$(dirname "$0")/.."
lua=${1:-lua5.4}
scripts/deps.sh example "$lua" ||
  echo "example.sh: building with what is installed" >&2
make -s LUA="$lua" example
