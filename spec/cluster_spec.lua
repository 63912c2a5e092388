-- Cluster-only behaviour of tunnel.Cluster: names shared by processes,
-- `tunnel logs`, descriptors, connection errors, several processes. It runs
-- only with TUNNEL_REDIS_URL (scripts/with-redis.sh). The behaviour shared
-- with the in-process classes is tested on both backends by
-- spec/{vector,hash,counter,atomic,printer}_spec.lua (spec/support/backends.lua).
local tunnel = require('tunnel')
local backends = dofile('spec/support/backends.lua')

local C = backends[2]
local unpack = table.unpack or unpack
local describe_cluster = C and describe or pending

-- Run a Lua program in another process with the module of this build,
-- killed after `limit` seconds (default 60).
local function spawn(code, limit)
  local lua = dofile('spec/support/lua.lua').command
  local name = os.tmpname()
  local f = assert(io.open(name, 'w'))
  f:write(code)
  f:close()
  return assert(io.popen(('timeout %d %s %s 2>&1; rm -f %s')
    :format(limit or 60, lua, name, name)))
end

-- redis-cli on the spec server: each argument single-quoted; bounded.
local function redis(...)
  local port = C.url:match(':(%d+)/')
  local args = {}
  for i, a in ipairs({...}) do
    args[i] = "'" .. tostring(a):gsub("'", "'\\''") .. "'"
  end
  local h = assert(io.popen(('timeout 5 redis-cli -p %s %s 2>&1')
    :format(port, table.concat(args, ' '))))
  local out = h:read('*a')
  h:close()
  return out
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

  -- The commands clients sent about `name` while `f` ran, as redis-cli
  -- MONITOR shows them (a command a script ran is tagged "[0 lua]" and is
  -- left out): the round trips. Only those naming it: in a whole suite's
  -- run other threads of this process (lease renewers) talk meanwhile.
  local function round_trips(name, f)
    local log = os.tmpname()
    local port = C.url:match(':(%d+)/')
    os.execute(('(timeout 3 redis-cli -p %s monitor > %s 2>&1 &)'):format(port, log))
    tunnel.sleep(0.5) -- MONITOR is on before f's first command
    f()
    tunnel.sleep(2.7) -- and off when the timeout has ended it
    local h = assert(io.open(log))
    local out = h:read('*a')
    h:close()
    os.remove(log)
    local cmds = {}
    for line in out:gmatch('[^\n]+') do
      if not line:find('%[%d+ lua%]') and line:find(name, 1, true) then
        local cmd = line:match('^%d+%.%d+ %[[^%]]*%] "(%w+)"')
        if cmd then cmds[#cmds + 1] = cmd:upper() end
      end
    end
    return cmds
  end

  it('fetches an Atomic\'s data with its lock: a read is 2 round trips, a write 3 (issue 17)', function()
    local aname = C.fresh('atomic-rt')
    local a = C.cluster:Atomic(aname, {n = 1})
    a:read(function() end) -- the scripts loaded, the connection made
    a:write(function(d) d.n = d.n + 0 end)
    local cmds = round_trips(aname, function()
      assert.are.equal(1, a:read(function(d) return d.n end))
    end)
    assert.are.same({'EVALSHA', 'EVALSHA'}, cmds) -- lock (with the data), unlock
    cmds = round_trips(aname, function()
      a:write(function(d) d.n = d.n + 1 end)
    end)
    assert.are.same({'EVALSHA', 'EVALSHA', 'EVALSHA'}, cmds) -- lock, set, unlock
    assert.are.equal(2, a:read(function(d) return d.n end))
    -- Another process's write between two reads is seen by the second
    -- (the data is fetched afresh with every lock).
    local p = spawn(([[
      local tunnel = require('tunnel')
      local c = tunnel.Cluster(%q, {prefix = 'tunnel-spec:'})
      c:Atomic(%q):write(function(d) d.n = d.n * 10 end)
    ]]):format(url, aname))
    p:read('*a')
    p:close()
    assert.are.equal(20, a:read(function(d) return d.n end))
    -- An Atomic that holds nil: the lock says so, no GET either.
    local ename = C.fresh('atomic-rt-nil')
    local e = C.cluster:Atomic(ename)
    e:read(function() end)
    cmds = round_trips(ename, function()
      assert.are.equal('nil', e:read(function(d) return type(d) end))
    end)
    assert.are.same({'EVALSHA', 'EVALSHA'}, cmds)
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

  -- Issue 11, finding 4: Redis keeps the writes a script made before it
  -- failed, so every script checks what it reads before its first write.
  it('a corrupt K:meta or a foreign item fails each call and changes nothing', function()
    local name = C.fresh('corrupt')
    local key = 'tunnel-spec:' .. name
    local v = C.cluster:Vector(name, 10)
    for i = 1, 3 do v:pushBack(i) end
    local before = redis('LRANGE', key, 0, -1)
    local calls = {
      popFront = function() return v:popFront() end,
      popBack = function() return v:popBack(0) end,
      pushBack = function() return v:pushBack(4) end,
      pushFront = function() return v:pushFront(0) end,
      insert = function() return v:insert(2, 9) end,
      remove = function() return v:remove(2) end,
      close = function() return v:close() end,
    }
    for _, bad in ipairs({{'v', 'garbage'}, {'hint', 'ten'}, {'closed', 'yes'}}) do
      redis('HSET', key .. ':meta', bad[1], bad[2])
      for method, call in pairs(calls) do
        local ok, err = pcall(call)
        assert.is_false(ok, method)
        assert.is_truthy(err:match('^tunnel%.Vector:' .. method .. ': redis .*' .. key:gsub('%p', '%%%0') .. ':meta holds'), err)
        assert.are.equal(before, redis('LRANGE', key, 0, -1), method)
      end
      redis('HDEL', key .. ':meta', bad[1])
    end
    redis('HSET', key .. ':meta', 'hint', '10')
    assert.are.equal(1, v:popFront(0))
    -- An item tunnel did not write stays where it is; the rest still work.
    redis('LPUSH', key, 'garbage')
    local ok, err = pcall(v.popFront, v, 0)
    assert.is_false(ok)
    assert.is_truthy(err:match('^tunnel%.Vector:popFront: .*was not written by this tunnel: nothing was changed'), err)
    assert.are.equal(3, #v)
    assert.are.equal(3, v:popBack(0))
    assert.are.equal(2, #v)
    -- A key of the wrong type: the push neither stores nor half-stores.
    redis('DEL', key .. ':items')
    redis('SET', key .. ':items', 'x')
    ok, err = pcall(v.pushBack, v, 5)
    assert.is_false(ok)
    assert.is_truthy(err:match(':items is a string, not a list'), err)
    assert.are.equal(2, #v)
  end)

  -- Issue 11, finding 6: lock state tunnel did not write (no expiry, not a
  -- token, a wrong type) is expired at once; it never blocks a callback.
  it('a foreign lock key never blocks read or write', function()
    local names, setup = {}, {
      {'w', {'SET', ':lock:w', 'garbage'}},
      {'w-token', {'SET', ':lock:w', '1-ab-1'}},             -- no expiry
      {'w-long', {'SET', ':lock:w', '1-ab-1', 'PX', '99999999'}},
      {'ww', {'SET', ':lock:ww', 'garbage'}},
      {'r', {'SET', ':lock:r', 'garbage'}},
      {'r-forever', {'ZADD', ':lock:r', '+inf', '1-ab-1'}},
      {'q', {'SET', ':lock:q', 'garbage'}},
    }
    for i, case in ipairs(setup) do
      names[i] = C.fresh('foreign-' .. case[1])
      C.cluster:Atomic(names[i], {n = 0})
      local cmd = case[2]
      redis(cmd[1], 'tunnel-spec:' .. names[i] .. cmd[2], unpack(cmd, 3))
    end
    -- In another process, bounded: before the fix it waited forever.
    local p = spawn(([[
      local tunnel = require('tunnel')
      local c = tunnel.Cluster(%q, {prefix = 'tunnel-spec:', timeout = 5})
      local out = {}
      for _, name in ipairs({%s}) do
        local a = c:Atomic(name)
        a:write(function(d) d.n = d.n + 1 end)
        out[#out + 1] = a:read(function(d) return d.n end)
      end
      io.write(table.concat(out, ' '))
    ]]):format(url, ('%q, '):rep(#names):format(unpack(names))), 20)
    local out = p:read('*a')
    p:close()
    assert.are.equal(('1 '):rep(#names):sub(1, -2), out)
  end)

  -- Issue 11, finding 12: no password in what tunnel prints or stores.
  it('keeps the password out of tostring, cluster.url and the stored descriptors; decodes percent-escapes', function()
    local user = C.fresh('user')
    assert.matches('OK', redis('ACL', 'SETUSER', user, 'on', '>p@ss:w/rd%', '~*', '&*', '+@all'))
    finally(function() redis('ACL', 'DELUSER', user) end)
    local secret = url:gsub('^redis://', 'redis://' .. user .. ':p%%40ss%%3Aw%%2Frd%%25@')
    local c = tunnel.Cluster(secret, {prefix = 'tunnel-spec:', timeout = 5})
    for _, shown in ipairs({tostring(c), c.url}) do
      assert.is_nil(shown:find('ss', 1, true), shown)
      assert.is_nil(shown:find(user, 1, true), shown)
    end
    local ok, err = pcall(tunnel.Cluster, 'redis://:hunter2@[bad', {timeout = 1})
    assert.is_false(ok)
    assert.is_nil(err:find('hunter2', 1, true), err)
    local vname, kname = C.fresh('secret-v'), C.fresh('secret-k')
    local v, k = c:Vector(vname), c:Counter(kname, 1)
    v:pushBack({k = k})
    local stored = redis('--no-raw', 'LRANGE', 'tunnel-spec:' .. vname, 0, -1)
    assert.is_truthy(stored:find(kname, 1, true), stored)
    assert.is_nil(stored:find('ss', 1, true), stored)
    assert.is_nil(stored:find(user, 1, true), stored)
    -- Another process reaches the object with its own credentials.
    local p = spawn(([[
      local tunnel = require('tunnel')
      local c = tunnel.Cluster(%q, {prefix = 'tunnel-spec:', timeout = 5})
      local t = c:Vector(%q):popFront(5)
      io.write(t.k:increase())
    ]]):format(secret, vname))
    assert.are.equal('2', p:read('*a'))
    p:close()
    -- In this process the descriptor names the same object.
    v:pushBack({k = k})
    assert.are.equal(k, v:popFront(0).k)
  end)

  it('names the method in the errors of bad constructor arguments', function()
    local cases = {
      {{}, '^tunnel%.Cluster: url must be a string %(got nil%)'},
      {{url, 'x'}, '^tunnel%.Cluster: options must be a table %(got string%)'},
      {{url, {timeout = 0}}, '^tunnel%.Cluster: timeout must be a number of seconds > 0 and finite'},
      {{url, {timeout = math.huge}}, '^tunnel%.Cluster: timeout must be a number of seconds > 0 and finite'},
    }
    for _, case in ipairs(cases) do
      local ok, err = pcall(tunnel.Cluster, unpack(case[1], 1, 2))
      assert.is_false(ok)
      assert.is_truthy(err:match(case[2]), err)
    end
  end)
end)
