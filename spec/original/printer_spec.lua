-- Port of the original's unittest/printer.lua (zhangxiangxiao/tunnel).
-- The Printer writes to stdout, so the port runs the original's script, as
-- it was, in a fresh interpreter (support.run_script, killed after 60 s)
-- and asserts on what it printed. joe, init, printerTest and main are the
-- original's.
-- Changes, and why:
--  * `ffi.C.sleep(n)` -> `tunnel.sleep(n * SCALE)` with SCALE = 0.05: no
--    ffi on Lua 5.x; shorter sleeps.
--  * joe.main's `name:match('[%g]+Test')` -> `'[%w_]+Test'`: `%g` is a
--    Lua 5.2 class; Lua 5.1 reads it as the letter g and runs no test.
--  * `require('tunnel.printer')` as the original; `tunnel.sleep` is the
--    global `tunnel` that the module sets, in every block thread.
--  * Asserts where the original printed, from the original's Printer:
--    every line is whole (printer lines never interleave: each one matches
--    one of the job's formats); print_sync, write_sync and access_sync appear
--    once for each of the 5 threads and 4 iterations; the Async ones at
--    most once each; the unconditional 'access_async ... blocked' lines 20
--    times. As in the original the main chunk ends while the jobs run, and
--    every job still finishes.
local support = dofile('spec/original/support.lua')

local SCRIPT = [==[
--[[
Unittest for Printer
Copyright 2016 Xiang Zhang
--]]

local Printer = require('tunnel.printer')

local Block = require('tunnel.block')

local SCALE = 0.05

-- A Logic Named Joe
local joe = {}

function joe.main()
   if joe.init then
      print('Initializing testing environment')
      joe:init()
   end
   for name, func in pairs(joe) do
      if type(name) == 'string' and type(func) == 'function'
      and name:match('[%w_]+Test') then
         print('\nExecuting '..name)
         func(joe)
      end
   end
end

function joe:init()
   print('Creating a block of 5 threads')
   self.block = Block(5)
   print('Creating the printer')
   self.printer = Printer()
   print('Connecting the block with the printer')
   self.block:add(self.printer)
end

function joe:printerTest()
   local block = self.block
   local printer_job = function(printer)
      for i = 1, 4 do
         printer('print_sync', __threadid, i)
         printer:printAsync('print_async', __threadid, i)
         tunnel.sleep(1 * SCALE)
      end
      for i = 1, 4 do
         printer:write(
            'write_sync', '\t', tostring(__threadid), '\t', tostring(i), '\n')
         printer:writeAsync(
            'write_async', '\t', tostring(__threadid), '\t', tostring(i), '\n')
         tunnel.sleep(1 * SCALE)
      end
      for i = 1, 4 do
         printer:access(
            function ()
               print('access_sync', __threadid, i)
               tunnel.sleep(1 * SCALE)
            end)
         local status = printer:accessAsync(
            function ()
               print('access_async', __threadid, i)
               tunnel.sleep(1 * SCALE)
               return true
            end)
         printer('access_async', __threadid, i, 'blocked')
      end
   end
   block:run(printer_job)
end

joe.main()
return joe
]==]

describe('original unittest/printer.lua', function()
   it('printerTest', function()
      local out, ok = support.run_script(SCRIPT)
      assert.is_true(ok, out)
      local count = {}
      for _, fields in ipairs(support.split(out)) do
         local tag = fields[1]
         local key
         if tag == 'Initializing testing environment' or tag == ''
            or tag == 'Executing printerTest' or tag:find('^Creating')
            or tag == 'Connecting the block with the printer' then
            key = tag
         else
            local t, i = tonumber(fields[2]), tonumber(fields[3])
            assert.is_true(t ~= nil and t >= 1 and t <= 5, out)
            assert.is_true(i ~= nil and i >= 1 and i <= 4, out)
            if tag == 'access_async' and fields[4] == 'blocked' then
               assert.are.equal(4, #fields, out)
               key = 'access_async blocked'
            else
               assert.are.equal(3, #fields, out)
               assert.is_truthy(({print_sync = 1, print_async = 1, write_sync = 1,
                                  write_async = 1, access_sync = 1,
                                  access_async = 1})[tag], out)
               key = tag .. ' ' .. t .. ' ' .. i
               count[key] = (count[key] or 0) + 1
               assert.is_true(count[key] == 1, 'twice: ' .. key)
               key = tag
            end
         end
         count[key] = (count[key] or 0) + 1
      end
      assert.are.equal(20, count.print_sync)
      assert.are.equal(20, count.write_sync)
      assert.are.equal(20, count.access_sync)
      assert.are.equal(20, count['access_async blocked'])
      assert.is_true((count.print_async or 0) <= 20)
      assert.is_true((count.write_async or 0) <= 20)
      assert.is_true((count.access_async or 0) <= 20)
   end)
end)
