-- The 5.1 ABI: lua5.1 and LuaJIT load the same C modules, and one tunnel
-- module, built against either's headers, works in both (src/lua/compat.h).
-- Debian's luarocks builds against the lua5.1 headers for both; before,
-- such a module loaded in LuaJIT silently copied shared upvalues, and a
-- LuaJIT build failed in lua5.1 with `undefined symbol: luaL_traceback`.
-- On lua5.1 and LuaJIT this runs the module under test in the other one.
local LUA = dofile('spec/support/lua.lua')

local SCRIPT = [[
local tunnel = require('tunnel')
local n = 0
local function inc() n = n + 1 end
local function get() return n end
local v = tunnel.Vector()
v:pushBack({inc, get})
local fs = v:popFront()
fs[1](); fs[1]()
local b = tunnel.Block(1)
b:run(function() error('boom') end)
local r, s = b:synchronize()
local tb = r[1] and r[1].traceback or ''
b:terminate()
-- bytecode crosses between the threads of one interpreter
local b2 = tunnel.Block(1)
b2:add(function(x) return x + 1 end)
b2:run(function(f) return f(20) end)
local r2 = b2:synchronize()
b2:terminate()
-- the copies share one n (its original stays 0)
print(jit and 'luajit' or _VERSION, get(), fs[2](), tostring(s[1]),
      tb:find('stack traceback', 1, true) ~= nil, r2[1] and r2[1][1])
]]

-- Run SCRIPT in `interpreter` with the module the specs load; its output.
local function run_in(interpreter)
  local name = os.tmpname()
  local f = assert(io.open(name, 'w'))
  f:write(SCRIPT)
  f:close()
  local cmd = ('env %s %s %s 2>&1'):format(LUA.env, interpreter, name)
  local p = assert(io.popen(cmd))
  local out = p:read('*a')
  p:close()
  os.remove(name)
  return out
end

local function installed(command)
  local p = io.popen('command -v ' .. command .. ' 2>/dev/null')
  local out = p:read('*a')
  p:close()
  return out ~= ''
end

describe('a 5.1-ABI module', function()
  local other = jit and 'lua5.1' or 'luajit'

  it('works in the interpreter it was built for', function()
    if LUA.version ~= '5.1' then
      pending('Lua ' .. LUA.version .. ': not the 5.1 ABI')
      return
    end
    local out = run_in(LUA.interpreter)
    local joined = jit and '2' or '0' -- plain 5.1 copies upvalues (api.md)
    assert.are.equal(('%s\t0\t%s\tfalse\ttrue\t21\n'):format(
      jit and 'luajit' or 'Lua 5.1', joined), out)
  end)

  it('works in the other 5.1-ABI interpreter: LuaJIT joins shared upvalues, lua5.1 has tracebacks', function()
    if LUA.version ~= '5.1' then
      pending('Lua ' .. LUA.version .. ': not the 5.1 ABI')
      return
    end
    if dofile('spec/support/instrumented.lua') then
      pending('under a sanitizer or valgrind: the module needs its runtime')
      return
    end
    if not installed(other) then
      pending(other .. ' is not installed')
      return
    end
    local out = run_in(other)
    local joined = other == 'luajit' and '2' or '0'
    assert.are.equal(('%s\t0\t%s\tfalse\ttrue\t21\n'):format(
      other == 'luajit' and 'luajit' or 'Lua 5.1', joined), out)
  end)
end)
