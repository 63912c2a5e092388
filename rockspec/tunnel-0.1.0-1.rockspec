-- LuaRocks. From a checkout:
--   luarocks make rockspec/tunnel-scm-1.rockspec
--   luarocks test rockspec/tunnel-scm-1.rockspec
-- (and the same with --lua-version 5.1 ... 5.4). `make` builds with the
-- Makefile (`make rock`, then `make install-rock`) for luarocks' Lua: the
-- module, its Lua files, the `tunnel` command and this Lua's worker
-- (tunnel-worker-<lua>). The tests are the specs, run with the busted this
-- machine has (spec/rock_test.lua). Needs a C compiler, GNU make, hiredis
-- and OpenSSL's libcrypto (Debian: libhiredis-dev, libssl-dev).
-- rockspec/tunnel-<version>-1.rockspec is this file for a release:
-- `make rockspec` writes it from this one and TN_VERSION (include/tunnel.h).
rockspec_format = "3.0"
package = "tunnel"
version = "0.1.0-1"
source = {
  -- No public repository yet: luarocks make builds this checkout and does
  -- not read it.
  url = "git+https://example.invalid/tunnel.git",
  tag = "v0.1.0",
}
description = {
  summary = "Synchronized data structures shared by threads and processes",
  detailed = [[
    tunnel is a data-driven framework for parallel and distributed
    computing: blocks of threads share blocking vectors, hash tables,
    counters, values behind reader-writer locks and printers, in one
    process or, through Redis, across machines. Tested on Lua 5.1, 5.2, 5.3,
    5.4 and LuaJIT 2.1.
  ]],
  license = "MIT",
  labels = {"threads", "concurrency", "redis"},
}
supported_platforms = {"linux"}
dependencies = {
  "lua >= 5.1, < 5.5",
}
external_dependencies = {
  HIREDIS = {header = "hiredis/hiredis.h", library = "hiredis"},
  -- the signatures of distributed blocks (Debian: libssl-dev)
  CRYPTO = {header = "openssl/hmac.h", library = "crypto"},
}
build = {
  type = "make",
  build_target = "rock",
  install_target = "install-rock",
  -- Both passes get the same flags: the Makefile rebuilds what was built
  -- with other ones.
  variables = {
    B = "build-rock",
    LUA = "$(LUA)",
    LUA_INCDIR = "$(LUA_INCDIR)",
    CFLAGS = "$(CFLAGS) -I$(HIREDIS_INCDIR) -I$(CRYPTO_INCDIR)",
    LDFLAGS = "-L$(HIREDIS_LIBDIR) -L$(CRYPTO_LIBDIR)",
    -- the worker (tunnel-worker-<lua>) links this Lua
    LUA_LIBDIR = "$(LUA_LIBDIR)",
    LUALIB = "$(LUALIB)",
  },
  install_variables = {
    INST_LUADIR = "$(LUADIR)",
    INST_LIBDIR = "$(LIBDIR)",
    INST_BINDIR = "$(BINDIR)",
  },
}
test = {
  type = "command",
  script = "spec/rock_test.lua",
}
