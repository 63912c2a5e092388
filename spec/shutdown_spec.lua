-- How a program ends: Ctrl-C (a real SIGINT to a child interpreter) while
-- the main state waits, an error in the main chunk while a job waits
-- forever, and failed jobs nobody read. Each case runs a script in a child
-- process of the interpreter the specs run on (TUNNEL_LUA), with a watchdog.
local lua = dofile('spec/support/lua.lua').command
-- How soon after the signal the child must be gone (liveness, not speed:
-- the close gives cancelled jobs 2 s): wider under a sanitizer or valgrind.
local SOON = dofile('spec/support/instrumented.lua') and 30 or 8

local function script(source)
  local name = os.tmpname()
  local f = assert(io.open(name, 'w'))
  f:write("local tunnel = require('tunnel')\n", source)
  f:close()
  return name
end

local function slurp(name)
  local f = io.open(name)
  if not f then return '' end
  local s = f:read('*a')
  f:close()
  return s
end

-- Run `source` in a child; if `signal_after` is given, send it SIGINT that
-- many seconds after it started. Returns its exit status, stderr, stdout
-- and the seconds from the signal (or the start) to its end; a child that
-- is still alive `limit` seconds after that is killed (status "hung").
local function run(source, signal_after, limit)
  local name = script(source)
  local err, out = name .. '.err', name .. '.out'
  limit = limit or 60
  local sh = table.concat({
    lua .. ' ' .. name .. ' >' .. out .. ' 2>' .. err .. ' &',
    'pid=$!',
    signal_after and ('sleep ' .. signal_after .. '; kill -INT $pid') or ':',
    't0=$(date +%s%N)',
    'i=0; while kill -0 $pid 2>/dev/null && [ $i -lt ' .. (limit * 10) ..
      ' ]; do sleep 0.1; i=$((i+1)); done',
    't1=$(date +%s%N)',
    'if kill -0 $pid 2>/dev/null; then kill -9 $pid; wait $pid; echo hung; ' ..
      'else wait $pid; echo "rc=$?"; fi',
    'echo "ms=$(( (t1 - t0) / 1000000 ))"',
  }, '\n')
  local p = assert(io.popen(sh))
  local res = p:read('*a')
  p:close()
  local status = res:match('rc=(%d+)') or (res:match('hung') and 'hung')
  local t = tonumber(res:match('ms=(%d+)')) / 1000
  local e, o = slurp(err), slurp(out)
  os.remove(name)
  os.remove(err)
  os.remove(out)
  return status, e, o, t
end

describe('ending a program', function()
  it('Ctrl-C during synchronize of a block whose thread spins ends it with "interrupted!"', function()
    local status, err, _, t = run([[
      local b = tunnel.Block(1)
      b:run(function() while true do end end)
      io.stdout:write('waiting\n') io.stdout:flush()
      b:synchronize()
      print('not reached')
    ]], 1)
    assert.are_not.equal('hung', status)
    assert.are_not.equal('0', status)
    assert.matches('interrupted!', err, 1, true)
    assert.is_true(t < SOON, 'ended ' .. tostring(t) .. ' s after the signal')
  end)

  it('Ctrl-C during popFront in the main state raises "interrupted!" there, catchable', function()
    local status, err, out = run([[
      local v = tunnel.Vector()
      local ok, e = pcall(function() return v:popFront() end)
      print('caught', ok, e)
      v:pushBack(1)
      print('still works', v:popFront())
    ]], 1)
    assert.are.equal('0', status, err)
    assert.matches('caught\tfalse\t[^\n]*interrupted!', out)
    assert.matches('still works\t1', out, 1, true)
  end)

  it('Ctrl-C in a loop of synchronize(0.1) ends it although the job never returns', function()
    local status, err, _, t = run([[
      local b = tunnel.Block(2)
      b:run(function() local v = tunnel.Vector() v:popFront() end)
      while true do b:synchronize(0.1) end
    ]], 1)
    assert.are_not.equal('hung', status)
    assert.are_not.equal('0', status)
    assert.matches('interrupted!', err, 1, true)
    assert.is_true(t < SOON, 'ended ' .. tostring(t) .. ' s after the signal')
  end)

  it('the graceful idiom (catch Ctrl-C, cancel, wait a while) ends although a job ignores the cancel', function()
    local fifo = os.tmpname()
    os.remove(fifo)
    assert(os.execute('mkfifo ' .. fifo))
    local status, err, out, t = run(([[
      local b = tunnel.Block(1)
      b:add(%q)
      -- Blocked in open(2) of a FIFO nobody writes: no cancel reaches it.
      b:run(function(path) io.open(path, 'r') end)
      local ok, e = pcall(function() b:synchronize() end)
      print('caught', e)
      b:cancel()
      b:synchronize(0.5)
      print('saved')
    ]]):format(fifo), 1)
    os.remove(fifo)
    assert.are.equal('0', status, err)
    assert.matches('caught\t[^\n]*interrupted!', out)
    assert.matches('saved', out, 1, true)
    assert.matches('left to the process', err, 1, true)
    assert.is_true(t < SOON, 'ended ' .. tostring(t) .. ' s after the signal')
  end)

  it('an error in the main chunk while a consumer waits forever ends it, non-zero', function()
    local status, err = run([[
      local v = tunnel.Vector()
      local b = tunnel.Block(2)
      b:add(v)
      b:run(function(vec) return vec:popFront() end)
      tunnel.sleep(0.2)
      error('the producer failed')
    ]])
    assert.are_not.equal('hung', status)
    assert.are_not.equal('0', status)
    assert.matches('the producer failed', err, 1, true)
    -- The consumers were cancelled, which is not worth a report.
    assert.is_nil(err:find('nobody read', 1, true))
  end)

  it('a main chunk that ends while jobs run still lets them finish', function()
    local status, err, out = run([[
      local v = tunnel.Vector()
      local b = tunnel.Block(1)
      b:add(v)
      b:run(function(vec) tunnel.sleep(0.5) print('job done', vec:popFront()) end)
      v:pushBack(42)
    ]])
    assert.are.equal('0', status, err)
    assert.matches('job done\t42', out, 1, true)
  end)

  it('reports a failed job nobody read on stderr, once, with its traceback', function()
    local status, err = run([[
      local b = tunnel.Block(2)
      b:run(function() if __threadid == 2 then error('boom in two') end end)
      b:run(function() return 'fine' end)
      b:synchronize() -- reads run 2 only
    ]])
    assert.are.equal('0', status, err)
    assert.matches('run 1 failed in thread 2', err, 1, true)
    assert.matches('boom in two', err, 1, true)
    assert.matches('stack traceback', err, 1, true)
    local _, count = err:gsub('nobody read', '')
    assert.are.equal(1, count)
  end)

  it('does not report a failure the program read, nor with {report = false}', function()
    local status, err = run([[
      local b = tunnel.Block(1)
      b:run(function() error('seen') end)
      local r, s = b:getResult(1)
      b:synchronize()
      assert(s[1] == false)
      local quiet = tunnel.Block(1, {report = false})
      quiet:run(function() error('quiet') end)
    ]])
    assert.are.equal('0', status, err)
    assert.is_nil(err:find('nobody read', 1, true), err)
  end)
end)
