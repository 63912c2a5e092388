-- Stress: 8 block threads (more threads than cores, on purpose) on one
-- structure, bounded in time, with the final state checked exactly.
-- TUNNEL_STRESS_SECONDS sets the length of each storm (default 1).
local tunnel = require('tunnel')

local SECONDS = tonumber(os.getenv('TUNNEL_STRESS_SECONDS')) or 1

describe('stress', function()
  it('8 threads mixing pushBack, pushFront, popFront, popBack, Async calls ' ..
     'and timeouts on one Vector of size hint 4, then close: every value ' ..
     'popped exactly once, sums equal', function()
    local v = tunnel.Vector(4)
    local b = tunnel.Block(8)
    b:add(v, tunnel.clock() + SECONDS)
    b:run(function(vec, deadline)
      local tunnel = require('tunnel') -- luacheck: ignore 431 (not the upvalue)
      local id = __threadid
      local seed = id * 7919
      local function rnd(n) -- a small LCG: the same on every Lua
        seed = (seed * 1103515245 + 12345) % 2147483648
        return seed % n
      end
      if id <= 4 then -- a producer: values id * 10^6 + seq
        local seq, sum, refused = 0, 0, 0
        while tunnel.clock() < deadline do
          local value = id * 1000000 + seq + 1
          local k = rnd(4)
          local ok, pushed
          if k == 0 then
            ok, pushed = pcall(vec.pushBack, vec, value)
          elseif k == 1 then
            ok, pushed = pcall(vec.pushFront, vec, value, 0.002)
          elseif k == 2 then
            ok, pushed = pcall(vec.pushBackAsync, vec, value)
          else
            ok, pushed = pcall(vec.pushBack, vec, value, 0)
          end
          if not ok then -- only the close may refuse a push
            assert(tostring(pushed):find('vector is closed'), pushed)
            refused = refused + 1
            break
          end
          if pushed then
            seq = seq + 1
            sum = sum + value
          end
        end
        return 'producer', seq, sum, refused
      else -- a consumer: pops until the vector is closed and drained
        local got = {}
        while true do
          local k = rnd(4)
          local value, ok
          if k == 0 then
            value, ok = vec:popFront()
          elseif k == 1 then
            value, ok = vec:popBack(0.002)
          elseif k == 2 then
            value, ok = vec:popFrontAsync()
          else
            value, ok = vec:popBack(0)
          end
          if ok == false then break end -- closed and drained
          if ok then got[#got + 1] = value end
        end
        return 'consumer', got
      end
    end)
    tunnel.sleep(SECONDS + 0.1)
    v:close() -- wakes every waiting call: pushes raise, pops drain
    local result, status = b:synchronize()
    b:terminate()
    local produced, sum, seen, popped, popped_sum = 0, 0, {}, 0, 0
    for i = 1, 8 do
      assert.is_true(status[i], tostring(result[i][1]))
      local r = result[i]
      if r[1] == 'producer' then
        produced = produced + r[2]
        sum = sum + r[3]
        -- each producer's values are id * 10^6 + 1 .. id * 10^6 + seq
        for s = 1, r[2] do seen[i * 1000000 + s] = 0 end
      else
        for _, value in ipairs(r[2]) do
          assert.are.equal(0, seen[value], 'value ' .. value .. ' popped twice or never pushed')
          seen[value] = 1
          popped = popped + 1
          popped_sum = popped_sum + value
        end
      end
    end
    local lost = 0
    for _, n in pairs(seen) do if n == 0 then lost = lost + 1 end end
    assert.are.equal(0, lost)
    assert.are.equal(produced, popped)
    assert.are.equal(sum, popped_sum)
    assert.are.equal(0, v:size())
    assert.is_true(produced > 100, 'only ' .. produced .. ' values moved')
  end)

  it('8 threads increasing and decreasing one Counter by known steps: ' ..
     'the final value is exact', function()
    local c = tunnel.Counter(1000)
    local b = tunnel.Block(8)
    local N = 4000
    b:add(c, N)
    b:run(function(counter, n)
      for k = 1, n do
        local step = (k + __threadid) % 7 - 3
        if k % 3 == 0 then
          counter:increase(step)
        elseif k % 3 == 1 then
          counter:decrease(-step)
        else
          counter:increaseAsync(step)
        end
      end
    end)
    local result, status = b:synchronize()
    b:terminate()
    local expect = 1000
    for id = 1, 8 do
      for k = 1, N do expect = expect + (k + id) % 7 - 3 end
    end
    for i = 1, 8 do assert.is_true(status[i], tostring(result[i][1])) end
    assert.are.equal(expect, c:get())
  end)

  it('makes and destroys blocks in a loop while their jobs hold a Vector: ' ..
     'every job runs once, the Vector holds exactly their values', function()
    local v = tunnel.Vector()
    local deadline = tunnel.clock() + SECONDS
    local blocks, expect, expect_sum = 0, 0, 0
    while tunnel.clock() < deadline or blocks < 5 do
      blocks = blocks + 1
      local size = blocks % 3 + 1
      local b = tunnel.Block(size)
      b:add(v, blocks)
      local runs = blocks % 4 + 1
      for _ = 1, runs do
        b:run(function(vec, tag) vec:pushBack(tag * 10 + __threadid) end)
      end
      expect = expect + runs * size
      for id = 1, size do expect_sum = expect_sum + runs * (blocks * 10 + id) end
      if blocks % 2 == 0 then b:synchronize() end
      if blocks % 3 == 0 then
        b = nil -- luacheck: ignore 311 (dropped: its __gc terminates it after its queued jobs)
        collectgarbage()
        collectgarbage()
      else
        b:terminate() -- finishes the queued jobs first
      end
    end
    -- The dropped blocks may still be finishing: their jobs are queued.
    local until_ = tunnel.clock() + 10
    while v:size() < expect and tunnel.clock() < until_ do tunnel.sleep(0.01) end
    assert.are.equal(expect, v:size())
    local sum = 0
    for _, x in v:iterator() do sum = sum + x end
    assert.are.equal(expect_sum, sum)
  end)
end)
