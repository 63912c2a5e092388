-- Port of the original's unittest/vector.lua (zhangxiangxiao/tunnel).
-- joe, its four tests and the 26 jobs keep their names, counts and sleeps;
-- the tests share one Vector(5), as in the original.
-- Changes, and why:
--  * `threads.Threads(n, init)` + `specific(true)` + `addjob(i, job)` ->
--    `tunnel.Block(n, init)` + `block:run(job)`: the same job on each of the
--    n threads; `terminate()` -> support.terminate (bounded: the original
--    waited forever; asserts that every job returned). threadInit loses
--    `require('torch')`.
--  * `threads.Mutex` around print/io.write -> the lines are recorded
--    (`print` in a job is support.recorder's function), so the spec can
--    assert on them; the iterator jobs record the text they io.wrote.
--  * `ffi.C.sleep(n)` -> `tunnel.sleep(n * SCALE)` (SCALE = 0.01);
--    `math.randomseed(os.time() + __threadid)` -> `math.randomseed(SEED +
--    __threadid)`.
--  * joe.main -> one `it` per *Test, in the file's order.
--  * pushPopTest: 180 sync pushes against 120 sync pops plus however many
--    async pops happen to succeed, with a size hint of 5: whether the
--    original's run ended depended on timing (pushers wait for room,
--    poppers for values). The port adds a referee in the main thread: once
--    every sync pusher is done it pushes a value (99000 + k) for each sync
--    popper still waiting on an empty vector; once every sync popper is done
--    it pops for pushers waiting on a full one. The referee's values count
--    like any other in the checks.
--  * Asserts where the original printed, from the original's Vector:
--    sync operations always act (never 'blocked'; insert only when index
--    <= size + 1, as the original's insert); what insert/push put in is
--    what remove/pop took out plus what is left (insertRemoveTest,
--    pushPopTest); every value read (get, getAsync, read, iterators, old
--    values) is nil or one a job wrote; an iterator lists indexes 1..n in
--    order; sort returns true (sortAsync true or nil); write returns true
--    and the value written; iteratorAsync is not blocked every time.
--  * `require('tunnel.compat')` added: pairs of a Vector/Hash on LuaJIT and
--    5.1 (see below).
--  * syncIteratorJob iterates with `pairs(vector)` as the original did.
local Vector = require('tunnel.vector')

-- The one line a port adds for pairs(vector) on LuaJIT and 5.1 (the original's
-- LuaJIT honoured __pairs; stock LuaJIT and 5.1 do not): the opt-in
-- compatibility module, which the block threads made after it load too.
require('tunnel.compat')

local support = dofile('spec/original/support.lua')
local SCALE = support.SCALE
local SEED = 0

-- The thousands (floor(value / 1000)) of the values the jobs write.
local THOUSANDS = {}
for _, base in ipairs{10, 20, 30, 40, 50, 60} do
   for t = 1, 3 do THOUSANDS[base + t] = true end
end
THOUSANDS[99] = true   -- the referee's

local function written(value)
   if type(value) ~= 'number' then return false end
   local t, i = math.floor(value / 1000), value % 1000
   return THOUSANDS[t] == true and i >= 1 and i <= 60
end

local function valid(value)
   return value == nil or value == 'nil' or written(tonumber(value))
end

-- A Logic Named Joe
local joe = {}

function joe:init()
   local vector = Vector(5)
   self.vector = vector
   self.print, self.lines = support.recorder()
end

-- Blocks of `size` threads, each running `job`; the original's
-- threads.Threads(size, self:threadInit()) with addjob(i, job) for each i.
local function start(self, size, job)
   local block = tunnel.Block(size, self:threadInit())
   block:run(job)
   return block
end

-- The recorded lines of `tag` from the line number `from` on.
local function lines(self, tag, from)
   local out = {}
   for i = from, self.lines:size() do
      local line = self.lines:get(i)
      if line[1] == tag then out[#out + 1] = line end
   end
   return out
end

-- The checks every test shares, over the lines recorded since `from`.
function joe:check(from)
   for _, tag in ipairs{'sync_insert', 'sync_remove', 'sync_pushfront',
                        'sync_popfront', 'sync_pushback', 'sync_popback',
                        'sync_get', 'sync_set', 'sync_sort', 'sync_read',
                        'sync_write', 'sync_iterator', 'sync_tostring'} do
      for _, line in ipairs(lines(self, tag, from)) do
         local blocked = line[line.n] == 'blocked'
         if tag == 'sync_insert' then
            -- insert at index > size + 1 is refused, as in the original
            assert.is_true(not blocked or type(line[4]) == 'number', tag)
         elseif tag ~= 'sync_remove' then
            assert.is_false(blocked, tag .. ' blocked')
         end
      end
   end
   for _, tag in ipairs{'sync_remove', 'async_remove', 'sync_popfront',
                        'async_popfront', 'sync_popback', 'async_popback',
                        'sync_get', 'async_get', 'sync_read', 'async_read'} do
      for _, line in ipairs(lines(self, tag, from)) do
         if tag:find('pop') then
            assert.is_true(valid(line[4]), tag)
         else
            assert.is_true(valid(line[5]), tag)
         end
      end
   end
   for _, line in ipairs(lines(self, 'async_set', from)) do
      if line[line.n] ~= 'blocked' then assert.is_true(valid(line[6]), 'async_set old') end
   end
   for _, tag in ipairs{'sync_write', 'async_write'} do
      for _, line in ipairs(lines(self, tag, from)) do
         if line[line.n] ~= 'blocked' then assert.is_true(written(line[5]), tag) end
      end
   end
   local async_iterations, async_blocked = 0, 0
   for _, tag in ipairs{'sync_iterator', 'async_iterator'} do
      for _, line in ipairs(lines(self, tag, from)) do
         if line[line.n] == 'blocked' then
            async_blocked = async_blocked + 1
         else
            -- '{1:v,2:v,...,}' with indexes 1..n in order
            local text = line[4]
            assert.are.equal('{', text:sub(1, 1))
            local expect = 1
            for index, value in text:gmatch('(%d+):([^,]*),') do
               assert.are.equal(expect, tonumber(index), tag .. ' ' .. text)
               assert.is_true(valid(value), tag .. ' ' .. text)
               expect = expect + 1
            end
         end
         if tag == 'async_iterator' then async_iterations = async_iterations + 1 end
      end
   end
   if async_iterations > 0 then
      assert.is_true(async_blocked < async_iterations, 'every iteratorAsync was blocked')
   end
   for _, line in ipairs(lines(self, 'sync_tostring', from)) do
      assert.are.equal('string', type(line[4]))
   end
   -- What is left in the vector: values the jobs wrote, or nil.
   for i = 1, self.vector:size() do
      assert.is_true(valid(self.vector:get(i)), 'left at ' .. i)
   end
end

-- Conservation: what went in (status true) is what came out plus what is
-- left, counted value by value.
function joe:conserve(from, initial, ins, outs)
   local count = {}
   local function add(v, d) count[v] = (count[v] or 0) + d end
   for _, v in ipairs(initial) do add(v, 1) end
   for _, tag in ipairs(ins) do
      for _, line in ipairs(lines(self, tag, from)) do
         if line[line.n] ~= 'blocked' then add(line[line.n], 1) end
      end
   end
   for _, tag in ipairs(outs) do
      for _, line in ipairs(lines(self, tag, from)) do
         if line[line.n] ~= 'blocked' then add(line[line.n], -1) end
      end
   end
   for i = 1, self.vector:size() do add(self.vector:get(i), -1) end
   for v, n in pairs(count) do
      assert.are.equal(0, n, 'value ' .. tostring(v) .. ' in minus out minus left')
   end
end

local function snapshot(vector)
   local values = {}
   for i = 1, vector:size() do values[i] = vector:get(i) end
   return values
end

function joe:insertRemoveTest()
   local from = self.lines:size() + 1
   local initial = snapshot(self.vector)
   local blocks = {
      -- 3 synchronous insert threads
      {start(self, 3, self:syncInsertJob()), 'sync_insert_block'},
      -- 2 synchronous remove threads
      {start(self, 2, self:syncRemoveJob()), 'sync_remove_block'},
      -- 3 asynchronous insert threads
      {start(self, 3, self:asyncInsertJob()), 'async_insert_block'},
      -- 2 asynchronous remove threads
      {start(self, 2, self:asyncRemoveJob()), 'async_remove_block'},
      -- 1 synchronous iterator thread
      {start(self, 1, self:syncIteratorJob()), 'sync_iterator_block'},
      -- 1 asynchronous iterator thread
      {start(self, 1, self:asyncIteratorJob()), 'async_iterator_block'},
      -- 1 synchronous tostring thread
      {start(self, 1, self:syncToStringJob()), 'sync_tostring_block'},
      -- 1 Asynchronous tostring thread
      {start(self, 1, self:asyncToStringJob()), 'async_tostring_block'},
   }
   for _, b in ipairs(blocks) do support.terminate(b[1], b[2]) end
   self:check(from)
   -- the recorded insert lines end with the value; remove lines too
   self:conserve(from, initial, {'sync_insert', 'async_insert'},
                 {'sync_remove', 'async_remove'})
end

function joe:pushPopTest()
   local from = self.lines:size() + 1
   local initial = snapshot(self.vector)
   local pushers = {
      -- 3 synchronous pushFront threads
      {start(self, 3, self:syncPushFrontJob()), 'sync_pushfront_block'},
      -- 3 synchronous pushBack threads
      {start(self, 3, self:syncPushBackJob()), 'sync_pushback_block'},
   }
   local poppers = {
      -- 2 synchronous popFront threads
      {start(self, 2, self:syncPopFrontJob()), 'sync_popfront_block'},
      -- 2 synchronous popBack threads
      {start(self, 2, self:syncPopBackJob()), 'sync_popback_block'},
   }
   local others = {
      -- 3 asynchronous pushFront threads
      {start(self, 3, self:asyncPushFrontJob()), 'async_pushfront_block'},
      -- 2 asynchronous popFront threads
      {start(self, 2, self:asyncPopFrontJob()), 'async_popfront_block'},
      -- 3 asynchronous pushBack threads
      {start(self, 3, self:asyncPushBackJob()), 'async_pushback_block'},
      -- 2 asynchronous popBack threads
      {start(self, 2, self:asyncPopBackJob()), 'async_popback_block'},
      -- 1 synchronous iterator thread
      {start(self, 1, self:syncIteratorJob()), 'sync_iterator_block'},
      -- 1 asynchronous iterator thread
      {start(self, 1, self:asyncIteratorJob()), 'async_iterator_block'},
      -- 1 synchronous tostring thread
      {start(self, 1, self:syncToStringJob()), 'sync_tostring_block'},
      -- 1 Asynchronous tostring thread
      {start(self, 1, self:asyncToStringJob()), 'async_tostring_block'},
   }
   -- The referee (see the header).
   local function done(list)
      for _, b in ipairs(list) do
         local _, status = b[1]:getResult()
         for i = 1, b[1].size do
            if status[i] == nil then return false end
         end
      end
      return true
   end
   local referee, k = self.print, 0
   local deadline = tunnel.clock() + support.TIMEOUT
   while not (done(pushers) and done(poppers)) and tunnel.clock() < deadline do
      if done(pushers) and not done(poppers) and self.vector:size() == 0 then
         k = k + 1
         local value = 99000 + k
         referee('referee_push', 0, k, self.vector:pushBack(value) and value)
      elseif done(poppers) and not done(pushers)
             and self.vector:size() >= self.vector.size_hint then
         local value, status = self.vector:popFrontAsync()
         if status then referee('referee_pop', 0, k, value) end
      end
      tunnel.sleep(SCALE)
   end
   for _, list in ipairs{pushers, poppers, others} do
      for _, b in ipairs(list) do support.terminate(b[1], b[2]) end
   end
   self:check(from)
   self:conserve(from, initial,
                 {'sync_pushfront', 'async_pushfront', 'sync_pushback',
                  'async_pushback', 'referee_push'},
                 {'sync_popfront', 'async_popfront', 'sync_popback',
                  'async_popback', 'referee_pop'})
end

function joe:getSetTest()
   local from = self.lines:size() + 1
   local blocks = {
      -- 3 synchronous insert threads
      {start(self, 3, self:syncInsertJob()), 'sync_insert_block'},
      -- 2 synchronous get threads
      {start(self, 2, self:syncGetJob()), 'sync_get_block'},
      -- 2 synchronous set threads
      {start(self, 2, self:syncSetJob()), 'sync_set_block'},
      -- 2 asynchronous get threads
      {start(self, 2, self:asyncGetJob()), 'async_get_block'},
      -- 2 asynchronous set threads
      {start(self, 2, self:asyncSetJob()), 'async_set_block'},
      -- 1 synchronous sort thread
      {start(self, 1, self:syncSortJob()), 'sync_sort_block'},
      -- 1 synchronous sort thread
      {start(self, 1, self:asyncSortJob()), 'async_sort_block'},
      -- 1 synchronous iterator thread
      {start(self, 1, self:syncIteratorJob()), 'sync_iterator_block'},
      -- 1 asynchronous iterator thread
      {start(self, 1, self:asyncIteratorJob()), 'async_iterator_block'},
   }
   for _, b in ipairs(blocks) do support.terminate(b[1], b[2]) end
   self:check(from)
end

function joe:readWriteTest()
   local from = self.lines:size() + 1
   local blocks = {
      -- 3 synchronous insert threads
      {start(self, 3, self:syncInsertJob()), 'sync_insert_block'},
      -- 2 synchronous read threads
      {start(self, 2, self:syncReadJob()), 'sync_read_block'},
      -- 2 synchronous write threads
      {start(self, 2, self:syncWriteJob()), 'sync_write_block'},
      -- 2 asynchronous read threads
      {start(self, 2, self:asyncReadJob()), 'async_read_block'},
      -- 2 asynchronous write threads
      {start(self, 2, self:asyncWriteJob()), 'async_write_block'},
      -- 1 synchronous sort thread
      {start(self, 1, self:syncSortJob()), 'sync_sort_block'},
      -- 1 synchronous sort thread
      {start(self, 1, self:asyncSortJob()), 'async_sort_block'},
      -- 1 synchronous iterator thread
      {start(self, 1, self:syncIteratorJob()), 'sync_iterator_block'},
      -- 1 asynchronous iterator thread
      {start(self, 1, self:asyncIteratorJob()), 'async_iterator_block'},
   }
   for _, b in ipairs(blocks) do support.terminate(b[1], b[2]) end
   self:check(from)
end

function joe:threadInit()
   return function()
      require('tunnel.vector') -- the original: local Vector = require(...)
   end
end

function joe:syncInsertJob()
   local print = self.print
   local vector = self.vector
   return function()
      local math = require('math')
      math.randomseed(SEED + __threadid)
      for i = 1, 10 do
         local index = math.random(3)
         local value = 10000 + __threadid * 1000 + i
         local status = vector:insert(index, value)
         if status == true then
            print('sync_insert', __threadid, i, index, value)
         else
            print('sync_insert', __threadid, i, index, value, 'blocked')
         end
         tunnel.sleep(6 * SCALE)
      end
   end
end

function joe:syncRemoveJob()
   local print = self.print
   local vector = self.vector
   return function()
      local math = require('math')
      math.randomseed(SEED + __threadid)
      for i = 1, 20 do
         local index = math.random(10)
         local value, status = vector:remove(index)
         if status == true then
            print('sync_remove', __threadid, i, index, value)
         else
            print('sync_remove', __threadid, i, index, value, 'blocked')
         end
         tunnel.sleep(3 * SCALE)
      end
   end
end

function joe:asyncInsertJob()
   local print = self.print
   local vector = self.vector
   return function()
      local math = require('math')
      math.randomseed(SEED + __threadid)
      for i = 1, 10 do
         local index = math.random(3)
         local value = 20000 + __threadid * 1000 + i
         local status = vector:insertAsync(index, value)
         if status == true then
            print('async_insert', __threadid, i, index, value)
         else
            print('async_insert', __threadid, i, index, value, 'blocked')
         end
         tunnel.sleep(6 * SCALE)
      end
   end
end

function joe:asyncRemoveJob()
   local print = self.print
   local vector = self.vector
   return function()
      local math = require('math')
      math.randomseed(SEED + __threadid)
      for i = 1, 20 do
         local index = math.random(10)
         local value, status = vector:removeAsync(index)
         if status == true then
            print('async_remove', __threadid, i, index, value)
         else
            print('async_remove', __threadid, i, index, value, 'blocked')
         end
         tunnel.sleep(3 * SCALE)
      end
   end
end

function joe:syncIteratorJob()
   local print = self.print
   local vector = self.vector
   return function()
      local math = require('math')
      math.randomseed(SEED + __threadid)
      for i = 1, 30 do
         local status = true
         local iterator = pairs(vector)
         if status == true then
            local text = {'{'}
            for index, value in iterator do
               text[#text + 1] = index .. ':' .. tostring(value) .. ','
            end
            text[#text + 1] = '}'
            print('sync_iterator', __threadid, i, table.concat(text))
         else
            print('sync_iterator', __threadid, i, 'blocked')
         end
         tunnel.sleep(2 * SCALE)
      end
   end
end

function joe:asyncIteratorJob()
   local print = self.print
   local vector = self.vector
   return function()
      local math = require('math')
      math.randomseed(SEED + __threadid)
      for i = 1, 20 do
         local iterator, status = vector:iteratorAsync()
         if status == true then
            local text = {'{'}
            for index, value in iterator do
               text[#text + 1] = index .. ':' .. tostring(value) .. ','
            end
            text[#text + 1] = '}'
            print('async_iterator', __threadid, i, table.concat(text))
         else
            print('async_iterator', __threadid, i, 'blocked')
         end
         tunnel.sleep(3 * SCALE)
      end
   end
end

function joe:syncToStringJob()
   local print = self.print
   local vector = self.vector
   return function()
      local math = require('math')
      math.randomseed(SEED + __threadid)
      for i = 1, 12 do
         local vector_string = tostring(vector)
         if vector_string ~= nil then
            print('sync_tostring', __threadid, i,
                  (vector_string:gsub('\n', ','):gsub('    ','')))
         else
            print('sync_tostring', __threadid, i, 'blocked')
         end
         tunnel.sleep(5 * SCALE)
      end
   end
end

function joe:asyncToStringJob()
   local print = self.print
   local vector = self.vector
   return function()
      local math = require('math')
      math.randomseed(SEED + __threadid)
      for i = 1, 12 do
         local vector_string = vector:toStringAsync()
         if vector_string ~= nil then
            print('async_tostring', __threadid, i,
                  (vector_string:gsub('\n', ','):gsub('    ','')))
         else
            print('async_tostring', __threadid, i, 'blocked')
         end
         tunnel.sleep(5 * SCALE)
      end
   end
end

function joe:syncPushFrontJob()
   local print = self.print
   local vector = self.vector
   return function()
      local math = require('math')
      math.randomseed(SEED + __threadid)
      for i = 1, 30 do
         local value = 30000 + __threadid * 1000 + i
         local status = vector:pushFront(value)
         if status == true then
            print('sync_pushfront', __threadid, i, value)
         else
            print('sync_pushfront', __threadid, i, value, 'blocked')
         end
         tunnel.sleep(2 * SCALE)
      end
   end
end

function joe:syncPopFrontJob()
   local print = self.print
   local vector = self.vector
   return function()
      local math = require('math')
      math.randomseed(SEED + __threadid)
      for i = 1, 30 do
         local value, status = vector:popFront()
         if status == true then
            print('sync_popfront', __threadid, i, value)
         else
            print('sync_popfront', __threadid, i, value, 'blocked')
         end
         tunnel.sleep(3 * SCALE)
      end
   end
end

function joe:asyncPushFrontJob()
   local print = self.print
   local vector = self.vector
   return function()
      local math = require('math')
      math.randomseed(SEED + __threadid)
      for i = 1, 10 do
         local value = 40000 + __threadid * 1000 + i
         local status = vector:pushFrontAsync(value)
         if status == true then
            print('async_pushfront', __threadid, i, value)
         else
            print('async_pushfront', __threadid, i, value, 'blocked')
         end
         tunnel.sleep(6 * SCALE)
      end
   end
end

function joe:asyncPopFrontJob()
   local print = self.print
   local vector = self.vector
   return function()
      local math = require('math')
      math.randomseed(SEED + __threadid)
      for i = 1, 30 do
         local value, status = vector:popFrontAsync()
         if status == true then
            print('async_popfront', __threadid, i, value)
         else
            print('async_popfront', __threadid, i, value, 'blocked')
         end
         tunnel.sleep(2 * SCALE)
      end
   end
end

function joe:syncPushBackJob()
   local print = self.print
   local vector = self.vector
   return function()
      local math = require('math')
      math.randomseed(SEED + __threadid)
      for i = 1, 30 do
         local value = 50000 + __threadid * 1000 + i
         local status = vector:pushBack(value)
         if status == true then
            print('sync_pushback', __threadid, i, value)
         else
            print('sync_pushback', __threadid, i, value, 'blocked')
         end
         tunnel.sleep(2 * SCALE)
      end
   end
end

function joe:syncPopBackJob()
   local print = self.print
   local vector = self.vector
   return function()
      local math = require('math')
      math.randomseed(SEED + __threadid)
      for i = 1, 30 do
         local value, status = vector:popBack()
         if status == true then
            print('sync_popback', __threadid, i, value)
         else
            print('sync_popback', __threadid, i, value, 'blocked')
         end
         tunnel.sleep(3 * SCALE)
      end
   end
end

function joe:asyncPushBackJob()
   local print = self.print
   local vector = self.vector
   return function()
      local math = require('math')
      math.randomseed(SEED + __threadid)
      for i = 1, 10 do
         local value = 40000 + __threadid * 1000 + i
         local status = vector:pushBackAsync(value)
         if status == true then
            print('async_pushback', __threadid, i, value)
         else
            print('async_pushback', __threadid, i, value, 'blocked')
         end
         tunnel.sleep(6 * SCALE)
      end
   end
end

function joe:asyncPopBackJob()
   local print = self.print
   local vector = self.vector
   return function()
      local math = require('math')
      math.randomseed(SEED + __threadid)
      for i = 1, 20 do
         local value, status = vector:popBackAsync()
         if status == true then
            print('async_popback', __threadid, i, value)
         else
            print('async_popback', __threadid, i, value, 'blocked')
         end
         tunnel.sleep(3 * SCALE)
      end
   end
end

function joe:syncGetJob()
   local print = self.print
   local vector = self.vector
   return function()
      local math = require('math')
      math.randomseed(SEED + __threadid)
      for i = 1, 30 do
         local index = math.random(10)
         local value = vector[index]
         local status = true
         if status == true then
            print('sync_get', __threadid, i, index, value)
         else
            print('sync_get', __threadid, i, index, value, 'blocked')
         end
         tunnel.sleep(2 * SCALE)
      end
   end
end

function joe:syncSetJob()
   local print = self.print
   local vector = self.vector
   return function()
      local math = require('math')
      math.randomseed(SEED + __threadid)
      for i = 1, 60 do
         local index = math.random(10)
         local value = 50000 + __threadid * 1000 + i
         vector[index] = value
         local status = true
         if status == true then
            print('sync_set', __threadid, i, index, value)
         else
            print('sync_set', __threadid, i, index, value, 'blocked')
         end
         tunnel.sleep(1 * SCALE)
      end
   end
end

function joe:asyncGetJob()
   local print = self.print
   local vector = self.vector
   return function()
      local math = require('math')
      math.randomseed(SEED + __threadid)
      for i = 1, 20 do
         local index = math.random(10)
         local value, status = vector:getAsync(index)
         if status == true then
            print('async_get', __threadid, i, index, value)
         else
            print('async_get', __threadid, i, index, value, 'blocked')
         end
         tunnel.sleep(3 * SCALE)
      end
   end
end

function joe:asyncSetJob()
   local print = self.print
   local vector = self.vector
   return function()
      local math = require('math')
      math.randomseed(SEED + __threadid)
      for i = 1, 60 do
         local index = math.random(10)
         local value = 60000 + __threadid * 1000 + i
         local status, old_value = vector:setAsync(index, value)
         if status == true then
            print('async_set', __threadid, i, index, value, old_value)
         else
            print(
               'async_set', __threadid, i, index, value, old_value, 'blocked')
         end
         tunnel.sleep(1 * SCALE)
      end
   end
end

-- The comparator is the original's: it says nil < nil, which Lua's
-- table.sort may reject ("invalid order function for sorting"); the
-- original's tds.Vec:sort ran C's qsort, which never raises, so sort
-- returned true.
function joe:syncSortJob()
   local print = self.print
   local vector = self.vector
   return function()
      local math = require('math')
      math.randomseed(SEED + __threadid)
      for _ = 1, 20 do
         local status = vector:sort(
            function (a, b)
               if a == nil then
                  return true
               elseif b == nil then
                  return false
               end
               return a < b
            end)
         if status == true then
            print('sync_sort', __threadid)
         else
            print('sync_sort', __threadid, 'blocked')
         end
         tunnel.sleep(3 * SCALE)
      end
   end
end

function joe:asyncSortJob()
   local print = self.print
   local vector = self.vector
   return function()
      local math = require('math')
      math.randomseed(SEED + __threadid)
      for _ = 1, 20 do
         local status = vector:sortAsync(
            function (a, b)
               if a == nil then
                  return true
               elseif b == nil then
                  return false
               end
               return a < b
            end)
         if status == true then
            print('async_sort', __threadid)
         else
            print('async_sort', __threadid, 'blocked')
         end
         tunnel.sleep(3 * SCALE)
      end
   end
end

function joe:syncReadJob()
   local print = self.print
   local vector = self.vector
   return function()
      local math = require('math')
      math.randomseed(SEED + __threadid)
      for i = 1, 30 do
         local index = math.random(10)
         local status, value = vector:read(
            index, function (value) return true, value end)
         if status == true then
            print('sync_read', __threadid, i, index, value)
         else
            print('sync_read', __threadid, i, index, value, 'blocked')
         end
         tunnel.sleep(2 * SCALE)
      end
   end
end

function joe:syncWriteJob()
   local print = self.print
   local vector = self.vector
   return function()
      local math = require('math')
      math.randomseed(SEED + __threadid)
      for i = 1, 60 do
         local index = math.random(10)
         local value = 50000 + __threadid * 1000 + i
         local status, value = vector:write(
            index, function (old_value) return value end)
         if status == true then
            print('sync_write', __threadid, i, index, value)
         else
            print('sync_write', __threadid, i, index, value, 'blocked')
         end
         tunnel.sleep(1 * SCALE)
      end
   end
end

function joe:asyncReadJob()
   local print = self.print
   local vector = self.vector
   return function()
      local math = require('math')
      math.randomseed(SEED + __threadid)
      for i = 1, 30 do
         local index = math.random(10)
         local status, value = vector:readAsync(
            index, function (value) return true, value end)
         if status == true then
            print('async_read', __threadid, i, index, value)
         else
            print('async_read', __threadid, i, index, value, 'blocked')
         end
         tunnel.sleep(2 * SCALE)
      end
   end
end

function joe:asyncWriteJob()
   local print = self.print
   local vector = self.vector
   return function()
      local math = require('math')
      math.randomseed(SEED + __threadid)
      for i = 1, 60 do
         local index = math.random(10)
         local value = 50000 + __threadid * 1000 + i
         local status, value = vector:writeAsync(
            index, function (old_value) return value end)
         if status == true then
            print('async_write', __threadid, i, index, value)
         else
            print('async_write', __threadid, i, index, value, 'blocked')
         end
         tunnel.sleep(1 * SCALE)
      end
   end
end

describe('original unittest/vector.lua', function()
   joe:init()
   it('insertRemoveTest', function() joe:insertRemoveTest() end)
   it('pushPopTest', function() joe:pushPopTest() end)
   it('getSetTest', function() joe:getSetTest() end)
   it('readWriteTest', function() joe:readWriteTest() end)
   -- Not a test of the original's: its sort jobs' comparator on one vector
   -- with nils, without threads, so the result above does not depend on
   -- what the vector happened to hold. The original (tds.Vec:sort, C's
   -- qsort) returned true and put the nils first.
   it('the sort jobs\' comparator, on a vector holding nils', function()
      local vector = Vector()
      for i = 10, 1, -1 do
         if i % 2 == 0 then vector[i] = i else vector[i] = nil end
      end
      local status = vector:sort(
         function (a, b)
            if a == nil then
               return true
            elseif b == nil then
               return false
            end
            return a < b
         end)
      assert.is_true(status)
      assert.are.equal(10, vector:size())
      for i = 1, 10 do
         assert.are.equal(i > 5 and 2 * (i - 5) or nil, (vector:get(i)))
      end
   end)
end)
