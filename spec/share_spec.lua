-- Shared tables and tunnel.Share: tables every thread reads and writes through.
-- No spec here makes a shared table that contains itself (such a cycle is
-- never freed, and the specs run under valgrind), except the one that says so.
local tunnel = require('tunnel')

local HAS_PAIRS = _VERSION ~= 'Lua 5.1' -- 5.1 and LuaJIT ignore __pairs

-- A Block of n threads running fn(args...); returns the per-thread results
-- after checking that every thread returned.
local function run_block(n, fn, ...)
  local b = tunnel.Block(n)
  b:add(...)
  b:run(fn)
  local result, status = b:synchronize()
  b:terminate()
  for i = 1, n do
    assert.is_true(status[i], tostring(result[i] and result[i][1]))
  end
  return result
end

local function count_keys(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n
end

describe('shared tables', function()
  describe('reading and writing', function()
    it('gets and sets string, number and boolean keys', function()
      local t = tunnel.Share({}).data
      t.name, t[1], t[2.5], t[true], t[false] = 'x', 'one', 'f', 'yes', 'no'
      assert.are.equal('x', t.name)
      assert.are.equal('one', t[1])
      assert.are.equal('f', t[2.5])
      assert.are.equal('yes', t[true])
      assert.are.equal('no', t[false])
      assert.is_nil(t.absent)
    end)

    it('finds an integer key by an equal float, as Lua does', function()
      local t = tunnel.Share({[3] = 'c'}).data
      assert.are.equal('c', t[3.0])
      t[4.0] = 'd'
      assert.are.equal('d', t[4])
    end)

    it('deletes a key set to nil', function()
      local t = tunnel.Share({a = 1, b = 2}).data
      t.a = nil
      assert.is_nil(t.a)
      assert.are.equal(2, t.b)
      assert.are.equal(1, count_keys(tunnel.snapshot(t)))
    end)

    it('reads nil for a nil or NaN key, as Lua does', function()
      local t = tunnel.Share({}).data
      assert.is_nil(t[nil])
      assert.is_nil(t[0 / 0])
    end)

    it('stores values of every crossable kind', function()
      local t = tunnel.Share({}).data
      t.s, t.i, t.f, t.b = 'a\0b', 42, 0.5, false
      t.fn = function(x) return x * 2 end
      assert.are.equal('a\0b', t.s)
      assert.are.equal(42, t.i)
      assert.are.equal(0.5, t.f)
      assert.is_false(t.b)
      assert.are.equal(10, t.fn(5))
    end)

    it('has no methods: every string key is data', function()
      local t = tunnel.Share({}).data
      assert.is_nil(t.get)
      assert.is_nil(t.size)
      t.size = 3
      assert.are.equal(3, t.size)
    end)

    it('prints as tunnel.SharedTable: 0x...', function()
      local t = tunnel.Share({}).data
      assert.matches('^tunnel%.SharedTable: 0x%x+$', tostring(t))
    end)
  end)

  describe('length', function()
    it('is the number of items of an array', function()
      local t = tunnel.Share({'a', 'b', 'c'}).data
      assert.are.equal(3, #t)
      t[4] = 'd'
      assert.are.equal(4, #t)
      t[4] = nil
      assert.are.equal(3, #t)
      assert.are.equal(0, #tunnel.Share({}).data)
      assert.are.equal(0, #tunnel.Share({x = 1}).data)
    end)

    it('is a border when other keys are present', function()
      local t = tunnel.Share({x = 1, y = 2, z = 3}).data
      for i = 1, 100 do t[i] = i end
      assert.are.equal(100, #t)
      t[1000] = true
      local n = #t
      assert.is_not_nil(t[n])
      assert.is_nil(t[n + 1])
    end)

    it('is a border of a table with holes', function()
      local t = tunnel.Share({}).data
      for _, i in ipairs({1, 2, 3, 5, 6, 9, 17, 33}) do t[i] = i end
      local n = #t
      assert.is_true(n == 0 or t[n] ~= nil)
      assert.is_nil(t[n + 1])
    end)
  end)

  describe('conversion of plain tables', function()
    it('turns nested plain tables into shared tables', function()
      local t = tunnel.Share({a = {b = {c = 'deep'}}}).data
      assert.matches('^tunnel%.SharedTable', tostring(t.a))
      assert.matches('^tunnel%.SharedTable', tostring(t.a.b))
      assert.are.equal('deep', t.a.b.c)
    end)

    it('converts a plain table assigned into a shared table', function()
      local t = tunnel.Share({}).data
      local plain = {1, 2, inner = {x = 1}}
      t.p = plain
      plain.inner.x = 99 -- a copy was made: the plain table stays plain
      assert.are.equal(1, t.p.inner.x)
      assert.are.equal(2, #t.p)
    end)

    it('gives the same shared table every time', function()
      local s = tunnel.Share({a = {}})
      assert.are.equal(s.data, s.data)
      assert.is_true(rawequal(s.data, s.data))
      assert.is_true(rawequal(s.data.a, s.data.a))
    end)

    it('keeps a sub-table met twice as one shared table', function()
      local sub = {v = 1}
      local t = tunnel.Share({left = sub, right = sub}).data
      assert.is_true(rawequal(t.left, t.right))
      t.left.v = 2
      assert.are.equal(2, t.right.v)
    end)

    it('keeps a cycle as a cycle (never freed: reference counting)', function()
      local plain = {name = 'loop'}
      plain.self = plain
      local t = tunnel.Share(plain).data
      assert.is_true(rawequal(t, t.self))
      assert.are.equal('loop', t.self.self.name)
      t.self = nil -- break the cycle so that it is freed after all
    end)

    it('stores a shared table by reference', function()
      local a = tunnel.Share({}).data
      local b = tunnel.Share({}).data
      b.link = a
      a.x = 'seen through b'
      assert.is_true(rawequal(a, b.link))
      assert.are.equal('seen through b', b.link.x)
    end)

    it('stores other tunnel objects by reference', function()
      local t = tunnel.Share({}).data
      local v = tunnel.Vector()
      t.v = v
      t.v:pushBack(1)
      assert.are.equal(1, v:size())
      assert.are.equal(v, t.v)
    end)
  end)

  describe('iteration', function()
    it('tunnel.snapshot copies keys and values into a plain table', function()
      local t = tunnel.Share({1, 2, k = 'v', sub = {}}).data
      local copy = tunnel.snapshot(t)
      assert.is_nil(getmetatable(copy))
      assert.are.equal(1, copy[1])
      assert.are.equal(2, copy[2])
      assert.are.equal('v', copy.k)
      assert.is_true(rawequal(t.sub, copy.sub)) -- shallow: stays shared
      assert.are.equal(4, count_keys(copy))
      copy.k = 'changed' -- a copy
      assert.are.equal('v', t.k)
    end)

    it('tunnel.snapshot raises for anything but a shared table', function()
      for _, bad in ipairs({{}, 1, 'x', tunnel.Vector()}) do
        local ok, err = pcall(tunnel.snapshot, bad)
        assert.is_false(ok)
        assert.matches('^tunnel%.snapshot: argument must be a shared table', err)
      end
    end)

    if HAS_PAIRS then
      it('pairs walks a snapshot', function()
        local t = tunnel.Share({a = 1, b = 2, c = 3}).data
        local seen = {}
        for k, v in pairs(t) do
          seen[k] = v
          t.d = 4 -- not in the snapshot being walked
        end
        assert.are.same({a = 1, b = 2, c = 3}, seen)
        assert.are.equal(4, t.d)
      end)
    end
  end)

  describe('bad input', function()
    it('raises for a key that is not a string, number or boolean', function()
      local t = tunnel.Share({}).data
      for _, bad in ipairs({{}, function() end, tunnel.Vector()}) do
        local ok, err = pcall(function() t[bad] = 1 end)
        assert.is_false(ok)
        assert.matches('^tunnel%.SharedTable:__newindex: key must be a string, ' ..
          'number or boolean', err)
        ok, err = pcall(function() return t[bad] end)
        assert.is_false(ok)
        assert.matches('^tunnel%.SharedTable:__index: key must be', err)
      end
      local ok, err = pcall(function() t[0 / 0] = 1 end)
      assert.is_false(ok)
      assert.matches('key must not be NaN', err)
      t.ok = 1 -- still works
      assert.are.equal(1, t.ok)
    end)

    it('raises for a value that cannot cross and changes nothing', function()
      local t = tunnel.Share({keep = 1}).data
      local ok, err = pcall(function()
        t.x = {fine = 1, bad = coroutine.create(function() end)}
      end)
      assert.is_false(ok)
      assert.matches('^tunnel%.SharedTable:__newindex: cannot send value', err)
      ok = pcall(function() t.y = setmetatable({}, {}) end)
      assert.is_false(ok)
      ok = pcall(function() t.z = {[{}] = 1} end)
      assert.is_false(ok)
      assert.is_nil(t.x)
      assert.is_nil(t.y)
      assert.is_nil(t.z)
      assert.are.same({keep = 1}, tunnel.snapshot(t))
    end)

    it('raises for plain tables nested too deeply', function()
      local deep = {}
      local t = deep
      for _ = 1, 300 do t.next = {}; t = t.next end
      local s = tunnel.Share({})
      local ok, err = pcall(function() s.data.deep = deep end)
      assert.is_false(ok)
      assert.matches('^tunnel%.SharedTable:__newindex: cannot send value at value%.next%.next.*: nesting too deep', err)
      assert.is_true(#err < 200) -- the path is shortened
      assert.is_nil(s.data.deep)
    end)

    it('raises in Share for data that cannot cross', function()
      local ok, err = pcall(tunnel.Share, {co = coroutine.create(function() end)})
      assert.is_false(ok)
      assert.matches('^tunnel%.Share: cannot send value', err)
      ok, err = pcall(tunnel.Share, {[{}] = 1})
      assert.is_false(ok)
      assert.matches('^tunnel%.Share: key must be', err)
    end)
  end)

  describe('across threads', function()
    it('shows the main thread what Block threads wrote', function()
      local t = tunnel.Share({}).data
      run_block(4, function(shared)
        shared[__threadid] = __threadid * 10
        shared['name' .. __threadid] = {id = __threadid, list = {__threadid}}
      end, t)
      assert.are.equal(4, #t)
      for i = 1, 4 do
        assert.are.equal(i * 10, t[i])
        assert.are.equal(i, t['name' .. i].id)
        assert.are.equal(i, t['name' .. i].list[1])
      end
    end)

    it('shows Block threads what the main thread wrote, and the same nested table', function()
      local t = tunnel.Share({greeting = 'hi', nested = {n = 7}}).data
      local result = run_block(2, function(shared)
        shared.nested['from' .. __threadid] = true
        return shared.greeting, shared.nested.n, #shared
      end, t)
      for i = 1, 2 do
        assert.are.same({'hi', 7, 0, n = 3}, result[i])
        assert.is_true(t.nested['from' .. i])
      end
    end)

    it('passes a shared table by reference, so a thread sees later writes', function()
      local t = tunnel.Share({}).data
      local gate = tunnel.Vector()
      local b = tunnel.Block(1)
      b:add(t, gate)
      b:run(function(shared, g)
        g:popFront()
        return shared.later
      end)
      t.later = 'written after the run started'
      gate:pushBack(true)
      local result, status = b:synchronize()
      b:terminate()
      assert.is_true(status[1])
      assert.are.equal('written after the run started', result[1][1])
    end)
  end)
end)

describe('tunnel.Share', function()
  it('holds a plain table as a shared table in .data', function()
    local s = tunnel.Share({x = 1})
    assert.matches('^tunnel%.SharedTable', tostring(s.data))
    assert.are.equal(1, s.data.x)
    assert.matches('^tunnel%.Share: 0x%x+$', tostring(s))
  end)

  it('holds any other crossable value as it is', function()
    assert.are.equal(5, tunnel.Share(5).data)
    assert.are.equal('s', tunnel.Share('s').data)
    assert.is_nil(tunnel.Share().data)
    local v = tunnel.Vector()
    assert.are.equal(v, tunnel.Share(v).data)
  end)

  it('access returns the callback\'s results for the data', function()
    local s = tunnel.Share({n = 2})
    local a, b = s:access(function(data)
      data.n = data.n + 1
      return data.n, 'second'
    end)
    assert.are.equal(3, a)
    assert.are.equal('second', b)
    assert.are.equal(3, s.data.n)
  end)

  it('access propagates an error of the callback', function()
    local s = tunnel.Share({})
    local ok, err = pcall(s.access, s, function() error('boom', 0) end)
    assert.is_false(ok)
    assert.are.equal('boom', err)
    assert.are.equal(1, s:access(function() return 1 end))
  end)

  it('rejects a callback that is not a function, and a wrong self', function()
    local s = tunnel.Share({})
    local ok, err = pcall(s.access, s, nil)
    assert.is_false(ok)
    assert.matches('^tunnel%.Share:access: callback must be a function %(got nil%)', err)
    ok, err = pcall(s.access, tunnel.Atomic({}), function() end)
    assert.is_false(ok)
    assert.matches('^tunnel%.Share:access: self is a userdata, not a tunnel%.Share', err)
  end)

  it('refuses to replace its data', function()
    local s = tunnel.Share({})
    local ok, err = pcall(function() s.data = {} end)
    assert.is_false(ok)
    assert.matches('^tunnel%.Share: cannot set field data', err)
  end)

  it('crosses threads by reference with its data', function()
    local s = tunnel.Share({list = {}})
    run_block(3, function(share)
      share.data.list[__threadid] = share:access(function(d) return d end) == share.data
    end, s)
    assert.are.same({true, true, true}, tunnel.snapshot(s.data.list))
  end)
end)
