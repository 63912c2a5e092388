-- tunnel.Counter: an atomic integer shared by threads.
local tunnel = require('tunnel')
-- One body, run on each backend of spec/support/backends.lua: in process,
-- and on a Redis server when TUNNEL_REDIS_URL is set (scripts/with-redis.sh).
local BACKENDS = dofile('spec/support/backends.lua')
local hold = dofile('spec/support/hold.lua')

local METHODS = {'increase', 'decrease', 'get', 'set', 'read', 'write'}

for _, B in ipairs(BACKENDS) do
  describe('tunnel.Counter (' .. B.name .. ')', function()
    describe('construction', function()
      it('starts at 0 or at the value given', function()
        assert.are.equal(0, B.Counter():get())
        assert.are.equal(-5, B.Counter(-5):get())
        assert.are.equal(3, B.Counter(3.0):get())
      end)

      it('rejects a start value that is not an integer', function()
        for _, bad in ipairs({1.5, 'x', {}, true}) do
          local ok, err = pcall(tunnel.Counter, bad)
          assert.is_false(ok)
          assert.matches('^tunnel%.Counter: value must be an integer', err)
        end
      end)

      it('has an Async twin for every method', function()
        local c = B.Counter()
        for _, name in ipairs(METHODS) do
          assert.are.equal('function', type(c[name]), name)
          assert.are.equal('function', type(c[name .. 'Async']), name)
        end
      end)
    end)

    describe('arithmetic', function()
      it('increases and decreases by 1 by default, returning the new value', function()
        local c = B.Counter(10)
        assert.are.equal(11, c:increase())
        assert.are.equal(12, c:increaseAsync())
        assert.are.equal(11, c:decrease())
        assert.are.equal(10, c:decreaseAsync())
        assert.are.equal(10, c:get())
      end)

      it('takes steps, negative ones too', function()
        local c = B.Counter()
        assert.are.equal(5, c:increase(5))
        assert.are.equal(2, c:increase(-3))
        assert.are.equal(-8, c:decrease(10))
        assert.are.equal(-4, c:decrease(-4))
      end)

      it('rejects a step that is not an integer', function()
        local c = B.Counter()
        local ok, err = pcall(c.increase, c, 0.5)
        assert.is_false(ok)
        assert.matches('^tunnel%.Counter:increase: step must be an integer', err)
        ok, err = pcall(c.decreaseAsync, c, 'two')
        assert.is_false(ok)
        assert.matches('^tunnel%.Counter:decreaseAsync: step must be an integer', err)
        assert.are.equal(0, c:get())
      end)

      if math.type then
        -- In process the counter's word keeps a bit for the callback gate.
        local max = B.name == 'local' and math.tointeger(2 ^ 62) - 1 or math.maxinteger
        it('is an exact integer on Lua 5.3+ (63 bits in process, 64 on Redis)', function()
          local c = B.Counter(max - 1)
          assert.are.equal(max, c:increase())
          assert.are.equal('integer', math.type(c:get()))
          local big = math.tointeger(2 ^ 53)
          c:set(big)
          assert.are.equal(big + 1, c:increase())
        end)
      else
        it('is exact up to 2^53 where numbers are doubles', function()
          local c = B.Counter(2 ^ 53 - 1)
          assert.are.equal(2 ^ 53, c:increase())
        end)
      end
    end)

    describe('get and set', function()
      it('set returns the old value', function()
        local c = B.Counter(1)
        assert.are.equal(1, c:set(7))
        assert.are.equal(7, c:getAsync())
        assert.are.equal(7, c:setAsync(8))
        assert.are.equal(8, c:get())
      end)

      it('rejects a value that is not an integer', function()
        local c = B.Counter()
        local ok, err = pcall(c.set, c, 'x')
        assert.is_false(ok)
        assert.matches('^tunnel%.Counter:set: value must be an integer', err)
        ok = pcall(c.set, c)
        assert.is_false(ok)
      end)
    end)

    describe('read and write callbacks', function()
      it('read returns the callback\'s results for the value', function()
        local c = B.Counter(4)
        assert.are.same({8, 'four'}, {c:read(function(v) return v * 2, 'four' end)})
        assert.are.same({5}, {c:readAsync(function(v) return v + 1 end)})
        assert.are.equal(4, c:get())
      end)

      it('write stores the callback\'s result and returns the new value', function()
        local c = B.Counter(4)
        assert.are.equal(40, c:write(function(v) return v * 10 end))
        assert.are.equal(41, c:writeAsync(function(v) return v + 1 end))
        assert.are.equal(41, c:get())
      end)

      -- In process nothing but the callback changes the counter meanwhile,
      -- so its result is stored. A cluster counter's server does not hold
      -- off increases (other processes' or the callback's own), so write
      -- adds the difference and never loses one (docs/cluster.md).
      local expected = B.name == 'local' and 1 or 11
      it('write stores the callback\'s result (in process) or adds it (cluster)', function()
        local c = B.Counter(0)
        local new = c:write(function(v)
          assert.are.equal(10, c:increaseAsync(10)) -- the holder's own: it passes
          assert.are.equal(10, c:get())
          return v + 1
        end)
        assert.are.equal(expected, new)
        assert.are.equal(expected, c:get())
      end)

      it('raises instead of deadlocking when a callback locks its own counter', function()
        local c = B.Counter(0)
        for _, outer in ipairs({'read', 'write'}) do
          for _, inner in ipairs({'write', outer == 'write' and 'read' or nil}) do
            local ok, err = pcall(c[outer], c, function(v)
              c[inner](c, function(x) return x end)
              return v
            end)
            assert.is_false(ok)
            assert.matches('^tunnel%.Counter:' .. inner .. ': would deadlock', err)
          end
        end
        local ok, err
        if B.name == 'local' then -- a cluster counter's increase is not gated
          ok, err = pcall(c.read, c, function() c:increase() end)
          assert.is_false(ok)
          assert.matches('^tunnel%.Counter:increase: would deadlock', err)
        end
        ok, err = pcall(c.read, c, function() c:set(5) end)
        assert.is_false(ok)
        assert.matches('^tunnel%.Counter:set: would deadlock', err)
        assert.are.equal(0, c:get())
        -- a read inside a read nests
        assert.are.equal(2, c:read(function() return c:read(function() return 2 end) end))
      end)

      it('raises when the write callback returns no integer, releasing the lock', function()
        local c = B.Counter(1)
        local ok, err = pcall(c.write, c, function() return 'x' end)
        assert.is_false(ok)
        assert.matches('^tunnel%.Counter:write: the callback must return an integer', err)
        ok = pcall(c.write, c, function() return 1.5 end)
        assert.is_false(ok)
        assert.are.equal(1, c:get())
        assert.are.equal(2, c:writeAsync(function(v) return v + 1 end))
      end)

      it('re-raises an error of the callback and releases the lock', function()
        local c = B.Counter(1)
        local marker = {}
        local ok, err = pcall(c.write, c, function() error(marker) end)
        assert.is_false(ok)
        assert.are.equal(marker, err)
        -- Async twins first: a lock left held fails them instead of hanging.
        assert.are.equal(1, c:setAsync(1))
        ok, err = pcall(c.read, c, function() error('boom') end)
        assert.is_false(ok)
        assert.matches('boom', err)
        assert.are.equal(1, c:setAsync(3))
        assert.are.equal(4, c:write(function(v) return v + 1 end))
      end)

      it('read and write Async twins return nil while the lock is busy', function()
        local c = B.Counter(1)
        c:write(function(v)
          assert.is_nil(c:readAsync(function() return 'ran' end))
          assert.is_nil(c:writeAsync(function() return 100 end))
          assert.are.equal(v, c:getAsync()) -- the holder's own operations pass
          assert.are.equal(v, c:setAsync(v))
          return v
        end)
        c:read(function()
          assert.are.equal('ran', c:readAsync(function() return 'ran' end))
          assert.is_nil(c:setAsync(100)) -- a reader's change would wait for itself
          if B.name == 'local' then assert.is_nil(c:increaseAsync()) end
          assert.is_nil(c:writeAsync(function() return 100 end))
        end)
        assert.are.equal(1, c:get())
      end)

      it('rejects a callback that is not a function', function()
        local c = B.Counter()
        local ok, err = pcall(c.read, c, 5)
        assert.is_false(ok)
        assert.matches('tunnel%.Counter:read: callback must be a function', err)
        ok, err = pcall(c.writeAsync, c)
        assert.is_false(ok)
        assert.matches('tunnel%.Counter:writeAsync: callback must be a function', err)
      end)
    end)

    describe('misuse', function()
      it('raises an error naming the method for a wrong self', function()
        local c = B.Counter()
        for _, name in ipairs(METHODS) do
          local ok, err = pcall(c[name], 'self')
          assert.is_false(ok)
          assert.matches('^tunnel%.Counter:' .. name ..
            ': self is a string, not a tunnel%.Counter', err)
        end
        local ok, err = pcall(c.increase, tunnel.Vector())
        assert.is_false(ok)
        assert.matches('not a tunnel%.Counter', err)
      end)
    end)

    describe('across threads', function()
      it('counts 4 threads x N increases exactly', function()
        local N = B.name == 'cluster' and 1000 or 10000
        local c = B.Counter()
        local b = tunnel.Block(4)
        b:add(c, N)
        b:run(function(counter, n)
          for _ = 1, n do counter:increase() end
        end)
        local _, status = b:synchronize()
        b:terminate()
        for i = 1, 4 do assert.is_true(status[i]) end
        assert.are.equal(4 * N, c:get())
      end)

      if B.name == 'local' then
        -- A cluster counter's server does not hold off other processes'
        -- increases during a callback (docs/cluster.md); set it does.
        it('holds off every other thread\'s operation during a write callback', function()
          local c = B.Counter(0)
          local held = hold(c, 'write', function(v) return v + 100 end)
          assert.is_nil(c:increaseAsync())
          assert.is_nil(c:getAsync())
          assert.is_nil(c:setAsync(5))
          local later = tunnel.Block(1)
          later:add(c)
          later:run(function(counter) return counter:increase() end)
          tunnel.sleep(0.05)
          assert.is_nil(later:getResult()[1]) -- the increase waits
          assert.are.equal(100, held.finish()[1])
          local result, status = later:synchronize()
          assert.is_true(status[1], tostring(result[1][1]))
          assert.are.equal(101, result[1][1]) -- it landed after the callback
          later:terminate()
          assert.are.equal(101, c:get())
        end)
      end

      it('loses nothing when write callbacks and increases mix', function()
        local N = B.name == 'cluster' and 200 or 2000
        local c = B.Counter()
        local b = tunnel.Block(4)
        b:add(c, N)
        b:run(function(counter, n)
          for k = 1, n do
            if (k + __threadid) % 2 == 0 then
              counter:write(function(v) return v + 1 end)
            else
              counter:increase()
            end
            counter:decrease(-1)
          end
        end)
        local _, status = b:synchronize()
        b:terminate()
        for i = 1, 4 do assert.is_true(status[i]) end
        assert.are.equal(4 * N * 2, c:get())
      end)
    end)
  end)
