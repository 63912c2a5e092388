#!/bin/sh
# Everything that must pass before a change lands, in this order:
#   1. the build with warnings as errors (gcc);
#   2. luacheck, the C unit tests, the busted specs on lua5.4, luajit,
#      lua5.1, lua5.3 and lua5.2 and every example, with a private
#      redis-server for the cluster tests; `luarocks make` and `luarocks
#      test` in a private tree (make check-rock); the Debian packages
#      built, installed, used by the examples and removed (scripts/deb.sh);
#   3. the same C tests and specs under ASan+UBSan (with the server), under
#      ThreadSanitizer, and under valgrind;
#   4. a short libFuzzer run on the codec's decoder (FUZZ_SECONDS, 60).
# Exits non-zero on the first failure. QUICK=1 stops after step 2.
set -e
cd "$(dirname "$0")/.."
scripts/deps.sh test
make -s clean
make -s WERROR=1 all
scripts/with-redis.sh make WERROR=1 test
make -s check-rock
scripts/deb.sh
[ "${QUICK:-0}" = 1 ] && { echo "quick tests passed"; exit 0; }
scripts/with-redis.sh make check-asan
scripts/with-redis.sh make check-tsan
make check-valgrind
make fuzz FUZZ_SECONDS="${FUZZ_SECONDS:-60}"
echo "all tests passed"
