-- run.lua - the benchmark driver behind `make bench` (bench/bench.mk).
--
--   lua5.4 bench/run.lua --build DIR [--luas "lua5.4 luajit"]
--                        [--json bench/results.json] [--only PAT[,PAT...]]
--                        [--markdown FILE]   (also the tables in Markdown,
--                                             for docs/performance.md)
--
-- Runs every case of DIR/bench/core_bench, DIR/bench/naive_queue and
-- DIR/bench/spsc_ring (the C baselines, flavour "c"), of bench/redis_bench.lua (redis-benchmark against
-- the server of TUNNEL_REDIS_URL, flavour "redis": the baselines of the
-- cluster cases) and of bench/lua_bench.lua on each Lua flavour,
-- one process per case and repetition (so a crash costs one case, not the
-- run), in rounds (see below), then prints a table, the targets of issue 4
-- with "meets"/"misses", and writes the JSON records. Environment: BENCH_REPEAT (repetitions, default 5;
-- 3 with BENCH_QUICK), BENCH_QUICK=1 (few items: a smoke run), both passed
-- through to the cases; BENCH_LOAD=N runs N busy loops (sh) beside the
-- whole run, to measure on a loaded machine.
--
-- Beside wall time every case reports the CPU time its process used
-- (cpu=, every thread: getrusage in C, os.clock in Lua): the table shows
-- CPU seconds per item and the cores kept busy (CPU / wall), and for every
-- hand-off its distance to the limit (the lock-free ring of spsc_ring.c
-- on the same topology and capacity: how many times its time per item).
--
-- BENCH_WAS=TREE (a checkout of an earlier commit, built with the same
-- --build directory name, e.g. `git worktree add /tmp/was ade3277` and
-- `make -C /tmp/was B=build-bench bench-build`): the cases matching
-- BENCH_WAS_ONLY (Lua patterns, default the 1P/1C integer hand-off) also
-- run from that tree, flavour "<lua>-was", in the same rounds: the "was"
-- of issue 17's target ">= 1.5x today's rate", measured side by side.
--
-- A case never fails on a time. The exit status is 1 when a case computed
-- a wrong result, raised an error, crashed or hung; skipped cases (a class
-- not built yet, no TUNNEL_REDIS_URL for the cluster cases) do not count.

local build, luas, json_path, only, md_path = 'build', {'lua5.4', 'luajit'},
  'bench/results.json', nil, nil
