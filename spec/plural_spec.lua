-- tunnel.Plural: many structures of one kind; Vectors, Hashes, Counters.
local tunnel = require('tunnel')

describe('tunnel.Plural', function()
  describe('construction', function()
    it('holds size objects, each made by constructor(...)', function()
      local p = tunnel.Plural(3, tunnel.Counter, 7)
      assert.are.equal(3, #p)
      assert.matches('^tunnel%.Plural: 0x%x+$', tostring(p))
      for i = 1, 3 do
        assert.matches('^tunnel%.Counter', tostring(p[i]))
        assert.are.equal(7, p[i]:get())
      end
      p[1]:increase()
      assert.are.equal(8, p[1]:get())
      assert.are.equal(7, p[2]:get()) -- distinct objects
    end)

    it('calls the constructor once per element, in order, in this thread', function()
      local calls = {}
      local p = tunnel.Plural(4, function(a, b)
        calls[#calls + 1] = a .. b
        return tunnel.Counter(#calls)
      end, 'x', 'y')
      assert.are.same({'xy', 'xy', 'xy', 'xy'}, calls)
      for i = 1, 4 do assert.are.equal(i, p[i]:get()) end
    end)

    it('accepts a callable table as constructor', function()
      local ctor = setmetatable({}, {__call = function() return tunnel.Vector() end})
      assert.are.equal(2, #tunnel.Plural(2, ctor))
    end)

    it('holds shared tables too', function()
      local p = tunnel.Plural(2, function() return tunnel.Share({n = 0}).data end)
      p[1].n = 5
      assert.are.equal(5, p[1].n)
      assert.are.equal(0, p[2].n)
    end)
  end)

  describe('access', function()
    it('gets by plural[i] and plural:get(i), the same object', function()
      local p = tunnel.Vectors(2)
      assert.are.equal(p[1], p:get(1))
      assert.is_true(rawequal(p[2], p:get(2)))
      assert.are_not.equal(p[1], p[2])
    end)

    it('set replaces an element, returning true and the old one', function()
      local p = tunnel.Counters(2)
      local old = p[2]
      local c = tunnel.Counter(100)
      local ok, prev = p:set(2, c)
      assert.is_true(ok)
      assert.are.equal(old, prev)
      assert.are.equal(100, p[2]:get())
      p[1] = tunnel.Counter(50)
      assert.are.equal(50, p:get(1):get())
      assert.are.equal(2, #p)
    end)

    it('doAll returns the first result of callback(i, plural[i]) for each i', function()
      local p = tunnel.Counters(3)
      local t = p:doAll(function(i, c)
        return c:increase(i * 10), 'ignored'
      end)
      assert.are.same({10, 20, 30}, t)
      assert.are.equal(30, p[3]:get())
    end)

    it('doAll propagates an error of the callback', function()
      local p = tunnel.Counters(2)
      local ok, err = pcall(p.doAll, p, function(i) if i == 2 then error('two', 0) end end)
      assert.is_false(ok)
      assert.are.equal('two', err)
    end)

    it('reads nil for a field that is no method', function()
      local p = tunnel.Vectors(1)
      assert.is_nil(p.nothing)
      assert.is_nil(p[true])
    end)
  end)

  -- The original kept its objects in a Lua table (data[i]) and checked
  -- nothing: these are its permissive behaviours that were no bug.
  describe('as permissive as the original', function()
    it('may have size 0, and shortcuts too', function()
      local p = tunnel.Plural(0, tunnel.Vector)
      assert.are.equal(0, #p)
      assert.is_nil(p[1])
      assert.are.same({}, p:doAll(function() error('never called') end))
      assert.are.equal(0, #tunnel.Vectors(0))
      assert.are.equal(0, #tunnel.Counters(0, 5))
      local calls = 0
      tunnel.Plural(0, function() calls = calls + 1 end)
      assert.are.equal(0, calls)
    end)

    it('gets nil for an integer index outside 1..#plural', function()
      local p = tunnel.Counters(2)
      for _, out in ipairs({0, -1, 3, 100, 2 ^ 40, -2 ^ 40}) do
        assert.is_nil(p:get(out))
        assert.is_nil(p[out])
      end
      assert.are.equal(2, #p)
      assert.are.equal(1, p[2]:increase())
    end)

    it('grows when set past the end, with empty slots between', function()
      local p = tunnel.Counters(1)
      local ok, old = p:set(2, tunnel.Counter(20))
      assert.is_true(ok)
      assert.is_nil(old)
      assert.are.equal(2, #p)
      p[5] = tunnel.Counter(50)
      assert.are.equal(5, #p)
      assert.is_nil(p[3])
      assert.is_nil(p:get(4))
      assert.are.equal(50, p[5]:get())
      assert.are.equal(20, p:get(2):get())
      -- doAll visits the objects only, in order
      local seen = {}
      local t = p:doAll(function(i, c) seen[#seen + 1] = i; return c:get() end)
      assert.are.same({1, 2, 5}, seen)
      assert.are.same({0, 20}, {t[1], t[2]})
      assert.is_nil(t[3])
      assert.is_nil(t[4])
      assert.are.equal(50, t[5])
    end)

    it('empties a slot by setting nil, keeping the size', function()
      local p = tunnel.Counters(3)
      local second = p[2]
      local ok, old = p:set(2, nil)
      assert.is_true(ok)
      assert.are.equal(second, old)
      assert.is_nil(p[2])
      assert.are.equal(3, #p)
      p[3] = nil
      assert.is_nil(p:get(3))
      assert.are.equal(3, #p)
      p[2] = second
      assert.are.equal(second, p[2])
    end)

    it('accepts objects of different kinds', function()
      local p = tunnel.Plural(2, tunnel.Vector)
      p[2] = tunnel.Counter(7)
      p[3] = tunnel.Hash()
      assert.matches('^tunnel%.Vector', tostring(p[1]))
      assert.are.equal(7, p[2]:get())
      p[3]:set('k', 'v')
      assert.are.equal('v', (p[3]:get('k')))
      local b = tunnel.Block(1)
      b:add(p)
      b:run(function(plural)
        plural[1]:pushBack('x')
        return plural[2]:increase(), (plural[3]:get('k'))
      end)
      local result, status = b:synchronize()
      b:terminate()
      assert.is_true(status[1], tostring(result[1][1]))
      assert.are.same({8, 'v', n = 2}, result[1])
      assert.are.equal('x', (p[1]:popFront()))
    end)
  end)

  describe('shortcuts', function()
    it('Vectors(n, ...) makes n Vectors with the arguments', function()
      local p = tunnel.Vectors(3, 1)
      assert.are.equal(3, #p)
      for i = 1, 3 do
        assert.is_true(p[i]:pushBack(i))
        assert.is_nil(p[i]:pushBackAsync(i)) -- size hint 1: full
      end
    end)

    it('Counters(n, value) makes n Counters', function()
      local p = tunnel.Counters(2, 5)
      assert.are.same({5, 5}, p:doAll(function(_, c) return c:get() end))
    end)

    it('Hashes(n) makes n Hashes when tunnel.Hash exists', function()
      if not tunnel.Hash then
        local ok, err = pcall(tunnel.Hashes, 2)
        assert.is_false(ok)
        assert.matches('^tunnel%.Hashes: tunnel%.Hash is not available', err)
        return
      end
      local p = tunnel.Hashes(2)
      assert.are.equal(2, #p)
      p[1]:set('k', 'v')
      assert.are.equal('v', (p[1]:get('k')))
      assert.is_nil((p[2]:get('k')))
    end)
  end)

  describe('bad input', function()
    local function fails(pattern, fn, ...)
      local ok, err = pcall(fn, ...)
      assert.is_false(ok)
      assert.matches(pattern, err)
    end

    it('rejects a size that is not a non-negative integer', function()
      for _, bad in ipairs({-1, 1.5, 'two', {}, math.huge}) do
        fails('^tunnel%.Plural: size must be a non%-negative integer', tunnel.Plural,
          bad, tunnel.Vector)
      end
      fails('^tunnel%.Plural: size must be a non%-negative integer %(got nil%)',
        tunnel.Plural, nil, tunnel.Vector)
      fails('^tunnel%.Vectors: size must be a non%-negative integer', tunnel.Vectors, -2)
      fails('^tunnel%.Counters: size must be a non%-negative integer', tunnel.Counters)
    end)

    it('rejects a constructor that is not callable', function()
      for _, bad in ipairs({1, 'x', {}}) do
        fails('^tunnel%.Plural: constructor must be callable', tunnel.Plural, 2, bad)
      end
      fails('^tunnel%.Plural: constructor must be callable %(got nil%)',
        tunnel.Plural, 2, nil)
    end)

    it('rejects a constructor that does not return a tunnel object', function()
      fails('^tunnel%.Plural: the constructor\'s result must be a tunnel object',
        tunnel.Plural, 2, function() return {} end)
      fails('^tunnel%.Plural: the constructor\'s result must be a tunnel object',
        tunnel.Plural, 1, function() end)
    end)

    it('propagates an error of the constructor', function()
      fails('^ctor failed$', tunnel.Plural, 3, function() error('ctor failed', 0) end)
      fails('^tunnel%.Counter: value must be an integer', tunnel.Counters, 2, 'x')
    end)

    it('rejects an index that is not an integer, and the plural still works', function()
      local p = tunnel.Counters(2)
      fails('^tunnel%.Plural:get: index must be an integer %(got 1%.5%)', p.get, p, 1.5)
      fails('^tunnel%.Plural:get: index must be an integer %(got 1%.5%)',
        function() return p[1.5] end)
      fails('^tunnel%.Plural:get: index must be an integer %(got string%)', p.get, p, 'x')
      fails('^tunnel%.Plural:set: index must be an integer %(got 1%.5%)',
        p.set, p, 1.5, tunnel.Counter())
      fails('^tunnel%.Plural:set: index must be an integer %(got nil%)', p.set, p, nil)
      for _, bad in ipairs({0, -1, 2 ^ 31}) do
        fails('^tunnel%.Plural:set: index must be a positive integer up to 2%^31 %- 1',
          p.set, p, bad, tunnel.Counter())
        fails('^tunnel%.Plural:set: index must be a positive integer',
          function() p[bad] = tunnel.Counter() end)
      end
      assert.are.equal(2, #p)
      assert.are.equal(1, p[2]:increase())
    end)

    it('rejects setting something that is not a tunnel object', function()
      local p = tunnel.Counters(1)
      local c = p[1]
      fails('^tunnel%.Plural:set: object must be a tunnel object or nil %(got number%)',
        p.set, p, 1, 5)
      fails('^tunnel%.Plural:set: object must be a tunnel object or nil %(got table%)',
        function() p[1] = {} end)
      fails('^tunnel%.Plural:set: object must be a tunnel object or nil %(got string%)',
        p.set, p, 3, 'x')
      assert.are.equal(1, #p) -- a refused set past the end does not grow it
      fails('^tunnel%.Plural: cannot set field name', function() p.name = 1 end)
      assert.are.equal(c, p[1])
    end)

    it('rejects a wrong self and a callback that is not a function', function()
      local p = tunnel.Vectors(1)
      for _, name in ipairs({'get', 'set', 'doAll'}) do
        fails('^tunnel%.Plural:' .. name .. ': self is a number, not a tunnel%.Plural',
          p[name], 1)
      end
      fails('^tunnel%.Plural:doAll: callback must be a function %(got number%)',
        p.doAll, p, 1)
      assert.are.equal(1, #p:doAll(function() return 1 end))
    end)
  end)

  describe('across threads', function()
    it('gives each Block thread its own structure by plural[__threadid]', function()
      local n = 4
      local p = tunnel.Counters(n)
      local b = tunnel.Block(n)
      b:add(p)
      b:run(function(plural)
        local mine = plural[__threadid]
        for _ = 1, __threadid do mine:increase() end
        return #plural
      end)
      local result, status = b:synchronize()
      b:terminate()
      for i = 1, n do
        assert.is_true(status[i], tostring(result[i][1]))
        assert.are.equal(n, result[i][1])
        assert.are.equal(i, p[i]:get())
      end
    end)

    -- By reference, unlike the original (which sent each thread a copy and
    -- warned that later sets were not seen): a running job sees a set made
    -- after the block received the Plural.
    it('shows a running job the objects set after it started', function()
      local p = tunnel.Counters(1)
      local gate = tunnel.Vector()
      local b = tunnel.Block(1)
      b:add(p, gate)
      b:run(function(plural, g)
        g:popFront()
        return #plural, plural[2] and plural[2]:get()
      end)
      finally(function() gate:pushBack(true); b:terminate() end)
      p[2] = tunnel.Counter(42)
      gate:pushBack(true)
      local result, status = b:synchronize()
      b:terminate()
      assert.is_true(status[1], tostring(result[1][1]))
      assert.are.same({2, 42, n = 2}, result[1])
    end)

    it('lets threads exchange items through a Plural of Vectors', function()
      local p = tunnel.Vectors(2)
      local b = tunnel.Block(2)
      b:add(p)
      b:run(function(plural)
        local other = 3 - __threadid
        plural[other]:pushBack('from ' .. __threadid)
        return (plural[__threadid]:popFront())
      end)
      local result, status = b:synchronize()
      b:terminate()
      assert.is_true(status[1], tostring(result[1][1]))
      assert.is_true(status[2], tostring(result[2][1]))
      assert.are.equal('from 2', result[1][1])
      assert.are.equal('from 1', result[2][1])
    end)
  end)
end)
