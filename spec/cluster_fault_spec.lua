-- tunnel.Cluster when the server fails: killed while a thread waits in
-- popFront, unreachable, stopped while a push is in flight; then restarted.
-- Each call raises a clear error (naming the server and the operation)
-- within its timeout, the process survives, and the same objects work
-- again once the server is back. Needs scripts/with-redis.sh (it exports
-- TUNNEL_REDIS_DIR, where the server's config and pid file are).
local tunnel = require('tunnel')

local url = os.getenv('TUNNEL_REDIS_URL')
local dir = os.getenv('TUNNEL_REDIS_DIR')
local port = os.getenv('TUNNEL_REDIS_PORT')
local describe_faults = (url and dir and port) and describe or pending

local function sh(cmd)
  local ok = os.execute(cmd)
  return ok == true or ok == 0
end

local function server_pid()
  local f = io.open(dir .. '/redis.pid')
  local pid = f and f:read('*l')
  if f then f:close() end
  return pid
end

-- redis-cli never gives up on a stopped server: always bounded.
local function ping()
  return sh('timeout 2 redis-cli -p ' .. port .. ' ping >/dev/null 2>&1')
end

-- In the background: after `after` s, stop the server for `secs` s.
local function stall_later(after, secs)
  local pid = server_pid()
  assert(pid, 'no redis.pid')
  assert(sh(('(sleep %s; kill -STOP %s; sleep %s; kill -CONT %s) >/dev/null 2>&1 &')
    :format(after, pid, secs, pid)))
end

local function kill_server(signal)
  local pid = server_pid()
  assert(pid, 'no redis.pid')
  sh('kill -' .. (signal or 'KILL') .. ' ' .. pid)
  if (signal or 'KILL') == 'KILL' then
    -- Wait until the port is free.
    for _ = 1, 50 do
      if not ping() then break end
      tunnel.sleep(0.05)
    end
    os.remove(dir .. '/redis.pid')
  end
end

local function start_server()
  assert(sh('redis-server ' .. dir .. '/redis.conf'))
  for _ = 1, 100 do
    if ping() then return end
    tunnel.sleep(0.05)
  end
  error('redis-server did not come back')
end

describe_faults('tunnel.Cluster faults', function()
  local c, serial = nil, 0
  local run = dofile('spec/support/unique.lua')()
  local function name(what)
    serial = serial + 1
    return ('%s-%s-%d'):format(what, run, serial)
  end

  setup(function()
    c = tunnel.Cluster(url, {prefix = 'tunnel-fault:', timeout = 1})
  end)

  teardown(function()
    -- Leave a server running for the specs that follow.
    if server_pid() then kill_server('CONT') end
    if not ping() then start_server() end
  end)

  it('a thread waiting in popFront gets a clear error when the server is killed; the same vector works after a restart', function()
    local v = c:Vector(name('wait'))
    local b = tunnel.Block(1)
    b:add(v)
    b:run(function(q)
      local t0 = tunnel.clock()
      local ok, err = pcall(q.popFront, q, 30)
      return ok, tostring(err), tunnel.clock() - t0
    end)
    tunnel.sleep(0.5) -- let it block in the server
    local t0 = tunnel.clock()
    kill_server('KILL')
    local r = b:synchronize(10)
    b:terminate()
    assert.is_false(r[1][1])
    assert.is_truthy(r[1][2]:match('^tunnel%.Vector:popFront: redis 127%.0%.0%.1:' .. port .. ': '), r[1][2])
    assert.is_true(tunnel.clock() - t0 < 5)
    -- Down: refused at once, the process survives.
    local ok, err = pcall(v.pushBack, v, 1)
    assert.is_false(ok)
    assert.is_truthy(err:match('redis 127%.0%.0%.1:' .. port), err)
    assert.is_truthy(err:match('[Cc]onnection refused'), err)
    start_server()
    assert.is_true(v:pushBack('again'))
    assert.are.same({'again', true}, {v:popFront(1)})
  end)

  it('a push in flight to a stalled server raises within the timeout; after a restart it works again', function()
    local v = c:Vector(name('stall'))
    local k = c:Counter(name('stall-k'), 0)
    assert.is_true(v:pushBack(1))
    finally(function() kill_server('CONT') end)
    kill_server('STOP')
    local t0 = tunnel.clock()
    local ok, err = pcall(v.pushBack, v, 2)
    local dt = tunnel.clock() - t0
    assert.is_false(ok)
    assert.is_truthy(err:match('^tunnel%.Vector:pushBack: redis 127%.0%.0%.1:' .. port .. ': vector%.push .*: timed out'), err)
    assert.is_true(dt >= 0.9 and dt < 4, 'took ' .. dt)
    ok, err = pcall(k.increase, k)
    assert.is_false(ok)
    assert.is_truthy(err:match('^tunnel%.Counter:increase: redis .*counter%.add .*timed out'), err)
    kill_server('CONT')
    kill_server('KILL')
    start_server()
    -- The data went with the server (no persistence here); the objects work.
    assert.is_true(v:pushBack(3))
    assert.are.same({3, true}, {v:popFront(1)})
    assert.are.equal(1, k:increase())
  end)

  -- Issue 11, finding 5: a call that reported a timeout must not take
  -- effect when the stalled server resumes and runs what it had queued.
  it('a pop, an increase and a lock attempt that timed out against a stalled server change nothing when it resumes', function()
    local v = c:Vector(name('late-v'))
    local k = c:Counter(name('late-k'), 0)
    local a = c:Atomic(name('late-a'), {n = 0})
    -- Load the scripts first: a SCRIPT LOAD that times out sends nothing.
    v:pushBack('a')
    v:pushBack('b')
    assert.are.equal('a', v:popFront(0))
    assert.are.equal(1, k:increase())
    a:write(function(d) d.n = 1 end)
    finally(function() kill_server('CONT') end)
    kill_server('STOP')
    local t0 = tunnel.clock()
    local ok, err = pcall(v.popFront, v)
    assert.is_false(ok)
    assert.is_truthy(err:match('^tunnel%.Vector:popFront: redis .*timed out'), err)
    ok, err = pcall(k.increase, k)
    assert.is_false(ok)
    assert.is_truthy(err:match('^tunnel%.Counter:increase: redis .*timed out'), err)
    ok, err = pcall(a.write, a, function(d) d.n = 2 end)
    assert.is_false(ok)
    assert.is_truthy(err:match('^tunnel%.Atomic:write: redis .*timed out'), err)
    local dt = tunnel.clock() - t0
    assert.is_true(dt < 10, 'took ' .. dt)
    kill_server('CONT')
    tunnel.sleep(0.5) -- the server runs the commands it had read
    assert.are.equal(1, #v)
    assert.are.same({'b', true}, {v:popFront(0)})
    assert.are.equal(1, k:get())
    -- Nobody holds the lock: a late lock script would hold it 10 s.
    t0 = tunnel.clock()
    a:write(function(d) d.n = d.n + 10 end)
    dt = tunnel.clock() - t0
    assert.is_true(dt < 3, 'the lock was held for ' .. dt .. ' s')
    assert.are.equal(11, a.data.n)
  end)

  -- Issue 11, finding 9: a finite default timeout, and each call's own
  -- bound honoured when the server stalls.
  it('without a timeout option, popFront(0.5) against a stalled server returns within 3 s, not when the server resumes', function()
    local c0 = tunnel.Cluster(url, {prefix = 'tunnel-fault:'})
    assert.are.equal(5, c0.timeout)
    local v = c0:Vector(name('default'))
    assert.are.same({nil, nil}, {v:popFront(0)})
    finally(function() kill_server('CONT') end)
    stall_later(0, 4)
    tunnel.sleep(0.2)
    local t0 = tunnel.clock()
    pcall(v.popFront, v, 0.5)
    local dt = tunnel.clock() - t0
    assert.is_true(dt < 3, 'took ' .. dt)
    kill_server('CONT')
  end)

  it('a popFront(0.5) whose server stalls during its wait fails within its bound, not after timeout + block + 1', function()
    local v = c:Vector(name('bound'))
    assert.are.same({nil, nil}, {v:popFront(0)})
    finally(function() kill_server('CONT') end)
    stall_later(0.2, 3) -- while the pop waits in the server
    local t0 = tunnel.clock()
    pcall(v.popFront, v, 0.5)
    local dt = tunnel.clock() - t0
    assert.is_true(dt < 2.2, 'took ' .. dt)
    kill_server('CONT')
    tunnel.sleep(3) -- let the background stall end before the next spec
  end)
end)
