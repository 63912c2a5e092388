-- Managing a cluster's objects and reaching its server: cluster:delete and
-- cluster:exists for every class, a second run of a program that starts
-- clean, the default timeout, ACL users, Unix sockets. Runs only with
-- TUNNEL_REDIS_URL (scripts/with-redis.sh; the socket specs also need its
-- TUNNEL_REDIS_SOCKET).
local tunnel = require('tunnel')
local backends = dofile('spec/support/backends.lua')
local lua = dofile('spec/support/lua.lua')

local C = backends[2]
local describe_cluster = C and describe or pending
local PREFIX = 'tunnel-spec:'

-- Run shell command `cmd`: its exit status, stdout and stderr.
local function run(cmd)
  local out, err = os.tmpname(), os.tmpname()
  local h = assert(io.popen(('%s >%s 2>%s; echo $?'):format(cmd, out, err)))
  local status = tonumber(h:read('*a'))
  h:close()
  local function slurp(name)
    local f = assert(io.open(name))
    local s = f:read('*a')
    f:close()
    os.remove(name)
    return s
  end
  return status, slurp(out), slurp(err)
end

-- Run Lua `code` in another process (killed after `limit` s, default 60).
local function spawn(code, limit)
  local name = os.tmpname()
  local f = assert(io.open(name, 'w'))
  f:write(code)
  f:close()
  local status, out, err = run(('timeout %d %s %s'):format(limit or 60,
                                                            lua.command, name))
  os.remove(name)
  return status, out, err
end

-- redis-cli on the spec server: each argument single-quoted; bounded.
local function redis(...)
  local args = {}
  for i, a in ipairs({...}) do
    args[i] = "'" .. tostring(a):gsub("'", "'\\''") .. "'"
  end
  local _, out, err = run(('timeout 10 redis-cli -p %s %s')
    :format(C.url:match(':(%d+)/'), table.concat(args, ' ')))
  return out .. err
end

-- How many keys of object `name` (every family) the server holds.
local function keys_of(name)
  local n = 0
  for _, suffix in ipairs({'', ':meta', ':items', ':space', ':lock:w',
                           ':lock:r', ':lock:ww', ':lock:q', ':held',
                           ':leases', ':w', ':wu', ':wd'}) do
    n = n + tonumber(redis('EXISTS', PREFIX .. name .. suffix):match('%d+'))
  end
  return n
end

