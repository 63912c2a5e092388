-- Port of the original's unittest/counter.lua (zhangxiangxiao/tunnel).
-- joe, counterTest and its twelve jobs keep their names, counts and sleeps.
-- Changes, and why:
--  * The printer is support.recorder() instead of tunnel.Printer(): the
--    lines are recorded so the spec can assert on them (and 1440 lines stay
--    out of the test log). It is called as the original called its printer.
--  * `ffi.C.sleep(n)` -> `tunnel.sleep(n * SCALE)` (SCALE = 0.01);
--    `require('ffi')`/`require('os')` go.
--  * `math.randomseed(os.time() + ...)` -> `math.randomseed(SEED + ...)`:
--    the same numbers on every run.
--  * joe.main -> an `it`; the original never waited for its blocks (the
--    process ended with them); the port waits (support.finish, bounded) so
--    it can assert on what every job printed.
--  * Asserts where the original printed, from the original's Counter: sync
--    increase/decrease/get/set/read/write always give a number; their Async
--    twins a number or nil; `write(function () return value end)` returns
--    `value` (the callback is exclusive: nothing changes the counter between
--    the callback and the store); `read(function (v) return v end)` a number.
--  * The original's `decrease` added its step (a bug; ours subtracts, see
--    docs/porting.md); nothing here depends on the sign.
local Counter = require('tunnel.counter')

local Block = require('tunnel.block')

local support = dofile('spec/original/support.lua')
local SCALE = support.SCALE
local SEED = 0

-- A Logic Named Joe
local joe = {}

function joe:init()
   local counter = Counter()
   local printer, lines = support.recorder()
   self.counter = counter
   self.printer = printer
   self.lines = lines
   self.printer('Counter initialized', counter:get())
end

