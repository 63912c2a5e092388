-- redis_bench.lua - raw Redis baselines for the cluster cases: redis-benchmark
-- against the server of TUNNEL_REDIS_URL, in the protocol of lua_bench.lua
-- (bench/run.lua runs it as the flavour "redis"; docs/performance.md).
--
--   lua bench/redis_bench.lua list      the case names, one a line
--   lua bench/redis_bench.lua '<case>'  BENCH_REPEAT lines:
--     result <TAB> case <TAB> requests <TAB> seconds <TAB> ok|FAIL:why
--   or one line: skip <TAB> case <TAB> why
--
-- Each case is one command with one (c1) or four (c4) clients, no pipelining,
-- the 3-byte value of redis-benchmark's own tests:
--   redis-benchmark -u URL -n N -c C -P 1 --csv -q LPUSH <key> xxx
-- seconds = N / the requests per second redis-benchmark reports, so its
-- connection set-up is not counted. These are the workloads of
-- `redis-benchmark -t lpush,rpop,incr`, but on keys of their own (a unique
-- prefix per process, deleted at the end) instead of the fixed `mylist` and
-- `counter:__rand_int__`: on a shared server the built-in RPOP test would pop
-- somebody else's items. The RPOP case first fills its list (pipelined, not
-- timed), so it pops real items like the built-in test does after LPUSH.
-- N: 20,000 requests (BENCH_QUICK: 500), as the cluster cases. The EVAL
-- case (`EVAL "return 1" 0`) is the unit of distributed blocks' scripts.
-- `redis-benchmark lpush c1 P16`: one client, 16 requests in flight
-- (-P 16), one 3-byte item each, 200,000 requests (BENCH_QUICK: 8,000):
-- the baseline of the cluster Vector's batches (issue 17: pushMany of 64
-- >= 0.8x of it).

local QUICK = (os.getenv('BENCH_QUICK') or '') ~= '' and
              os.getenv('BENCH_QUICK') ~= '0'
local REPEAT = tonumber(os.getenv('BENCH_REPEAT') or '') or (QUICK and 3 or 5)
local N = QUICK and 500 or 20000

