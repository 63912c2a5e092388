-- A soak test (issue 11): for TUNNEL_SOAK_SECONDS (default 30; 3 under a
-- sanitizer or valgrind) a loop runs jobs on a block, builds vectors and
-- hashes holding each other (cycles), collects them, and, with a Redis
-- server (TUNNEL_REDIS_URL), pushes, pops and counts on cluster objects.
-- Every round checks its sums (exactly once), and at the end the resident
-- memory is what it was after a warm-up, within a margin.
local tunnel = require('tunnel')

local instrumented = dofile('spec/support/instrumented.lua')
local SECONDS = tonumber(os.getenv('TUNNEL_SOAK_SECONDS')) or
  (instrumented and 3 or 30)

-- Resident memory in bytes (Linux); nil where it says nothing (freed
-- memory is held back under a sanitizer).
local function rss()
  if instrumented then return nil end
  local f = io.open('/proc/self/statm')
  if not f then return nil end
  local _, resident = f:read('*n', '*n')
  f:close()
  return resident * 4096
end

-- Cycles only the collector can free: a vector holding itself, two hashes
-- holding each other, a vector holding a vector that holds it.
local function make_cycles()
  local v = tunnel.Vector()
  v:pushBack(v)
  local a, b = tunnel.Hash(), tunnel.Hash()
  a:set('b', b)
  b:set('a', a)
  local outer, inner = tunnel.Vector(), tunnel.Vector()
  outer:pushBack(inner)
  inner:pushBack(outer)
  return 5
end

local url = os.getenv('TUNNEL_REDIS_URL')
local cluster = url and url ~= '' and
  tunnel.Cluster(url, {prefix = 'tunnel-soak:', timeout = 5}) or nil

describe('soak', function()
  it('runs blocks, cycles and cluster calls for a while at flat memory', function()
    local queue = tunnel.Vector(64)
    local block = tunnel.Block(2, nil, {keep = 8})
    block:add(queue)
    local remote, done
    if cluster then
      local run = dofile('spec/support/unique.lua')()
      remote = cluster:Vector('queue-' .. run)
      done = cluster:Counter('done-' .. run, 0)
    end
    local start = tunnel.clock()
    local warm, rounds, pushed, popped, remote_sum = nil, 0, 0, 0, 0
    while tunnel.clock() - start < SECONDS do
      rounds = rounds + 1
      -- Thread 1 pushes 1..100, thread 2 pops 100 values and sums them.
      block:run(function(q)
        if __threadid == 1 then
          for i = 1, 100 do q:pushBack(i) end
          return 0
        end
        local sum = 0
        for _ = 1, 100 do sum = sum + q:popFront(10) end
        return sum
      end)
      local result, status = block:synchronize()
      assert.is_true(status[1], tostring(result[1][1]))
      assert.is_true(status[2], tostring(result[2][1]))
      pushed = pushed + 5050
      popped = popped + result[2][1]
      -- Cycles, freed by the collector every round.
      local made = (function() return make_cycles() end)()
      assert.is_true(tunnel.collect() >= 0)
      if remote then
        for i = 1, 10 do remote:pushBack(i) end
        for _ = 1, 10 do remote_sum = remote_sum + remote:popFront(5) end
        done:increase()
      end
      assert.are.equal(5, made)
      if not warm and tunnel.clock() - start > SECONDS / 5 then
        collectgarbage()
        collectgarbage()
        tunnel.collect()
        warm = rss()
      end
    end
    block:terminate()
    assert.are.equal(pushed, popped) -- every item popped exactly once
    assert.are.equal(0, #queue)
    if remote then
      assert.are.equal(rounds * 55, remote_sum)
      assert.are.equal(rounds, done:get())
      assert.are.equal(0, #remote)
    end
    collectgarbage()
    collectgarbage()
    tunnel.collect()
    local now = rss()
    if warm and now then
      assert.is_true(now - warm < 32 * 1024 * 1024,
        ('resident memory grew by %d bytes over %d rounds'):format(now - warm, rounds))
    end
  end)
end)
