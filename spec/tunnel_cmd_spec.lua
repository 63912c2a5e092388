-- The `tunnel` command's conventions (src/redis/tunnel_cmd.c): --help on
-- stdout with status 0, --version, a help page per command, usage errors on
-- stderr with status 2, the library's URL parser. No server needed (what
-- `tunnel logs` prints is in cluster_spec and cluster_admin_spec). Needs
-- TUNNEL_BIN (make spec sets it).
local tunnel = require('tunnel')

local bin = os.getenv('TUNNEL_BIN')
local describe_cmd = (bin and bin ~= '') and describe or pending

-- Run the command with `args` (a shell string): status, stdout, stderr.
local function run(args)
  local out, err = os.tmpname(), os.tmpname()
  local h = assert(io.popen(('timeout 10 %s %s >%s 2>%s; echo $?')
    :format(bin, args, out, err)))
  local status = tonumber(h:read('*a'))
  h:close()
  local function slurp(name)
    local f = assert(io.open(name))
    local s = f:read('*a')
    f:close()
    os.remove(name)
    return s
  end
  return status, slurp(out), slurp(err)
end

describe_cmd('the tunnel command', function()
  it('prints its help on stdout and exits 0 with --help, -h and help', function()
    for _, args in ipairs({'--help', '-h', 'help'}) do
      local status, out, err = run(args)
      assert.are.equal(0, status, args)
      assert.are.equal('', err, args)
      assert.is_truthy(out:match('^usage: tunnel %[%-%-help%] %[%-%-version%] COMMAND'), out)
      assert.is_truthy(out:match('\n  logs URL NAME'), out)
      assert.is_truthy(out:match('unix://'), out)
    end
  end)

  it('prints the version the Lua module reports with --version and -V', function()
    for _, args in ipairs({'--version', '-V'}) do
      local status, out, err = run(args)
      assert.are.equal(0, status, err)
      assert.are.equal('tunnel ' .. tunnel.version .. '\n', out)
    end
  end)

  it('has a help page for each command, the same by either way of asking', function()
    local status, out = run('logs --help')
    assert.are.equal(0, status)
    assert.is_truthy(out:match('^usage: tunnel logs '), out)
    assert.is_truthy(out:match('%-%-from%-start'), out)
    assert.is_truthy(out:match('%-%-prefix PREFIX'), out)
    local status2, out2 = run('help logs')
    assert.are.equal(0, status2)
    assert.are.equal(out, out2)
    -- --help wins over missing arguments, wherever it is.
    local status3, out3 = run('logs redis://x --help')
    assert.are.equal(0, status3)
    assert.are.equal(out, out3)
  end)

  it('reports usage errors on stderr with status 2 and a hint', function()
    local cases = {
      {'', 'missing COMMAND', "Try 'tunnel %-%-help'"},
      {'frobnicate', "unknown command 'frobnicate'", "Try 'tunnel %-%-help'"},
      {'help frobnicate', "unknown command 'frobnicate'", "Try 'tunnel %-%-help'"},
      {'--bogus', "unrecognized option '%-%-bogus'", "Try 'tunnel %-%-help'"},
      {'logs', 'missing URL and NAME', "Try 'tunnel logs %-%-help'"},
      {'logs redis://x', 'missing NAME', "Try 'tunnel logs %-%-help'"},
      {'logs a b c', "unexpected argument 'c'", "Try 'tunnel logs %-%-help'"},
      {'logs --bogus a b', "unrecognized option '%-%-bogus'", "Try 'tunnel logs %-%-help'"},
      {'logs --prefix', "requires an argument", "Try 'tunnel logs %-%-help'"},
    }
    for _, case in ipairs(cases) do
      local status, out, err = run(case[1])
      assert.are.equal(2, status, case[1])
      assert.are.equal('', out, case[1])
      assert.is_truthy(err:match(case[2]), case[1] .. ': ' .. err)
      assert.is_truthy(err:match(case[3]), case[1] .. ': ' .. err)
    end
  end)

  it('reads URLs with the library parser: its messages, never the password', function()
    local status, _, err = run("logs 'http://x' n")
    assert.are.equal(2, status)
    assert.are.equal('tunnel logs: http://x: the URL must start with redis:// or unix://\n', err)
    status, _, err = run("logs 'unix://:hunter2@/r.sock?db=x' n")
    assert.are.equal(2, status)
    assert.is_truthy(err:match('not a unix://'), err)
    assert.is_nil(err:find('hunter2', 1, true), err)
    -- A server that is not there: a failure (1), named as tunnel.Cluster names it.
    status, _, err = run("logs 'redis://:hunter2@127.0.0.1:1/0' n")
    assert.are.equal(1, status)
    assert.are.equal('tunnel logs: redis 127.0.0.1:1: PING: Connection refused\n', err)
    status, _, err = run("logs 'unix:///nonexistent/redis.sock' n")
    assert.are.equal(1, status)
    assert.are.equal('tunnel logs: redis /nonexistent/redis.sock: PING: No such file or directory\n', err)
  end)
end)