local order = {}
for _, c in ipairs({1, 4}) do
  for _, cmd in ipairs({'lpush', 'rpop', 'incr', 'eval'}) do
    order[#order + 1] = ('redis-benchmark %s c%d'):format(cmd, c)
  end
end
order[#order + 1] = 'redis-benchmark lpush c1 P16'

local name = arg[1]
if name == nil or name == 'list' then
  for _, n in ipairs(order) do print(n) end
  return
end
local cmd, clients, pipe = name:match('^redis%-benchmark (%a+) c(%d+) P(%d+)$')
if cmd == nil then
  cmd, clients = name:match('^redis%-benchmark (%a+) c(%d+)$')
end
pipe = tonumber(pipe) or 1
if pipe > 1 then N = QUICK and 8000 or 200000 end
if cmd == nil then
  io.stderr:write('redis_bench: no case ' .. name .. '\n')
  os.exit(2)
end

local function skip(why)
  print(('skip\t%s\t%s'):format(name, why))
  os.exit(0)
end
local function sh_quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end
local function capture(c)
  local p = assert(io.popen(c))
  local out = p:read('a')
  local ok = p:close()
  return out, ok
end

local url = os.getenv('TUNNEL_REDIS_URL') or ''
if url == '' then
  skip('TUNNEL_REDIS_URL is not set (scripts/with-redis.sh make bench)')
end
for _, prog in ipairs({'redis-benchmark', 'redis-cli'}) do
  if not capture('command -v ' .. prog .. ' 2>/dev/null'):find('%S') then
    skip(prog .. ' is not installed (redis-tools)')
  end
end

-- A prefix no other process uses.
local function unique()
  local f = io.open('/dev/urandom', 'rb')
  local r = f and f:read(6) or tostring(os.clock())
  if f then f:close() end
  return (r:gsub('.', function(ch) return ('%02x'):format(ch:byte()) end))
end
local prefix = ('tunnel-bench:rb:%d-%s:'):format(os.time(), unique())
local key = prefix .. (cmd == 'incr' and 'counter' or 'list')
local U = '-u ' .. sh_quote(url)

local function cli(...)
  local args = {}
  for i, a in ipairs({...}) do args[i] = sh_quote(a) end
  return capture(('redis-cli %s --no-auth-warning %s 2>&1'):format(U,
    table.concat(args, ' ')))
end

-- Requests per second of one redis-benchmark run, or nil and why.
local function bench(n, c, pipeline, ...)
  local args = {}
  for i, a in ipairs({...}) do args[i] = sh_quote(a) end
  -- (a bound: redis-benchmark retries a lost server forever, at full CPU)
  local out, ok = capture(('timeout -k 5 120 redis-benchmark %s -n %d -c %d -P %d --csv -q %s 2>&1')
    :format(U, n, c, pipeline, table.concat(args, ' ')))
  -- "test","rps",... then "LPUSH tunnel-bench:...","95238.09",...
  -- (it times in milliseconds: "inf" for a run shorter than one, which a
  -- timed run of N >= 500 unpipelined requests never is; then 0 seconds)
  local rps
  for line in out:gmatch('[^\n]+') do
    local v = line:match('^"[^"]*","([%w.]+)"')
    if v then rps = v == 'inf' and math.huge or tonumber(v) end
  end
  if not ok or not rps or rps <= 0 then
    return nil, 'redis-benchmark: ' .. (out:match('[^\n]*[^\n%s][^\n]*') or
      'no output')
  end
  return rps
end

-- The server answers (redis-benchmark would spin on a refused connection).
do
  local out = cli('PING')
  if not out:find('PONG') then
    print(('result\t%s\t%d\t0\tFAIL:redis-cli PING: %s'):format(name, N,
      (out:match('[^\n]*[^\n%s][^\n]*') or 'no output'):gsub('\t', ' ')))
    os.exit(1)
  end
end

local bad = false
for _ = 1, REPEAT do
  local why, rps
  if cmd == 'rpop' then
    cli('DEL', key)
    rps, why = bench(N, 1, 100, 'LPUSH', key, 'xxx') -- the fill, not timed
    if rps then
      local len = tonumber((cli('LLEN', key)))
      if len ~= N then why = ('filled list has %s items, expected %d'):format(len, N) end
    end
    if not why then rps, why = bench(N, tonumber(clients), 1, 'RPOP', key) end
    if rps then -- every RPOP found an item: the list is empty again
      local len = tonumber((cli('LLEN', key)))
      if len ~= 0 then why = 'list has ' .. tostring(len) .. ' items left' end
    end
  elseif cmd == 'lpush' then
    cli('DEL', key)
    rps, why = bench(N, tonumber(clients), pipe, 'LPUSH', key, 'xxx')
    if rps then
      local len = tonumber((cli('LLEN', key)))
      if len ~= N then why = ('list has %s items, expected %d'):format(len, N) end
    end
  elseif cmd == 'eval' then -- one script round trip (distributed blocks' unit)
    rps, why = bench(N, tonumber(clients), 1, 'EVAL', 'return 1', '0')
  else
    cli('DEL', key)
    rps, why = bench(N, tonumber(clients), 1, 'INCR', key)
    if rps then
      local v = tonumber((cli('GET', key)))
      if v ~= N then why = ('counter is %s, expected %d'):format(v, N) end
    end
  end
  print(('result\t%s\t%d\t%.9f\t%s'):format(name, N, rps and N / rps or 0,
    why and ('FAIL:' .. why:gsub('[\t\n]', ' ')) or 'ok'))
  io.stdout:flush()
  if why then bad = true break end
end
cli('DEL', key) -- ours only: the unique prefix
os.exit(bad and 1 or 0)
