-- Printing contents is bounded (issue 11: 2): a Vector prints the Vectors
-- it holds through their own __tostring, so a cycle prints as
-- "<cycle: tunnel.Vector: 0x...>" and nesting deeper than 16 as "...".
-- Hash prints the shared objects it holds by name only.
local tunnel = require('tunnel')

local function error_of(f, ...)
  local ok, err = pcall(f, ...)
  if ok then return nil end
  return tostring(err)
end

describe('tostring of a Vector', function()
  it('marks a vector that holds itself as a cycle', function()
    local v = tunnel.Vector()
    v:pushBack(1)
    v:pushBack(v)
    assert.matches('^tunnel%.Vector{1, <cycle: tunnel%.Vector: 0?x?%x+>}$',
                   tostring(v))
    assert.are.equal(tostring(v), v:toString())
    assert.are.equal(tostring(v), v:toStringAsync())
  end)

  it('marks a longer cycle where it closes', function()
    local a, b = tunnel.Vector(), tunnel.Vector()
    a:pushBack(b)
    b:pushBack(a)
    assert.matches('^tunnel%.Vector{tunnel%.Vector{<cycle: tunnel%.Vector: '
                   .. '0?x?%x+>}}$', tostring(a))
  end)

  it('prints the same vector twice side by side (not a cycle)', function()
    local inner = tunnel.Vector()
    inner:pushBack('x')
    local v = tunnel.Vector()
    v:pushBack(inner)
    v:pushBack(inner)
    assert.are.equal('tunnel.Vector{tunnel.Vector{"x"}, tunnel.Vector{"x"}}',
                     tostring(v))
  end)

  it('stops a chain of 1000 at depth 16 with ...', function()
    local head = tunnel.Vector()
    local cur = head
    for _ = 1, 1000 do
      local n = tunnel.Vector()
      cur:pushBack(n)
      cur = n
    end
    local s = tostring(head)
    local _, opens = s:gsub('tunnel%.Vector{', '')
    assert.are.equal(16, opens)
    assert.matches('{%.%.%.}+$', s)
  end)

  it('clears its marks when printing raises', function()
    local MOD = 'tostring_spec_ghost'
    local m = {}
    package.loaded[MOD] = m
    local v = tunnel.Vector()
    v:pushBack(m)
    package.loaded[MOD] = nil
    assert.matches('^tunnel%.Vector:toString: cannot receive value: module',
                   error_of(v.toString, v))
    package.loaded[MOD] = m
    assert.matches('^tunnel%.Vector{table: ', tostring(v))
    package.loaded[MOD] = nil
  end)
end)

describe('tostring of a Hash', function()
  it('names the shared objects it holds, itself too', function()
    local h = tunnel.Hash()
    h:set('self', h)
    assert.matches('^tunnel%.Hash{self = tunnel%.Hash: 0?x?%x+}$', tostring(h))
  end)
end)
