-- plural.lua - tunnel.Plural: many structures of one kind, as one object.
local tunnel = require('tunnel')

-- One queue per worker thread: tunnel.Vectors(n, ...) is
-- tunnel.Plural(n, tunnel.Vector, ...).
local inboxes = tunnel.Vectors(3)
local done = tunnel.Counters(3)        -- tunnel.Plural(3, tunnel.Counter)
print('#inboxes:', #inboxes)

-- The main thread deals 9 jobs round-robin, then closes every inbox.
for i = 1, 9 do inboxes[(i - 1) % 3 + 1]:pushBack(i) end
inboxes:doAll(function(_, inbox) return inbox:close() end)

-- A Plural crosses threads by reference: thread i takes its own inbox.
local block = tunnel.Block(3)
block:add(inboxes, done)
block:run(function(boxes, counters)
  local mine, count = boxes[__threadid], counters:get(__threadid)
  while true do
    local job, ok = mine:popFront()
    if not ok then break end
    count:increase(job)
  end
end)
block:terminate()
print('sums:', table.concat(done:doAll(function(_, c) return c:get() end), ' '))
-- 1+4+7  2+5+8  3+6+9  ->  12 15 18

-- Any constructor returning tunnel objects works, with arguments.
local bounded = tunnel.Plural(2, tunnel.Vector, 1)   -- size hint 1 each
print('pushAsync into a full one:', bounded[1]:pushBack('x'), bounded[1]:pushBackAsync('y'))

-- set replaces an element (with another tunnel object).
local hashes = tunnel.Hashes(2)
local ok, old = hashes:set(2, tunnel.Hash())
print('set:', ok, old ~= hashes[2])
