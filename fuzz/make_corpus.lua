-- make_corpus.lua - write the fuzzer's seed corpus: one file per value, the
-- codec payload of tunnel.Serializer():save(value) without its header.
--
-- Usage: lua5.4 fuzz/make_corpus.lua DIR   (make fuzz-corpus does this)
--
-- The header is 15 bytes (magic, version, flavour, flags, check), 23 with
-- a token (a value that holds tunnel objects); fuzz/fuzz_decode.c takes
-- raw payloads, see its header for why. Files are named after the value,
-- so a regenerated corpus replaces the same files.
local tunnel = require('tunnel')

local dir = assert(arg[1], 'usage: make_corpus.lua DIR')
local s = tunnel.Serializer()

local function payload(v)
  local str = s:save(v)
  local flags = str:byte(7)
  local head = (flags % 2 == 1) and 23 or 15
  return str:sub(head + 1)
end

local values = {}
local function add(name, v) values[#values + 1] = {name, v} end

add('nil', nil)
add('true', true)
add('false', false)
add('int-0', 0)
add('int-1', 1)
add('int-neg', -12345)
add('int-max', math.maxinteger or 2 ^ 53)
add('int-min', math.mininteger or -2 ^ 53)
add('float', 1.5)
add('float-neg-zero', -0.0)
add('float-inf', math.huge)
add('float-nan', 0 / 0)
add('string-empty', '')
add('string-short', 'hello')
add('string-zeros', 'a\0b\0\255')
add('string-long', string.rep('xyz', 200))
add('table-empty', {})
add('table-array', {1, 2, 3, 'four', 5.5, true})
add('table-holes', {1, nil, 3, nil, nil, 6})
add('table-hash', {a = 1, b = 'two', [3.5] = false, [true] = 'yes'})
add('table-mixed', {10, 20, x = {y = {z = 'deep'}}, [100] = 1})
local cyc = {name = 'cycle'}
cyc.self = cyc
add('table-cycle', cyc)
local shared = {'shared'}
add('table-shared', {shared, shared, k = shared})
local a, b = {}, {}
a.b, b.a = b, a
add('table-mutual', {a, b})
local nest = {}
local t = nest
for _ = 1, 150 do
  t[1] = {}
  t = t[1]
end
add('table-deep', nest)
add('module-string', string)
add('module-table', {string, table, math})
add('cfield-format', string.format)
add('cfield-print', {print, string.rep})
add('globals', _G)
add('function', function(x) return x + 1 end)
local up = 0
add('function-upvalues', {function() up = up + 1 end, function() return up end})
add('object-vector', tunnel.Vector())
add('object-counter', {tunnel.Counter(3), tunnel.Vector(2)})
-- Class instances: fuzz_decode.c registers "P" in its state too.
local P = tunnel.register('P', {__index = {}})
add('class', setmetatable({x = 1, y = {2}}, P))
local inst = setmetatable({}, P)
inst.self = inst
add('class-shared', {inst, inst, setmetatable({inst}, P)})

local n = 0
for _, e in ipairs(values) do
  local f = assert(io.open(dir .. '/' .. e[1], 'wb'))
  f:write(payload(e[2]))
  f:close()
  n = n + 1
end
-- A stream of several values, as a block's run carries them.
local f = assert(io.open(dir .. '/multi', 'wb'))
f:write(payload(1), payload('two'), payload({3}))
f:close()
print(('%d seeds written to %s'):format(n + 1, dir))
