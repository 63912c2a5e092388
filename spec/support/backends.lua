-- The backends a shared spec body runs on: 'local' (in-process objects)
-- always, 'cluster' (objects on the Redis server of TUNNEL_REDIS_URL) when
-- that is set (scripts/with-redis.sh). Each backend makes fresh objects:
--   b.Vector([hint]), b.Hash(), b.Counter([value]), b.Atomic([data]),
--   b.Printer(), b.PriorityQueue([hint]), b.Array(n [, type])
-- and b.source(class): a Lua expression that makes a fresh object of that
-- class (without arguments) in another process, with `tunnel` in scope.
-- Cluster objects get unique names, so specs never see each other's keys.
--   for _, b in ipairs(dofile('spec/support/backends.lua')) do
--     describe(b.name, function() ... b.Vector() ... end)
--   end
local tunnel = require('tunnel')

local backends = {
  {
    name = 'local',
    Vector = function(hint) return tunnel.Vector(hint) end,
    Hash = function() return tunnel.Hash() end,
    Counter = function(value) return tunnel.Counter(value) end,
    Atomic = function(data) return tunnel.Atomic(data) end,
    Printer = function() return tunnel.Printer() end,
    PriorityQueue = function(hint) return tunnel.PriorityQueue(hint) end,
    Array = function(n, type) return tunnel.Array(n, type) end,
    source = function(class) return 'tunnel.' .. class .. '()' end,
  },
}

local url = os.getenv('TUNNEL_REDIS_URL')
if url and url ~= '' then
  local cluster = tunnel.Cluster(url, {prefix = 'tunnel-spec:', timeout = 5})
  local serial = 0
  local run = dofile('spec/support/unique.lua')()
  local function fresh(what)
    serial = serial + 1
    return what .. '-' .. run .. '-' .. serial
  end
  backends[#backends + 1] = {
    name = 'cluster',
    url = url,
    cluster = cluster,
    fresh = fresh,
    Vector = function(hint) return cluster:Vector(fresh('vector'), hint) end,
    Hash = function() return cluster:Hash(fresh('hash')) end,
    Counter = function(value) return cluster:Counter(fresh('counter'), value or 0) end,
    Atomic = function(data) return cluster:Atomic(fresh('atomic'), data) end,
    Printer = function() return cluster:Printer(fresh('printer')) end,
    Array = function(n, type) return cluster:Array(fresh('array'), n, type) end,
    PriorityQueue = function(hint)
      return cluster:PriorityQueue(fresh('pqueue'), hint)
    end,
    source = function(class)
      return ('tunnel.Cluster(%q, {prefix = %q, timeout = 5}):%s(%q)')
        :format(url, 'tunnel-spec:', class, fresh(class:lower()))
    end,
  }
end

return backends
