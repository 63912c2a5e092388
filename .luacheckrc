-- luacheck settings (`luacheck .` from the repository root; `make lint`).
-- The code runs on Lua 5.1 to 5.4 and LuaJIT: the globals of any of them
-- are known, and code that needs one Lua's names guards them
-- (`table.unpack or unpack`).
std = 'max'
-- Block threads have these globals (src/lua/lblock.c); requiring the
-- module sets the global `tunnel` (lua/tunnel/init.lua), as the original's did.
read_globals = {'tunnel', '__threadid', '__blocksize'}
files['lua/tunnel/init.lua'] = {globals = {'tunnel'}}
-- tunnel.compat replaces the state's pairs and ipairs: its purpose.
files['lua/tunnel/compat.lua'] = {globals = {'pairs', 'ipairs'}}
files['spec'] = {std = '+busted', max_line_length = false} -- test names
-- The original's tests, ported as they were written: they reuse and shadow
-- names, and callbacks take the original's (old_value) arguments.
files['spec/original'] = {ignore = {'4..', '212/old_value'}}
-- A method need not use its self (the original's API has such methods).
self = false
max_line_length = 120
exclude_files = {'build/', 'build-*/', '.luarocks/', 'lua_modules/'}
