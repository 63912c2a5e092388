-- printer.lua - tunnel.Printer: lines from many threads that never mix.
local tunnel = require('tunnel')

local printer = tunnel.Printer()
printer:print('print', 'joins its arguments with tabs', 1, true)
printer('calling the printer', 'is the same as print')
printer:write('write is like io.write: ', 42, ' no newline unless asked\n')

-- Three threads print whole lines; a line is never cut by another thread
-- (the order of the threads varies from run to run).
local block = tunnel.Block(3)
block:add(printer)
block:run(function(p)
  p('thread', __threadid, 'says hello')
end)
block:synchronize()

-- access holds the printer for a group of lines: nothing from another
-- thread comes between them.
block:run(function(p)
  p:access(function()
    p('thread ' .. __threadid .. ': first line of a group')
    p('thread ' .. __threadid .. ': second line of the same group')
  end)
end)
block:synchronize()

-- The Async twins return nil when another thread holds the printer.
block:run(function(p)
  if __threadid == 1 then
    p:access(function() tunnel.sleep(0.3) end)
  end
end)
tunnel.sleep(0.1)
print('printAsync while held:', printer:printAsync('not printed'))
block:terminate()
print('printAsync when free:', printer:printAsync('printed'))
