-- The producer/consumer problem without a line of synchronization code:
-- 2 producer threads and 3 consumer threads share a Vector with size hint 4
-- and a Printer. This is the original tunnel's example; the only change is
-- the consumer's sleep, which used LuaJIT's ffi and is now tunnel.sleep.
local tunnel = require('tunnel')

-- This function produces 6 items and put it in vector.
local function produce(vector, printer)
   for i = 1, 6 do
      local product = __threadid * 1000 + i
      vector:pushBack(product)
      printer('produce', __threadid, i, product)
   end
end

-- This function takes 4 items from vector and takes 1 second to consume each.
local function consume(vector, printer)
   for i = 1, 4 do
      local product = vector:popFront()
      printer('consume', __threadid, i, product)
      -- Pretend it takes 1 second to consume a product
      tunnel.sleep(1)
   end
end

local function main()
   -- Create a syncronized vector with size hint 4
   local vector = tunnel.Vector(4)
   -- Create an atomically guarded printer
   local printer = tunnel.Printer()

   -- Create a 2 producer threads and 3 consumer threads
   -- In total they produce 12 products, and consume 12 products.
   local producer_block = tunnel.Block(2)
   local consumer_block = tunnel.Block(3)

   -- Link vector and printer with both producer and consumer blocks
   producer_block:add(vector, printer)
   consumer_block:add(vector, printer)

   -- Execute the producer and consumer threads
   producer_block:run(produce)
   consumer_block:run(consume)
end

-- Call the main function
return main()
