-- tunnel.collect(): reference cycles among shared objects are freed, and
-- nothing that a Lua value (a box) still reaches. The loop runs for
-- TUNNEL_COLLECT_SECONDS (default 10) making cycles, collecting every round,
-- and checks that the resident memory stays flat.
local tunnel = require('tunnel')

local SECONDS = tonumber(os.getenv('TUNNEL_COLLECT_SECONDS')) or 10

-- Under a sanitizer or valgrind resident memory says nothing; the counts
-- still do.
local instrumented = dofile('spec/support/instrumented.lua')

-- Resident memory in bytes (Linux).
local function rss()
  if instrumented then return nil end
  local f = io.open('/proc/self/statm')
  if not f then return nil end
  local _, resident = f:read('*n', '*n')
  f:close()
  return resident * 4096
end

-- One of each cycle; returns how many shared objects it made that only
-- the cycles hold once it returns.
local function make_cycles()
  local v = tunnel.Vector()          -- a Vector holding itself
  v:pushBack(v)
  local a, b = tunnel.Hash(), tunnel.Hash() -- two Hashes holding each other
  a:set('b', b)
  b:set('a', a)
  local s = tunnel.Share({})         -- a shared table holding itself
  s.data.self = s.data               -- (the Share goes by counting)
  local at = tunnel.Atomic({})       -- an Atomic holding itself through
  at.data.self = at                  -- its table
  return 1 + 2 + 1 + 2
end

-- Run f on a stack of its own: LuaJIT keeps a dead slot of a frame (and
-- the box in it) until the slot is overwritten, so a box made in this
-- function's frame could outlive its use there.
local function fresh(f, ...) return coroutine.wrap(f)(...) end

describe('tunnel.collect', function()
  it('frees a cycle of each kind, and only those', function()
    tunnel.collect()
    local keep = fresh(function()    -- a cycle a box still holds
      local k = tunnel.Vector()
      k:pushBack(k)
      return k
    end)
    local n = fresh(make_cycles)
    assert.are.equal(n, tunnel.collect())
    assert.are.equal(0, tunnel.collect())
    assert.is_true(fresh(function() return keep:get(1) == keep end))
    keep = nil
    assert.are.equal(1, tunnel.collect())
  end)

  it('keeps a cycle that a live structure reaches', function()
    tunnel.collect()
    local h = fresh(function()
      local v = tunnel.Vector()
      v:pushBack(v)
      local t = tunnel.Hash()
      t:set('v', v)
      return t
    end)
    assert.are.equal(0, tunnel.collect())
    assert.is_true(fresh(function()
      local v = h:get('v')
      return v:get(1) == v
    end))
    h = nil -- the Hash goes by counting; then the Vector's cycle is garbage
    assert.are.equal(1, tunnel.collect())
  end)

  it('keeps memory flat while a program makes cycles for ' .. SECONDS ..
     ' s', function()
    tunnel.collect()
    local keep = tunnel.Hash()       -- live all along
    keep:set('self', keep)
    local rounds, made, freed = 0, 0, 0
    local start = tunnel.clock()
    local warm
    while tunnel.clock() - start < SECONDS do
      for _ = 1, 20 do made = made + make_cycles() end
      freed = freed + tunnel.collect()
      rounds = rounds + 1
      if not warm and tunnel.clock() - start > SECONDS / 5 then warm = rss() end
    end
    local final = rss()
    assert.are.equal(made, freed)
    assert.are.equal(keep, keep:get('self'))
    assert.is_true(rounds > 1)
    if warm and final then
      -- Without collection each round leaked 120 objects (~2 KB each).
      assert.is_true(final - warm < 32 * 1024 * 1024,
        ('RSS grew from %d to %d bytes over %d rounds'):format(warm, final,
                                                               rounds))
    end
  end)

  it('collects while block threads make cycles and use live ones', function()
    tunnel.collect()
    local live = tunnel.Vector()
    live:pushBack(live)
    local block = tunnel.Block(2)
    block:add(live)
    block:run(function(l)
      local tunnel = require('tunnel') -- luacheck: ignore 431 (not the upvalue)
      local t0 = tunnel.clock()
      local n = 0
      while tunnel.clock() - t0 < 1 do
        local v = tunnel.Vector(); v:pushBack(v)
        local h = tunnel.Hash(); h:set('l', l); h:set('h', h)
        assert(l:get(1) == l)
        v, h = nil, nil -- luacheck: ignore 311 (drops them)
        n = n + 1
        if n % 50 == 0 then collectgarbage() end
      end
      collectgarbage()
      return n
    end)
    local freed = 0
    local t0 = tunnel.clock()
    while tunnel.clock() - t0 < 1 do freed = freed + tunnel.collect() end
    local results = block:synchronize()
    block:terminate()
    freed = freed + tunnel.collect()
    local made = 0
    for i = 1, 2 do
      assert.is_true(results[i][1] > 0)
      made = made + 2 * results[i][1]
    end
    assert.are.equal(made, freed)
    assert.are.equal(live, live:get(1))
  end)
end)
