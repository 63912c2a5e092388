-- The producer/consumer problem of examples/producer_consumer.lua (the
-- original tunnel's example) with both blocks on worker processes, on any
-- machines: the same code, with the Vector, the Printer and the two Blocks
-- made by a tunnel.Cluster. The workers print; `tunnel logs` shows what
-- every one of them printed, in one place.
--
--   tunnel worker redis://host:6379/0 --threads 5      (on one machine or
--                                                      several: 5 slots)
--   tunnel logs redis://host:6379/0 distributed:printer   (to watch)
--   lua examples/distributed.lua redis://host:6379/0 [prefix]
--
-- Without a URL it prints this usage and exits (make examples runs every
-- example without a server); spec/workers_spec.lua runs it on workers.
local tunnel = require('tunnel')

local url, prefix = arg[1], arg[2] or 'tunnel:'
if not url then
  print('usage: lua examples/distributed.lua URL [PREFIX]  (start `tunnel worker URL --threads 5` first)')
  return
end
local cluster = tunnel.Cluster(url, {prefix = prefix})
-- A second run starts clean (the first one closed nothing, but the names
-- must not hold a previous run's products).
cluster:delete('distributed:vector')

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
   -- Create a syncronized vector with size hint 4, on the server
   local vector = cluster:Vector('distributed:vector', 4)
   -- Create an atomically guarded printer, whose lines `tunnel logs` shows
   local printer = cluster:Printer('distributed:printer')

   -- Create 2 producer slots and 3 consumer slots, served by workers
   -- In total they produce 12 products, and consume 12 products.
   local producer_block = cluster:Block('distributed:producers', 2)
   local consumer_block = cluster:Block('distributed:consumers', 3)

   -- Link vector and printer with both producer and consumer blocks
   producer_block:add(vector, printer)
   consumer_block:add(vector, printer)

   -- Execute the producer and consumer jobs
   producer_block:run(produce)
   consumer_block:run(consume)
end

-- Call the main function (its blocks finish their jobs when collected)
return main()
