-- select.lua - tunnel.select and Vector batches: a worker that waits on a
-- work queue and a control queue at once (no polling), takes its work in
-- batches (one lock round trip, or one Redis round trip, per batch) and
-- stops when both queues are closed. Pass a Redis URL (or set
-- TUNNEL_REDIS_URL) to use cluster vectors instead.
local tunnel = require('tunnel')

local url = arg and arg[1] or os.getenv('TUNNEL_REDIS_URL')
local control, work, results
if url and url ~= '' then
  local cluster = tunnel.Cluster(url, {prefix = 'tunnel-example:'})
  local run = 'select-' .. tostring(os.time())
  control, work = cluster:Vector(run .. '-control'), cluster:Vector(run .. '-work', 64)
  results = cluster:Vector(run .. '-results')
else
  control, work, results = tunnel.Vector(), tunnel.Vector(64), tunnel.Vector()
end

local block = tunnel.Block(1)
block:add(control, work, results)
block:run(function(ctl, jobs, out)
  local scale, done, controls = 1, 0, 0
  while true do
    -- Whichever queue has something; control and work are taken in turn
    -- when both do, so a flood of work never hides a control message.
    local which, msg, ok = tunnel.select({ctl, jobs}, 30)
    if not ok then break end                 -- false: both closed, drained
    if which == 1 then
      scale = msg.scale                      -- a control message
      controls = controls + 1
    else
      -- Work: this item, plus whatever else is queued (up to 63 more).
      local batch = jobs:popManyAsync(63)
      local t = {msg * scale, n = 1}
      for i = 1, batch.n do t[i + 1], t.n = batch[i] * scale, i + 1 end
      out:pushMany(t)
      done = done + t.n
    end
  end
  return done, controls
end)

local items = {}
for i = 1, 100 do items[i] = i end
work:pushMany({1, 2, 3})                     -- one batch, scale 1
control:pushBack({scale = 10})
for i = 4, 100, 32 do                        -- batches of up to 32
  local t = {}
  for j = i, math.min(i + 31, 100) do t[#t + 1] = items[j] end
  work:pushMany(t)
end
control:close()
work:close()

local result, status = block:synchronize()
assert(status[1], tostring(result[1][1]))
local got = results:popMany(1000)
print('items handled:', result[1][1], got.n)  --> items handled: 100 100
print('control messages:', result[1][2])      --> control messages: 1
-- (which items were scaled by 10 depends on when the worker saw the
-- control message: select takes from both queues in turn)
block:terminate()