function joe:counterTest()
   local blocks = {}
   local function block(name, job)
      local b = Block(2)
      b:add(self.printer, self.counter)
      b:run(job)
      blocks[#blocks + 1] = {b, name}
   end
   -- 2 synchronous increase threads
   block('sync_increase_block', self.syncIncreaseJob())
   -- 2 synchronous decrease threads
   block('sync_decrease_block', self.syncDecreaseJob())
   -- 2 asynchronous increase threads
   block('async_increase_block', self.asyncIncreaseJob())
   -- 2 asynchronous decrease threads
   block('async_decrease_block', self.asyncDecreaseJob())
   -- 2 synchronous get threads
   block('sync_get_block', self.syncGetJob())
   -- 2 synchronous set threads
   block('sync_set_block', self.syncSetJob())
   -- 2 asynchronous get threads
   block('async_get_block', self.asyncGetJob())
   -- 2 asynchronous set threads
   block('async_set_block', self.asyncSetJob())
   -- 2 synchronous read threads
   block('sync_read_block', self.syncReadJob())
   -- 2 synchronous write threads
   block('sync_write_block', self.syncWriteJob())
   -- 2 asynchronous read threads
   block('async_read_block', self.asyncReadJob())
   -- 2 asynchronous write threads
   block('async_write_block', self.asyncWriteJob())

   for _, b in ipairs(blocks) do support.terminate(b[1], b[2]) end

   local lines = self.lines
   local init = support.lines(lines, 'Counter initialized')
   assert.are.same({n = 2, 'Counter initialized', 0}, init[1])
   for _, tag in ipairs{'sync_increase', 'sync_decrease', 'sync_get', 'sync_set',
                        'sync_read'} do
      local these = support.lines(lines, tag)
      assert.are.equal(120, #these, tag)
      for _, line in ipairs(these) do
         assert.are.equal('number', type(line[line.n]), tag)
      end
   end
   for _, tag in ipairs{'async_increase', 'async_decrease', 'async_get',
                        'async_set', 'async_read', 'async_write'} do
      local these = support.lines(lines, tag)
      assert.are.equal(120, #these, tag)
      for _, line in ipairs(these) do
         local value = line[line.n]
         assert.is_true(value == nil or type(value) == 'number', tag)
      end
   end
   -- write: the value the callback returned is the new value.
   -- (Before e5fbce9 this failed: increases landed between the callback and
   -- the store.)
   local these = support.lines(lines, 'sync_write')
   assert.are.equal(120, #these)
   for _, line in ipairs(these) do
      assert.are.equal(line[4], line[5], 'sync_write')
   end
   for _, line in ipairs(support.lines(lines, 'async_write')) do
      if line[5] ~= nil then assert.are.equal(line[4], line[5], 'async_write') end
   end
end

function joe:syncIncreaseJob()
   return function (printer, counter)
      local math = require('math')
      math.randomseed(SEED + 10000 + __threadid * 1000)
      for i = 1, 60 do
         local step = math.random(10)
         local value = counter:increase(step)
         printer('sync_increase', __threadid, i, step, value)
         tunnel.sleep(1 * SCALE)
      end
   end
end

function joe:syncDecreaseJob()
   return function (printer, counter)
      local math = require('math')
      math.randomseed(SEED + 20000 + __threadid * 1000)
      for i = 1, 60 do
         local step = math.random(10)
         local value = counter:decrease(step)
         printer('sync_decrease', __threadid, i, step, value)
         tunnel.sleep(1 * SCALE)
      end
   end
end

function joe:asyncIncreaseJob()
   return function (printer, counter)
      local math = require('math')
      math.randomseed(SEED + 30000 + __threadid * 1000)
      for i = 1, 60 do
         local step = math.random(10)
         local value = counter:increaseAsync(step)
         printer('async_increase', __threadid, i, step, value)
         tunnel.sleep(1 * SCALE)
      end
   end
end

function joe:asyncDecreaseJob()
   return function (printer, counter)
      local math = require('math')
      math.randomseed(SEED + 40000 + __threadid * 1000)
      for i = 1, 60 do
         local step = math.random(10)
         local value = counter:decreaseAsync(step)
         printer('async_decrease', __threadid, i, step, value)
         tunnel.sleep(1 * SCALE)
      end
   end
end

function joe:syncGetJob()
   return function (printer, counter)
      for i = 1, 60 do
         local value = counter:get()
         printer('sync_get', __threadid, i, value)
         tunnel.sleep(1 * SCALE)
      end
   end
end

function joe:syncSetJob()
   return function (printer, counter)
      local math = require('math')
      math.randomseed(SEED + 50000 + __threadid * 1000)
      for i = 1, 60 do
         local value = math.random(10)
         value = counter:set(value)
         printer('sync_set', __threadid, i, value)
         tunnel.sleep(1 * SCALE)
      end
   end
end

function joe:asyncGetJob()
   return function (printer, counter)
      for i = 1, 60 do
         local value = counter:getAsync()
         printer('async_get', __threadid, i, value)
         tunnel.sleep(1 * SCALE)
      end
   end
end

function joe:asyncSetJob()
   return function (printer, counter)
      local math = require('math')
      math.randomseed(SEED + 60000 + __threadid * 1000)
      for i = 1, 60 do
         local value = math.random(10)
         value = counter:setAsync(value)
         printer('async_set', __threadid, i, value)
         tunnel.sleep(1 * SCALE)
      end
   end
end

function joe:syncReadJob()
   return function (printer, counter)
      for i = 1, 60 do
         local value = counter:read(function(value) return value end)
         printer('sync_read', __threadid, i, value)
         tunnel.sleep(1 * SCALE)
      end
   end
end

function joe:asyncReadJob()
   return function (printer, counter)
      for i = 1, 60 do
         local value = counter:readAsync(function(value) return value end)
         printer('async_read', __threadid, i, value)
         tunnel.sleep(1 * SCALE)
      end
   end
end

-- The port prints the value it wrote beside the value write returned
-- (the original printed the returned value only).
function joe:syncWriteJob()
   return function (printer, counter)
      local math = require('math')
      math.randomseed(SEED + 70000 + __threadid * 1000)
      for i = 1, 60 do
         local value = math.random(10)
         local wrote = value
         value = counter:write(function (old_value) return value end)
         printer('sync_write', __threadid, i, wrote, value)
         tunnel.sleep(1 * SCALE)
      end
   end
end

function joe:asyncWriteJob()
   return function (printer, counter)
      local math = require('math')
      math.randomseed(SEED + 80000 + __threadid * 1000)
      for i = 1, 60 do
         local value = math.random(10)
         local wrote = value
         value = counter:writeAsync(function (old_value) return value end)
         printer('async_write', __threadid, i, wrote, value)
         tunnel.sleep(1 * SCALE)
      end
   end
end

describe('original unittest/counter.lua', function()
   joe:init()
   it('counterTest', function() joe:counterTest() end)
end)
