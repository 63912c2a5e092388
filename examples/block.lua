-- block.lua - tunnel.Block: a group of threads that run the same jobs.
--
-- Shows: init functions, arguments added with block:add, several runs,
-- results and statuses, an error inside a job, getResult of an old run,
-- and terminate. Run:  lua5.4 examples/block.lua   (or luajit, lua5.1)
local tunnel = require('tunnel')
-- luacheck: globals greeting (a global of each block thread, below)

-- 3 threads. Each has its own Lua state; init runs once in each before any
-- job (the place to require what the jobs need).
local block = tunnel.Block(3, function()
  greeting = 'hello from thread ' .. __threadid -- a global of that thread
end)
print('threads:', block.size, #block)

-- Values added to a block become the arguments of every job, in order.
-- Plain values are copied into each thread; tunnel objects (here a Counter)
-- cross by reference, so every thread updates the same counter.
local jobs_done = tunnel.Counter(0)
block:add(10, jobs_done)

-- run() queues the job on every thread and returns at once with an id.
local first = block:run(function(base, done)
  done:increase()
  return base + __threadid, greeting
end)

-- A job that fails in thread 2 only: the others are not affected.
local second = block:run(function(base, done)
  done:increase()
  if __threadid == 2 then error('thread 2 gives up') end
  return base * __threadid
end)

-- synchronize() waits for every queued job and returns the last run's
-- result and status vectors (tunnel.Vector objects, one slot per thread).
local result, status = block:synchronize()
print('run ' .. second .. ':')
for i = 1, block.size do
  if status[i] then
    print('', i, 'ok', result[i][1])
  else
    -- result[i][1] is the error message; result[i].traceback the traceback.
    print('', i, 'failed', (result[i][1]:gsub('^.-:%d+: ', '')))
  end
end

-- Any earlier run stays available by its id. result[i] packs the job's
-- return values, with n = their number.
result, status = block:getResult(first)
print('run ' .. first .. ':')
for i = 1, block.size do
  print('', i, status[i], result[i].n, result[i][1], result[i][2])
end
print('unknown run id:', block:getResult(99))

-- terminate() lets queued jobs finish, stops the threads and returns the
-- last run's vectors; after it, run raises an error.
block:terminate()
print('jobs run:', jobs_done:get())
local ok, err = pcall(block.run, block, function() end)
print('run after terminate:', ok, err)
