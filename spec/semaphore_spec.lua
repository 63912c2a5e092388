-- tunnel.Semaphore: a bounded number of permits, in process and on a Redis
-- server (when TUNNEL_REDIS_URL is set: scripts/with-redis.sh), where the
-- permits are leases of the process that holds them.
local tunnel = require('tunnel')
local BACKENDS = dofile('spec/support/backends.lua')
local unpack = table.unpack or unpack

local function Semaphore(B, permits)
  if B.cluster then return B.cluster:Semaphore(B.fresh('semaphore'), permits) end
  return tunnel.Semaphore(permits)
end

for _, B in ipairs(BACKENDS) do
  describe('tunnel.Semaphore (' .. B.name .. ')', function()
    it('refuses a permit count that is not an integer >= 1', function()
      for _, bad in ipairs({0, -1, 2.5, 'x', {}}) do
        local ok, err = pcall(Semaphore, B, bad)
        assert.is_false(ok)
        assert.matches('Semaphore: permits must be an integer', err)
      end
    end)

    it('takes and gives back permits, n at a time', function()
      local s = Semaphore(B, 3)
      assert.are.equal(3, s:permits())
      assert.is_true(s:acquire())
      assert.is_true(s:acquire(2))
      assert.are.equal(0, s:available())
      assert.is_nil(s:acquireAsync())
      assert.is_true(s:release(2))
      assert.are.equal(2, s:available())
      assert.is_nil(s:acquireAsync(3))
      assert.is_true(s:acquireAsync(2))
      assert.is_true(s:release(3))
      assert.are.equal(3, s:available())
    end)

    it('times out an acquire that cannot be served, taking nothing', function()
      local s = Semaphore(B, 2)
      assert.is_true(s:acquire(1))
      local t0 = tunnel.clock()
      assert.is_nil(s:acquire(2, 0.2))
      assert.is_true(tunnel.clock() - t0 >= 0.15)
      assert.is_nil(s:acquire(2, 0))
      assert.are.equal(1, s:available())
      assert.is_true(s:acquire(nil, 1)) -- n defaults to 1
      s:release(2)
    end)

    it('raises for bad input, changing nothing', function()
      local s = Semaphore(B, 2)
      local cases = {
        {'acquire', {0}, 'n must be an integer >= 1'},
        {'acquire', {1.5}, 'n must be an integer'},
        {'acquire', {3}, "n %(3%) is more than the semaphore's 2 permits"},
        {'acquire', {1, -1}, 'timeout must be >= 0'},
        {'acquireAsync', {'x'}, 'n must be an integer'},
        {'release', {0}, 'n must be an integer >= 1'},
        {'release', {1}, 'more permits released than'},
      }
      for _, c in ipairs(cases) do
        local ok, err = pcall(s[c[1]], s, unpack(c[2]))
        assert.is_false(ok, c[1])
        assert.matches('^tunnel%.Semaphore:' .. c[1] .. ': ' .. c[3], err)
      end
      assert.are.equal(2, s:available())
      assert.is_true(s:acquire(2))
      local ok, err = pcall(s.release, s, 3)
      assert.is_false(ok)
      assert.matches('more permits released than', err)
      assert.are.equal(0, s:available())
      s:release(2)
    end)

    it('wakes a waiter for several permits when enough are given back', function()
      local s = Semaphore(B, 3)
      assert.is_true(s:acquire(3))
      local block = tunnel.Block(1)
      block:add(s)
      block:run(function(sem)
        local t0 = tunnel.clock()
        local ok = sem:acquire(2, 30)
        return ok, tunnel.clock() - t0
      end)
      tunnel.sleep(0.1)
      s:release(1)
      tunnel.sleep(0.1)
      s:release(2)
      local r = block:synchronize(30)
      block:terminate()
      assert.is_true(r[1][1])
      assert.are.equal(1, s:available())
      s:release(2) -- a permit of another thread of this process
      assert.are.equal(3, s:available())
    end)

    local ROUNDS = B.name == 'local' and 2000 or 60
    it(('never lets more than 3 of 8 threads hold permits (%d rounds each)'):format(ROUNDS), function()
      local s = Semaphore(B, 3)
      local holders = tunnel.Counter(0) -- in process: exact and quick
      local block = tunnel.Block(8)
      block:add(s, holders, ROUNDS)
      block:run(function(sem, now, rounds)
        local most = 0
        for i = 1, rounds do
          local n = 1 + i % 2
          if not sem:acquire(n, 60) then return -1 end
          local inside = now:increase(n)
          if inside > most then most = inside end
          if i % 16 == 0 then tunnel.sleep(0.0005) end
          now:decrease(n)
          sem:release(n)
        end
        return most
      end)
      local r, st = block:synchronize(300)
      block:terminate()
      local most = 0
      for i = 1, 8 do
        assert.is_true(st[i], tostring(r[i][1]))
        assert.is_true(r[i][1] >= 1)
        if r[i][1] > most then most = r[i][1] end
      end
      assert.is_true(most <= 3, 'held at once: ' .. most)
      assert.are.equal(3, s:available())
    end)
  end)
end

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
;(C and describe or pending)('tunnel.Semaphore across processes', function()
  it('gets back the permit of a holder killed with kill -9 within the lease', function()
    local name = C.fresh('lease-semaphore')
    local s = C.cluster:Semaphore(name, 1)
    local p = spawn(([[
      local tunnel = require('tunnel')
      local s = tunnel.Cluster(%q, {prefix = 'tunnel-spec:'}):Semaphore(%q, 1)
      assert(s:acquire(1, 10))
      local f = io.open('/proc/self/stat')
      io.write(f:read('*l'):match('^(%%d+)'), '\n')
      io.flush()
      tunnel.sleep(100)
    ]]):format(C.url, name), 110)
    local pid = p:read('*l')
    assert.is_truthy(pid and pid:match('^%d+$'), pid)
    assert.are.equal(0, s:available())
    assert.is_nil(s:acquireAsync())
    tunnel.sleep(4) -- past a renewal: the lease is kept while it lives
    assert.is_nil(s:acquireAsync())
    os.execute('kill -9 ' .. pid)
    p:close()
    local t0 = tunnel.clock()
    assert.is_true(s:acquire(1, 60))
    local dt = tunnel.clock() - t0
    -- The lease is 10 s (RD_LEASE_MS): back within it, the waiter woken
    -- when it ended (not at its next 5 s slice).
    assert.is_true(dt < 12, 'took ' .. dt .. ' s')
    s:release()
  end)

  it('shares the permits of one name between processes', function()
    local name = C.fresh('mp-semaphore')
    local s = C.cluster:Semaphore(name, 2)
    assert.are.equal(2, C.cluster:Semaphore(name, 7):permits()) -- the first creator's
    assert.is_true(s:acquire(2))
    local p = spawn(([[
      local tunnel = require('tunnel')
      local s = tunnel.Cluster(%q, {prefix = 'tunnel-spec:'}):Semaphore(%q, 2)
      io.write(tostring(s:acquireAsync()), ' ')
      io.write(tostring(s:acquire(1, 30)), ' ')
      local ok = pcall(s.release, s, 2)
      io.write(tostring(ok), ' ', tostring(s:release(1)))
    ]]):format(C.url, name))
    tunnel.sleep(0.5)
    s:release(1)
    local out = p:read('*a')
    p:close()
    assert.are.equal('nil true false true', out)
    assert.are.equal(1, s:available())
    s:release(1)
  end)
end)
