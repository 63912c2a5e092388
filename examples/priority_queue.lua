-- priority_queue.lua - tunnel.PriorityQueue: a scheduler's queue shared by
-- threads. Urgent jobs (low priority numbers) are served first, jobs of
-- the same priority in the order they came. Pass a Redis URL (or set
-- TUNNEL_REDIS_URL) to put the queue on a server, where any process can
-- push jobs into it.
local tunnel = require('tunnel')

local url = arg and arg[1] or os.getenv('TUNNEL_REDIS_URL')
local jobs
if url and url ~= '' then
  local cluster = tunnel.Cluster(url, {prefix = 'tunnel-example:'})
  local name = 'jobs-' .. tostring(os.time())
  cluster:delete(name)
  jobs = cluster:PriorityQueue(name, 100)
else
  jobs = tunnel.PriorityQueue(100) -- pushes wait while 100 are queued
end

-- Queued before the workers start: they will be served by priority.
jobs:push(5, {kind = 'report', id = 1})
jobs:push(1, {kind = 'page the on-call', id = 2})
jobs:push(5, {kind = 'report', id = 3})
jobs:push(3, {kind = 'rebuild index', id = 4})
print('queued:', #jobs)                                   --> queued: 4

-- One worker thread takes them in order until the queue is closed.
local printer = tunnel.Printer()
local block = tunnel.Block(1)
block:add(jobs, printer)
block:run(function(queue, out)
  local served = {}
  while true do
    local job, priority, ok = queue:pop(30)
    if not ok then break end                 -- false: closed and drained
    out(('priority %d: %s #%d'):format(priority, job.kind, job.id))
    served[#served + 1] = job.id
  end
  return table.concat(served, ' ')
end)

tunnel.sleep(0.1)
jobs:push(0, {kind = 'late but urgent', id = 5})  -- jumps the queue if still waiting
jobs:close()
local result = block:synchronize()
print('served in order:', result[1][1])           --> 2 4 1 3 5 (or 2 4 1 3 then 5)
print('after close:', jobs:pop())                  --> nil nil false
block:terminate()