do
  local i = 1
  while arg[i] do
    local a, v = arg[i], arg[i + 1]
    if a == '--build' then build = v
    elseif a == '--luas' then
      luas = {}
      for l in v:gmatch('%S+') do luas[#luas + 1] = l end
    elseif a == '--json' then json_path = v
    elseif a == '--only' then only = v ~= '' and v or nil
    elseif a == '--markdown' then md_path = v ~= '' and v or nil
    else
      io.stderr:write('run.lua: unknown argument ' .. a .. '\n')
      os.exit(2)
    end
    i = i + 2
  end
end

local QUICK = (os.getenv('BENCH_QUICK') or '') ~= '' and
              os.getenv('BENCH_QUICK') ~= '0'
local REPEAT = tonumber(os.getenv('BENCH_REPEAT') or '') or (QUICK and 3 or 5)
local LOAD = math.floor(tonumber(os.getenv('BENCH_LOAD') or '') or 0)
local CASE_TIMEOUT = QUICK and 60 or 300

local function sh_quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local function capture(cmd)
  local p = assert(io.popen(cmd))
  local out = p:read('a')
  local ok, how, code = p:close()
  return out, ok, how, code
end

-- ---- the cases ------------------------------------------------------------------

-- Each runnable: {name, lua, cmd}
local runs = {}
local function add_c(prog, prefix)
  local path = build .. '/bench/' .. prog
  local out, ok = capture(sh_quote(path) .. ' list 2>/dev/null')
  if not ok then
    io.stderr:write(('run.lua: %s is not built (make bench builds it)\n'):format(path))
    os.exit(2)
  end
  for name in out:gmatch('[^\n]+') do
    runs[#runs + 1] = {name = prefix .. name, lua = 'c',
                       cmd = sh_quote(path) .. ' ' .. sh_quote(name)}
  end
end
add_c('core_bench', 'core.')
add_c('naive_queue', 'naive.')
add_c('spsc_ring', 'ring.') -- the limit: a lock-free single-producer ring
add_c('array_bench', 'core.') -- tunnel.Array's kernels and their C baselines

local lua_names = {}
do
  local out = capture('lua5.4 bench/lua_bench.lua list')
  for name in out:gmatch('[^\n]+') do lua_names[#lua_names + 1] = name end
end
-- The raw Redis baselines of the cluster cases (flavour "redis"): they and
-- the cluster cases skip themselves unless TUNNEL_REDIS_URL is set.
do
  local out = capture('lua5.4 bench/redis_bench.lua list')
  for name in out:gmatch('[^\n]+') do
    runs[#runs + 1] = {name = name, lua = 'redis',
                       cmd = 'lua5.4 bench/redis_bench.lua ' .. sh_quote(name)}
  end
end
for _, lua in ipairs(luas) do
  local env = ('env LUA_PATH=%s LUA_CPATH=%s '):format(
    sh_quote('lua/?.lua;lua/?/init.lua;;'),
    sh_quote(build .. '/' .. lua .. '/?.so;;'))
  for _, name in ipairs(lua_names) do
    runs[#runs + 1] = {name = name, lua = lua,
                       cmd = env .. lua .. ' bench/lua_bench.lua ' .. name}
  end
end

-- The earlier tree of BENCH_WAS: its own lua_bench.lua and module.
local WAS = os.getenv('BENCH_WAS') or ''
if WAS ~= '' then
  local was_only = os.getenv('BENCH_WAS_ONLY') or ''
  if was_only == '' then was_only = '^vector%.int%.1p1c%.unbounded$' end
  for _, lua in ipairs(luas) do
    local env = ('env LUA_PATH=%s LUA_CPATH=%s '):format(
      sh_quote('lua/?.lua;lua/?/init.lua;;'),
      sh_quote(build .. '/' .. lua .. '/?.so;;'))
    for _, name in ipairs(lua_names) do
      local wanted = false
      for pat in was_only:gmatch('[^,]+') do
        wanted = wanted or name:find(pat) ~= nil
      end
      if wanted then
        runs[#runs + 1] = {name = name, lua = lua .. '-was',
                           cmd = 'sh -c ' .. sh_quote('cd ' .. sh_quote(WAS) ..
                             ' && exec ' .. env .. lua .. ' bench/lua_bench.lua ' .. name)}
      end
    end
  end
end

-- The tunnel.Array cases from Lua (bench/array_bench.lua), on each flavour.
do
  local out = capture('lua5.4 bench/array_bench.lua list')
  for _, lua in ipairs(luas) do
    local env = ('env LUA_PATH=%s LUA_CPATH=%s TUNNEL_BENCH_LUA=%s '):format(
      sh_quote('lua/?.lua;lua/?/init.lua;;'),
      sh_quote(build .. '/' .. lua .. '/?.so;;'), sh_quote(lua))
    for name in out:gmatch('[^\n]+') do
      runs[#runs + 1] = {name = name, lua = lua,
                         cmd = env .. lua .. ' bench/array_bench.lua ' .. name}
    end
  end
end

-- Distributed blocks (bench/workers_bench.lua), on each flavour: it starts
-- its own workers with this build's `tunnel` (cluster cases: with
-- TUNNEL_REDIS_URL only).
do
  local out = capture('lua5.4 bench/workers_bench.lua list')
  for _, lua in ipairs(luas) do
    local env = ('env LUA_PATH=%s LUA_CPATH=%s TUNNEL_BENCH_LUA=%s TUNNEL_BENCH_BUILD=%s '):format(
      sh_quote('lua/?.lua;lua/?/init.lua;;'),
      sh_quote(build .. '/' .. lua .. '/?.so;;'), sh_quote(lua), sh_quote(build))
    for name in out:gmatch('[^\n]+') do
      runs[#runs + 1] = {name = name, lua = lua,
                         cmd = env .. lua .. ' bench/workers_bench.lua ' .. name}
    end
  end
end

-- ---- running them ----------------------------------------------------------------

local function median(xs)
  local s = {}
  for i, x in ipairs(xs) do s[i] = x end
  table.sort(s)
  local n = #s
  if n % 2 == 1 then return s[(n + 1) // 2] end
  return (s[n // 2] + s[n // 2 + 1]) / 2
end

local function loadavg()
  local f = io.open('/proc/loadavg')
  if not f then return nil end
  local l = tonumber(f:read('a'):match('^(%S+)'))
  f:close()
  return l
end

local records, by_key = {}, {}
local failures = 0
local load_start = loadavg()
local errfile = os.tmpname()
local t_start = os.time()

-- Rounds: every case runs once (one process: a warm-up, then one measured
-- repetition) per round, BENCH_REPEAT rounds. Interleaving spreads each
-- case's samples, and its baseline's, over the whole run, so a burst of
-- load from other processes hits them alike and the ratios hold.
local selected = {}
for _, r in ipairs(runs) do
  local wanted = only == nil
  for pat in (only or ''):gmatch('[^,]+') do
    wanted = wanted or (r.name .. ' ' .. r.lua):find(pat) ~= nil
  end
  if wanted then
    local rec = {name = r.name, lua = r.lua, times = {}, cpus = {},
                 status = 'ok', cmd = r.cmd}
    selected[#selected + 1] = rec
    records[#records + 1] = rec
    by_key[rec.name .. '@' .. rec.lua] = rec
  end
end

local function run_once(rec)
  local out, ok, how, code = capture(('BENCH_REPEAT=1 timeout -k 5 %d %s 2>%s')
    :format(CASE_TIMEOUT, rec.cmd, sh_quote(errfile)))
  local got = 0
  for line in out:gmatch('[^\n]+') do
    local f = {}
    for field in (line .. '\t'):gmatch('([^\t]*)\t') do f[#f + 1] = field end
    if f[1] == 'result' then
      got = got + 1
      rec.items = tonumber(f[3])
      rec.times[#rec.times + 1] = tonumber(f[4])
      if f[5] ~= 'ok' then
        rec.status = 'FAIL'
        rec.note = f[5]:gsub('^FAIL:', '')
      end
      for i = 6, #f do
        local k, v = f[i]:match('^(%a+)=([%d.e+-]+)$')
        if k == 'bytes' then rec.bytes = tonumber(v)
        elseif k == 'cpu' then rec.cpus[#rec.cpus + 1] = tonumber(v) end
      end
    elseif f[1] == 'skip' then
      rec.status = 'skip'
      rec.note = f[3]
    end
  end
  if rec.status == 'ok' and (not ok or got == 0) then
    local ef = io.open(errfile)
    local err = ef and ef:read('a') or ''
    if ef then ef:close() end
    rec.status = 'FAIL'
    rec.note = (code == 124 and 'timed out after ' .. CASE_TIMEOUT .. ' s: '
      or ('exited (%s %s): '):format(how, code)) ..
      (err:match('[^\n]*[^\n%s][^\n]*') or 'no output')
  end
end

-- BENCH_LOAD=N: N busy loops beside the whole run (a machine whose cores
-- are all busy), stopped at the end by their process ids.
local loaders = {}
for _ = 1, LOAD do
  local p = io.popen("sh -c 'while :; do :; done' >/dev/null 2>&1 & echo $!")
  loaders[#loaders + 1] = tonumber(p:read('l'))
  p:close()
end

for round = 1, REPEAT do
  io.stderr:write(('round %d/%d '):format(round, REPEAT))
  for _, rec in ipairs(selected) do
    if rec.status == 'ok' then -- a skipped or failed case runs no more
      run_once(rec)
      io.stderr:write(rec.status == 'ok' and '.' or rec.status == 'skip' and
        's' or 'F')
      io.stderr:flush()
    end
  end
  io.stderr:write('\n')
end
for _, pid in ipairs(loaders) do os.execute('kill ' .. pid) end

for _, rec in ipairs(selected) do
  if rec.status == 'FAIL' then
    failures = failures + 1
    io.stderr:write(('FAIL %s %s: %s\n'):format(rec.name, rec.lua,
      rec.note or ''))
  end
  if #rec.times > 0 then
    local t = rec.times
    rec.seconds = median(t)
    if #rec.cpus > 0 then rec.cpu = median(rec.cpus) end
    rec.min, rec.max = math.min(table.unpack(t)), math.max(table.unpack(t))
    rec.items_per_s = rec.seconds > 0 and rec.items / rec.seconds or nil
    if rec.bytes and rec.items_per_s then
      rec.mb_per_s = rec.bytes * rec.items_per_s / 1e6
    end
  end
end
os.remove(errfile)

-- ---- baselines --------------------------------------------------------------------

-- The case each one is divided by (measured in this same run).
local function baseline_of(name, lua)
  if name:match('^vector%.%a+%.pushpop%.1t$') then
    return 'core.deque.pushpop.1t', 'c'
  end
  if name:match('^vector%.%a+20%.1p1c%.unbounded$') then -- strings vs ints
    return 'vector.int.1p1c.unbounded', lua
  end
  local topo, hint = name:match('^vector%.%a+%.(%w+)%.(%w+)$')
  if topo then
    if hint == 'hint4' then return 'naive.' .. topo .. '.hint4', 'c' end
    return 'core.deque.' .. topo .. '.' .. hint, 'c'
  end
  local ctopo, chint = name:match('^core%.deque%.(%dp%dc)%.(%w+)$')
  if ctopo and chint ~= 'unbounded' then
    return 'naive.' .. ctopo .. '.' .. chint, 'c'
  end
  -- Cluster cases against redis-benchmark on the same server: one
  -- connection against one client, the threaded cases against 4 clients;
  -- a 2P/2C item is a push and a pop, so its baseline is the rate of
  -- LPUSH+RPOP pairs (1 / (1/lpush + 1/rpop)).
  local cmap = {
    ['cluster.vector.push.1t'] = 'redis-benchmark lpush c1',
    ['cluster.vector.pop.1t'] = 'redis-benchmark rpop c1',
    ['cluster.vector.2p2c'] = 'redis-benchmark lpush+rpop c4',
    ['cluster.counter.1t'] = 'redis-benchmark incr c1',
    ['cluster.counter.2t'] = 'redis-benchmark incr c4',
  }
  if cmap[name] then return cmap[name], 'redis' end
  -- A distributed job against the in-process Block's (same Lua), and the
  -- throughput of small jobs against one EVAL round trip on the server.
  if name == 'cluster.block.roundtrip' then return 'block.roundtrip', lua end
  if name == 'cluster.block.4s2w' then return 'redis-benchmark eval c1', 'redis' end
  local map = {
    -- issue 15: the priority queue and select against the Vector, batches
    -- of 64 against 64 single pushes and pops
    ['core.pqueue.pushpop.1t'] = 'core.deque.pushpop.1t',
    ['core.pqueue.1p1c'] = 'core.deque.1p1c.unbounded',
    ['core.select2.pushpop.1t'] = 'core.deque.pushpop.1t',
    ['core.select2.1p1c'] = 'core.deque.1p1c.unbounded',
    ['core.batch64.pushpop.1t'] = 'core.single64.pushpop.1t',
    ['core.batch64.1p1c'] = 'core.deque.1p1c.unbounded',
    ['pqueue.int.pushpop.1t'] = 'vector.int.pushpop.1t',
    ['select2.int.pushpop.1t'] = 'vector.int.pushpop.1t',
    ['batch64.int.pushpop.1t'] = 'single64.int.pushpop.1t',
    ['pqueue.int.1p1c'] = 'vector.int.1p1c.unbounded',
    ['select2.int.1p1c'] = 'vector.int.1p1c.unbounded',
    ['batch64.int.1p1c'] = 'vector.int.1p1c.unbounded',
    ['cluster.pqueue.pushpop.1t'] = 'cluster.vector.pushpop.1t',
    ['cluster.select2.pushpop.1t'] = 'cluster.vector.pushpop.1t',
    ['cluster.batch64.pushpop.1t'] = 'cluster.vector.pushpop.1t',
    -- issue 17: batches of 64 on Redis against single pushes and pops
    ['cluster.batch64.push.1t'] = 'cluster.vector.push.1t',
    ['cluster.batch64.pop.1t'] = 'cluster.vector.pop.1t',
    ['vector.pingpong'] = 'core.pingpong',
    ['core.pingpong'] = 'naive.pingpong',
    ['core.barrier.2t'] = 'core.pthread_barrier.2t',
    ['counter.1t'] = 'core.counter.1t',
    ['counter.2t'] = 'core.counter.2t',
    ['hash.setget.1t'] = 'core.map.setget.1t',
    ['hash.setget.2t'] = 'core.map.setget.2t',
    ['hash.get.2t'] = 'hash.get.1t',
    ['core.map.get.2t'] = 'core.map.get.1t',
    -- shared tables against Hash in the same flavour; 2 readers against 1
    ['table.setget.1t'] = 'hash.setget.1t',
    ['table.setget.2t'] = 'hash.setget.2t',
    ['table.get.1t'] = 'hash.get.1t',
    ['table.get.2t'] = 'table.get.1t',
    ['table.hotkey.1t'] = 'hash.get.1t',
    ['table.hotkey.2t'] = 'table.hotkey.1t',
    ['table.len.1t'] = 'hash.get.1t',
    ['table.pairs.1t'] = 'hash.get.1t',
    ['table.nested.1t'] = 'hash.get.1t',
    ['atomic.write.1t'] = 'core.lock.write.1t',
    ['atomic.read.1t'] = 'core.lock.read.1t',
    ['atomic.write.2t'] = 'core.lock.write.2t',
    ['block.cycle'] = 'core.block.cycle',
    ['block.run'] = 'core.block.run',
    ['codec.serializer'] = 'codec.cjson',
    ['codec.vector'] = 'codec.cjson',
    ['core.array.copy'] = 'core.array.memcpy',
    ['core.array.loop.copy'] = 'core.array.memcpy',
    ['core.array.add'] = 'core.array.loop.add',
    ['core.array.dot'] = 'core.array.loop.dot',
    ['array.rw'] = 'array.table.rw',
    ['array.ffi.pointer'] = 'array.ffi.plain',
    ['array.hogwild.2t'] = 'array.hogwild.1t',
  }
  local b = map[name]
  if b == nil then return nil end
  return b, (b:match('^core%.') or b:match('^naive%.')) and 'c' or lua
end

for _, rec in ipairs(records) do
  local b, blua = baseline_of(rec.name, rec.lua)
  if b then
    rec.baseline = b .. ((blua == 'c' or blua == 'redis') and '' or '@' .. blua)
    -- "A+B cN": the rate of A then B, from the records "A cN" and "B cN".
    local cmd, parts, clients = b:match('^(%S+ )(%S+%+%S+)( c%d+)$')
    local rate
    if parts then
      local inv = 0
      for part in parts:gmatch('[^+]+') do
        local base = by_key[cmd .. part .. clients .. '@' .. blua]
        if not (base and base.items_per_s) then inv = nil break end
        inv = inv + 1 / base.items_per_s
      end
      rate = inv and 1 / inv
    else
      local base = by_key[b .. '@' .. blua]
      rate = base and base.items_per_s
    end
    if rate and rec.items_per_s then
      rec.ratio = rec.items_per_s / rate
    end
  end
end

-- The limit of a hand-off: the lock-free ring (spsc_ring.c) of the same
-- topology and capacity, in this run. limit_x = this case's time per item
-- over the ring's (how far from the limit: 1x would be the ring itself).
local function limit_of(name)
  if name:match('^ring%.') then return nil end
  if name:match('pingpong$') then return 'ring.pingpong' end
  -- batches of 64 through an unbounded vector, 1P/1C (issue 17)
  if name == 'batch64.int.1p1c' or name == 'core.batch64.1p1c' then
    return 'ring.1p1c.unbounded'
  end
  local topo, hint = name:match('%.(%dp%dc)%.(%w+)$')
  if topo and (name:match('^vector%.') or name:match('^core%.deque%.') or
               name:match('^naive%.')) then
    return 'ring.' .. topo .. '.' .. hint
  end
end

for _, rec in ipairs(records) do
  local l = limit_of(rec.name)
  local base = l and by_key[l .. '@c']
  if base and base.items_per_s and rec.items_per_s then
    rec.limit = l
    rec.limit_x = base.items_per_s / rec.items_per_s
  end
  if rec.cpu and rec.items and rec.items > 0 then
    rec.cpu_per_item = rec.cpu / rec.items
    rec.cores = rec.seconds > 0 and rec.cpu / rec.seconds or nil
  end
end

-- ---- the table ----------------------------------------------------------------------

local function si(x, unit)
  if x == nil then return '-' end
  if x >= 1e9 then return ('%.2f G%s'):format(x / 1e9, unit) end
  if x >= 1e6 then return ('%.2f M%s'):format(x / 1e6, unit) end
  if x >= 1e3 then return ('%.1f k%s'):format(x / 1e3, unit) end
  return ('%.1f %s'):format(x, unit)
end

local function per_item(rec)
  if not rec.seconds then return '-' end
  local s = rec.seconds / rec.items
  if s >= 1e-3 then return ('%.2f ms'):format(s * 1e3) end
  if s >= 1e-6 then return ('%.1f us'):format(s * 1e6) end
  return ('%.0f ns'):format(s * 1e9)
end

local function cpu_item(rec)
  local s = rec.cpu_per_item
  if not s then return '-' end
  if s >= 1e-3 then return ('%.2f ms'):format(s * 1e3) end
  if s >= 1e-6 then return ('%.1f us'):format(s * 1e6) end
  return ('%.0f ns'):format(s * 1e9)
end

local function limit_col(rec)
  return rec.limit_x and ('%.1fx'):format(rec.limit_x) or ''
end

local function spread(rec)
  if not rec.seconds or rec.seconds == 0 then return '-' end
  return ('-%.0f/+%.0f%%'):format((rec.seconds - rec.min) / rec.seconds * 100,
                                  (rec.max - rec.seconds) / rec.seconds * 100)
end

local function uname()
  return (capture('uname -srm'):gsub('\n', ''))
end
local function git_rev()
  local out, ok = capture('git rev-parse --short HEAD 2>/dev/null')
  return ok and out:gsub('\n', '') or 'unknown'
end
local function nproc() return (capture('nproc'):gsub('\n', '')) end

local load_end = loadavg()
print(('tunnel benchmarks  %s  %s, %s cores  git %s  repeat %d%s'):format(
  os.date('%Y-%m-%d %H:%M'), uname(), nproc(), git_rev(), REPEAT,
  QUICK and '  QUICK (smoke run: few items, figures are not meaningful)' or ''))
print(('load average before the run %.2f, after %.2f'):format(load_start or -1,
  load_end or -1))
if LOAD > 0 then
  print(('BENCH_LOAD=%d: %d busy loops ran beside every case'):format(LOAD,
    LOAD))
elseif load_start and load_start > 0.7 then
  print('warning: other processes were using the CPUs when the run started;')
  print('  threaded figures (small size hints, ping-pong, 2P/2C) suffer most')
end
print()
local fmt = '%-27s %-6s %8s %9s %11s %9s %9s %5s %10s  %-29s %7s %7s  %s'
print(fmt:format('case', 'lua', 'items', 'median s', 'items/s', 'per item',
                 'cpu/item', 'cores', 'spread', 'baseline', 'ratio', 'limit',
                 'note'))
print(('-'):rep(155))
local last_lua
for _, rec in ipairs(records) do
  if last_lua and rec.lua ~= last_lua then print() end
  last_lua = rec.lua
  local note = rec.note or ''
  if rec.mb_per_s then note = ('%.1f MB/s (%d-byte encoding) '):format(rec.mb_per_s, rec.bytes) .. note end
  if rec.status ~= 'ok' then note = rec.status .. ': ' .. note end
  print(fmt:format(rec.name, rec.lua, rec.items or '-',
    rec.seconds and ('%.4f'):format(rec.seconds) or '-',
    si(rec.items_per_s, '/s'), per_item(rec), cpu_item(rec),
    rec.cores and ('%.2f'):format(rec.cores) or '-', spread(rec),
    rec.baseline or '', rec.ratio and ('%.2fx'):format(rec.ratio) or '',
    limit_col(rec), note))
end

-- ---- the targets of issue 4 ---------------------------------------------------------

local targets = {}
local function target(desc, keys, value_of, want_desc, meets)
  local rec
  for _, k in ipairs(keys) do
    rec = by_key[k]
    if rec and rec.status ~= 'skip' and rec.seconds then break end
    rec = nil
  end
  local t = {target = desc, want = want_desc}
  if rec == nil then
    t.result = 'not measured'
  else
    t.case = rec.name .. '@' .. rec.lua
    local v, shown = value_of(rec)
    t.value, t.shown = v, shown
    t.result = v == nil and 'not measured' or (meets(v) and 'meets' or 'misses')
  end
  targets[#targets + 1] = t
end

local function has(l)
  for _, x in ipairs(luas) do if x == l then return true end end
end
local function rate(rec) return rec.items_per_s, si(rec.items_per_s, 'items/s'):gsub(' (%a)items', ' %1 items') end
local function ratio(rec)
  return rec.ratio, rec.ratio and ('%.2fx %s'):format(rec.ratio, rec.baseline)
end

if has('luajit') then
  target('Vector 1P/1C integers, unbounded, luajit', {'vector.int.1p1c.unbounded@luajit'},
         rate, '>= 3 M items/s', function(v) return v >= 3e6 end)
end
if has('lua5.4') then
  target('Vector 1P/1C integers, unbounded, lua5.4', {'vector.int.1p1c.unbounded@lua5.4'},
         rate, '>= 2 M items/s', function(v) return v >= 2e6 end)
end
for _, l in ipairs(luas) do
  target('Vector 1P/1C size hint 4 vs naive condvar queue, ' .. l,
         {'vector.int.1p1c.hint4@' .. l}, ratio, '>= 10x', function(v) return v >= 10 end)
end
for _, l in ipairs(luas) do
  target('Vector 1P/1C size hint 1024 vs core C API, ' .. l,
         {'vector.int.1p1c.hint1024@' .. l}, ratio, '>= 0.33x', function(v) return v >= 1 / 3 end)
end
if has('luajit') then
  target('Counter from 2 threads, luajit', {'counter.2t@luajit'}, rate,
         '>= 10 M increases/s', function(v) return v >= 1e7 end)
end
for _, l in ipairs(luas) do
  target('Codec round trip vs cjson encode+decode, ' .. l,
         {'codec.serializer@' .. l, 'codec.vector@' .. l}, ratio, '> 1x',
         function(v) return v > 1 end)
end
if LOAD > 0 then
  for _, l in ipairs(luas) do
    target(('Vector 1P/1C size hint 4 vs naive queue, %d busy loops, %s')
           :format(LOAD, l), {'vector.int.1p1c.hint4@' .. l}, ratio,
           '>= 1x', function(v) return v >= 1 end)
  end
end
for _, l in ipairs(luas) do
  target('Vector 1P/1C 20-byte strings vs integers, ' .. l,
         {'vector.str20.1p1c.unbounded@' .. l}, ratio,
         '>= 0.67x (within 1.5x)', function(v) return v >= 1 / 1.5 end)
end
for _, l in ipairs(luas) do
  target('Shared table set+get vs Hash set+get, 1 thread, ' .. l,
         {'table.setget.1t@' .. l}, ratio, '>= 0.67x (within 1.5x)',
         function(v) return v >= 1 / 1.5 end)
  target('Shared table get vs Hash get, 1 thread, ' .. l,
         {'table.get.1t@' .. l}, ratio, '>= 0.67x (within 1.5x)',
         function(v) return v >= 1 / 1.5 end)
  target('Shared table reads, 2 threads vs 1, ' .. l,
         {'table.get.2t@' .. l}, ratio, '>= 1.6x', function(v) return v >= 1.6 end)
end
for _, l in ipairs(luas) do
  -- issue 17's bound (issue 4 asked for 200 us)
  target('Block(1) create+run+terminate, ' .. l, {'block.cycle@' .. l},
    function(rec)
      local us = rec.seconds / rec.items * 1e6
      return us, ('%.0f us each'):format(us)
    end, '< 120 us median', function(v) return v < 120 end)
end

-- issue 17: batches, ping-pong, the hand-off against its start
local function within(x) return function(v) return v >= 1 / x end end
for _, l in ipairs(luas) do
  target('Vector batches of 64, 1P/1C, vs the lock-free ring per item, ' .. l,
         {'batch64.int.1p1c@' .. l}, function(rec)
           return rec.limit_x, rec.limit_x and ('%.1fx %s'):format(rec.limit_x,
             rec.limit)
         end, '<= 3x', function(v) return v <= 3 end)
end
target('Vector batches of 64, 1P/1C, core C API, vs the lock-free ring',
       {'core.batch64.1p1c@c'}, function(rec)
         return rec.limit_x, rec.limit_x and ('%.1fx %s'):format(rec.limit_x,
           rec.limit)
       end, '<= 3x (the floor)', function(v) return v <= 3 end)
for _, l in ipairs(luas) do
  target('Cluster pushMany of 64 vs single pushes, ' .. l,
         {'cluster.batch64.push.1t@' .. l}, ratio, '>= 5x',
         function(v) return v >= 5 end)
  target('Cluster popMany of 64 vs single pops, ' .. l,
         {'cluster.batch64.pop.1t@' .. l}, ratio, '>= 5x',
         function(v) return v >= 5 end)
  target('Cluster pushMany of 64 vs redis-benchmark -P 16 LPUSH, ' .. l,
         {'cluster.batch64.push.1t@' .. l}, function(rec)
           local base = by_key['redis-benchmark lpush c1 P16@redis']
           if not (base and base.items_per_s and rec.items_per_s) then return nil end
           local r = rec.items_per_s / base.items_per_s
           return r, ('%.2fx redis-benchmark lpush c1 P16'):format(r)
         end, '>= 0.8x', function(v) return v >= 0.8 end)
end
for _, l in ipairs(luas) do
  target('Ping-pong round trip from Lua vs the core C API, ' .. l,
         {'vector.pingpong@' .. l}, ratio, '>= 0.33x (within 3x)', within(3))
end
for _, l in ipairs(luas) do
  target('Vector 1P/1C integers vs the BENCH_WAS tree, ' .. l,
         {'vector.int.1p1c.unbounded@' .. l}, function(rec)
           local base = by_key['vector.int.1p1c.unbounded@' .. l .. '-was']
           if not (base and base.items_per_s and rec.items_per_s) then return nil end
           local r = rec.items_per_s / base.items_per_s
           return r, ('%.2fx vector.int.1p1c.unbounded@%s-was'):format(r, l)
         end, '>= 1.5x', function(v) return v >= 1.5 end)
end

-- issue 14: tunnel.Array
target('Array copy of 10^7 doubles vs memcpy', {'core.array.copy@c'}, ratio,
       '>= 0.67x (within 1.5x)', within(1.5))
target('Array add (axpy) of 10^7 doubles vs a plain C loop', {'core.array.add@c'},
       ratio, '>= 0.67x (within 1.5x)', within(1.5))
target('Array dot of 10^7 doubles vs a plain C loop', {'core.array.dot@c'}, ratio,
       '>= 0.67x (within 1.5x)', within(1.5))
if has('lua5.4') then
  target('Array a[i] = a[i] + 1 vs a plain table, lua5.4', {'array.rw@lua5.4'},
         ratio, '>= 0.33x (within 3x)', within(3))
end
if has('luajit') then
  -- LuaJIT's fast path (src/lua/larray.c): a[i] compiled through the FFI
  target('Array a[i] = a[i] + 1 vs a plain table, luajit', {'array.rw@luajit'},
         ratio, '>= 0.33x (within 3x)', within(3))
  target('Array FFI pointer vs a plain FFI array, luajit',
         {'array.ffi.pointer@luajit'}, ratio, '>= 0.5x (within 2x)', within(2))
end
for _, l in ipairs(luas) do
  target('Hogwild example, 2 threads vs 1, ' .. l, {'array.hogwild.2t@' .. l},
         ratio, '>= 1.6x', function(v) return v >= 1.6 end)
end
-- issue 13: distributed blocks
for _, l in ipairs(luas) do
  target('cluster:Block(1) round trip of an empty job, ' .. l,
         {'cluster.block.roundtrip@' .. l},
    function(rec)
      local ms = rec.seconds / rec.items * 1e3
      return ms, ('%.2f ms median'):format(ms)
    end, '< 1 ms median', function(v) return v < 1 end)
  target('small jobs on 4 slots, 2 workers, ' .. l, {'cluster.block.4s2w@' .. l},
         rate, '>= 3000 jobs/s', function(v) return v >= 3000 end)
end

print()
print('targets (issue 4; medians of this run; a miss never fails the run)')
for _, t in ipairs(targets) do
  print(('  %-60s %-28s want %-20s %s'):format(t.target, t.shown or '-',
        t.want, t.result .. (t.case and t.case:match('^codec%.vector') and
        ' (through a Vector: Serializer not built)' or '')))
end

-- ---- results.json -------------------------------------------------------------------

local function json(v, indent)
  indent = indent or ''
  local t = type(v)
  if t == 'nil' then return 'null' end
  if t == 'boolean' then return tostring(v) end
  if t == 'number' then
    if v ~= v or v == math.huge or v == -math.huge then return 'null' end
    if math.type(v) == 'integer' then return tostring(v) end
    return ('%.6g'):format(v)
  end
  if t == 'string' then
    return '"' .. v:gsub('[%c"\\]', function(c)
      return ({['"'] = '\\"', ['\\'] = '\\\\', ['\n'] = '\\n', ['\t'] = '\\t'})[c]
        or ('\\u%04x'):format(c:byte())
    end) .. '"'
  end
  local inner = indent .. '  '
  local parts = {}
  if v[1] ~= nil or next(v) == nil then
    for _, x in ipairs(v) do parts[#parts + 1] = inner .. json(x, inner) end
    if #parts == 0 then return '[]' end
    return '[\n' .. table.concat(parts, ',\n') .. '\n' .. indent .. ']'
  end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b)
    local order = v.__order or {}
    local ia, ib = order[a] or 99, order[b] or 99
    if ia ~= ib then return ia < ib end
    return a < b
  end)
  for _, k in ipairs(keys) do
    if k ~= '__order' then
      parts[#parts + 1] = inner .. json(k) .. ': ' .. json(v[k], inner)
    end
  end
  return '{\n' .. table.concat(parts, ',\n') .. '\n' .. indent .. '}'
end

local ORDER = {name = 1, lua = 2, status = 3, items = 4, seconds = 5,
               items_per_s = 6, spread = 7, baseline = 8, ratio = 9,
               cpu_seconds = 10, cpu_per_item = 11, cores = 12, limit = 13,
               limit_x = 14}
local out_cases = {}
for _, rec in ipairs(records) do
  out_cases[#out_cases + 1] = {
    __order = ORDER,
    name = rec.name, lua = rec.lua, status = rec.status, items = rec.items,
    seconds = rec.seconds, items_per_s = rec.items_per_s,
    spread = rec.seconds and {min = rec.min, max = rec.max,
      relative = rec.seconds > 0 and (rec.max - rec.min) / rec.seconds or nil},
    times = #rec.times > 0 and rec.times or nil,
    baseline = rec.baseline, ratio = rec.ratio, note = rec.note,
    bytes = rec.bytes, mb_per_s = rec.mb_per_s,
    cpu_seconds = rec.cpu, cpu_per_item = rec.cpu_per_item,
    cores = rec.cores, limit = rec.limit, limit_x = rec.limit_x,
  }
end
local doc = {
  __order = {generated = 1, machine = 2, git = 3, quick = 4, ['repeat'] = 5,
             load_before = 6, load_after = 7, cases = 8, targets = 9},
  load_before = load_start, load_after = load_end, busy_loops = LOAD,
  generated = os.date('!%Y-%m-%dT%H:%M:%SZ'), machine = uname() .. ', ' ..
    nproc() .. ' cores', git = git_rev(), quick = QUICK, ['repeat'] = REPEAT,
  cases = out_cases, targets = targets,
}
local f = assert(io.open(json_path, 'w'))
f:write(json(doc), '\n')
f:close()

if md_path then
  local m = assert(io.open(md_path, 'w'))
  m:write(('Run of %s on %s, %s cores, git %s, %d repetitions%s; load average %.2f before, %.2f after.\n\n'):format(
    os.date('%Y-%m-%d'), uname(), nproc(), git_rev(), REPEAT,
    QUICK and ' (QUICK)' or '', load_start or -1, load_end or -1))
  m:write('| case | lua | items | median s | items/s | per item | CPU/item | cores | spread | baseline'
    .. ' | ratio | limit | note |\n')
  m:write('|---|---|--:|--:|--:|--:|--:|--:|--:|---|--:|--:|---|\n')
  for _, rec in ipairs(records) do
    local note = rec.note or ''
    if rec.mb_per_s then note = ('%.1f MB/s (%d B) '):format(rec.mb_per_s, rec.bytes) .. note end
    if rec.status ~= 'ok' then note = rec.status .. ': ' .. note end
    m:write(('| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n'):format(
      rec.name, rec.lua, rec.items or '-',
      rec.seconds and ('%.4f'):format(rec.seconds) or '-',
      si(rec.items_per_s, '/s'), per_item(rec), cpu_item(rec),
      rec.cores and ('%.2f'):format(rec.cores) or '-', spread(rec),
      rec.baseline or '', rec.ratio and ('%.2fx'):format(rec.ratio) or '',
      limit_col(rec), (note:gsub('|', '/'))))
  end
  m:write('\n| target | measured | want | result |\n|---|---|---|---|\n')
  for _, t in ipairs(targets) do
    m:write(('| %s | %s | %s | %s |\n'):format(t.target, t.shown or '-', t.want,
      t.result))
  end
  m:close()
end

print()
print(('%d cases, %d failed, %d skipped, %d s; wrote %s'):format(#records,
  failures, (function()
    local n = 0
    for _, r in ipairs(records) do if r.status == 'skip' then n = n + 1 end end
    return n
  end)(), os.time() - t_start, json_path))
os.exit(failures == 0 and 0 or 1)
