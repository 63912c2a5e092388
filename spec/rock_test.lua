-- `luarocks test` (the rockspec's test section): the specs on the Lua
-- luarocks runs this script with, against the installed rock, with the
-- busted this machine has (Debian's lua-busted, or a rock): the rockspec
-- has no test_dependencies and does not use luarocks' busted test type,
-- which would fetch busted from the network. Arguments go to busted, e.g.
--   luarocks test rockspec/tunnel-scm-1.rockspec -- spec/vector_spec.lua
local args = {[0] = arg[0], [-1] = arg[-1], '--run=rock'}
for i = 1, #arg do args[#args + 1] = arg[i] end
arg = args -- luacheck: ignore 121 (busted's runner reads the global arg)
local ok, runner = pcall(require, 'busted.runner')
if not ok then
  io.stderr:write('rock_test.lua: busted is not installed for ', _VERSION,
                  ' (Debian: apt-get install lua-busted)\n')
  os.exit(1)
end
runner({standalone = false})
