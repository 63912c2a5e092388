#!/bin/sh
# Install the Debian packages tunnel needs to build and test, if any is
# missing. Usage: scripts/deps.sh [extra packages...]
set -e
PACKAGES="build-essential pkg-config lua5.4 liblua5.4-dev luajit libluajit-5.1-dev
lua5.1 liblua5.1-0-dev lua-busted lua-cjson valgrind libhiredis-dev
redis-server redis-tools clang libclang-rt-14-dev $*"
missing=""
for p in $PACKAGES; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
    missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "installing:$missing"
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