end

-- counter:waitFor(value [, timeout]): waits, without polling, until the
-- counter reaches value from the side it is on when the call starts.
for _, B in ipairs(BACKENDS) do
  describe('tunnel.Counter:waitFor (' .. B.name .. ')', function()
    it('returns at once when the counter holds the value; times out with the value seen', function()
      local c = B.Counter(3)
      assert.are.same({3, true}, {c:waitFor(3)})
      assert.are.same({3, true}, {c:waitForAsync(3)})
      assert.are.same({3, nil}, {c:waitForAsync(4)})
      local t0 = tunnel.clock()
      assert.are.same({3, nil}, {c:waitFor(10, 0.2)})
      assert.is_true(tunnel.clock() - t0 >= 0.15)
      assert.are.same({3, nil}, {c:waitFor(-10, 0)})
      assert.are.equal(3, c:get())
    end)

    it('raises for a value or timeout that is not right, changing nothing', function()
      local c = B.Counter(0)
      local ok, err = pcall(c.waitFor, c, 1.5)
      assert.is_false(ok)
      assert.matches('^tunnel%.Counter:waitFor: value must be an integer', err)
      ok, err = pcall(c.waitFor, c)
      assert.is_false(ok)
      assert.matches('^tunnel%.Counter:waitFor: value must be an integer', err)
      ok, err = pcall(c.waitFor, c, 1, -1)
      assert.is_false(ok)
      assert.matches('^tunnel%.Counter:waitFor: timeout must be >= 0', err)
      ok, err = pcall(c.waitForAsync, c, 'x')
      assert.is_false(ok)
      assert.matches('^tunnel%.Counter:waitForAsync: value must be an integer', err)
      assert.are.equal(0, c:get())
    end)

    it('wakes a waiter from below and one from above when other threads reach their targets', function()
      local c = B.Counter(0)
      local block = tunnel.Block(2)
      block:add(c)
      block:run(function(k)
        if __threadid == 1 then return k:waitFor(5, 60) end
        return k:waitFor(-2, 60)
      end)
      tunnel.sleep(0.1)
      for _ = 1, 5 do c:increase() end
      c:set(-3)
      local r = block:synchronize(60)
      block:terminate()
      assert.are.same({5, true}, {r[1][1], r[1][2]})
      assert.is_true(r[2][2])
      assert.is_true(r[2][1] <= -2)
    end)

    it('is a latch: waitFor(400) returns once 4 threads made 100 increases each', function()
      local c = B.Counter(0)
      local block = tunnel.Block(4)
      block:add(c)
      block:run(function(k)
        for _ = 1, 100 do k:increase() end
      end)
      assert.are.same({400, true}, {c:waitFor(400, 120)})
      block:synchronize(60)
      block:terminate()
    end)
  end)
end
