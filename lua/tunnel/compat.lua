-- tunnel.compat: pairs and ipairs that honour __pairs and __ipairs, as Lua
-- 5.2 did. The original tunnel ran on Torch's LuaJIT, built with Lua 5.2
-- compatibility, so `pairs(vector)`, `ipairs(vector)` and `pairs(hash)`
-- worked there; stock LuaJIT and Lua 5.1 ignore both metamethods, and Lua
-- 5.4 has no __ipairs.
--
-- Opt-in: `require('tunnel.compat')` replaces the global `pairs` (where the
-- built-in one ignores __pairs) and `ipairs` (where it ignores __ipairs) of
-- this Lua state. Blocks created after it require it in their threads too.
-- A value with no such metamethod - every plain table - gets exactly what
-- the built-in function gives (the same iterator, the same errors), so
-- programs that do not iterate tunnel objects see no difference. Returns
-- {pairs = ..., ipairs = ...}: the functions now in place.
local getmetatable, rawget, type = getmetatable, rawget, type
-- Tunnel's metatables are locked (getmetatable gives "locked"); the debug
-- library reads them. It is consulted only for a value that has a
-- metatable, so a loop over plain tables stays JIT-friendly on LuaJIT.
local debug_getmetatable = debug.getmetatable
-- Called as builtin.pairs(t), an error still says "bad argument #1 to
-- 'pairs'".
local builtin = {pairs = pairs, ipairs = ipairs}

local function metamethod(value, name)
  if getmetatable(value) == nil then return nil end
  local mt = debug_getmetatable(value)
  if type(mt) ~= 'table' then return nil end
  return rawget(mt, name)
end

-- Does the built-in `fn` already call the metamethod `name`?
local function honours(fn, name)
  local called = false
  local probe = setmetatable({}, {[name] = function()
    called = true
    return function() return nil end, nil, nil
  end})
  pcall(function() for _ in fn(probe) do end end)
  return called
end

-- `fallback` made to honour the metamethod `name` first, as Lua 5.2 did.
local function honouring(name, fallback)
  return function(value)
    local handler = metamethod(value, name)
    local f, s, c
    if handler == nil then
      f, s, c = fallback(value)
    else
      f, s, c = handler(value)
    end
    return f, s, c
  end
end

if not honours(builtin.pairs, '__pairs') then
  pairs = honouring('__pairs', builtin.pairs)
end

if not honours(builtin.ipairs, '__ipairs') then
  ipairs = honouring('__ipairs', builtin.ipairs)
end

return {pairs = pairs, ipairs = ipairs}
