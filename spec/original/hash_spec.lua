-- Port of the original's unittest/hash.lua (zhangxiangxiao/tunnel).
-- joe, getSetTest, readWriteTest and the jobs keep their names, counts and
-- sleeps; the two tests share one hash, as in the original.
-- Changes, and why:
--  * The printer is support.recorder() instead of tunnel.Printer(): the
--    lines are recorded so the spec can assert on them.
--  * `ffi.C.sleep(n)` -> `tunnel.sleep(n * SCALE)` (SCALE = 0.01);
--    `math.randomseed(os.time() + ...)` -> `math.randomseed(SEED + ...)`.
--  * The original wrote `local status, result = block:synchronize()`, names
--    swapped (synchronize returns result, status), so its check
--    `if v == false` looked at results and never fired. The port checks the
--    statuses (support.finish, bounded: the original waited forever).
--  * joe.main -> one `it` per *Test, in the file's order.
--  * Asserts where the original printed: every value read (get, getAsync,
--    read, pairs, iteratorAsync, old values from setAsync) is nil or one a
--    job wrote; sync calls never print 'blocked'; write returns true and the
--    value written; read returns the callback's `value, true`.
--  * `require('tunnel.compat')` added: pairs of a Vector/Hash on LuaJIT and
--    5.1 (see below).
--  * syncIteratorJob iterates with `pairs(hash)` as the original did.
local Hash = require('tunnel.hash')

local Block = require('tunnel.block')

-- The one line a port adds for pairs(hash) on LuaJIT and 5.1 (the original's
-- LuaJIT honoured __pairs; stock LuaJIT and 5.1 do not): the opt-in
-- compatibility module, which the block threads made after it load too.
require('tunnel.compat')

local support = dofile('spec/original/support.lua')
local SCALE = support.SCALE
local SEED = 0

-- A value some job of this file stores: 10000 + t * 1000 + i (sync set) or
-- 20000 + t * 1000 + i (async set, sync and async write), t in 1..3, i in 1..60.
local function written(value)
   if type(value) ~= 'number' then return false end
   local t, i = math.floor(value / 1000), value % 1000
   return (t == 11 or t == 12 or t == 13 or t == 21 or t == 22 or t == 23)
      and i >= 1 and i <= 60
end

local function key(k)
   local n = tonumber(k)
   return type(k) == 'string' and n ~= nil and n >= 1 and n <= 100
end

-- A Logic Named Joe
local joe = {}

function joe:init()
   local hash = Hash()
   local printer, lines = support.recorder()
   self.hash = hash
   self.printer = printer
   self.lines = lines
end

local function run(self, size, job)
   local block = Block(size)
   block:add(self.printer, self.hash)
   block:run(job)
   return block
end

