-- luacheck: globals counter made
-- (globals the jobs keep in their slot's state, on the workers)
-- Distributed blocks: cluster:Block served by `tunnel worker` processes
-- (docs/workers.md). Needs TUNNEL_REDIS_URL (scripts/with-redis.sh) and
-- TUNNEL_BIN (make spec builds the command and this Lua's worker). Every
-- test has a key prefix of its own, so the workers it starts serve its
-- blocks only; workers are killed when the test ends, whatever happens.
local tunnel = require('tunnel')
local unique = dofile('spec/support/unique.lua')
local url = os.getenv('TUNNEL_REDIS_URL')
local bin = os.getenv('TUNNEL_BIN')
local ok_json, json = pcall(require, 'cjson')

local FLAVOUR = jit and 'luajit' or 'lua' .. _VERSION:match('%d+%.%d+')
local OTHER = FLAVOUR == 'luajit' and 'lua5.4' or 'luajit'

-- Run a shell command: its output (stderr too) and whether it succeeded
-- (from the shell: LuaJIT's popen close tells nothing). Without a
-- sanitizer runtime the specs' interpreter may have preloaded (the tools
-- run are no code of ours; the workers link their own when built so),
-- unless `preload` (another interpreter of the module under test).
local function sh(cmd, preload)
  local quoted = "'" .. cmd:gsub("'", "'\\''") .. "'"
  local p = assert(io.popen('{ ' .. (preload and '' or 'env -u LD_PRELOAD ') ..
                            'sh -c ' .. quoted .. '; } 2>&1; echo "~rc=$?"'))
  local out = p:read('*a')
  p:close()
  local rc = tonumber(out:match('~rc=(%d+)%s*$'))
  return out:gsub('~rc=%d+%s*$', ''), rc == 0
end

local function exists(path)
  local f = io.open(path)
  if f then f:close() end
  return f ~= nil
end

-- Whether the worker program for `lua` was built beside TUNNEL_BIN.
local function has_worker(lua)
  return bin and exists(bin:gsub('tunnel$', '') .. lua .. '/tunnel-worker')
end

-- Without a server, the command, this Lua's worker or cjson: pending.
local ready = url and url ~= '' and bin and ok_json and has_worker(FLAVOUR)
local describe_workers = ready and describe or pending

local function wait_until(what, secs, f)
  local deadline = tunnel.clock() + secs
  while true do
    local v = f()
    if v then return v end
    assert(tunnel.clock() < deadline, 'timed out waiting until ' .. what)
    tunnel.sleep(0.05)
  end
end

-- Whether process `pid` runs (a zombie does not: an orphan's waits for a
-- reaper that may be slow).
local function alive(pid)
  local f = io.open('/proc/' .. math.floor(pid) .. '/stat')
  if not f then return false end
  local stat = f:read('*a')
  f:close()
  return stat:match('%) (%a)') ~= 'Z'
end

-- A fleet: a prefix, its cluster, and the workers started on it.
local function fleet(options)
  options = options or {}
  local prefix = 'tunnel-spec-w-' .. unique() .. ':'
  local f = {prefix = prefix, workers = {},
             cluster = tunnel.Cluster(url, {prefix = prefix, timeout = 5,
                                            secret = options.secret})}

  -- Start `tunnel worker` (killed after 300 s at the latest). Returns its
  -- record: pid (of its `timeout` wrapper), log (a file).
  function f.start(o)
    o = o or {}
    local log = os.tmpname()
    local env = o.secret and ('TUNNEL_SECRET=%q '):format(o.secret)
                or 'env -u TUNNEL_SECRET '
    local args = ('--lua %s --prefix %s -t %d --idle %s -v %s'):format(
      o.lua or FLAVOUR, prefix, o.threads or 1, o.idle or 1,
      o.args or '')
    local out = sh(('%s %s timeout -k 5 300 %s worker %s %s > %s 2>&1 & echo $!')
      :format(o.netns and ('ip netns exec ' .. o.netns) or '', env, bin,
              args, o.url or url, log))
    local w = {pid = assert(tonumber(out:match('(%d+)')), out), log = log}
    f.workers[#f.workers + 1] = w
    return w
  end

  -- `tunnel status --json` of this prefix, decoded.
  function f.status()
    local out, ok = sh(('%s status --json --prefix %s %s'):format(bin, prefix,
                                                                 options.url or url))
    assert(ok, out)
    return json.decode(out)
  end

  -- Wait until n workers are registered; their status entries.
  function f.registered(n)
    return wait_until(n .. ' workers registered', 15, function()
      local s = f.status()
      local up = {}
      for _, w in ipairs(s.workers) do
        if w.alive then up[#up + 1] = w end
      end
      return #up >= n and up
    end)
  end

  function f.logs()
    local all = {}
    for i, w in ipairs(f.workers) do
      local h = io.open(w.log)
      all[#all + 1] = ('--- worker %d:\n%s'):format(i, h and h:read('*a') or '')
      if h then h:close() end
    end
    return table.concat(all, '\n')
  end

  -- Stop every worker (SIGTERM, then SIGKILL to what is left) and fail if
  -- a sanitizer reported anything in one (a build with SAN=...).
  function f.stop()
    local reports = {}
    for _, w in ipairs(f.workers) do
      sh(('kill -TERM %d'):format(w.pid))
    end
    for _, w in ipairs(f.workers) do
      pcall(wait_until, 'worker ' .. w.pid .. ' stops', 30, function()
        return not alive(w.pid)
      end)
      sh(('pkill -KILL -P %d; kill -KILL %d'):format(w.pid, w.pid))
      local h = io.open(w.log)
      local text = h and h:read('*a') or ''
      if h then h:close() end
      if text:find('Sanitizer') or text:find('runtime error:') then
        reports[#reports + 1] = text
      end
      os.remove(w.log)
    end
    f.workers = {}
    assert(#reports == 0, table.concat(reports, '\n'))
  end

  return f
end

-- The worker process (the child of its `timeout` wrapper).
local function worker_pid(w)
  return assert(tonumber((sh('pgrep -P ' .. w.pid)):match('(%d+)')),
                'no worker process under ' .. w.pid)
end

-- Run `code` in a process of the spec's interpreter (60 s at most): its
-- output, stderr too, and whether it succeeded.
local function run_lua(code)
  local script = os.tmpname()
  local h = assert(io.open(script, 'w'))
  h:write(code)
  h:close()
  local out, ok = sh(('timeout 60 %s %s'):format(
    dofile('spec/support/lua.lua').command, script), true)
  os.remove(script)
  return out, ok
end

describe_workers('cluster:Block', function()
  local f
  before_each(function() f = fleet() end)
  after_each(function() if f then f.stop() end end)

  it('runs a job on every slot of several workers, with results, errors and tracebacks per slot', function()
    f.start({threads = 2})
    f.start({threads = 2})
    f.registered(2)
    local b = f.cluster:Block('jobs', 4, function() counter = 100 end)
    assert.are.equal(4, #b)
    assert.are.equal(4, b.size)
    local id = b:add(10, {x = 2}):run(function(n, t)
      if __threadid == 3 then error('slot three fails') end
      counter = counter + 1
      return __threadid, __blocksize, n * t.x, counter
    end)
    local r, s = b:synchronize(30)
    assert.are.equal(id, select(1, b:run(function() counter = counter + 1 return counter end)) - 1)
    for i = 1, 4 do
      if i == 3 then
        assert.is_false(s[i], f.logs())
        assert.matches('slot three fails', r[i][1])
        assert.matches('stack traceback', r[i].traceback)
      else
        assert.is_true(s[i], f.logs())
        assert.are.same({i, 4, 20, 101, n = 4}, r[i])
      end
    end
    -- a slot's globals persist across its jobs, init ran once
    r, s = b:synchronize(30)
    for i = 1, 4 do
      assert.is_true(s[i], f.logs())
      assert.are.equal(i == 3 and 101 or 102, r[i][1])
    end
    -- every slot was served by one of the two worker processes
    local status = f.status()
    assert.are.equal(2, #status.workers)
    local _, s0 = b:getResult(id)
    assert.are.equal(r, select(1, b:getResult()))
    assert.is_false(s0[3])
    b:terminate()
  end)

  it('moves cluster objects by reference and refuses in-process ones', function()
    f.start({threads = 2})
    local v = f.cluster:Vector('out')
    local b = f.cluster:Block('refs', 2)
    b:add(v)
    assert.has_error(function() b:add(tunnel.Vector()) end,
      'tunnel.Block:add: argument 1 holds an in-process tunnel.Vector: a cluster block\'s jobs run in other processes (use a cluster object)')
    local local_counter = tunnel.Counter()
    assert.has_error(function() b:run(function() return local_counter end) end)
    b:run(function(out) out:pushBack(__threadid) return out end)
    local r, s = b:synchronize(30)
    assert.is_true(s[1], f.logs())
    assert.are.equal(2, v:size())
    assert.are.equal(v, r[1][1])
    -- a job returning an in-process object fails, naming it
    b:run(function() return tunnel.Vector() end)
    r, s = b:synchronize(30)
    assert.is_false(s[1])
    assert.matches('in%-process tunnel.Vector', r[1][1])
    b:terminate()
  end)

  it('checks its arguments and raises after terminate', function()
    local c = f.cluster
    assert.has_error(function() c:Block('', 2) end,
      'tunnel.Cluster:Block: name must be a non-empty string (got string)')
    assert.has_error(function() c:Block('x', 0) end,
      'tunnel.Cluster:Block: size must be between 1 and 4096 (got 0)')
    assert.has_error(function() c:Block('x', 2, 42) end,
      'tunnel.Cluster:Block: init must be a function (got number)')
    assert.has_error(function() c:Block('x', 2, nil, {keep = 0}) end)
    assert.has_error(function() c:Block('x', 2, {ttl = 'long'}) end)
    assert.has_error(function() c:Block('x', 2, {lease = 0.1}) end)
    local b = c:Block('x', 2)
    assert.has_error(function() c:Block('x', 3) end,
      "tunnel.Cluster:Block: the cluster block 'x' exists with 2 slots (not 3): terminate it first")
    assert.are.same({nil, nil}, {b:getResult(7)})
    assert.are.equal(0, b:cancel())
    assert.has_error(function() b:run(42) end,
      'tunnel.Block:run: callback must be a function (got number)')
    assert.has_error(function() b.run(42, function() end) end)
    b:terminate()
    assert.has_error(function() b:run(function() end) end,
      'tunnel.Block:run: block is terminated')
    -- a terminated block's name makes a fresh block, of any size
    local b3 = c:Block('x', 3)
    assert.are.equal(3, #b3)
    b3:terminate()
  end)

  it('reports a worker killed mid-job as lost within the lease, and goes on with the others', function()
    f.start({threads = 2})
    f.start({threads = 2})
    f.registered(2)
    local b = f.cluster:Block('kill', 2, nil, {lease = 2})
    local id = b:run(function()
      if __threadid == 1 then tunnel.sleep(120) end
      return __threadid
    end)
    -- the worker that runs slot 1's job
    local owner = wait_until('slot 1 runs', 15, function()
      local s = f.status()
      for _, blk in ipairs(s.blocks) do
        local slot = blk.slots[1]
        if slot.running == id and slot.worker then return slot.worker end
      end
    end)
    local victim
    for _, w in ipairs(f.status().workers) do
      if w.id == owner then victim = w.pid end
    end
    assert.is_truthy(victim)
    sh(('kill -9 %d'):format(victim))
    local t0 = tunnel.clock()
    local r, s = b:synchronize(30)
    local took = tunnel.clock() - t0
    assert.is_false(s[1], f.logs())
    assert.matches('^worker lost: ' .. owner .. ' %(', r[1][1])
    assert.is_true(s[2])
    assert.are.equal(2, r[2][1])
    assert.is_true(took < 30, 'reported after ' .. took .. ' s')
    -- the block goes on: both slots on the worker left
    b:run(function() return 'after' end)
    r, s = b:synchronize(30)
    assert.is_true(s[1], f.logs())
    assert.is_true(s[2], f.logs())
    assert.are.equal('after', r[1][1])
    -- recent failures name it
    local failures = f.status().failures
    assert.matches('worker lost', failures[1].message)
    b:terminate()
  end)

  it('lets the running job finish on SIGTERM, then stops and unregisters the worker', function()
    local w = f.start({threads = 1})
    f.registered(1)
    local b = f.cluster:Block('term', 1)
    local id = b:run(function() tunnel.sleep(1.5) return 'finished' end)
    wait_until('the job runs', 15, function()
      return f.status().blocks[1].slots[1].running == id
    end)
    local pid = worker_pid(w)
    sh('kill -TERM ' .. pid)
    local r, s = b:synchronize(30)
    assert.is_true(s[1], f.logs())
    assert.are.equal('finished', r[1][1])
    wait_until('the worker exits', 15, function() return not alive(pid) end)
    assert.are.equal(0, #f.status().workers)
    assert.matches('finishing the running jobs', f.logs())
    -- a job queued now waits for a worker, then runs
    b:run(function() return 'later' end)
    assert.is_nil(select(2, b:synchronize(0.3))[1])
    f.start({threads = 1})
    r, s = b:synchronize(30)
    assert.is_true(s[1], f.logs())
    assert.are.equal('later', r[1][1])
    b:terminate()
  end)

  it('cancels a queued and a running remote job', function()
    f.start({threads = 1})
    local b = f.cluster:Block('cancel', 1)
    local running = b:run(function()
      local started = tunnel.clock()
      while tunnel.clock() - started < 60 do tunnel.sleep(0.05) end
      return 'not cancelled'
    end)
    local queued = b:run(function() return 'never runs' end)
    wait_until('the job runs', 15, function()
      return f.status().blocks[1].slots[1].running == running
    end)
    assert.are.equal(1, b:cancel(queued))
    assert.are.equal(1, b:cancel(running))
    local r, s = b:synchronize(30)
    assert.is_false(s[1])
    assert.are.equal('cancelled', r[1][1])
    r, s = b:getResult(running)
    assert.is_false(s[1], f.logs())
    assert.matches('cancelled', r[1][1])
    -- the slot goes on
    b:run(function() return tunnel.cancelled() end)
    r, s = b:synchronize(30)
    assert.is_true(s[1])
    assert.is_false(r[1][1])
    b:terminate()
  end)

  if not jit then
    it('cancels a running job that calls no tunnel function (count hook)', function()
      if os.getenv('TSAN_OPTIONS') then
        -- as in cancel_spec: the worker's SIGURG handler would wait for a
        -- call into ThreadSanitizer's runtime that the loop never makes
        pending('under ThreadSanitizer signal handlers are deferred')
        return
      end
      f.start({threads = 1})
      local b = f.cluster:Block('spin', 1)
      local id = b:run(function() local n = 0 while true do n = n + 1 end end)
      wait_until('the job runs', 15, function()
        return f.status().blocks[1].slots[1].running == id
      end)
      assert.are.equal(1, b:cancel())
      local r, s = b:synchronize(30)
      assert.is_false(s[1])
      assert.matches('cancelled', r[1][1])
      b:terminate()
    end)
  end

  it('lets results expire, and keeps the last runs only', function()
    f.start({threads = 1})
    local b = f.cluster:Block('ttl', 1, nil, {ttl = 1, keep = 2})
    local first = b:run(function() return 1 end)
    b:run(function() return 2 end)
    local r = b:synchronize(30)
    assert.are.equal(2, r[1][1])
    tunnel.sleep(2.2)
    local _, s1, why = b:getResult(first)
    assert.is_nil(s1[1])
    assert.matches('expired', why)
    local third = b:run(function() return 3 end)
    b:synchronize(30)
    local rf, sf, forgotten = b:getResult(first)
    assert.is_nil(rf)
    assert.is_nil(sf)
    assert.matches('forgotten', forgotten)
    assert.are.equal(3, b:getResult(third)[1][1])
    b:terminate()
  end)

  it('reports on stderr, at terminate, a failed job whose status nobody read', function()
    f.start({threads = 1})
    local out, ok = run_lua(([[
      local tunnel = require('tunnel')
      local c = tunnel.Cluster(%q, {prefix = %q})
      local b = c:Block('unread', 1)
      b:run(function() error('nobody looks at me') end)
      b:run(function() return 'fine' end)
      assert(b:synchronize(30)[1][1] == 'fine')
      b:terminate()
      local quiet = c:Block('quiet', 1, {report = false})
      quiet:run(function() error('not reported') end)
      quiet:run(function() end)
      quiet:synchronize(30)
    ]]):format(url, f.prefix))
    assert(ok, out .. f.logs())
    assert.matches("run 1 failed in slot 1 of cluster block 'unread', and nobody read its status", out)
    assert.matches('nobody looks at me', out)
    assert.matches('stack traceback', out)
    assert.not_matches('not reported', out)
  end)

  it('at its collection, cancels the queued jobs no worker can run, and says so', function()
    -- no worker on this prefix: the job would wait for ever; the block's
    -- collection (here at exit) cancels it after five checks, a second
    -- apart
    local out, ok = run_lua(([[
      local tunnel = require('tunnel')
      local c = tunnel.Cluster(%q, {prefix = %q})
      local b = c:Block('orphan', 1)
      b:run(function() return 'never' end)
      b = nil
      collectgarbage()
      collectgarbage()
    ]]):format(url, f.prefix))
    assert(ok, out)
    assert.matches("cluster block 'orphan' at its close: no worker serves it: "
                   .. 'its queued jobs are cancelled', out, 1, true)
    local blk = f.status().blocks[1]
    assert.are.equal('orphan', blk.name)
    assert.are.equal(0, blk.slots[1].queued)
    assert.is_true(blk.terminated)
  end)

  it('shows its workers and queued jobs in `tunnel status`', function()
    f.start({threads = 3, args = '--block elsewhere'})
    local ws = f.registered(1)
    assert.are.equal(3, ws[1].threads)
    local b = f.cluster:Block('queued', 2)
    b:run(function() end)
    b:run(function() end)
    local status = f.status()
    local blk = status.blocks[1]
    assert.are.equal('queued', blk.name)
    assert.are.equal(2, blk.size)
    assert.are.equal(2, blk.slots[1].queued)
    assert.are.equal(2, blk.slots[2].queued)
    local out = sh(('%s status --prefix %s %s'):format(bin, f.prefix, url))
    assert.matches('Workers', out)
    assert.matches(ws[1].id, out)
    assert.matches('queued%s+2%s+2%s+4: 2 2', out)
    b:cancel()
    b:terminate()
  end)

  it('runs the seed example across workers, with the seed\'s output', function()
    f.start({threads = 3})
    f.start({threads = 2})
    f.registered(2)
    local lua = dofile('spec/support/lua.lua').command
    local out, ok = sh(('timeout 60 %s examples/distributed.lua %s %s')
      :format(lua, url, f.prefix), true)
    assert(ok, out .. f.logs())
    -- what every worker printed, as `tunnel logs` shows it
    local logs = sh(('timeout 1 %s logs --from-start --prefix %s %s distributed:printer')
      :format(bin, f.prefix, url))
    local produced, consumed, lines = {}, {}, 0
    for line in logs:gmatch('[^\n]+') do
      local what, product = line:match('^(%a+)\t%d\t%d\t(%d+)$')
      assert(what, 'not a line of the seed example: ' .. line)
      lines = lines + 1
      local t = what == 'produce' and produced or consumed
      t[#t + 1] = tonumber(product)
    end
    assert.are.equal(24, lines, logs)
    table.sort(produced)
    table.sort(consumed)
    assert.are.same({1001, 1002, 1003, 1004, 1005, 1006,
                     2001, 2002, 2003, 2004, 2005, 2006}, produced)
    assert.are.same(produced, consumed)
  end)

  describe('signed', function()
    local SECRET = 'a secret of the fleet ' .. unique()

    it('runs a signed job on a worker with the same secret', function()
      f = fleet({secret = SECRET})
      f.start({secret = SECRET})
      local b = f.cluster:Block('signed', 1, function() made = 'by init' end)
      b:run(function() return made end)
      local r, s = b:synchronize(30)
      assert.is_true(s[1], f.logs())
      assert.are.equal('by init', r[1][1])
      b:terminate()
    end)

    it('is refused by a worker with another secret or none, and refuses unsigned jobs', function()
      f = fleet({secret = SECRET})
      f.start({secret = 'another secret entirely'})
      local b = f.cluster:Block('other', 1)
      b:run(function() return 'ran' end)
      local r, s = b:synchronize(30)
      assert.is_false(s[1], f.logs())
      assert.matches('^refused: bad signature', r[1][1])
      f.stop()
      f.start({})
      b:run(function() return 'ran' end)
      r, s = b:synchronize(30)
      assert.is_false(s[1], f.logs())
      assert.matches('^refused: the job is signed', r[1][1])
      b:terminate()
      -- an unsigned cluster's job, a worker with a secret
      local g = fleet()
      finally(g.stop)
      g.start({secret = SECRET})
      local u = g.cluster:Block('unsigned', 1)
      u:run(function() return 'ran' end)
      r, s = u:synchronize(30)
      assert.is_false(s[1], g.logs())
      assert.matches('^refused: unsigned job', r[1][1])
      u:terminate()
    end)

    it('refuses secrets shorter than 16 bytes', function()
      assert.has_error(function() tunnel.Cluster(url, {secret = 'short'}) end,
        'tunnel.Cluster: secret must be 16 to 256 bytes (got 5)')
    end)
  end)

  it('has a job of another Lua flavour refused, naming both', function()
    if not has_worker(OTHER) then
      pending('no ' .. OTHER .. ' worker built beside ' .. bin .. ' (make LUA=' .. OTHER .. ')')
      return
    end
    f.start({lua = OTHER})
    local b = f.cluster:Block('flavour', 1)
    b:run(function() return 'ran' end)
    local r, s = b:synchronize(30)
    assert.is_false(s[1], f.logs())
    local runtime = (jit and 'LuaJIT 2.1' or _VERSION) .. ', codec '
    assert.matches('^refused: the job needs ' .. runtime:gsub('%p', '%%%0'), r[1][1])
    b:terminate()
  end)

  it('reaches Redis from a worker in another network namespace (a veth pair)', function()
    local id = unique():sub(1, 6)
    local ns = 'tn-' .. id
    local out, ok = sh('ip netns add ' .. ns)
    if not ok then
      pending('needs root and ip netns: ' .. out)
      return
    end
    local net = 10 + tonumber(id:sub(1, 2), 16) % 200
    local host_ip, ns_ip = ('10.213.%d.1'):format(net), ('10.213.%d.2'):format(net)
    local dir = os.tmpname()
    os.remove(dir)
    -- busted keeps one finally per test (a second call replaces the
    -- first): this one stops the workers (once there are), then the
    -- server and the namespace.
    local g
    finally(function()
      if g then g.stop() end
      sh(('kill $(cat %s/redis.pid); ip link del vh-%s; ip netns del %s; rm -rf %s')
        :format(dir, id, ns, dir))
    end)
    for _, cmd in ipairs({
      ('ip link add vh-%s type veth peer name vn-%s'):format(id, id),
      ('ip link set vn-%s netns %s'):format(id, ns),
      ('ip addr add %s/30 dev vh-%s'):format(host_ip, id),
      ('ip link set vh-%s up'):format(id),
      ('ip netns exec %s ip addr add %s/30 dev vn-%s'):format(ns, ns_ip, id),
      ('ip netns exec %s ip link set vn-%s up'):format(ns, id),
      ('ip netns exec %s ip link set lo up'):format(ns),
    }) do
      out, ok = sh(cmd)
      assert(ok, cmd .. ': ' .. out)
    end
    -- a server of its own on the host's end of the pair, with a password
    -- (as a server other hosts reach must have)
    local port = 20000 + tonumber(id:sub(3, 6), 16) % 40000
    local password = unique()
    out, ok = sh(('mkdir -p %s && redis-server --port %d --bind %s --save "" '
      .. '--appendonly no --daemonize yes --dir %s --pidfile %s/redis.pid '
      .. '--requirepass %s'):format(dir, port, host_ip, dir, dir, password))
    assert(ok, out)
    local far = ('redis://:%s@%s:%d/0'):format(password, host_ip, port)
    wait_until('the server answers', 10, function()
      return (sh(('redis-cli --no-auth-warning -a %s -h %s -p %d ping')
        :format(password, host_ip, port))):match('PONG')
    end)
    g = fleet({url = far})
    g.cluster = tunnel.Cluster(far, {prefix = g.prefix, timeout = 5})
    g.start({netns = ns, url = far})
    local b = g.cluster:Block('far', 1)
    b:run(function()
      local h = io.popen('ip -o -4 addr show')
      local addrs = h:read('*a')
      h:close()
      return addrs
    end)
    local r, s = b:synchronize(30)
    assert.is_true(s[1], g.logs())
    assert.matches(ns_ip, r[1][1])
    b:terminate()
  end)
end)
