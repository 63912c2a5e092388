-- The version is written in one place, TN_VERSION in include/tunnel.h;
-- everything else follows it (issue 16): tunnel.version, tunnel._VERSION,
-- the release rockspec (`make rockspec`), debian/changelog, CHANGELOG.md.
local tunnel = require('tunnel')

local function read(name)
  local f = assert(io.open(name))
  local text = f:read('*a')
  f:close()
  return text
end

-- A rockspec's fields, as luarocks reads them.
local function rockspec(name)
  local text = read(name)
  local spec = {}
  local chunk
  if setfenv then
    chunk = assert(loadstring(text, name))
    setfenv(chunk, spec)
  else
    chunk = assert(load(text, name, 't', spec))
  end
  chunk()
  return spec
end

local VERSION = read('include/tunnel.h'):match('\n#define TN_VERSION "([^"]+)"')

describe('the version', function()
  it('is TN_VERSION in tunnel.h, a semantic version', function()
    assert.matches('^%d+%.%d+%.%d+$', VERSION)
  end)

  it('is tunnel.version, and tunnel._VERSION names it as Lua names its own', function()
    assert.are.equal(VERSION, tunnel.version)
    assert.are.equal('tunnel ' .. VERSION, tunnel._VERSION)
  end)

  it('has a release rockspec that is the scm one with the version and its tag', function()
    local name = ('rockspec/tunnel-%s-1.rockspec'):format(VERSION)
    local f = io.open(name)
    assert.is_not_nil(f, name .. ' is missing: make rockspec')
    f:close()
    local release, scm = rockspec(name), rockspec('rockspec/tunnel-scm-1.rockspec')
    assert.are.equal(VERSION .. '-1', release.version)
    assert.are.equal('v' .. VERSION, release.source.tag)
    assert.are.equal('scm-1', scm.version)
    release.version, release.source.tag, scm.version = nil, nil, nil
    assert.are.same(scm, release, name .. ' differs from the scm rockspec: make rockspec')
  end)

  it('is the version of the Debian packages (debian/changelog)', function()
    local top = read('debian/changelog'):match('^tunnel %(([^)]+)%)')
    assert.are.equal(VERSION, top) -- a native package: no Debian revision
  end)

  it('has a CHANGELOG.md section', function()
    local changelog = read('CHANGELOG.md')
    assert.truthy(changelog:find('\n## [' .. VERSION .. ']', 1, true),
                  'CHANGELOG.md has no "## [' .. VERSION .. ']" section')
  end)
end)

describe('the rockspecs', function()
  it('build with the Makefile, so every Lua and C file goes in', function()
    local scm = rockspec('rockspec/tunnel-scm-1.rockspec')
    assert.are.equal('make', scm.build.type)
    assert.are.equal('rock', scm.build.build_target)
    assert.are.equal('install-rock', scm.build.install_target)
    assert.are.equal('MIT', scm.description.license)
    assert.are.same({'lua >= 5.1, < 5.5'}, scm.dependencies)
    assert.is_table(scm.external_dependencies.HIREDIS)
    -- luarocks test runs the specs with the busted installed, offline
    assert.are.same({type = 'command', script = 'spec/rock_test.lua'}, scm.test)
    assert.is_nil(scm.test_dependencies)
  end)
end)
