-- The Lua running the specs, for expectations that differ between Luas:
--   local lua = dofile('spec/support/lua.lua')
--   lua.interpreter   the command that starts it (TUNNEL_LUA, set by make
--                     spec, or 'luajit', 'lua5.1' ... 'lua5.4')
--   lua.version       '5.1' (also LuaJIT) to '5.4'
--   lua.env           LUA_PATH='...' LUA_CPATH='...': this process's module
--                     paths (busted's lpath/cpath from .busted included)
--   lua.command       `env <lua.env> <lua.interpreter>`: a fresh interpreter
--                     that loads the module under test, also when busted runs
--                     from the repository root without make
--   lua.pairs_meta    the built-in pairs honours __pairs (5.2+)
--   lua.ipairs_meta   the built-in ipairs honours __ipairs (5.2, and 5.3
--                     built with 5.2 compatibility, as Debian's is)
-- "Built-in": tunnel.compat may have replaced the globals with Lua
-- functions; it does so only where the built-in ignores the metamethod.
local M = {}

M.version = _VERSION:match('%d+%.%d+')
M.interpreter = os.getenv('TUNNEL_LUA') or (jit and 'luajit') or
                'lua' .. M.version

M.env = ("LUA_PATH='%s' LUA_CPATH='%s'"):format(package.path, package.cpath)
M.command = 'env ' .. M.env .. ' ' .. M.interpreter

local function builtin_honours(fn, name)
  if debug.getinfo(fn, 'S').what ~= 'C' then return false end -- compat's
  local called = false
  local probe = setmetatable({}, {[name] = function()
    called = true
    return function() return nil end, nil, nil
  end})
  pcall(function() for _ in fn(probe) do end end)
  return called
end

M.pairs_meta = builtin_honours(pairs, '__pairs')
M.ipairs_meta = builtin_honours(ipairs, '__ipairs')

return M
