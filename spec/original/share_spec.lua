-- Port of the original's unittest/share.lua (zhangxiangxiao/tunnel).
-- joe, init and shareTest keep their names and steps.
-- Changes, and why:
--  * `torch.DoubleTensor(1)` -> the plain table {0}: Share makes it a shared
--    table, one table every thread reads and writes (the original shared the
--    tensor's storage).
--  * `torch.pointer(data:storage())` (printed in the main thread and in each
--    thread, to show one storage) -> a check of identity by effect: each
--    thread's access callback stores its __threadid at data[1 + __threadid],
--    and the main thread reads all three through its own share_data.data.
--  * The printer is support.recorder() instead of tunnel.Printer().
--  * Block(3, function () require('torch') end) -> an init that requires
--    the original's 'tunnel.share'.
--  * The port asserts that every job returned (support.finish, bounded).
local Share = require('tunnel.share')

local Block = require('tunnel.block')

local support = dofile('spec/original/support.lua')

-- A Logic Named Joe
local joe = {}

function joe:init()
   self.share_data = Share({0})
   self.printer, self.lines = support.recorder()
   self.printer('main', self.share_data.data[1])
end

function joe:shareTest()
   -- Create a block of 3 threads
   local block = Block(3, function () require('tunnel.share') end)
   block:add(self.printer, self.share_data)
   block:run(
      function (printer, share_data)
         share_data:access(
            function (data)
               printer('share_access', data[1])
               data[1 + __threadid] = __threadid
            end)
      end)
   support.finish(block, 'block')
   block:terminate()

   local data = self.share_data.data
   assert.are.equal(0, data[1])
   for i = 1, 3 do assert.are.equal(i, data[1 + i]) end
   assert.are.equal(3, #support.lines(self.lines, 'share_access'))
   for _, line in ipairs(support.lines(self.lines, 'share_access')) do
      assert.are.equal(0, line[2])
   end
end

describe('original unittest/share.lua', function()
   joe:init()
   it('shareTest', function() joe:shareTest() end)
end)
