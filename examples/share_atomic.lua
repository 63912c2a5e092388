-- share_atomic.lua - shared tables, tunnel.Share and tunnel.Atomic.
--
-- A plain table handed to Share or Atomic becomes a shared table: every
-- thread reads and writes the same table. Each single read or write is
-- atomic; Atomic adds a reader-writer lock for changes made of several.
local tunnel = require('tunnel')

local share = tunnel.Share({scores = {}, title = 'results'})
local block = tunnel.Block(4)
block:add(share)
block:run(function(s)
  -- s.data is the same shared table in every thread; nested tables are
  -- shared tables too. Each thread writes its own key: no lock needed.
  s.data.scores[__threadid] = __threadid * 10
end)
block:synchronize()
local scores = share.data.scores
print(share.data.title, #scores, scores[1], scores[4])   -- results 4 10 40

-- share:access(callback) hands the callback share.data.
print('access:', share:access(function(data) return data.title:upper() end))

-- pairs works on Lua 5.2+; tunnel.snapshot gives a plain copy everywhere.
local sum = 0
for _, v in pairs(tunnel.snapshot(scores)) do sum = sum + v end
print('sum:', sum)                                      -- 100

-- counter.n = counter.n + 1 is a read, then a write: two threads may read
-- the same n. An Atomic makes the whole update exclusive.
local atomic = tunnel.Atomic({n = 0, log = {}})
block:add(atomic)              -- jobs now get (share, atomic)
block:run(function(_, a)
  for _ = 1, 250 do
    a:write(function(data) data.n = data.n + 1 end)
  end
  a:write(function(data) data.log[#data.log + 1] = __threadid end)
end)
block:synchronize()
print('n:', atomic:read(function(data) return data.n end))   -- 1000
print('log entries:', #atomic.data.log)                      -- 4

-- readAsync/writeAsync return nil instead of waiting for the lock.
block:run(function(_, a)
  if __threadid == 1 then
    a:read(function() tunnel.sleep(0.3) end)
  end
end)
tunnel.sleep(0.1)              -- thread 1 holds a read lock now
print('readAsync beside a reader:', atomic:readAsync(function() return 'ran' end))
print('writeAsync beside a reader:', atomic:writeAsync(function() return 'ran' end))
block:terminate()

-- An error inside a callback releases the lock and is raised again.
print(pcall(atomic.write, atomic, function() error('oops', 0) end))
print('still usable:', atomic:write(function(data) return data.n end))

-- The data of a Share/Atomic is fixed: a scalar never changes. Wrap it.
local fixed = tunnel.Atomic(5)
print('Atomic(5):', fixed:write(function(x) return x + 1 end), fixed.data)  -- 6 5
