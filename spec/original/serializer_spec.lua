-- Port of the original's unittest/serializer.lua (zhangxiangxiao/tunnel).
-- joe, its five tests and their jobs keep their names and their sequence:
-- save in the main thread, load there, then retain the same string in each
-- of two block threads.
-- Changes, and why:
--  * The shared data: `tds.Hash()` -> `tunnel.Hash()`, `tds.Vec()` ->
--    `tunnel.Vector()`, `tds.AtomicCounter()` -> `tunnel.Counter()` (the
--    tunnel structures that cross by reference, as tds ones did through the
--    original's shared serialization); `torch.DoubleStorage(5)` and
--    `torch.DoubleTensor(5)` -> the plain table {0, 0, 0, 0, 0} (plain
--    tables are copied: the threads get equal tables).
--  * `torch.pointer(x)` (printed to show the same memory everywhere) ->
--    checks of identity: the loaded object is the saved one (`==`), and what
--    each thread does to its retained object the main thread sees. For the
--    plain tables, the threads return what they retained and the main
--    thread compares it.
--  * The printer is support.recorder() instead of tunnel.Printer().
--  * Where the original printed a failed status, the port asserts that
--    every job returned (support.finish, bounded).
--  * joe.main -> one `it` per *Test.
local Serializer = require('tunnel.serializer')

local Block = require('tunnel.block')

local support = dofile('spec/original/support.lua')

-- A Logic Named Joe
local joe = {}

function joe:init()
   -- 'Creating a serializer'
   self.serializer = Serializer()
end

-- The original's five tests differ only in the data and in the job; so do
-- the ports. `touch(data)` runs in each thread on the retained object and
-- returns something for `check(data, result)` to assert on in the main
-- thread once both threads are done.
local function test(self, data, job)
   local serializer = self.serializer
   local block = Block(2)
   local printer, lines = support.recorder()

   printer('Created data', tostring(data))
   local serialized_data = serializer:save(data)
   printer('Serialized data', #serialized_data)
   local deserialized_data = serializer:load(serialized_data)
   printer('Deserialized data', tostring(deserialized_data))

   block:add(serialized_data, printer)
   block:run(job)

   local result = support.finish(block, 'block')
   block:terminate()
   return deserialized_data, result, lines
end

function joe:hashTest()
   local data = tunnel.Hash()
   local deserialized_data = test(self, data, self:hashJob())
   assert.are.equal(data, deserialized_data)
   -- each thread wrote into the object it retained: the same hash
   assert.are.equal(1, data:get('thread 1'))
   assert.are.equal(2, data:get('thread 2'))
end

function joe:hashJob()
   return function (serialized_data, printer)
      local Serializer = require('tunnel.serializer')
      local serializer = Serializer()
      printer('Obtained serialized data', __threadid, #serialized_data);
      local data = serializer:retain(serialized_data)
      printer('Obtained deserialized data', __threadid, tostring(data))
      data:set('thread ' .. __threadid, __threadid)
   end
end

function joe:vecTest()
   local data = tunnel.Vector()
   local deserialized_data = test(self, data, self:vecJob())
   assert.are.equal(data, deserialized_data)
   assert.are.equal(2, data:size())
   local seen = {(data:get(1)), (data:get(2))}
   table.sort(seen)
   assert.are.same({1, 2}, seen)
end

function joe:vecJob()
   return function (serialized_data, printer)
      local Serializer = require('tunnel.serializer')
      local serializer = Serializer()
      printer('Obtained serialized data', __threadid, #serialized_data);
      local data = serializer:retain(serialized_data)
      printer('Obtained deserialized data', __threadid, tostring(data))
      data:pushBack(__threadid)
   end
end

function joe:counterTest()
   local data = tunnel.Counter()
   local deserialized_data = test(self, data, self:counterJob())
   assert.are.equal(data, deserialized_data)
   assert.are.equal(2, data:get())
end

function joe:counterJob()
   return function (serialized_data, printer)
      local Serializer = require('tunnel.serializer')
      local serializer = Serializer()
      printer('Obtained serialized data', __threadid, #serialized_data);
      local data = serializer:retain(serialized_data)
      printer('Obtained deserialized data', __threadid, tostring(data))
      data:increase()
   end
end

function joe:storageTest()
   local data = {0, 0, 0, 0, 0}
   local deserialized_data, result = test(self, data, self:storageJob())
   assert.are.same(data, deserialized_data)
   for i = 1, 2 do assert.are.same(data, result[i][1]) end
end

function joe:storageJob()
   return function (serialized_data, printer)
      local Serializer = require('tunnel.serializer')
      local serializer = Serializer()
      printer('Obtained serialized data', __threadid, #serialized_data);
      local data = serializer:retain(serialized_data)
      printer('Obtained deserialized data', __threadid, tostring(data))
      return data
   end
end

function joe:tensorTest()
   local data = {0, 0, 0, 0, 0}
   local deserialized_data, result = test(self, data, self:tensorJob())
   assert.are.same(data, deserialized_data)
   for i = 1, 2 do assert.are.same(data, result[i][1]) end
end

function joe:tensorJob()
   return function (serialized_data, printer)
      local Serializer = require('tunnel.serializer')
      local serializer = Serializer()
      printer('Obtained serialized data', __threadid, #serialized_data);
      local data = serializer:retain(serialized_data)
      printer('Obtained deserialized data', __threadid, tostring(data))
      return data
   end
end

describe('original unittest/serializer.lua', function()
   joe:init()
   it('hashTest', function() joe:hashTest() end)
   it('vecTest', function() joe:vecTest() end)
   it('counterTest', function() joe:counterTest() end)
   it('storageTest', function() joe:storageTest() end)
   it('tensorTest', function() joe:tensorTest() end)
end)
