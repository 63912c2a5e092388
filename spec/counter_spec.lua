-- tunnel.Counter: an atomic integer shared by threads.
local tunnel = require('tunnel')
-- One body, run on each backend of spec/support/backends.lua: in process,
-- and on a Redis server when TUNNEL_REDIS_URL is set (scripts/with-redis.sh).
local BACKENDS = dofile('spec/support/backends.lua')

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
        it('is an exact 64-bit integer on Lua 5.3+', function()
          local c = B.Counter(math.maxinteger - 1)
          assert.are.equal(math.maxinteger, c:increase())
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

      it('write never loses an increase made during the callback', function()
        local c = B.Counter(0)
        local new = c:write(function(v)
          c:increaseAsync(10) -- lock-free: not held off by the write lock
          return v + 1
        end)
        assert.are.equal(11, new)
        assert.are.equal(11, c:get())
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

      it('set, read and write Async twins return nil while the lock is busy', function()
        local c = B.Counter(1)
        c:write(function(v)
          assert.is_nil(c:setAsync(100))
          assert.is_nil(c:readAsync(function() return 'ran' end))
          assert.is_nil(c:writeAsync(function() return 100 end))
          assert.are.equal(v, c:getAsync()) -- lock-free twins still work
          return v
        end)
        c:read(function()
          assert.are.equal('ran', c:readAsync(function() return 'ran' end))
          assert.is_nil(c:setAsync(100))
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
