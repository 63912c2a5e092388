-- A read or write callback held open on a block thread, for specs that look
-- at a structure from outside while another thread's callback holds it:
--   local held = hold(v, 'write', function(x) return x .. '!' end, 1)
--   ... what other threads see meanwhile ...
--   local results = held.finish()   -- let it go: the job's results, checked
-- runs v:write(1, cb) on a thread, where cb(x) waits to be let go, then
-- returns change(x). `change` (a function of the value) and the arguments
-- before the callback (a key, an index, or none) cross to the thread.
-- hold returns once the callback is running.
local tunnel = require('tunnel')

-- Crosses to the thread as an upvalue of the job.
local function wait_inside(entered, release)
  entered:increase()
  local deadline = tunnel.clock() + 10
  while release:get() == 0 and tunnel.clock() < deadline do tunnel.sleep(0.001) end
end

return function(structure, method, change, ...)
  local entered, release = tunnel.Counter(), tunnel.Counter()
  local b = tunnel.Block(1)
  b:add(structure, entered, release, method, change, ...)
  b:run(function(s, inside, go, name, f, ...)
    local args = {...}
    local n = select('#', ...) + 1
    args[n] = function(x)
      wait_inside(inside, go)
      return f(x)
    end
    return s[name](s, (table.unpack or unpack)(args, 1, n))
  end)
  local deadline = tunnel.clock() + 10
  while entered:get() == 0 and tunnel.clock() < deadline do tunnel.sleep(0.001) end
  assert(entered:get() == 1, 'the held callback never started')
  return {
    finish = function()
      release:increase()
      local result, status = b:synchronize()
      b:terminate()
      assert(status[1] == true, tostring(result[1] and result[1][1]))
      return result[1]
    end,
  }
end
