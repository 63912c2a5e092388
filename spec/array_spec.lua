-- tunnel.Array: a typed numeric buffer shared by threads by reference, and
-- its cluster form (a parameter-server buffer).
local tunnel = require('tunnel')
local BACKENDS = dofile('spec/support/backends.lua')
local hold = dofile('spec/support/hold.lua')

local TYPES = {'double', 'float', 'int8', 'int16', 'int32', 'int64',
               'uint8', 'uint16', 'uint32', 'uint64'}
local FLOAT = {double = true, float = true}
-- The integer types' ranges (64-bit ones only as far as every Lua holds
-- them exactly).
local RANGE = {
  int8 = {-128, 127}, int16 = {-32768, 32767},
  int32 = {-2147483648, 2147483647}, int64 = {-2^53, 2^53},
  uint8 = {0, 255}, uint16 = {0, 65535}, uint32 = {0, 4294967295},
  uint64 = {0, 2^53},
}
local BITS = {int8 = 8, int16 = 16, int32 = 32, uint8 = 8, uint16 = 16,
              uint32 = 32}

-- x wrapped into an integer type (x small enough to be exact).
local function wrap(t, x)
  local bits = BITS[t]
  if not bits then return x end
  local m = 2 ^ bits
  x = x % m
  if t:sub(1, 1) == 'i' and x >= m / 2 then x = x - m end
  return x
end

-- Deterministic pseudo-random numbers (the same on every Lua).
local function rng(seed)
  local s = seed
  return function(lo, hi)
    s = (s * 1103515245 + 12345) % 2147483648
    return lo + s % (hi - lo + 1)
  end
end

-- A value of type t from a small integer k: floats get a dyadic fraction,
-- so that every sum and product below is exact in both float and double.
local function value(t, k)
  if FLOAT[t] then return k / 8 end
  return k
end

local function plain(a)
  local t = {}
  for i = 1, #a do t[i] = a[i] end
  return t
end

