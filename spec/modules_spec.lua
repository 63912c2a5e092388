-- The original's module layout (require('tunnel.vector'), ...), the global
-- `tunnel`, their installation, and the opt-in tunnel.compat.
local tunnel = require('tunnel')
-- luacheck: globals INIT_VECTOR (a block thread's, set by its init)

local LUA = dofile('spec/support/lua.lua').interpreter
-- The flavour as the Makefile names it (under the sanitizer targets
-- TUNNEL_LUA is the path of an instrumented interpreter).
local FLAVOUR = LUA:find('luajit') and 'luajit' or LUA:match('lua5%.%d') or
                'lua' .. _VERSION:match('%d+%.%d+')


-- Every module of the original (its tunnel/*.lua but init.lua) and the
-- class it returned.
local CLASSES = {
  array = 'Array',
  atomic = 'Atomic', block = 'Block', counter = 'Counter', hash = 'Hash',
  plural = 'Plural', printer = 'Printer', serializer = 'Serializer',
  share = 'Share', vector = 'Vector',
  barrier = 'Barrier', semaphore = 'Semaphore',
}

-- Run a Lua snippet in a fresh interpreter (the one running the specs, with
-- this environment's LUA_PATH/LUA_CPATH); returns its output and whether it
-- exited cleanly.
local function run_script(code, env)
  local name = os.tmpname()
  local f = assert(io.open(name, 'w'))
  f:write(code)
  f:close()
  local p = assert(io.popen(('env %s %s %s %s 2>&1')
    :format(dofile('spec/support/lua.lua').env, env or '', LUA, name)))
  local out = p:read('*a')
  local ok = p:close()
  os.remove(name)
  return out, ok
end

local function sh(cmd)
  local p = assert(io.popen(cmd .. ' 2>&1'))
  local out = p:read('*a')
  local ok = p:close()
  return out, ok
end

describe('the original\'s module layout', function()
  it('require(\'tunnel.<name>\') returns the class, for every module of the original', function()
    for name, class in pairs(CLASSES) do
      local got = require('tunnel.' .. name)
      assert.is_not_nil(tunnel[class], class)
      assert.is_true(rawequal(tunnel[class], got), name)
    end
    local Vector = require('tunnel.vector')
    local v = Vector(2)
    assert.is_true(v:pushBack('x'))
    assert.are.equal('x', (v:popFront()))
  end)

  it('require(\'tunnel\') sets the global tunnel, as the original\'s init.lua did', function()
    local out, ok = run_script([[
      assert(tunnel == nil)
      local t = require('tunnel')
      assert(rawequal(tunnel, t), 'global tunnel')
      assert(rawequal(t, require('tunnel.core')))
      assert(type(tunnel.Vector) == 'function')
      print('ok')
    ]])
    assert.truthy(ok, out)
    assert.are.equal('ok\n', out)
  end)

  it('require(\'tunnel.<name>\') alone loads tunnel and sets the global too', function()
    for name, class in pairs(CLASSES) do
      local out, ok = run_script(([[
        assert(tunnel == nil)
        local C = require('tunnel.%s')
        assert(type(tunnel) == 'table', 'global tunnel')
        assert(rawequal(C, tunnel.%s), 'the class')
        assert(rawequal(package.loaded.tunnel, tunnel))
        print('ok')
      ]]):format(name, class))
      assert.truthy(ok, name .. ': ' .. out)
      assert.are.equal('ok\n', out, name)
    end
  end)

  it('works inside block threads, and in init', function()
    local b = tunnel.Block(2, function()
      INIT_VECTOR = require('tunnel.vector')
    end)
    b:add(CLASSES)
    b:run(function(classes)
      local wrong = {}
      for name, class in pairs(classes) do
        if not rawequal(require('tunnel.' .. name), tunnel[class]) then
          wrong[#wrong + 1] = name
        end
      end
      table.sort(wrong)
      local Counter = require('tunnel.counter')
      return table.concat(wrong, ' '), rawequal(INIT_VECTOR, tunnel.Vector),
             Counter(__threadid):get(), rawequal(require('tunnel'), tunnel)
    end)
    local result, status = b:synchronize()
    b:terminate()
    for i = 1, 2 do
      assert.is_true(status[i], tostring(result[i][1]))
      assert.are.same({'', true, i, true, n = 4}, result[i])
    end
  end)

  it('block threads have them preloaded, without the files on package.path', function()
    local out, ok = run_script([[
      local tunnel = require('tunnel.core')
      assert(not pcall(require, 'tunnel.vector'), 'no file to find here')
      local b = tunnel.Block(1)
      b:run(function()
        return rawequal(require('tunnel.vector'), tunnel.Vector),
               rawequal(require('tunnel.serializer'), tunnel.Serializer)
      end)
      local result, status = b:synchronize()
      print(status[1], result[1][1], result[1][2])
    ]], 'LUA_PATH="/nonexistent/?.lua"')
    assert.truthy(ok, out)
    assert.are.equal('true\ttrue\ttrue\n', out)
  end)

  it('a class from require(\'tunnel.<name>\') crosses threads like tunnel.<Name>', function()
    local Hash = require('tunnel.hash')
    local h = Hash()
    local b = tunnel.Block(1)
    b:add(h, Hash)
    b:run(function(hash, H)
      hash:set('made', rawequal(H, tunnel.Hash))
      return H():size()
    end)
    local result, status = b:synchronize()
    b:terminate()
    assert.is_true(status[1], tostring(result[1][1]))
    assert.are.equal(0, result[1][1])
    assert.is_true((h:get('made')))
  end)

  it('luarocks installs every Lua file of lua/tunnel, the module and the command (make install-rock)', function()
    local bin = os.getenv('TUNNEL_BIN')
    if not bin or not bin:match('/tunnel$') then
      pending('TUNNEL_BIN (the build directory) not set: run through make spec')
      return
    end
    local build = bin:gsub('/tunnel$', '')
    local dest = os.tmpname()
    os.remove(dest)
    finally(function() sh('rm -rf ' .. dest) end)
    -- What `luarocks make` runs after `make rock` (rockspec/), into the
    -- rock's folders; -o: nothing rebuilt, as above.
    local out, ok = sh(('env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL -u LD_PRELOAD make -s B=%s LUA=%s'
      .. ' -o %s/%s/tunnel/core.so -o %s/tunnel -o %s/.flags'
      .. ' INST_LUADIR=%s/lua INST_LIBDIR=%s/lib INST_BINDIR=%s/bin install-rock')
      :format(build, FLAVOUR, build, FLAVOUR, build, build, dest, dest, dest))
    assert.truthy(ok, out)
    local files = {}
    for file in sh('ls lua/tunnel'):gmatch('[^\n]+') do
      if file:match('%.lua$') then files[#files + 1] = file end
    end
    assert.is_true(#files >= 11) -- init, compat and the nine classes
    local installed = {}
    for file in sh('ls ' .. dest .. '/lua/tunnel'):gmatch('[^\n]+') do
      installed[#installed + 1] = file
    end
    assert.are.same(files, installed)
    for name in pairs(CLASSES) do
      assert.is_not_nil(io.open(dest .. '/lua/tunnel/' .. name .. '.lua'), name)
    end
    assert.is_not_nil(io.open(dest .. '/lib/tunnel/core.so'))
    assert.is_not_nil(io.open(dest .. '/bin/tunnel'))
  end)

  it('make install installs them, and they load from there', function()
    local bin = os.getenv('TUNNEL_BIN')
    if not bin or not bin:match('/tunnel$') then
      pending('TUNNEL_BIN (the build directory) not set: run through make spec')
      return
    end
    local build = bin:gsub('/tunnel$', '')
    local dest = os.tmpname()
    os.remove(dest)
    -- The install rule alone: -o keeps make from rebuilding what it installs
    -- (the specs' own make may have used other flags); make is no code of
    -- ours, so a sanitizer runtime preloaded for the specs is not its.
    local out, ok = sh(('env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL -u LD_PRELOAD make -s B=%s LUA=%s'
      .. ' -o %s/libtunnel.a -o %s/libtunnel.so.%s -o %s/%s/tunnel/core.so -o %s/tunnel'
      .. ' -o %s/.flags PREFIX=/usr DESTDIR=%s install')
      :format(build, FLAVOUR, build, build, tunnel.version, build, FLAVOUR, build, build, dest))
    assert.truthy(ok, out)
    local version = _VERSION:match('%d+%.%d+') -- LuaJIT: 5.1
    local share = dest .. '/usr/share/lua/' .. version
    local lib = dest .. '/usr/lib/lua/' .. version
    for _, name in ipairs({'init', 'compat', 'vector', 'hash', 'atomic', 'block',
                           'counter', 'printer', 'share', 'plural', 'serializer'}) do
      local f = io.open(share .. '/tunnel/' .. name .. '.lua')
      assert.is_not_nil(f, name)
      f:close()
    end
    out, ok = run_script([[
      local V = require('tunnel.vector')
      assert(package.searchpath == nil or
             package.searchpath('tunnel.vector', package.path):find(']] .. share .. [[', 1, true))
      assert(rawequal(V, tunnel.Vector))
      require('tunnel.compat')
      print('ok')
    ]], ('LUA_PATH="%s/?.lua;%s/?/init.lua" LUA_CPATH="%s/?.so"'):format(share, share, lib))
    sh('rm -rf ' .. dest)
    assert.truthy(ok, out)
    assert.are.equal('ok\n', out)
  end)
end)

-- tunnel.compat changes the globals pairs/ipairs of a state: each case runs
-- in its own interpreter.
describe('tunnel.compat', function()
  it('gives pairs/ipairs over Vectors and Hashes on every Lua', function()
    local out, ok = run_script([[
      local tunnel = require('tunnel')
      local compat = require('tunnel.compat')
      assert(compat.pairs == pairs and compat.ipairs == ipairs)
      local v = tunnel.Vector()
      v:pushBack('a'); v:pushBack(nil); v:pushBack('c')
      local got = {}
      for i, x in ipairs(v) do got[#got + 1] = i .. '=' .. tostring(x) end
      print(table.concat(got, ' '))
      got = {}
      for i, x in pairs(v) do got[#got + 1] = i .. '=' .. tostring(x) end
      print(table.concat(got, ' '))
      local h = tunnel.Hash()
      h:set('k', 1); h:set(2, 'two')
      got = {}
      for k, x in pairs(h) do got[#got + 1] = tostring(k) .. '=' .. tostring(x) end
      table.sort(got)
      print(table.concat(got, ' '))
      local t = tunnel.Share({x = 1}).data
      got = {}
      for k, x in pairs(t) do got[#got + 1] = k .. '=' .. x end
      print(table.concat(got, ' '))
    ]])
    assert.truthy(ok, out)
    -- ipairs honours __ipairs as in the original: every slot, nils too
    assert.are.equal('1=a 2=nil 3=c\n1=a 2=nil 3=c\n2=two k=1\nx=1\n', out)
  end)

  -- The original's getResult example: its LuaJIT's ipairs went over every
  -- slot of the status Vector (__ipairs), so a pending thread showed as nil.
  it('lets ipairs see the pending slots of a run, as the original did', function()
    local out, ok = run_script([[
      local tunnel = require('tunnel')
      require('tunnel.compat')
      local block = tunnel.Block(2)
      local gate = tunnel.Vector()
      block:add(gate)
      local id = block:run(function(g) return g:popFront() end)
      local result, status = block:getResult(id)
      for i, v in ipairs(status) do
        if v == nil then print('thread ' .. i .. ' has not finished yet') end
      end
      gate:pushBack('a'); gate:pushBack('b')
      block:synchronize()
      for i, v in ipairs(status) do print(i, v, type(result[i][1])) end
    ]])
    assert.truthy(ok, out)
    assert.are.equal('thread 1 has not finished yet\nthread 2 has not finished yet\n'
      .. '1\ttrue\tstring\n2\ttrue\tstring\n', out)
  end)

  it('leaves plain tables and bad arguments as they were', function()
    local out, ok = run_script([[
      local function probe()
        local t = {1, 2, nil, 4, x = 'y'}
        local n = 0
        for _ in pairs(t) do n = n + 1 end
        local m = 0
        for _ in ipairs(t) do m = m + 1 end
        local proxy = setmetatable({}, {__index = function(_, i) if i < 3 then return i end end})
        local k = 0
        for _ in ipairs(proxy) do k = k + 1 end
        local ok1, e1 = pcall(pairs, 42)
        local ok2 = pcall(ipairs, 'str')
        return table.concat({n, m, k, tostring(ok1), tostring(ok2),
                             tostring(e1):match('%(.-%)$') or tostring(e1)}, ' ')
      end
      local a = probe()
      local next0, inext0 = pairs({}), ipairs({})
      require('tunnel.compat')
      local b = probe()
      assert(a == b, a .. ' / ' .. b)
      print(b)
      -- the same iterator function the built-ins give
      assert(pairs({}) == next0, 'the same pairs iterator')
      assert(ipairs({}) == inext0, 'the same ipairs iterator')
      local plain_pairs = pairs
      package.loaded['tunnel.compat'] = nil
      require('tunnel.compat') -- loaded twice: wraps nothing twice
      assert(pairs == plain_pairs)
      print('ok')
    ]])
    assert.truthy(ok, out)
    assert.matches('ok\n$', out)
  end)

  it('is opt-in: without it, LuaJIT and 5.1 pairs refuse a Vector', function()
    local out, ok = run_script([[
      local tunnel = require('tunnel')
      local honours = false
      for _ in pairs(setmetatable({}, {__pairs = function()
        honours = true
        return function() end
      end})) do end
      local v = tunnel.Vector()
      v:pushBack(1)
      print(honours, (pcall(pairs, v)))
    ]])
    assert.truthy(ok, out)
    if _VERSION == 'Lua 5.1' then -- LuaJIT too
      assert.are.equal('false\tfalse\n', out)
    else
      assert.are.equal('true\ttrue\n', out)
    end
  end)

  it('reaches the threads of blocks created after it', function()
    local out, ok = run_script([[
      local tunnel = require('tunnel')
      local before = tunnel.Block(1)
      require('tunnel.compat')
      local after = tunnel.Block(2)
      local job = function(h)
        local keys = {}
        local ok, err = pcall(function()
          for k in pairs(h) do keys[#keys + 1] = k end
          local v = tunnel.Vector()
          v:pushBack(7); v:pushBack(nil); v:pushBack(9)
          for i, x in ipairs(v) do keys[#keys + 1] = i .. ':' .. tostring(x) end
        end)
        return ok and table.concat(keys, ' ') or 'refused'
      end
      local h = tunnel.Hash()
      h:set('k', true)
      before:add(h); after:add(h)
      before:run(job); after:run(job)
      local r1 = before:synchronize()
      local r2 = after:synchronize()
      print(r1[1][1])
      print(r2[1][1], r2[2][1])
    ]])
    assert.truthy(ok, out)
    local first, second = out:match('^(.-)\n(.-)\n$')
    assert.are.equal('k 1:7 2:nil 3:9\tk 1:7 2:nil 3:9', second)
    -- a block made before the opt-in keeps its Lua's own pairs/ipairs:
    -- 5.4's pairs honours __pairs and its ipairs stops at the first nil;
    -- 5.2's and 5.3's honour __ipairs too
    local lua = dofile('spec/support/lua.lua')
    assert.are.equal(not lua.pairs_meta and 'refused' or
                     lua.ipairs_meta and 'k 1:7 2:nil 3:9' or 'k 1:7', first)
  end)
end)
