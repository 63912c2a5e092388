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

    it('rejects a size that is not a positive integer', function()
      for _, bad in ipairs({0, -1, 1.5, 'two', {}, math.huge}) do
        fails('^tunnel%.Plural: size must be a positive integer', tunnel.Plural,
          bad, tunnel.Vector)
      end
      fails('^tunnel%.Plural: size must be a positive integer %(got nil%)',
        tunnel.Plural, nil, tunnel.Vector)
      fails('^tunnel%.Vectors: size must be a positive integer', tunnel.Vectors, 0)
      fails('^tunnel%.Counters: size must be a positive integer', tunnel.Counters)
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

    it('rejects an index outside 1..#plural, and the plural still works', function()
      local p = tunnel.Counters(2)
      for _, bad in ipairs({0, 3, -1, 1.5}) do
        fails('^tunnel%.Plural:get: index must be a positive integer within 1%.%.2',
          p.get, p, bad)
        fails('^tunnel%.Plural:set: index must be a positive integer within 1%.%.2',
          p.set, p, bad, tunnel.Counter())
        fails('^tunnel%.Plural:get: index must be', function() return p[bad] end)
      end
      fails('^tunnel%.Plural:get: index must be a positive integer within 1%.%.2 %(got string%)',
        p.get, p, 'x')
      assert.are.equal(2, #p)
      assert.are.equal(1, p[2]:increase())
    end)

    it('rejects setting something that is not a tunnel object', function()
      local p = tunnel.Counters(1)
      local c = p[1]
      fails('^tunnel%.Plural:set: object must be a tunnel object %(got number%)',
        p.set, p, 1, 5)
      fails('^tunnel%.Plural:set: object must be a tunnel object %(got table%)',
        function() p[1] = {} end)
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
