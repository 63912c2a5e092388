#!/bin/sh
# The Debian packages (debian/): built from a clean copy of the tree (its
# tracked and new files, nothing ignored) with dpkg-buildpackage -us -uc -b,
# installed, and used as a Debian user would use them: the Lua example on
# every Debian Lua with no path set, the C example built with pkg-config
# against libtunnel-dev; then removed again (--keep: left installed, and
# the .deb files copied to build-deb/). Run as root or with sudo.
set -e
cd "$(dirname "$0")/.."
repo=$(pwd)
keep=0
[ "$1" = --keep ] && keep=1
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
work=$(mktemp -d "${TMPDIR:-/tmp}/tunnel-deb.XXXXXX")
PACKAGES="lua-tunnel tunnel-tools libtunnel-dev libtunnel0 lua-tunnel-dbgsym
  tunnel-tools-dbgsym libtunnel0-dbgsym"
cleanup() {
  [ $keep = 1 ] || $SUDO dpkg -r $PACKAGES >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

mkdir "$work/tunnel"
git ls-files -co --exclude-standard -z | xargs -0 tar -cf - | tar -x -C "$work/tunnel"
echo "deb.sh: dpkg-buildpackage in $work/tunnel"
(cd "$work/tunnel" &&
 DEB_BUILD_OPTIONS="nocheck parallel=2" dpkg-buildpackage -us -uc -b \
   > "$work/build.log" 2>&1) || { tail -40 "$work/build.log"; exit 1; }
ls "$work"/*.deb
$SUDO dpkg -i $(ls "$work"/*.deb | grep -v -- -dbgsym_) > /dev/null

# Used from outside the repository, with the default paths of each Lua.
cd "$work"
for lua in lua5.1 lua5.2 lua5.3 lua5.4 luajit; do
  command -v $lua > /dev/null || continue
  env -u LUA_PATH -u LUA_CPATH $lua -e "
    local t = require('tunnel')
    assert(package.loaded['tunnel.core'] == t)
    io.write('$lua ', t._VERSION, ': ')" || exit 1
  env -u LUA_PATH -u LUA_CPATH $lua "$repo/examples/producer_consumer.lua" |
    grep -c consume
done
cc -std=c11 -o producer_consumer "$repo/examples/producer_consumer.c" \
  $(pkg-config --cflags --libs tunnel)
lib=$(ldd producer_consumer | awk '/libtunnel\.so/ {print $3}')
dpkg -S "$(realpath "$lib")" | grep -q "^libtunnel0:" || {
  echo "deb.sh: the C example uses $lib, not libtunnel0's" >&2
  exit 1
}
./producer_consumer | grep -c consume
command -v tunnel > /dev/null
[ "$(command -v tunnel)" = /usr/bin/tunnel ]
if [ $keep = 1 ]; then
  mkdir -p "$repo/build-deb"
  cp "$work"/*.deb "$repo/build-deb/"
fi
echo "deb.sh: the packages build, install and work"
