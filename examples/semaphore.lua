-- semaphore.lua - tunnel.Semaphore: at most N threads use a resource at
-- once. Pass a Redis URL (or set TUNNEL_REDIS_URL) to bound it across
-- processes too: then the permits are leases, given back within 10 s by a
-- process that dies holding them.
local tunnel = require('tunnel')

local url = arg and arg[1] or os.getenv('TUNNEL_REDIS_URL')
local SLOTS, THREADS = 2, 6

local slots
if url and url ~= '' then
  slots = tunnel.Cluster(url, {prefix = 'tunnel-example:'})
    :Semaphore('slots-' .. tostring(os.time()), SLOTS)
else
  slots = tunnel.Semaphore(SLOTS)
end

local inside, most = tunnel.Counter(0), tunnel.Counter(0)
local block = tunnel.Block(THREADS)
block:add(slots, inside, most)
block:run(function(s, now, peak)
  for _ = 1, 20 do
    assert(s:acquire(1, 30))
    local n = now:increase()
    peak:write(function(p) return math.max(p, n) end)
    tunnel.sleep(0.001) -- use the resource
    now:decrease()
    s:release()
  end
end)
block:synchronize()
block:terminate()
print('at most ' .. SLOTS .. ' at once; the most seen:', most:get())
print('available again:', slots:available(), 'of', slots:permits())

-- acquire with a timeout and acquireAsync give nil when nothing is free.
assert(slots:acquire(SLOTS))
print('none free:', slots:acquireAsync(), slots:acquire(1, 0.05))  --> nil nil
slots:release(SLOTS)
print('released:', slots:available())
