-- param_server.lua - two processes train one linear model against a
-- parameter server: a cluster Array on Redis holds the weights; each worker
-- fetches them, computes a gradient on its own half of the data, and adds
-- it on the server (one script there, so concurrent adds all count).
--
--   TUNNEL_REDIS_URL=redis://127.0.0.1:6379/0 lua examples/param_server.lua
--   scripts/with-redis.sh lua examples/param_server.lua   (a private server)
--
-- Without TUNNEL_REDIS_URL it says so and exits. The program starts the two
-- workers itself (`lua examples/param_server.lua worker <k>`), waits for
-- them, and prints the loss after every round as it sees it.
local tunnel = require('tunnel')

local url = os.getenv('TUNNEL_REDIS_URL')
if not url or url == '' then
  print('param_server.lua: set TUNNEL_REDIS_URL (or run it under '
        .. 'scripts/with-redis.sh); nothing to do')
  return
end

local D, N, ROUNDS, RATE = 20, 2000, 30, 0.5
local run = os.getenv('PARAM_SERVER_RUN') or tostring(os.time())
local cluster = tunnel.Cluster(url, {prefix = 'example:' .. run .. ':'})

-- The data: y = x . truth + noise, the same in every process (seeded).
local function data(first, last)
  local seed = 4242
  local function random()
    seed = (seed * 16807) % 2147483647
    return seed / 2147483647
  end
  local truth = {}
  for j = 1, D do truth[j] = random() * 4 - 2 end
  local xs, ys = {}, {}
  for i = 1, N do
    local x, y = tunnel.Array(D), 0
    for j = 1, D do
      x[j] = random() * 2 - 1
      y = y + x[j] * truth[j]
    end
    if i >= first and i <= last then
      xs[#xs + 1], ys[#ys + 1] = x, y + (random() - 0.5) * 0.1
    end
  end
  return xs, ys
end

-- The mean squared error of weights w (an in-process Array) on xs, ys.
local function mse(w, xs, ys)
  local sum = 0
  for i = 1, #xs do
    local e = w:dot(xs[i]) - ys[i]
    sum = sum + e * e
  end
  return sum / #xs
end

if arg[1] == 'worker' then
  local k = tonumber(arg[2])
  local xs, ys = data((k - 1) * N / 2 + 1, k * N / 2)
  local w = cluster:Array('weights') -- made by the coordinator
  local done = cluster:Counter('done')
  local grad = tunnel.Array(D)
  for _ = 1, ROUNDS do
    local local_w = w:fetch()                  -- the current parameters
    grad:fill(0)
    for i = 1, #xs do                          -- d/dw of the mean squared error
      grad:add(xs[i], 2 * (local_w:dot(xs[i]) - ys[i]) / N)
    end
    w:add(grad, -RATE)                         -- applied on the server
  end
  done:increase()
  return
end

-- The coordinator: the shared weights, two workers, and the loss it sees.
local w = cluster:Array('weights', D)
local done = cluster:Counter('done', 0)
local lua = os.getenv('TUNNEL_LUA') or (jit and 'luajit') or
            'lua' .. _VERSION:match('%d+%.%d+')
local script = arg[0]
local workers = {}
for k = 1, 2 do
  workers[k] = assert(io.popen(('PARAM_SERVER_RUN=%s %s %s worker %d'):format(
    run, lua, script, k)))
end
local xs, ys = data(1, N)
local seen = -1
-- A worker that failed to start never counts: give up rather than wait.
local give_up = tunnel.clock() + 300
while done:get() < 2 do
  assert(tunnel.clock() < give_up, 'the workers did not finish in 300 s')
  local copy, version = w:fetch()
  if version ~= seen then
    print(('version %3d   mse %.6f'):format(version, mse(copy, xs, ys)))
    seen = version
  end
  tunnel.sleep(0.002)
end
for k = 1, 2 do workers[k]:close() end
local copy, version = w:fetch()
local final = mse(copy, xs, ys)
print(('final: version %d (2 workers x %d rounds), mse %.6f'):format(
  version, ROUNDS, final))
assert(version == 2 * ROUNDS, 'an add was lost')
assert(final < 0.01, 'the model did not learn')
cluster:delete('weights')
cluster:delete('done')
