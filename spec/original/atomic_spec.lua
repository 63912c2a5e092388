-- Port of the original's unittest/atomic.lua (zhangxiangxiao/tunnel).
-- joe, readwriteTest and the four jobs keep their names, counts and sleeps.
-- Changes, and why:
--  * `threads.Threads(n, init)` + `specific(true)` + `addjob(i, job)` ->
--    `tunnel.Block(n, init)` + `block:run(job)`: the same job on each of the
--    n threads; `terminate()` -> support.terminate (bounded, asserts every
--    job returned). `require('torch')` leaves threadInit.
--  * `torch.DoubleTensor(1)` -> the plain table `{0}` (Atomic shares it as
--    a shared table; `data[1]` reads and writes it in every thread).
--  * `threads.Mutex` around print -> the lines are recorded (support.recorder)
--    so the spec can assert on them.
--  * `ffi.C.sleep(n)` -> `tunnel.sleep(n * SCALE)` (SCALE = 0.01).
--  * Asserts where the original printed: a sync write or read always runs
--    (its callback's true comes back); an async one runs or returns nil; a
--    writer is exclusive (the value it wrote is still there after its
--    callback's sleep); a reader sees no writer meanwhile (the value is the
--    same before and after its sleep). The async callbacks read data[1]
--    again after their sleep for these two checks.
local Atomic = require('tunnel.atomic')

local support = dofile('spec/original/support.lua')
local SCALE = support.SCALE

-- A Logic Named Joe
local joe = {}

function joe:init()
   local data = {0}
   local atomic_data = Atomic(data)
   self.atomic_data = atomic_data
   self.print, self.lines = support.recorder()
end

function joe:readwriteTest()
   -- 3 synchronous readers
   local sync_reader_block = tunnel.Block(3, self:threadInit())
   sync_reader_block:run(self:syncReaderJob())

   -- 2 asynchronous readers
   local async_reader_block = tunnel.Block(2, self:threadInit())
   async_reader_block:run(self:asyncReaderJob())

   -- 2 synchronous writers
   local sync_writer_block = tunnel.Block(2, self:threadInit())
   sync_writer_block:run(self:syncWriterJob())

   -- 3 asynchronous writers
   local async_writer_block = tunnel.Block(3, self:threadInit())
   async_writer_block:run(self:asyncWriterJob())

   support.terminate(sync_reader_block, 'sync_reader_block')
   support.terminate(async_reader_block, 'async_reader_block')
   support.terminate(sync_writer_block, 'sync_writer_block')
   support.terminate(async_writer_block, 'async_writer_block')

   local lines = self.lines
   -- Synchronous writers and readers always ran: 2 x 10 and 3 x 10 lines,
   -- none 'blocked'.
   assert.are.equal(20, #support.lines(lines, 'sync_writer'))
   assert.are.equal(30, #support.lines(lines, 'sync_reader'))
   for _, line in ipairs(support.lines(lines, 'sync_writer')) do
      assert.are_not.equal('writer blocked', line[4])
   end
   for _, line in ipairs(support.lines(lines, 'sync_reader')) do
      assert.are_not.equal('reader blocked', line[4])
   end
   -- Asynchronous ones either ran (one line each, consistent) or were
   -- blocked; every iteration printed one line.
   assert.are.equal(3 * 40, #support.lines(lines, 'async_writer'))
   assert.are.equal(2 * 50, #support.lines(lines, 'async_reader'))
   for _, line in ipairs(support.lines(lines, 'async_writer')) do
      if line[4] ~= 'writer blocked' then
         -- exclusive: nobody wrote during the callback's sleep
         assert.are.equal(line[5], line[6])
      end
   end
   for _, line in ipairs(support.lines(lines, 'async_reader')) do
      if line[4] ~= 'reader blocked' then
         -- no writer during the read
         assert.are.equal(line[4], line[5])
      end
   end
   -- The data holds the last value a writer wrote.
   local last = self.atomic_data:read(function (data) return data[1] end)
   local thread, i = math.floor(last / 1000), last % 1000
   assert.is_true(thread >= 1 and thread <= 3 and i >= 1 and i <= 40, tostring(last))
end

function joe:threadInit()
   return function()
      require('tunnel.atomic') -- the original: local Atomic = require(...)
   end
end

function joe:syncWriterJob()
   local print = self.print
   local atomic_data = self.atomic_data
   return function()
      for i = 1, 10 do
         local callback = function (data)
            print('sync_writer', __threadid, i, data[1], __threadid * 1000 + i)
            data[1] =  __threadid * 1000 + i
            return true
         end
         if not atomic_data:write(callback) then
            print('sync_writer', __threadid, i, 'writer blocked')
         end
         tunnel.sleep(5 * SCALE)
      end
   end
end

function joe:syncReaderJob()
   local print = self.print
   local atomic_data = self.atomic_data
   return function()
      for i = 1, 10 do
         local callback = function (data)
            print('sync_reader', __threadid, i, data[1])
            return true
         end
         if not atomic_data:read(callback) then
            print('sync_reader', __threadid, i, 'reader blocked')
         end
         tunnel.sleep(5 * SCALE)
      end
   end
end

function joe:asyncWriterJob()
   local print = self.print
   local atomic_data = self.atomic_data
   return function()
      for i = 1, 40 do
         local callback = function (data)
            local before = data[1]
            data[1] =  __threadid * 1000 + i
            tunnel.sleep(1 * SCALE)
            print('async_writer', __threadid, i, before, __threadid * 1000 + i,
                  data[1])
            return true
         end
         if not atomic_data:writeAsync(callback) then
            print('async_writer', __threadid, i, 'writer blocked')
            tunnel.sleep(2 * SCALE)
         end
      end
   end
end

function joe:asyncReaderJob()
   local print = self.print
   local atomic_data = self.atomic_data
   return function()
      for i = 1, 50 do
         local callback = function (data)
            local before = data[1]
            tunnel.sleep(1 * SCALE)
            print('async_reader', __threadid, i, before, data[1])
            return true
         end
         if not atomic_data:readAsync(callback) then
            print('async_reader', __threadid, i, 'reader blocked')
            tunnel.sleep(1 * SCALE)
         end
      end
   end
end

describe('original unittest/atomic.lua', function()
   joe:init()
   it('readwriteTest', function() joe:readwriteTest() end)
end)