for _, B in ipairs(BACKENDS) do
  describe('tunnel.Array (' .. B.name .. ')', function()
    describe('construction and elements', function()
      it('makes n zeros of a type, double by default', function()
        local a = B.Array(5)
        assert.are.equal(5, #a)
        assert.are.equal(5, a:size())
        assert.are.equal('double', a:type())
        for i = 1, 5 do assert.are.equal(0, a[i]) end
        for _, t in ipairs(TYPES) do
          local b = B.Array(3, t)
          assert.are.equal(t, b:type())
          assert.are.equal(3, #b)
          assert.are.equal(0, b:get(3))
        end
        assert.are.equal(0, #B.Array(0))
      end)

      it('reads and writes elements by index, a[i] and get/set alike', function()
        local a = B.Array(4)
        a[1] = 1.5
        a:set(2, -2.25)
        assert.are.equal(1.5, a:get(1))
        assert.are.equal(-2.25, a[2])
        local b = B.Array(3, 'int16')
        b[3] = -300
        assert.are.equal(-300, b[3])
        if math.type then assert.are.equal('integer', math.type(b[3])) end
      end)

      it('takes every value of an integer type and nothing outside it', function()
        for t, r in pairs(RANGE) do
          local a = B.Array(2, t)
          a[1], a[2] = r[1], r[2]
          assert.are.equal(r[1], a[1], t)
          assert.are.equal(r[2], a[2], t)
          if BITS[t] then
            for _, bad in ipairs({r[1] - 1, r[2] + 1}) do
              local ok, err = pcall(function() a[1] = bad end)
              assert.is_false(ok, t)
              assert.matches('^tunnel%.Array: value .* is out of range for ' .. t, err)
            end
          end
          local ok, err = pcall(a.set, a, 2, 0.5)
          assert.is_false(ok)
          assert.matches('^tunnel%.Array:set: value must be an integer', err)
          assert.are.equal(r[1], a[1], t) -- nothing written
          assert.are.equal(r[2], a[2], t)
        end
      end)

      it('rounds a float element to single precision', function()
        local a = B.Array(1, 'float')
        a[1] = 0.1
        assert.are_not.equal(0.1, a[1])
        assert.is_true(math.abs(a[1] - 0.1) < 1e-8)
        a[1] = 1e300
        assert.are.equal(math.huge, a[1])
      end)

      it('refuses bad sizes, types, indexes and values with the method named', function()
        local a = B.Array(3, 'int8')
        local cases = {
          {function() return a[0] end, '^tunnel%.Array: index 0 out of range %(1%.%.3%)'},
          {function() return a[4] end, '^tunnel%.Array: index 4 out of range'},
          {function() return a:get(1.5) end, '^tunnel%.Array:get: index must be an integer'},
          {function() return a:get('1') end, '^tunnel%.Array:get: index must be an integer'},
          {function() a[4] = 1 end, '^tunnel%.Array: index 4 out of range'},
          {function() a:set(1) end, '^tunnel%.Array:set: value expected'},
          {function() a:set(1, '1') end, '^tunnel%.Array:set: value must be a number %(got string%)'},
          {function() a.foo = 1 end, '^tunnel%.Array: cannot set field foo'},
          {function() a:atomicAdd(9, 1) end, '^tunnel%.Array:atomicAdd: index 9 out of range'},
          {function() return a.get(5) end, '^tunnel%.Array:get: self is a number, not a tunnel%.Array'},
        }
        for i, c in ipairs(cases) do
          local ok, err = pcall(c[1])
          assert.is_false(ok, i)
          assert.matches(c[2], err, 1, false, i)
        end
        assert.are.same({0, 0, 0}, plain(a))
        assert.is_nil(a.foo) -- no such method
      end)

      it('a[i] and a[i] = x refuse exactly what get and set refuse', function()
        for _, t in ipairs({'double', 'int8', 'uint8', 'int64'}) do
          local a = B.Array(2, t)
          for _, bad in ipairs({1.5, 0 / 0, math.huge, -math.huge, -1, 3, 2 ^ 53 + 2}) do
            local ok, err = pcall(function() return a[bad] end)
            assert.is_false(ok, t .. ' ' .. tostring(bad))
            assert.matches('^tunnel%.Array: index', err)
            ok = pcall(function() a[bad] = 1 end)
            assert.is_false(ok, t .. ' ' .. tostring(bad))
          end
          local bad_values = {'1', true, {}}
          if not FLOAT[t] then
            bad_values = {'1', true, 0.5, 0 / 0, math.huge, 2 ^ 64, -2 ^ 64}
            if BITS[t] then
              bad_values[#bad_values + 1] = RANGE[t][1] - 1
              bad_values[#bad_values + 1] = RANGE[t][2] + 1
            end
          end
          for _, bad in ipairs(bad_values) do
            local ok, err = pcall(function() a[1] = bad end)
            assert.is_false(ok, t .. ' ' .. tostring(bad))
            assert.matches('^tunnel%.Array: value', err)
          end
          assert.are.same({0, 0}, plain(a))
          a[2.0] = 7 -- a float index with an integer value is an index
          assert.are.equal(7, a[2.0])
        end
        local u = B.Array(1, 'uint8')
        local ok = pcall(function() u[1] = -1 end)
        assert.is_false(ok)
        u[1] = 255
        assert.are.equal(255, u[1])
      end)

      it('adds to one element atomically, returning the new value', function()
        local a = B.Array(2)
        assert.are.equal(2.5, a:atomicAdd(1, 2.5))
        assert.are.equal(2, a:atomicAdd(1, -0.5))
        local u = B.Array(1, 'uint8')
        u[1] = 250
        assert.are.equal(4, u:atomicAdd(1, 10)) -- wraps
        assert.are.equal(4, u[1])
      end)
    end)

    describe('whole arrays', function()
      it('fetches an in-process copy, stores one back, and adds one', function()
        local a = B.Array(4, 'int32')
        a[2] = 5
        local c = a:fetch()
        assert.are.same({0, 5, 0, 0}, plain(c))
        c[1] = 7
        assert.are.equal(0, a[1]) -- a copy
        assert.are.equal(a, a:store(c))
        assert.are.same({7, 5, 0, 0}, plain(a))
        local ones = tunnel.Array({1, 1, 1, 1}, 'int32')
        a:add(ones, 3)
        a:add(ones)
        assert.are.same({11, 9, 4, 4}, plain(a))
        assert.are.same({11, 9, 4, 4}, a:totable())
        local bytes = a:bytes()
        assert.are.equal(16, #bytes)
        assert.are.same({11, 9, 4, 4}, tunnel.Array.frombytes(bytes, 'int32'):totable())
      end)

      it('refuses a source of another type or size, and changes nothing', function()
        local a = B.Array(3)
        a[1] = 1
        for _, other in ipairs({tunnel.Array(3, 'float'), tunnel.Array(4), 5, {}}) do
          for _, m in ipairs({'store', 'add', 'copy'}) do
            local ok, err = pcall(a[m], a, other)
            assert.is_false(ok, m)
            assert.matches('^tunnel%.Array:' .. m .. ': ', err)
          end
        end
        assert.are.same({1, 0, 0}, plain(a))
      end)

      it('runs read and write callbacks under its lock, re-raising their errors', function()
        local a = B.Array(2)
        assert.are.same({3, 'r'}, {a:read(function(x) return #x + 1, 'r' end)})
        assert.are.equal('w', a:write(function(x) x[1] = 4 x[2] = 5 return 'w' end))
        assert.are.same({4, 5}, plain(a))
        local ok, err = pcall(a.write, a, function() error('inside') end)
        assert.is_false(ok)
        assert.matches('inside', err)
        assert.are.equal(1, a:read(function() return 1 end)) -- released
        ok, err = pcall(a.read, a, function() return a:write(function() end) end)
        assert.is_false(ok)
        assert.matches('would deadlock', err)
      end)

      it('Async twins return nil while another thread\'s write callback holds it', function()
        local a = B.Array(1)
        local held = hold(a, 'write', function(x) x[1] = 9 return 'done' end)
        assert.is_nil(a:readAsync(function() return 1 end))
        assert.is_nil(a:writeAsync(function() return 1 end))
        assert.are.same({'done', n = 1}, held.finish())
        assert.are.equal(9, a[1])
        assert.are.equal(1, a:readAsync(function() return 1 end))
      end)
    end)
  end)
end

describe('tunnel.Array (in process)', function()
  it('is built from a table of numbers, checking every element first', function()
    local a = tunnel.Array({1, 2.5, -3})
    assert.are.same({1, 2.5, -3}, a:totable())
    local ok, err = pcall(tunnel.Array, {1, 2, 'x'}, 'int8')
    assert.is_false(ok)
    assert.matches('^tunnel%.Array: element 3 must be a number %(got string%)', err)
    ok, err = pcall(tunnel.Array, {1, 300}, 'uint8')
    assert.is_false(ok)
    assert.matches('element 2 300 is out of range for uint8', err)
    for _, bad in ipairs({-1, 1.5, 'x', true}) do
      ok, err = pcall(tunnel.Array, bad)
      assert.is_false(ok)
      assert.matches('^tunnel%.Array: size', err)
    end
    ok, err = pcall(tunnel.Array, 3, 'complex')
    assert.is_false(ok)
    assert.matches("^tunnel%.Array: type must be 'double'", err)
  end)

  it('has views that share its memory and keep it alive', function()
    local a = tunnel.Array({1, 2, 3, 4, 5, 6}, 'int32')
    local v = a:view(2, 3)
    assert.are.same({2, 3, 4}, v:totable())
    v[1] = 20
    assert.are.equal(20, a[2])
    local w = v:view(2) -- to the end of v
    assert.are.same({3, 4}, w:totable())
    w:fill(0)
    assert.are.same({1, 20, 0, 0, 5, 6}, a:totable())
    assert.are.equal(0, #a:view(7))
    for _, bad in ipairs({{0}, {8}, {2, 6}, {1, -1}}) do
      local ok, err = pcall(a.view, a, bad[1], bad[2])
      assert.is_false(ok)
      assert.matches('^tunnel%.Array:view: ', err)
    end
    a = nil -- luacheck: ignore 311 (drops it)
    collectgarbage()
    collectgarbage()
    assert.are.same({0, 0}, w:totable())
  end)

  it('frombytes refuses a length that is not whole elements', function()
    local ok, err = pcall(tunnel.Array.frombytes, 'abc', 'int16')
    assert.is_false(ok)
    assert.matches('^tunnel%.Array%.frombytes: 3 bytes are not a whole number of int16', err)
    assert.are.same({0x6261}, tunnel.Array.frombytes('ab', 'uint16'):totable())
    assert.are.equal(0, #tunnel.Array.frombytes(''))
  end)

  it('kernels match a plain Lua loop for every type and many lengths', function()
    local r = rng(7)
    for _, t in ipairs(TYPES) do
      local lo = (t:sub(1, 1) == 'u') and 0 or -9
      for _, n in ipairs({0, 1, 7, 8, 9, 16, 17, 33, 100}) do
        local x, y = {}, {}
        for i = 1, n do
          x[i], y[i] = value(t, r(lo, 9)), value(t, r(lo, 9))
        end
        local a, b = tunnel.Array(x, t), tunnel.Array(y, t)
        local dot, sum, imin, imax = 0, 0, nil, nil
        for i = 1, n do
          dot, sum = dot + x[i] * y[i], sum + x[i]
          if not imin or x[i] < x[imin] then imin = i end
          if not imax or x[i] > x[imax] then imax = i end
        end
        assert.are.equal(dot, a:dot(b), t .. ' dot ' .. n)
        assert.are.equal(sum, a:sum(), t .. ' sum ' .. n)
        if n > 0 then
          assert.are.same({x[imin], imin}, {a:min()}, t)
          assert.are.same({x[imax], imax}, {a:max()}, t)
        else
          assert.is_nil(a:min())
        end
        local s = FLOAT[t] and 0.5 or 3
        a:add(b, s)
        for i = 1, n do x[i] = wrap(t, x[i] + s * y[i]) end
        assert.are.same(x, a:totable(), t .. ' add ' .. n)
        a:mul(b)
        for i = 1, n do x[i] = wrap(t, x[i] * y[i]) end
        assert.are.same(x, a:totable(), t .. ' mul ' .. n)
        a:scale(FLOAT[t] and -0.25 or 2)
        for i = 1, n do x[i] = wrap(t, x[i] * (FLOAT[t] and -0.25 or 2)) end
        assert.are.same(x, a:totable(), t .. ' scale ' .. n)
        assert.are.equal(a, a:copy(b))
        assert.are.same(y, a:totable(), t .. ' copy ' .. n)
        a:fill(value(t, 5))
        for i = 1, n do assert.are.equal(value(t, 5), a[i]) end
      end
    end
  end)

  it('sums floats in double and skips NaN in min and max', function()
    local f = tunnel.Array(17, 'float')
    f:fill(1)
    f[1] = 2 ^ 24
    assert.are.equal(2 ^ 24 + 16, f:sum())
    local d = tunnel.Array({0 / 0, 3, -1, 0 / 0})
    assert.are.same({-1, 3}, {d:min()})
    assert.are.same({3, 2}, {d:max()})
  end)

  it('refuses kernel arguments of the wrong kind', function()
    local a = tunnel.Array(3, 'int8')
    local cases = {
      {function() a:fill(1000) end, '^tunnel%.Array:fill: value 1000 is out of range for int8'},
      {function() a:fill(0.5) end, '^tunnel%.Array:fill: value must be an integer'},
      {function() a:scale('2') end, '^tunnel%.Array:scale: factor must be a number'},
      {function() a:add(a, 0.5) end, '^tunnel%.Array:add: scale must be an integer'},
      {function() a:mul({}) end, '^tunnel%.Array:mul: other must be a tunnel%.Array'},
      {function() a:dot(tunnel.Vector()) end, '^tunnel%.Array:dot: other must be a tunnel%.Array'},
      {function() a:version() end, '^tunnel%.Array:version: only a cluster Array'},
    }
    for i, c in ipairs(cases) do
      local ok, err = pcall(c[1])
      assert.is_false(ok, i)
      assert.matches(c[2], err, 1, false, i)
    end
    assert.are.same({0, 0, 0}, a:totable())
  end)

  it('is shared by reference: 4 threads each fill a quarter, the main thread sees it all', function()
    local n = 40000
    local a = tunnel.Array(n)
    local b = tunnel.Block(4)
    b:add(a)
    b:run(function(arr)
      local q = #arr / 4
      local v = arr:view((__threadid - 1) * q + 1, q)
      v:fill(__threadid)
      v[q] = -__threadid -- and one element through indexing
      return #v
    end)
    local result, status = b:synchronize()
    b:terminate()
    for i = 1, 4 do assert.is_true(status[i], tostring(result[i][1])) end
    local want = 0
    for k = 1, 4 do want = want + (n / 4 - 2) * k end
    assert.are.equal(want, a:sum())
    assert.are.equal(1, a[1])
    assert.are.equal(-4, a[n])
  end)

  it('crosses Vectors, Hashes, Share, Atomic and the Serializer by reference', function()
    local a = tunnel.Array(2)
    local vec, h = tunnel.Vector(), tunnel.Hash()
    vec:pushBack(a)
    h.w = a
    local s = tunnel.Share({w = a})
    local at = tunnel.Atomic({w = a})
    local ser = tunnel.Serializer()
    local got = {vec:popFront(), h.w, s.data.w, at.data.w, ser:load(ser:save({a}))[1],
                 tunnel.Share(a).data, tunnel.Atomic(a):read(function(x) return x end)}
    for i, g in ipairs(got) do
      assert.is_true(rawequal(a, g), i) -- the same box in this state
    end
    local b = tunnel.Block(1)
    b:add(h)
    b:run(function(hash) hash.w[2] = 42 end)
    b:synchronize()
    b:terminate()
    assert.are.equal(42, a[2])
  end)

  it('makes Plurals of Arrays', function()
    local p = tunnel.Plural(3, tunnel.Array, 4, 'int8')
    assert.are.equal(3, #p)
    assert.are.equal('int8', p[3]:type())
    assert.are.equal(4, #p[1])
    assert.are_not.equal(p[1], p[2])
  end)

  it('lets a job function hold the class itself (sent by name)', function()
    local Array = tunnel.Array
    local b = tunnel.Block(1)
    b:run(function() return #Array(3, 'int8'), Array.frombytes('ab', 'uint8')[2] end)
    local result, status = b:synchronize()
    b:terminate()
    assert.is_true(status[1], tostring(result[1][1]))
    assert.are.same({3, 98, n = 2}, result[1])
  end)

  it('adds atomically from 4 threads without losing any', function()
    local a = tunnel.Array(2)
    local i = tunnel.Array(1, 'int32')
    local b = tunnel.Block(4)
    b:add(a, i)
    b:run(function(arr, ints)
      for _ = 1, 5000 do
        arr:atomicAdd(1, 0.5)
        ints:atomicAdd(1, 1)
      end
    end)
    local result, status = b:synchronize()
    b:terminate()
    for k = 1, 4 do assert.is_true(status[k], tostring(result[k][1])) end
    assert.are.equal(10000, a[1])
    assert.are.equal(20000, i[1])
  end)

  it('gives its address for FFI (LuaJIT) and C code', function()
    local a = tunnel.Array({1, 2, 3})
    local p = a:pointer()
    assert.are.equal('userdata', type(p))
    if not jit then return end
    local ffi = require('ffi')
    local d = ffi.cast('double *', p)
    assert.are.equal(2, d[1])
    d[2] = 30
    assert.are.equal(30, a[3])
    local v = ffi.cast('int16_t *', tunnel.Array({5, 6, 7}, 'int16'):view(2):pointer())
    assert.are.equal(6, v[0])
    -- 64-byte alignment of a base array
    assert.are.equal(0, tonumber(ffi.cast('uintptr_t', p)) % 64)
  end)

  it('prints its type and size', function()
    assert.matches('^tunnel%.Array: 0x%x+ %(3 int8%)$', tostring(tunnel.Array(3, 'int8')))
  end)
end)

-- a[i] and a[i] = x in loops hot enough for LuaJIT to compile them: there
-- they go through the FFI (src/lua/larray.c, "LuaJIT's fast path"), on the
-- other Luas through the C metamethods; the behaviour is the same.
describe('tunnel.Array element access in hot loops', function()
  local HOT = 1000 -- well past LuaJIT's hotloop (56) and hotexit (10)
  local FAST = jit ~= nil and jit.status() and (pcall(require, 'ffi'))

  -- A value of integer type t for i: cycles through the whole range,
  -- both ends included.
  local function cycle(t, i)
    local r = RANGE[t]
    if i % 3 == 0 then return r[1] end
    if i % 3 == 1 then return r[2] end
    local span = math.min(r[2] - r[1], 2 ^ 31)
    return r[1] + (i * 7919) % span
  end

  it('uses Lua functions through the FFI on LuaJIT with its JIT on, else the C ones', function()
    local mt = debug.getmetatable(tunnel.Array(1))
    local what = FAST and 'Lua' or 'C'
    assert.are.equal(what, debug.getinfo(mt.__index, 'S').what)
    assert.are.equal(what, debug.getinfo(mt.__newindex, 'S').what)
  end)

  it('reads and writes every type as get and set do', function()
    for _, t in ipairs(TYPES) do
      local a, b = tunnel.Array(HOT, t), tunnel.Array(HOT, t)
      for i = 1, HOT do
        local x = FLOAT[t] and (i - HOT / 2) * 0.1 or cycle(t, i)
        a[i] = x
        b:set(i, x)
      end
      for i = 1, HOT do
        local got = a[i]
        if got ~= b:get(i) then
          error(('%s %d: a[i] %s, get %s'):format(t, i, got, b:get(i)))
        end
        local want = FLOAT[t] and (i - HOT / 2) * 0.1 or cycle(t, i)
        if t == 'float' then
          assert(math.abs(got - want) <= math.abs(want) * 1e-7, t)
        elseif got ~= want then
          error(('%s %d: %s, not %s'):format(t, i, got, want))
        end
      end
      assert.are.equal(a:bytes(), b:bytes(), t)
    end
    -- float elements: single precision, rounded as C rounds
    local f = tunnel.Array(HOT, 'float')
    for i = 1, HOT do f[i] = 0.1 end
    local one = tunnel.Array({0.1}, 'float')
    for i = 1, HOT do assert(f[i] == one:get(1) and f[i] ~= 0.1) end
    -- uint64 from 2^63 up (the C path writes those) reads back exactly
    local u = tunnel.Array(HOT, 'uint64')
    for i = 1, HOT do u[i] = 2 ^ 63 + (i % 2) * 2048 end
    for i = 1, HOT do assert(u[i] == 2 ^ 63 + (i % 2) * 2048, i) end
    -- an integral float index is an index
    local d = tunnel.Array(HOT)
    for i = 1, HOT do d[i + 0.0] = i end
    for i = 1, HOT do assert(d[i * 1.0] == i) end
  end)

  it('raises for a bad value in the middle of a loop, writing nothing for it (no wrapping)', function()
    for _, t in ipairs(TYPES) do
      local bads = {'1', true}
      if not FLOAT[t] then
        bads = {'1', 0.5, 0 / 0, math.huge, -math.huge, 2 ^ 64}
        if BITS[t] then -- where the FFI's conversion would wrap
          bads[#bads + 1] = RANGE[t][2] + 1
          bads[#bads + 1] = RANGE[t][1] - 1
        end
      end
      for _, bad in ipairs(bads) do
        local a = tunnel.Array(HOT, t)
        local at = HOT - 100
        local ok, err = pcall(function()
          for i = 1, HOT do
            local x = i % 100
            if i == at then x = bad end
            a[i] = x
          end
        end)
        local what = t .. ' ' .. tostring(bad)
        assert.is_false(ok, what)
        assert.matches('^tunnel%.Array: value', err, 1, false, what)
        assert.are.equal((at - 1) % 100, a[at - 1], what)
        assert.are.equal(0, a[at], what) -- nothing written
        assert.are.equal(0, a[at + 1], what)
      end
    end
  end)

  it('raises for an index out of range at the end of a loop, of an array and of a view', function()
    for _, t in ipairs({'double', 'int32', 'uint8'}) do
      local base = tunnel.Array(3 * HOT, t)
      for _, a in ipairs({tunnel.Array(HOT, t), base:view(HOT + 1, HOT)}) do
        local ok, err = pcall(function()
          for i = 1, HOT + 1 do a[i] = i % 100 end
        end)
        assert.is_false(ok)
        assert.matches('^tunnel%.Array: index ' .. (HOT + 1) .. ' out of range %(1%.%.' .. HOT .. '%)', err)
        local sum = 0
        ok, err = pcall(function()
          for i = 1, HOT + 1 do sum = sum + a[i] end
        end)
        assert.is_false(ok)
        assert.matches('^tunnel%.Array: index ' .. (HOT + 1) .. ' out of range', err)
        assert.are.equal(a:sum(), sum)
        ok, err = pcall(function()
          for i = HOT, 0, -1 do a[i] = 1 end
        end)
        assert.is_false(ok)
        assert.matches('^tunnel%.Array: index 0 out of range', err)
      end
      -- the view wrote its part of the base only
      assert.are.equal(0, base[HOT])
      assert.are.equal(1, base[HOT + 1])
      assert.are.equal(0, base[2 * HOT + 1])
    end
  end)

  it('reads what atomicAdd wrapped', function()
    local cases = {int8 = {127, 1, -128}, uint8 = {0, -1, 255},
                   int16 = {-32768, -1, 32767}, uint32 = {4294967295, 1, 0},
                   uint64 = {0, -1, 2 ^ 64}}
    for t, c in pairs(cases) do
      local a = tunnel.Array(HOT, t)
      for i = 1, HOT do
        a[i] = c[1]
        a:atomicAdd(i, c[2])
      end
      for i = 1, HOT do
        if a[i] ~= c[3] then error(('%s %d: %s'):format(t, i, a[i])) end
      end
    end
  end)

  it('views share the memory and keep it after the base is collected', function()
    local a = tunnel.Array(3 * HOT, 'int16')
    local v = a:view(HOT + 1, HOT)
    for i = 1, HOT do v[i] = i end
    for i = 1, HOT do assert(a[HOT + i] == i) end
    a = nil -- luacheck: ignore 311 (drops it)
    collectgarbage()
    collectgarbage()
    local sum = 0
    for i = 1, HOT do sum = sum + v[i] end
    assert.are.equal(HOT * (HOT + 1) / 2, sum)
  end)

  it('is shared by reference: threads write through a[i], the main thread reads it', function()
    local n = 4 * HOT
    local a = tunnel.Array(n, 'int32')
    local b = tunnel.Block(4)
    b:add(a)
    b:run(function(arr)
      local q = #arr / 4
      for i = (__threadid - 1) * q + 1, __threadid * q do arr[i] = i * __threadid end
      return debug.getinfo(debug.getmetatable(arr).__index, 'S').what
    end)
    local result, status = b:synchronize()
    b:terminate()
    for k = 1, 4 do
      assert.is_true(status[k], tostring(result[k][1]))
      assert.are.equal(FAST and 'Lua' or 'C', result[k][1])
    end
    for i = 1, n do
      if a[i] ~= i * math.ceil(i / HOT) then error(i .. ': ' .. a[i]) end
    end
  end)

  it('gives a resurrected box that was finalized an error, not its old memory', function()
    local got
    local function probe(f) -- finalized after the array, made later
      if newproxy then
        local p = newproxy(true)
        getmetatable(p).__gc = f
        return p
      end
      return setmetatable({}, {__gc = f})
    end
    local function garbage() -- both unreachable once it returns
      local a
      local _ = probe(function() got = {pcall(function() return a[1] end)} end)
      a = tunnel.Array(4)
      for _ = 1, HOT do a[1] = a[1] + 1 end
    end
    garbage()
    collectgarbage()
    collectgarbage()
    assert.is_table(got)
    assert.is_false(got[1])
    assert.matches('^tunnel%.Array: object has been collected', got[2])
  end)
end)

local C = BACKENDS[2]

-- Run a Lua program in another process with the module of this build.
local function spawn(code, limit)
  local lua = os.getenv('TUNNEL_LUA') or 'lua5.4'
  local name = os.tmpname()
  local f = assert(io.open(name, 'w'))
  f:write(code)
  f:close()
  return assert(io.popen(('timeout %d %s %s 2>&1; rm -f %s')
    :format(limit or 120, lua, name, name)))
end

;(C and describe or pending)('tunnel.Array (cluster only)', function()
  it('attaches by name, refuses another shape, and counts versions', function()
    local name = C.fresh('ps')
    local a = C.cluster:Array(name, 3, 'int32')
    assert.are.equal(0, a:version())
    local b = C.cluster:Array(name)
    assert.are.equal(a, b)
    assert.are.equal('int32', b:type())
    local ok, err = pcall(C.cluster.Array, C.cluster, name, 4, 'int32')
    assert.is_false(ok)
    assert.matches('^tunnel%.Cluster:Array: .*holds 3 int32 elements, not 4 int32', err)
    ok, err = pcall(C.cluster.Array, C.cluster, C.fresh('absent'))
    assert.is_false(ok)
    assert.matches('no such Array', err)
    a[1] = 1
    a:store(tunnel.Array(3, 'int32'))
    a:add(tunnel.Array({1, 2, 3}, 'int32'), 2)
    a:atomicAdd(3, 1)
    assert.are.equal(4, a:version())
    local copy, version = a:fetch()
    assert.are.same({2, 4, 7}, copy:totable())
    assert.are.equal(4, version)
  end)

  it('refuses the in-place kernels, views and the pointer, naming fetch', function()
    local a = C.Array(2)
    for _, m in ipairs({'fill', 'scale', 'mul', 'dot', 'sum', 'min', 'max', 'view', 'pointer'}) do
      local arg = (m == 'mul' or m == 'dot') and tunnel.Array(2) or 1
      local ok, err = pcall(a[m], a, arg)
      assert.is_false(ok, m)
      assert.matches('^tunnel%.Array:' .. m .. ': not available on a cluster Array %(fetch%(%)', err)
    end
  end)

  it('copies from a cluster Array into an in-process one', function()
    local a = C.Array(3)
    a:store(tunnel.Array({1, 2, 3}))
    local l = tunnel.Array(3)
    l:copy(a)
    assert.are.same({1, 2, 3}, l:totable())
    l:add(a, -1)
    assert.are.same({0, 0, 0}, l:totable())
  end)

  it('write stores the callback\'s copy back; read sees a copy', function()
    local a = C.Array(2)
    a:write(function(x) x[1] = 5 x:fill(7) end)
    assert.are.same({7, 7}, a:totable())
    assert.are.equal(14, a:read(function(x) return x:sum() end))
    assert.are.equal(1, a:version())
  end)

  it('crosses cluster Hashes and Blocks by name', function()
    local a = C.Array(2)
    local h = C.Hash()
    h.w = a
    assert.are.equal(a, h.w)
    local b = tunnel.Block(1)
    b:add(a)
    b:run(function(arr) arr:add(tunnel.Array({1, 1}), 10) return #arr end)
    local result, status = b:synchronize()
    b:terminate()
    assert.is_true(status[1], tostring(result[1][1]))
    assert.are.same({10, 10}, a:totable())
  end)

  it('adds from 2 processes at once lose nothing (a parameter server)', function()
    local name = C.fresh('ps2')
    local a = C.cluster:Array(name, 1000)
    local procs = {}
    for p = 1, 2 do
      procs[p] = spawn(([[
        local tunnel = require('tunnel')
        local c = tunnel.Cluster(%q, {prefix = 'tunnel-spec:'})
        local w = c:Array(%q)
        local g = tunnel.Array(#w)
        g:fill(%d)
        for _ = 1, 50 do w:add(g, 0.5) end
        io.write('ok')
      ]]):format(C.url, name, p))
    end
    for p = 1, 2 do
      local out = procs[p]:read('*a')
      procs[p]:close()
      assert.are.equal('ok', out)
    end
    local copy, version = a:fetch()
    assert.are.equal(100, version)
    -- 50 adds of 0.5 * 1 and 50 of 0.5 * 2 on every element
    assert.are.equal(1000 * (25 + 50), copy:sum())
    assert.are.equal(75, copy[1000])
  end)
end)
