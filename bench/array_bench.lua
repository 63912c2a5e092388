-- array_bench.lua - tunnel.Array from Lua (bench/run.lua drives it, like
-- bench/lua_bench.lua, with the same line protocol):
--
--   lua bench/array_bench.lua list      the case names
--   lua bench/array_bench.lua <case>    a warm-up, then BENCH_REPEAT lines
--     result <TAB> case <TAB> items <TAB> seconds <TAB> ok|FAIL:why
--   or: skip <TAB> case <TAB> why
--
-- array.table.rw / array.rw    t[i] = t[i] + 1 over 10^6 elements: a plain
--                              Lua table, then an Array (a[i] through its
--                              metamethods: C functions, on LuaJIT Lua
--                              ones through the FFI, which it compiles)
-- array.ffi.plain / .pointer   the same through ffi.new('double[?]') and
--                              through ffi.cast of a:pointer() (LuaJIT only)
-- array.hogwild.1t / .2t       examples/hogwild.lua trained with 1 and 2
--                              threads (items: samples x epochs); the ratio
--                              of the two is the speed-up
local QUICK = (os.getenv('BENCH_QUICK') or '') ~= '' and
              os.getenv('BENCH_QUICK') ~= '0'
local REPEAT = tonumber(os.getenv('BENCH_REPEAT') or '') or (QUICK and 3 or 5)

local cases, order = {}, {}
local function case(name, spec)
  cases[name] = spec
  order[#order + 1] = name
end

local N = QUICK and 10000 or 1000000

-- One timed pass of t[i] = t[i] + 1 (any indexable), and its check.
local function rw(t, n, clock)
  local t0 = clock()
  for i = 1, n do t[i] = t[i] + 1 end
  return clock() - t0
end
local function all_equal(t, n, want, first)
  for i = first or 1, n + (first and first - 1 or 0) do
    if t[i] ~= want then return false end
  end
  return true
end

case('array.table.rw', {
  setup = function()
    local t = {}
    for i = 1, N do t[i] = 0 end
    return {t = t, passes = 0}
  end,
  run = function(s)
    local dt = rw(s.t, N, tunnel.clock)
    s.passes = s.passes + 1
    return dt, not all_equal(s.t, N, s.passes) and 'wrong values' or nil
  end,
})

case('array.rw', {
  setup = function() return {a = tunnel.Array(N), passes = 0} end,
  run = function(s)
    local dt = rw(s.a, N, tunnel.clock)
    s.passes = s.passes + 1
    return dt, s.a:sum() ~= s.passes * N and 'wrong values' or nil
  end,
})

case('array.ffi.plain', {
  luajit = true,
  setup = function()
    local ffi = require('ffi')
    return {p = ffi.new('double[?]', N), passes = 0}
  end,
  run = function(s)
    local dt = rw(s.p, N - 1, tunnel.clock) -- 0-based: 1..N-1
    s.passes = s.passes + 1
    return dt, not all_equal(s.p, N - 1, s.passes, 1) and 'wrong values' or nil
  end,
})

case('array.ffi.pointer', {
  luajit = true,
  setup = function()
    local ffi = require('ffi')
    local a = tunnel.Array(N)
    return {a = a, p = ffi.cast('double *', a:pointer()), passes = 0}
  end,
  run = function(s)
    local dt = rw(s.p, N - 1, tunnel.clock)
    s.passes = s.passes + 1
    return dt, s.a:sum() ~= s.passes * (N - 1) and 'wrong values' or nil
  end,
})

-- The Hogwild example, trained once with `threads`.
local function hogwild(threads)
  local epochs = 4
  local samples = QUICK and 4000 or (jit and 400000 or 40000)
  local features = jit and 1000000 or 20000
  return {
    items = samples * epochs,
    nowarm = true, -- seconds of training each: no warm-up run
    run = function()
      local lua = os.getenv('TUNNEL_BENCH_LUA') or (jit and 'luajit') or
                  ('lua' .. _VERSION:match('%d+%.%d+'))
      local cmd = '%s examples/hogwild.lua %d %d %d %d only 2>&1'
      local p = assert(io.popen(cmd
        :format(lua, threads, epochs, samples, features)))
      local out = p:read('*a')
      p:close()
      local secs = out:match('training: %d+ threads ([%d.]+) s')
      if not secs then return 0, 'no result: ' .. out:gsub('\n', ' ') end
      -- the CPU time of the training, every thread (the example's os.clock)
      return tonumber(secs), nil, tonumber(out:match('CPU ([%d.]+) s'))
    end,
  }
end

case('array.hogwild.1t', hogwild(1))
case('array.hogwild.2t', hogwild(2))

-- ---- the driver -----------------------------------------------------------

local name = arg[1]
if name == nil or name == 'list' then
  for _, n in ipairs(order) do print(n) end
  return
end
local c = cases[name]
if not c then
  io.stderr:write('array_bench.lua: no case ' .. name .. '\n')
  os.exit(2)
end
local function skip(why)
  print(('skip\t%s\t%s'):format(name, why))
  os.exit(0)
end
local loaded, mod = pcall(require, 'tunnel')
if not loaded then
  skip('module does not load: ' .. tostring(mod):match('[^\n]*'))
end
tunnel = mod -- luacheck: ignore 121 (a global, as in lua_bench.lua)
if tunnel.Array == nil then skip('tunnel.Array not built') end
if c.luajit and not jit then skip('LuaJIT only (FFI)') end
local state = c.setup and c.setup() or {}
local items = c.items or N
local bad = false
-- Warm-ups (not reported): three passes, so that the memory of the 8 MB
-- arrays has settled (in this VM fresh pages fault in from the host for a
-- while); none for the Hogwild cases, each a whole training.
for r = c.nowarm and 1 or -2, REPEAT do
  -- cpu: the CPU seconds of the timed part, where the case measures them
  local ok, secs, why, cpu = pcall(c.run, state)
  if not ok then secs, why = 0, tostring(secs) end
  if why then bad = true end
  if r > 0 or why then
    print(('result\t%s\t%d\t%.9f\t%s%s'):format(name, items, secs or 0,
      why and ('FAIL:' .. tostring(why):gsub('[\t\n]', ' ')) or 'ok',
      cpu and ('\tcpu=%.6f'):format(cpu) or ''))
    io.stdout:flush()
  end
  if why then break end
end
os.exit(bad and 1 or 0)
