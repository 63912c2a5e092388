-- A name no other process or spec file uses: 16 hex digits from
-- /dev/urandom. (os.time and math.random are not enough: files run in the
-- same second, and a spec may seed math.random itself.)
return function()
  local f = assert(io.open('/dev/urandom', 'rb'))
  local bytes = f:read(8)
  f:close()
  return (bytes:gsub('.', function(c) return ('%02x'):format(c:byte()) end))
end
