-- The C side of an install (issue 16): what the built libraries export,
-- libtunnel.so's soname, tunnel.pc, a C program built with pkg-config
-- against the installed library, and `make uninstall`.
local tunnel = require('tunnel')
local LUA = dofile('spec/support/lua.lua')

-- The tools run without the sanitizer runtime a sanitized run preloads:
-- under it cc and nm report their own leaks and fail.
local function sh(cmd)
  local p = assert(io.popen('unset LD_PRELOAD; ' .. cmd .. ' 2>&1'))
  local out = p:read('*a')
  local ok = p:close()
  return out, ok
end

local function lines(text)
  local t = {}
  for line in text:gmatch('[^\n]+') do t[#t + 1] = line end
  return t
end

-- The build directory (make spec sets TUNNEL_BIN to its `tunnel`), and the
-- flavour as the Makefile names it.
local bin = os.getenv('TUNNEL_BIN')
local build = bin and bin:match('^(.*)/tunnel$')
local flavour = LUA.interpreter:find('luajit') and 'luajit' or
                LUA.interpreter:match('lua5%.%d') or 'lua' .. LUA.version
local instrumented = dofile('spec/support/instrumented.lua')

local function needs_build()
  if not build then
    pending('TUNNEL_BIN (the build directory) not set: run through make spec')
    return false
  end
  if not sh('command -v nm'):find('nm') then
    pending('nm (binutils) is not installed')
    return false
  end
  return true
end

-- The names a shared object defines in its dynamic symbol table.
local function exported(file)
  local out, ok = sh('nm -D --defined-only ' .. file)
  assert.truthy(ok, out)
  local names = {}
  for _, line in ipairs(lines(out)) do
    local name = line:match('%s(%S+)$')
    if name then names[#names + 1] = name end
  end
  table.sort(names)
  return names
end

-- The functions include/tunnel.h declares (comments stripped by cc -E).
local function declared()
  local out, ok = sh('cc -E -P -Iinclude include/tunnel.h')
  assert.truthy(ok, out)
  local set = {}
  for name in out:gmatch('%f[%w_](tn_[%w_]+)%s*%(') do set[name] = true end
  return set
end

describe('the built libraries', function()
  it('tunnel/core.so exports luaopen_tunnel_core, nothing else', function()
    if not needs_build() then return end
    local names = exported(('%s/%s/tunnel/core.so'):format(build, flavour))
    assert.are.same({'luaopen_tunnel_core'}, names)
  end)

  it('libtunnel.so exports exactly the functions tunnel.h declares', function()
    if not needs_build() then return end
    local api = declared()
    local names = exported(('%s/libtunnel.so.%s'):format(build, tunnel.version))
    local extra, missing, seen = {}, {}, {}
    for _, name in ipairs(names) do
      seen[name] = true
      if not api[name] then extra[#extra + 1] = name end
    end
    for name in pairs(api) do
      if not seen[name] then missing[#missing + 1] = name end
    end
    table.sort(missing)
    assert.are.same({}, extra, 'exported but not in tunnel.h')
    assert.are.same({}, missing, 'declared in tunnel.h but not in the library')
    assert.is_nil(api.tn_fault_alloc) -- a test hook (src/core/testing.h)
  end)

  it('libtunnel.so has the soname libtunnel.so.<ABI> and its links', function()
    if not needs_build() then return end
    local out = sh(('readelf -d %s/libtunnel.so.%s'):format(build, tunnel.version))
    assert.matches('Library soname: %[libtunnel%.so%.%d+%]', out)
    local soname = out:match('Library soname: %[(libtunnel%.so%.%d+)%]')
    assert.are.equal('libtunnel.so.' .. tunnel.version,
                     (sh(('readlink %s/%s'):format(build, soname)):gsub('\n$', '')))
    assert.are.equal(soname, (sh(('readlink %s/libtunnel.so'):format(build)):gsub('\n$', '')))
  end)
end)

describe('make install', function()
  it('installs a library a C program builds against with pkg-config, and uninstall removes it', function()
    if not needs_build() then return end
    if instrumented then
      pending('under a sanitizer or valgrind: the library needs its runtime')
      return
    end
    if not sh('command -v pkg-config'):find('pkg%-config') then
      pending('pkg-config is not installed')
      return
    end
    local prefix = os.tmpname()
    os.remove(prefix)
    finally(function() sh('rm -rf ' .. prefix) end)
    -- The install rule alone: -o keeps make from rebuilding what it
    -- installs (the specs' own make may have used other flags).
    local make = ('env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL -u LD_PRELOAD make -s B=%s LUA=%s'
      .. ' -o %s/libtunnel.a -o %s/libtunnel.so.%s -o %s/%s/tunnel/core.so -o %s/tunnel'
      .. ' PREFIX=%s'):format(build, flavour, build, build, tunnel.version, build, flavour,
                              build, prefix)
      -- nor the flags stamp (rewritten for this make's flags, it would
      -- have the next `make spec` rebuild everything)
      .. ' -o ' .. build .. '/.flags'
    local out, ok = sh(make .. ' install')
    assert.truthy(ok, out)
    local pc = assert(io.open(prefix .. '/lib/pkgconfig/tunnel.pc')):read('*a')
    assert.matches('\nVersion: ' .. tunnel.version:gsub('%.', '%%.') .. '\n', pc)
    assert.matches('\nRequires%.private:[^\n]* hiredis[ \n]', pc) -- and what else it links
    assert.matches('\nLibs: %-L%${libdir} %-ltunnel\n', pc)
    -- The C example, against the installed shared library.
    local env = ('PKG_CONFIG_PATH=%s/lib/pkgconfig'):format(prefix)
    local exe = prefix .. '/producer_consumer'
    out, ok = sh(('cc $(%s pkg-config --cflags tunnel) -o %s examples/producer_consumer.c'
      .. ' $(%s pkg-config --libs tunnel)'):format(env, exe, env))
    assert.truthy(ok, out)
    out = sh(('LD_LIBRARY_PATH=%s/lib ldd %s'):format(prefix, exe))
    assert.matches('libtunnel%.so%.%d+ => ' .. prefix:gsub('%p', '%%%0') .. '/lib/', out)
    out, ok = sh(('LD_LIBRARY_PATH=%s/lib %s'):format(prefix, exe))
    assert.truthy(ok, out)
    assert.matches('consume', out)
    os.remove(exe)
    -- uninstall leaves no file behind
    out, ok = sh(make .. ' uninstall')
    assert.truthy(ok, out)
    assert.are.equal('', (sh(('find %s -type f -o -type l'):format(prefix))))
  end)
end)
