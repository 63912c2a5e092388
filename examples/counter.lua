-- counter.lua - tunnel.Counter: an integer that threads update atomically.
local tunnel = require('tunnel')

local c = tunnel.Counter()          -- starts at 0
print('increase:', c:increase(), c:increase(10))   -- 1, 11 (new values)
print('decrease:', c:decrease(), c:decrease(-4))   -- 10, 14
print('get:', c:get())                              -- 14
print('set returns the old value:', c:set(100))     -- 14

-- read: the callback sees the value; other threads' changes wait meanwhile.
print('read:', c:read(function(value) return value * 2, 'twice' end))

-- write: the callback's result becomes the value; every other thread's
-- operation on the counter waits meanwhile, so nothing is lost.
print('write:', c:write(function(value) return value - 58 end))  -- 42

-- Four threads, 1000 increases each: no increase is lost.
local hits = tunnel.Counter(0)
local block = tunnel.Block(4)
block:add(hits)
block:run(function(counter)
  for _ = 1, 1000 do counter:increase() end
end)
block:synchronize()
print('hits:', hits:get())                          -- 4000

-- Async twins never wait: while another thread's write callback holds the
-- counter they all give nil, and the plain methods wait for it.
block:run(function(counter)
  if __threadid == 1 then
    counter:write(function(value) tunnel.sleep(0.3); return value end)
  end
end)
tunnel.sleep(0.1)                   -- thread 1 is inside its write now
print('setAsync while busy:', hits:setAsync(0))     -- nil: not done
print('increaseAsync while busy:', hits:increaseAsync())  -- nil: not done
print('increase waits for it:', hits:increase())          -- 4001
block:terminate()
print('after:', hits:get())         -- 4001