-- Print `line` with the cluster Printer `name` in another process (whose
-- stdout is read here, not mixed with the spec's).
local function printed(name, line)
  local status, out, err = spawn(([[
    local tunnel = require('tunnel')
    tunnel.Cluster(%q, {prefix = %q}):Printer(%q):print(%q)
  ]]):format(C.url, PREFIX, name, line))
  assert.are.equal(0, status, err)
  assert.are.equal(line .. '\n', out)
end

describe_cluster('cluster:delete and cluster:exists', function()
  local cluster = C and C.cluster

  -- Each class: make an object that holds something; what a held object
  -- looks like after the delete.
  local classes = {
    Vector = {
      make = function(name)
        local v = cluster:Vector(name, 2)
        v:pushBack('a')
        v:close()
        return v
      end,
      fresh = function(v)
        assert.are.equal(0, #v)
        assert.is_true(v:pushBack(1, 0))
        assert.is_true(v:pushBack(2, 0))
        assert.is_true(v:pushBack(3, 0)) -- no hint any more: unbounded
        assert.are.equal(3, #v)
      end,
    },
    Hash = {
      make = function(name)
        local h = cluster:Hash(name)
        h.k = 'v'
        return h
      end,
      fresh = function(h)
        assert.is_nil(h.k)
        assert.are.equal(0, #h)
      end,
    },
    Counter = {
      make = function(name) return cluster:Counter(name, 5) end,
      fresh = function(k)
        assert.are.equal(0, k:get())
        assert.are.equal(1, k:increase())
      end,
    },
    Atomic = {
      make = function(name)
        local a = cluster:Atomic(name, {n = 1})
        a:write(function(d) d.n = 2 end) -- leaves lock keys behind
        return a
      end,
      fresh = function(a) assert.is_nil(a.data) end,
    },
    Printer = {
      make = function(name)
        printed(name, 'line')
        return cluster:Printer(name)
      end,
      fresh = function() end,
    },
  }
  -- The classes that arrived later, where this build has them.
  local function has(class) return cluster and cluster[class] ~= nil end
  if has('PriorityQueue') then
    classes.PriorityQueue = {
      make = function(name)
        local q = cluster:PriorityQueue(name, 2)
        q:push(1, 'a')
        return q
      end,
      fresh = function(q) assert.are.equal(0, #q) end,
    }
  end
  -- A Barrier, Semaphore or Array has a size its creator set: one held
  -- across a delete raises until it is made again.
  local function gone(f)
    local ok, err = pcall(f)
    assert.is_false(ok)
    assert.is_truthy(err:match('deleted'), err)
  end
  if has('Barrier') then
    classes.Barrier = {
      make = function(name) return cluster:Barrier(name, 2) end,
      fresh = function(b) gone(function() return b:parties() end) end,
    }
  end
  if has('Semaphore') then
    classes.Semaphore = {
      make = function(name)
        local s = cluster:Semaphore(name, 2)
        assert.is_true(s:acquire(1, 5))
        return s
      end,
      fresh = function(s) gone(function() return s:available() end) end,
    }
  end
  if has('Array') then
    classes.Array = {
      make = function(name) return cluster:Array(name, 4) end,
      fresh = function(a) gone(function() return a:fetch() end) end,
    }
  end

  for class, case in pairs(classes) do
    it('removes every key of a ' .. class .. ' and says whether it existed', function()
      local name = C.fresh('del-' .. class)
      local o = case.make(name)
      assert.is_true(keys_of(name) > 0)
      assert.is_true(cluster:exists(name))
      assert.is_true(cluster:delete(name))
      assert.are.equal(0, keys_of(name))
      assert.is_false(cluster:exists(name))
      assert.is_false(cluster:delete(name))
      -- The object this process still holds is a fresh, empty one.
      case.fresh(o)
      cluster:delete(name)
    end)
  end

  it('says an object that never held anything does not exist', function()
    local name = C.fresh('never')
    cluster:Vector(name)     -- unbounded, empty, open: no key
    cluster:Hash(name)
    assert.is_false(cluster:exists(name))
    assert.is_false(cluster:delete(name))
    assert.is_false(cluster:exists(C.fresh('nothing')))
  end)

  it('gives a Vector made again after a delete its new hint', function()
    local name = C.fresh('again')
    local v = cluster:Vector(name, 5)
    v:close()
    assert.is_true(cluster:delete(name))
    local w = cluster:Vector(name, 1)
    assert.are.equal(v, w) -- interned: the same object, made fresh
    assert.is_true(w:pushBack(1, 0))
    assert.is_nil(w:pushBack(2, 0)) -- full: the new hint holds
    assert.are.equal(1, w:popFront(0))
    cluster:delete(name)
  end)

  it('ends a write lock held on the object, as an expired lease', function()
    local name = C.fresh('lock')
    local a = cluster:Atomic(name, {n = 0})
    local ok, err = pcall(a.write, a, function(d)
      assert.is_true(cluster:delete(name))
      d.n = 1
    end)
    assert.is_false(ok)
    assert.is_truthy(err:match('lease expired'), err)
    assert.is_nil(a.data) -- the store was refused
    a:write(function() end) -- and the lock is free
    cluster:delete(name)
  end)

  it('lets a second run of a work-queue program start clean', function()
    local jobs, done = C.fresh('run-jobs'), C.fresh('run-done')
    local program = [[
      local tunnel = require('tunnel')
      local cluster = tunnel.Cluster(%q, {prefix = %q})
      if %s then
        cluster:delete(%q)
        cluster:delete(%q)
      end
      local jobs = cluster:Vector(%q, 4)
      local done = cluster:Counter(%q, 0)
      local b = tunnel.Block(2)
      b:add(jobs, done)
      b:run(function(jobs, done)
        while true do
          local x, ok = jobs:popFront(30)
          if not ok then break end -- closed and drained
          done:increase(x)
        end
      end)
      for i = 1, 10 do jobs:pushBack(i) end
      jobs:close()
      b:synchronize(60)
      io.write(done:get())
    ]]
    local function once(clean)
      return spawn(program:format(C.url, PREFIX, tostring(clean), jobs, done,
                                  jobs, done))
    end
    -- Without the deletes the second run finds the first one's state.
    local status, out, err = once(false)
    assert.are.equal(0, status, err)
    assert.are.equal('55', out)
    status, out, err = once(false) -- luacheck: ignore 311 (out: any)
    assert.are_not.equal(0, status)
    assert.is_truthy(err:match('vector is closed'), err)
    -- With them every run starts clean.
    for _ = 1, 2 do
      status, out, err = once(true)
      assert.are.equal(0, status, err)
      assert.are.equal('55', out)
    end
    cluster:delete(jobs)
    cluster:delete(done)
  end)

  it('names the method in the errors of bad arguments', function()
    for _, method in ipairs({'delete', 'exists'}) do
      local ok, err = pcall(cluster[method], cluster, nil)
      assert.is_false(ok)
      assert.are.equal('tunnel.Cluster:' .. method ..
                       ': name must be a non-empty string (got nil)', err)
      ok, err = pcall(cluster[method], cluster, '')
      assert.is_false(ok)
      assert.is_truthy(err:match('^tunnel%.Cluster:' .. method .. ': name must be'), err)
      ok, err = pcall(cluster[method], 'x', 'y')
      assert.is_false(ok)
      assert.is_truthy(err:match('^tunnel%.Cluster:' .. method ..
                                 ": self is a string, not a tunnel%.Cluster"), err)
    end
  end)

end)

describe_cluster('tunnel.Cluster connections', function()
  local url = C and C.url
  local port = url and url:match(':(%d+)/')
  local sock = os.getenv('TUNNEL_REDIS_SOCKET')
  local it_socket = (sock and sock ~= '') and it or pending

  it('has a finite default timeout: a server that stops answering raises', function()
    local c = tunnel.Cluster(url, {prefix = PREFIX})
    assert.are.equal(5, c.timeout)
    local k = c:Counter(C.fresh('paused'), 1)
    assert.are.equal(1, k:get()) -- connected
    -- The server holds every client's commands for 8 s: the default 5 s
    -- ends the call first, with an error instead of a hang.
    assert.is_truthy(redis('CLIENT', 'PAUSE', 8000, 'ALL'):match('OK'))
    finally(function() redis('CLIENT', 'UNPAUSE') end)
    local ok, err = pcall(k.get, k)
    assert.is_false(ok)
    assert.is_truthy(err:match('^tunnel%.Counter:get: redis .*timed out'), err)
  end)

  it('logs in as an ACL user with redis://user:password@', function()
    assert.is_truthy(redis('ACL', 'SETUSER', 'tunneluser', 'on', '>pw', '~*',
                           '&*', '+@all'):match('OK'))
    finally(function() redis('ACL', 'DELUSER', 'tunneluser') end)
    local acl = url:gsub('^redis://', 'redis://tunneluser:pw@')
    local c = tunnel.Cluster(acl, {prefix = PREFIX})
    assert.are.equal(url, c.url)
    local name = C.fresh('acl')
    c:Counter(name, 41):increase()
    assert.are.equal(42, C.cluster:Counter(name):get())
    -- The server sees this process's connection as that user.
    assert.is_truthy(redis('CLIENT', 'LIST'):match('user=tunneluser'))
    -- And another process too, through the same URL.
    local status, out, err = spawn(([[
      local tunnel = require('tunnel')
      io.write(tunnel.Cluster(%q, {prefix = %q}):Counter(%q):get())
    ]]):format(acl, PREFIX, name))
    assert.are.equal(0, status, err)
    assert.are.equal('42', out)
    assert.is_true(c:delete(name))
  end)

  it('refuses a wrong ACL password with a clear error that does not show it', function()
    assert.is_truthy(redis('ACL', 'SETUSER', 'tunneluser', 'on', '>pw', '~*',
                           '&*', '+@all'):match('OK'))
    finally(function() redis('ACL', 'DELUSER', 'tunneluser') end)
    local ok, err = pcall(tunnel.Cluster,
                          url:gsub('^redis://', 'redis://tunneluser:hunter2@'),
                          {timeout = 2})
    assert.is_false(ok)
    assert.is_truthy(err:match('^tunnel%.Cluster: redis 127%.0%.0%.1:' .. port ..
                               ': AUTH: WRONGPASS'), err)
    assert.is_nil(err:find('hunter2', 1, true))
    ok, err = pcall(tunnel.Cluster,
                    url:gsub('^redis://', 'redis://nosuchuser:pw@'), {timeout = 2})
    assert.is_false(ok)
    assert.is_truthy(err:match('AUTH: WRONGPASS'), err)
  end)

  it('raises clear errors for malformed URLs, without the password', function()
    local cases = {
      {'http://x', 'must start with redis:// or unix://'},
      {'redis://h:99999/0', 'not a redis://%[%[user%]:password@%]host%[:port%]%[/db%] URL'},
      {'unix://relative.sock', 'not a unix://%[%[user%]:password@%]/path/to/redis.sock%[%?db=N%] URL'},
      {'unix:///r.sock?db=x', 'not a unix://'},
      {'unix://:hunter2@/r.sock?password=hunter2', 'not a unix://'},
      {'redis://:hunter2%zz@h', 'bad percent%-escape in the user or password'},
    }
    for _, case in ipairs(cases) do
      local ok, err = pcall(tunnel.Cluster, case[1])
      assert.is_false(ok)
      assert.is_truthy(err:match('^tunnel%.Cluster: .*' .. case[2]), err)
      assert.is_nil(err:find('hunter2', 1, true), err)
    end
  end)

  it_socket('reaches the server over a Unix socket: unix:///path?db=N', function()
    local c = tunnel.Cluster('unix://' .. sock .. '?db=0', {prefix = PREFIX})
    assert.are.equal('unix://' .. sock .. '?db=0', c.url)
    assert.are.equal('tunnel.Cluster: unix://' .. sock .. '?db=0 (prefix ' ..
                     PREFIX .. ')', tostring(c))
    local name, vname = C.fresh('sock'), C.fresh('sock-v')
    -- The same server and database as the TCP URL.
    c:Counter(name, 1):increase()
    assert.are.equal(2, C.cluster:Counter(name):get())
    -- Another database is another namespace.
    local db1 = tunnel.Cluster('unix://' .. sock .. '?db=1', {prefix = PREFIX})
    assert.is_false(db1:exists(name))
    -- A value names its objects by the socket URL; another process that
    -- reads it reaches them over the socket, and so do block threads.
    local v = c:Vector(vname)
    v:pushBack({k = c:Counter(name)})
    local status, out, err = spawn(([[
      local tunnel = require('tunnel')
      local c = tunnel.Cluster(%q, {prefix = %q})
      local t = c:Vector(%q):popFront(5)
      local b = tunnel.Block(1)
      b:add(t.k)
      b:run(function(k) return k:increase() end)
      io.write(b:synchronize(30)[1][1])
    ]]):format('unix://' .. sock .. '?db=0', PREFIX, vname))
    assert.are.equal(0, status, err)
    assert.are.equal('3', out)
    assert.is_true(c:delete(name))
    assert.is_false(C.cluster:exists(name))
    c:delete(vname)
  end)

  it_socket('logs in as an ACL user over a Unix socket', function()
    assert.is_truthy(redis('ACL', 'SETUSER', 'tunneluser', 'on', '>p@w', '~*',
                           '&*', '+@all'):match('OK'))
    finally(function() redis('ACL', 'DELUSER', 'tunneluser') end)
    local c = tunnel.Cluster('unix://tunneluser:p%40w@' .. sock .. '?db=0',
                             {prefix = PREFIX})
    assert.are.equal('unix://' .. sock .. '?db=0', c.url)
    local name = C.fresh('sock-acl')
    assert.are.equal(7, c:Counter(name, 7):get())
    local ok, err = pcall(tunnel.Cluster,
                          'unix://tunneluser:wrong@' .. sock, {timeout = 2})
    assert.is_false(ok)
    assert.is_truthy(err:match('^tunnel%.Cluster: redis ' .. sock:gsub('%p', '%%%0') ..
                               ': AUTH: WRONGPASS'), err)
    assert.is_nil(err:find('wrong', 1, true), err)
    c:delete(name)
  end)

  it_socket('lets `tunnel logs` follow a Printer over a Unix socket', function()
    local bin = os.getenv('TUNNEL_BIN')
    assert.is_truthy(bin, 'TUNNEL_BIN (the tunnel command) must be set')
    local name = C.fresh('sock-printer')
    printed(name, 'over the socket')
    local _, out, errs = run(("timeout 2 %s logs 'unix://%s' %s --prefix %s --from-start")
      :format(bin, sock, name, PREFIX))
    assert.are.equal('over the socket\n', out, errs)
    C.cluster:delete(name)
  end)
end)
