-- hash.lua - tunnel.Hash: a hash table shared by threads.
local tunnel = require('tunnel')

local h = tunnel.Hash()
h:set('apple', 3)                       -- keys: strings, numbers, booleans;
h:set('basket', {'apple', 'pear'})      -- values: anything that crosses threads
print('tables are copied:', h:get('basket')[2])
h:set('basket', nil)                    -- setting nil deletes the key
h['pear'] = 5                           -- h[k] = v is set(k, v)
h[1] = 'one'
h[true] = 'yes'
print('get:', h:get('apple'))           -- 3  true
print('h.pear:', h.pear)                -- 5
print('absent key:', h:get('plum'))     -- nil true (an absent key is nil)
print('set returns the old value:', h:set('apple', 4))   -- true 3
print('size:', h:size(), #h)            -- 4 4
print(h:toString())                     -- keys in a stable order

-- h[k] = nil deletes too.
h.pear = nil
print('after delete:', #h)              -- 3

-- Keys named like methods: h:get/h:set always mean data, but h.size is
-- the method. Use get for such keys.
h:set('size', 'XL')
print('h.size is', type(h.size), 'h:get("size") is', h:get('size'))

-- read/write callbacks: write stores the callback's result.
print('write:', h:write('apple', function(n) return n + 1 end))  -- true 5
print('read:', h:read('apple', function(n) return n * 100 end))  -- 500

-- Four threads add to the same key through write: no update is lost.
local block = tunnel.Block(4)
block:add(h)
block:run(function(hash)
  for _ = 1, 250 do
    hash:write('visits', function(n) return (n or 0) + 1 end)
  end
end)
block:terminate()
print('visits:', h:get('visits'))       -- 1000

-- Iterate over a snapshot (pairs(h) does the same on Lua 5.2+).
local keys = {}
for k in h:iterator() do keys[#keys + 1] = tostring(k) end
table.sort(keys)
print('keys:', table.concat(keys, ' '))
