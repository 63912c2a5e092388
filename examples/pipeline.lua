-- A three-stage pipeline that shuts down cleanly when a stage fails: each
-- stage closes its vectors on the way out, so the stages around it stop
-- too (a push into a closed vector raises, a pop from a closed, drained one
-- returns nil, false). Stage 2 fails on purpose at item 50.
--   lua examples/pipeline.lua
local tunnel = require('tunnel')

local raw, parsed = tunnel.Vector(8), tunnel.Vector(8)

-- Run body(...) and close every vector it was given, whatever happens.
local function stage(body)
  return function(...)
    local results = {pcall(body, ...)}
    for _, v in ipairs({...}) do v:close() end
    if not results[1] then error(results[2], 0) end
    return (table.unpack or unpack)(results, 2)
  end
end

local reader, parser, writer = tunnel.Block(1), tunnel.Block(2), tunnel.Block(1)
reader:add(raw):run(stage(function(out)
  for i = 1, 1000 do out:pushBack('item ' .. i) end
end))
parser:add(raw, parsed):run(stage(function(input, out)
  while true do
    local line, open = input:popFront()
    if not open then break end
    local n = tonumber(line:match('%d+'))
    if n == 50 then error('cannot parse ' .. line) end
    out:pushBack(n)
  end
end))
writer:add(parsed):run(stage(function(input)
  local count = 0
  while true do
    local _, open = input:popFront()
    if not open then break end
    count = count + 1
  end
  return count
end))

for _, stage_of in ipairs({{'reader', reader}, {'parser', parser},
                          {'writer', writer}}) do
  local name, block = stage_of[1], stage_of[2]
  local result, status = block:synchronize()
  for i, ok in ipairs(status) do
    print(name, i, ok and 'ok' or 'failed', result[i][1])
  end
end
