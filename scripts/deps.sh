#!/bin/sh
# Install the Debian packages tunnel needs, those that are missing.
#   scripts/deps.sh example [LUA]   what building and running the example
#                                   on LUA needs (lua5.4, the default,
#                                   lua5.3, lua5.2, lua5.1 or luajit): a C
#                                   compiler, make, pkg-config, hiredis,
#                                   OpenSSL's libcrypto (signatures),
#                                   that Lua and its headers
#   scripts/deps.sh test [pkg...]   what every test needs (scripts/test.sh):
#                                   the above for every Lua, busted,
#                                   luacheck, luarocks, redis, valgrind,
#                                   clang's libFuzzer, the Debian packaging
#                                   tools; and the packages named
# With sudo unless run as root. Exits 0 when everything is there; 2, having
# said what is missing, when it cannot install (no apt-get, no root nor
# sudo, or apt-get failed): scripts/example.sh then builds with what there
# is.
set -e
what=${1:-test}
[ $# -gt 0 ] && shift

lua_packages() {
  case "$1" in
    lua5.4) echo "lua5.4 liblua5.4-dev" ;;
    lua5.3) echo "lua5.3 liblua5.3-dev" ;;
    lua5.2) echo "lua5.2 liblua5.2-dev" ;;
    lua5.1) echo "lua5.1 liblua5.1-0-dev" ;;
    luajit) echo "luajit libluajit-5.1-dev" ;;
    *) echo "deps.sh: unknown Lua '$1' (lua5.4, lua5.3, lua5.2, lua5.1, luajit)" >&2
       exit 1 ;;
  esac
}

BUILD="gcc make libc6-dev pkg-config libhiredis-dev libssl-dev"
case "$what" in
  example)
    PACKAGES="$BUILD $(lua_packages "${1:-lua5.4}")" ;;
  test)
    PACKAGES="$BUILD build-essential"
    for lua in lua5.4 lua5.3 lua5.2 lua5.1 luajit; do
      PACKAGES="$PACKAGES $(lua_packages $lua)"
    done
    PACKAGES="$PACKAGES lua-busted lua-cjson lua-check luarocks valgrind
      binutils redis-server redis-tools clang libclang-rt-14-dev
      debhelper dpkg-dev fakeroot $*" ;;
  *)
    echo "usage: scripts/deps.sh example [LUA] | test [packages...]" >&2
    exit 1 ;;
esac

if ! command -v dpkg-query >/dev/null 2>&1; then
  echo "deps.sh: not a Debian system; install these or their equivalents:" >&2
  echo "  $PACKAGES" | tr -s ' \n' ' ' >&2
  echo >&2
  exit 2
fi
missing=""
for p in $PACKAGES; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
    missing="$missing $p"
done
[ -z "$missing" ] && exit 0
SUDO=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO=sudo
  else
    echo "deps.sh: missing:$missing (not root, and no sudo)" >&2
    exit 2
  fi
fi
echo "installing:$missing"
if ! { $SUDO apt-get update -qq &&
       DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq \
         $missing >/dev/null; }; then
  echo "deps.sh: could not install:$missing" >&2
  exit 2
fi
