-- The documentation points at things that exist (issue 16): the README
-- lists every page of docs/, relative links and the repository paths the
-- pages name are there, and c-api.md's error table has every code of
-- tunnel.h.
local function read(name)
  local f = assert(io.open(name))
  local text = f:read('*a')
  f:close()
  return text
end

local function exists(name)
  local f = io.open(name)
  if f then f:close() end
  return f ~= nil
end

local function ls(dir, pattern)
  local p = assert(io.popen('ls ' .. dir))
  local names = {}
  for name in p:read('*a'):gmatch('[^\n]+') do
    if name:match(pattern) then names[#names + 1] = name end
  end
  p:close()
  return names
end

local PAGES = {'README.md', 'CHANGELOG.md'}
for _, name in ipairs(ls('docs', '%.md$')) do PAGES[#PAGES + 1] = 'docs/' .. name end

-- The folders of the repository a page may name a file in.
local TOPS = {'spec', 'test', 'src', 'scripts', 'examples', 'docs', 'include',
              'mk', 'bench', 'fuzz', 'lua', 'rockspec', 'debian'}

-- Files a page may name that a command writes (make bench).
local GENERATED = {['bench/results.json'] = true}

describe('the documentation', function()
  it('README lists every page of docs/', function()
    local readme = read('README.md')
    for _, name in ipairs(ls('docs', '%.md$')) do
      assert.truthy(readme:find('(docs/' .. name .. ')', 1, true),
                    'README.md does not link docs/' .. name)
    end
  end)

  it('has relative links that lead to files', function()
    for _, page in ipairs(PAGES) do
      local dir = page:match('^(.*)/') or '.'
      for target in read(page):gmatch('%]%(([^)]+)%)') do
        if not target:match('^%a+:') and not target:match('^#') then
          local file = dir .. '/' .. target:gsub('#.*$', '')
          assert.is_true(exists(file), page .. ' links to ' .. target .. ', which does not exist')
        end
      end
    end
  end)

  it('names only files of the repository that exist', function()
    for _, page in ipairs(PAGES) do
      local text = read(page)
      for _, top in ipairs(TOPS) do
        for path, after in text:gmatch('%f[%w_./-](' .. top .. '/[%w_./-]*[%w_])(.?.?)') do
          -- a folder (`spec/original/`), a file; not a pattern of them
          -- (`tunnel-<version>-1.rockspec`, `spec/*_spec.lua`,
          -- `bench/array_bench.*`)
          if not after:find('^[-*<]') and not after:find('^%.%*') and not GENERATED[path] then
            assert.is_true(exists(path), page .. ' names ' .. path .. ', which does not exist')
          end
        end
      end
    end
  end)

  it('c-api.md lists every error code of tunnel.h', function()
    local header, page = read('include/tunnel.h'), read('docs/c-api.md')
    local n = 0
    for code in header:gmatch('\n%s*(TN_E%u+)%s*=') do
      n = n + 1
      assert.truthy(page:find('| `' .. code .. '` |', 1, true),
                    'docs/c-api.md has no row for ' .. code)
    end
    assert.is_true(n >= 16)
  end)

  it('c-api.md names every tn_cluster_ function of tunnel.h', function()
    local header, page = read('include/tunnel.h'), read('docs/c-api.md')
    for name in header:gmatch('%f[%w_](tn_cluster_[%w_]+)%s*%(') do
      assert.truthy(page:find('`' .. name, 1, true), 'docs/c-api.md does not name ' .. name)
    end
  end)
end)
