-- lua_bench.lua - the Lua side of the benchmark suite (bench/run.lua drives
-- it; see docs/performance.md).
--
--   lua bench/lua_bench.lua list      the case names, one a line
--   lua bench/lua_bench.lua <case>    a warm-up, then BENCH_REPEAT lines:
--     result <TAB> case <TAB> items <TAB> seconds <TAB> ok|FAIL:why [<TAB> k=v]...
--     (k=v: bytes= for the codec, cpu= the process's CPU seconds)
--   or one line: skip <TAB> case <TAB> why
--
-- Runs on Lua 5.4 and LuaJIT. Every case checks what it computed (sums,
-- counts, a deep comparison for the codec); a wrong result is a FAIL line
-- and a non-zero exit. Times are wall-clock seconds from tunnel.clock()
-- (CLOCK_MONOTONIC, comparable across threads); when a case runs on
-- several threads its time runs from the first thread's start to the last
-- thread's end, so Block start-up is not counted.
--
-- Jobs sent to blocks use only their upvalues (plain values and tunnel
-- objects, which cross by reference) and the global `tunnel`.

local QUICK = (os.getenv('BENCH_QUICK') or '') ~= '' and
              os.getenv('BENCH_QUICK') ~= '0'
local REPEAT = tonumber(os.getenv('BENCH_REPEAT') or '') or (QUICK and 3 or 5)
local floor = math.floor

local cases, order = {}, {}
local function case(name, spec)
  spec.name = name
  cases[name] = spec
  order[#order + 1] = name
end

-- ---- Vector hand-off ------------------------------------------------------

-- 64 short strings (8..23 bytes); item i is STRINGS[i % 64 + 1].
local STRINGS = {}
for i = 1, 64 do
  STRINGS[i] = ('item-%02d'):format(i) .. ('x'):rep(i % 16)
end
-- 64 strings of 20 bytes (kind str20), and kind fresh20: a new 20-byte
-- string made by the producer for every item (its string.format counts).
local STRINGS20 = {}
for i = 1, 64 do STRINGS20[i] = ('%020d'):format(i * 7919) end

-- The job every thread of a hand-off block runs: threads 1..pairs push
-- `per` items each, threads pairs+1..2*pairs pop `per` each and sum them
-- (integers: the values; strings: their lengths; tables: their .id).
local function handoff_job(q, per, pairs, kind, strings)
  return function()
    local clock = tunnel.clock
    local id = __threadid
    local t0 = clock()
    local sum = 0
    if id <= pairs then
      local first = (id - 1) * per + 1
      if kind == 'int' then
        for i = first, first + per - 1 do q:pushBack(i) end
      elseif kind == 'str' or kind == 'str20' then
        for i = first, first + per - 1 do q:pushBack(strings[i % 64 + 1]) end
      elseif kind == 'fresh20' then
        local format = string.format
        for i = first, first + per - 1 do q:pushBack(format('%020d', i)) end
      else
        local t = {id = 0, name = 'item', weight = 1.5, ok = true}
        for i = first, first + per - 1 do
          t.id = i
          q:pushBack(t)
        end
      end
    else
      if kind == 'int' then
        for _ = 1, per do sum = sum + q:popFront() end
      elseif kind ~= 'table' then
        for _ = 1, per do sum = sum + #q:popFront() end
      else
        for _ = 1, per do sum = sum + q:popFront().id end
      end
    end
    return t0, clock(), sum
  end
end

-- Run one job on every thread of `block`; the wall time from the first
-- start to the last end, the sum of the third results, or nil and why.
local function run_block_job(block, job)
  block:run(job)
  local result, status = block:synchronize()
  local t0, t1, sum = math.huge, -math.huge, 0
  for i = 1, block.size do
    if status[i] ~= true then
      local r = result[i]
      return nil, ('thread %d failed: %s'):format(i,
        tostring(type(r) == 'table' and r[1] or r))
    end
    local r = result[i]
    if r[1] < t0 then t0 = r[1] end
    if r[2] > t1 then t1 = r[2] end
    sum = sum + (r[3] or 0)
  end
  return t1 - t0, sum
end

local HINTS = {unbounded = nil, hint1024 = 1024, hint4 = 4}
for _, kind in ipairs({'int', 'str', 'table'}) do
  for _, topo in ipairs({'1p1c', '2p2c'}) do
    for _, hname in ipairs({'unbounded', 'hint1024', 'hint4'}) do
      local pairs_ = topo == '1p1c' and 1 or 2
      case(('vector.%s.%s.%s'):format(kind, topo, hname), {
        needs = {'Vector', 'Block'},
        full = kind == 'int' and 1000000 or 300000, quick = 10000,
        setup = function()
          return {block = tunnel.Block(2 * pairs_),
                  q = tunnel.Vector(HINTS[hname])}
        end,
        run = function(s, n)
          local per = floor(n / pairs_)
          local m = per * pairs_
          local secs, sum = run_block_job(s.block,
            handoff_job(s.q, per, pairs_, kind, STRINGS))
          if not secs then return nil, sum end
          local want = 0
          if kind == 'str' then
            for i = 1, m do want = want + #STRINGS[i % 64 + 1] end
          else
            want = m * (m + 1) / 2
          end
          if sum ~= want then
            return secs, ('sum %s, expected %s'):format(sum, want), m
          end
          if s.q:size() ~= 0 then return secs, 'vector not empty', m end
          return secs, nil, m
        end,
        teardown = function(s) s.block:terminate() end,
      })
    end
  end
end

-- 20-byte strings against integers (issue 17: within 1.5x a hand-off):
-- 64 distinct strings, and a fresh one per item (what a program that makes
-- its strings pays: its string.format, and a new string in the consumer).
for _, kind in ipairs({'str20', 'fresh20'}) do
  case(('vector.%s.1p1c.unbounded'):format(kind), {
    needs = {'Vector', 'Block'},
    full = 1000000, quick = 10000,
    setup = function()
      return {block = tunnel.Block(2), q = tunnel.Vector()}
    end,
    run = function(s, n)
      local secs, sum = run_block_job(s.block,
        handoff_job(s.q, n, 1, kind, STRINGS20))
      if not secs then return nil, sum end
      if sum ~= 20 * n then
        return secs, ('sum %s, expected %s'):format(sum, 20 * n)
      end
      if s.q:size() ~= 0 then return secs, 'vector not empty' end
      return secs
    end,
    teardown = function(s) s.block:terminate() end,
  })
end

-- One thread pushes and pops at once: the binding's and the codec's cost
-- per item with no waiting and no cache-line transfer.
for _, kind in ipairs({'int', 'str', 'table'}) do
  case(('vector.%s.pushpop.1t'):format(kind), {
    needs = {'Vector'},
    full = 1000000, quick = 10000,
    run = function(_, n)
      local q = tunnel.Vector()
      local clock = tunnel.clock
      local sum, want = 0, 0
      local t0 = clock()
      if kind == 'int' then
        for i = 1, n do
          q:pushBack(i)
          sum = sum + q:popFront()
        end
        want = n * (n + 1) / 2
      elseif kind == 'str' then
        for i = 1, n do
          q:pushBack(STRINGS[i % 64 + 1])
          sum = sum + #q:popFront()
        end
        for i = 1, n do want = want + #STRINGS[i % 64 + 1] end
      else
        local t = {id = 0, name = 'item', weight = 1.5, ok = true}
        for i = 1, n do
          t.id = i
          q:pushBack(t)
          sum = sum + q:popFront().id
        end
        want = n * (n + 1) / 2
      end
      local secs = clock() - t0
      if sum ~= want then return secs, ('sum %s, expected %s'):format(sum, want) end
      return secs
    end,
  })
end

-- ---- ping-pong ------------------------------------------------------------

case('vector.pingpong', {
  needs = {'Vector', 'Block'},
  full = 100000, quick = 1000,
  setup = function()
    return {block = tunnel.Block(1), there = tunnel.Vector(),
            back = tunnel.Vector()}
  end,
  run = function(s, n)
    local there, back = s.there, s.back
    s.block:run(function()
      for _ = 1, n do
        local v = there:popFront()
        back:pushBack(v)
      end
    end)
    there:pushBack(0) -- a first round trip wakes the echo thread up
    back:popFront()
    local bad = 0
    local clock = tunnel.clock
    local t0 = clock()
    for i = 1, n - 1 do
      there:pushBack(i)
      if back:popFront() ~= i then bad = bad + 1 end
    end
    local t = clock() - t0
    local _, status = s.block:synchronize()
    if status[1] ~= true then return t, 'echo thread failed', n - 1 end
    if bad > 0 then return t, bad .. ' wrong values', n - 1 end
    return t, nil, n - 1
  end,
  teardown = function(s) s.block:terminate() end,
})

-- ---- Counter ----------------------------------------------------------------

case('counter.1t', {
  needs = {'Counter'},
  full = 10000000, quick = 100000,
  run = function(_, n)
    local c = tunnel.Counter()
    local clock = tunnel.clock
    local t0 = clock()
    for _ = 1, n do c:increase() end
    local t = clock() - t0
    if c:get() ~= n then return t, 'counter is ' .. c:get() end
    return t
  end,
})

case('counter.2t', {
  needs = {'Counter', 'Block'},
  full = 10000000, quick = 100000,
  setup = function() return {block = tunnel.Block(2)} end,
  run = function(s, n)
    local c = tunnel.Counter()
    local per = floor(n / 2)
    local secs, why = run_block_job(s.block, function()
      local clock = tunnel.clock
      local t0 = clock()
      for _ = 1, per do c:increase() end
      return t0, clock(), 0
    end)
    if not secs then return nil, why end
    if c:get() ~= 2 * per then return secs, 'counter is ' .. c:get() end
    return secs, nil, 2 * per
  end,
  teardown = function(s) s.block:terminate() end,
})

-- ---- Hash and Atomic (their classes come with another issue) --------------

-- Each thread sets and gets keys of its own in a window of 1,000: 2 ops
-- per item; the sum of what it read back is checked.
local function hash_job(h, per)
  return function()
    local clock = tunnel.clock
    local base = __threadid * 1000000
    local t0 = clock()
    local sum = 0
    for i = 1, per do
      local k = base + i % 1000
      h:set(k, i)
      sum = sum + h:get(k)
    end
    return t0, clock(), sum
  end
end

for _, threads in ipairs({1, 2}) do
  case(('hash.setget.%dt'):format(threads), {
    needs = {'Hash', 'Block'},
    full = 1000000, quick = 10000,
    setup = function() return {block = tunnel.Block(threads)} end,
    run = function(s, n)
      local per = floor(n / threads)
      local secs, sum = run_block_job(s.block, hash_job(tunnel.Hash(), per))
      if not secs then return nil, sum end
      local want = threads * per * (per + 1) / 2
      if sum ~= want then return secs, ('sum %s, expected %s'):format(sum, want) end
      return secs, nil, threads * per
    end,
    teardown = function(s) s.block:terminate() end,
  })
end

-- Reads only: each thread reads t[i % 1000 + 1] from one 1,000-entry table
-- or Hash, the same keys in every thread (so 2t shows whether readers
-- scale, the target of issue 17: >= 1.6x the 1t rate).
local function get_job(read, per)
  return function()
    local clock = tunnel.clock
    local t0 = clock()
    local sum = 0
    for i = 1, per do sum = sum + read(i % 1000 + 1) end
    return t0, clock(), sum
  end
end

local function read_want(per)
  local want = 0
  for i = 1, per do want = want + i % 1000 + 1 end
  return want
end

for _, threads in ipairs({1, 2}) do
  case(('hash.get.%dt'):format(threads), {
    needs = {'Hash', 'Block'},
    full = 1000000, quick = 10000,
    setup = function() return {block = tunnel.Block(threads)} end,
    run = function(s, n)
      local h = tunnel.Hash()
      for i = 1, 1000 do h:set(i, i) end
      local per = floor(n / threads)
      local secs, sum = run_block_job(s.block,
        get_job(function(k) return (h:get(k)) end, per))
      if not secs then return nil, sum end
      local want = threads * read_want(per)
      if sum ~= want then return secs, ('sum %s, expected %s'):format(sum, want) end
      return secs, nil, threads * per
    end,
    teardown = function(s) s.block:terminate() end,
  })
end

-- Shared tables (tunnel.Share(t).data): the hash workload with t[k] = v
-- and t[k]; reads of one table from 1 and 2 threads; one hot key read by
-- every thread; #t, pairs and a nested table. Items = accesses (setget:
-- set+get pairs, pairs: elements visited).
for _, threads in ipairs({1, 2}) do
  case(('table.setget.%dt'):format(threads), {
    needs = {'Share', 'Block'},
    full = 1000000, quick = 10000,
    setup = function() return {block = tunnel.Block(threads)} end,
    run = function(s, n)
      local t = tunnel.Share({}).data
      local per = floor(n / threads)
      local secs, sum = run_block_job(s.block, function()
        local clock = tunnel.clock
        local base = __threadid * 1000000
        local t0 = clock()
        local sum = 0
        for i = 1, per do
          local k = base + i % 1000
          t[k] = i
          sum = sum + t[k]
        end
        return t0, clock(), sum
      end)
      if not secs then return nil, sum end
      local want = threads * per * (per + 1) / 2
      if sum ~= want then return secs, ('sum %s, expected %s'):format(sum, want) end
      return secs, nil, threads * per
    end,
    teardown = function(s) s.block:terminate() end,
  })
  case(('table.get.%dt'):format(threads), {
    needs = {'Share', 'Block'},
    full = 1000000, quick = 10000,
    setup = function() return {block = tunnel.Block(threads)} end,
    run = function(s, n)
      local t = tunnel.Share({}).data
      for i = 1, 1000 do t[i] = i end
      local per = floor(n / threads)
      local secs, sum = run_block_job(s.block,
        get_job(function(k) return t[k] end, per))
      if not secs then return nil, sum end
      local want = threads * read_want(per)
      if sum ~= want then return secs, ('sum %s, expected %s'):format(sum, want) end
      return secs, nil, threads * per
    end,
    teardown = function(s) s.block:terminate() end,
  })
  case(('table.hotkey.%dt'):format(threads), {
    needs = {'Share', 'Block'},
    full = 1000000, quick = 10000,
    setup = function() return {block = tunnel.Block(threads)} end,
    run = function(s, n)
      local t = tunnel.Share({x = 3}).data
      local per = floor(n / threads)
      local secs, sum = run_block_job(s.block, function()
        local clock = tunnel.clock
        local t0 = clock()
        local sum = 0
        for _ = 1, per do sum = sum + t.x end
        return t0, clock(), sum
      end)
      if not secs then return nil, sum end
      if sum ~= 3 * threads * per then return secs, 'sum ' .. sum end
      return secs, nil, threads * per
    end,
    teardown = function(s) s.block:terminate() end,
  })
end

case('table.len.1t', {
  needs = {'Share'},
  full = 1000000, quick = 10000,
  run = function(_, n)
    local t = tunnel.Share({}).data
    for i = 1, 1000 do t[i] = i end
    local clock = tunnel.clock
    local sum = 0
    local t0 = clock()
    for _ = 1, n do sum = sum + #t end
    local secs = clock() - t0
    if sum ~= 1000 * n then return secs, 'sum ' .. sum end
    return secs
  end,
})

case('table.pairs.1t', {
  needs = {'Share'},
  full = 1000000, quick = 10000,
  run = function(_, n)
    local t = tunnel.Share({}).data
    for i = 1, 1000 do t[i] = i end
    local rounds = math.max(1, floor(n / 1000))
    local clock = tunnel.clock
    local sum = 0
    local t0 = clock()
    for _ = 1, rounds do
      -- pairs(t) honours __pairs on 5.2+ only; snapshot is what it uses
      for _, v in pairs(tunnel.snapshot(t)) do sum = sum + v end
    end
    local secs = clock() - t0
    if sum ~= rounds * 500500 then return secs, 'sum ' .. sum end
    return secs, nil, rounds * 1000
  end,
})

case('table.nested.1t', {
  needs = {'Share'},
  full = 1000000, quick = 10000,
  run = function(_, n)
    local t = tunnel.Share({sub = {x = 2}}).data
    local clock = tunnel.clock
    local sum = 0
    local t0 = clock()
    for _ = 1, n do sum = sum + t.sub.x end
    local secs = clock() - t0
    if sum ~= 2 * n then return secs, 'sum ' .. sum end
    return secs, nil, n
  end,
})

case('atomic.write.1t', {
  needs = {'Atomic'},
  full = 300000, quick = 5000,
  run = function(_, n)
    local a = tunnel.Atomic({x = 0})
    local function inc(d) d.x = d.x + 1 end
    local t0 = tunnel.clock()
    for _ = 1, n do a:write(inc) end
    local t = tunnel.clock() - t0
    local x = a:read(function(d) return d.x end)
    if x ~= n then return t, 'x is ' .. tostring(x) end
    return t
  end,
})

case('atomic.read.1t', {
  needs = {'Atomic'},
  full = 300000, quick = 5000,
  run = function(_, n)
    local a = tunnel.Atomic({x = 7})
    local function get(d) return d.x end
    local sum = 0
    local t0 = tunnel.clock()
    for _ = 1, n do sum = sum + a:read(get) end
    local t = tunnel.clock() - t0
    if sum ~= 7 * n then return t, 'sum is ' .. tostring(sum) end
    return t
  end,
})

case('atomic.write.2t', {
  needs = {'Atomic', 'Block'},
  full = 300000, quick = 5000,
  setup = function() return {block = tunnel.Block(2)} end,
  run = function(s, n)
    local a = tunnel.Atomic({x = 0})
    local per = floor(n / 2)
    local secs, why = run_block_job(s.block, function()
      local clock = tunnel.clock
      local t0 = clock()
      for _ = 1, per do a:write(function(d) d.x = d.x + 1 end) end
      return t0, clock(), 0
    end)
    if not secs then return nil, why end
    local x = a:read(function(d) return d.x end)
    if x ~= 2 * per then return secs, 'x is ' .. tostring(x) end
    return secs, nil, 2 * per
  end,
  teardown = function(s) s.block:terminate() end,
})

-- ---- Block --------------------------------------------------------------------

case('block.cycle', {
  needs = {'Block'},
  full = 300, quick = 20,
  run = function(_, n)
    local clock = tunnel.clock
    local done = 0
    local t0 = clock()
    for _ = 1, n do
      local b = tunnel.Block(1)
      b:run(function() return true end)
      local result, status = b:synchronize()
      if status[1] == true and result[1][1] == true then done = done + 1 end
      b:terminate()
    end
    local t = clock() - t0
    if done ~= n then return t, (n - done) .. ' runs failed' end
    return t
  end,
})

case('block.run', {
  needs = {'Block'},
  full = 3000, quick = 100,
  setup = function() return {block = tunnel.Block(1)} end,
  run = function(s, n)
    local b = s.block
    local clock = tunnel.clock
    local done = 0
    local t0 = clock()
    for _ = 1, n do
      b:run(function() return true end)
      local _, status = b:synchronize()
      if status[1] == true then done = done + 1 end
    end
    local t = clock() - t0
    if done ~= n then return t, (n - done) .. ' runs failed' end
    return t
  end,
  teardown = function(s) s.block:terminate() end,
})

-- ---- the codec, beside lua-cjson ----------------------------------------------

-- 1,000 entries: integers, floats, short strings, nested small tables,
-- booleans, in turn.
local function mixed_table()
  local t = {}
  for i = 1, 1000 do
    local k = i % 5
    if k == 0 then t[i] = i * 7
    elseif k == 1 then t[i] = i + 0.25
    elseif k == 2 then t[i] = 'str' .. i
    elseif k == 3 then t[i] = {id = i, name = 'n' .. i, ok = true}
    else t[i] = i % 2 == 0 end
  end
  return t
end

-- Deep equality; `strict` also compares integer/float subtypes (5.3+).
local mtype = math.type
local function same(a, b, strict)
  if type(a) ~= type(b) then return false end
  if type(a) == 'number' and strict and mtype and mtype(a) ~= mtype(b) then
    return false
  end
  if type(a) ~= 'table' then return a == b end
  for k, v in pairs(a) do
    if not same(v, b[k], strict) then return false end
  end
  for k in pairs(b) do
    if a[k] == nil then return false end
  end
  return true
end

-- n round trips of `encode` then `decode`; bytes = the encoded size.
local function roundtrip(n, clock, encode, decode, strict)
  local t = mixed_table()
  local bytes
  local u
  local t0 = clock()
  for _ = 1, n do
    local s = encode(t)
    bytes = #s
    u = decode(s)
  end
  local secs = clock() - t0
  if not same(t, u, strict) then return secs, 'decoded table differs' end
  return secs, nil, n, 'bytes=' .. bytes
end

case('codec.serializer', {
  needs = {'Serializer'},
  full = 1000, quick = 20,
  run = function(_, n)
    local s = tunnel.Serializer()
    return roundtrip(n, tunnel.clock,
      function(v) return s:save(v) end, function(str) return s:load(str) end,
      true)
  end,
})

case('codec.vector', {
  needs = {'Vector'},
  full = 1000, quick = 20,
  run = function(_, n)
    local q = tunnel.Vector()
    local t = mixed_table()
    local u
    local t0 = tunnel.clock()
    for _ = 1, n do
      q:pushBack(t)
      u = q:popFront()
    end
    local secs = tunnel.clock() - t0
    if not same(t, u, true) then return secs, 'popped table differs' end
    return secs
  end,
})

case('codec.cjson', {
  needs = {},
  full = 1000, quick = 20,
  run = function(_, n)
    local cjson = require('cjson')
    -- single-threaded: os.clock (CPU time) is a fair clock if tunnel
    -- does not load
    local clock = tunnel and tunnel.clock or os.clock
    return roundtrip(n, clock, cjson.encode, cjson.decode, false)
  end,
})

-- ---- Cluster (Redis) ---------------------------------------------------------

-- The same structures on the Redis server of TUNNEL_REDIS_URL (skipped
-- without it: scripts/with-redis.sh make bench). Every process uses a
-- prefix of its own and every repetition fresh names, and deletes the keys
-- under its prefix at the end (nothing else). Each push and pop is one
-- round trip (a server-side script); the baselines are redis-benchmark
-- runs against the same server (bench/redis_bench.lua).
local REDIS_URL = os.getenv('TUNNEL_REDIS_URL') or ''

local function cluster_prefix()
  local f = io.open('/dev/urandom', 'rb')
  local r = f and f:read(6) or tostring(os.clock())
  if f then f:close() end
  return ('tunnel-bench:%d-%s:'):format(os.time(),
    (r:gsub('.', function(ch) return ('%02x'):format(ch:byte()) end)))
end

local function cluster_setup(threads)
  return function()
    local prefix = cluster_prefix()
    return {prefix = prefix, serial = 0,
            cluster = tunnel.Cluster(REDIS_URL, {prefix = prefix, timeout = 30}),
            block = threads and tunnel.Block(threads)}
  end
end

local function fresh(s, what)
  s.serial = s.serial + 1
  return what .. s.serial
end

local function cluster_teardown(s)
  if s.block then s.block:terminate() end
  -- Only the keys under this process's prefix ([%w:-], no glob characters).
  local function q(x) return "'" .. x:gsub("'", "'\\''") .. "'" end
  local cli = 'redis-cli -u ' .. q(REDIS_URL) .. ' --no-auth-warning '
  os.execute(cli .. '--scan --pattern ' .. q(s.prefix .. '*') ..
    ' 2>/dev/null | xargs -r ' .. cli .. 'unlink >/dev/null 2>&1')
end

local CLUSTER_N, CLUSTER_QUICK = 20000, 500

-- One thread, one connection: push n integers, then pop them. Two cases,
-- each timing one half (the ratios are to LPUSH and RPOP).
for _, half in ipairs({'push', 'pop'}) do
  case(('cluster.vector.%s.1t'):format(half), {
    needs = {'Cluster', 'Vector'}, redis = true,
    full = CLUSTER_N, quick = CLUSTER_QUICK,
    setup = cluster_setup(nil),
    run = function(s, n)
      local q = s.cluster:Vector(fresh(s, 'vector'))
      local clock = tunnel.clock
      if q:size() ~= 0 then return nil, 'fresh vector not empty' end
      local t0 = clock()
      for i = 1, n do q:pushBack(i) end
      local t1 = clock()
      if q:size() ~= n then return t1 - t0, 'size ' .. q:size() end
      local sum = 0
      local t2 = clock()
      for _ = 1, n do sum = sum + q:popFront() end
      local t3 = clock()
      local secs = half == 'push' and t1 - t0 or t3 - t2
      local want = n * (n + 1) / 2
      if sum ~= want then return secs, ('sum %s, expected %s'):format(sum, want) end
      if q:size() ~= 0 then return secs, 'vector not empty' end
      return secs
    end,
    teardown = cluster_teardown,
  })
end

-- The same in batches of 64 (pushMany, popMany: one round trip, one
-- script, per batch), 10x the items. Baselines: the single pushes and
-- pops above, and redis-benchmark's LPUSH with 16 requests in flight.
for _, half in ipairs({'push', 'pop'}) do
  case(('cluster.batch64.%s.1t'):format(half), {
    needs = {'Cluster', 'Vector'}, redis = true,
    full = CLUSTER_N * 10, quick = CLUSTER_QUICK * 10,
    setup = cluster_setup(nil),
    run = function(s, n)
      local q = s.cluster:Vector(fresh(s, 'vector'))
      local clock = tunnel.clock
      if q:size() ~= 0 then return nil, 'fresh vector not empty' end
      n = n - n % 64
      local batches = {}
      for b = 1, n / 64 do
        local t = {}
        for j = 1, 64 do t[j] = (b - 1) * 64 + j end
        batches[b] = t
      end
      local t0 = clock()
      for b = 1, #batches do q:pushMany(batches[b]) end
      local t1 = clock()
      if q:size() ~= n then return t1 - t0, 'size ' .. q:size(), n end
      local sum, got = 0, 0
      local t2 = clock()
      while got < n do
        local t = q:popMany(64)
        for j = 1, t.n do sum = sum + t[j] end
        got = got + t.n
      end
      local t3 = clock()
      local secs = half == 'push' and t1 - t0 or t3 - t2
      local want = n * (n + 1) / 2
      if sum ~= want then return secs, ('sum %s, expected %s'):format(sum, want), n end
      if q:size() ~= 0 then return secs, 'vector not empty', n end
      return secs, nil, n
    end,
    teardown = cluster_teardown,
  })
end

-- A cluster Atomic's read and write callbacks, one connection: the lock
-- (which fetches the data), the callback, the set (write), the unlock.
for _, op in ipairs({'read', 'write'}) do
  case(('cluster.atomic.%s.1t'):format(op), {
    needs = {'Cluster', 'Atomic'}, redis = true,
    full = CLUSTER_N / 2, quick = CLUSTER_QUICK,
    setup = cluster_setup(nil),
    run = function(s, n)
      local a = s.cluster:Atomic(fresh(s, 'atomic'), {n = 0})
      local clock = tunnel.clock
      local sum = 0
      local t0 = clock()
      if op == 'read' then
        for _ = 1, n do sum = sum + a:read(function(d) return d.n + 1 end) end
      else
        for _ = 1, n do a:write(function(d) d.n = d.n + 1 end) end
        sum = a:read(function(d) return d.n end)
      end
      local secs = clock() - t0
      if sum ~= n then return secs, ('sum %s, expected %s'):format(sum, n) end
      return secs
    end,
    teardown = cluster_teardown,
  })
end

-- 2 producer and 2 consumer threads (a Block of 4), each with its own
-- connection, through one cluster Vector; items = items moved (each one
-- push and one pop).
case('cluster.vector.2p2c', {
  needs = {'Cluster', 'Vector', 'Block'}, redis = true,
  full = CLUSTER_N, quick = CLUSTER_QUICK,
  setup = cluster_setup(4),
  run = function(s, n)
    local q = s.cluster:Vector(fresh(s, 'vector'))
    local per = floor(n / 2)
    local m = 2 * per
    local secs, sum = run_block_job(s.block, function()
      local clock = tunnel.clock
      local id = __threadid
      q:size() -- this thread's connection, made before the clock starts
      local t0 = clock()
      local total = 0
      if id <= 2 then
        local first = (id - 1) * per + 1
        for i = first, first + per - 1 do q:pushBack(i) end
      else
        for _ = 1, per do total = total + q:popFront() end
      end
      return t0, clock(), total
    end)
    if not secs then return nil, sum end
    local want = m * (m + 1) / 2
    if sum ~= want then return secs, ('sum %s, expected %s'):format(sum, want), m end
    if q:size() ~= 0 then return secs, 'vector not empty', m end
    return secs, nil, m
  end,
  teardown = cluster_teardown,
})

-- Counter increases through one connection, and from 2 threads at once.
for _, threads in ipairs({1, 2}) do
  case(('cluster.counter.%dt'):format(threads), {
    needs = {'Cluster', 'Counter', 'Block'}, redis = true,
    full = CLUSTER_N, quick = CLUSTER_QUICK,
    setup = cluster_setup(threads > 1 and threads or nil),
    run = function(s, n)
      local c = s.cluster:Counter(fresh(s, 'counter'), 0)
      local per = floor(n / threads)
      local secs, why
      if threads == 1 then
        c:get()
        local t0 = tunnel.clock()
        for _ = 1, per do c:increase() end
        secs = tunnel.clock() - t0
      else
        secs, why = run_block_job(s.block, function()
          local clock = tunnel.clock
          c:get() -- this thread's connection, made before the clock starts
          local t0 = clock()
          for _ = 1, per do c:increase() end
          return t0, clock(), 0
        end)
        if not secs then return nil, why end
      end
      local got = c:get()
      if got ~= threads * per then
        return secs, ('counter is %s, expected %d'):format(got, threads * per),
          threads * per
      end
      return secs, nil, threads * per
    end,
    teardown = cluster_teardown,
  })
end

-- ---- priority queue, select, batches (issue 15) ---------------------------

-- One thread, n integers: each pushed and popped at once through a
-- PriorityQueue (priorities cycling over 16), a select over two Vectors
-- (pushed into each in turn), or Vector batches of 64 against 64 single
-- pushes and pops. Baselines: vector.int.pushpop.1t, single64.int.pushpop.1t.
local ONE_THREAD = {
  ['pqueue.int.pushpop.1t'] = function(n)
    local q = tunnel.PriorityQueue()
    local sum = 0
    for i = 1, n do
      q:push(i % 16, i)
      sum = sum + q:pop()
    end
    return sum, n
  end,
  ['select2.int.pushpop.1t'] = function(n)
    local vs = {tunnel.Vector(), tunnel.Vector()}
    local select_ = tunnel.select
    local sum = 0
    for i = 1, n do
      vs[i % 2 + 1]:pushBack(i)
      local _, v = select_(vs)
      sum = sum + v
    end
    return sum, n
  end,
  ['batch64.int.pushpop.1t'] = function(n)
    local q = tunnel.Vector()
    local sum, t = 0, {}
    n = n - n % 64
    for i = 1, n, 64 do
      for j = 1, 64 do t[j] = i + j - 1 end
      q:pushMany(t)
      local got = q:popMany(64)
      for j = 1, got.n do sum = sum + got[j] end
    end
    return sum, n
  end,
  ['single64.int.pushpop.1t'] = function(n)
    local q = tunnel.Vector()
    local sum, t = 0, {}
    n = n - n % 64
    for i = 1, n, 64 do
      for j = 1, 64 do t[j] = i + j - 1 end
      for j = 1, 64 do q:pushBack(t[j]) end
      for _ = 1, 64 do sum = sum + q:popFront() end
    end
    return sum, n
  end,
}
for _, name in ipairs({'pqueue.int.pushpop.1t', 'select2.int.pushpop.1t',
                       'batch64.int.pushpop.1t', 'single64.int.pushpop.1t'}) do
  case(name, {
    needs = {'Vector', 'PriorityQueue'},
    full = 1000000, quick = 10000,
    run = function(_, n)
      local t0 = tunnel.clock()
      local sum, m = ONE_THREAD[name](n)
      local secs = tunnel.clock() - t0
      if sum ~= m * (m + 1) / 2 then return secs, 'wrong sum ' .. sum, m end
      return secs, nil, m
    end,
  })
end

-- 1 producer and 1 consumer thread, n integers, through a PriorityQueue,
-- two Vectors the consumer selects over, or one Vector in batches of 64.
-- Baseline: vector.int.1p1c.unbounded.
local function mover_job(kind, q, r, per)
  return function()
    local clock, id, t0, sum = tunnel.clock, __threadid, tunnel.clock(), 0
    if id == 1 then
      if kind == 'pqueue' then
        for i = 1, per do q:push(i % 16, i) end
      elseif kind == 'select2' then
        local vs = {q, r}
        for i = 1, per do vs[i % 2 + 1]:pushBack(i) end
      else
        local t = {}
        for i = 1, per, 64 do
          local k = 0
          for j = i, math.min(i + 63, per) do
            k = k + 1
            t[k] = j
          end
          t.n = k
          q:pushMany(t)
        end
      end
    else
      local got = 0
      if kind == 'pqueue' then
        for _ = 1, per do sum = sum + q:pop() end
      elseif kind == 'select2' then
        local vs, select_ = {q, r}, tunnel.select
        for _ = 1, per do
          local _, v = select_(vs)
          sum = sum + v
        end
      else
        while got < per do
          local t = q:popMany(64)
          for j = 1, t.n do sum = sum + t[j] end
          got = got + t.n
        end
      end
    end
    return t0, clock(), sum
  end
end

for _, kind in ipairs({'pqueue', 'select2', 'batch64'}) do
  case(kind .. '.int.1p1c', {
    needs = {'Vector', 'PriorityQueue', 'Block'},
    full = 1000000, quick = 10000,
    setup = function()
      return {block = tunnel.Block(2),
              q = kind == 'pqueue' and tunnel.PriorityQueue() or tunnel.Vector(),
              r = tunnel.Vector()}
    end,
    run = function(s, n)
      local secs, sum = run_block_job(s.block, mover_job(kind, s.q, s.r, n))
      if not secs then return nil, sum end
      if sum ~= n * (n + 1) / 2 then return secs, 'wrong sum ' .. sum end
      return secs
    end,
    teardown = function(s) s.block:terminate() end,
  })
end

-- One thread, one connection, n integers, each pushed and popped at once:
-- a cluster Vector (pushBack, popFront), PriorityQueue, select over two
-- Vectors; and batches of 64 (pushMany, popMany: two round trips per 64).
-- Baseline: cluster.vector.pushpop.1t.
local CLUSTER_ONE = {
  ['cluster.vector.pushpop.1t'] = function(s, n)
    local q, sum = s.cluster:Vector(fresh(s, 'vector')), 0
    for i = 1, n do
      q:pushBack(i)
      sum = sum + q:popFront()
    end
    return sum, n
  end,
  ['cluster.pqueue.pushpop.1t'] = function(s, n)
    local q, sum = s.cluster:PriorityQueue(fresh(s, 'pqueue')), 0
    for i = 1, n do
      q:push(i % 16, i)
      sum = sum + q:pop()
    end
    return sum, n
  end,
  ['cluster.select2.pushpop.1t'] = function(s, n)
    local vs = {s.cluster:Vector(fresh(s, 'vector')),
                s.cluster:Vector(fresh(s, 'vector'))}
    local sum = 0
    for i = 1, n do
      vs[i % 2 + 1]:pushBack(i)
      local _, v = tunnel.select(vs)
      sum = sum + v
    end
    return sum, n
  end,
  ['cluster.batch64.pushpop.1t'] = function(s, n)
    local q, sum, t = s.cluster:Vector(fresh(s, 'vector')), 0, {}
    n = n - n % 64
    for i = 1, n, 64 do
      for j = 1, 64 do t[j] = i + j - 1 end
      q:pushMany(t)
      local got = q:popMany(64)
      for j = 1, got.n do sum = sum + got[j] end
    end
    return sum, n
  end,
}
for _, name in ipairs({'cluster.vector.pushpop.1t', 'cluster.pqueue.pushpop.1t',
                       'cluster.select2.pushpop.1t', 'cluster.batch64.pushpop.1t'}) do
  case(name, {
    needs = {'Cluster', 'Vector', 'PriorityQueue'}, redis = true,
    full = name:match('batch') and CLUSTER_N * 10 or CLUSTER_N,
    quick = name:match('batch') and CLUSTER_QUICK * 10 or CLUSTER_QUICK,
    setup = cluster_setup(nil),
    run = function(s, n)
      local t0 = tunnel.clock()
      local sum, m = CLUSTER_ONE[name](s, n)
      local secs = tunnel.clock() - t0
      if sum ~= m * (m + 1) / 2 then return secs, 'wrong sum ' .. sum, m end
      return secs, nil, m
    end,
    teardown = cluster_teardown,
  })
end

-- ---- main ---------------------------------------------------------------------

local name = arg[1]
if name == nil or name == 'list' then
  for _, n in ipairs(order) do print(n) end
  return
end
local c = cases[name]
if c == nil then
  io.stderr:write('lua_bench: no case ' .. name .. '\n')
  os.exit(2)
end

local loaded, mod = pcall(require, 'tunnel')
tunnel = loaded and mod or nil -- luacheck: ignore 121 (a global: jobs find it in their threads)
local function skip(why)
  print(('skip\t%s\t%s'):format(name, (tostring(why):match('[^\n]*'))))
  os.exit(0)
end
if c.needs[1] ~= nil then
  if not loaded then skip('module does not load: ' .. tostring(mod)) end
  if tunnel.clock == nil then skip('tunnel.clock is missing') end
end
for _, cls in ipairs(c.needs) do
  if tunnel[cls] == nil then skip(('tunnel.%s not built yet'):format(cls)) end
end
if c.redis and REDIS_URL == '' then
  skip('TUNNEL_REDIS_URL is not set (scripts/with-redis.sh make bench)')
end

local n = QUICK and c.quick or c.full
local bad = false
local ok, state = pcall(c.setup or function() end)
if not ok then
  print(('result\t%s\t%d\t0\tFAIL:setup: %s'):format(name, n, tostring(state)))
  os.exit(1)
end
for r = 0, REPEAT do -- r = 0: a warm-up, not reported
  local m = r == 0 and math.max(1, floor(n / 10)) or n
  -- os.clock: the CPU time of the process, every thread (clock(3)), over
  -- the whole repetition (a Block's threads included)
  local cpu0 = os.clock()
  local okr, secs, why, items, extra = pcall(c.run, state, m)
  local cpu = os.clock() - cpu0
  if not okr then secs, why = 0, tostring(secs) end
  if secs == nil then secs = 0 end
  if why ~= nil then bad = true end
  if r > 0 or why ~= nil then
    print(('result\t%s\t%d\t%.9f\t%s%s\tcpu=%.6f'):format(name, items or m,
      secs, why and ('FAIL:' .. tostring(why):gsub('[\t\n]', ' ')) or 'ok',
      extra and ('\t' .. extra) or '', cpu))
    io.stdout:flush()
  end
  if why ~= nil then break end
end
if c.teardown then pcall(c.teardown, state) end
os.exit(bad and 1 or 0)
