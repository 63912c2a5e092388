-- serializer.lua - tunnel.Serializer: values to binary strings and back.
local tunnel = require('tunnel')

local s = tunnel.Serializer()

-- Plain data: tables (cycles and shared sub-tables kept), strings, numbers.
local point = {x = 1, y = 2}
local value = {name = 'route', points = {point, point}, closed = true}
value.self = value
local bytes = s:save(value)
print('saved', type(bytes))
local copy = s:load(bytes)
print(copy.name, copy.closed, copy.points[2].y, copy.self == copy,
      copy.points[1] == copy.points[2])   -- route true 2 true true
-- A string with plain data loads again and again, in any process of the
-- same Lua flavour.
print('again:', s:load(bytes).name)

-- Functions travel with their upvalues, but load only in this process.
local base = 10
local add = s:load(s:save(function(x) return x + base end))
print('function:', add(5))                -- 15

-- Tunnel objects inside a value are references: load hands them over
-- once; retain leaves the string loadable again.
local q = tunnel.Vector()
local with_object = s:save({queue = q})
print('retain:', s:retain(with_object).queue == q)
print('load:', s:load(with_object).queue == q)
print('load again:', pcall(s.load, s, with_object))

-- Bytes that save did not write raise an error; nothing crashes.
print(pcall(s.load, s, 'not tunnel bytes'))
print(pcall(s.load, s, bytes:sub(1, #bytes - 1)))
