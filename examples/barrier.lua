-- barrier.lua - tunnel.Barrier: threads that advance in lock-step rounds,
-- with tunnel.Counter:waitFor as a latch. Pass a Redis URL (or set
-- TUNNEL_REDIS_URL) to make the barrier a cluster one, shared by every
-- process that runs this with the same URL and party count.
local tunnel = require('tunnel')

local url = arg and arg[1] or os.getenv('TUNNEL_REDIS_URL')
local THREADS, STEPS = 4, 5

local barrier, done
if url and url ~= '' then
  local cluster = tunnel.Cluster(url, {prefix = 'tunnel-example:'})
  local name = 'barrier-' .. tostring(os.time())
  barrier, done = cluster:Barrier(name, THREADS), cluster:Counter(name .. '-done', 0)
else
  barrier, done = tunnel.Barrier(THREADS), tunnel.Counter(0)
end

-- Each thread adds its share to a step's total, waits for the others, then
-- reads the whole total: nobody reads before everyone has written.
local totals = tunnel.Vector()
for _ = 1, STEPS do totals:pushBack(tunnel.Counter(0)) end
local block = tunnel.Block(THREADS)
block:add(barrier, totals, done)
block:run(function(b, steps, finished)
  local seen = {}
  for step = 1, #steps do
    steps[step]:increase(__threadid)
    local index, ok = b:wait(30)
    assert(ok, 'the round was broken')
    seen[step] = steps[step]:get() -- always 1 + 2 + ... + THREADS
    assert(index >= 1)
  end
  finished:increase()
  return table.concat(seen, ' ')
end)

-- The main thread waits for all of them without polling.
print('threads finished:', done:waitFor(THREADS, 60))  --> 4 true
local r = block:synchronize()
for i = 1, THREADS do print('thread ' .. i .. ' saw totals:', r[i][1]) end
block:terminate()

-- A timeout breaks the round for everyone in it, until reset.
local pair = tunnel.Barrier(2)
print('alone, with a timeout:', pair:wait(0.1))     --> nil false
print('broken:', pair:isBroken(), pair:wait())      --> true nil false
pair:reset()
print('after reset:', pair:isBroken())               --> false
