-- Cluster-only behaviour of tunnel.Cluster: names shared by processes,
-- `tunnel logs`, descriptors, connection errors, several processes. It runs
-- only with TUNNEL_REDIS_URL (scripts/with-redis.sh). The behaviour shared
-- with the in-process classes is tested on both backends by
-- spec/{vector,hash,counter,atomic,printer}_spec.lua (spec/support/backends.lua).
local tunnel = require('tunnel')
local backends = dofile('spec/support/backends.lua')

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
