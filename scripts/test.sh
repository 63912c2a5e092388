#!/bin/sh
# Everything that must pass before a change lands: the build with warnings
# as errors (gcc), the C unit tests, the busted specs on lua5.4, luajit and
# lua5.1 (with a private redis-server for the cluster tests), and every
# example. Exits non-zero on the first failure.
set -e
cd "$(dirname "$0")/.."
scripts/deps.sh
make -s clean
make -s WERROR=1 all
# A private redis-server for the cluster tests (tunnel.Cluster).
scripts/with-redis.sh make WERROR=1 test
echo "all tests passed"
