-- tunnel.PriorityQueue: lowest priority first, first in first out among
-- equals, shared by threads. One body, run on each backend of
-- spec/support/backends.lua: in process, and on a Redis server when
-- TUNNEL_REDIS_URL is set (scripts/with-redis.sh).
local tunnel = require('tunnel')
local unpack = table.unpack or unpack
local BACKENDS = dofile('spec/support/backends.lua')

-- A module the encoder knows (loaded before this file's first send: the
-- codec's cache of module tables is built then) and that a receiver
-- cannot require once it is gone from package.loaded.
local MOD, GHOST = 'pqueue_spec_ghost_module', {ghost = true}
package.loaded[MOD] = GHOST

local function error_of(f, ...)
  local ok, err = pcall(f, ...)
  if ok then return nil end
  return tostring(err)
end

-- Pop everything there is now: a list of {value, priority}.
local function drain(q)
  local out = {}
  while true do
    local v, p, ok = q:popAsync()
    if not ok then return out end
    out[#out + 1] = {v, p}
  end
end

for _, B in ipairs(BACKENDS) do
  describe('tunnel.PriorityQueue (' .. B.name .. ')', function()
    describe('order', function()
      it('pops the lowest priority first, the first pushed among equals', function()
        local q = B.PriorityQueue()
        q:push(5, 'e1')
        q:push(1, 'a1')
        q:push(5, 'e2')
        q:push(-2.5, 'neg')
        q:push(math.huge, 'last')
        q:push(1, 'a2')
        q:push(-math.huge, 'first')
        q:push(5, 'e3')
        q:push(0, 'zero')
        assert.are.equal(9, #q)
        assert.are.equal(9, q:size())
        assert.are.same({{'first', -math.huge}, {'neg', -2.5}, {'zero', 0},
                         {'a1', 1}, {'a2', 1}, {'e1', 5}, {'e2', 5}, {'e3', 5},
                         {'last', math.huge}}, drain(q))
        assert.are.equal(0, #q)
      end)

      it('returns value, priority, true, the priority as it was pushed', function()
        local q = B.PriorityQueue()
        assert.is_true(q:push(3, {name = 'job', args = {1, 2}}))
        assert.is_true(q:push(2.5, 'half'))
        local v, p, ok = q:pop()
        assert.are.equal('half', v)
        assert.are.equal(2.5, p)
        assert.is_true(ok)
        v, p, ok = q:pop(1)
        assert.are.same({name = 'job', args = {1, 2}}, v)
        assert.are.equal(3, p)
        assert.is_true(ok)
        if math.type then -- 5.3+: an integer priority stays an integer
          assert.are.equal('integer', math.type(p))
        end
      end)

      it('stores nil values and shared objects like any other', function()
        local q = B.PriorityQueue()
        local c = B.Counter(7)
        q:push(2, nil)
        q:push(1, c)
        local v, p, ok = q:pop()
        assert.is_true(ok)
        assert.are.equal(1, p)
        assert.are.equal(7, v:get())
        v, p, ok = q:pop()
        assert.is_nil(v)
        assert.are.equal(2, p)
        assert.is_true(ok)
      end)

      it('keeps FIFO among 200 equal priorities mixed with others', function()
        local q = B.PriorityQueue()
        for i = 1, 200 do q:push(i % 2, i) end
        local got = drain(q)
        for k = 1, 100 do
          assert.are.equal(2 * k, got[k][1])
          assert.are.equal(2 * k - 1, got[100 + k][1])
        end
      end)
    end)

    describe('waiting', function()
      it('gives nil, nil, nil at once (Async) or after the timeout on an empty queue', function()
        local q = B.PriorityQueue()
        assert.are.equal(3, select('#', q:popAsync()))
        assert.is_nil(select(3, q:popAsync()))
        local t0 = tunnel.clock()
        local v, p, ok = q:pop(0.1)
        assert.is_true(tunnel.clock() - t0 >= 0.09)
        assert.is_nil(v)
        assert.is_nil(p)
        assert.is_nil(ok)
      end)

      it('makes pushes wait while size >= size_hint, changing nothing when they give up', function()
        local q = B.PriorityQueue(2)
        assert.is_true(q:pushAsync(1, 'a'))
        assert.is_true(q:push(2, 'b', 0))
        assert.is_nil(q:pushAsync(0, 'x'))
        local t0 = tunnel.clock()
        assert.is_nil(q:push(0, 'x', 0.1))
        assert.is_true(tunnel.clock() - t0 >= 0.09)
        assert.are.same({{'a', 1}, {'b', 2}}, drain(q))
      end)

      it('wakes a pop waiting in another thread when a value comes', function()
        local q = B.PriorityQueue()
        local started = tunnel.Counter()
        local b = tunnel.Block(1)
        b:add(q, started)
        b:run(function(queue, flag)
          flag:increase()
          return queue:pop(30)
        end)
        while started:get() == 0 do tunnel.sleep(0.001) end
        tunnel.sleep(0.05)
        q:push(4, 'late')
        local result, status = b:synchronize()
        b:terminate()
        assert.is_true(status[1], tostring(result[1][1]))
        assert.are.same({'late', 4, true, n = 3}, result[1])
      end)

      it('wakes a push waiting on a full queue when a pop makes room', function()
        local q = B.PriorityQueue(1)
        q:push(1, 'first')
        local b = tunnel.Block(1)
        b:add(q)
        b:run(function(queue) return queue:push(0, 'second', 30) end)
        tunnel.sleep(0.05)
        assert.are.equal(1, #q)
        assert.are.equal('first', (q:pop()))
        local result, status = b:synchronize()
        b:terminate()
        assert.is_true(status[1], tostring(result[1][1]))
        assert.is_true(result[1][1])
        assert.are.equal('second', (q:pop()))
      end)
    end)

    describe('close', function()
      it('makes pushes raise and pops drain, then give nil, nil, false at once', function()
        local q = B.PriorityQueue()
        q:push(2, 'b')
        q:push(1, 'a')
        assert.is_false(q:isClosed())
        assert.is_true(q:close())
        assert.is_true(q:isClosed())
        assert.is_true(q:close()) -- idempotent
        assert.matches('^tunnel%.PriorityQueue:push: queue is closed',
                       error_of(q.push, q, 0, 'x'))
        assert.matches('^tunnel%.PriorityQueue:pushAsync: queue is closed',
                       error_of(q.pushAsync, q, 0, 'x'))
        assert.are.same({{'a', 1}, {'b', 2}}, drain(q))
        local t0 = tunnel.clock()
        local v, p, ok = q:pop()
        assert.is_nil(v)
        assert.is_nil(p)
        assert.is_false(ok)
        assert.is_false(select(3, q:popAsync()))
        assert.is_true(tunnel.clock() - t0 < 1)
      end)

      it('wakes a pop and a push waiting in other threads', function()
        local empty, full = B.PriorityQueue(), B.PriorityQueue(1)
        full:push(1, 'kept')
        local started = tunnel.Counter()
        local b = tunnel.Block(2)
        b:add(empty, full, started)
        b:run(function(e, f, flag)
          flag:increase()
          if __threadid == 1 then return e:pop() end
          return pcall(f.push, f, 0, 'never')
        end)
        while started:get() < 2 do tunnel.sleep(0.001) end
        tunnel.sleep(0.05)
        empty:close()
        full:close()
        local result, status = b:synchronize()
        b:terminate()
        assert.is_true(status[1], tostring(result[1][1]))
        assert.is_nil(result[1][1])
        assert.is_false(result[1][3])
        assert.is_true(status[2], tostring(result[2][1]))
        assert.is_false(result[2][1])
        assert.matches('queue is closed', result[2][2])
        assert.are.same({{'kept', 1}}, drain(full))
      end)
    end)

    describe('bad input', function()
      it('raises naming the method, and leaves the queue as it was', function()
        local q = B.PriorityQueue(3)
        q:push(1, 'one')
        local cases = { -- method, pattern, arguments (n of them)
          {'push', 'priority must be a number %(got string%)', n = 2, 'high', 'x'},
          {'push', 'priority must be a number %(got no value%)', n = 0},
          {'push', 'priority must not be NaN', n = 2, 0 / 0, 'x'},
          {'push', 'value expected', n = 1, 2},
          {'push', 'timeout must be a number', n = 3, 2, 'x', 'soon'},
          {'push', 'timeout must be >= 0', n = 3, 2, 'x', -1},
          {'push', 'cannot send value at argument 2: coroutine', n = 2, 2, coroutine.create(function() end)},
          {'pushAsync', 'priority must be a number %(got table%)', n = 2, {}, 'x'},
          {'pop', 'timeout must be a number', n = 1, 'x'},
        }
        for _, c in ipairs(cases) do
          local method = c[1]
          local pattern = '^tunnel%.PriorityQueue:' .. method .. ': ' .. c[2]
          local err = error_of(q[method], q, unpack(c, 3, 2 + c.n))
          assert.is_not_nil(err, pattern)
          assert.matches(pattern, err)
        end
        assert.matches('^tunnel%.PriorityQueue:pop: self is a number, not a tunnel%.PriorityQueue',
                       error_of(q.pop, 5))
        assert.matches('^tunnel%.PriorityQueue:size: self is a userdata, not a tunnel%.PriorityQueue',
                       error_of(q.size, tunnel.Vector()))
        assert.are.same({{'one', 1}}, drain(q))
      end)

      it('refuses a bad size hint', function()
        for _, hint in ipairs({0, -1, 1.5, 'x', true}) do
          assert.matches('size_hint must be an integer',
                         error_of(B.PriorityQueue, hint))
        end
        assert.is_true(B.PriorityQueue(math.huge):pushAsync(1, 1))
      end)
    end)

    describe('threads', function()
      it('pops every item of 2 producers exactly once across 2 consumers', function()
        local N = B.name == 'cluster' and 500 or 5000
        local q = B.PriorityQueue(16)
        local done = tunnel.Counter()
        local b = tunnel.Block(4)
        b:add(q, done, N)
        b:run(function(queue, finished, n)
          local id = __threadid
          if id <= 2 then
            for k = 1, n do queue:push(k % 7, id * 1000000 + k) end
            if finished:increase() == 2 then queue:close() end
            return {}
          end
          local got = {}
          while true do
            local x, p, ok = queue:pop()
            if not ok then break end
            if p ~= (x % 1000000) % 7 then error('wrong priority ' .. p .. ' for ' .. x) end
            got[#got + 1] = x
          end
          return got
        end)
        local result, status = b:synchronize()
        b:terminate()
        local seen, count = {}, 0
        for i = 1, 4 do
          assert.is_true(status[i], tostring(result[i][1]))
          for _, x in ipairs(result[i][1]) do
            assert.is_nil(seen[x], 'popped twice: ' .. x)
            seen[x] = true
            count = count + 1
          end
        end
        assert.are.equal(2 * N, count)
      end)

      it('pops in order what 3 threads pushed at once, each thread FIFO among equals', function()
        local N = B.name == 'cluster' and 300 or 3000
        local q = B.PriorityQueue()
        local b = tunnel.Block(3)
        b:add(q, N)
        b:run(function(queue, n)
          for k = 1, n do queue:push((k * 5) % 11, __threadid * 1000000 + k) end
        end)
        local result, status = b:synchronize()
        b:terminate()
        for i = 1, 3 do assert.is_true(status[i], tostring(result[i][1])) end
        local got = drain(q)
        assert.are.equal(3 * N, #got)
        local last, last_of = -1, {}
        for _, e in ipairs(got) do
          local x, p = e[1], e[2]
          assert.is_true(p >= last, 'out of order')
          if p ~= last then last_of = {} end
          local id = math.floor(x / 1000000)
          assert.is_true((last_of[id] or 0) < x, 'not FIFO among equals')
          last_of[id] = x
          last = p
        end
      end)
    end)

    describe('a value the receiver cannot decode', function()
      after_each(function() package.loaded[MOD] = GHOST end)

      it('raises naming the method and stays in the queue ahead of its equals', function()
        local q = B.PriorityQueue(2)
        local ghost = GHOST
        q:push(1, ghost)
        q:push(1, 'second')
        package.loaded[MOD] = nil
        for _, method in ipairs({'pop', 'popAsync'}) do
          assert.matches('^tunnel%.PriorityQueue:' .. method .. ': cannot receive value: '
                         .. "module '" .. MOD .. "' not found", error_of(q[method], q))
          assert.are.equal(2, #q)
        end
        package.loaded[MOD] = ghost
        local v, p = q:pop()
        assert.are.equal(ghost, v)
        assert.are.equal(1, p)
        assert.are.equal('second', (q:pop()))
      end)
    end)

    it('crosses threads by reference and prints its class', function()
      local q = B.PriorityQueue()
      assert.matches('^tunnel%.PriorityQueue: 0x', tostring(q))
      local b = tunnel.Block(1)
      b:add(q)
      b:run(function(queue)
        queue:push(2, 'from the thread')
        return #queue, require('tunnel.priorityqueue') == tunnel.PriorityQueue
      end)
      local result, status = b:synchronize()
      b:terminate()
      assert.is_true(status[1], tostring(result[1][1]))
      assert.are.same({1, true, n = 2}, result[1])
      assert.are.equal('from the thread', (q:pop()))
    end)
  end)
end
