-- tunnel.Block:cancel and tunnel.cancelled: queued jobs are dropped, a
-- running job's waits raise "cancelled", running Lua code is stopped by a
-- hook (where the flavour runs hooks), and the block stays usable.
local tunnel = require('tunnel')
local backends = dofile('spec/support/backends.lua')
-- Bounds on how soon a cancel takes effect (liveness, not speed): wide,
-- and wider under a sanitizer or valgrind.
local SOON = dofile('spec/support/instrumented.lua') and 30 or 5
-- A bound on the waits for a cancelled job, which only a broken cancel
-- reaches (a failure, rather than a hang of the whole run).
local HANG = 60

-- Wait (in the main state) until pred() or `seconds` pass.
local function eventually(pred, seconds)
  local deadline = tunnel.clock() + (seconds or 10)
  while not pred() do
    if tunnel.clock() > deadline then return false end
    tunnel.sleep(0.01)
  end
  return true
end

describe('tunnel.Block:cancel', function()
  it('drops queued jobs with status false, "cancelled", and runs later ones', function()
    local gate = tunnel.Vector()
    local b = tunnel.Block(2)
    b:add(gate)
    local first = b:run(function(g) return g:popFront() end)
    local second = b:run(function() return 'never' end)
    local third = b:run(function() return 'never either' end)
    -- Cancel the two queued runs only: the first still waits for its item.
    assert.are.equal(2, b:cancel(second))
    assert.are.equal(2, b:cancel(third))
    gate:pushBack('a')
    gate:pushBack('b')
    local r, s = b:synchronize(HANG)
    assert.are.same({false, false}, {s[1], s[2]})
    assert.are.equal('cancelled', r[1][1])
    local r2, s2 = b:getResult(second)
    assert.are.same({false, false}, {s2[1], s2[2]})
    assert.are.equal('cancelled', r2[2][1])
    local r1, s1 = b:getResult(first)
    assert.are.same({true, true}, {s1[1], s1[2]})
    local got = {r1[1][1], r1[2][1]}
    table.sort(got)
    assert.are.same({'a', 'b'}, got)
    -- The block runs again.
    b:run(function() return __threadid * 10 end)
    local r3, s3 = b:synchronize(HANG)
    assert.are.same({true, true}, {s3[1], s3[2]})
    assert.are.same({10, 20}, {r3[1][1], r3[2][1]})
    b:terminate()
  end)

  it('wakes a job blocked in tunnel.sleep', function()
    local b = tunnel.Block(1)
    local started = tunnel.Counter(0)
    b:add(started)
    b:run(function(c) c:increase() tunnel.sleep(1000) return 'slept' end)
    assert.is_true(eventually(function() return started:get() == 1 end))
    local t0 = tunnel.clock()
    assert.are.equal(1, b:cancel())
    local r, s = b:synchronize(HANG)
    assert.is_true(tunnel.clock() - t0 < SOON)
    assert.is_false(s[1])
    assert.matches('tunnel.sleep: cancelled', r[1][1], 1, true)
    b:terminate()
  end)

  it('wakes a job blocked in synchronize of another block', function()
    -- Blocks do not travel to other threads: the job makes its own.
    local hold = tunnel.Vector()
    local started = tunnel.Counter(0)
    local outer = tunnel.Block(1)
    outer:add(hold, started)
    outer:run(function(v, c)
      local inner = tunnel.Block(1)
      inner:add(v)
      inner:run(function(vec) return vec:popFront() end)
      c:increase()
      local ok, err = pcall(inner.synchronize, inner)
      -- Let the inner job end; its block stops when collected (waiting
      -- for it here would raise too: the request holds for the job).
      v:pushBack('release the inner job')
      return ok, err
    end)
    assert.is_true(eventually(function() return started:get() == 1 end))
    tunnel.sleep(0.05)
    assert.are.equal(1, outer:cancel())
    local r, s = outer:synchronize(HANG)
    assert.is_true(s[1])
    assert.is_false(r[1][1])
    assert.matches('synchronize: cancelled', r[1][2], 1, true)
    outer:terminate()
  end)

  it('stops running Lua code through a hook, where the flavour runs hooks', function()
    if os.getenv('TSAN_OPTIONS') then
      -- ThreadSanitizer runs a signal's handler when the thread next calls
      -- into its runtime, which a loop in the uninstrumented liblua never
      -- does: the SIGURG that sets the hook would wait for ever.
      pending('under ThreadSanitizer signal handlers are deferred')
      return
    end
    local b = tunnel.Block(1)
    local started = tunnel.Counter(0)
    b:add(started)
    b:run(function(c)
      -- JIT-compiled LuaJIT loops run no hooks (documented): this one is
      -- interpreted there.
      if jit then jit.off(true, true) end
      c:increase()
      local x = 0
      while true do x = x + 1 end
    end)
    assert.is_true(eventually(function() return started:get() == 1 end))
    assert.are.equal(1, b:cancel())
    local r, s = b:synchronize(HANG)
    assert.is_false(s[1])
    assert.are.equal('cancelled', r[1][1])
    b:terminate()
  end)

  it('lets a job that catches the cancel clean up; tunnel.cancelled() tells it', function()
    local b = tunnel.Block(1)
    local v = tunnel.Vector()
    local out = tunnel.Vector()
    local started = tunnel.Counter(0)
    b:add(v, out, started)
    b:run(function(inbox, outbox, c)
      local before = tunnel.cancelled()
      c:increase()
      local ok, err = pcall(inbox.popFront, inbox)
      -- One request raises once: this push and the return go through.
      outbox:pushBack({before = before, ok = ok, err = err,
                       after = tunnel.cancelled()})
      -- Later waits still raise: the request holds for the whole job.
      local ok2, err2 = pcall(inbox.popFront, inbox)
      return ok2, err2
    end)
    assert.is_true(eventually(function() return started:get() == 1 end))
    tunnel.sleep(0.1)
    assert.are.equal(1, b:cancel())
    local note = out:popFront(10)
    assert.is_false(note.before)
    assert.is_false(note.ok)
    assert.matches('popFront: cancelled', note.err, 1, true)
    assert.is_true(note.after)
    local r, s = b:synchronize(HANG)
    assert.is_true(s[1])
    assert.is_false(r[1][1])
    assert.matches('popFront: cancelled', r[1][2], 1, true)
    -- The next job starts uncancelled.
    b:run(function() return tunnel.cancelled() end)
    local r2 = b:synchronize(HANG)
    assert.is_false(r2[1][1])
    assert.is_false(tunnel.cancelled()) -- the main state is never cancelled
    b:terminate()
  end)

  it('reaches nothing on an idle or terminated block, and checks its argument', function()
    local b = tunnel.Block(1)
    assert.are.equal(0, b:cancel())
    assert.are.equal(0, b:cancel(5))
    assert.has_error(function() b:cancel(0) end,
                     'tunnel.Block:cancel: run id must be >= 1 (got 0)')
    assert.has_error(function() b:cancel('x') end,
                     'tunnel.Block:cancel: run id must be an integer (got string)')
    b:terminate()
    assert.are.equal(0, b:cancel())
  end)

  for _, backend in ipairs(backends) do
    it('wakes a job blocked in popFront (' .. backend.name .. ')', function()
      local v = backend.Vector()
      local b = tunnel.Block(2)
      local started = tunnel.Counter(0)
      b:add(v, started)
      local id = b:run(function(vec, c) c:increase() return vec:popFront() end)
      assert.is_true(eventually(function() return started:get() == 2 end))
      tunnel.sleep(0.1)
      local t0 = tunnel.clock()
      assert.are.equal(2, b:cancel(id))
      local r, s = b:synchronize(HANG)
      assert.is_true(tunnel.clock() - t0 < SOON)
      for i = 1, 2 do
        assert.is_false(s[i])
        assert.matches('popFront: cancelled', r[i][1], 1, true)
      end
      -- Nothing was consumed: the vector works as before.
      v:pushBack('x')
      assert.are.equal('x', v:popFront(5))
      b:terminate()
    end)
  end
end)
