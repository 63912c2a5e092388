-- A value the receiving state cannot decode (a module it cannot require, a
-- class it has not registered) makes the taking call raise, naming the
-- method, and leaves the structure as it was: the value goes back where it
-- was taken from (issue 11: 3; docs/guarantees.md, "What a failed call
-- leaves").
local tunnel = require('tunnel')
-- luacheck: globals Late (a block thread's, set by its init)

local function error_of(f, ...)
  local ok, err = pcall(f, ...)
  if ok then return nil end
  return tostring(err)
end

-- A module the encoder knows (it is in package.loaded at the send) and the
-- receiver cannot require (gone from package.loaded, nowhere on the path).
-- One table for the whole file: the encoder's cache of module names knows
-- a module by its table.
local MOD = 'decode_spec_ghost_module'
local GHOST = {ghost = true}
local function ghost()
  package.loaded[MOD] = GHOST
  return GHOST, function() package.loaded[MOD] = nil end
end

local function contents(v)
  local t = {}
  for i = 1, v:size() do
    local x = v:get(i)
    t[i] = type(x) == 'table' and 'ghost' or x
  end
  return t
end

for _, b in ipairs(dofile('spec/support/backends.lua')) do
  describe(b.name .. ' Vector, a value the receiver cannot decode', function()
    local v, m, forget
    before_each(function()
      v = b.Vector()
      m, forget = ghost()
      v:pushBack(m)
      v:pushBack(2)
      v:pushBack(m)
      forget()
    end)
    after_each(function() package.loaded[MOD] = nil end)

    local function check_kept(method, ...)
      local err = error_of(v[method], v, ...)
      assert.matches('^tunnel%.Vector:' .. method .. ': cannot receive value: '
                     .. "module '" .. MOD .. "' not found", err)
      package.loaded[MOD] = m -- now it decodes: everything is still there
      assert.are.same({'ghost', 2, 'ghost'}, contents(v))
    end

    it('popFront raises naming the method and keeps the value at the front', function()
      check_kept('popFront')
    end)
    it('popFront with a timeout keeps it too', function() check_kept('popFront', 0.5) end)
    it('popFrontAsync keeps it', function() check_kept('popFrontAsync') end)
    it('popBack keeps the value at the back', function() check_kept('popBack') end)
    it('popBack with a timeout keeps it', function() check_kept('popBack', 0.5) end)
    it('popBackAsync keeps it', function() check_kept('popBackAsync') end)
    it('remove() keeps the last value', function() check_kept('remove') end)
    it('remove(i) keeps the value at its index', function() check_kept('remove', 1) end)
    it('removeAsync(i) keeps it', function() check_kept('removeAsync', 3) end)

    it('takes the value once the receiver can decode it', function()
      assert.is_not_nil(error_of(v.popFront, v))
      package.loaded[MOD] = m
      assert.are.equal(m, v:popFront())
      assert.are.equal(2, v:popFront())
      assert.are.equal(m, v:popFront())
      assert.are.equal(0, v:size())
    end)
  end)
end

for _, b in ipairs(dofile('spec/support/backends.lua')) do
  describe(b.name .. ' Hash and Atomic, a value the receiver cannot decode', function()
    after_each(function() package.loaded[MOD] = nil end)

    it('Hash:get raises naming the method and the value stays', function()
      local h = b.Hash()
      local m, forget = ghost()
      h:set('k', m)
      forget()
      assert.matches('^tunnel%.Hash:get: cannot receive value: module', error_of(h.get, h, 'k'))
      assert.matches('^tunnel%.Hash:getAsync: cannot receive value: module',
                     error_of(h.getAsync, h, 'k'))
      package.loaded[MOD] = m
      assert.are.equal(m, h:get('k'))
    end)

    it('Atomic data raises naming the method and stays', function()
      -- a C function found only in the ghost module (a shared table would
      -- copy a module table into itself)
      local m, forget = ghost()
      m.fn = m.fn or ('a'):gmatch('a')
      local a = b.Atomic({fn = m.fn})
      forget()
      local err = error_of(function() return a.data.fn end)
      assert.matches("cannot receive value: module '" .. MOD .. "' not found", err)
      package.loaded[MOD] = m
      assert.are.equal(m.fn, a.data.fn)
    end)
  end)
end

describe('a table of a class the popping thread did not register', function()
  it('stays in the vector, and the error names the method', function()
    local Cls = tunnel.register('decode_spec.Cls', {__index = {}})
    local v = tunnel.Vector()
    v:pushBack(setmetatable({n = 7}, Cls))
    local blk = tunnel.Block(1)
    blk:add(v)
    blk:run(function(w)
      local ok, err = pcall(w.popFront, w)
      return ok, tostring(err), w:size()
    end)
    local result = blk:synchronize()
    blk:terminate()
    assert.is_false(result[1][1])
    assert.matches("^tunnel%.Vector:popFront: cannot receive a table of class "
                   .. "'decode_spec%.Cls'", result[1][2])
    assert.are.equal(1, result[1][3])
    local t = v:popFront()
    assert.are.equal(Cls, getmetatable(t))
    assert.are.equal(7, t.n)
  end)
end)

describe('Block:add', function()
  it('refuses more arguments than a run can put on a stack, naming the method', function()
    local blk = tunnel.Block(1)
    local many = {}
    for i = 1, 10 ^ 6 do many[i] = i end
    local unpack = table.unpack or unpack
    -- 10^6 values cannot even be passed to add on LuaJIT and 5.1: add them
    -- in slices, as a program would have to
    local err
    for i = 1, #many, 1000 do
      err = error_of(blk.add, blk, unpack(many, i, i + 999))
      if err then break end
    end
    assert.are.equal('tunnel.Block:add: too many arguments (at most 4000; '
                     .. '4000 added before)', err)
    blk:run(function(...) return select('#', ...) end)
    local result, status = blk:synchronize()
    assert.is_true(status[1])
    assert.are.equal(4000, result[1][1])
    blk:terminate()
  end)
end)

describe('a Block result the main state cannot decode', function()
  it('raises naming the method and can be read once it decodes', function()
    local blk = tunnel.Block(1, function()
      Late = tunnel.register('decode_spec.Late', {})
    end)
    blk:run(function() return setmetatable({v = 1}, Late) end)
    local err = error_of(function()
      local result = blk:synchronize()
      return result[1][1]
    end)
    assert.matches("^tunnel%.Block:%a+: cannot receive a table of class "
                   .. "'decode_spec%.Late'", err)
    local Late = tunnel.register('decode_spec.Late', {})
    local result, status = blk:synchronize()
    assert.is_true(status[1])
    assert.are.equal(Late, getmetatable(result[1][1]))
    assert.are.equal(1, result[1][1].v)
    blk:terminate()
  end)
end)
