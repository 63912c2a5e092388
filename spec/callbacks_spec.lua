-- read/write callbacks are atomic, as in the original: while a write
-- callback runs, no other thread's operation on the structure happens (they
-- wait; their Async twins return nil); while a read callback runs, no
-- modification happens. A callback that locks its own object again raises
-- instead of deadlocking. (Counter's: spec/counter_spec.lua.)
local tunnel = require('tunnel')
local BACKENDS = dofile('spec/support/backends.lua')

-- Run `job(structure, entered, release)` on a block thread; it signals
-- `entered` once inside its callback and waits there for `release`.
local function hold(structure, job)
  local entered, release = tunnel.Counter(), tunnel.Counter()
  local b = tunnel.Block(1)
  b:add(structure, entered, release)
  b:run(job)
  local deadline = tunnel.clock() + 10
  while entered:get() == 0 and tunnel.clock() < deadline do tunnel.sleep(0.001) end
  assert.are.equal(1, entered:get(), 'the callback never started')
  return b, release
end

-- What a held callback runs (crosses to the block thread as an upvalue):
-- say it is inside, wait to be let go.
local function wait_inside(entered, release)
  entered:increase()
  local deadline = tunnel.clock() + 10
  while release:get() == 0 and tunnel.clock() < deadline do tunnel.sleep(0.001) end
end

local function finish(b)
  local result, status = b:synchronize()
  b:terminate()
  assert.is_true(status[1], tostring(result[1] and result[1][1]))
  return result[1]
end

describe('callbacks (local)', function()
  it('a Vector set from another thread during a write callback lands after it', function()
    local v = tunnel.Vector()
    v:pushBack(1)
    local b, release = hold(v, function(vector, entered, release_)
      return vector:write(1, function(x)
        wait_inside(entered, release_)
        return x + 10
      end)
    end)
    -- Async twins of every kind return nil at once while the write runs
    assert.is_nil((v:setAsync(1, 'async')))
    assert.is_nil((v:getAsync(1)))
    assert.is_nil((v:pushBackAsync(2)))
    assert.is_nil((v:popFrontAsync()))
    assert.is_nil((v:closeAsync()))
    -- a busy writeAsync: nil, nil (status, new value), as in the original
    assert.are.equal(2, select('#', v:writeAsync(1, function() return 0 end)))
    assert.is_false(v:isClosed())
    -- a sync set from another thread waits for the callback
    local setter = tunnel.Block(1)
    setter:add(v)
    setter:run(function(vector) return vector:set(1, 'later') end)
    tunnel.sleep(0.05)
    assert.is_nil(setter:getResult()[1])
    release:increase()
    local r = finish(b)
    assert.are.equal(true, r[1])
    assert.are.equal(11, r[2])
    finish(setter)
    assert.are.equal('later', v:get(1))
    assert.are.equal(1, #v)
  end)

  it('a Hash set from another thread during a write callback lands after it', function()
    local h = tunnel.Hash()
    h:set('k', 1)
    local b, release = hold(h, function(hash, entered, release_)
      return hash:write('k', function(x)
        wait_inside(entered, release_)
        return x + 10
      end)
    end)
    assert.is_nil((h:setAsync('k', 'async')))
    assert.is_nil((h:setAsync('other', 'async')))
    assert.is_nil((h:getAsync('k')))
    local setter = tunnel.Block(1)
    setter:add(h)
    setter:run(function(hash) return hash:set('k', 'later') end)
    tunnel.sleep(0.05)
    assert.is_nil(setter:getResult()[1])
    release:increase()
    local r = finish(b)
    assert.are.equal(true, r[1])
    assert.are.equal(11, r[2])
    finish(setter)
    assert.are.equal('later', h:get('k'))
    assert.is_nil(h:get('other'))
  end)

  it('a read callback lets other threads read but not change', function()
    local v = tunnel.Vector()
    v:pushBack(1)
    local b, release = hold(v, function(vector, entered, release_)
      return vector:read(1, function(x)
        wait_inside(entered, release_)
        return x
      end)
    end)
    assert.are.equal(1, v:getAsync(1))
    assert.are.equal(1, v:readAsync(1, function(x) return x end))
    assert.is_nil((v:setAsync(1, 2)))
    assert.is_nil((v:pushBackAsync(2)))
    assert.is_nil((v:writeAsync(1, function() return 3 end)))
    release:increase()
    finish(b)
    assert.are.equal(1, (v:get(1)))
  end)

  it('the callback\'s own operations on its structure pass', function()
    local v = tunnel.Vector()
    v:pushBack(1)
    v:pushBack(2)
    local status, new = v:write(1, function(x)
      v:set(2, v:get(2) + x) -- a read-modify-write of two slots at once
      v:pushBack('end')
      return x * 10
    end)
    assert.is_true(status)
    assert.are.equal(10, new)
    assert.are.same({10, 3, 'end'}, {(v:get(1)), (v:get(2)), (v:get(3))})
  end)
end)

for _, B in ipairs(BACKENDS) do
  describe('re-entrant callbacks (' .. B.name .. ')', function()
    -- Each of these hung forever before: they must raise, and at once.
    local function raises_at_once(f, pattern)
      local t0 = tunnel.clock()
      local ok, err = pcall(f)
      assert.is_false(ok)
      assert.matches(pattern, err)
      assert.is_true(tunnel.clock() - t0 < 1, 'took ' .. (tunnel.clock() - t0) .. ' s')
    end

    it('Vector:write inside Vector:write, and read inside write', function()
      local v = B.Vector()
      v:pushBack(1)
      raises_at_once(function()
        v:write(1, function(x) v:write(1, function(y) return y end) return x end)
      end, '^tunnel%.Vector:write: would deadlock')
      raises_at_once(function()
        v:write(1, function(x) v:read(1, function(y) return y end) return x end)
      end, '^tunnel%.Vector:read: would deadlock')
      raises_at_once(function()
        v:read(1, function() v:write(1, function(y) return y end) end)
      end, '^tunnel%.Vector:write: would deadlock')
      assert.are.equal(1, (v:get(1))) -- unchanged, and the locks are free
      assert.are.same({true, 2}, {v:writeAsync(1, function(x) return x + 1 end)})
    end)

    it('Hash:write inside Hash:write', function()
      local h = B.Hash()
      h:set('k', 1)
      raises_at_once(function()
        h:write('k', function(x) h:write('j', function() return 2 end) return x end)
      end, '^tunnel%.Hash:write: would deadlock')
      assert.are.equal(1, h:get('k'))
      assert.is_nil(h:get('j'))
    end)

    it('Atomic:write inside Atomic:write or read', function()
      local a = B.Atomic({n = 1})
      raises_at_once(function()
        a:write(function() a:write(function() end) end)
      end, '^tunnel%.Atomic:write: would deadlock')
      raises_at_once(function()
        a:read(function() a:write(function() end) end)
      end, '^tunnel%.Atomic:write: would deadlock')
      raises_at_once(function()
        a:write(function() a:read(function() end) end)
      end, '^tunnel%.Atomic:read: would deadlock')
      assert.are.equal(1, a:read(function(d) return d.n end))
    end)

    it('sort from a comparator that locks the vector', function()
      local v = B.Vector()
      for _, x in ipairs({3, 1, 2}) do v:pushBack(x) end
      raises_at_once(function()
        v:sort(function(a, b)
          v:read(1, function() end)
          return a < b
        end)
      end, '^tunnel%.Vector:read: would deadlock')
      assert.are.same({3, 1, 2}, {(v:get(1)), (v:get(2)), (v:get(3))})
      assert.is_true(v:sort())
      assert.are.same({1, 2, 3}, {(v:get(1)), (v:get(2)), (v:get(3))})
    end)
  end)
end
