-- tunnel.select(vectors [, timeout]) and Vector batches (pushMany,
-- popMany), on each backend of spec/support/backends.lua: in process, and
-- on a Redis server when TUNNEL_REDIS_URL is set (scripts/with-redis.sh).
local tunnel = require('tunnel')
local BACKENDS = dofile('spec/support/backends.lua')

local function error_of(f, ...)
  local ok, err = pcall(f, ...)
  if ok then return nil end
  return tostring(err)
end

-- A module the encoder knows (loaded before this file's first send) and a
-- receiver cannot require once it is gone from package.loaded.
local MOD, GHOST = 'select_spec_ghost_module', {ghost = true}
package.loaded[MOD] = GHOST

local function contents(v)
  local t = {n = v:size()}
  for i = 1, t.n do t[i] = v:get(i) end
  return t
end

for _, B in ipairs(BACKENDS) do
  describe('tunnel.select (' .. B.name .. ')', function()
    it('pops the front of the first vector that has a value and names it', function()
      local a, b, c = B.Vector(), B.Vector(), B.Vector()
      c:pushBack('c1')
      c:pushBack('c2')
      local i, v, ok = tunnel.select({a, b, c})
      assert.are.equal(3, i)
      assert.are.equal('c1', v)
      assert.is_true(ok)
      assert.are.same({'c2', n = 1}, contents(c))
      b:pushBack(false)
      i, v, ok = tunnel.select({a, b, c}, 0)
      assert.is_true(ok)
      assert.is_true(i == 2 and v == false or i == 3 and v == 'c2')
    end)

    it('takes from busy vectors in turn (a busy first one does not starve the others)', function()
      local a, b = B.Vector(), B.Vector()
      for k = 1, 20 do
        a:pushBack('a' .. k)
        b:pushBack('b' .. k)
      end
      local from, next = {0, 0}, {1, 1}
      for _ = 1, 20 do
        local i, v = tunnel.select({a, b})
        from[i] = from[i] + 1
        assert.are.equal((i == 1 and 'a' or 'b') .. next[i], v) -- each in its order
        next[i] = next[i] + 1
      end
      assert.is_true(from[1] >= 8 and from[2] >= 8, from[1] .. ' / ' .. from[2])
    end)

    it('gives nil, nil, nil when the timeout runs out, taking nothing', function()
      local a, b = B.Vector(), B.Vector()
      local t0 = tunnel.clock()
      local i, v, ok = tunnel.select({a, b}, 0.1)
      assert.is_true(tunnel.clock() - t0 >= 0.09)
      assert.is_nil(i)
      assert.is_nil(v)
      assert.is_nil(ok)
      assert.are.equal(3, select('#', tunnel.select({a, b}, 0)))
      a:pushBack(1)
      assert.are.equal(1, (tunnel.select({a, b}, 0)))
    end)

    it('skips closed, drained vectors, and gives nil, nil, false when all are', function()
      local a, b = B.Vector(), B.Vector()
      a:pushBack('last')
      a:close()
      assert.are.same({1, 'last', true}, {tunnel.select({a, b})})
      assert.is_nil((tunnel.select({a, b}, 0.05))) -- b is open: a timeout
      b:close()
      local t0 = tunnel.clock()
      local i, v, ok = tunnel.select({a, b})
      assert.is_nil(i)
      assert.is_nil(v)
      assert.is_false(ok)
      assert.is_true(tunnel.clock() - t0 < 1)
    end)

    it('waits on all at once: a push into any wakes it', function()
      local qs = {B.Vector(), B.Vector(2), B.Vector()}
      local started = tunnel.Counter()
      local blk = tunnel.Block(1)
      blk:add(qs, started)
      blk:run(function(vectors, flag)
        local got = {}
        for _ = 1, 3 do
          flag:increase()
          local i, v = tunnel.select(vectors, 30)
          got[#got + 1] = i .. '=' .. tostring(v)
        end
        return got
      end)
      for k = 3, 1, -1 do
        while started:get() < 4 - k do tunnel.sleep(0.001) end
        tunnel.sleep(0.05)
        qs[k]:pushBack('v' .. k)
      end
      local result, status = blk:synchronize()
      blk:terminate()
      assert.is_true(status[1], tostring(result[1][1]))
      assert.are.same({'3=v3', '2=v2', '1=v1'}, result[1][1])
    end)

    it('wakes a select waiting on vectors that all close', function()
      local a, b = B.Vector(), B.Vector()
      local blk = tunnel.Block(1)
      blk:add(a, b)
      blk:run(function(x, y) return tunnel.select({x, y}) end)
      tunnel.sleep(0.1)
      a:close()
      b:close()
      local result, status = blk:synchronize()
      blk:terminate()
      assert.is_true(status[1], tostring(result[1][1]))
      assert.is_false(result[1][3])
    end)

    it('delivers every item once to 2 selecting consumers from 2 producers', function()
      local N = B.name == 'cluster' and 300 or 3000
      local qs = {B.Vector(8), B.Vector(8)}
      local blk = tunnel.Block(4)
      blk:add(qs, N)
      blk:run(function(vectors, n)
        local id = __threadid
        if id <= 2 then
          for k = 1, n do vectors[id]:pushBack(id * 1000000 + k) end
          vectors[id]:close()
          return {}
        end
        local got, last = {}, {0, 0}
        while true do
          local i, x, ok = tunnel.select(vectors)
          if not ok then break end
          if math.floor(x / 1000000) ~= i or x <= last[i] then error('out of order: ' .. x) end
          last[i] = x
          got[#got + 1] = x
        end
        return got
      end)
      local result, status = blk:synchronize()
      blk:terminate()
      local seen, count = {}, 0
      for t = 1, 4 do
        assert.is_true(status[t], tostring(result[t][1]))
        for _, x in ipairs(result[t][1]) do
          assert.is_nil(seen[x], 'twice: ' .. x)
          seen[x] = true
          count = count + 1
        end
      end
      assert.are.equal(2 * N, count)
    end)

    it('raises on bad input, taking nothing', function()
      local a = B.Vector()
      a:pushBack('kept')
      assert.matches('^tunnel%.select: vectors must be a table %(got no value%)', error_of(tunnel.select))
      assert.matches('^tunnel%.select: vectors must hold at least one tunnel%.Vector',
                     error_of(tunnel.select, {}))
      assert.matches('^tunnel%.select: vectors%[2%] must be a tunnel%.Vector %(got table%)',
                     error_of(tunnel.select, {a, {}}))
      assert.matches('^tunnel%.select: vectors%[1%] must be a tunnel%.Vector %(got userdata%)',
                     error_of(tunnel.select, {tunnel.Hash()}))
      assert.matches('^tunnel%.select: timeout must be >= 0', error_of(tunnel.select, {a}, -1))
      assert.matches('^tunnel%.select: timeout must be a number', error_of(tunnel.select, {a}, 'x'))
      assert.are.same({'kept', n = 1}, contents(a))
    end)

    if B.name == 'cluster' then
      it('refuses in-process and cluster vectors together, and vectors of two clusters', function()
        local a = B.Vector()
        a:pushBack('kept')
        assert.matches('^tunnel%.select: vectors must be all in process or all of one cluster',
                       error_of(tunnel.select, {a, tunnel.Vector()}))
        assert.matches('^tunnel%.select: vectors must be all in process or all of one cluster',
                       error_of(tunnel.select, {tunnel.Vector(), a}))
        local other = tunnel.Cluster(B.url, {prefix = 'tunnel-spec-other:', timeout = 5})
        assert.matches('^tunnel%.select: the vectors must be all of one cluster',
                       error_of(tunnel.select, {a, other:Vector(B.fresh('other'))}))
        assert.are.same({'kept', n = 1}, contents(a))
      end)
    end

    it('puts back a value the receiver cannot decode and raises', function()
      local a, b = B.Vector(), B.Vector()
      b:pushBack(GHOST)
      b:pushBack('second')
      package.loaded[MOD] = nil
      local err = error_of(tunnel.select, {a, b})
      package.loaded[MOD] = GHOST
      assert.matches("^tunnel%.select: cannot receive value: module '" .. MOD .. "' not found", err)
      assert.are.same({GHOST, 'second', n = 2}, contents(b))
    end)
  end)

  describe('Vector batches (' .. B.name .. ')', function()
    it('pushMany pushes t[1..#t] in order, popMany takes up to max with n', function()
      local v = B.Vector()
      v:pushBack(0)
      assert.is_true(v:pushMany({1, 2, 3}))
      assert.is_true(v:pushMany({}))
      local t, ok = v:popMany(3)
      assert.are.same({0, 1, 2, n = 3}, t)
      assert.is_true(ok)
      t, ok = v:popMany(100, 1)
      assert.are.same({3, n = 1}, t)
      assert.is_true(ok)
    end)

    it('pushes nils with t.n, and popMany returns them with their count', function()
      local v = B.Vector()
      assert.is_true(v:pushMany({n = 3, 'a', nil, 'c'}))
      assert.is_true(v:pushMany({n = 2}))
      assert.are.equal(5, #v)
      local t = v:popMany(10)
      assert.are.equal(5, t.n)
      assert.are.equal('a', t[1])
      assert.is_nil(t[2])
      assert.are.equal('c', t[3])
      assert.is_nil(t[4])
      assert.is_nil(t[5])
    end)

    it('waits until the whole batch fits under the hint; giving up pushes none of it', function()
      local v = B.Vector(4)
      v:pushMany({1, 2})
      assert.is_nil(v:pushManyAsync({3, 4, 5}))
      local t0 = tunnel.clock()
      assert.is_nil(v:pushMany({3, 4, 5}, 0.1))
      assert.is_true(tunnel.clock() - t0 >= 0.09)
      assert.are.same({1, 2, n = 2}, contents(v))
      v:popFront()
      assert.is_true(v:pushManyAsync({3, 4, 5}))
      assert.are.same({2, 3, 4, 5, n = 4}, contents(v))
    end)

    it('puts a batch larger than the hint into an empty vector, all at once', function()
      local v = B.Vector(2)
      v:pushBack(0)
      assert.is_nil(v:pushMany({1, 2, 3}, 0))
      v:popFront()
      assert.is_true(v:pushMany({1, 2, 3}, 0))
      assert.are.equal(3, #v)
      assert.is_nil(v:pushBackAsync(4))
    end)

    it('popMany gives {n = 0} and nil on a timeout, {n = 0} and false when closed and drained', function()
      local v = B.Vector()
      local t, ok = v:popManyAsync(5)
      assert.are.same({n = 0}, t)
      assert.is_nil(ok)
      local t0 = tunnel.clock()
      t, ok = v:popMany(5, 0.1)
      assert.is_true(tunnel.clock() - t0 >= 0.09)
      assert.are.same({n = 0}, t)
      assert.is_nil(ok)
      v:pushMany({1, 2, 3})
      v:close()
      assert.matches('^tunnel%.Vector:pushMany: vector is closed', error_of(v.pushMany, v, {4}))
      assert.are.same({1, 2, n = 2}, (v:popMany(2)))
      assert.are.same({3, n = 1}, (v:popMany(2)))
      t, ok = v:popMany(2)
      assert.are.same({n = 0}, t)
      assert.is_false(ok)
    end)

    it('a waiting batch push gets in once a consumer makes room for all of it', function()
      local v = B.Vector(3)
      v:pushMany({1, 2, 3})
      local blk = tunnel.Block(1)
      blk:add(v)
      blk:run(function(q) return q:pushMany({4, 5}, 30) end)
      tunnel.sleep(0.1)
      assert.are.equal(1, (v:popFront()))
      tunnel.sleep(0.1)
      assert.are.equal(2, #v) -- room for one only: still waiting
      assert.are.equal(2, (v:popFront()))
      local result, status = blk:synchronize()
      blk:terminate()
      assert.is_true(status[1], tostring(result[1][1]))
      assert.is_true(result[1][1])
      assert.are.same({3, 4, 5, n = 3}, contents(v))
    end)

    it('a waiting popMany takes a whole batch pushed by another thread', function()
      local v = B.Vector()
      local blk = tunnel.Block(1)
      blk:add(v)
      blk:run(function(q) return q:popMany(10, 30) end)
      tunnel.sleep(0.1)
      v:pushMany({'x', 'y', 'z'})
      local result, status = blk:synchronize()
      blk:terminate()
      assert.is_true(status[1], tostring(result[1][1]))
      local t = result[1][1]
      assert.is_true(result[1][2])
      assert.is_true(t.n >= 1 and t.n <= 3)
      assert.are.equal('x', t[1])
      assert.are.equal(3 - t.n, #v)
    end)

    it('moves every item once, in each producer\'s order, between batches of threads', function()
      local N = B.name == 'cluster' and 640 or 6400
      local v = B.Vector(100)
      local done = tunnel.Counter()
      local blk = tunnel.Block(4)
      blk:add(v, done, N)
      blk:run(function(q, finished, n)
        local id = __threadid
        if id <= 2 then
          for k = 1, n, 64 do
            local t = {}
            for j = k, math.min(k + 63, n) do t[#t + 1] = id * 1000000 + j end
            q:pushMany(t)
          end
          if finished:increase() == 2 then q:close() end
          return {}
        end
        local got, last = {}, {0, 0}
        while true do
          local t, ok = q:popMany(64)
          if not ok then break end
          for j = 1, t.n do
            local x = t[j]
            local p = math.floor(x / 1000000)
            if x <= last[p] then error('out of order') end
            last[p] = x
            got[#got + 1] = x
          end
        end
        return got
      end)
      local result, status = blk:synchronize()
      blk:terminate()
      local seen, count = {}, 0
      for t = 1, 4 do
        assert.is_true(status[t], tostring(result[t][1]))
        for _, x in ipairs(result[t][1]) do
          assert.is_nil(seen[x], 'twice: ' .. x)
          seen[x] = true
          count = count + 1
        end
      end
      assert.are.equal(2 * N, count)
    end)

    it('raises on bad input naming the item, pushing none of the batch', function()
      local v = B.Vector()
      assert.matches('^tunnel%.Vector:pushMany: values must be a table %(got number%)',
                     error_of(v.pushMany, v, 5))
      assert.matches('^tunnel%.Vector:pushMany: values%.n must be an integer',
                     error_of(v.pushMany, v, {n = 'x'}))
      assert.matches('^tunnel%.Vector:pushMany: values%.n must be >= 0',
                     error_of(v.pushMany, v, {n = -1}))
      assert.matches('^tunnel%.Vector:pushMany: item 2: cannot send value at value: coroutine',
                     error_of(v.pushMany, v, {1, coroutine.create(function() end), 3}))
      assert.matches('^tunnel%.Vector:pushMany: timeout must be >= 0',
                     error_of(v.pushMany, v, {1}, -1))
      assert.matches('^tunnel%.Vector:popMany: max must be an integer %(got no value%)',
                     error_of(v.popMany, v))
      assert.matches('^tunnel%.Vector:popMany: max must be >= 1', error_of(v.popMany, v, 0))
      assert.matches('^tunnel%.Vector:popMany: max must be an integer %(got 1%.5%)',
                     error_of(v.popMany, v, 1.5))
      assert.are.equal(0, #v)
      if B.name == 'cluster' then
        assert.matches('^tunnel%.Vector:pushMany: cannot put an in%-process object',
                       error_of(v.pushMany, v, {1, tunnel.Vector()}))
        assert.are.equal(0, #v)
      end
    end)

    it('popMany puts back values the receiver cannot decode, in order, and raises', function()
      local v = B.Vector()
      v:pushMany({'a', GHOST, 'c'})
      package.loaded[MOD] = nil
      local err = error_of(v.popMany, v, 10)
      package.loaded[MOD] = GHOST
      assert.matches("^tunnel%.Vector:popMany: cannot receive value: module '" .. MOD .. "' not found", err)
      assert.are.same({'a', GHOST, 'c', n = 3}, contents(v))
    end)
  end)
end
