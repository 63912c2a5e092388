-- vector.lua - tunnel.Vector: one structure that is a queue, a stack and an
-- array, shared by threads.
--
-- Shows: queue and stack ends, the array methods, Async twins, timeouts,
-- read/write callbacks, sort, iteration, and a consumer loop that ends when
-- the producer closes the vector.
local tunnel = require('tunnel')

-- Queue and stack ------------------------------------------------------------
local v = tunnel.Vector()            -- no size hint: pushes never wait
v:pushBack('b'); v:pushBack('c'); v:pushFront('a')
print(v:toString())                  -- tunnel.Vector{"a", "b", "c"}
print('popFront:', v:popFront())     -- a  true
print('popBack:', v:popBack())       -- c  true

-- Array ----------------------------------------------------------------------
v:set(4, 'd')                        -- grows with nils: {"b", nil, nil, "d"}
print(v:toString(), '#v = ' .. #v)
print('insert at 2:', v:insert(2, 'x'), v:toString())
print('insert at 99:', v:insert(99, 'y'))  -- nil: index > size + 1
print('get 2:', v:get(2))            -- x  true
print('v[5]:', v[5])                 -- d (v[i] is get(i))
print('remove 2:', v:remove(2))      -- x  true
print('get 99:', v:get(99))          -- nil nil: out of range

-- write stores the callback's result; read only looks.
print('write:', v:write(1, function(old) return old .. '!' end))
print('read:', v:read(1, function(value) return #value end))

-- sort: nils go last; compare is optional.
local n = tunnel.Vector()
for _, x in ipairs({5, 3, 9, 1}) do n:pushBack(x) end
n:sort()
print('sorted:', n:toString())
n:sort(function(a, b) return a > b end)
-- iterator() walks a snapshot (pairs/ipairs also work on Lua 5.2+ only).
io.write('descending:')
for i, x in n:iterator() do io.write(' ', i, '=', x) end
print()

-- Waiting, Async twins and timeouts -------------------------------------------
local q = tunnel.Vector(2)           -- size hint 2: pushes wait while full
print('push:', q:pushBack(1), q:pushBack(2))
print('pushBackAsync on a full vector:', q:pushBackAsync(3))  -- nil
local t0 = tunnel.clock()
print('pushBack with a 0.1 s timeout:', q:pushBack(3, 0.1))   -- nil
print(string.format('waited about %.1f s', tunnel.clock() - t0))
q:popFront(); q:popFront()
print('popFrontAsync on an empty vector:', q:popFrontAsync())  -- nil nil

-- A producer thread and a consumer loop ended by close ---------------------------
local jobs = tunnel.Vector(4)
local producer = tunnel.Block(1)
producer:add(jobs)
producer:run(function(out)
  for i = 1, 10 do out:pushBack(i * i) end
  out:close()        -- no more values: consumers drain, then stop
end)
local sum, count = 0, 0
while true do
  local x, ok = jobs:popFront()
  if not ok then break end          -- false: closed and empty
  sum, count = sum + x, count + 1
end
print('consumed ' .. count .. ' values, sum ' .. sum)  -- 10, 385
print('closed:', jobs:isClosed(), 'pop now:', jobs:popFront())  -- nil false
print('push now:', pcall(jobs.pushBack, jobs, 1))  -- error: vector is closed
producer:terminate()
