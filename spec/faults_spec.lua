-- Fault injection from Lua: when the core runs out of memory, a method
-- raises "<method>: out of memory", the structure is as it was, and the
-- next call works. tunnel.core._fault_alloc(n) makes the core's n-th
-- allocation from now fail (a test hook, not part of the API).
local tunnel = require('tunnel')
local fault = require('tunnel.core')._fault_alloc

-- pcall(f) with the n-th core allocation failing; injection is off again
-- afterwards whatever happened.
local function failing(n, f, ...)
  fault(n)
  local ok, err = pcall(f, ...)
  fault(0)
  return ok, err
end

describe('out of memory in the core', function()
  after_each(function() fault(0) end)

  it('has its hook outside the API: reachable by name, not listed', function()
    assert.are.equal('function', type(fault))
    for name in pairs(tunnel) do -- _VERSION: Lua's convention for modules
      if name ~= '_VERSION' then assert.are_not.equal('_', name:sub(1, 1), name) end
    end
  end)

  it('makes constructors raise a clear error', function()
    for _, case in ipairs({
      {'tunnel.Vector', tunnel.Vector},
      {'tunnel.Hash', tunnel.Hash},
      {'tunnel.Counter', tunnel.Counter},
      {'tunnel.Printer', tunnel.Printer},
      {'tunnel.Atomic', tunnel.Atomic, 5},
    }) do
      local ok, err = failing(1, case[2], case[3])
      assert.is_false(ok)
      assert.are.equal(case[1] .. ': out of memory', err)
      assert.is_truthy(case[2](case[3])) -- and then it works
    end
  end)

  it('leaves a vector as it was when a push cannot allocate', function()
    local v = tunnel.Vector()
    v:pushBack('a')
    local ok, err = failing(1, v.pushBack, v, 'b')
    assert.is_false(ok)
    assert.matches('^tunnel%.Vector:pushBack: .*out of memory', err)
    assert.are.equal(1, #v)
    assert.is_true(v:pushBack('b'))
    assert.are.same({'a', 'b'}, {v:popFront(), (v:popFront())})
  end)

  it('walks every allocation of a growing vector: each failure is clean', function()
    local v = tunnel.Vector()
    local n, failures = 0, 0
    for k = 1, 200 do
      local ok, err = failing(k, function()
        for i = 1, 40 do v:pushBack(i) end
      end)
      if ok then break end
      failures = failures + 1
      assert.matches('out of memory', err)
      -- What went in before the failure is intact and in order.
      local size = #v
      for i = 1, size do assert.are.equal(i, (v:get(i))) end
      v = tunnel.Vector()
      n = k
    end
    assert.is_true(failures > 0)
    assert.are.equal(failures, n)
  end)

  it('leaves a hash as it was when a new key cannot be stored', function()
    local h = tunnel.Hash()
    h:set('old', 1)
    local ok, err = failing(1, h.set, h, 'new key', {1, 2, 3})
    assert.is_false(ok)
    assert.matches('^tunnel%.Hash:set: .*out of memory', err)
    assert.are.equal(1, h:size())
    assert.is_nil((h:get('new key')))
    assert.is_true(h:set('new key', 2))
    assert.are.equal(2, h:size())
  end)

  it('makes a block that cannot start its threads raise, and the next one work', function()
    local raised = 0
    for k = 1, 30 do
      local ok, err = failing(k, tunnel.Block, 2)
      if ok then err:terminate() break end
      raised = raised + 1
      assert.matches('^tunnel%.Block', err)
    end
    assert.is_true(raised > 0)
    local b = tunnel.Block(2)
    b:run(function() return __threadid end)
    local r = b:synchronize()
    assert.are.equal(2, r[2][1])
    b:terminate()
  end)

  it('checks its argument', function()
    assert.has_error(function() fault(-1) end)
    assert.has_error(function() fault('x') end)
  end)
end)
