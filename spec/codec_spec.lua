-- The value codec: what crosses threads and how (shared/API.md, "Values
-- that cross threads"). Values go through tunnel.Serializer, which uses the
-- same encoder and decoder as every structure, and through a Vector where
-- one exists.
local tunnel = require('tunnel')

local HAS_INTEGERS = math.type ~= nil
local IS_51 = _VERSION == 'Lua 5.1' and not jit

local s = tunnel.Serializer()
local function roundtrip(v) return s:load(s:save(v)) end

-- The message of the error raised by f(...), or nil if it did not raise.
local function error_of(f, ...)
  local ok, err = pcall(f, ...)
  if ok then return nil end
  return tostring(err)
end

describe('the codec', function()
  describe('copies scalars', function()
    it('keeps nil and booleans', function()
      assert.is_nil(roundtrip(nil))
      assert.are.equal(true, roundtrip(true))
      assert.are.equal(false, roundtrip(false))
    end)

    it('keeps strings binary-safe, every byte value and embedded zeros', function()
      local bytes = {}
      for i = 0, 255 do bytes[#bytes + 1] = string.char(i) end
      local all = table.concat(bytes)
      for _, v in ipairs({'', 'a', 'a\0b', '\0', all, all:rep(100),
                          ('x'):rep(53), ('x'):rep(54), ('y'):rep(70000)}) do
        assert.are.equal(v, roundtrip(v))
      end
    end)

    it('keeps numbers: huge, negative, tiny, zero signs, inf, NaN', function()
      for _, v in ipairs({0, 1, -1, 127, 128, -129, 2^31, -2^31, 2^53,
                          -2^53, 1e308, -1e308, 5e-324, 0.1, -0.5, math.pi,
                          math.huge, -math.huge}) do
        assert.are.equal(v, roundtrip(v))
      end
      local nan = roundtrip(0 / 0)
      assert.is_true(nan ~= nan)
      assert.are.equal(-math.huge, 1 / roundtrip(-1 / math.huge)) -- -0.0
    end)

    if HAS_INTEGERS then
      it('keeps integers and floats distinct (math.type)', function()
        assert.are.equal('integer', math.type(roundtrip(3)))
        assert.are.equal('float', math.type(roundtrip(3.0)))
        assert.are.equal(math.maxinteger, roundtrip(math.maxinteger))
        assert.are.equal(math.mininteger, roundtrip(math.mininteger))
        assert.are.equal('integer', math.type(roundtrip(math.mininteger)))
        assert.are.equal('float', math.type(roundtrip({1.0})[1]))
        assert.are.equal('integer', math.type(roundtrip({x = -7}).x))
      end)
    end
  end)

  describe('copies tables deeply', function()
    it('keeps array, hash and mixed parts, holes and odd keys', function()
      local t = {1, 2, 3, nil, 5, x = 'y', [1.5] = 'f', [true] = false,
                 ['x y'] = {deep = {deeper = {'z'}}}, [-1] = 'neg'}
      local r = roundtrip(t)
      assert.are_not.equal(t, r)
      assert.are.same(t, r)
      assert.is_nil(r[4])
    end)

    it('preserves cycles', function()
      local t = {name = 't'}
      t.self = t
      t.child = {parent = t}
      local r = roundtrip(t)
      assert.are.equal(r, r.self)
      assert.are.equal(r, r.child.parent)
      assert.are.equal('t', r.name)
    end)

    it('keeps a sub-table shared by several fields as one table', function()
      local shared = {1, 2}
      local r = roundtrip({a = shared, b = shared, list = {shared, shared}})
      assert.are.equal(r.a, r.b)
      assert.are.equal(r.a, r.list[1])
      assert.are.equal(r.a, r.list[2])
      assert.are.same({1, 2}, r.a)
    end)

    it('copies tables used as keys, keeping their identity', function()
      local k = {'key'}
      local r = roundtrip({[k] = 1, again = k})
      assert.are.equal(1, r[r.again])
    end)

    it('handles a 1,000-entry mixed table', function()
      local t = {}
      for i = 1, 500 do t[i] = i % 3 == 0 and ('s' .. i) or i * 1.5 end
      for i = 1, 500 do t['k' .. i] = {i, tostring(i)} end
      assert.are.same(t, roundtrip(t))
    end)

    it('accepts nesting of 150 levels and refuses 300 with a clear error', function()
      local function nest(n)
        local t = {}
        for _ = 1, n do t = {t} end
        return t
      end
      local r = roundtrip(nest(150))
      for _ = 1, 150 do r = r[1] end
      assert.are.same({}, r)
      assert.matches('nesting too deep', error_of(s.save, s, nest(300)))
    end)
  end)

  describe('sends Lua functions as bytecode plus upvalues', function()
    it('runs a copied function with copied upvalues', function()
      local base, names = 10, {'a', 'b'}
      local f = function(x) return base + x, names[2] end
      local g = roundtrip(f)
      assert.are_not.equal(f, g)
      local n, name = g(5)
      assert.are.equal(15, n)
      assert.are.equal('b', name)
    end)

    it('keeps a recursive local function working', function()
      local function fib(n) if n < 2 then return n end return fib(n - 1) + fib(n - 2) end
      assert.are.equal(55, roundtrip(fib)(10))
    end)

    it('resolves globals in the receiver', function()
      _G.codec_spec_global = 1
      -- load: a function on the real globals (this file runs in a sandbox)
      local f = (loadstring or load)(
        'return codec_spec_global, string.format("%d", 7), _G')
      local g = roundtrip(f)
      _G.codec_spec_global = 2
      local a, b, env = g()
      assert.are.equal(2, a)
      assert.are.equal('7', b)
      assert.are.equal(_G, env)
      _G.codec_spec_global = nil
    end)

    it('rebinds the globals of a function from a sandboxed environment', function()
      _G.codec_spec_global = 'real'
      local f = function() return codec_spec_global end -- luacheck: ignore
      assert.are.equal('real', roundtrip(f)())
      _G.codec_spec_global = nil
    end)

    it('copies functions inside tables, and tables inside functions', function()
      local cfg = {scale = 3}
      local t = {fn = function(x) return x * cfg.scale end, cfg = cfg}
      local r = roundtrip(t)
      assert.are.equal(6, r.fn(2))
      r.cfg.scale = 4 -- the upvalue and the field are still one table
      assert.are.equal(8, r.fn(2))
    end)

    if not IS_51 then
      it('keeps an upvalue shared by two closures shared', function()
        local count = 0
        local pair = {inc = function() count = count + 1 end,
                      get = function() return count end}
        local r = roundtrip(pair)
        r.inc()
        r.inc()
        assert.are.equal(2, r.get())
        assert.are.equal(0, count)
      end)
    end
  end)

  describe('sends modules by name', function()
    it('sends standard-library functions by name', function()
      for _, f in ipairs({print, math.floor, string.format, table.concat,
                          pairs, require, os.time}) do
        assert.are.equal(f, roundtrip(f))
      end
    end)

    it('sends module tables by name', function()
      assert.are.equal(string, roundtrip(string))
      assert.are.equal(math, roundtrip(math))
      assert.are.equal(_G, roundtrip(_G))
      assert.are.equal(tunnel, roundtrip(tunnel))
      local r = roundtrip({m = math, f = math.sqrt, g = _G})
      assert.are.equal(math, r.m)
      assert.are.equal(math.sqrt, r.f)
      assert.are.equal(_G, r.g)
    end)

    it('finds the C functions of a module loaded after the first send', function()
      roundtrip({}) -- builds the name cache
      package.loaded['codec_spec_module'] = {fn = coroutine.running}
      local fn = ('x'):gmatch('x') -- a C closure no module holds
      package.loaded['codec_spec_module'].gm = fn
      assert.are.equal(fn, roundtrip(fn))
      package.loaded['codec_spec_module'] = nil
    end)
  end)

  describe('refuses what cannot cross, naming its path', function()
    local cases = {
      {'a coroutine', function() return {co = coroutine.create(function() end)} end,
       'value.co: coroutine'},
      {'a foreign userdata', function() return {files = {io.stdout}} end,
       'value.files%[1%]: userdata'},
      {'a table with a metatable', function()
        return {model = {['x y'] = setmetatable({}, {})}}
      end, 'value.model%["x y"%]: table with a metatable'},
      {'a C function in no module', function()
        return {model = {fn = ('a'):gmatch('a')}}
      end, 'value.model.fn: C function'},
      {'a bad upvalue', function()
        local co = coroutine.create(function() end)
        return {f = function() return co end}
      end, 'value.f<upvalue co>: coroutine'},
      {'a bad key', function()
        return {t = {[coroutine.create(function() end)] = 1}}
      end, 'value.t<key>: coroutine'},
      {'a bad value at the root', function() return coroutine.create(function() end) end,
       'at value: coroutine'},
    }
    for _, case in ipairs(cases) do
      it('refuses ' .. case[1], function()
        local err = error_of(s.save, s, case[2]())
        assert.is_not_nil(err)
        assert.matches('^tunnel.Serializer:save: cannot send value at ', err)
        assert.matches(case[3] .. '$', err)
      end)
    end

    it('still works after a refused value', function()
      assert.is_not_nil(error_of(s.save, s, {coroutine.create(function() end)}))
      assert.are.same({1, {2}}, roundtrip({1, {2}}))
    end)
  end)

  if tunnel.Counter then
    describe('sends tunnel objects by reference', function()
      it('gives back the same object, once per value', function()
        local c = tunnel.Counter(5)
        local r = s:load(s:save({c = c, again = c, list = {c}}))
        assert.are.equal(c, r.c)
        assert.are.equal(r.c, r.again)
        r.c:increase(2)
        assert.are.equal(7, c:get())
      end)
    end)
  end

  if tunnel.Vector then
    describe('through a Vector', function()
      it('round-trips every kind of value', function()
        local v = tunnel.Vector()
        local t = {1, 'two', {3}}
        t.self = t
        local function fact(n) if n <= 1 then return 1 end return n * fact(n - 1) end
        local values = {42, 4.5, 'str\0', true, t, fact, print, math}
        for _, x in ipairs(values) do v:pushBack(x) end
        assert.are.equal(42, v:popFront())
        assert.are.equal(4.5, v:popFront())
        assert.are.equal('str\0', v:popFront())
        assert.are.equal(true, v:popFront())
        local r = v:popFront()
        assert.are.equal(r, r.self)
        assert.are.equal(3, r[3][1])
        assert.are.equal(120, v:popFront()(5))
        assert.are.equal(print, v:popFront())
        assert.are.equal(math, v:popFront())
      end)

      it('names the method and the path of what cannot cross', function()
        local v = tunnel.Vector()
        local err = error_of(v.pushBack, v, {model = {fn = ('a'):gmatch('a')}})
        assert.matches('tunnel.Vector:pushBack: cannot send value at '
                       .. 'value.model.fn: C function', err, 1, true)
      end)
    end)
  end
end)
