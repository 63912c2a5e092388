-- tunnel: synchronized data structures shared by threads.
-- The classes live in the C module tunnel.core; this file adds what is
-- simpler in Lua.
local core = require('tunnel.core')

local tunnel = {}
for name, value in pairs(core) do
  tunnel[name] = value
end

return tunnel
