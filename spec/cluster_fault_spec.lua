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

local function kill_server(signal)
  local pid = server_pid()
  assert(pid, 'no redis.pid')
  sh('kill -' .. (signal or 'KILL') .. ' ' .. pid)
  if (signal or 'KILL') == 'KILL' then
    -- Wait until the port is free.
    for _ = 1, 50 do
      if not sh('redis-cli -p ' .. port .. ' ping >/dev/null 2>&1') then break end
      tunnel.sleep(0.05)
    end
    os.remove(dir .. '/redis.pid')
  end
end

local function start_server()
  assert(sh('redis-server ' .. dir .. '/redis.conf'))
  for _ = 1, 100 do
    if sh('redis-cli -p ' .. port .. ' ping >/dev/null 2>&1') then return end
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
    if not sh('redis-cli -p ' .. port .. ' ping >/dev/null 2>&1') then
      start_server()
    end
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
    kill_server('STOP')
    local t0 = tunnel.clock()
    local ok, err = pcall(v.pushBack, v, 2)
    local dt = tunnel.clock() - t0
    assert.is_false(ok)
    assert.is_truthy(err:match('^tunnel%.Vector:pushBack: redis 127%.0%.0%.1:' .. port .. ': vector%.push .*: timed out'), err)
    assert.is_true(dt >= 0.9 and dt < 4, 'took ' .. dt)
    ok, err = pcall(k.increase, k)
    assert.is_false(ok)
    assert.is_truthy(err:match('^tunnel%.Counter:increase: redis .*INCRBY'), err)
    kill_server('CONT')
    kill_server('KILL')
    start_server()
    -- The data went with the server (no persistence here); the objects work.
    assert.is_true(v:pushBack(3))
    assert.are.same({3, true}, {v:popFront(1)})
    assert.are.equal(1, k:increase())
  end)
end)
