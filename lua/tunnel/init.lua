-- tunnel: synchronized data structures shared by threads.
-- The whole module is the C library tunnel.core (test hooks such as
-- _fault_alloc answer through its metatable and are not listed by pairs).
-- Like the original's init.lua, require('tunnel') also sets the global
-- `tunnel`. The original's module names (require('tunnel.vector'), ...)
-- are the files beside this one; tunnel.compat is opt-in.
-- Block threads bind `tunnel` to tunnel.core and preload the class modules
-- without reading these files (src/lua/lblock.c: it saves a file search
-- and a parse per thread), so Lua code added here must be loaded there too.
tunnel = require('tunnel.core')
return tunnel
