-- cluster_queue.lua - a work queue on a Redis server that can be run again
-- and again: it deletes its objects before making them, so a second run
-- (or one after a crash) starts clean instead of finding the last run's
-- closed vector ('vector is closed') and its counter's total.
--
--   scripts/with-redis.sh lua examples/cluster_queue.lua
--   lua examples/cluster_queue.lua redis://127.0.0.1:6379/0
--   lua examples/cluster_queue.lua unix:///run/redis/redis.sock?db=0
--
-- Without a URL (argument or TUNNEL_REDIS_URL) it says so and stops.
local tunnel = require('tunnel')

local url = arg and arg[1] or os.getenv('TUNNEL_REDIS_URL')
if not url or url == '' then
  print('cluster_queue.lua: give a Redis URL (or set TUNNEL_REDIS_URL)')
  return
end

local cluster = tunnel.Cluster(url, {prefix = 'tunnel-example:queue:'})

-- A fresh start: whatever an earlier run left is removed. delete returns
-- whether there was something.
for _, name in ipairs({'jobs', 'done', 'workers'}) do
  if cluster:delete(name) then print('removed the last run\'s ' .. name) end
end
local jobs = cluster:Vector('jobs', 8)     -- bounded: producers wait
local done = cluster:Counter('done', 0)    -- 0, not the last run's total
local workers = cluster:Counter('workers', 0)

-- Consumers: threads here; any process that opens the same cluster and
-- names 'jobs' and 'done' could take part.
local block = tunnel.Block(3)
block:add(jobs, done, workers)
block:run(function(queue, total, count)
  count:increase()
  while true do
    local n, status = queue:popFront(30)
    if status == false then break end       -- closed and drained
    if status == nil then error('no job for 30 s') end -- a timeout
    total:increase(n * n)
  end
end)

for n = 1, 100 do jobs:pushBack(n) end
jobs:close() -- the consumers finish what is left, then stop
local _, status = block:synchronize(60)
block:terminate()
for i = 1, 3 do assert(status[i], 'a consumer failed') end

print(('%d consumers, sum of squares 1..100 = %d'):format(workers:get(),
                                                        done:get()))
print('jobs exists:', cluster:exists('jobs'))   -- true: closed is state
-- Leave nothing behind (the next run would delete it anyway).
for _, name in ipairs({'jobs', 'done', 'workers'}) do cluster:delete(name) end
print('after the clean-up:', cluster:exists('jobs'), cluster:exists('done'))
