-- LuaRocks build of tunnel: `luarocks make rockspec/tunnel-scm-1.rockspec`
-- from the repository root. Needs a C compiler and libhiredis-dev.
rockspec_format = "3.0"
package = "tunnel"
version = "scm-1"
source = {
  url = "git+https://example.invalid/tunnel.git",
}
description = {
  summary = "Synchronized data structures shared by threads and processes",
  detailed = [[
    tunnel is a data-driven framework for parallel and distributed
    computing: blocks of threads share blocking vectors, hash tables,
    counters, values behind reader-writer locks and printers, in one
    process or, through Redis, across machines.
  ]],
  license = "MIT",
}
dependencies = {
  "lua >= 5.1",
}
external_dependencies = {
  HIREDIS = { header = "hiredis/hiredis.h", library = "hiredis" },
}
build = {
  type = "builtin",
  modules = {
    ["tunnel"] = "lua/tunnel/init.lua",
    -- the original's module names, and the opt-in pairs/ipairs
    ["tunnel.array"] = "lua/tunnel/array.lua",
    ["tunnel.atomic"] = "lua/tunnel/atomic.lua",
    ["tunnel.barrier"] = "lua/tunnel/barrier.lua",
    ["tunnel.block"] = "lua/tunnel/block.lua",
    ["tunnel.compat"] = "lua/tunnel/compat.lua",
    ["tunnel.counter"] = "lua/tunnel/counter.lua",
    ["tunnel.hash"] = "lua/tunnel/hash.lua",
    ["tunnel.plural"] = "lua/tunnel/plural.lua",
    ["tunnel.printer"] = "lua/tunnel/printer.lua",
    ["tunnel.priorityqueue"] = "lua/tunnel/priorityqueue.lua",
    ["tunnel.semaphore"] = "lua/tunnel/semaphore.lua",
    ["tunnel.serializer"] = "lua/tunnel/serializer.lua",
    ["tunnel.share"] = "lua/tunnel/share.lua",
    ["tunnel.vector"] = "lua/tunnel/vector.lua",
    ["tunnel.core"] = {
      sources = {
        "src/lua/codec.c",
        "src/lua/lbarrier.c",
        "src/lua/larray.c",
        "src/lua/lblock.c",
        "src/lua/lcluster.c",
        "src/lua/lcounter.c",
        "src/lua/lhash.c",
        "src/lua/lkey.c",
        "src/lua/lplural.c",
        "src/lua/lpqueue.c",
        "src/lua/lprinter.c",
        "src/lua/lsemaphore.c",
        "src/lua/lserializer.c",
        "src/lua/lshare.c",
        "src/lua/ltunnel.c",
        "src/lua/lvector.c",
        "src/core/barrier.c",
        "src/core/array.c",
        "src/core/blob.c",
        "src/core/block.c",
        "src/core/cell.c",
        "src/core/counter.c",
        "src/core/deque.c",
        "src/core/map.c",
        "src/core/object.c",
        "src/core/pqueue.c",
        "src/core/printer.c",
        "src/core/semaphore.c",
        "src/redis/array.c",
        "src/redis/atomic.c",
        "src/redis/barrier.c",
        "src/redis/counter.c",
        "src/redis/hash.c",
        "src/redis/pqueue.c",
        "src/redis/printer.c",
        "src/redis/redis.c",
        "src/redis/semaphore.c",
        "src/redis/vector.c"
      },
      defines = { "_GNU_SOURCE" },
      incdirs = { "include", "src/core", "src/lua", "src/redis",
                  "$(HIREDIS_INCDIR)" },
      libdirs = { "$(HIREDIS_LIBDIR)" },
      libraries = { "hiredis", "pthread", "m" },
    },
  },
}
