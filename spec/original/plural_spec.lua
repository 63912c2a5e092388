-- Port of the original's unittest/plural.lua (zhangxiangxiao/tunnel).
-- joe, pluralTest, popBackJob and pushBackJob keep their names and counts.
-- Changes, and why:
--  * The printer is support.recorder() instead of tunnel.Printer(): the
--    lines are recorded so the spec can assert on them.
--  * `math.randomseed(10000 + id * 1000 + os.time())` -> `SEED` in place of
--    os.time(): the same numbers on every run.
--  * The original wrote `local status, result = block:synchronize()`, names
--    swapped (synchronize returns result, status), so its check never fired;
--    the port checks the statuses (support.finish, bounded).
--  * joe.main -> an `it`.
--  * Asserts where the original printed: `#vectors` is 3; doAll returns
--    {true, true, true}; for each vector, the 'do_all' string and the 60
--    numbers pushed are the 60 values popped plus the one left.
--  * popBackJob calls `vectors[id]:popBack(value)` with `value` an undefined
--    global (nil), as the original did.
local Plural = require('tunnel.plural')

local Block = require('tunnel.block')
local Counter = require('tunnel.counter')
local Vector = require('tunnel.vector')

local support = dofile('spec/original/support.lua')
local SEED = 0

-- A Logic Named Joe
local joe = {}

function joe:init()
   local printer, lines = support.recorder()
   local vectors = Plural(3, Vector, 3)
   printer('Initialized vectors', #vectors)
   self.printer = printer
   self.lines = lines
   self.vectors = vectors
end

function joe:pluralTest()
   assert.are.same({n = 2, 'Initialized vectors', 3},
                   support.lines(self.lines, 'Initialized vectors')[1])
   local ret = self.vectors:doAll(
      function (index, vector)
         vector:pushBack('do_all '..index)
         return true
      end)
   for i, v in ipairs(ret) do
      self.printer('ret', i, v)
   end
   assert.are.same({true, true, true}, ret)

   local popback_counter = Counter()
   local popback_block = Block(#self.vectors)
   popback_block:add(popback_counter, self.printer, self.vectors)
   popback_block:run(self:popBackJob())

   local pushback_counter = Counter()
   local pushback_block = Block(#self.vectors)
   pushback_block:add(pushback_counter, self.printer, self.vectors)
   pushback_block:run(self:pushBackJob())

   support.finish(popback_block, 'popback_block')
   support.finish(pushback_block, 'pushback_block')

   -- Each thread took one id; per vector, what went in is what came out
   -- plus what is left.
   local ids = {}
   for _, line in ipairs(support.lines(self.lines, 'popback')) do
      if line[3] == 'id' then ids[#ids + 1] = line[4] end
   end
   table.sort(ids)
   assert.are.same({1, 2, 3}, ids)
   for id = 1, 3 do
      local count = {['do_all ' .. id] = 1}
      local function add(v, d) count[v] = (count[v] or 0) + d end
      for _, line in ipairs(support.lines(self.lines, 'pushback')) do
         if line[3] == id then add(line[5], 1) end
      end
      local popped = 0
      for _, line in ipairs(support.lines(self.lines, 'popback')) do
         if line[3] == id then popped = popped + 1; add(line[5], -1) end
      end
      assert.are.equal(60, popped)
      local vector = self.vectors[id]
      assert.are.equal(1, vector:size())
      add(vector:get(1), -1)
      for v, n in pairs(count) do
         assert.are.equal(0, n, 'vector ' .. id .. ' value ' .. tostring(v))
      end
   end
end

function joe:popBackJob()
   return function (counter, printer, vectors)
      local id = counter:increase()
      printer('popback', __threadid, 'id', id)
      for i = 1, 60 do
         local value = vectors[id]:popBack() -- the original's popBack(value): a nil global
         printer('popback', __threadid, id, i, value)
      end
   end
end

function joe:pushBackJob()
   return function (counter, printer, vectors)
      local math = require('math')
      local id = counter:increase()
      printer('pushback', __threadid, 'id', id)
      math.randomseed(10000 + id * 1000 + SEED)
      for i = 1, 60 do
         local value = math.random(100)
         vectors[id]:pushBack(value)
         printer('pushback', __threadid, id, i, value)
      end
   end
end

describe('original unittest/plural.lua', function()
   joe:init()
   it('pluralTest', function() joe:pluralTest() end)
end)
