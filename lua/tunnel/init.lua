-- tunnel: synchronized data structures shared by threads.
-- The classes live in the C module tunnel.core; this file adds what is
-- simpler in Lua.
local core = require('tunnel.core')

local tunnel = {}
for name, value in pairs(core) do
  if name:sub(1, 1) ~= '_' then -- _names are test hooks, not the API
    tunnel[name] = value
  end
end

return tunnel
