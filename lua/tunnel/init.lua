-- tunnel: synchronized data structures shared by threads.
-- The whole module is the C library tunnel.core (test hooks such as
-- _fault_alloc answer through its metatable and are not listed by pairs).
-- Block threads bind `tunnel` to tunnel.core without reading this file
-- (src/lua/lblock.c: it saves a file search and a parse per thread), so
-- Lua code added here must be loaded there too.
return require('tunnel.core')
