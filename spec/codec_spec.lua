-- The value codec: what crosses threads and how (shared/API.md, "Values
-- that cross threads"). Values go through tunnel.Serializer, which uses the
-- same encoder and decoder as every structure, and through a Vector where
-- one exists.
local tunnel = require('tunnel')
-- luacheck: globals OnlyThere (a block thread's, set by its init)

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
      {'a table with an unregistered metatable', function()
        return {model = {['x y'] = setmetatable({}, {})}}
      end, 'value.model%["x y"%]: table with an unregistered metatable '
           .. '%(tunnel.register%(name, mt%) in both threads%)'},
      {'a C function in no module', function()
        return {model = {fn = ('a'):gmatch('a')}}
      end, 'value.model.fn: C function'},
      {'a bad upvalue', function()
        local co = coroutine.create(function() end)
        return {f = function() return co end}
      end, 'value.f<upvalue co>: coroutine'},
      {'a bad key', function()
        return {t = {[coroutine.create(function() end)] = 1}}
      end, 'value.t<key thread>: coroutine'},
      {'a bad value inside a table key', function()
        return {[{co = coroutine.create(function() end)}] = 1}
      end, 'value<key table>.co: coroutine'},
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

  -- A class as a program defines it: a metatable with methods, registered
  -- under a name. Block inits call the same function to define it there.
  local function define_point(name)
    local Point = {}
    Point.__index = Point
    function Point.new(x, y) return setmetatable({x = x, y = y}, Point) end
    function Point:norm2() return self.x * self.x + self.y * self.y end
    function Point:moved(dx, dy) return Point.new(self.x + dx, self.y + dy) end
    return tunnel.register(name, Point)
  end
  local Point = define_point('codec_spec.Point')

  -- Run a Lua program in another process with this build's module; its
  -- output.
  local function run_lua(code)
    local lua = dofile('spec/support/lua.lua').command
    local name = os.tmpname()
    local f = assert(io.open(name, 'w'))
    f:write(code)
    f:close()
    local p = assert(io.popen(lua .. ' ' .. name .. ' 2>&1'))
    local out = p:read('*a')
    p:close()
    os.remove(name)
    return out
  end

  describe('sends tables of a registered class (tunnel.register)', function()
    it('gives the receiver the metatable it registered under the name', function()
      local p = Point.new(3, 4)
      local r = roundtrip(p)
      assert.are_not.equal(p, r)
      assert.are.equal(Point, getmetatable(r))
      assert.are.equal(25, r:norm2())
      assert.are.equal(3, rawget(r, 'x'))
    end)

    it('keeps instances shared and cyclic inside one value', function()
      local p = Point.new(1, 2)
      p.self = p
      p.inner = Point.new(5, 6)
      local r = roundtrip({a = p, b = p, list = {p}})
      assert.are.equal(r.a, r.b)
      assert.are.equal(r.a, r.list[1])
      assert.are.equal(r.a, r.a.self)
      assert.are.equal(Point, getmetatable(r.a))
      assert.are.equal(Point, getmetatable(r.a.inner))
      assert.are.equal(61, r.a.inner:norm2())
    end)

    it('copies an instance raw: no metamethod of its class runs', function()
      local Strict = {}
      local function boom() error('metamethod called') end
      Strict.__index, Strict.__newindex, Strict.__len = boom, boom, boom
      Strict.__pairs, Strict.__call = boom, boom
      tunnel.register('codec_spec.Strict', Strict)
      local r = roundtrip(setmetatable({1, 2, k = 'v'}, Strict))
      assert.are.equal(Strict, getmetatable(r))
      assert.are.equal(2, rawget(r, 2))
      assert.are.equal('v', rawget(r, 'k'))
    end)

    it('crosses a Vector, a Hash, a shared table and an Atomic', function()
      local v = tunnel.Vector()
      v:pushBack(Point.new(1, 1))
      assert.are.equal(2, v:popFront():norm2())
      local h = tunnel.Hash()
      h:set('p', Point.new(2, 0))
      assert.are.equal(4, h:get('p'):norm2())
      local share = tunnel.Share({})
      share.data.p = Point.new(0, 3)
      assert.are.equal(9, share.data.p:norm2())
      local a = tunnel.Atomic({p = Point.new(1, 3)})
      assert.are.equal(10, a:read(function(d) return d.p:norm2() end))
    end)

    it('lets a job receive an instance and return one, with the class registered in init', function()
      local b = tunnel.Block(2, function() define_point('codec_spec.Point') end)
      b:add(Point.new(1, 2))
      b:run(function(p)
        return getmetatable(p) ~= nil, p:norm2(), p:moved(__threadid, 0)
      end)
      local result, status = b:synchronize()
      for i = 1, 2 do
        assert.is_true(status[i], tostring(result[i][1]))
        local r = result[i]
        assert.is_true(r[1])
        assert.are.equal(5, r[2])
        assert.are.equal(Point, getmetatable(r[3]))
        assert.are.equal((1 + i) ^ 2 + 4, r[3]:norm2())
      end
      b:terminate()
    end)

    it('refuses an instance in a thread that did not register its class, naming the class', function()
      local b = tunnel.Block(1)
      b:add(Point.new(1, 2))
      b:run(function(p) return p end)
      local result, status = b:synchronize()
      assert.is_false(status[1])
      assert.matches("^tunnel%.Block:run: cannot receive a table of class "
                     .. "'codec_spec%.Point': no metatable is registered under "
                     .. "that name in this thread %(tunnel%.register%("
                     .. "'codec_spec%.Point', mt%)%)$", tostring(result[1][1]))
      b:terminate()
    end)

    it('refuses a job result whose class the main state did not register', function()
      local b = tunnel.Block(1, function()
        OnlyThere = tunnel.register('codec_spec.OnlyThere', {})
      end)
      b:run(function() return setmetatable({}, OnlyThere) end)
      -- the result is decoded in the main state: by synchronize, or when
      -- result[1] is read
      local err = error_of(function()
        local result = b:synchronize()
        return result[1]
      end)
      assert.matches("cannot receive a table of class 'codec_spec%.OnlyThere'",
                     err)
      b:run(function() end) -- a last run whose results decode here
      b:terminate()
    end)

    it('refuses a table with an unregistered metatable at the send, naming its path', function()
      local v = tunnel.Vector()
      local err = error_of(v.pushBack, v, {data = {model = setmetatable({}, {})}})
      assert.are.equal('tunnel.Vector:pushBack: cannot send value at '
                       .. 'value.data.model: table with an unregistered '
                       .. 'metatable (tunnel.register(name, mt) in both threads)',
                       err)
      local b = tunnel.Block(1)
      b:add(1, {model = setmetatable({}, {})})
      err = error_of(b.run, b, function() end)
      assert.matches('^tunnel%.Block:run: cannot send value at argument 3%.model: '
                     .. 'table with an unregistered metatable', err)
      b:terminate()
    end)

    it('raises clear errors on crafted class bytes, reading nothing outside them', function()
      local function forged(payload) -- a header whose check does not match
        return s:save(1):sub(1, 7) .. ('\0'):rep(8) .. payload
      end
      local P = '\16\16codec_spec.Point' -- CLASS, the name's length, the name
      local cases = {
        ['\16'] = 'truncated',
        ['\16\1'] = 'length past the end',
        ['\16\200\1x'] = 'length past the end',
        [P] = 'truncated',
        [P .. '\3\2'] = 'class of a non%-table',
        [P .. P .. '\6\0\0'] = 'class of a non%-table',
        [P .. '\8\1'] = 'class of a non%-table',
        ['\16\5Ghost\6\0\0'] = "cannot receive a table of class 'Ghost'",
        [(P .. '\6\1\0'):rep(300)] = 'nesting too deep',
      }
      for payload, why in pairs(cases) do
        local err = error_of(s.load, s, forged(payload))
        assert.is_not_nil(err, why)
        assert.matches('^tunnel%.Serializer:load: ', err)
        assert.matches(why, err)
      end
      local r = s:load(forged(P .. '\6\0\1\5\1x\3\6'))
      assert.are.equal(Point, getmetatable(r))
      assert.are.equal(3, r.x)
    end)

    it('loads a saved instance in another process that registered the class', function()
      local path = os.tmpname()
      local f = assert(io.open(path, 'wb'))
      f:write(s:save({p = Point.new(2, 3)}))
      f:close()
      local out = run_lua(([[
        local tunnel = require('tunnel')
        local s = tunnel.Serializer()
        local f = assert(io.open(%q, 'rb'))
        local str = f:read('*a')
        f:close()
        local ok, err = pcall(s.load, s, str)
        io.write(tostring(ok), ': ', tostring(err), '\n')
        local P = {}
        P.__index = P
        function P:norm2() return self.x * self.x + self.y * self.y end
        tunnel.register('codec_spec.Point', P)
        local r = s:load(str)
        io.write(tostring(getmetatable(r.p) == P), ' ', r.p:norm2())
      ]]):format(path))
      os.remove(path)
      assert.are.equal("false: tunnel.Serializer:load: cannot receive a table "
                       .. "of class 'codec_spec.Point': no metatable is "
                       .. "registered under that name in this thread "
                       .. "(tunnel.register('codec_spec.Point', mt))\ntrue 13", out)
    end)
  end)

  describe('tunnel.register', function()
    it('returns the metatable; the same name and metatable again is a no-op', function()
      local mt = {}
      assert.are.equal(mt, tunnel.register('codec_spec.Again', mt))
      assert.are.equal(mt, tunnel.register('codec_spec.Again', mt))
      assert.are.equal(mt, getmetatable(roundtrip(setmetatable({}, mt))))
    end)

    it('refuses another metatable under a registered name, keeping the first', function()
      local first = {}
      tunnel.register('codec_spec.Taken', first)
      assert.are.equal("tunnel.register: name 'codec_spec.Taken' is already "
                       .. "registered for another metatable",
                       error_of(tunnel.register, 'codec_spec.Taken', {}))
      assert.are.equal(first, getmetatable(roundtrip(setmetatable({}, first))))
    end)

    it('refuses a second name for a registered metatable', function()
      assert.are.equal("tunnel.register: this metatable is already registered "
                       .. "as 'codec_spec.Point' (one name per class)",
                       error_of(tunnel.register, 'codec_spec.Alias', Point))
      local err = error_of(s.save, s, setmetatable({}, {}))
      assert.matches('unregistered metatable', err) -- the alias made nothing
    end)

    it('refuses bad arguments, naming tunnel.register', function()
      local cases = {
        {{nil, {}}, 'name must be a non-empty string (got nil)'},
        {{'', {}}, 'name must be a non-empty string (got string)'},
        {{42, {}}, 'name must be a non-empty string (got number)'},
        {{('n'):rep(256), {}}, 'name must be at most 255 bytes (got 256)'},
        {{'codec_spec.Bad'}, 'metatable must be a table (got nil)'},
        {{'codec_spec.Bad', 'mt'}, 'metatable must be a table (got string)'},
        {{'codec_spec.Bad', io.stdout}, 'metatable must be a table (got userdata)'},
      }
      for _, case in ipairs(cases) do
        assert.are.equal('tunnel.register: ' .. case[2],
                         error_of(tunnel.register, case[1][1], case[1][2]))
      end
    end)
  end)

  describe('with trusted = false', function()
    local function load_untrusted(str) return s:load(str, {trusted = false}) end

    it('refuses Lua functions that a trusted load accepts', function()
      local str = s:save({f = function() return 1 end})
      assert.are.equal(1, s:load(str).f())
      assert.are.equal('tunnel.Serializer:load: cannot receive a function '
                       .. 'from untrusted bytes (trusted = false allows data only)',
                       error_of(load_untrusted, str))
    end)

    it('refuses library functions by name: os.execute, io.popen, load, print', function()
      for name, f in pairs({['os.execute'] = os.execute, ['io.popen'] = io.popen,
                            ['_G.load'] = load, ['_G.print'] = print}) do
        local str = s:save({cmd = f})
        assert.are.equal(f, s:load(str).cmd)
        assert.are.equal("tunnel.Serializer:load: cannot receive C function '"
                         .. name .. "' from untrusted bytes (trusted = false "
                         .. 'allows data only)', error_of(load_untrusted, str))
      end
    end)

    it('refuses module tables and the globals table by name', function()
      for name, m in pairs({os = os, io = io, string = string}) do
        local str = s:save({m = m})
        assert.are.equal(m, s:load(str).m)
        assert.are.equal("tunnel.Serializer:load: cannot receive module '"
                         .. name .. "' from untrusted bytes (trusted = false "
                         .. 'allows data only)', error_of(load_untrusted, str))
      end
      assert.matches('^tunnel%.Serializer:load: cannot receive the globals table',
                     error_of(load_untrusted, s:save({g = _G})))
    end)

    it('loads data, class instances and tunnel objects', function()
      local v = tunnel.Vector()
      v:pushBack('in v')
      local r = load_untrusted(s:save({1, 'two', {3, x = true}, p = Point.new(1, 2), v = v}))
      assert.are.same({3, x = true}, r[3])
      assert.are.equal(5, r.p:norm2())
      assert.are.equal(v, r.v)
      assert.are.equal('in v', r.v:popFront())
    end)

    it('applies to retain too', function()
      local str = s:save({v = tunnel.Vector(), f = function() end})
      assert.matches('^tunnel%.Serializer:retain: cannot receive a function',
                     error_of(s.retain, s, str, {trusted = false}))
      assert.is_not_nil(s:load(str).v)
    end)

    it('leaves the objects of a string that failed to load, for a later load', function()
      local v = tunnel.Vector()
      v:pushBack(7)
      local str = s:save({v = v, f = function() end})
      assert.is_not_nil(error_of(load_untrusted, str))
      local r = s:load(str)
      assert.are.equal(7, r.v:popFront())
      assert.matches('already loaded', error_of(s.load, s, str))
    end)

    it('refuses bad options, naming the method', function()
      local str = s:save(1)
      assert.are.equal('tunnel.Serializer:load: options must be a table (got string)',
                       error_of(s.load, s, str, 'x'))
      assert.are.equal('tunnel.Serializer:load: trusted must be a boolean (got number)',
                       error_of(s.load, s, str, {trusted = 0}))
      assert.are.equal(1, s:load(str, {trusted = true}))
      assert.are.equal(1, s:load(str, {}))
    end)

    local C = dofile('spec/support/backends.lua')[2]
    local it_cluster = C and it or pending

    it_cluster('makes a Cluster whose every value decodes as data only', function()
      local U = tunnel.Cluster(C.url, {prefix = 'tunnel-spec:', timeout = 5,
                                       trusted = false})
      assert.is_false(U.trusted)
      assert.is_true(C.cluster.trusted)
      local name = C.fresh('untrusted')
      local tv, uv = C.cluster:Vector(name), U:Vector(name)
      assert.are_not.equal(tv, uv)
      tv:pushBack({1, {2}})
      tv:pushBack(Point.new(2, 2))
      assert.are.same({1, {2}}, uv:popFront())
      assert.are.equal(8, uv:popFront():norm2())
      tv:pushBack(os.execute)
      assert.are.equal("tunnel.Vector:popFront: cannot receive C function "
                       .. "'os.execute' from untrusted bytes (trusted = false "
                       .. 'allows data only)', error_of(uv.popFront, uv))
      local name2 = C.fresh('untrusted')
      C.cluster:Vector(name2):pushBack(function() return 5 end)
      local uv2 = U:Vector(name2)
      assert.matches('^tunnel%.Vector:get: cannot receive a function',
                     error_of(uv2.get, uv2, 1))
      assert.are.equal(5, C.cluster:Vector(name2):popFront()()) -- trusted may
      local hname = C.fresh('untrusted-hash')
      local th, uh = C.cluster:Hash(hname), U:Hash(hname)
      th:set('cmd', io.popen)
      th:set('data', 'plain')
      assert.matches("^tunnel%.Hash:get: cannot receive C function 'io%.popen'",
                     error_of(uh.get, uh, 'cmd'))
      assert.are.equal('plain', uh:get('data'))
      local aname = C.fresh('untrusted-atomic')
      C.cluster:Atomic(aname, {f = load})
      local ua = U:Atomic(aname)
      assert.matches("cannot receive C function '_G%.load'",
                     error_of(function() return ua:read(function(d) return d end) end))
    end)

    it_cluster('makes the objects named in its values data-only too', function()
      local U = tunnel.Cluster(C.url, {prefix = 'tunnel-spec:', timeout = 5,
                                       trusted = false})
      local name, inner = C.fresh('untrusted-outer'), C.fresh('untrusted-inner')
      C.cluster:Vector(name):pushBack({inner = C.cluster:Vector(inner)})
      local got = U:Vector(name):popFront().inner
      C.cluster:Vector(inner):pushBack(print)
      assert.matches("^tunnel%.Vector:popFront: cannot receive C function '_G%.print'",
                     error_of(got.popFront, got))
      -- sort decodes and encodes anew: what it stores reads the same
      -- through both clusters
      local sorted = C.fresh('untrusted-sort')
      local uv = U:Vector(sorted)
      uv:pushBack(3)
      uv:pushBack(1)
      uv:pushBack(2)
      uv:sort()
      assert.are.equal(1, uv:popFront())
      assert.are.equal(2, C.cluster:Vector(sorted):popFront())
      assert.are.equal(3, uv:popFront())
    end)

    it_cluster('refuses a bad trusted option, naming tunnel.Cluster', function()
      assert.are.equal('tunnel.Cluster: trusted must be a boolean (got string)',
                       error_of(tunnel.Cluster, C.url, {trusted = 'no'}))
    end)
  end)
end)
