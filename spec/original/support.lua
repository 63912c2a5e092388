-- What the ports of the original's unit tests (spec/original/*_spec.lua)
-- share. The original's tests (zhangxiangxiao/tunnel, unittest/*.lua) only
-- printed; the ports record what they printed and assert on it, and they
-- wait for their blocks with a bound, so that no spec hangs.
--   local support = dofile('spec/original/support.lua')
local support = {}

-- The original slept whole seconds (ffi.C.sleep); the ports sleep
-- SCALE seconds for each of those: the interleavings stay, the runs are short.
support.SCALE = 0.01

-- How long a port waits for one block before it reports it as hung.
support.TIMEOUT = 60

-- A stand-in for the original's printer where the printer is not what the
-- test is about: a function (it crosses threads with its upvalue, the
-- Vector) that records each printed line as a table of its arguments with n,
-- so the spec can assert on what the original printed.
function support.recorder()
  local lines = tunnel.Vector()
  local function printer(...)
    lines:pushBack({n = select('#', ...), ...})
    return true
  end
  return printer, lines
end

-- The recorded lines whose first field is `tag`, in the order recorded.
function support.lines(lines, tag)
  local out = {}
  for i = 1, lines:size() do
    local line = lines:get(i)
    if tag == nil or line[1] == tag then out[#out + 1] = line end
  end
  return out
end

-- Waits (at most TIMEOUT seconds) for every job queued on `block`, asserts
-- that every thread's last job returned (status true), and returns the
-- result and status vectors as synchronize does. A block that did not
-- finish is cancelled, so the spec fails instead of hanging.
function support.finish(block, name, timeout)
  local result, status = block:synchronize(timeout or support.TIMEOUT)
  local bad = {}
  for i = 1, block.size do
    if status[i] ~= true then
      local message = result[i] and result[i][1]
      bad[#bad + 1] = ('%s thread %d: status %s: %s'):format(
        name, i, tostring(status[i]), tostring(message))
    end
  end
  if #bad > 0 and block.cancel then
    block:cancel()
    block:synchronize(5)
  end
  assert(#bad == 0, table.concat(bad, '\n'))
  return result, status
end

-- Like finish, then terminates the block (the original's block:terminate()
-- or threads' terminate(), which waited for the jobs).
function support.terminate(block, name, timeout)
  local result, status = support.finish(block, name, timeout)
  block:terminate()
  return result, status
end

-- Runs a Lua program in a fresh interpreter (the one running the specs,
-- TUNNEL_LUA), bounded by `seconds`; returns its output (stdout, then
-- stderr on lines of its own: the two streams are buffered apart) and
-- whether it exited with status 0.
function support.run_script(code, seconds)
  local lua = dofile('spec/support/lua.lua').command
  local name = os.tmpname()
  local errname = os.tmpname()
  local f = assert(io.open(name, 'w'))
  f:write(code)
  f:close()
  -- The exit status is echoed, not taken from close: Lua 5.1's close of a
  -- pipe does not report it.
  local p = assert(io.popen(('timeout -s KILL %d %s %s 2>%s; echo "exit $?"')
    :format(seconds or support.TIMEOUT, lua, name, errname)))
  local out = p:read('*a')
  p:close()
  local e = assert(io.open(errname))
  local err = e:read('*a')
  e:close()
  os.remove(name)
  os.remove(errname)
  local status = tonumber(out:match('exit (%d+)\n?$'))
  out = out:gsub('exit %d+\n?$', '')
  if err ~= '' then
    if out ~= '' and out:sub(-1) ~= '\n' then out = out .. '\n' end
    out = out .. err
  end
  return out, status == 0, status
end

-- The lines of `out`, each split at tabs (as print separates its arguments).
function support.split(out)
  local lines = {}
  for line in out:gmatch('[^\n]+') do
    local fields = {}
    for field in (line .. '\t'):gmatch('([^\t]*)\t') do
      fields[#fields + 1] = field
    end
    lines[#lines + 1] = fields
  end
  return lines
end

return support
