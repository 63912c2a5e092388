-- tunnel.Atomic: a shared value behind a reader-writer lock.
local tunnel = require('tunnel')
-- One body, run on each backend of spec/support/backends.lua: in process,
-- and on a Redis server when TUNNEL_REDIS_URL is set (scripts/with-redis.sh).
local BACKENDS = dofile('spec/support/backends.lua')

local METHODS = {'read', 'write'}

-- Poll until pred() is true (at most `seconds`); returns pred().
local function eventually(pred, seconds)
  local deadline = tunnel.clock() + (seconds or 10)
  while not pred() and tunnel.clock() < deadline do tunnel.sleep(0.001) end
  return pred()
end

for _, B in ipairs(BACKENDS) do
  describe('tunnel.Atomic (' .. B.name .. ')', function()
    describe('construction and data', function()
      it('holds a plain table in .data', function()
        local a = B.Atomic({n = 1, list = {1, 2}})
        assert.are.equal(1, a.data.n)
        assert.are.equal(2, #a.data.list)
        assert.matches('^tunnel%.Atomic: 0x%x+$', tostring(a))
      end)

      -- In process only: a cluster Atomic's .data is a plain copy decoded
      -- from the server (docs/cluster.md, "Cluster Atomic data is a copy").
      if B.name == 'local' then
        it('holds a plain table as a shared table in .data', function()
          local a = B.Atomic({n = 1, list = {1, 2}})
          assert.matches('^tunnel%.SharedTable', tostring(a.data))
          assert.are.equal(1, a.data.n)
          assert.are.equal(2, #a.data.list)
          assert.is_true(rawequal(a.data, a.data))
          assert.matches('^tunnel%.Atomic: 0x%x+$', tostring(a))
        end)
      end

      it('holds a scalar that never changes (wrap it in a table to change it)', function()
        local a = B.Atomic(5)
        assert.are.equal(5, a.data)
        assert.are.equal(6, a:write(function(v) return v + 1 end))
        assert.are.equal(5, a.data) -- the data is fixed
        local ok, err = pcall(function() a.data = 6 end)
        assert.is_false(ok)
        assert.matches('^tunnel%.Atomic: cannot set field data', err)
      end)

      it('has an Async twin for every method', function()
        local a = B.Atomic({})
        for _, name in ipairs(METHODS) do
          assert.are.equal('function', type(a[name]))
          assert.are.equal('function', type(a[name .. 'Async']))
        end
      end)
    end)

    describe('read and write', function()
      it('return the callback\'s results for the data', function()
        local a = B.Atomic({n = 1})
        assert.are.same({1, 'x'}, {a:read(function(d) return d.n, 'x' end)})
        assert.are.equal(2, a:write(function(d) d.n = d.n + 1; return d.n end))
        assert.are.equal(2, a.data.n)
        assert.are.equal(3, select('#', a:write(function() return 1, nil, 3 end)))
        assert.are.equal(0, select('#', a:read(function() end)))
      end)

      it('write keeps what the callback does to nested tables of the data', function()
        local a = B.Atomic({n = 0, list = {}})
        a:write(function(d) d.n = d.n + 1; d.list[#d.list + 1] = 'x' end)
        assert.are.equal(1, a.data.n)
        assert.are.equal(1, a:read(function(d) return #d.list end))
        assert.are.equal('x', a:read(function(d) return d.list[1] end))
      end)

      it('Async twins act when the lock is free', function()
        local a = B.Atomic({n = 0})
        assert.are.equal(1, a:writeAsync(function(d) d.n = 1; return d.n end))
        assert.are.equal(1, a:readAsync(function(d) return d.n end))
      end)

      it('let readers share and keep writers out, in one thread', function()
        local a = B.Atomic({n = 0})
        a:read(function()
          assert.are.equal('inner', a:readAsync(function() return 'inner' end))
          assert.is_nil(a:writeAsync(function() error('must not run') end))
        end)
        a:write(function()
          assert.is_nil(a:readAsync(function() error('must not run') end))
          assert.is_nil(a:writeAsync(function() error('must not run') end))
        end)
      end)

      it('an error in a callback releases the lock and is raised again', function()
        local a = B.Atomic({n = 0})
        local ok, err = pcall(a.write, a, function() error('boom', 0) end)
        assert.is_false(ok)
        assert.are.equal('boom', err)
        local value = {code = 42}
        ok, err = pcall(a.read, a, function() error(value) end)
        assert.is_false(ok)
        assert.are.equal(value, err) -- the same error value
        ok, err = pcall(a.write, a, function(d) return d.missing.field end)
        assert.is_false(ok)
        assert.matches('missing', err)
        assert.are.equal(1, a:writeAsync(function(d) d.n = 1; return 1 end))
        assert.are.equal(1, a:readAsync(function(d) return d.n end))
      end)

      it('a callback may use other tunnel objects, and another Atomic', function()
        local a = B.Atomic({n = 0})
        local other = B.Atomic({m = 0})
        local v = tunnel.Vector()
        a:write(function(d)
          v:pushBack(d.n)
          other:write(function(o) o.m = 5 end)
          d.n = other:read(function(o) return o.m end)
        end)
        assert.are.equal(1, v:size())
        assert.are.equal(5, a.data.n)
      end)

      it('rejects a callback that is not a function', function()
        local a = B.Atomic({})
        for _, name in ipairs({'read', 'readAsync', 'write', 'writeAsync'}) do
          local ok, err = pcall(a[name], a, nil)
          assert.is_false(ok)
          assert.matches('^tunnel%.Atomic:' .. name ..
            ': callback must be a function %(got nil%)', err)
        end
        assert.are.equal(1, a:write(function() return 1 end))
      end)

      it('raises an error naming the method for a wrong self', function()
        local a = B.Atomic({})
        for _, name in ipairs({'read', 'readAsync', 'write', 'writeAsync'}) do
          local ok, err = pcall(a[name], 'self', function() end)
          assert.is_false(ok)
          assert.matches('^tunnel%.Atomic:' .. name ..
            ': self is a string, not a tunnel%.Atomic', err)
        end
        local ok, err = pcall(a.read, tunnel.Share({}), function() end)
        assert.is_false(ok)
        assert.matches('not a tunnel%.Atomic', err)
      end)

      it('raises for data that cannot cross threads', function()
        local ok, err = pcall(tunnel.Atomic, {f = io.stdout})
        assert.is_false(ok)
        assert.matches('^tunnel%.Atomic: cannot send value', err)
      end)
    end)

    describe('across threads', function()
      it('loses no update from 4 threads x N writes', function()
        local N = B.name == 'cluster' and 200 or 2000
        local a = B.Atomic({n = 0})
        local b = tunnel.Block(4)
        b:add(a, N)
        b:run(function(atomic, n)
          for _ = 1, n do
            atomic:write(function(d) d.n = d.n + 1 end)
          end
        end)
        local result, status = b:synchronize()
        b:terminate()
        for i = 1, 4 do assert.is_true(status[i], tostring(result[i][1])) end
        assert.are.equal(4 * N, a.data.n)
      end)

      it('readAsync succeeds beside a reader, writeAsync is refused', function()
        local a = B.Atomic({n = 1})
        local gate, held = tunnel.Vector(), tunnel.Counter()
        local b = tunnel.Block(1)
        b:add(a, gate, held)
        b:run(function(atomic, g, h)
          return atomic:read(function(d)
            h:increase()
            g:popFront() -- hold the read lock until the main thread says so
            return d.n
          end)
        end)
        assert.is_true(eventually(function() return held:get() == 1 end))
        assert.are.equal(1, a:readAsync(function(d) return d.n end))
        assert.is_nil(a:writeAsync(function(d) d.n = 99 end))
        gate:pushBack(true)
        local result, status = b:synchronize()
        b:terminate()
        assert.is_true(status[1], tostring(result[1][1]))
        assert.are.equal(1, result[1][1])
        assert.are.equal(1, a.data.n)
        assert.are.equal(2, a:writeAsync(function(d) d.n = 2; return d.n end))
      end)

      it('readAsync and writeAsync are refused beside a writer', function()
        local a = B.Atomic({n = 1})
        local gate, held = tunnel.Vector(), tunnel.Counter()
        local b = tunnel.Block(1)
        b:add(a, gate, held)
        b:run(function(atomic, g, h)
          atomic:write(function(d)
            h:increase()
            g:popFront()
            d.n = 2
          end)
        end)
        assert.is_true(eventually(function() return held:get() == 1 end))
        assert.is_nil(a:readAsync(function() return 'ran' end))
        assert.is_nil(a:writeAsync(function() return 'ran' end))
        gate:pushBack(true)
        local _, status = b:synchronize()
        b:terminate()
        assert.is_true(status[1])
        assert.are.equal(2, a:read(function(d) return d.n end))
      end)

      it('an error in a thread\'s callback releases the lock for the others', function()
        local a = B.Atomic({n = 0})
        local b = tunnel.Block(2)
        b:add(a)
        b:run(function(atomic)
          if __threadid == 1 then
            atomic:write(function() error('thread one fails') end)
          end
          atomic:write(function(d) d.n = d.n + 1 end)
        end)
        local result, status = b:synchronize()
        b:terminate()
        assert.is_false(status[1])
        assert.matches('thread one fails', result[1][1])
        assert.is_true(status[2])
        assert.are.equal(1, a:write(function(d) return d.n end))
      end)
    end)
  end)
end
