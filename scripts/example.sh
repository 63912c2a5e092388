#!/bin/sh
# Build tunnel for Lua 5.4 and run the producer/consumer example on
# in-process threads. Usage: scripts/example.sh [lua5.4|luajit|lua5.1]
set -e
cd "$(dirname "$0")/.."
scripts/deps.sh
make -s LUA="${1:-lua5.4}" example
