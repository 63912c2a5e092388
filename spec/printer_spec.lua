-- tunnel.Printer: output that never interleaves across threads.
local tunnel = require('tunnel')
-- One body, run on each backend of spec/support/backends.lua: in process,
-- and on a Redis server when TUNNEL_REDIS_URL is set (scripts/with-redis.sh).
local BACKENDS = dofile('spec/support/backends.lua')

-- The interpreter running the specs, for scripts whose stdout we read.
local function interpreter()
  return dofile('spec/support/lua.lua').command
end

-- Run `code` in a fresh interpreter (same LUA_PATH/LUA_CPATH), where
-- B.Printer() makes a printer of backend B; returns its
-- output and whether it ran to its end (a marker, since 5.1's popen close
-- does not report the exit status).
local MARK = '<<script ran to its end>>'
local function run_script(B, code)
  local name = os.tmpname()
  local f = assert(io.open(name, 'w'))
  f:write("local tunnel = require('tunnel')\n",
    'local B = {Printer = function() return ', B.source('Printer'), ' end}\n',
    code,
    "\nio.stdout:write('" .. MARK .. "')\n")
  f:close()
  local p = assert(io.popen(interpreter() .. ' ' .. name .. ' 2>&1'))
  local out = p:read('*a')
  p:close()
  os.remove(name)
  local at = out:find(MARK, 1, true)
  if at == nil then return out, false end
  return out:sub(1, at - 1), true
end

local function lines(s)
  local t = {}
  for line in s:gmatch('([^\n]*)\n') do t[#t + 1] = line end
  return t
end

for _, B in ipairs(BACKENDS) do
  describe('tunnel.Printer (' .. B.name .. ')', function()
    it('has an Async twin for every method', function()
      local p = B.Printer()
      for _, name in ipairs({'print', 'write', 'access'}) do
        assert.are.equal('function', type(p[name]), name)
        assert.are.equal('function', type(p[name .. 'Async']), name)
      end
    end)

    it('prints like print, also when called, and returns true', function()
      local out, ok = run_script(B, [[
        local p = B.Printer()
        local t = setmetatable({}, {__tostring = function() return 'T' end})
        assert(p:print(1, 'a', nil, true, 1.5, t) == true)
        print(1, 'a', nil, true, 1.5, t)
        assert(p('called') == true)
        assert(p:printAsync() == true)
        assert(p:print('x\0y') == true)
      ]])
      assert.is_truthy(ok, out)
      local l = lines(out)
      assert.are.equal(5, #l)
      assert.are.equal(l[2], l[1])
      assert.are.equal('1\ta\tnil\ttrue\t1.5\tT', l[1])
      assert.are.equal('called', l[3])
      assert.are.equal('', l[4])
      assert.are.equal('x\0y', l[5])
    end)

    it('writes like io.write, strings and numbers only', function()
      local out, ok = run_script(B, [[
        local p = B.Printer()
        assert(p:write('a', 1, ' ', 2.5, '\n') == true)
        io.write('a', 1, ' ', 2.5, '\n')
        assert(p:writeAsync('b') == true)
        assert(p:write() == true)
        local ok, err = pcall(p.write, p, 'c', {})
        assert(not ok and err:find('tunnel.Printer:write: argument #2', 1, true), err)
      ]])
      assert.is_truthy(ok, out)
      local l = lines(out .. '\n')
      assert.are.same({'a1 2.5', 'a1 2.5', 'b'}, l)
    end)

    it('keeps the lines printed inside access together and returns its results', function()
      local out, ok = run_script(B, [[
        local p = B.Printer()
        local a, b = p:access(function()
          p:print('one') -- the holder may print (the lock is recursive)
          assert(p:printAsync('two') == true)
          return 'r1', 'r2'
        end)
        assert(a == 'r1' and b == 'r2')
        assert(p:accessAsync(function() return 1 end) == 1)
      ]])
      assert.is_truthy(ok, out)
      assert.are.same({'one', 'two'}, lines(out))
    end)

    it('re-raises an error inside access and releases the printer', function()
      local p = B.Printer()
      local marker = {}
      local ok, err = pcall(p.access, p, function() error(marker) end)
      assert.is_false(ok)
      assert.are.equal(marker, err)
      assert.are.equal('free', p:accessAsync(function() return 'free' end))
    end)

    it('Async twins return nil while another thread holds the printer', function()
      local p = B.Printer()
      local held, release = tunnel.Vector(), tunnel.Vector()
      local b = tunnel.Block(1)
      b:add(p, held, release)
      b:run(function(printer, h, r)
        printer:access(function()
          h:pushBack(true)
          r:popFront()
        end)
      end)
      assert.is_true(select(2, held:popFront(5)))
      assert.is_nil(p:printAsync('never printed'))
      assert.is_nil(p:writeAsync('never written'))
      assert.is_nil(p:accessAsync(function() error('never run') end))
      release:pushBack(true)
      local _, status = b:synchronize()
      b:terminate()
      assert.is_true(status[1])
      assert.are.equal(true, p:accessAsync(function() return true end))
    end)

    it('rejects a callback that is not a function and a wrong self', function()
      local p = B.Printer()
      local ok, err = pcall(p.access, p, 'f')
      assert.is_false(ok)
      assert.matches('tunnel%.Printer:access: callback must be a function', err)
      for _, name in ipairs({'print', 'write', 'access'}) do
        ok, err = pcall(p[name], 1)
        assert.is_false(ok)
        assert.matches('^tunnel%.Printer:' .. name ..
          ': self is a number, not a tunnel%.Printer', err)
      end
    end)

    it('never interleaves lines printed by 4 threads', function()
      local out, ok = run_script(B, [[
        local p = B.Printer()
        local b = tunnel.Block(4)
        b:add(p)
        b:run(function(printer)
          local long = string.rep(string.char(96 + __threadid), 300)
          for k = 1, 200 do
            if k % 2 == 0 then
              printer:print(__threadid, k, long)
            else
              printer:write(__threadid, '\t', k, '\t', long, '\n')
            end
            if k % 50 == 0 then
              printer:access(function()
                for j = 1, 3 do printer:print(__threadid, 'group', j) end
              end)
            end
          end
        end)
        local _, status = b:synchronize()
        b:terminate()
        for i = 1, 4 do assert(status[i]) end
      ]])
      assert.is_truthy(ok, out)
      local count, group = 0, nil
      for _, line in ipairs(lines(out)) do
        local id, _, text = line:match('^(%d)\t(%d+)\t(%l+)$')
        local gid, j = line:match('^(%d)\tgroup\t(%d)$')
        if id then
          assert.is_nil(group, 'a line inside a group: ' .. line)
          assert.are.equal(string.rep(string.char(96 + tonumber(id)), 300), text)
          count = count + 1
        elseif gid then
          j = tonumber(j)
          if j == 1 then
            assert.is_nil(group, 'a group inside a group')
            group = gid
          else
            assert.are.equal(group, gid, 'groups interleaved')
          end
          if j == 3 then group = nil end
        else
          error('a broken line: ' .. line:sub(1, 80))
        end
      end
      assert.are.equal(4 * 200, count)
    end)
  end)
end
