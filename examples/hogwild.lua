-- hogwild.lua - Hogwild SGD: threads train one logistic regression model
-- at once, each on its share of the data, all writing one tunnel.Array of
-- weights without locks (Niu, Recht, Re, Wright: "Hogwild!", 2011).
--
--   lua examples/hogwild.lua [threads = 2] [epochs = 4] [samples = 40000]
--                            [features = 20000] [only]
--
-- With `only` it trains once, with `threads`, and prints just that
-- training's time (bench/array_bench.lua measures the speed-up so).
--
-- The data are sparse, as in the paper: every sample has K of D features,
-- so two threads rarely touch the same weight at once. Races are allowed by
-- design: an update another thread overwrites is lost, and SGD does not
-- mind. The program trains twice from zero, with one thread and with
-- `threads`, prints the log loss after every epoch, and the speed-up.
-- On LuaJIT the threads reach the arrays through FFI pointers; elsewhere
-- the weights through a[i].
local tunnel = require('tunnel')

local threads = tonumber(arg and arg[1]) or 2
local epochs = tonumber(arg and arg[2]) or 4
local N = tonumber(arg and arg[3]) or 40000 -- samples
local D = tonumber(arg and arg[4]) or 20000 -- features
local only = arg and arg[5] == 'only'
local K = 10                                -- non-zeros per sample
local RATE = 0.05

-- A synthetic problem: a hidden weight vector; y = 1 when a sample's score
-- under it is positive (with 5% of the labels flipped).
local seed = 12345
local function random() -- Park-Miller: exact in doubles, the same everywhere
  seed = (seed * 16807) % 2147483647
  return seed / 2147483647
end
local truth = {}
for f = 1, D do truth[f] = random() * 2 - 1 end
local idx = tunnel.Array(N * K, 'int32') -- feature numbers, 1-based
local val = tunnel.Array(N * K)           -- their values
local y = tunnel.Array(N, 'uint8')        -- labels, 0 or 1
for s = 1, N do
  local score = 0
  for j = 1, K do
    local f = 1 + math.floor(random() * D)
    local v = random() < 0.5 and -1 or 1
    idx[(s - 1) * K + j], val[(s - 1) * K + j] = f, v
    score = score + truth[f] * v
  end
  local label = score > 0 and 1 or 0
  if random() < 0.05 then label = 1 - label end
  y[s] = label
end

-- One epoch on one thread: plain SGD over samples first..last, reading the
-- data and reading and writing the weights `w`. Sent to the threads (its
-- upvalues are plain values); `tunnel` is the thread's own.
-- Every thread's state is its own: nothing is written but the weights (no
-- shared counter, no per-thread slots side by side in one cache line).
local function sgd(w, ids, vals, labels, first, last, rate, k)
  local exp = math.exp
  if jit then
    -- FFI pointers: the same memory. a[i] is compiled on LuaJIT too, but
    -- each inner loop here runs only k = 10 times, and entering it looks
    -- up every array's pointer again: through raw pointers this loop is
    -- ~1.7x faster.
    local ffi = require('ffi')
    local wp = ffi.cast('double *', w:pointer()) - 1 -- 1-based
    local ip = ffi.cast('int32_t *', ids:pointer())
    local vp = ffi.cast('double *', vals:pointer())
    local yp = ffi.cast('uint8_t *', labels:pointer()) - 1
    for s = first, last do
      local base, p = (s - 1) * k, 0
      for j = base, base + k - 1 do p = p + wp[ip[j]] * vp[j] end
      local g = rate * (1 / (1 + exp(-p)) - yp[s])
      for j = base, base + k - 1 do
        local f = ip[j]
        wp[f] = wp[f] - g * vp[j]
      end
    end
    return
  end
  -- PUC Lua: a[i] is a C metamethod call (~90 ns). The thread's share of
  -- the read-only data becomes plain tables once, kept in the thread's
  -- state for the next epochs (it was once per epoch: ~18% of the time);
  -- the weights, which every thread writes, stay in the Array.
  local key = ('hogwild %s %d %d'):format(tostring(ids), first, last)
  local share = rawget(_G, key)
  if share == nil then
    local n = last - first + 1
    share = {ids:view((first - 1) * k + 1, n * k):totable(),
             vals:view((first - 1) * k + 1, n * k):totable(),
             labels:view(first, n):totable()}
    rawset(_G, key, share)
  end
  local ix, vx, yx = share[1], share[2], share[3]
  for s = 1, last - first + 1 do
    local base, p = (s - 1) * k, 0
    for j = base + 1, base + k do p = p + w[ix[j]] * vx[j] end
    local g = rate * (1 / (1 + exp(-p)) - yx[s])
    for j = base + 1, base + k do
      local f = ix[j]
      w[f] = w[f] - g * vx[j]
    end
  end
end

-- The mean log loss of weights w over the whole data set.
local function loss(w)
  local wt, it, vt, yt = w:totable(), idx:totable(), val:totable(), y:totable()
  local sum = 0
  for s = 1, N do
    local p = 0
    for j = (s - 1) * K + 1, s * K do p = p + wt[it[j]] * vt[j] end
    local q = 1 / (1 + math.exp(-p))
    q = math.min(math.max(q, 1e-12), 1 - 1e-12)
    sum = sum - (yt[s] == 1 and math.log(q) or math.log(1 - q))
  end
  return sum / N
end

-- Train from zero with `t` threads; returns the training seconds, the
-- losses after each epoch and the training's CPU seconds (os.clock: the
-- process's, every thread's).
local function train(t)
  local w = tunnel.Array(D)
  local block = tunnel.Block(t)
  block:add(sgd, w, idx, val, y, N, t, RATE, K)
  local seconds, cpu, losses = 0, 0, {}
  for e = 1, epochs do
    local t0, c0 = tunnel.clock(), os.clock()
    block:run(function(f, weights, ids, vals, labels, n, nthreads, rate, k)
      local per = math.ceil(n / nthreads)
      local first = (__threadid - 1) * per + 1
      local last = math.min(n, first + per - 1)
      f(weights, ids, vals, labels, first, last, rate, k)
    end)
    local results, status = block:synchronize()
    seconds = seconds + (tunnel.clock() - t0)
    cpu = cpu + (os.clock() - c0)
    for i = 1, t do
      if not status[i] then error(tostring(results[i][1])) end
    end
    losses[e] = loss(w)
  end
  block:terminate()
  return seconds, losses, cpu
end

print(('%d samples, %d features (%d per sample), %d epochs, %s'):format(
  N, D, K, epochs, jit and 'LuaJIT FFI' or _VERSION .. ' a[i]'))
if only then
  local t, l, cpu = train(threads)
  print(('training: %d threads %.3f s, loss %.4f, CPU %.3f s'):format(
    threads, t, l[epochs], cpu))
  return
end
local t1, l1 = train(1)
local tn, ln = train(threads)
print(('%-6s %-12s %-12s'):format('epoch', '1 thread', threads .. ' threads'))
for e = 1, epochs do
  print(('%-6d %-12.4f %-12.4f'):format(e, l1[e], ln[e]))
end
print(('training: 1 thread %.3f s, %d threads %.3f s: speed-up %.2fx'):format(
  t1, threads, tn, t1 / tn))
assert(ln[epochs] < ln[1] and l1[epochs] < l1[1], 'the model did not learn')
