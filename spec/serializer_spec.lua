-- tunnel.Serializer: values to binary strings and back; bytes it did not
-- write raise errors, never crash.
local tunnel = require('tunnel')

local s = tunnel.Serializer()

local function error_of(f, ...)
  local ok, err = pcall(f, ...)
  if ok then return nil end
  return tostring(err)
end

-- The header of a plain-data string, with a given payload (the check will
-- not match, as for a string from another process).
local function forged(payload)
  local head = s:save(1):sub(1, 7) -- magic, version, flavour, flags = 0
  return head .. ('\0'):rep(8) .. payload
end

describe('tunnel.Serializer', function()
  it('makes serializers whose methods name the class when misused', function()
    assert.matches('^tunnel.Serializer: ', tostring(s))
    assert.matches('tunnel.Serializer:save: self is a number',
                   error_of(s.save, 1, 2))
    assert.matches('tunnel.Serializer:load: expects a string',
                   error_of(s.load, s, 42))
  end)

  it('saves to a binary string that loads any number of times', function()
    local str = s:save({1, 'a', x = {true}})
    assert.are.equal('string', type(str))
    for _ = 1, 3 do assert.are.same({1, 'a', x = {true}}, s:load(str)) end
    assert.are.same({1, 'a', x = {true}}, s:retain(str))
    assert.are.same({1, 'a', x = {true}}, tunnel.Serializer():load(str))
  end)

  it('saves nil and loads it back', function()
    assert.is_nil(s:load(s:save(nil)))
    assert.is_nil(s:load(s:save()))
  end)

  it('refuses strings it did not write', function()
    for _, bad in ipairs({'', 'x', 'garbage that is long enough',
                          ('\0'):rep(40), '\27Lua'}) do
      assert.matches('^tunnel.Serializer:load: ', error_of(s.load, s, bad))
    end
  end)

  it('refuses every truncation of a valid string', function()
    local f = function(x) return x end
    local str = s:save({1, 2.5, 'three', {4}, f, print, math})
    for n = 0, #str - 1 do
      assert.is_not_nil(error_of(s.load, s, str:sub(1, n)), 'length ' .. n)
    end
  end)

  it('refuses function bytecode from a string it did not write', function()
    local str = s:save(function() return 1 end)
    local flipped = str:sub(1, -3) .. string.char((str:byte(-2) + 1) % 256) .. str:sub(-1)
    assert.matches('not saved by this process', error_of(s.load, s, flipped))
    -- a forged header with a function tag: refused before any lua_load
    assert.is_not_nil(error_of(s.load, s, forged(str:sub(16))))
  end)

  it('loads plain data whose check does not match (another process)', function()
    local str = s:save({a = {1, 2}, b = 'x', m = math})
    local other = str:sub(1, 7) .. ('\0'):rep(8) .. str:sub(16)
    assert.are.same({a = {1, 2}, b = 'x', m = math}, s:load(other))
  end)

  it('raises clear errors on crafted payloads', function()
    local cases = {
      ['\99'] = 'unknown tag',
      ['\17'] = 'unknown tag', -- one past the last tag (CLASS, 16)
      ['\254\2'] = 'unknown tag', -- the data-only mark of blobs is no tag
      ['\5\200\1'] = 'length past the end',
      ['\3\255\255\255\255\255\255\255\255\255\255\1'] = 'bad varint',
      ['\8\1'] = 'bad back%-reference',
      ['\6\1\0\8\1'] = 'bad back%-reference', -- to an unmarked table
      ['\7\1\0\8\2'] = 'bad back%-reference', -- to a later one
      ['\15\0'] = 'bad object index',
      ['\6\0\1\0\1'] = 'nil key',
      ['\6\0\1\4\0\0\0\0\0\0\248\127\1'] = 'NaN key',
      ['\6\0'] = 'truncated',
      ['\6\1\0'] = 'truncated',
      ['\6\0\1\1'] = 'length past the end', -- 1 pair in 1 byte
      ['\6\200\1\0'] = 'length past the end',
      ['\1\1'] = '2 values',
      [('\6\1\0'):rep(300)] = 'nesting too deep',
    }
    for payload, why in pairs(cases) do
      local err = error_of(s.load, s, forged(payload))
      assert.is_not_nil(err, why)
      assert.matches(why, err)
    end
  end)

  it('never crashes on random bytes and bit flips', function()
    math.randomseed(1234)
    local function random_bytes(n)
      local t = {}
      for i = 1, n do t[i] = string.char(math.random(0, 255)) end
      return table.concat(t)
    end
    -- random payloads behind a valid header, and random whole strings
    for _ = 1, 2000 do
      pcall(s.load, s, forged(random_bytes(math.random(0, 40))))
      pcall(s.load, s, random_bytes(math.random(0, 40)))
    end
    -- small tags are more likely to go deep into the decoder
    for _ = 1, 2000 do
      local t = {}
      for i = 1, math.random(1, 30) do t[i] = string.char(math.random(0, 16)) end
      pcall(s.load, s, forged(table.concat(t)))
    end
    -- every single-bit flip of valid strings, functions included
    local up = {1, 2}
    for _, v in ipairs({{1, 'two', {3.5, true}, x = {y = {}}},
                        function(a) return up[a] end, {print, math, 'x'}}) do
      local str = s:save(v)
      for i = 1, #str do
        for bit = 0, 7 do
          local b, m = str:byte(i), math.floor(2 ^ bit)
          b = math.floor(b / m) % 2 == 1 and b - m or b + m
          local flipped = str:sub(1, i - 1) .. string.char(b) .. str:sub(i + 1)
          pcall(s.load, s, flipped)
        end
      end
    end
    assert.are.same({1, {2}}, s:load(s:save({1, {2}})))
  end)

  if tunnel.Counter then
    describe('with tunnel objects inside', function()
      it('hands the objects over once: a second load raises', function()
        local c = tunnel.Counter(3)
        local str = s:save({c = c})
        local r = s:load(str)
        assert.are.equal(c, r.c)
        assert.are.equal(3, r.c:get())
        assert.matches('tunnel.Serializer:load: the objects in this string were '
                       .. 'already loaded %(use retain%)', error_of(s.load, s, str))
        assert.are.equal(c, s:retain(str).c) -- the failed load changed nothing
      end)

      -- The original's unit test (unittest/serializer.lua): save, load in
      -- the main thread, then retain the same string in other threads.
      it('retains a string after its load while the loaded value lives', function()
        local h = tunnel.Hash()
        local str = s:save(h)
        local loaded = s:load(str)
        assert.are.equal(h, loaded)
        h = nil -- luacheck: ignore 311 (drops it)
        collectgarbage()
        assert.are.equal(loaded, s:retain(str))
        local b = tunnel.Block(2)
        b:add(str)
        b:run(function(saved)
          local data = tunnel.Serializer():retain(saved)
          data:set('thread ' .. __threadid, __threadid)
          return true
        end)
        local result, status = b:synchronize()
        b:terminate()
        for i = 1, 2 do assert.is_true(status[i], tostring(result[i][1])) end
        assert.are.equal(1, loaded:get('thread 1'))
        assert.are.equal(2, loaded:get('thread 2'))
        assert.are.equal(loaded, s:retain(str))
        assert.is_not_nil(error_of(s.load, s, str))
      end)

      it('lets the string go with the value load returned', function()
        local str = s:save({v = tunnel.Vector()})
        do
          local loaded = s:load(str)
          assert.are.equal(0, #loaded.v)
          assert.are.equal(0, #s:retain(str).v)
        end
        for _ = 1, 4 do collectgarbage() end
        assert.matches('tunnel.Serializer:retain: the objects in this string are '
                       .. 'gone: it was loaded, and the value load returned has '
                       .. 'been collected', error_of(s.retain, s, str))
        assert.matches('tunnel.Serializer:load: the objects in this string are gone',
                       error_of(s.load, s, str))
      end)

      it('keeps the string retainable while any of several loaded values lives', function()
        local c = tunnel.Counter(4)
        local one, two = s:save(c), s:save(c) -- two strings, one object
        local a, b = s:load(one), s:load(two)
        assert.are.equal(a, b) -- one box per object per state
        c, b = nil, nil -- luacheck: ignore 311 (drops them)
        collectgarbage()
        assert.are.equal(4, s:retain(one):get())
        assert.are.equal(4, s:retain(two):get())
        a = nil -- luacheck: ignore 311 (drops it)
        for _ = 1, 4 do collectgarbage() end
        assert.is_not_nil(error_of(s.retain, s, one))
        assert.is_not_nil(error_of(s.retain, s, two))
      end)

      it('keeps a retained string loadable', function()
        local c = tunnel.Counter(9)
        local str = s:save({c, c})
        for _ = 1, 3 do
          local r = s:retain(str)
          assert.are.equal(c, r[1])
          assert.are.equal(r[1], r[2])
        end
        local loaded = s:load(str)
        assert.are.equal(c, loaded[1])
        assert.is_not_nil(error_of(s.load, s, str))
        assert.are.equal(c, s:retain(str)[2])
      end)

      it('keeps the objects alive while only the string refers to them', function()
        local str = s:save(tunnel.Counter(11))
        collectgarbage()
        collectgarbage()
        assert.are.equal(11, s:load(str):get())
      end)

      it('refuses a tampered string with objects', function()
        local str = s:save({tunnel.Counter(1), 'pad'})
        local bad = str:sub(1, -2) .. string.char((str:byte(-1) + 1) % 256)
        assert.is_not_nil(error_of(s.load, s, bad))
        assert.is_not_nil(s:load(str)[1])
      end)
    end)
  end

  -- Another process (same interpreter) saves; this one loads.
  local lua = arg and arg[-1]
  local cpath, lpath = package.cpath, package.path
  if lua and io.popen then
    it('loads plain data saved by another process, not its functions', function()
      local script = ([[
        package.path = %q; package.cpath = %q
        local s = require('tunnel').Serializer()
        local function hex(x) return (x:gsub('.', function(c) return ('%%02x'):format(c:byte()) end)) end
        io.write(hex(s:save({1, 'x', {2}})), '\n', hex(s:save(function() return 1 end)), '\n')
      ]]):format(lpath, cpath)
      local file = os.tmpname()
      local f = assert(io.open(file, 'w'))
      f:write(script)
      f:close()
      local p = io.popen(lua .. ' ' .. file, 'r')
      local out = p:read('*a')
      p:close()
      os.remove(file)
      local data, fn = out:match('^(%x+)\n(%x+)\n$')
      if not data then return pending('could not run ' .. lua) end
      local function unhex(h) return (h:gsub('%x%x', function(x) return string.char(tonumber(x, 16)) end)) end
      assert.are.same({1, 'x', {2}}, s:load(unhex(data)))
      assert.matches('not saved by this process', error_of(s.load, s, unhex(fn)))
    end)
  end
end)
