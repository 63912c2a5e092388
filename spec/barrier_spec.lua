-- tunnel.Barrier: lock-step rounds of `parties` threads, in process and on
-- a Redis server (when TUNNEL_REDIS_URL is set: scripts/with-redis.sh).
local tunnel = require('tunnel')
local BACKENDS = dofile('spec/support/backends.lua')

-- A fresh barrier of the backend (cluster ones get unique names).
local function Barrier(B, parties)
  if B.cluster then return B.cluster:Barrier(B.fresh('barrier'), parties) end
  return tunnel.Barrier(parties)
end

for _, B in ipairs(BACKENDS) do
  describe('tunnel.Barrier (' .. B.name .. ')', function()
    it('refuses a party count that is not an integer >= 1', function()
      for _, bad in ipairs({0, -2, 1.5, 'x', {}}) do
        local ok, err = pcall(Barrier, B, bad)
        assert.is_false(ok)
        assert.matches('Barrier: parties must be an integer', err)
      end
    end)

    it('has wait, reset, parties, waiting, isBroken and no waitAsync', function()
      local b = Barrier(B, 3)
      assert.are.equal(3, b:parties())
      assert.are.equal(0, b:waiting())
      assert.is_false(b:isBroken())
      assert.is_nil(b.waitAsync)
      assert.matches('^tunnel%.Barrier: ', tostring(b))
    end)

    it('lets the only party of a barrier of one through at once, index 1', function()
      local b = Barrier(B, 1)
      assert.are.same({1, true}, {b:wait()})
      assert.are.same({1, true}, {b:wait(0)})
    end)

    it('raises for a bad timeout or self, changing nothing', function()
      local b = Barrier(B, 2)
      local ok, err = pcall(b.wait, b, -1)
      assert.is_false(ok)
      assert.matches('^tunnel%.Barrier:wait: timeout must be >= 0', err)
      ok, err = pcall(b.wait, b, 'soon')
      assert.is_false(ok)
      assert.matches('^tunnel%.Barrier:wait: timeout must be a number', err)
      ok, err = pcall(b.wait, 5)
      assert.is_false(ok)
      assert.matches("^tunnel%.Barrier:wait: self is a number, not a tunnel%.Barrier", err)
      assert.are.equal(0, b:waiting())
      assert.is_false(b:isBroken())
    end)

    local ROUNDS = B.name == 'local' and 1000 or 300
    it(('never lets %d rounds of 4 threads overlap, each handing out indexes 1..4'):format(ROUNDS), function()
      local b = Barrier(B, 4)
      local arrivals = B.Counter(0)
      local block = tunnel.Block(4)
      block:add(b, arrivals, ROUNDS)
      block:run(function(bar, arr, rounds)
        local bad, indexes = 0, {}
        for r = 0, rounds - 1 do
          arr:increase()
          local index, ok = bar:wait(60)
          if not ok then return 'round ' .. r .. ' broken' end
          -- Everyone of round r arrived, and this thread has not arrived at
          -- round r + 1, so nobody can have passed it.
          local a = arr:get()
          if a < 4 * (r + 1) or a > 4 * (r + 1) + 3 then bad = bad + 1 end
          indexes[#indexes + 1] = index
        end
        return bad, indexes
      end)
      local r, s = block:synchronize(300)
      block:terminate()
      local total = {}
      for i = 1, 4 do
        assert.is_true(s[i], tostring(r[i][1]))
        assert.are.equal(0, r[i][1])
        for round, index in ipairs(r[i][2]) do
          total[round] = (total[round] or 0) + index
        end
      end
      for round = 1, ROUNDS do assert.are.equal(1 + 2 + 3 + 4, total[round]) end
      assert.are.equal(4 * ROUNDS, arrivals:get())
      assert.are.equal(0, b:waiting())
    end)

    it('a timeout breaks the round: the waiter and the others get nil, false, later arrivals too, until reset', function()
      local b = Barrier(B, 3)
      local block = tunnel.Block(1)
      block:add(b)
      block:run(function(bar) return bar:wait(30) end)
      for _ = 1, 1000 do
        if b:waiting() == 1 then break end
        tunnel.sleep(0.01)
      end
      local t0 = tunnel.clock()
      assert.are.same({nil, false}, {b:wait(0.2)})
      assert.is_true(tunnel.clock() - t0 >= 0.15)
      local r = block:synchronize(30)
      assert.are.same({nil, false}, {r[1][1], r[1][2]})
      assert.is_true(b:isBroken())
      assert.are.same({nil, false}, {b:wait()}) -- at once
      block:terminate()
      b:reset()
      assert.is_false(b:isBroken())
      local two = tunnel.Block(2)
      two:add(b)
      two:run(function(bar) return bar:wait(30) end)
      local index, ok = b:wait(30)
      assert.is_true(ok)
      r = two:synchronize(30)
      two:terminate()
      assert.is_true(r[1][2] and r[2][2])
      assert.are.equal(6, index + r[1][1] + r[2][1])
    end)

    it('reset releases the waiters of the round with nil, false; the barrier works on', function()
      local b = Barrier(B, 3)
      local block = tunnel.Block(2)
      block:add(b)
      block:run(function(bar) return bar:wait(30) end)
      for _ = 1, 1000 do
        if b:waiting() == 2 then break end
        tunnel.sleep(0.01)
      end
      b:reset()
      local r = block:synchronize(30)
      for i = 1, 2 do assert.are.same({nil, false}, {r[i][1], r[i][2]}) end
      assert.is_false(b:isBroken())
      block:run(function(bar) return bar:wait(30) end)
      local index, ok = b:wait(30)
      assert.is_true(ok)
      r = block:synchronize(30)
      assert.are.equal(6, index + r[1][1] + r[2][1])
      block:terminate()
    end)
  end)
end

-- Run a Lua program in another process with the module of this build.
local function spawn(code, limit)
  local lua = os.getenv('TUNNEL_LUA') or 'lua5.4'
  local name = os.tmpname()
  local f = assert(io.open(name, 'w'))
  f:write(code)
  f:close()
  return assert(io.popen(('timeout %d %s %s 2>&1; rm -f %s')
    :format(limit or 120, lua, name, name)))
end

local C = BACKENDS[2]
;(C and describe or pending)('tunnel.Barrier across processes', function()
  it('keeps 3 processes in lock-step over 100 rounds', function()
    local name, kname = C.fresh('mp-barrier'), C.fresh('mp-arrivals')
    C.cluster:Barrier(name, 3)
    local arrivals = C.cluster:Counter(kname, 0)
    local procs = {}
    for _ = 1, 3 do
      procs[#procs + 1] = spawn(([[
        local tunnel = require('tunnel')
        local c = tunnel.Cluster(%q, {prefix = 'tunnel-spec:'})
        local b, arr = c:Barrier(%q, 3), c:Counter(%q)
        local bad, sum = 0, 0
        for r = 0, 99 do
          arr:increase()
          local index, ok = b:wait(60)
          if not ok then io.write('broken ', r) os.exit(1) end
          local a = arr:get()
          if a < 3 * (r + 1) or a > 3 * (r + 1) + 2 then bad = bad + 1 end
          sum = sum + index
        end
        io.write('bad ', bad, ' sum ', sum)
      ]]):format(C.url, name, kname))
    end
    local sum = 0
    for _, p in ipairs(procs) do
      local out = p:read('*a')
      p:close()
      local bad, s = out:match('^bad (%d+) sum (%d+)$')
      assert.is_truthy(bad, out)
      assert.are.equal('0', bad)
      sum = sum + tonumber(s)
    end
    assert.are.equal(100 * (1 + 2 + 3), sum)
    assert.are.equal(300, arrivals:get())
  end)

  it('keeps the first creator\'s party count', function()
    local name = C.fresh('first-barrier')
    assert.are.equal(2, C.cluster:Barrier(name, 2):parties())
    assert.are.equal(2, C.cluster:Barrier(name, 5):parties())
  end)
end)
