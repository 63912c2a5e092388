-- workers_bench.lua - distributed blocks against the in-process Block, in
-- the protocol of lua_bench.lua (bench/run.lua runs it on each flavour;
-- docs/performance.md):
--
--   lua bench/workers_bench.lua list      the case names, one a line
--   lua bench/workers_bench.lua <case>    a warm-up, then BENCH_REPEAT lines:
--     result <TAB> case <TAB> items <TAB> seconds <TAB> ok|FAIL:why
--   or one line: skip <TAB> case <TAB> why
--
-- Cases:
--   block.roundtrip          an in-process tunnel.Block(1): run an empty job,
--                            synchronize; items = round trips
--   cluster.block.roundtrip  the same on a one-slot cluster:Block served by
--                            one `tunnel worker` (started here) on the
--                            server of TUNNEL_REDIS_URL
--   cluster.block.4s2w       throughput of small jobs: runs of an empty job
--                            on 4 slots served by 2 workers of 2 threads,
--                            then one synchronize; items = jobs
-- The cluster cases need TUNNEL_REDIS_URL, the build directory
-- (TUNNEL_BENCH_BUILD, with its `tunnel` and this Lua's worker) and
-- TUNNEL_BENCH_LUA; they skip otherwise. Each checks every status it reads.
-- The round-trip cases report N times the median round trip (so "per item"
-- is the median); the throughput case the wall time of all its jobs.

local QUICK = (os.getenv('BENCH_QUICK') or '') ~= '' and
              os.getenv('BENCH_QUICK') ~= '0'
local REPEAT = tonumber(os.getenv('BENCH_REPEAT') or '') or (QUICK and 3 or 5)
local ROUNDTRIPS = QUICK and 50 or 2000
local RUNS = QUICK and 50 or 1000

local order = {'block.roundtrip', 'cluster.block.roundtrip', 'cluster.block.4s2w'}
local name = arg[1]
if name == nil or name == 'list' then
  for _, n in ipairs(order) do print(n) end
  return
end

local tunnel = require('tunnel') -- (after `list`, which runs without it)

local function skip(why)
  print(('skip\t%s\t%s'):format(name, why))
  os.exit(0)
end

local function report(items, seconds, why)
  print(('result\t%s\t%d\t%.9f\t%s'):format(name, items, seconds,
    why and ('FAIL:' .. why:gsub('[\t\n]', ' ')) or 'ok'))
  io.stdout:flush()
  return why == nil
end

-- Every status of the last run true, or why not.
local function all_true(block)
  local result, status = block:synchronize()
  for i = 1, #block do
    if status[i] ~= true then
      return ('slot %d: %s %s'):format(i, tostring(status[i]),
        tostring(result[i] and result[i][1]))
    end
  end
end

local function empty() end

-- n round trips (run, then synchronize): n times the median one, in
-- seconds. The median, not the mean: on a busy machine a few round trips
-- wait for the scheduler for milliseconds, and the target is the median.
local function roundtrips(block, n)
  local times = {}
  for i = 1, n do
    local t0 = tunnel.clock()
    block:run(empty)
    block:synchronize()
    times[i] = tunnel.clock() - t0
  end
  table.sort(times)
  local m = n % 2 == 1 and times[(n + 1) / 2] or
            (times[n / 2] + times[n / 2 + 1]) / 2
  return m * n
end

if name == 'block.roundtrip' then
  local b = tunnel.Block(1)
  roundtrips(b, math.floor(ROUNDTRIPS / 10) + 1) -- warm-up
  for _ = 1, REPEAT do
    local s = roundtrips(b, ROUNDTRIPS)
    if not report(ROUNDTRIPS, s, all_true(b)) then os.exit(1) end
  end
  b:terminate()
  return
end

if name ~= 'cluster.block.roundtrip' and name ~= 'cluster.block.4s2w' then
  io.stderr:write('workers_bench: no case ' .. name .. '\n')
  os.exit(2)
end

local url = os.getenv('TUNNEL_REDIS_URL') or ''
local build = os.getenv('TUNNEL_BENCH_BUILD') or ''
local lua = os.getenv('TUNNEL_BENCH_LUA') or ''
if url == '' then skip('TUNNEL_REDIS_URL is not set (scripts/with-redis.sh make bench)') end
if build == '' or lua == '' then skip('TUNNEL_BENCH_BUILD or TUNNEL_BENCH_LUA not set (bench/run.lua sets them)') end
local f = io.open(build .. '/' .. lua .. '/tunnel-worker')
if not f then skip('no worker for ' .. lua .. ' in ' .. build .. ' (make bench builds it)') end
f:close()

local function sh(cmd)
  local p = assert(io.popen(cmd))
  local out = p:read('*a')
  p:close()
  return out
end

local rnd = io.open('/dev/urandom', 'rb')
local prefix = ('tunnel-bench:wb:%d-%s:'):format(os.time(),
  (rnd:read(6):gsub('.', function(c) return ('%02x'):format(c:byte()) end)))
rnd:close()
local pids = {}
local function worker(threads)
  local out = sh(('env -u TUNNEL_SECRET timeout -k 5 900 %s/tunnel worker --lua %s --prefix %s -t %d %s'
    .. ' >/dev/null 2>&1 & echo $!'):format(build, lua, prefix, threads, url))
  pids[#pids + 1] = assert(tonumber(out:match('%d+')))
end
local function stop()
  for _, pid in ipairs(pids) do sh(('kill -TERM %d 2>/dev/null'):format(pid)) end
end

local cluster = tunnel.Cluster(url, {prefix = prefix})
local ok, err = pcall(function()
  if name == 'cluster.block.roundtrip' then
    worker(1)
    local b = cluster:Block('roundtrip', 1)
    roundtrips(b, math.floor(ROUNDTRIPS / 10) + 1) -- warm-up: the worker starts, claims
    for _ = 1, REPEAT do
      local s = roundtrips(b, ROUNDTRIPS)
      if not report(ROUNDTRIPS, s, all_true(b)) then error('failed', 0) end
    end
    b:terminate()
  else
    worker(2)
    worker(2)
    local b = cluster:Block('throughput', 4)
    for _ = 1, 20 do b:run(empty) end -- warm-up: both workers, every slot
    b:synchronize()
    for _ = 1, REPEAT do
      local t0 = tunnel.clock()
      for _ = 1, RUNS do b:run(empty) end
      local why = all_true(b)
      local s = tunnel.clock() - t0
      if not report(RUNS * 4, s, why) then error('failed', 0) end
    end
    b:terminate()
  end
end)
stop()
if not ok then
  if err ~= 'failed' then report(0, 0, tostring(err)) end
  os.exit(1)
end
