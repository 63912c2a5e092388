-- tunnel.Block: threads with their own Lua states, runs, results.
local tunnel = require('tunnel')
-- Globals the specs' inits set in block threads (each has its own state).
-- luacheck: globals INIT_ONE INIT_SIZE INIT_MARK sentinel

-- Run a Lua snippet in a fresh interpreter (the one running the specs);
-- returns its output and whether it exited cleanly.
local function run_script(code)
  local lua = dofile('spec/support/lua.lua').command
  local name = os.tmpname()
  local f = assert(io.open(name, 'w'))
  f:write(code)
  f:close()
  local p = assert(io.popen(lua .. ' ' .. name .. ' 2>&1'))
  local out = p:read('*a')
  local ok = p:close()
  os.remove(name)
  return out, ok
end

describe('tunnel.Block', function()
  it('has the size it was created with, as .size and #', function()
    local b = tunnel.Block(3)
    assert.are.equal(3, b.size)
    assert.are.equal(3, #b)
    b:terminate()
  end)

  it('loads tunnel in each thread: the global, require, and the API', function()
    local b = tunnel.Block(2)
    b:run(function()
      local names = {}
      for name in pairs(tunnel) do names[#names + 1] = name end
      table.sort(names)
      return require('tunnel') == tunnel, require('tunnel.core') == tunnel,
             table.concat(names, ' ')
    end)
    local result, status = b:synchronize()
    local here = {}
    for name in pairs(tunnel) do here[#here + 1] = name end
    table.sort(here)
    for i = 1, 2 do
      assert.is_true(status[i], tostring(result[i][1]))
      assert.is_true(result[i][1])
      assert.is_true(result[i][2])
      assert.are.equal(table.concat(here, ' '), result[i][3])
    end
    b:terminate()
  end)

  it('is one thread when created without a size, as in the original', function()
    local b = tunnel.Block()
    assert.are.equal(1, b.size)
    assert.are.equal(1, #b)
    b:run(function() return __threadid, __blocksize end)
    local result, status = b:synchronize()
    assert.is_true(status[1], tostring(result[1][1]))
    assert.are.same({1, 1, n = 2}, result[1])
    assert.is_nil(status[2])
    b:terminate()
    local c = tunnel.Block(nil, function() INIT_ONE = __threadid end)
    assert.are.equal(1, c.size)
    c:run(function() return INIT_ONE end)
    assert.are.equal(1, c:synchronize()[1][1])
    c:terminate()
  end)

  it('sets __blocksize beside __threadid in every thread, init included', function()
    local b = tunnel.Block(3, function() INIT_SIZE = __blocksize end)
    b:run(function() return __threadid, __blocksize, INIT_SIZE end)
    local result, status = b:synchronize()
    for i = 1, 3 do
      assert.is_true(status[i], tostring(result[i][1]))
      assert.are.same({i, 3, 3, n = 3}, result[i])
    end
    b:terminate()
  end)

  it('gives each thread its own __threadid from 1 to size', function()
    local b = tunnel.Block(4)
    b:run(function() return __threadid end)
    local result, status = b:synchronize()
    for i = 1, 4 do
      assert.is_true(status[i])
      assert.are.equal(i, result[i][1])
    end
    b:terminate()
  end)

  it('numbers runs 1, 2, 3 and passes added values in order', function()
    local b = tunnel.Block(2)
    assert.are.equal(b, b:add(10, 'x'))
    b:add({k = 'v'})
    assert.are.equal(1, b:run(function(a, s, t) return a + 1, s, t.k end))
    assert.are.equal(2, b:run(function(a) return a * 2 end))
    b:synchronize()
    local r1, s1 = b:getResult(1)
    assert.are.same({11, 'x', 'v', n = 3}, r1[1])
    assert.is_true(s1[2])
    local r2 = b:getResult()
    assert.are.same({20, n = 1}, r2[2])
    b:terminate()
  end)

  it('keeps nil return values in place', function()
    local b = tunnel.Block(1)
    b:run(function() return nil, 2 end)
    local result = b:synchronize()
    assert.are.equal(2, result[1].n)
    assert.is_nil(result[1][1])
    assert.are.equal(2, result[1][2])
    b:terminate()
  end)

  it('runs each thread\'s jobs in order', function()
    local b = tunnel.Block(2)
    local v = tunnel.Vector()
    b:add(v)
    for k = 1, 20 do
      b:run((loadstring or load)('local v = ...; v:pushBack({__threadid, ' .. k .. '})'))
    end
    b:synchronize()
    local last = {0, 0}
    for _, item in v:iterator() do
      assert.is_true(item[2] > last[item[1]])
      last[item[1]] = item[2]
    end
    assert.are.same({20, 20}, last)
    b:terminate()
  end)

  it('reports an error inside a job with its message and traceback', function()
    local b = tunnel.Block(2)
    b:run(function()
      if __threadid == 2 then error('boom in two') end
      return 'fine'
    end)
    local result, status = b:synchronize()
    assert.is_true(status[1])
    assert.are.equal('fine', result[1][1])
    assert.is_false(status[2])
    assert.matches('boom in two', result[2][1])
    assert.matches('traceback', result[2].traceback)
    b:terminate()
  end)

  it('reports a job returning a value that cannot cross as a failure', function()
    local b = tunnel.Block(1)
    b:run(function() return coroutine.create(function() end) end)
    local result, status = b:synchronize()
    assert.is_false(status[1])
    assert.matches('cannot send', result[1][1])
    b:terminate()
  end)

  it('shows a pending run with nil status until its thread is done', function()
    local b = tunnel.Block(2)
    local gate = tunnel.Vector()
    b:add(gate)
    local id = b:run(function(g) return g:popFront() end)
    local result, status = b:getResult(id)
    assert.is_nil(status[1])
    assert.is_nil(status[2])
    assert.is_nil(result[1])
    gate:pushBack('a')
    gate:pushBack('b')
    b:synchronize()
    assert.is_true(status[1])
    assert.is_true(status[2])
    local got = {result[1][1], result[2][1]}
    table.sort(got)
    assert.are.same({'a', 'b'}, got)
    b:terminate()
  end)

  it('gives up synchronize at its timeout, with the run still pending', function()
    local b = tunnel.Block(1)
    local gate = tunnel.Vector()
    b:add(gate)
    b:run(function(g) return g:popFront() end)
    local t0 = tunnel.clock()
    local _, status = b:synchronize(0.05)
    local waited = tunnel.clock() - t0
    assert.is_nil(status[1])
    assert.is_true(waited >= 0.04 and waited < 2)
    gate:pushBack('go')
    local result
    result, status = b:synchronize()
    assert.is_true(status[1])
    assert.are.equal('go', result[1][1])
    assert.has_error(function() b:synchronize(-1) end)
    b:terminate()
  end)

  describe('results', function()
    local unpack = unpack or table.unpack -- luacheck: ignore

    -- The original's own idiom (its doc and unittest/block.lua): it ran on
    -- a LuaJIT that honoured __ipairs; ours are plain tables, so it works
    -- on every Lua without help.
    it('iterate with the original\'s ipairs idiom on every Lua', function()
      local b = tunnel.Block(3)
      b:run(function() return __threadid, __threadid * 10 end)
      b:run(function()
        if __threadid == 2 then error('Error from thread 2', 0) end
        return __threadid, __threadid * 100
      end)
      local result, status = b:synchronize()
      local lines = {}
      for i, v in ipairs(status) do
        lines[#lines + 1] = table.concat({i, tostring(v), unpack(result[i])}, ' ')
      end
      assert.are.same({'1 true 1 100', '2 false Error from thread 2', '3 true 3 300'}, lines)
      lines = {}
      result, status = b:getResult(1)
      for index, value in ipairs(result) do
        lines[#lines + 1] = tostring(status[index]) .. ' ' .. table.concat(value, ' ')
      end
      assert.are.same({'true 1 10', 'true 2 20', 'true 3 30'}, lines)
      local result2, status2 = b:terminate()
      assert.are.equal(3, #result2)
      assert.are.equal(3, #status2)
      b:terminate()
    end)

    it('iterate with pairs, and are plain tables once the run is done', function()
      local b = tunnel.Block(2)
      b:run(function() return 'r' .. __threadid end)
      local result, status = b:synchronize()
      local seen = {}
      for i, v in pairs(status) do seen[i] = v end
      assert.are.same({true, true}, seen)
      seen = {}
      for i, v in pairs(result) do seen[i] = v[1] end
      assert.are.same({'r1', 'r2'}, seen)
      assert.are.equal('table', type(result))
      assert.are.equal('table', type(status))
      assert.is_nil(getmetatable(result))
      assert.is_nil(getmetatable(status))
      -- plain data: they go into a tunnel structure like any table
      local v = tunnel.Vector()
      v:pushBack(status)
      assert.are.same({true, true}, (v:popFront()))
      b:terminate()
    end)

    it('are the same tables at every call for one run', function()
      local b = tunnel.Block(2)
      local gate = tunnel.Vector()
      b:add(gate)
      local first = b:run(function(g) return g:popFront() end)
      finally(function() gate:pushBack(3); gate:pushBack(4); b:terminate() end)
      local r1, s1 = b:getResult(first)
      b:run(function() return 'second' end)
      gate:pushBack(1)
      gate:pushBack(2)
      local r2, s2 = b:synchronize()
      assert.are_not.equal(r1, r2)
      local r3, s3 = b:getResult(first)
      assert.is_true(rawequal(r1, r3))
      assert.is_true(rawequal(s1, s3))
      assert.is_true(rawequal(r2, (b:getResult(2))))
      assert.are.same({true, true}, {s1[1], s1[2]})
      assert.are.same({true, true}, {s2[1], s2[2]})
      b:terminate()
    end)

    -- The original's status was a live Vector: `status[i] == nil` meant
    -- "not finished yet" and turned true later. Ours reads through to the
    -- run while a thread is busy.
    it('of a pending run fill in as threads finish, and ipairs stops at a pending slot', function()
      local b = tunnel.Block(3)
      local gates = tunnel.Vectors(3)
      b:add(gates)
      local id = b:run(function(g) return g[__threadid]:popFront() end)
      finally(function()
        for i = 1, 3 do gates[i]:pushBack('end') end
        b:terminate()
      end)
      gates[1]:pushBack('one')
      local result, status
      local deadline = tunnel.clock() + 10
      repeat
        result, status = b:getResult(id)
        if status[1] == nil then tunnel.sleep(0.01) end
      until status[1] ~= nil or tunnel.clock() > deadline
      assert.is_true(status[1])
      assert.is_nil(status[2])
      assert.is_nil(result[2])
      assert.is_nil(status[3])
      assert.is_nil(status[0])
      assert.is_nil(status.n)
      -- ipairs stops at the pending slot; where it honours __ipairs (5.2,
      -- 5.3) it goes over every slot, as pairs does
      local n = 0
      for _ in ipairs(status) do n = n + 1 end
      assert.are.equal(dofile('spec/support/lua.lua').ipairs_meta and 3 or 1, n)
      -- pairs goes over every slot, as the original's did, where Lua
      -- honours __pairs (5.2+; LuaJIT and 5.1 with tunnel.compat)
      local slots = {}
      for i, s in pairs(status) do slots[#slots + 1] = i .. '=' .. tostring(s) end
      if _VERSION ~= 'Lua 5.1' then -- __len and __pairs on tables: 5.2+
        assert.are.equal(3, #status)
        assert.are.same({'1=true', '2=nil', '3=nil'}, slots)
      else
        assert.are.same({'1=true'}, slots)
      end
      -- the same table, read again after the threads finish
      gates[3]:pushBack('three')
      gates[2]:pushBack('two')
      b:synchronize()
      assert.is_true(status[3])
      assert.are.equal('three', result[3][1])
      assert.is_true(status[2])
      assert.are.same({'one', 'two', 'three'}, {result[1][1], result[2][1], result[3][1]})
      assert.is_nil(getmetatable(status))
      n = 0
      for _ in ipairs(status) do n = n + 1 end
      assert.are.equal(3, n)
      assert.are.equal(3, #status)
      b:terminate()
    end)
  end)

  it('returns nil, nil for an unknown run id', function()
    local b = tunnel.Block(1)
    local r, s = b:getResult(7)
    assert.is_nil(r)
    assert.is_nil(s)
    b:terminate()
  end)

  it('refuses to run once terminated', function()
    local b = tunnel.Block(1)
    b:run(function() return 1 end)
    local result, status = b:terminate()
    assert.is_true(status[1])
    assert.are.equal(1, result[1][1])
    assert.has_error(function() b:run(function() end) end,
                     'tunnel.Block:run: block is terminated')
    b:terminate() -- idempotent
  end)

  it('lets terminate finish queued jobs first', function()
    local b = tunnel.Block(1)
    local c = tunnel.Counter()
    b:add(c)
    for _ = 1, 5 do
      b:run(function(counter) tunnel.sleep(0.01); counter:increase() end)
    end
    b:terminate()
    assert.are.equal(5, c:get())
  end)

  it('runs init once in each thread before any job', function()
    local b = tunnel.Block(2, function() INIT_MARK = 'ready ' .. __threadid end)
    b:run(function() return INIT_MARK end)
    local result = b:synchronize()
    assert.are.equal('ready 1', result[1][1])
    assert.are.equal('ready 2', result[2][1])
    b:terminate()
  end)

  it('raises when init fails, naming the thread', function()
    assert.has_error(function()
      tunnel.Block(2, function() error('no init for you') end)
    end)
    local ok, err = pcall(tunnel.Block, 1, function() error('bad init') end)
    assert.is_false(ok)
    assert.matches('tunnel.Block: init failed in thread 1: .*bad init', err)
  end)

  -- issue 11: 8. A failed init is reported at once: the creator does not
  -- wait for the other threads' init (here one that waits for a value).
  it('raises at once when an init fails, while another init still waits', function()
    local q, done = tunnel.Vector(), tunnel.Vector()
    local t0 = os.time()
    local ok, err = pcall(tunnel.Block, 2, function()
      if __threadid == 1 then error('thread 1 gives up') end
      -- Tell the spec when this thread's state is closed.
      local function closed() done:pushBack('closed') end
      if newproxy then
        sentinel = newproxy(true)
        getmetatable(sentinel).__gc = closed
      else
        sentinel = setmetatable({}, {__gc = closed})
      end
      done:pushBack('waiting')
      local v = q:popFront(10)
      done:pushBack(v)
    end)
    local took = os.time() - t0
    assert.is_false(ok)
    assert.matches('tunnel.Block: init failed in thread 1: .*thread 1 gives up', err)
    assert.is_true(took <= 2) -- not the 10 s thread 2's init may wait
    -- Thread 2 goes on by itself, detached: its init finishes when it gets
    -- a value, then it closes its state and exits.
    assert.are.same({'waiting', true}, {done:popFront(10)})
    q:pushBack('go')
    assert.are.same({'go', true}, {done:popFront(10)})
    assert.are.same({'closed', true}, {done:popFront(10)})
  end)

  it('lets the process end when an init fails and another blocks forever', function()
    local lua = dofile('spec/support/lua.lua').command
    local name = os.tmpname()
    local f = assert(io.open(name, 'w'))
    f:write([[
      local tunnel = require('tunnel')
      local q = tunnel.Vector()
      local ok, err = pcall(tunnel.Block, 3, function()
        if __threadid == 2 then error('no') end
        q:popFront() -- forever: nobody pushes
      end)
      print('raised', ok, err)
    ]])
    f:close()
    local p = assert(io.popen('timeout 30 ' .. lua .. ' ' .. name .. ' 2>&1; echo "rc=$?"'))
    local out = p:read('*a')
    p:close()
    os.remove(name)
    assert.matches('raised\tfalse\ttunnel.Block: init failed in thread 2', out)
    assert.matches('rc=0', out)
  end)

  it('resolves globals of a job in the thread', function()
    local b = tunnel.Block(1)
    b:run(function() return type(tunnel), type(string.format), math.pi end)
    local result = b:synchronize()
    assert.are.same({'table', 'function', math.pi, n = 3}, result[1])
    b:terminate()
  end)

  it('rejects bad arguments with errors naming the method', function()
    assert.has_error(function() tunnel.Block(0) end,
                     'tunnel.Block: size must be between 1 and 4096 (got 0)')
    assert.has_error(function() tunnel.Block('x') end)
    assert.has_error(function() tunnel.Block(1, 42) end,
                     'tunnel.Block: init must be a function (got number)')
    local b = tunnel.Block(1)
    assert.has_error(function() b:run(42) end,
                     'tunnel.Block:run: callback must be a function (got number)')
    assert.has_error(function() b.run(42, function() end) end)
    assert.has_error(function() b:getResult('x') end)
    b:add(coroutine.create(function() end))
    assert.has_error(function() b:run(function() end) end)
    b:terminate()
  end)

  it('finishes queued jobs when the main chunk ends', function()
    local out, ok = run_script([[
      local tunnel = require('tunnel')
      local p = tunnel.Printer()
      local b = tunnel.Block(2)
      b:add(p)
      b:run(function(printer)
        tunnel.sleep(0.2)
        printer('done', __threadid)
      end)
      print('main ends')
    ]])
    assert.truthy(ok)
    assert.matches('main ends', out)
    assert.matches('done\t1', out)
    assert.matches('done\t2', out)
  end)
end)

-- issue 11: 10. A block keeps the results of its last `keep` runs.
describe('tunnel.Block keep', function()
  local function run_n(b, n)
    for _ = 1, n do b:run(function() return __threadid end) end
    b:synchronize()
  end

  it('keeps the last keep runs; an older one is forgotten, and says so', function()
    for _, b in ipairs({tunnel.Block(2, nil, {keep = 3}), tunnel.Block(2, {keep = 3}),
                        tunnel.Block(2, function() end, {keep = 3})}) do
      run_n(b, 5)
      for id = 1, 2 do
        local r, s, why = b:getResult(id)
        assert.is_nil(r)
        assert.is_nil(s)
        assert.are.equal('tunnel.Block:getResult: run ' .. id .. ' is forgotten (the block'
                         .. ' keeps its last 3 runs: tunnel.Block(size, init, {keep = n}))', why)
      end
      for id = 3, 5 do
        local r, s = b:getResult(id)
        assert.are.same({true, true}, s)
        assert.are.same({{1, n = 1}, {2, n = 1}}, r)
      end
      -- Unknown ids stay nil, nil, without a message.
      assert.are.same({n = 2}, table.pack and table.pack(b:getResult(6))
                      or {n = select('#', b:getResult(6))})
      assert.are.equal(2, select('#', b:getResult(0)))
      b:terminate()
    end
  end)

  it('keeps 100 runs by default', function()
    local b = tunnel.Block(1)
    run_n(b, 101)
    local r, _, why = b:getResult(1)
    assert.is_nil(r)
    assert.matches('run 1 is forgotten %(the block keeps its last 100 runs', why)
    assert.are.same({true}, select(2, b:getResult(2)))
    assert.are.same({true}, select(2, b:getResult(101)))
    b:terminate()
  end)

  it('leaves the tables of a forgotten run live for who holds them', function()
    local gate = tunnel.Vector()
    local b = tunnel.Block(1, nil, {keep = 1})
    b:add(gate)
    b:run(function(g) return g:popFront(10) end)
    local r, s = b:getResult(1)
    assert.is_nil(s[1])
    b:run(function() return 'second' end) -- pushes run 1 out
    assert.is_nil(b:getResult(1))
    gate:pushBack('opened')
    local r2 = b:synchronize()
    assert.are.equal('second', r2[1][1])
    assert.is_true(s[1])                -- read through to the run
    assert.are.equal('opened', r[1][1])
    b:terminate()
  end)

  it('rejects a bad keep or options, naming the method', function()
    assert.has_error(function() tunnel.Block(1, nil, {keep = 0}) end,
                     'tunnel.Block: keep must be an integer from 1 to 2^31-1 (got 0)')
    assert.has_error(function() tunnel.Block(1, nil, {keep = 1.5}) end,
                     'tunnel.Block: keep must be an integer from 1 to 2^31-1 (got 1.5)')
    assert.has_error(function() tunnel.Block(1, {keep = 'x'}) end,
                     'tunnel.Block: keep must be an integer from 1 to 2^31-1 (got string)')
    assert.has_error(function() tunnel.Block(1, nil, 5) end,
                     'tunnel.Block: options must be a table (got number)')
    assert.has_error(function() tunnel.Block(1, {}, {}) end,
                     'tunnel.Block: init must be a function (got table)')
  end)

  it('runs 10^5 times (or for ~10 s) at flat memory', function()
    local function rss()
      collectgarbage()
      collectgarbage()
      local f = assert(io.open('/proc/self/statm'))
      f:read('*n') -- the total size; then the resident size
      local pages = f:read('*n')
      f:close()
      return pages * 4096
    end
    local b = tunnel.Block(2)
    local n, read = 0, 0
    local function batch()
      for _ = 1, 1000 do b:run(function() return __threadid, 'x' end) end
      n = n + 1000
      -- The garbage of the runs is collected as it comes: left to the
      -- collector's pace, it piles up to about the live heap, which in a
      -- busy busted process is tens of MB (88 MB seen on 5.3), and resident
      -- memory then says nothing about what the runs keep.
      if n % 5000 == 0 then collectgarbage() end
      local r, s = b:synchronize()
      assert.are.same({true, true}, s)
      assert.are.equal('x', r[2][2])
      read = read + 1
    end
    for _ = 1, 20 do batch() end -- warm up: the ring fills, allocators settle
    local before = rss()
    local t0 = os.time()
    while n < 100000 and os.time() - t0 < 10 do batch() end
    local grown = rss() - before
    b:terminate()
    if dofile('spec/support/instrumented.lua') then return end
    -- Before the ring, ~2.4 KB a run: 10^5 runs grew RSS by 240 MB. With
    -- it 1-8 MB alone, up to 34 MB seen in a busy CI run (malloc's
    -- per-thread arenas): the margin sits between the two.
    assert.is_true(n >= 20000, 'only ' .. n .. ' runs')
    assert.is_true(grown < 64 * 1024 * 1024,
                   ('%d runs grew RSS by %.1f MB'):format(n, grown / 2^20))
  end)
end)
