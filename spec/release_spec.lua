-- Freeing long chains of shared objects (each holding the next by
-- reference) does not overflow the C stack: the release is iterative.
-- Each case runs in a fresh interpreter with a 1 MB C stack (ulimit -s
-- 1024), where the recursive release crashed after some 10^4 links; once
-- freeing the chain while the program runs, once leaving it to the exit.
-- TUNNEL_RELEASE_N sets the links (default 10^5; the maps use a third).

local N = tonumber(os.getenv('TUNNEL_RELEASE_N')) or 100000

-- Run `code` in a fresh interpreter; its output and exit status.
local function run_script(code)
  local lua = dofile('spec/support/lua.lua').command
  local name = os.tmpname()
  local f = assert(io.open(name, 'w'))
  f:write(code)
  f:close()
  local p = assert(io.popen('ulimit -s 1024; ' .. lua .. ' ' .. name ..
                            ' 2>&1; echo "exit=$?"'))
  local out = p:read('*a')
  p:close()
  os.remove(name)
  return out
end

-- The chain builders: each leaves the head in `head`.
local builders = {
  -- A linked list in a shared table, the natural way to get a chain.
  shared_list = [[
    local s = tunnel.Share({})
    local node = s.data
    for i = 1, N do node.next = {i = i}; node = node.next end
    node = nil
    head = s
  ]],
  vectors = [[
    local v = tunnel.Vector()
    for i = 1, N do local w = tunnel.Vector(); w:pushBack(v); v = w end
    head = v
  ]],
  hashes = [[
    local h = tunnel.Hash()
    for i = 1, math.floor(N / 3) do
      local g = tunnel.Hash(); g:set('next', h); h = g
    end
    head = h
  ]],
  atomics = [[
    local a = tunnel.Atomic(1)
    for i = 1, N do a = tunnel.Atomic(a) end
    head = a
  ]],
}

local function script(kind, at_exit)
  return 'local tunnel = require("tunnel")\nlocal N = ' .. N .. '\n' ..
    builders[kind] .. '\nprint("built")\n' ..
    (at_exit and 'print("exiting")\n' or
     'head = nil; collectgarbage(); collectgarbage()\nprint("freed")\n')
end

describe('releasing a long chain of shared objects', function()
  for _, kind in ipairs({'shared_list', 'vectors', 'hashes', 'atomics'}) do
    it('frees ' .. kind .. ' while the program runs', function()
      local out = run_script(script(kind, false))
      assert.is_truthy(out:find('built\nfreed\nexit=0', 1, true), out)
    end)

    it('frees ' .. kind .. ' at process exit', function()
      local out = run_script(script(kind, true))
      assert.is_truthy(out:find('built\nexiting\nexit=0', 1, true), out)
    end)
  end
end)
