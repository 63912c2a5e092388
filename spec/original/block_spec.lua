-- Port of the original's unittest/block.lua (zhangxiangxiao/tunnel).
-- joe and its tests keep their names and order; the jobs are the original's.
-- Changes, and why:
--  * `threads.Mutex` around print: the lines are recorded instead (printed
--    lines go to a Vector through `record`), so the spec can assert on them;
--    the mutex, its ids and `require('threads')` go (no `threads` library).
--  * `ffi.C.sleep(n)` -> `tunnel.sleep(n * SCALE)`: no ffi on Lua 5.x, and
--    shortened sleeps (SCALE = 0.01) keep the interleavings but not the wait.
--  * joe.main (pairs over joe, in no fixed order) -> one `it` per *Test.
--  * Where the original printed `status[index], unpack(value)`, asserts:
--    what the original's Block:run/runJob stored (status true and the job's
--    return values, or false and the error message).
--  * synchronize/terminate go through support.finish/terminate: bounded
--    waits (the original waited forever) that assert every job returned.
--  * producerConsumerTest: `Atomic()` guards `print` as in the original; the
--    produced and consumed values are recorded and compared (every value
--    produced is consumed exactly once).
local Block = require('tunnel.block')

local Atomic = require('tunnel.atomic')
local Vector = require('tunnel.vector')

local support = dofile('spec/original/support.lua')
local SCALE = support.SCALE
local unpack = unpack or table.unpack

-- A Logic Named Joe
local joe = {}

function joe:dummyTest()
   local record, lines = support.recorder()

   -- 'Creating a block of 5 threads'
   local init_job = function ()
      record('init_job', __threadid)
   end
   local block = Block(5, init_job)

   -- 'Executing a first job for the threads'
   local first_job = function()
      tunnel.sleep(1 * SCALE)
      record('first_job', __threadid)
      return 'first job return message', __threadid
   end
   local run_id = block:run(first_job)
   assert.are.equal(1, run_id)                  -- 'Got run id: 1'

   -- 'Synchronize the threads'
   local result, status = block:synchronize(support.TIMEOUT)
   -- 'Getting execution results'
   local seen = 0
   for index, value in ipairs(result) do
      seen = seen + 1
      assert.is_true(status[index])
      local message, id = unpack(value)
      assert.are.equal('first job return message', message)
      assert.are.equal(index, id)
   end
   assert.are.equal(5, seen)

   -- 'Executing a second job for the threads'
   local second_job = function()
      tunnel.sleep(1 * SCALE)
      record('second_job', __threadid)
      return 'second job return message', __threadid
   end
   local run_id = block:run(second_job)
   assert.are.equal(2, run_id)                  -- 'Got run id: 2'

   local result, status = block:synchronize(support.TIMEOUT)
   local seen = 0
   for index, value in ipairs(result) do
      seen = seen + 1
      assert.is_true(status[index])
      local message, id = unpack(value)
      assert.are.equal('second job return message', message)
      assert.are.equal(index, id)
   end
   assert.are.equal(5, seen)

   -- 'Terminating the threads': the last run's vectors come back.
   local result, status = block:terminate()
   for i = 1, 5 do
      assert.is_true(status[i])
      assert.are.equal('second job return message', result[i][1])
   end

   -- Each thread ran init_job once, then its two jobs in order.
   for i = 1, 5 do
      local order = {}
      for _, line in ipairs(support.lines(lines)) do
         if line[2] == i then order[#order + 1] = line[1] end
      end
      assert.are.same({'init_job', 'first_job', 'second_job'}, order)
   end
end

function joe:errorTest()
   local record, lines = support.recorder()

   local init_job = function ()
      record('init_job', __threadid)
   end
   local block = Block(5, init_job)

   local first_job = function()
      tunnel.sleep(1 * SCALE)
      record('first_job', __threadid)
      error('this is a test error for thread '..tostring(__threadid))
      return 'first job return message', __threadid
   end
   local run_id = block:run(first_job)
   assert.are.equal(1, run_id)

   local second_job = function()
      tunnel.sleep(1 * SCALE)
      record('second_job', __threadid)
      return 'second job return message', __threadid
   end
   local run_id = block:run(second_job)
   assert.are.equal(2, run_id)

   -- 'Synchronize the threads'
   block:synchronize(support.TIMEOUT)
   -- 'Getting execution results for first job': the error, caught by
   -- pcall, is the status false and the message (with its position).
   local result, status = block:getResult(1)
   local seen = 0
   for index, value in ipairs(result) do
      seen = seen + 1
      assert.is_false(status[index])
      local message = unpack(value)
      assert.is_truthy(tostring(message):find(
         'this is a test error for thread ' .. index .. '$'), message)
   end
   assert.are.equal(5, seen)
   -- 'Getting execution results for second job': the thread went on.
   local result, status = block:getResult(2)
   local seen = 0
   for index, value in ipairs(result) do
      seen = seen + 1
      assert.is_true(status[index])
      assert.are.same({'second job return message', index}, {unpack(value)})
   end
   assert.are.equal(5, seen)

   -- 'Terminating the threads'
   local _, status = block:terminate()
   assert.is_true(status[1])
   assert.are.equal(5, #support.lines(lines, 'second_job'))
end

function joe:producerConsumerTest()
   local record, lines = support.recorder()

   -- 'Creating a producer block of 2 threads'
   local producers = Block(2)
   -- 'Creating a consumer block of 3 threads'
   local consumers = Block(3)
   -- 'Creating a vector as a producer-consumer queue'
   local queue = Vector(4)
   -- 'Creating an atomic as a print atomic guard'
   local atomic = Atomic()

   producers:add(queue, atomic)
   consumers:add(queue, atomic)

   local producer_job = function (queue, atomic)
      for i = 1, 6 do
         local value = __threadid * 1000 + i
         local status = queue:pushBack(value)
         atomic:write(function() record('produce', __threadid, i, value, status) end)
      end
   end

   local consumer_job = function (queue, atomic)
      for i = 1, 4 do
         local value, status = queue:popFront()
         atomic:write(function() record('consume', __threadid, i, value, status) end)
         tunnel.sleep(1 * SCALE)
      end
   end

   -- 'Starting prodecuer jobs'
   producers:run(producer_job)
   -- 'Starting consumer jobs'
   consumers:run(consumer_job)

   support.terminate(producers, 'producers')
   support.terminate(consumers, 'consumers')
   -- 'Producers and consumers terminated'

   local produced, consumed = {}, {}
   for _, line in ipairs(support.lines(lines, 'produce')) do
      assert.is_true(line[5])
      produced[#produced + 1] = line[4]
   end
   for _, line in ipairs(support.lines(lines, 'consume')) do
      assert.is_true(line[5])
      consumed[#consumed + 1] = line[4]
   end
   table.sort(produced)
   table.sort(consumed)
   assert.are.same({1001, 1002, 1003, 1004, 1005, 1006,
                    2001, 2002, 2003, 2004, 2005, 2006}, produced)
   assert.are.same(produced, consumed)
   assert.are.equal(0, queue:size())
end

describe('original unittest/block.lua', function()
   it('dummyTest', function() joe:dummyTest() end)
   it('errorTest', function() joe:errorTest() end)
   it('producerConsumerTest', function() joe:producerConsumerTest() end)
end)