-- What every test checks once its blocks are done.
function joe:check(tags)
   local lines = self.lines
   for tag, count in pairs(tags) do
      local these = support.lines(lines, tag)
      local exits, blocked = 0, 0
      for _, line in ipairs(these) do
         if line[#line] == 'blocked' then blocked = blocked + 1 end
         if line[3] == 'exit' then
            exits = exits + 1
         elseif tag == 'sync_get' then
            assert.is_true(key(line[4]), tag)
            assert.is_true(line[5] == 'nil' or written(tonumber(line[5])), tag)
         elseif tag == 'sync_set' then
            assert.is_true(key(line[4]) and written(line[5]), tag)
         elseif tag == 'async_get' or tag == 'sync_read' or tag == 'async_read' then
            assert.is_true(key(line[4]), tag)
            assert.is_true(line[5] == 'blocked' or line[5] == 'nil'
                           or written(tonumber(line[5])), tag)
            if tag == 'sync_read' then assert.are_not.equal('blocked', line[5]) end
         elseif tag == 'async_set' then
            assert.is_true(key(line[4]), tag)
            assert.is_true(line[5] == 'blocked' or
               (written(line[5]) and (line[6] == nil or written(line[6]))), tag)
         elseif tag == 'sync_write' or tag == 'async_write' then
            assert.is_true(key(line[4]), tag)
            assert.is_true(line[5] == 'blocked' or written(line[5]), tag)
            if tag == 'sync_write' then assert.are_not.equal('blocked', line[5]) end
         elseif tag == 'sync_iterator' or tag == 'async_iterator' then
            if line[4] ~= 'blocked' then
               assert.is_true(key(line[4]) and written(line[5]), tag)
            end
         end
      end
      assert.are.equal(count, exits, tag .. ' exits')
      if tag == 'async_iterator' then
         -- iteratorAsync returns the iterator and true when it got the
         -- snapshot: with writers holding the lock for an instant at a time,
         -- not every one of a thread's 5 attempts is blocked.
         assert.is_true(blocked < 5 * count, 'every iteratorAsync was blocked')
      end
   end
   -- What is left in the hash: keys and values the jobs wrote.
   local n = 0
   for k, v in self.hash:iterator() do
      n = n + 1
      assert.is_true(key(k) and written(v))
   end
   assert.are.equal(self.hash:size(), n)
end

function joe:getSetTest()
   -- 2 synchronous get threads
   local sync_get_block = run(self, 2, self:syncGetJob())
   -- 3 synchronous set threads
   local sync_set_block = run(self, 3, self:syncSetJob())
   -- 2 asynchronous get threads
   local async_get_block = run(self, 2, self:asyncGetJob())
   -- 3 asynchronous set threads
   local async_set_block = run(self, 3, self:asyncSetJob())
   -- 1 synchronous iterator threads
   local sync_iterator_block = run(self, 1, self:syncIteratorJob())
   -- 1 synchronous iterator threads
   local async_iterator_block = run(self, 1, self:asyncIteratorJob())

   support.finish(sync_get_block, 'sync_get_block')
   self.printer('Synchronized with sync_get_block')
   support.finish(sync_set_block, 'sync_set_block')
   self.printer('Synchronized with sync_set_block')
   support.finish(async_get_block, 'async_get_block')
   self.printer('Synchronized with async_get_block')
   support.finish(async_set_block, 'async_set_block')
   self.printer('Synchronized with async_set_block')
   support.finish(sync_iterator_block, 'sync_iterator_block')
   self.printer('Synchronized with sync_iterator_block')
   support.finish(async_iterator_block, 'async_iterator_block')
   self.printer('Synchronized with async_iterator_block')

   self:check{sync_get = 2, sync_set = 3, async_get = 2, async_set = 3,
              sync_iterator = 1, async_iterator = 1}
end

function joe:readWriteTest()
   -- 2 synchronous read threads
   local sync_read_block = run(self, 2, self:syncReadJob())
   -- 3 synchronous write threads
   local sync_write_block = run(self, 3, self:syncWriteJob())
   -- 2 asynchronous read threads
   local async_read_block = run(self, 2, self:asyncReadJob())
   -- 3 asynchronous write threads
   local async_write_block = run(self, 3, self:asyncWriteJob())
   -- 1 synchronous iterator threads
   local sync_iterator_block = run(self, 1, self:syncIteratorJob())
   -- 1 synchronous iterator threads
   local async_iterator_block = run(self, 1, self:asyncIteratorJob())

   support.finish(sync_read_block, 'sync_read_block')
   support.finish(sync_write_block, 'sync_write_block')
   support.finish(async_read_block, 'async_read_block')
   support.finish(async_write_block, 'async_write_block')
   support.finish(sync_iterator_block, 'sync_iterator_block')
   support.finish(async_iterator_block, 'async_iterator_block')

   self:check{sync_read = 2, sync_write = 3, async_read = 2, async_write = 3,
              sync_iterator = 2, async_iterator = 2}
end

function joe:syncGetJob()
   return function (printer, hash)
      local math = require('math')
      math.randomseed(SEED + 20000 + __threadid * 1000)
      for i = 1, 30 do
         local key = tostring(math.random(100))
         local value = hash[key]
         printer('sync_get', __threadid, i, key, tostring(value))
         tunnel.sleep(2 * SCALE)
      end
      printer('sync_get', __threadid, 'exit')
   end
end

function joe:syncSetJob()
   return function (printer, hash)
      local math = require('math')
      math.randomseed(SEED + 10000 + __threadid * 1000)
      for i = 1, 60 do
         local key = tostring(math.random(100))
         local value = 10000 + __threadid * 1000 + i
         hash[key] = value
         printer('sync_set', __threadid, i, key, value)
         tunnel.sleep(1 * SCALE)
      end
      printer('sync_set', __threadid, 'exit')
   end
end

function joe:asyncGetJob()
   return function (printer, hash)
      local math = require('math')
      math.randomseed(SEED + 40000 + __threadid *1000)
      for i = 1, 60 do
         local key = tostring(math.random(100))
         local value, status = hash:getAsync(key)
         if status == true then
            printer('async_get', __threadid, i, key, tostring(value))
         else
            printer('async_get', __threadid, i, key, 'blocked')
         end
         tunnel.sleep(1 * SCALE)
      end
      printer('async_get', __threadid, 'exit')
   end
end

function joe:asyncSetJob()
   return function (printer, hash)
      local math = require('math')
      math.randomseed(SEED + 30000 + __threadid * 1000)
      for i = 1, 60 do
         local key = tostring(math.random(100))
         local value = 20000 + __threadid * 1000 + i
         local status, old_value = hash:setAsync(key, value)
         if status == true then
            printer('async_set', __threadid, i, key, value, old_value)
         else
            printer('async_set', __threadid, i, key, 'blocked')
         end
         tunnel.sleep(1 * SCALE)
      end
      printer('async_set', __threadid, 'exit')
   end
end

function joe:syncReadJob()
   return function (printer, hash)
      local math = require('math')
      math.randomseed(SEED + 40000 + __threadid *1000)
      for i = 1, 60 do
         local key = tostring(math.random(100))
         local value, status = hash:read(
            key, function (value) return value, true end)
         if status == true then
            printer('sync_read', __threadid, i, key, tostring(value))
         else
            printer('sync_read', __threadid, i, key, 'blocked')
         end
         tunnel.sleep(1 * SCALE)
      end
      printer('sync_read', __threadid, 'exit')
   end
end

function joe:syncWriteJob()
   return function (printer, hash)
      local math = require('math')
      math.randomseed(SEED + 30000 + __threadid * 1000)
      for i = 1, 60 do
         local key = tostring(math.random(100))
         local value = 20000 + __threadid * 1000 + i
         local status, value = hash:write(
            key, function (old_value) return value end)
         if status == true then
            printer('sync_write', __threadid, i, key, value)
         else
            printer('sync_write', __threadid, i, key, 'blocked')
         end
         tunnel.sleep(1 * SCALE)
      end
      printer('sync_write', __threadid, 'exit')
   end
end

function joe:asyncReadJob()
   return function (printer, hash)
      local math = require('math')
      math.randomseed(SEED + 40000 + __threadid *1000)
      for i = 1, 60 do
         local key = tostring(math.random(100))
         local value, status = hash:readAsync(
            key, function (value) return value, true end)
         if status == true then
            printer('async_read', __threadid, i, key, tostring(value))
         else
            printer('async_read', __threadid, i, key, 'blocked')
         end
         tunnel.sleep(1 * SCALE)
      end
      printer('async_read', __threadid, 'exit')
   end
end

function joe:asyncWriteJob()
   return function (printer, hash)
      local math = require('math')
      math.randomseed(SEED + 30000 + __threadid * 1000)
      for i = 1, 60 do
         local key = tostring(math.random(100))
         local value = 20000 + __threadid * 1000 + i
         local status, value = hash:writeAsync(
            key, function (old_value) return value end)
         if status == true then
            printer('async_write', __threadid, i, key, value)
         else
            printer('async_write', __threadid, i, key, 'blocked')
         end
         tunnel.sleep(1 * SCALE)
      end
      printer('async_write', __threadid, 'exit')
   end
end

function joe:syncIteratorJob()
   return function (printer, hash)
      for i = 1, 5 do
         for key, value in pairs(hash) do
            printer('sync_iterator', __threadid, i, key, value)
         end
         tunnel.sleep(12 * SCALE)
      end
      printer('sync_iterator', __threadid, 'exit')
   end
end

function joe:asyncIteratorJob()
   return function (printer, hash)
      for i = 1, 5 do
         local iterator, status = hash:iteratorAsync()
         if status == true then
            for key, value in iterator do
               printer('async_iterator', __threadid, i, key, value)
            end
         else
            printer('async_iterator', __threadid, i, 'blocked')
         end
         tunnel.sleep(12 * SCALE)
      end
      printer('async_iterator', __threadid, 'exit')
   end
end

describe('original unittest/hash.lua', function()
   joe:init()
   it('getSetTest', function() joe:getSetTest() end)
   it('readWriteTest', function() joe:readWriteTest() end)
end)
