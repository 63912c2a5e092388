-- One spec body, two backends: the in-process structures and the same
-- classes on a Redis server (tunnel.Cluster). Cluster-only behaviour
-- (several processes, a server that dies, descriptors) follows at the end
-- and runs only with TUNNEL_REDIS_URL (scripts/with-redis.sh).
local tunnel = require('tunnel')
local backends = dofile('spec/support/backends.lua')

local function contents(v)
  local t = {n = v:size()}
  for i = 1, t.n do t[i] = v:get(i) end
  return t
end

for _, B in ipairs(backends) do
  describe('on the ' .. B.name .. ' backend', function()
    describe('Vector', function()
      it('is a tunnel.Vector', function()
        local v = B.Vector()
        assert.is_truthy(tostring(v):match('^tunnel%.Vector'))
      end)

      it('is a FIFO queue and a LIFO stack', function()
        local v = B.Vector()
        for i = 1, 5 do assert.is_true(v:pushBack(i)) end
        assert.are.equal(5, #v)
        assert.are.same({1, true}, {v:popFront()})
        assert.are.same({5, true}, {v:popBack()})
        v:pushFront(0)
        assert.are.same({0, true}, {v:popFront()})
        assert.are.equal(3, v:size())
      end)

      it('keeps tables, strings, booleans and nil', function()
        local v = B.Vector()
        v:pushBack({a = 1, b = {2, 3}, [4] = 'x'})
        v:pushBack('bytes\0with nul')
        v:pushBack(false)
        v:pushBack(nil)
        local t = v:popFront()
        assert.are.same({a = 1, b = {2, 3}, [4] = 'x'}, t)
        assert.are.equal('bytes\0with nul', (v:popFront()))
        assert.are.same({false, true}, {v:popFront()})
        assert.are.same({nil, true}, {v:popFront()})
      end)

      it('makes pushes wait while size >= size_hint', function()
        local v = B.Vector(2)
        assert.is_true(v:pushBack(1))
        assert.is_true(v:pushBack(2))
        assert.is_nil(v:pushBackAsync(3))
        local t0 = tunnel.clock()
        assert.is_nil(v:pushBack(3, 0.2))
        assert.is_true(tunnel.clock() - t0 >= 0.15)
        v:popFront()
        assert.is_true(v:pushBackAsync(3))
      end)

      it('a pop on an empty vector waits for its timeout, Async returns at once', function()
        local v = B.Vector()
        assert.are.same({nil, nil}, {v:popFrontAsync()})
        local t0 = tunnel.clock()
        assert.are.same({nil, nil}, {v:popFront(0.2)})
        local dt = tunnel.clock() - t0
        assert.is_true(dt >= 0.15 and dt < 3, 'waited ' .. dt)
      end)

      it('drains after close, then pops return nil, false and pushes raise', function()
        local v = B.Vector()
        v:pushBack(1)
        v:close()
        assert.is_true(v:isClosed())
        assert.are.same({1, true}, {v:popFront()})
        assert.are.same({nil, false}, {v:popFront()})
        assert.has_error(function() v:pushBack(2) end, 'tunnel.Vector:pushBack: vector is closed')
      end)

      it('works as an array: insert, remove, get, set, indexing', function()
        local v = B.Vector()
        v:insert('b')
        v:insert(1, 'a')
        v:insert(3, 'c')
        assert.is_nil(v:insert(9, 'z'))
        assert.are.same({'a', 'b', 'c', n = 3}, contents(v))
        assert.are.same({'b', true}, {v:remove(2)})
        assert.are.same({nil, nil}, {v:remove(7)})
        assert.are.same({true, 'c'}, {v:set(2, 'C')})
        v[4] = 'd'
        assert.are.equal('d', v[4])
        assert.is_nil(v[3])
        assert.are.same({'a', 'C', nil, 'd', n = 4}, contents(v))
        assert.are.same({nil, nil}, {v:get(10)})
      end)

      it('sorts, iterates and prints a snapshot', function()
        local v = B.Vector()
        for _, x in ipairs({3, 1, 2}) do v:pushBack(x) end
        v:sort()
        assert.are.equal('tunnel.Vector{1, 2, 3}', v:toString())
        v:sort(function(a, b) return a > b end)
        local seen = {}
        for i, x in v:iterator() do seen[i] = x end
        assert.are.same({3, 2, 1}, seen)
      end)

      it('read and write callbacks see and store the value at an index', function()
        local v = B.Vector()
        v:pushBack(10)
        assert.are.equal(11, v:read(1, function(x) return x + 1 end))
        assert.are.same({true, 20}, {v:write(1, function(x) return x * 2 end)})
        assert.are.equal(20, v:get(1))
      end)

      it('hands every item to exactly one of several threads', function()
        local v = B.Vector(8)
        local out = B.Vector()
        local block = tunnel.Block(3)
        block:add(v, out)
        block:run(function(q, o)
          local n = 0
          while true do
            local x, ok = q:popFront(10)
            if not ok then break end
            o:pushBack(x)
            n = n + 1
          end
          return n
        end)
        for i = 1, 60 do assert.is_true(v:pushBack(i, 10)) end
        v:close()
        local results = block:synchronize(30)
        block:terminate()
        local total = 0
        for i = 1, 3 do total = total + results[i][1] end
        assert.are.equal(60, total)
        local seen = {}
        for _, x in out:iterator() do
          assert.is_nil(seen[x])
          seen[x] = true
        end
        for i = 1, 60 do assert.is_true(seen[i]) end
      end)
    end)

    describe('Hash', function()
      it('maps keys to values; nil deletes', function()
        local h = B.Hash()
        h.x = 1
        h[2] = {3}
        h[true] = 'yes'
        assert.are.equal(1, h.x)
        assert.are.same({3}, h[2])
        assert.are.equal('yes', h[true])
        assert.are.equal(3, #h)
        h.x = nil
        assert.is_nil(h.x)
        assert.are.equal(2, h:size())
      end)

      it('treats 1 and 1.0 as one key', function()
        local h = B.Hash()
        h[1] = 'a'
        h[1.0] = 'b'
        assert.are.equal(1, #h)
        assert.are.equal('b', h[1])
      end)

      it('iterates over a snapshot and prints sorted', function()
        local h = B.Hash()
        h.b = 2
        h.a = 1
        local seen = {}
        for k, v in h:iterator() do seen[k] = v end
        assert.are.same({a = 1, b = 2}, seen)
        assert.are.equal('tunnel.Hash{a = 1, b = 2}', h:toString())
      end)

      it('write callbacks lose no update between threads', function()
        local h = B.Hash()
        local block = tunnel.Block(3)
        block:add(h)
        block:run(function(m)
          for _ = 1, 30 do m:write('n', function(x) return (x or 0) + 1 end) end
        end)
        block:synchronize(60)
        block:terminate()
        assert.are.equal(90, h.n)
      end)
    end)

    describe('Counter', function()
      it('increases, decreases, gets and sets', function()
        local c = B.Counter(5)
        assert.are.equal(6, c:increase())
        assert.are.equal(16, c:increase(10))
        assert.are.equal(14, c:decrease(2))
        assert.are.equal(14, c:get())
        assert.are.equal(14, c:set(1))
        assert.are.equal(1, c:get())
        assert.are.equal(3, c:write(function(x) return x + 2 end))
        assert.are.equal(3, c:read(function(x) return x end))
      end)

      it('loses no increase between threads', function()
        local c = B.Counter(0)
        local block = tunnel.Block(4)
        block:add(c)
        block:run(function(k) for _ = 1, 250 do k:increase() end end)
        block:synchronize(60)
        block:terminate()
        assert.are.equal(1000, c:get())
      end)
    end)

    describe('Atomic', function()
      it('write keeps what the callback does to the data', function()
        local a = B.Atomic({n = 0, list = {}})
        a:write(function(d) d.n = d.n + 1; d.list[#d.list + 1] = 'x' end)
        assert.are.equal(1, a.data.n)
        assert.are.equal(1, a:read(function(d) return #d.list end))
      end)

      it('returns the callback\'s results; Async twins act when free', function()
        local a = B.Atomic({n = 2})
        assert.are.same({2, 'r'}, {a:read(function(d) return d.n, 'r' end)})
        assert.are.equal(3, a:writeAsync(function(d) d.n = 3 return d.n end))
      end)

      it('loses no update from several threads', function()
        local a = B.Atomic({n = 0})
        local block = tunnel.Block(3)
        block:add(a)
        block:run(function(x)
          for _ = 1, 20 do x:write(function(d) d.n = d.n + 1 end) end
        end)
        block:synchronize(60)
        block:terminate()
        assert.are.equal(60, a.data.n)
      end)

      it('an error in a callback releases the lock', function()
        local a = B.Atomic({n = 0})
        assert.has_error(function() a:write(function() error('boom', 0) end) end, 'boom')
        assert.are.equal(1, a:writeAsync(function(d) d.n = 1 return 1 end))
      end)
    end)

    describe('Printer', function()
      it('prints whole lines', function()
        local p = B.Printer()
        assert.has_no.errors(function() p:print('printer spec line', B.name) end)
      end)
    end)
  end)
end

-- ---- cluster only -------------------------------------------------------

local C = backends[2]
local describe_cluster = C and describe or pending

-- Run a Lua program in another process with the module of this build.
local function spawn(code)
  local lua = os.getenv('TUNNEL_LUA') or 'lua5.4'
  local name = os.tmpname()
  local f = assert(io.open(name, 'w'))
  f:write(code)
  f:close()
  return assert(io.popen(lua .. ' ' .. name .. ' 2>&1; rm -f ' .. name))
end

describe_cluster('tunnel.Cluster', function()
  local url = C and C.url

  it('names the same object for the same name, in any process', function()
    local name = C.fresh('same')
    local a, b = C.cluster:Counter(name, 7), C.cluster:Counter(name, 99)
    assert.are.equal(a, b)
    assert.are.equal(7, b:get())
    local p = spawn(([[
      local tunnel = require('tunnel')
      local c = tunnel.Cluster(%q, {prefix = 'tunnel-spec:'})
      io.write(c:Counter(%q):increase(3))
    ]]):format(url, name))
    assert.are.equal('10', p:read('*a'))
    p:close()
    assert.are.equal(10, a:get())
  end)

  it('lets `tunnel logs` follow what a cluster Printer printed', function()
    local bin = os.getenv('TUNNEL_BIN')
    assert.is_truthy(bin, 'TUNNEL_BIN (the tunnel command) must be set')
    local name = C.fresh('printer')
    C.cluster:Printer(name):print('hello from', 42)
    local h = assert(io.popen(('timeout 2 %s logs %s %s --prefix tunnel-spec: --from-start 2>&1')
      :format(bin, url, name)))
    local out = h:read('*a')
    h:close()
    assert.matches('hello from\t42\n', out)
  end)

  it('stores cluster objects in cluster values by reference', function()
    local v = C.Vector()
    local k = C.Counter(1)
    v:pushBack({counter = k, list = {k}})
    local t = v:popFront()
    assert.are.equal(k, t.counter)
    t.list[1]:increase()
    assert.are.equal(2, k:get())
  end)

  it('refuses an in-process object in a cluster structure', function()
    local v = C.Vector()
    assert.has_error(function() v:pushBack(tunnel.Vector()) end,
      'tunnel.Vector:pushBack: cannot put an in-process object into a cluster structure (use a cluster object)')
  end)

  it('raises clear errors for a bad URL, a refused connection, a wrong password', function()
    assert.has_error(function() tunnel.Cluster('http://x') end)
    local ok, err = pcall(tunnel.Cluster, 'redis://127.0.0.1:1/0', {timeout = 1})
    assert.is_false(ok)
    assert.is_truthy(err:match('^tunnel%.Cluster: redis 127%.0%.0%.1:1: PING: '), err)
    ok, err = pcall(tunnel.Cluster, url:gsub('^redis://', 'redis://:wrong@'), {timeout = 1})
    assert.is_false(ok)
    assert.is_truthy(err:match('AUTH'), err)
  end)

  it('several processes and threads share one Vector, Counter and Atomic: exactly once, no lost update', function()
    local vname, kname, aname = C.fresh('mp-v'), C.fresh('mp-k'), C.fresh('mp-a')
    local v = C.cluster:Vector(vname, 16)
    local k = C.cluster:Counter(kname, 0)
    local a = C.cluster:Atomic(aname, {n = 0})
    local seen = C.cluster:Hash(C.fresh('mp-seen'))
    local procs = {}
    for _ = 1, 3 do
      procs[#procs + 1] = spawn(([[
        local tunnel = require('tunnel')
        local c = tunnel.Cluster(%q, {prefix = 'tunnel-spec:'})
        local b = tunnel.Block(2)
        b:add(c:Vector(%q), c:Counter(%q), c:Atomic(%q))
        b:run(function(v, k, a)
          local n = 0
          while true do
            local x, ok = v:popFront(20)
            if not ok then break end
            k:increase(x)
            a:write(function(d) d.n = d.n + 1 end)
            n = n + 1
          end
          return n
        end)
        local r = b:synchronize(120)
        b:terminate()
        io.write(r[1][1] + r[2][1])
      ]]):format(url, vname, kname, aname))
    end
    local N = 300
    for i = 1, N do assert.is_true(v:pushBack(i, 20)) end
    v:close()
    local total = 0
    for _, p in ipairs(procs) do
      local out = p:read('*a')
      p:close()
      assert.is_truthy(tonumber(out), out)
      total = total + tonumber(out)
    end
    assert.are.equal(N, total)
    assert.are.equal(N * (N + 1) / 2, k:get())
    assert.are.equal(N, a.data.n)
    assert.is_not_nil(seen)
  end)
end)
