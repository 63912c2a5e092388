/*
** jobs.c - distributed blocks on Redis: the client (tn_cblock_*), the
** worker (tn_worker_*, tn_wslot_*) and the status (tn_jobs_status) sides
** of one protocol, every step of which is one server-side script.
**
** Keys (P = the cluster's prefix, B = P .. "block:" .. name):
**   P blocks            set: the names of the blocks (workers and status)
**   P blocks:wake       list: wake-up tokens for workers without a slot
**                       (at most 64)
**   P blocks:failures   list: the last 100 lost and refused jobs
**   P workers           sorted set: worker id -> last heartbeat (server ms)
**   P worker:<id>       hash: host, pid, threads, runtime, version, started;
**                       expires 30 s after the last heartbeat
**   P worker:<id>:ctl   list: pokes for its heartbeat thread (a cancel)
**   B:meta              hash: size, keep, ttl (s), lease (ms), term, next
**                       (the last run), gen, epoch, created; the init with
**                       its runtime (rt), key id (k) and signature (initm)
**   B:q:<i>             list: the runs queued on slot i, oldest first
**   B:tok:<i>           list: a wake-up token for slot i's holder
**   B:own:<i>           string: the holder's lease "<worker>:<epoch>", PX
**   B:fly:<i>           hash: the job in flight on slot i (run, tok, wid,
**                       host, pid, at, cancel): NO expiry
**   B:j:<r>             hash: run r's job: p (payload), rt, k, m
**                       (signature), at, n (slots still to give it a
**                       status); deleted when n reaches 0
**   B:r:<r>             hash: run r's statuses, field i per slot, plus _
**                       (made at the run); expires ttl after each status;
**                       the run `keep` runs back is deleted at each run
**   B:done              stream: (r, i, kind) per status, ~1000 kept;
**                       waiting clients block on it (XREAD BLOCK)
**   B:reap              string: the reaper's guard (PX 1000)
**
** The life of a job. `run` queues the run's id on every slot and the job
** once (B:j:r). A worker thread claims a slot with no holder and queued
** jobs (`claim`: a lease with a fencing epoch), then takes its jobs one by
** one (`take`: checks the lease, pops the run, writes the in-flight
** record) and stores each outcome (`finish`: only if the lease and the
** in-flight record are still its own — the fence). Jobs never move by a
** blocking command: workers block on tokens only, so a dead connection
** eats a hint, never a job. The worker's heartbeat thread renews its
** leases every RENEW_S; a worker that dies stops renewing, its lease
** expires, and the in-flight record, which does not expire, is turned into
** a "worker lost" status by whoever runs the reaper next (a waiting
** client, any worker's heartbeat, `tunnel status`, a claim of the slot).
**
** Exactly one status per (run, slot). A status is written only by a
** script that removes what made the job pending at the same time: finish
** and the reaper delete the in-flight record, cancel removes the run from
** the queue; take skips a run that already has a status (a replayed id).
** A take whose reply was lost is answered again with the same job (the
** in-flight record names the same lease), and a finish whose reply was
** lost and is sent again answers "stored" when its exact result is there.
**
** Result values: one byte kind ('T' returned, 'F' raised, 'L' lost, 'C'
** cancelled, 'R' refused), one byte flags (1: signed), then for T and F the
** stored value (redis.h's format) and, if signed, its HMAC; for L, C, R a
** message. Clients check the HMAC of T and F before decoding; L, C and R
** carry text only, which decodes into nothing that runs.
**
** Caveats:
** - Scripts compute the slot keys from B (like the reaper, they visit
**   every slot): one Redis server, not Redis Cluster.
** - A run whose submit reply is lost (a timeout after the script ran) is
**   queued though `run` failed; run ids are never reused, so nothing is
**   confused, but its jobs do run.
** - A block's state lives until deleted by hand (its keys are listed
**   above); results and finished jobs go by themselves.
*/
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "jobs.h"

#define KEEP_DEFAULT 100
#define TTL_DEFAULT 86400.0
#define LEASE_DEFAULT 10.0
#define RENEW_S 0.5      /* heartbeat: renewals, cancels, registration */
#define REAP_S 2.0       /* heartbeat: the reaper over every block */
#define CLAIM_GRACE_MS 2000 /* a job another worker should refuse waits so */
#define WORKER_TTL_MS 30000
#define CLAIM_SLICE 1.0  /* a claimer re-scans at least this often */

#define TN_STR_(x) #x
#define TN_STR(x) TN_STR_(x)

/* ---- scripts ---------------------------------------------------------------- */

/*
** The prelude of every script after RD_PROLOGUE. KEYS[1] = B, KEYS[2] = P.
** Functions raise {tunnel = message} for bad stored state, before the
** script's first write where they are called first; EPILOGUE turns it
** into the TUNNEL-CORRUPT error reply.
*/
#define PRELUDE_HEAD                                                          \
  "local B, P = KEYS[1], KEYS[2]\n"                                           \
  "local function corrupt(what) error({tunnel = 'TUNNEL-CORRUPT ' .. what .. ': nothing was changed'}) end\n" \
  "local function want(key, t)\n"                                             \
  "  local k = redis.call('TYPE', key)['ok']\n"                               \
  "  if k ~= 'none' and k ~= t then corrupt(key .. ' is a ' .. k .. ', not a ' .. t) end\n" \
  "end\n"                                                                     \
  "local function int(x, lo, hi)\n"                                           \
  "  if type(x) ~= 'string' or #x > 18 or not string.match(x, '^%-?%d+$') then return nil end\n" \
  "  local n = tonumber(x)\n"                                                 \
  "  if (lo and n < lo) or (hi and n > hi) then return nil end\n"             \
  "  return n\n"                                                              \
  "end\n"                                                                     \
  "local function sk(i, what) return B .. ':' .. what .. ':' .. i end\n"      \
  "local function meta()\n"                                                   \
  "  want(B .. ':meta', 'hash')\n"                                            \
  "  local f = redis.call('HMGET', B .. ':meta', 'size', 'term', 'next', 'keep', 'ttl', 'lease')\n" \
  "  if not f[1] then return nil end\n"                                       \
  "  local m = {size = int(f[1], 1, 4096), term = f[2] == '1', next = int(f[3] or '0', 0),\n" \
  "             keep = int(f[4], 1), ttl = int(f[5], 1), lease = int(f[6], 1)}\n" \
  "  if not (m.size and m.next and m.keep and m.ttl and m.lease) or (f[2] ~= '0' and f[2] ~= '1') then\n" \
  "    corrupt(B .. ':meta holds fields tunnel did not write') end\n"         \
  "  return m\n"                                                              \
  "end\n"                                                                     \
  "local function stored(r, i) return redis.call('HEXISTS', B .. ':r:' .. r, i) == 1 end\n" \
  "local function failure(r, i, msg)\n"                                       \
  "  local k = P .. 'blocks:failures'\n"                                      \
  "  redis.call('LPUSH', k, now .. '\\t' .. string.sub(B, #P + 7) .. '\\t' .. r .. '\\t' .. i .. '\\t' .. msg)\n" \
  "  redis.call('LTRIM', k, 0, 99)\n"                                         \
  "end\n"                                                                     \
  "local function store(m, r, i, value, kind)\n"                              \
  "  local rk = B .. ':r:' .. r\n"                                            \
  "  redis.call('HSET', rk, i, value)\n"                                      \
  "  redis.call('EXPIRE', rk, m.ttl)\n"                                       \
  "  redis.call('XADD', B .. ':done', 'MAXLEN', '~', 1000, '*', 'r', r, 'i', i, 's', kind)\n" \
  "  local jk = B .. ':j:' .. r\n"                                            \
  "  if redis.call('HINCRBY', jk, 'n', -1) <= 0 then redis.call('DEL', jk) end\n" \
  "end\n"                                                                     \
  "local function wake_claimers(n)\n"                                         \
  "  local k = P .. 'blocks:wake'\n"                                          \
  "  for j = 1, math.min(n, 64) do redis.call('RPUSH', k, '1') end\n"         \
  "  if n > 0 then redis.call('LTRIM', k, -64, -1) end\n"                     \
  "end\n"                                                                     \
  "local function wake_holder(i)\n"                                           \
  "  local k = sk(i, 'tok')\n"                                                \
  "  if redis.call('LLEN', k) == 0 then redis.call('RPUSH', k, '1') end\n"    \
  "end\n"                                                                     \
  /* A job in flight whose lease is gone: its worker was lost. */             \
  "local function reap_slot(m, i)\n"                                          \
  "  local fk = sk(i, 'fly')\n"                                               \
  "  local f = redis.call('HMGET', fk, 'run', 'tok', 'wid', 'host', 'pid')\n" \
  "  if not f[1] or redis.call('GET', sk(i, 'own')) == f[2] then return 0 end\n" \
  "  local r = int(f[1], 1)\n"                                                \
  "  if not r then corrupt(fk .. ' holds a run tunnel did not write') end\n"  \
  "  local beat = redis.call('ZSCORE', P .. 'workers', f[3] or '')\n"         \
  "  local msg = 'worker lost: ' .. (f[3] or '?') .. ' (' .. (f[4] or '?') .. ':' .. (f[5] or '?') .. ') ' ..\n" \
  "    (beat and ('stopped heartbeating ' .. (now - tonumber(beat)) .. ' ms ago') or 'is gone') ..\n" \
  "    ' while it ran run ' .. r .. ' on slot ' .. i\n"                       \
  "  redis.call('DEL', fk)\n"                                                 \
  "  if not stored(r, i) then store(m, r, i, 'L\\0' .. msg, 'L') failure(r, i, msg) end\n" \
  "  return 1\n"                                                              \
  "end\n"                                                                     \
  /* Every slot, at most once a second per block (any party may call it). */  \
  "local function reap_all(m)\n"                                              \
  "  if not redis.call('SET', B .. ':reap', '1', 'NX', 'PX', 1000) then return 0 end\n" \
  "  local n = 0\n"                                                           \
  "  for i = 1, m.size do\n"                                                  \
  "    n = n + reap_slot(m, i)\n"                                             \
  "    if not m.term and redis.call('EXISTS', sk(i, 'own')) == 0 and redis.call('LLEN', sk(i, 'q')) > 0 then\n" \
  "      wake_claimers(1) end\n"                                              \
  "  end\n"                                                                   \
  "  return n\n"                                                              \
  "end\n"

#define PRELUDE PRELUDE_HEAD "local function main()\n"

#define EPILOGUE                                                              \
  "end\n"                                                                     \
  "local ok, res = pcall(main)\n"                                             \
  "if ok then return res end\n"                                               \
  "if type(res) == 'table' and res.tunnel then return redis.error_reply(res.tunnel) end\n" \
  "error(res)\n"

#define SCRIPT(name, body) {name, RD_PROLOGUE PRELUDE body EPILOGUE, "", 0}

/* ARGV: name size rt k init initm keep ttl lease ->
** {0 created | 1 joined, size, keep, ttl, lease, next} or {-1, size}. */
static rd_script_t open_script = SCRIPT(
    "block.open",
    "local size = tonumber(ARGV[2])\n"
    "local m = meta()\n"
    "if m and not m.term then\n"
    "  if m.size ~= size then return {-1, m.size} end\n"
    "  return {1, m.size, m.keep, m.ttl, m.lease, m.next}\n"
    "end\n"
    "want(P .. 'blocks', 'set')\n"
    "for i = 1, math.max(m and m.size or 0, size) do redis.call('DEL', sk(i, 'own')) end\n"
    "redis.call('HSET', B .. ':meta', 'size', size, 'rt', ARGV[3], 'k', ARGV[4], 'init', ARGV[5],\n"
    "  'initm', ARGV[6], 'keep', ARGV[7], 'ttl', ARGV[8], 'lease', ARGV[9], 'term', '0', 'created', now)\n"
    "if not m then redis.call('HSET', B .. ':meta', 'next', '0') end\n"
    "redis.call('HINCRBY', B .. ':meta', 'gen', 1)\n"
    "redis.call('SADD', P .. 'blocks', ARGV[1])\n"
    "return {0, size, tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9]), m and m.next or 0}\n");

/* ARGV: expected run (0: any) rt k payload mac -> {run}, {-1} terminated,
** {-2} gone, {-3, last} another run came first (sign again). */
static rd_script_t submit_script = SCRIPT(
    "block.run",
    "local m = meta()\n"
    "if not m then return {-2} end\n"
    "if m.term then return {-1} end\n"
    "local r = m.next + 1\n"
    "if ARGV[1] ~= '0' and tonumber(ARGV[1]) ~= r then return {-3, m.next} end\n"
    "for i = 1, m.size do want(sk(i, 'q'), 'list') end\n"
    "want(B .. ':j:' .. r, 'hash')\n"
    "redis.call('HSET', B .. ':meta', 'next', r)\n"
    "redis.call('HSET', B .. ':j:' .. r, 'p', ARGV[4], 'rt', ARGV[2], 'k', ARGV[3], 'm', ARGV[5],\n"
    "  'n', m.size, 'at', now)\n"
    "redis.call('HSET', B .. ':r:' .. r, '_', m.size)\n"
    "local free = 0\n"
    "for i = 1, m.size do\n"
    "  redis.call('RPUSH', sk(i, 'q'), r)\n"
    "  if redis.call('EXISTS', sk(i, 'own')) == 1 then wake_holder(i) else free = free + 1 end\n"
    "end\n"
    "wake_claimers(free)\n"
    "if r > m.keep then redis.call('DEL', B .. ':r:' .. (r - m.keep)) end\n"
    "return {r}\n");

/* ARGV: upto, prefetch -> {slots with a job of runs <= upto pending, last
** done id}; with prefetch and nothing pending, then {exists, statuses of
** run upto for slots 1..size} as the results script gives them. */
static rd_script_t sync_script = SCRIPT(
    "block.synchronize",
    "local m = meta()\n"
    "if not m then return {0, '0-0'} end\n"
    "reap_all(m)\n"
    "local upto, pending = tonumber(ARGV[1]), 0\n"
    "for i = 1, m.size do\n"
    "  local head = redis.call('LINDEX', sk(i, 'q'), 0)\n"
    "  local f = redis.call('HGET', sk(i, 'fly'), 'run')\n"
    "  if (head and tonumber(head) <= upto) or (f and tonumber(f) <= upto) then pending = pending + 1 end\n"
    "end\n"
    "local last = redis.call('XREVRANGE', B .. ':done', '+', '-', 'COUNT', 1)\n"
    "local out = {pending, last[1] and last[1][1] or '0-0'}\n"
    /* done: run upto's statuses too, which getResult reads next */
    "if pending == 0 and ARGV[2] == '1' then\n"
    "  local rk = B .. ':r:' .. ARGV[1]\n"
    "  want(rk, 'hash')\n"
    "  out[3] = redis.call('EXISTS', rk)\n"
    "  for i = 1, m.size do out[#out + 1] = redis.call('HGET', rk, i) end\n"
    "end\n"
    "return out\n");

/* ARGV: run first n -> {exists, value of slot first, ...} (nil: none) */
static rd_script_t results_script = SCRIPT(
    "block.getResult",
    "local m = meta()\n"
    "if m then reap_all(m) end\n"
    "local rk = B .. ':r:' .. ARGV[1]\n"
    "want(rk, 'hash')\n"
    "local out = {redis.call('EXISTS', rk)}\n"
    "for i = tonumber(ARGV[2]), tonumber(ARGV[2]) + tonumber(ARGV[3]) - 1 do\n"
    "  out[#out + 1] = redis.call('HGET', rk, i)\n"
    "end\n"
    "return out\n");

/* ARGV: run (0: all) -> jobs reached */
static rd_script_t cancel_script = SCRIPT(
    "block.cancel",
    "local m = meta()\n"
    "if not m then return 0 end\n"
    "local run, n = tonumber(ARGV[1]), 0\n"
    "for i = 1, m.size do want(sk(i, 'q'), 'list') want(sk(i, 'fly'), 'hash') end\n"
    "for i = 1, m.size do\n"
    "  local q = sk(i, 'q')\n"
    "  local kept, dropped = {}, {}\n"
    "  for _, r in ipairs(redis.call('LRANGE', q, 0, -1)) do\n"
    "    if run == 0 or tonumber(r) == run then dropped[#dropped + 1] = r else kept[#kept + 1] = r end\n"
    "  end\n"
    "  if #dropped > 0 then\n"
    "    redis.call('DEL', q)\n"
    "    for j = 1, #kept, 1000 do redis.call('RPUSH', q, unpack(kept, j, math.min(j + 999, #kept))) end\n"
    "    for _, r in ipairs(dropped) do\n"
    "      if not stored(r, i) then store(m, r, i, 'C\\0cancelled', 'C') n = n + 1 end\n"
    "    end\n"
    "  end\n"
    "  local fk = sk(i, 'fly')\n"
    "  local f = redis.call('HMGET', fk, 'run', 'wid', 'cancel')\n"
    "  if f[1] and (run == 0 or tonumber(f[1]) == run) and not f[3] then\n"
    "    redis.call('HSET', fk, 'cancel', '1')\n"
    "    local ctl = P .. 'worker:' .. (f[2] or '?') .. ':ctl'\n"
    "    redis.call('RPUSH', ctl, '1')\n"
    "    redis.call('EXPIRE', ctl, 60)\n"
    "    n = n + 1\n"
    "  end\n"
    "end\n"
    "return n\n");

static rd_script_t terminate_script = SCRIPT(
    "block.terminate",
    "local m = meta()\n"
    "if not m then return 0 end\n"
    "redis.call('HSET', B .. ':meta', 'term', '1')\n"
    "for i = 1, m.size do\n"
    "  if redis.call('EXISTS', sk(i, 'own')) == 1 then wake_holder(i) end\n"
    "end\n"
    "return 1\n");

/* ARGV: wid runtime kid grace_ms -> {i, token, size, lease, ttl, rt, k,
** init, initm} or {0} */
static rd_script_t claim_script = SCRIPT(
    "block.claim",
    "local m = meta()\n"
    "if not m or m.term then return {0} end\n"
    "local pick, late\n"
    /* Whether a live worker (a heartbeat within its registration's life)
    ** that serves this block runs the job's runtime with its key: then the
    ** job waits for one, rather than be refused by this one. */
    "local name, known = string.sub(B, #P + 7), {}\n"
    "local function capable(rt, k)\n"
    "  local key = (rt or '') .. '\\0' .. (k or '')\n"
    "  if known[key] == nil then\n"
    "    known[key] = false\n"
    "    for _, wid in ipairs(redis.call('ZRANGEBYSCORE', P .. 'workers', now - " TN_STR(WORKER_TTL_MS) ", '+inf')) do\n"
    "      local h = redis.call('HMGET', P .. 'worker:' .. wid, 'runtime', 'kid', 'blocks')\n"
    "      if h[1] == rt and (h[2] or '') == (k or '') and (not h[3] or h[3] == '' or\n"
    "         string.find(',' .. h[3] .. ',', ',' .. name .. ',', 1, true)) then known[key] = true break end\n"
    "    end\n"
    "  end\n"
    "  return known[key]\n"
    "end\n"
    "for i = 1, m.size do\n"
    "  reap_slot(m, i)\n"
    "  if redis.call('EXISTS', sk(i, 'own')) == 0 then\n"
    "    local head = redis.call('LINDEX', sk(i, 'q'), 0)\n"
    "    if head then\n"
    "      local j = redis.call('HMGET', B .. ':j:' .. head, 'rt', 'k', 'at')\n"
    "      if j[1] == ARGV[2] and j[2] == ARGV[3] then pick = i break end\n"
    "      if not late and now - (tonumber(j[3]) or 0) >= tonumber(ARGV[4]) and not capable(j[1], j[2]) then\n"
    "        late = i end\n"
    "    end\n"
    "  end\n"
    "end\n"
    "pick = pick or late\n"
    "if not pick then return {0} end\n"
    "local e = redis.call('HINCRBY', B .. ':meta', 'epoch', 1)\n"
    "local tok = ARGV[1] .. ':' .. e\n"
    "redis.call('SET', sk(pick, 'own'), tok, 'PX', m.lease)\n"
    "local x = redis.call('HMGET', B .. ':meta', 'rt', 'k', 'init', 'initm')\n"
    "return {pick, tok, m.size, m.lease, m.ttl, x[1] or '', x[2] or '', x[3] or '', x[4] or ''}\n");

/*
** Slot i's next job for the holder of lease `tok`: {1, run, payload, rt,
** k, mac}, {0} none queued, {-1} not the holder, {-2} terminated and
** drained (the lease is given back). A job already in flight under this
** lease (a take whose reply was lost) is given again.
*/
#define TAKE                                                                  \
  "local function take(m, i, tok, wid, host, pid)\n"                          \
  "  local own = sk(i, 'own')\n"                                              \
  "  if redis.call('GET', own) ~= tok then return {-1} end\n"                 \
  "  local q, fk = sk(i, 'q'), sk(i, 'fly')\n"                                \
  "  want(q, 'list') want(fk, 'hash')\n"                                      \
  "  local f = redis.call('HMGET', fk, 'run', 'tok')\n"                       \
  "  if f[1] then\n"                                                          \
  "    if f[2] ~= tok then reap_slot(m, i)\n"                                 \
  "    else\n"                                                                \
  "      local j = redis.call('HMGET', B .. ':j:' .. f[1], 'p', 'rt', 'k', 'm')\n" \
  "      if j[1] then redis.call('PEXPIRE', own, m.lease) return {1, f[1], j[1], j[2], j[3], j[4]} end\n" \
  "      redis.call('DEL', fk)\n"                                             \
  "      if not stored(f[1], i) then store(m, f[1], i, 'R\\0refused: the job is gone from the server', 'R') end\n" \
  "    end\n"                                                                 \
  "  end\n"                                                                   \
  "  while true do\n"                                                         \
  "    local r = redis.call('LINDEX', q, 0)\n"                                \
  "    if not r then\n"                                                       \
  "      if m.term then redis.call('DEL', own) return {-2} end\n"             \
  "      redis.call('PEXPIRE', own, m.lease)\n"                               \
  "      return {0}\n"                                                        \
  "    end\n"                                                                 \
  "    if not int(r, 1) then corrupt(q .. ' holds a run tunnel did not write') end\n" \
  "    redis.call('LPOP', q)\n"                                               \
  "    if not stored(r, i) then\n"                                            \
  "      local j = redis.call('HMGET', B .. ':j:' .. r, 'p', 'rt', 'k', 'm')\n" \
  "      if j[1] then\n"                                                      \
  "        redis.call('HSET', fk, 'run', r, 'tok', tok, 'wid', wid, 'host', host, 'pid', pid, 'at', now)\n" \
  "        redis.call('PEXPIRE', own, m.lease)\n"                             \
  "        return {1, r, j[1], j[2], j[3], j[4]}\n"                           \
  "      end\n"                                                               \
  "      store(m, r, i, 'R\\0refused: the job is gone from the server', 'R')\n" \
  "    end\n"                                                                 \
  "  end\n"                                                                   \
  "end\n"

#define SCRIPT_TAKE(name, body) \
  {name, RD_PROLOGUE PRELUDE_HEAD TAKE "local function main()\n" body EPILOGUE, "", 0}

/* ARGV: i token wid host pid -> take()'s reply (-1 also: no block). */
static rd_script_t take_script = SCRIPT_TAKE(
    "block.take",
    "local m = meta()\n"
    "if not m then return {-1} end\n"
    "return take(m, ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5])\n");

/* ARGV: i token run value kind [wid host pid] -> {1} stored, {2} stored
** before (a retry), {0} fenced: the lease or the in-flight record is not
** this one's. With wid (a job's outcome, not a refusal), a stored result
** is followed by take()'s reply for the slot's next job: {1, ...}. */
static rd_script_t finish_script = SCRIPT_TAKE(
    "block.finish",
    "local i, tok, r = ARGV[1], ARGV[2], ARGV[3]\n"
    "local m = meta()\n"
    "if not m then return {0} end\n"
    "local fk = sk(i, 'fly')\n"
    "want(fk, 'hash')\n"
    "local f = redis.call('HMGET', fk, 'run', 'tok')\n"
    "if f[1] ~= r or f[2] ~= tok or redis.call('GET', sk(i, 'own')) ~= tok then\n"
    "  if redis.call('HGET', B .. ':r:' .. r, i) == ARGV[4] then return {2} end\n"
    "  return {0}\n"
    "end\n"
    "redis.call('DEL', fk)\n"
    "store(m, r, i, ARGV[4], ARGV[5])\n"
    "if ARGV[5] == 'R' then failure(r, i, string.sub(ARGV[4], 3)) end\n"
    "redis.call('PEXPIRE', sk(i, 'own'), m.lease)\n"
    "if not ARGV[6] then return {1} end\n"
    "local t = take(m, i, tok, ARGV[6], ARGV[7], ARGV[8])\n"
    "table.insert(t, 1, 1)\n"
    "return t\n");

/* ARGV: i token [run] -> 1 given back, 0 not held. `run`: a job taken
** but not started (a finish took it) goes back to the head of the queue. */
static rd_script_t release_script = SCRIPT(
    "block.release",
    "local own = sk(ARGV[1], 'own')\n"
    "if redis.call('GET', own) ~= ARGV[2] then return 0 end\n"
    "if ARGV[3] then\n"
    "  local fk = sk(ARGV[1], 'fly')\n"
    "  local f = redis.call('HMGET', fk, 'run', 'tok')\n"
    "  if f[1] == ARGV[3] and f[2] == ARGV[2] then\n"
    "    want(sk(ARGV[1], 'q'), 'list')\n"
    "    redis.call('DEL', fk)\n"
    "    redis.call('LPUSH', sk(ARGV[1], 'q'), ARGV[3])\n"
    "  end\n"
    "end\n"
    "redis.call('DEL', own)\n"
    "local m = meta()\n"
    "if m and not m.term and redis.call('LLEN', sk(ARGV[1], 'q')) > 0 then wake_claimers(1) end\n"
    "return 1\n");

/* KEYS B P -> jobs reported lost (-1: another party reaped just now) */
static rd_script_t reap_script = SCRIPT(
    "block.reap",
    "local m = meta()\n"
    "if not m then return 0 end\n"
    "if redis.call('EXISTS', B .. ':reap') == 1 then return -1 end\n"
    "return reap_all(m)\n");

/*
** The heartbeat. KEYS[1] ignored (B is set per slot), KEYS[2] = P. ARGV:
** wid host pid threads runtime version started blocks kid, then (B, i,
** token, lease) per held slot -> per slot: -1 the lease is lost, 0 held, r > 0
** held and run r (in flight) is to be cancelled.
*/
static rd_script_t renew_script = SCRIPT(
    "block.renew",
    "local wk = P .. 'worker:' .. ARGV[1]\n"
    "want(wk, 'hash') want(P .. 'workers', 'zset')\n"
    "redis.call('HSET', wk, 'host', ARGV[2], 'pid', ARGV[3], 'threads', ARGV[4], 'runtime', ARGV[5],\n"
    "  'version', ARGV[6], 'started', ARGV[7], 'blocks', ARGV[8], 'kid', ARGV[9], 'beat', now)\n"
    "redis.call('PEXPIRE', wk, " TN_STR(WORKER_TTL_MS) ")\n"
    "redis.call('ZADD', P .. 'workers', now, ARGV[1])\n"
    "local out = {}\n"
    "for k = 10, #ARGV, 4 do\n"
    "  B = ARGV[k]\n"
    "  local i, tok = ARGV[k + 1], ARGV[k + 2]\n"
    "  if redis.call('GET', sk(i, 'own')) == tok then\n"
    "    redis.call('PEXPIRE', sk(i, 'own'), ARGV[k + 3])\n"
    "    local f = redis.call('HMGET', sk(i, 'fly'), 'run', 'tok', 'cancel')\n"
    "    out[#out + 1] = (f[2] == tok and f[3]) and tonumber(f[1]) or 0\n"
    "  else out[#out + 1] = -1 end\n"
    "end\n"
    "return out\n");

/* KEYS[2] = P. ARGV: wid why, then (B, i, token) per slot whose job is
** given up -> jobs reported lost; the worker is unregistered. */
static rd_script_t abandon_script = SCRIPT(
    "block.abandon",
    "local n = 0\n"
    "for k = 3, #ARGV, 3 do\n"
    "  B = ARGV[k]\n"
    "  local i, tok = ARGV[k + 1], ARGV[k + 2]\n"
    "  local m = meta()\n"
    "  if m and redis.call('GET', sk(i, 'own')) == tok then\n"
    "    redis.call('DEL', sk(i, 'own'))\n"
    "    local f = redis.call('HMGET', sk(i, 'fly'), 'run', 'tok', 'host', 'pid')\n"
    "    if f[1] and f[2] == tok then\n"
    "      redis.call('DEL', sk(i, 'fly'))\n"
    "      local msg = 'worker lost: ' .. ARGV[1] .. ' (' .. (f[3] or '?') .. ':' .. (f[4] or '?') ..\n"
    "        ') ' .. ARGV[2] .. ' while it ran run ' .. f[1] .. ' on slot ' .. i\n"
    "      if not stored(f[1], i) then store(m, f[1], i, 'L\\0' .. msg, 'L') failure(f[1], i, msg) n = n + 1 end\n"
    "    end\n"
    "    if not m.term and redis.call('LLEN', sk(i, 'q')) > 0 then wake_claimers(1) end\n"
    "  end\n"
    "end\n"
    "redis.call('DEL', P .. 'worker:' .. ARGV[1])\n"
    "redis.call('ZREM', P .. 'workers', ARGV[1])\n"
    "return n\n");

/* KEYS[2] = P -> {workers, blocks, failures}: see tn_jobs_status. */
static rd_script_t status_script = SCRIPT(
    "block.status",
    "local ws, bs = {}, {}\n"
    "local list = redis.call('ZRANGE', P .. 'workers', 0, -1, 'WITHSCORES')\n"
    "for k = 1, #list, 2 do\n"
    "  local wid, beat = list[k], tonumber(list[k + 1])\n"
    "  local h = redis.call('HMGET', P .. 'worker:' .. wid, 'host', 'pid', 'threads', 'runtime', 'version')\n"
    "  if not h[1] and now - beat > 3600000 then redis.call('ZREM', P .. 'workers', wid)\n"
    "  else ws[#ws + 1] = {wid, h[1] or '', h[2] or '0', h[3] or '0', h[4] or '', h[5] or '',\n"
    "                      now - beat, h[1] and 1 or 0} end\n"
    "end\n"
    "for _, name in ipairs(redis.call('SMEMBERS', P .. 'blocks')) do\n"
    "  B = P .. 'block:' .. name\n"
    "  local ok, m = pcall(meta)\n"
    "  if ok and not m then redis.call('SREM', P .. 'blocks', name)\n"
    "  elseif ok then\n"
    "    reap_all(m)\n"
    "    local slots = {}\n"
    "    for i = 1, m.size do\n"
    "      local f = redis.call('HMGET', sk(i, 'fly'), 'run', 'at')\n"
    "      slots[i] = {redis.call('LLEN', sk(i, 'q')), tonumber(f[1] or '0') or 0,\n"
    "                  f[2] and (now - (tonumber(f[2]) or now)) or 0, redis.call('GET', sk(i, 'own')) or ''}\n"
    "    end\n"
    "    bs[#bs + 1] = {name, m.size, m.term and 1 or 0, m.next, slots}\n"
    "  end\n"
    "end\n"
    "return {ws, bs, redis.call('LRANGE', P .. 'blocks:failures', 0, 19), now}\n");

/* ---- helpers ---------------------------------------------------------------- */

static char *dup_n(const char *s, size_t n) {
  char *p = malloc(n + 1);
  if (p == NULL) return NULL;
  if (n > 0) memcpy(p, s, n);
  p[n] = '\0';
  return p;
}

static char *dup_s(const char *s) { return dup_n(s, strlen(s)); }

/* Element k of an array reply as an integer (an integer or a decimal
** string). */
static bool rep_int(const redisReply *r, size_t k, long long *v) {
  if (r == NULL || r->type != REDIS_REPLY_ARRAY || k >= r->elements)
    return false;
  const redisReply *e = r->element[k];
  if (e->type == REDIS_REPLY_INTEGER) {
    *v = e->integer;
    return true;
  }
  if (e->type != REDIS_REPLY_STRING || e->len == 0 || e->len > 20)
    return false;
  char *end;
  long long x = strtoll(e->str, &end, 10);
  if (end != e->str + e->len) return false;
  *v = x;
  return true;
}

/* Element k of an array reply if it is a string (a bulk string), else
** NULL. */
static const redisReply *rep_str(const redisReply *r, size_t k) {
  if (r == NULL || r->type != REDIS_REPLY_ARRAY || k >= r->elements)
    return NULL;
  const redisReply *e = r->element[k];
  return e->type == REDIS_REPLY_STRING ? e : NULL;
}

/* A script of a block: KEYS are B and the prefix. */
static int block_eval(tn_cluster_t *c, const char *key, rd_script_t *s,
                      redisReply **r, int nargs, const char **args,
                      const size_t *lens) {
  const char *keys[] = {key, c->prefix};
  return rd_eval(c, s, INFINITY, r, 2, keys, nargs, args, lens);
}

static int bad_reply(tn_cluster_t *c, rd_script_t *s, const char *key,
                     redisReply *r) {
  char what[600];
  snprintf(what, sizeof what, "%s %.500s", s->name, key);
  int rc = rd_bad_reply(c, what, r);
  if (r != NULL) freeReplyObject(r);
  return rc;
}

/* P .. "block:" .. name */
static char *block_key(tn_cluster_t *c, const char *name) {
  size_t n = strlen(c->prefix) + 6 + strlen(name) + 1;
  char *k = malloc(n);
  if (k != NULL) snprintf(k, n, "%sblock:%s", c->prefix, name);
  return k;
}

/* A decimal string of `v` in `buf`. */
static const char *num(char *buf, size_t size, unsigned long long v) {
  snprintf(buf, size, "%llu", v);
  return buf;
}

/* The job's signed message: block key, run, runtime, payload. */
static void job_pieces(rd_piece_t p[4], const char *key, const char *run,
                       const char *rt, size_t rtlen, const void *payload,
                       size_t plen) {
  p[0] = (rd_piece_t){key, strlen(key)};
  p[1] = (rd_piece_t){run, strlen(run)};
  p[2] = (rd_piece_t){rt, rtlen};
  p[3] = (rd_piece_t){payload, plen};
}

/* A result's signed message: block key, run, slot, kind, value. */
static void result_pieces(rd_piece_t p[5], const char *key, const char *run,
                          const char *slot, const char *kind,
                          const void *value, size_t vlen) {
  p[0] = (rd_piece_t){key, strlen(key)};
  p[1] = (rd_piece_t){run, strlen(run)};
  p[2] = (rd_piece_t){slot, strlen(slot)};
  p[3] = (rd_piece_t){kind, 1};
  p[4] = (rd_piece_t){value, vlen};
}

/* ---- the client ------------------------------------------------------------- */

struct tn_cblock {
  tn_cluster_t *c;
  char *name;
  char *key; /* B */
  char *runtime;
  int size;
  long keep;
  double ttl, lease;
  unsigned long next; /* the last run this handle knows of: what it signs */
  rd_keys_t keys;
  /* The statuses of run cache_run that the last wait found complete
  ** (sync_script's prefetch): the next tn_cblock_status of that run reads
  ** them instead of asking again. Final statuses do not change. */
  redisReply *cache;
  unsigned long cache_run;
};

void tn_cblock_free(tn_cblock_t *b) {
  if (b == NULL) return;
  if (b->cache != NULL) freeReplyObject(b->cache);
  free(b->name);
  free(b->key);
  free(b->runtime);
  free(b);
}

int tn_cblock_size(const tn_cblock_t *b) { return b->size; }
long tn_cblock_keep(const tn_cblock_t *b) { return b->keep; }
double tn_cblock_ttl(const tn_cblock_t *b) { return b->ttl; }

int tn_cblock_open(tn_cluster_t *c, const char *name, int size,
                   const tn_cblock_options_t *o, tn_cblock_t **out) {
  if (name == NULL || name[0] == '\0')
    return tn_error_set(TN_EINVAL, "a cluster block needs a non-empty name");
  if (size < 1 || size > 4096)
    return tn_error_set(TN_EINVAL, "size must be between 1 and 4096 (got %d)",
                        size);
  if (o == NULL || o->runtime == NULL)
    return tn_error_set(TN_EINVAL, "a cluster block needs a runtime");
  long keep = o->keep > 0 ? o->keep : KEEP_DEFAULT;
  double ttl = o->ttl > 0 ? o->ttl : TTL_DEFAULT;
  double lease = o->lease > 0 ? o->lease : LEASE_DEFAULT;
  if (keep > 1000000000L || ttl > 1e9 || lease > 1e6)
    return tn_error_set(TN_EINVAL, "keep, ttl or lease out of range");
  if (lease < 1)
    return tn_error_set(TN_EINVAL, "lease must be at least 1 s (got %g)",
                        lease);
  tn_cblock_t *b = calloc(1, sizeof *b);
  if (b == NULL) return TN_ENOMEM;
  int rc = rd_keys_init(&b->keys, o->secret, o->secret_len);
  if (rc != TN_OK) {
    free(b);
    return rc;
  }
  b->c = c;
  b->name = dup_s(name);
  b->key = block_key(c, name);
  b->runtime = dup_s(o->runtime);
  char *init = NULL;
  size_t initlen = 0;
  if (b->name == NULL || b->key == NULL || b->runtime == NULL) rc = TN_ENOMEM;
  if (rc == TN_OK && o->init != NULL)
    rc = rd_value_encode(o->init, &init, &initlen);
  if (rc != TN_OK) {
    free(init);
    tn_cblock_free(b);
    return rc;
  }
  unsigned char mac[RD_MAC_LEN];
  size_t maclen = 0;
  if (b->keys.set && init != NULL) {
    rd_piece_t p[3] = {{b->key, strlen(b->key)},
                       {b->runtime, strlen(b->runtime)},
                       {init, initlen}};
    rd_mac(b->keys.job, "init", p, 3, mac);
    maclen = RD_MAC_LEN;
  }
  char sz[16], kp[24], tt[24], ls[24];
  const char *args[] = {name, num(sz, sizeof sz, (unsigned)size), b->runtime,
                        b->keys.kid, init != NULL ? init : "",
                        (const char *)mac, num(kp, sizeof kp, (unsigned long)keep),
                        num(tt, sizeof tt, (unsigned long long)ceil(ttl)),
                        num(ls, sizeof ls, (unsigned long long)(lease * 1000))};
  size_t lens[] = {strlen(name), strlen(sz), strlen(b->runtime),
                   strlen(b->keys.kid), initlen, maclen, strlen(kp),
                   strlen(tt), strlen(ls)};
  redisReply *r;
  rc = block_eval(c, b->key, &open_script, &r, 9, args, lens);
  free(init);
  if (rc != TN_OK) {
    tn_cblock_free(b);
    return rc;
  }
  long long code, n, k = 0, t = 0, l = 0, next = 0;
  if (!rep_int(r, 0, &code) || !rep_int(r, 1, &n) ||
      (code >= 0 && (!rep_int(r, 2, &k) || !rep_int(r, 3, &t) ||
                     !rep_int(r, 4, &l) || !rep_int(r, 5, &next)))) {
    rc = bad_reply(c, &open_script, b->key, r);
    tn_cblock_free(b);
    return rc;
  }
  freeReplyObject(r);
  if (code < 0) {
    rc = tn_error_set(TN_ECONFLICT,
                      "the cluster block '%s' exists with %lld slots (not "
                      "%d): terminate it first",
                      name, n, size);
    tn_cblock_free(b);
    return rc;
  }
  b->size = (int)n;
  b->keep = (long)k;
  b->ttl = (double)t;
  b->lease = (double)l / 1000;
  b->next = (unsigned long)next;
  *out = b;
  return TN_OK;
}

int tn_cblock_run(tn_cblock_t *b, const tn_blob_t *job, unsigned long *id) {
  char *payload;
  size_t plen;
  int rc = rd_value_encode(job, &payload, &plen);
  if (rc != TN_OK) return rc;
  for (int attempt = 0; attempt < 1000; attempt++) {
    char expected[24] = "0";
    unsigned char mac[RD_MAC_LEN];
    size_t maclen = 0;
    if (b->keys.set) {
      num(expected, sizeof expected, b->next + 1);
      rd_piece_t p[4];
      job_pieces(p, b->key, expected, b->runtime, strlen(b->runtime), payload,
                 plen);
      rd_mac(b->keys.job, "job", p, 4, mac);
      maclen = RD_MAC_LEN;
    }
    const char *args[] = {expected, b->runtime, b->keys.kid, payload,
                          (const char *)mac};
    size_t lens[] = {strlen(expected), strlen(b->runtime),
                     strlen(b->keys.kid), plen, maclen};
    redisReply *r;
    rc = block_eval(b->c, b->key, &submit_script, &r, 5, args, lens);
    if (rc != TN_OK) break;
    long long code, last = 0;
    if (!rep_int(r, 0, &code) || (code == -3 && !rep_int(r, 1, &last))) {
      rc = bad_reply(b->c, &submit_script, b->key, r);
      break;
    }
    freeReplyObject(r);
    if (code == -3) { /* another client's run came first: sign again */
      b->next = (unsigned long)last;
      continue;
    }
    if (code == -1) {
      rc = TN_ETERMINATED;
    } else if (code == -2) {
      rc = tn_error_set(TN_EIO,
                        "redis %s: the cluster block '%s' is gone from the "
                        "server (deleted?)",
                        b->c->where, b->name);
    } else {
      b->next = (unsigned long)code;
      *id = (unsigned long)code;
    }
    break;
  }
  free(payload);
  return rc;
}

/* The block's completion stream (B:done). */
static void done_key(const char *key, char *buf, size_t size) {
  snprintf(buf, size, "%s:done", key);
}

int tn_cblock_wait(tn_cblock_t *b, unsigned long run, double timeout) {
  double deadline = timeout < 0     ? tn_clock()
                    : timeout < 1e9 ? tn_clock() + timeout
                                    : INFINITY;
  char upto[24], done[600];
  num(upto, sizeof upto, run);
  done_key(b->key, done, sizeof done);
  for (;;) {
    const char *args[] = {upto, "1"};
    redisReply *r;
    int rc = block_eval(b->c, b->key, &sync_script, &r, 2, args, NULL);
    if (rc != TN_OK) return rc;
    long long pending;
    const redisReply *last = rep_str(r, 1);
    if (!rep_int(r, 0, &pending) || last == NULL)
      return bad_reply(b->c, &sync_script, b->key, r);
    if (pending == 0) {
      if (b->cache != NULL) freeReplyObject(b->cache);
      b->cache = NULL;
      if (r->elements == 3 + (size_t)b->size) { /* the prefetch */
        b->cache = r;
        b->cache_run = run;
      } else {
        freeReplyObject(r);
      }
      return TN_OK;
    }
    char from[64];
    snprintf(from, sizeof from, "%.*s", (int)last->len, last->str);
    freeReplyObject(r);
    if (rd_left(deadline) <= 0) return TN_ETIMEDOUT;
    if ((rc = tn_cancel_check()) != TN_OK) return rc;
    /* Until a status comes (or the slice ends: look again, which also
    ** reaps). */
    double slice = rd_slice(deadline);
    char ms[24];
    num(ms, sizeof ms, (unsigned long long)(slice * 1000));
    const char *argv[] = {"XREAD", "COUNT", "1", "BLOCK", ms,
                          "STREAMS", done, from};
    rc = rd_command(b->c, slice, deadline, &r, 8, argv, NULL);
    if (rc != TN_OK) return rc;
    freeReplyObject(r);
  }
}

void tn_job_status_clear(tn_job_status_t *s, int n) {
  for (int i = 0; i < n; i++) {
    tn_blob_release(s[i].value);
    free(s[i].message);
    s[i].value = NULL;
    s[i].message = NULL;
    s[i].state = TN_JOB_PENDING;
  }
}

/* A status `st` with a message (printf). */
static void status_msg(tn_job_status_t *st, int state, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void status_msg(tn_job_status_t *st, int state, const char *fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  st->state = state;
  st->message = dup_s(buf);
}

/* Read one stored status (see the top: kind, flags, value [, mac]). */
static void parse_status(tn_cblock_t *b, unsigned long run, int slot,
                         const char *s, size_t len, tn_job_status_t *st) {
  char rs[24], is[16];
  num(rs, sizeof rs, run);
  num(is, sizeof is, (unsigned)slot);
  char kind = len >= 2 ? s[0] : '?';
  if (kind == 'L' || kind == 'C' || kind == 'R') {
    st->state = kind == 'L'   ? TN_JOB_LOST
                : kind == 'C' ? TN_JOB_CANCELLED
                              : TN_JOB_REFUSED;
    st->message = dup_n(s + 2, len - 2);
    return;
  }
  if (kind != 'T' && kind != 'F') {
    status_msg(st, TN_JOB_REFUSED,
               "refused: the status of run %lu on slot %d was not written "
               "by tunnel",
               run, slot);
    return;
  }
  bool sig = (s[1] & 1) != 0;
  const char *value = s + 2;
  size_t vlen = len - 2;
  if (sig) {
    if (vlen < RD_MAC_LEN) {
      status_msg(st, TN_JOB_REFUSED,
                 "refused: the result of run %lu on slot %d has a bad "
                 "signature",
                 run, slot);
      return;
    }
    vlen -= RD_MAC_LEN;
  }
  if (b->keys.set) {
    rd_piece_t p[5];
    result_pieces(p, b->key, rs, is, &kind, value, vlen);
    if (!sig || !rd_mac_check(b->keys.result, "result", p, 5, value + vlen,
                              RD_MAC_LEN)) {
      status_msg(st, TN_JOB_REFUSED,
                 "refused: the result of run %lu on slot %d %s", run, slot,
                 sig ? "has a bad signature (another secret?)"
                     : "is not signed (a worker without the secret?)");
      return;
    }
  } else if (sig) {
    status_msg(st, TN_JOB_REFUSED,
               "refused: the result of run %lu on slot %d is signed: open "
               "the cluster with the secret to read it",
               run, slot);
    return;
  }
  char what[700];
  snprintf(what, sizeof what, "the result of run %lu on slot %d of %.500s",
           run, slot, b->key);
  tn_blob_t *v = NULL;
  if (rd_value_decode(b->c, what, value, vlen, &v) != TN_OK) {
    status_msg(st, TN_JOB_REFUSED, "refused: %s", tn_last_error());
    return;
  }
  st->state = kind == 'T' ? TN_JOB_OK : TN_JOB_FAILED;
  st->value = v;
}

int tn_cblock_status(tn_cblock_t *b, unsigned long run, int first, int n,
                     tn_job_status_t *out, int *expired) {
  if (first < 1 || n < 0 || first + n - 1 > b->size) return TN_EINVAL;
  for (int i = 0; i < n; i++) out[i] = (tn_job_status_t){TN_JOB_PENDING, NULL, NULL};
  redisReply *r;
  size_t at; /* the element of slot `first` */
  long long exists;
  if (b->cache != NULL && b->cache_run == run) { /* the wait's prefetch */
    r = b->cache;
    b->cache = NULL;
    at = 3 + (size_t)(first - 1);
    if (!rep_int(r, 2, &exists)) return bad_reply(b->c, &sync_script, b->key, r);
  } else {
    char rs[24], fs[16], ns[16];
    const char *args[] = {num(rs, sizeof rs, run),
                          num(fs, sizeof fs, (unsigned)first),
                          num(ns, sizeof ns, (unsigned)n)};
    int rc = block_eval(b->c, b->key, &results_script, &r, 3, args, NULL);
    if (rc != TN_OK) return rc;
    if (!rep_int(r, 0, &exists) || r->elements != (size_t)n + 1)
      return bad_reply(b->c, &results_script, b->key, r);
    at = 1;
  }
  if (expired != NULL) *expired = exists == 0;
  for (int i = 0; i < n; i++) {
    const redisReply *e = rep_str(r, at + (size_t)i);
    if (e != NULL) parse_status(b, run, first + i, e->str, e->len, &out[i]);
  }
  freeReplyObject(r);
  return TN_OK;
}

int tn_cblock_cancel(tn_cblock_t *b, unsigned long run, int *reached) {
  char rs[24];
  const char *args[] = {num(rs, sizeof rs, run)};
  redisReply *r;
  int rc = block_eval(b->c, b->key, &cancel_script, &r, 1, args, NULL);
  if (rc != TN_OK) return rc;
  if (r->type != REDIS_REPLY_INTEGER)
    return bad_reply(b->c, &cancel_script, b->key, r);
  if (reached != NULL) *reached = (int)r->integer;
  freeReplyObject(r);
  return TN_OK;
}

int tn_cblock_terminate(tn_cblock_t *b) {
  redisReply *r;
  int rc = block_eval(b->c, b->key, &terminate_script, &r, 0, NULL, NULL);
  if (rc == TN_OK) freeReplyObject(r);
  return rc;
}

/* ---- the worker --------------------------------------------------------------- */

struct tn_wslot {
  tn_worker_t *w;
  char *name, *key;
  int index, size;
  char is[16];          /* the index as a string */
  char lease_ms[24];
  char token[96];
  tn_blob_t *init;
  char *refusal;        /* refuse the next job with this, then give back */
  bool released;        /* the lease is given back already */
  redisReply *taken;     /* a finish's reply with the next take (at 1) */
  /* Under the worker's mutex (the heartbeat reads and sets them). */
  unsigned long running; /* the run of the job in flight, 0: none */
  tn_cancel_t *cancel;   /* its thread's token while it runs */
  bool lost;             /* a renewal found the lease gone */
  struct tn_wslot *next;
};

/* A block where this worker refused a job lately: its claims there take
** only slots whose jobs it can run for a while, so that a worker that
** can is first to claim it. */
typedef struct refused {
  char *name;
  double at;
  struct refused *next;
} refused_t;

struct tn_worker {
  tn_cluster_t *c;
  char id[24], host[256], pid[24], threads[16], started[32];
  char *runtime, *blocks_csv;
  char **blocks;
  size_t nblocks;
  rd_keys_t keys;
  char ctl[600], wake[600], blockset[600];
  pthread_mutex_t mutex;
  tn_wslot_t *slots; /* held by its threads */
  refused_t *refused;
  pthread_t beat;
  bool beat_started;
  atomic_int stop;     /* the heartbeat ends */
  atomic_int stopping; /* tn_worker_stop: no new slot, no new job */
};

const char *tn_worker_id(const tn_worker_t *w) { return w->id; }
const char *tn_wslot_block(const tn_wslot_t *s) { return s->name; }
int tn_wslot_index(const tn_wslot_t *s) { return s->index; }
int tn_wslot_size(const tn_wslot_t *s) { return s->size; }
const tn_blob_t *tn_wslot_init(const tn_wslot_t *s) { return s->init; }

static bool serves(const tn_worker_t *w, const char *name) {
  if (w->nblocks == 0) return true;
  for (size_t i = 0; i < w->nblocks; i++)
    if (strcmp(w->blocks[i], name) == 0) return true;
  return false;
}

/* The blocks on the server this worker serves (a malloc'd array of
** malloc'd names). */
static int block_names(tn_worker_t *w, char ***names, size_t *n) {
  const char *argv[] = {"SMEMBERS", w->blockset};
  redisReply *r;
  int rc = rd_command(w->c, 0, INFINITY, &r, 2, argv, NULL);
  if (rc != TN_OK) return rc;
  if (r->type != REDIS_REPLY_ARRAY) {
    rc = rd_bad_reply(w->c, "SMEMBERS", r);
    freeReplyObject(r);
    return rc;
  }
  char **v = calloc(r->elements + 1, sizeof *v);
  size_t k = 0;
  for (size_t i = 0; v != NULL && i < r->elements; i++) {
    const redisReply *e = r->element[i];
    if (e->type != REDIS_REPLY_STRING || memchr(e->str, 0, e->len) != NULL)
      continue;
    char *s = dup_n(e->str, e->len);
    if (s != NULL && serves(w, s))
      v[k++] = s;
    else
      free(s);
  }
  freeReplyObject(r);
  if (v == NULL) return TN_ENOMEM;
  *names = v;
  *n = k;
  return TN_OK;
}

static void free_names(char **names, size_t n) {
  for (size_t i = 0; i < n; i++) free(names[i]);
  free(names);
}

/*
** The renewal of every lease held, the worker's registration, and the
** cancels the server holds for the jobs running here. The mutex is held
** across the one script (the slots' strings are their threads', valid
** while linked): threads wait that long to take or finish a job.
*/
static void renew(tn_worker_t *w) {
  pthread_mutex_lock(&w->mutex);
  size_t n = 0;
  for (tn_wslot_t *s = w->slots; s != NULL; s = s->next) n++;
  const char **args = malloc((9 + 4 * n) * sizeof *args);
  tn_wslot_t **held = malloc((n + 1) * sizeof *held);
  if (args == NULL || held == NULL) {
    pthread_mutex_unlock(&w->mutex);
    free(args);
    free(held);
    return;
  }
  args[0] = w->id;
  args[1] = w->host;
  args[2] = w->pid;
  args[3] = w->threads;
  args[4] = w->runtime;
  args[5] = TN_VERSION;
  args[6] = w->started;
  args[7] = w->blocks_csv;
  args[8] = w->keys.kid;
  size_t k = 0;
  for (tn_wslot_t *s = w->slots; s != NULL; s = s->next, k++) {
    held[k] = s;
    args[9 + 4 * k] = s->key;
    args[10 + 4 * k] = s->is;
    args[11 + 4 * k] = s->token;
    args[12 + 4 * k] = s->lease_ms;
  }
  const char *keys[] = {w->blockset, w->c->prefix};
  redisReply *r = NULL;
  int rc = rd_eval(w->c, &renew_script, RD_NO_EXPIRY, &r, 2, keys,
                   (int)(9 + 4 * n), args, NULL);
  if (rc == TN_OK && r->type == REDIS_REPLY_ARRAY && r->elements == n) {
    for (size_t i = 0; i < n; i++) {
      long long code;
      if (!rep_int(r, i, &code)) continue;
      tn_wslot_t *s = held[i];
      if (code < 0) {
        s->lost = true;
        if (s->running != 0 && s->cancel != NULL) tn_cancel_request(s->cancel);
      } else if (code > 0 && s->running == (unsigned long)code &&
                 s->cancel != NULL) {
        tn_cancel_request(s->cancel);
      }
    }
  }
  pthread_mutex_unlock(&w->mutex);
  if (r != NULL) freeReplyObject(r);
  free(args);
  free(held);
}

/* The reaper over every block this worker serves. */
static void reap_blocks(tn_worker_t *w) {
  char **names;
  size_t n;
  if (block_names(w, &names, &n) != TN_OK) return;
  for (size_t i = 0; i < n; i++) {
    char *key = block_key(w->c, names[i]);
    redisReply *r;
    if (key != NULL &&
        block_eval(w->c, key, &reap_script, &r, 0, NULL, NULL) == TN_OK)
      freeReplyObject(r);
    free(key);
  }
  free_names(names, n);
}

/* The heartbeat thread: never runs a job, so a busy job cannot starve its
** leases. It wakes every RENEW_S, or at once when poked (a cancel). */
static void *beat_main(void *arg) {
  tn_worker_t *w = arg;
  double reaped = 0;
  char secs[16];
  snprintf(secs, sizeof secs, "%.3f", RENEW_S);
  while (!atomic_load(&w->stop)) {
    const char *argv[] = {"BLPOP", w->ctl, secs};
    redisReply *r;
    if (rd_command(w->c, RENEW_S, INFINITY, &r, 3, argv, NULL) == TN_OK)
      freeReplyObject(r);
    else
      tn_sleep(RENEW_S); /* the server is away: try again */
    if (atomic_load(&w->stop)) break;
    renew(w);
    if (tn_clock() - reaped >= REAP_S) {
      reap_blocks(w);
      reaped = tn_clock();
    }
  }
  return NULL;
}

static void worker_free(tn_worker_t *w) {
  for (size_t i = 0; i < w->nblocks; i++) free(w->blocks[i]);
  free(w->blocks);
  free(w->blocks_csv);
  free(w->runtime);
  while (w->refused != NULL) {
    refused_t *r = w->refused;
    w->refused = r->next;
    free(r->name);
    free(r);
  }
  pthread_mutex_destroy(&w->mutex);
  free(w);
}

int tn_worker_new(tn_cluster_t *c, const tn_worker_options_t *o,
                  tn_worker_t **out) {
  if (o == NULL || o->runtime == NULL)
    return tn_error_set(TN_EINVAL, "a worker needs a runtime");
  tn_worker_t *w = calloc(1, sizeof *w);
  if (w == NULL) return TN_ENOMEM;
  pthread_mutex_init(&w->mutex, NULL);
  atomic_init(&w->stop, 0);
  atomic_init(&w->stopping, 0);
  int rc = rd_keys_init(&w->keys, o->secret, o->secret_len);
  if (rc != TN_OK) {
    worker_free(w);
    return rc;
  }
  w->c = c;
  unsigned char rnd[4] = {0};
  FILE *f = fopen("/dev/urandom", "rb");
  if (f == NULL || fread(rnd, 1, sizeof rnd, f) != sizeof rnd) {
    unsigned long x = (unsigned long)(tn_clock() * 1e9) ^ (unsigned long)getpid();
    memcpy(rnd, &x, sizeof rnd);
  }
  if (f != NULL) fclose(f);
  snprintf(w->id, sizeof w->id, "%02x%02x%02x%02x", rnd[0], rnd[1], rnd[2],
           rnd[3]);
  if (gethostname(w->host, sizeof w->host - 1) != 0)
    snprintf(w->host, sizeof w->host, "?");
  snprintf(w->pid, sizeof w->pid, "%ld", (long)getpid());
  snprintf(w->threads, sizeof w->threads, "%d", o->threads);
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  snprintf(w->started, sizeof w->started, "%lld", (long long)now.tv_sec);
  snprintf(w->ctl, sizeof w->ctl, "%sworker:%s:ctl", c->prefix, w->id);
  snprintf(w->wake, sizeof w->wake, "%sblocks:wake", c->prefix);
  snprintf(w->blockset, sizeof w->blockset, "%sblocks", c->prefix);
  w->runtime = dup_s(o->runtime);
  size_t csv = 1;
  for (size_t i = 0; i < o->nblocks; i++) csv += strlen(o->blocks[i]) + 1;
  w->blocks_csv = calloc(1, csv);
  w->blocks = o->nblocks > 0 ? calloc(o->nblocks, sizeof *w->blocks) : NULL;
  if (w->runtime == NULL || w->blocks_csv == NULL ||
      (o->nblocks > 0 && w->blocks == NULL)) {
    worker_free(w);
    return TN_ENOMEM;
  }
  for (size_t i = 0; i < o->nblocks; i++) {
    if ((w->blocks[i] = dup_s(o->blocks[i])) == NULL) {
      worker_free(w);
      return TN_ENOMEM;
    }
    w->nblocks = i + 1;
    if (i > 0) strcat(w->blocks_csv, ",");
    strcat(w->blocks_csv, o->blocks[i]);
  }
  /* Registered before the first claim, so `tunnel status` shows it at
  ** once; the heartbeat keeps it so. */
  const char *args[] = {w->id, w->host, w->pid, w->threads, w->runtime,
                        TN_VERSION, w->started, w->blocks_csv,
                        w->keys.kid};
  const char *keys[] = {w->blockset, c->prefix};
  redisReply *r;
  rc = rd_eval(c, &renew_script, RD_NO_EXPIRY, &r, 2, keys, 9, args, NULL);
  if (rc != TN_OK) {
    worker_free(w);
    return rc;
  }
  freeReplyObject(r);
  /* The heartbeat takes no signal meant for the process. */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &old);
  int err = pthread_create(&w->beat, NULL, beat_main, w);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (err != 0) {
    worker_free(w);
    return TN_ETHREAD;
  }
  w->beat_started = true;
  *out = w;
  return TN_OK;
}

void tn_worker_stop(tn_worker_t *w) {
  atomic_store(&w->stopping, 1);
  /* Wake this worker's threads where they wait: the token lists of the
  ** slots they hold, and the claimers' list (its other waiters, of other
  ** workers, find nothing and wait again). */
  pthread_mutex_lock(&w->mutex);
  size_t n = 0;
  for (tn_wslot_t *s = w->slots; s != NULL; s = s->next) n++;
  char (*keys)[700] = n > 0 ? malloc(n * sizeof *keys) : NULL;
  size_t k = 0;
  for (tn_wslot_t *s = w->slots; keys != NULL && s != NULL; s = s->next)
    snprintf(keys[k++], sizeof keys[0], "%s:tok:%d", s->key, s->index);
  pthread_mutex_unlock(&w->mutex);
  redisReply *r;
  for (size_t i = 0; i < k; i++) {
    const char *argv[] = {"RPUSH", keys[i], "1"};
    if (rd_command(w->c, 0, INFINITY, &r, 3, argv, NULL) == TN_OK)
      freeReplyObject(r);
  }
  free(keys);
  int claimers = atoi(w->threads);
  for (int i = 0; i < claimers && i < 64; i++) {
    const char *argv[] = {"RPUSH", w->wake, "1"};
    if (rd_command(w->c, 0, INFINITY, &r, 3, argv, NULL) == TN_OK)
      freeReplyObject(r);
  }
}

void tn_worker_free(tn_worker_t *w) {
  if (w == NULL) return;
  atomic_store(&w->stop, 1);
  if (w->beat_started) {
    /* Poke it awake, then wait (at most a tick). */
    const char *poke[] = {"RPUSH", w->ctl, "1"};
    redisReply *r;
    if (rd_command(w->c, 0, INFINITY, &r, 3, poke, NULL) == TN_OK)
      freeReplyObject(r);
    pthread_join(w->beat, NULL);
  }
  char wk[600], ws[600];
  snprintf(wk, sizeof wk, "%sworker:%s", w->c->prefix, w->id);
  snprintf(ws, sizeof ws, "%sworkers", w->c->prefix);
  const char *del[] = {"DEL", wk, w->ctl};
  const char *zrem[] = {"ZREM", ws, w->id};
  redisReply *r;
  if (rd_command(w->c, 0, INFINITY, &r, 3, del, NULL) == TN_OK)
    freeReplyObject(r);
  if (rd_command(w->c, 0, INFINITY, &r, 3, zrem, NULL) == TN_OK)
    freeReplyObject(r);
  worker_free(w);
}

void tn_worker_abandon(tn_worker_t *w, const char *why) {
  pthread_mutex_lock(&w->mutex);
  size_t n = 0;
  for (tn_wslot_t *s = w->slots; s != NULL; s = s->next)
    if (s->running != 0) n++;
  const char **args = malloc((2 + 3 * n) * sizeof *args);
  if (args == NULL) {
    pthread_mutex_unlock(&w->mutex);
    free(args);
    return;
  }
  args[0] = w->id;
  args[1] = why;
  size_t k = 0;
  for (tn_wslot_t *s = w->slots; s != NULL; s = s->next)
    if (s->running != 0) {
      args[2 + 3 * k] = s->key;
      args[3 + 3 * k] = s->is;
      args[4 + 3 * k] = s->token;
      k++;
    }
  /* Held across the call: the threads may still run, and the strings are
  ** theirs. */
  const char *keys[] = {w->blockset, w->c->prefix};
  redisReply *r;
  if (rd_eval(w->c, &abandon_script, RD_NO_EXPIRY, &r, 2, keys,
              (int)(2 + 3 * n), args, NULL) == TN_OK)
    freeReplyObject(r);
  for (tn_wslot_t *s = w->slots; s != NULL; s = s->next)
    if (s->running != 0) s->lost = true;
  pthread_mutex_unlock(&w->mutex);
  free(args);
}

/* Whether a job of block `name` was refused here lately (see refused_t). */
static bool refused_lately(tn_worker_t *w, const char *name) {
  bool found = false;
  pthread_mutex_lock(&w->mutex);
  for (refused_t *r = w->refused; r != NULL; r = r->next)
    if (strcmp(r->name, name) == 0 &&
        tn_clock() - r->at < CLAIM_GRACE_MS / 1000.0)
      found = true;
  pthread_mutex_unlock(&w->mutex);
  return found;
}

static void note_refused(tn_worker_t *w, const char *name) {
  pthread_mutex_lock(&w->mutex);
  refused_t *r = w->refused;
  while (r != NULL && strcmp(r->name, name) != 0) r = r->next;
  if (r == NULL && (r = calloc(1, sizeof *r)) != NULL) {
    if ((r->name = dup_s(name)) == NULL) {
      free(r);
      r = NULL;
    } else {
      r->next = w->refused;
      w->refused = r;
    }
  }
  if (r != NULL) r->at = tn_clock();
  pthread_mutex_unlock(&w->mutex);
}

/*
** Why this worker must refuse a job (or the init) `what` of block `key`,
** or NULL: the signature first (before anything is decoded), then the
** runtime. `run` is the signed run ("" for an init).
*/
static char *check_job(tn_worker_t *w, const char *what, const char *key,
                       const char *run, const redisReply *rt,
                       const redisReply *kid, const redisReply *payload,
                       const redisReply *mac) {
  char buf[1024];
  bool signed_ = mac->len > 0;
  if (!signed_ && w->keys.set)
    snprintf(buf, sizeof buf,
             "refused: unsigned %s: worker %s (%s:%s) runs signed jobs only "
             "(open the cluster with its secret)",
             what, w->id, w->host, w->pid);
  else if (signed_ && !w->keys.set)
    snprintf(buf, sizeof buf,
             "refused: the %s is signed: worker %s (%s:%s) has no secret "
             "(start it with TUNNEL_SECRET)",
             what, w->id, w->host, w->pid);
  else if (signed_) {
    rd_piece_t p[4];
    bool ok;
    if (run[0] != '\0') {
      job_pieces(p, key, run, rt->str, rt->len, payload->str, payload->len);
      ok = rd_mac_check(w->keys.job, "job", p, 4, mac->str, mac->len);
    } else {
      rd_piece_t q[3] = {{key, strlen(key)}, {rt->str, rt->len},
                         {payload->str, payload->len}};
      ok = rd_mac_check(w->keys.job, "init", q, 3, mac->str, mac->len);
    }
    if (!ok || kid->len != strlen(w->keys.kid) ||
        memcmp(kid->str, w->keys.kid, kid->len) != 0)
      snprintf(buf, sizeof buf,
               "refused: bad signature on the %s: worker %s (%s:%s) has "
               "another secret",
               what, w->id, w->host, w->pid);
    else
      signed_ = false, buf[0] = '\0';
  } else {
    buf[0] = '\0';
  }
  if (buf[0] == '\0' &&
      (rt->len != strlen(w->runtime) || memcmp(rt->str, w->runtime, rt->len)))
    snprintf(buf, sizeof buf,
             "refused: the %s needs %.*s; worker %s (%s:%s) runs %s", what,
             (int)rt->len, rt->str, w->id, w->host, w->pid, w->runtime);
  return buf[0] != '\0' ? dup_s(buf) : NULL;
}

static void slot_free(tn_wslot_t *s) {
  if (s->taken != NULL) freeReplyObject(s->taken);
  free(s->name);
  free(s->key);
  free(s->refusal);
  tn_blob_release(s->init);
  free(s);
}

/* The slot handle for a claim's reply {i, token, size, lease, ttl, rt, k,
** init, initm}. */
static int slot_new(tn_worker_t *w, const char *name, char *key,
                    redisReply *r, tn_wslot_t **out) {
  long long i, size, lease;
  const redisReply *tok = rep_str(r, 1), *rt = rep_str(r, 5),
                   *kid = rep_str(r, 6), *init = rep_str(r, 7),
                   *initm = rep_str(r, 8);
  if (!rep_int(r, 0, &i) || !rep_int(r, 2, &size) || !rep_int(r, 3, &lease) ||
      tok == NULL || rt == NULL || kid == NULL || init == NULL ||
      initm == NULL || tok->len >= 96)
    return TN_EPROTO;
  tn_wslot_t *s = calloc(1, sizeof *s);
  if (s == NULL) return TN_ENOMEM;
  s->w = w;
  s->key = key;
  s->name = dup_s(name);
  s->index = (int)i;
  s->size = (int)size;
  snprintf(s->is, sizeof s->is, "%lld", i);
  snprintf(s->lease_ms, sizeof s->lease_ms, "%lld", lease);
  memcpy(s->token, tok->str, tok->len);
  s->token[tok->len] = '\0';
  if (s->name == NULL) {
    s->key = NULL;
    slot_free(s);
    return TN_ENOMEM;
  }
  if (init->len > 0) {
    s->refusal = check_job(w, "block's init", key, "", rt, kid, init, initm);
    if (s->refusal == NULL) {
      char what[700];
      snprintf(what, sizeof what, "the init of %.500s", key);
      if (rd_value_decode(w->c, what, init->str, init->len, &s->init) !=
          TN_OK) {
        char buf[1024];
        snprintf(buf, sizeof buf, "refused: %s", tn_last_error());
        s->refusal = dup_s(buf);
      }
    }
  }
  pthread_mutex_lock(&w->mutex);
  s->next = w->slots;
  w->slots = s;
  pthread_mutex_unlock(&w->mutex);
  *out = s;
  return TN_OK;
}

int tn_worker_claim(tn_worker_t *w, double timeout, tn_wslot_t **out) {
  double deadline = timeout < 0     ? tn_clock()
                    : timeout < 1e9 ? tn_clock() + timeout
                                    : INFINITY;
  static atomic_uint spread;
  for (;;) {
    if (atomic_load(&w->stopping)) return TN_ECLOSED;
    char **names;
    size_t n;
    int rc = block_names(w, &names, &n);
    if (rc != TN_OK) return rc;
    size_t first = n > 0 ? atomic_fetch_add(&spread, 1) % n : 0;
    for (size_t j = 0; j < n; j++) {
      const char *name = names[(first + j) % n];
      char *key = block_key(w->c, name);
      if (key == NULL) {
        free_names(names, n);
        return TN_ENOMEM;
      }
      char grace[24];
      /* 0 never comes from a clock: "only my own kind" */
      num(grace, sizeof grace,
          refused_lately(w, name) ? 1000000000000ULL : CLAIM_GRACE_MS);
      const char *args[] = {w->id, w->runtime, w->keys.kid, grace};
      redisReply *r;
      rc = block_eval(w->c, key, &claim_script, &r, 4, args, NULL);
      if (rc != TN_OK) {
        free(key);
        free_names(names, n);
        return rc;
      }
      long long got;
      if (!rep_int(r, 0, &got)) {
        rc = bad_reply(w->c, &claim_script, key, r);
        free(key);
        free_names(names, n);
        return rc;
      }
      if (got > 0) {
        rc = slot_new(w, name, key, r, out);
        if (rc == TN_EPROTO) rc = rd_bad_reply(w->c, claim_script.name, r);
        freeReplyObject(r);
        if (rc != TN_OK) free(key);
        free_names(names, n);
        return rc;
      }
      freeReplyObject(r);
      free(key);
    }
    free_names(names, n);
    double left = rd_left(deadline);
    if (left <= 0) return TN_ETIMEDOUT;
    if ((rc = tn_cancel_check()) != TN_OK) return rc;
    double block = left < CLAIM_SLICE ? left : CLAIM_SLICE;
    if (block < 0.01) block = 0.01;
    char secs[24];
    snprintf(secs, sizeof secs, "%.3f", block);
    const char *argv[] = {"BLPOP", w->wake, secs};
    redisReply *r;
    rc = rd_command(w->c, block, deadline, &r, 3, argv, NULL);
    if (rc != TN_OK) return rc;
    freeReplyObject(r);
  }
}

/* Store a status for (run, this slot), retrying a failed connection until
** the lease would be gone: TN_OK, TN_ECLOSED (fenced). */
static int finish_raw(tn_wslot_t *s, const char *run, const char *value,
                      size_t len, char kind, bool take_next) {
  char k[2] = {kind, '\0'};
  tn_worker_t *w = s->w;
  const char *args[] = {s->is, s->token, run, value, k, w->id, w->host,
                        w->pid};
  size_t lens[] = {strlen(s->is), strlen(s->token), strlen(run), len, 1,
                   strlen(w->id), strlen(w->host), strlen(w->pid)};
  double give_up = tn_clock() + strtod(s->lease_ms, NULL) / 1000 + 1;
  for (;;) {
    redisReply *r;
    int rc = block_eval(w->c, s->key, &finish_script, &r, take_next ? 8 : 5,
                        args, lens);
    if (rc == TN_OK) {
      long long code = -1;
      if (!rep_int(r, 0, &code)) code = -1;
      if (code == 1 && r->elements > 1) { /* the next take's reply */
        if (s->taken != NULL) freeReplyObject(s->taken);
        s->taken = r;
        return TN_OK;
      }
      freeReplyObject(r);
      if (code == 1 || code == 2) return TN_OK;
      if (code == 0) {
        pthread_mutex_lock(&s->w->mutex);
        s->lost = true;
        pthread_mutex_unlock(&s->w->mutex);
        return TN_ECLOSED;
      }
      rc = TN_EPROTO;
    }
    if (rc == TN_EIO && strstr(tn_last_error(), "TUNNEL-CORRUPT") != NULL)
      return rc;
    if (tn_clock() > give_up) return TN_ECLOSED;
    struct timespec ts = {0, 200 * 1000 * 1000}; /* not a user's wait */
    nanosleep(&ts, NULL);
  }
}

/* A refusal: the job's status, then the slot goes back so that a worker
** that can run the block's jobs takes it. */
static int refuse(tn_wslot_t *s, const char *run, const char *msg) {
  size_t n = strlen(msg);
  char *v = malloc(n + 2);
  if (v == NULL) return TN_ENOMEM;
  v[0] = 'R';
  v[1] = '\0';
  memcpy(v + 2, msg, n);
  finish_raw(s, run, v, n + 2, 'R', false);
  free(v);
  note_refused(s->w, s->name);
  return TN_ECLOSED; /* the caller releases */
}

/*
** Act on a take's reply (its elements from `off`; freed here): TN_OK with
** `job`, TN_ECLOSED, TN_EAGAIN (nothing queued), TN_ECONFLICT (a job was
** refused as unreadable: take again), or a failure.
*/
static int take_reply(tn_wslot_t *s, redisReply *r, size_t off,
                      tn_wjob_t *job) {
  tn_worker_t *w = s->w;
  long long code;
  if (!rep_int(r, off, &code)) return bad_reply(w->c, &take_script, s->key, r);
  if (code == -1 || code == -2) {
    freeReplyObject(r);
    pthread_mutex_lock(&w->mutex);
    if (code == -1) s->lost = true;
    s->released = true;
    pthread_mutex_unlock(&w->mutex);
    return TN_ECLOSED;
  }
  if (code == 0) {
    freeReplyObject(r);
    return TN_EAGAIN;
  }
  const redisReply *run = rep_str(r, off + 1), *payload = rep_str(r, off + 2),
                   *rt = rep_str(r, off + 3), *kid = rep_str(r, off + 4),
                   *mac = rep_str(r, off + 5);
  long long runid;
  if (run == NULL || payload == NULL || rt == NULL || kid == NULL ||
      mac == NULL || !rep_int(r, off + 1, &runid) || runid < 1)
    return bad_reply(w->c, &take_script, s->key, r);
  char rs[24];
  num(rs, sizeof rs, (unsigned long long)runid);
  char *why = s->refusal != NULL ? dup_s(s->refusal)
                                 : check_job(w, "job", s->key, rs, rt, kid,
                                             payload, mac);
  if (why != NULL) {
    freeReplyObject(r);
    int rc = refuse(s, rs, why);
    free(why);
    return rc;
  }
  char what[700];
  snprintf(what, sizeof what, "run %s of %.500s", rs, s->key);
  tn_blob_t *b = NULL;
  int rc = rd_value_decode(w->c, what, payload->str, payload->len, &b);
  freeReplyObject(r);
  if (rc != TN_OK) {
    char buf[1024];
    snprintf(buf, sizeof buf, "refused: %s", tn_last_error());
    size_t n = strlen(buf);
    char *v = malloc(n + 2);
    if (v == NULL) return TN_ENOMEM;
    v[0] = 'R';
    v[1] = '\0';
    memcpy(v + 2, buf, n);
    rc = finish_raw(s, rs, v, n + 2, 'R', false);
    free(v);
    return rc == TN_OK ? TN_ECONFLICT : rc;
  }
  pthread_mutex_lock(&w->mutex);
  s->running = (unsigned long)runid;
  s->cancel = tn_cancel_current();
  pthread_mutex_unlock(&w->mutex);
  job->run = (unsigned long)runid;
  job->job = b;
  return TN_OK;
}

int tn_wslot_take(tn_wslot_t *s, double timeout, tn_wjob_t *job) {
  tn_worker_t *w = s->w;
  double deadline = timeout < 0     ? tn_clock()
                    : timeout < 1e9 ? tn_clock() + timeout
                                    : INFINITY;
  char tokkey[700];
  snprintf(tokkey, sizeof tokkey, "%s:tok:%d", s->key, s->index);
  for (;;) {
    if (s->released || atomic_load(&w->stopping)) return TN_ECLOSED;
    redisReply *r;
    size_t off = 0;
    int rc;
    if (s->taken != NULL) { /* the last finish took it already */
      r = s->taken;
      s->taken = NULL;
      off = 1;
    } else {
      const char *args[] = {s->is, s->token, w->id, w->host, w->pid};
      rc = block_eval(w->c, s->key, &take_script, &r, 5, args, NULL);
      if (rc != TN_OK) return rc;
    }
    rc = take_reply(s, r, off, job);
    if (rc == TN_ECONFLICT) continue;
    if (rc != TN_EAGAIN) return rc;
    double left = rd_left(deadline);
    if (left <= 0) return TN_ETIMEDOUT;
    if ((rc = tn_cancel_check()) != TN_OK) return rc;
    double block = left < RD_BLOCK_SLICE ? left : RD_BLOCK_SLICE;
    if (block < 0.01) block = 0.01;
    char secs[24];
    snprintf(secs, sizeof secs, "%.3f", block);
    const char *argv[] = {"BLPOP", tokkey, secs};
    if ((rc = rd_command(w->c, block, deadline, &r, 3, argv, NULL)) != TN_OK)
      return rc;
    freeReplyObject(r);
  }
}

int tn_wslot_finish(tn_wslot_t *s, const tn_wjob_t *job, int ok,
                    const tn_blob_t *value) {
  tn_worker_t *w = s->w;
  char *bytes;
  size_t len;
  int rc = rd_value_encode(value, &bytes, &len);
  if (rc != TN_OK) return rc;
  char *v = malloc(len + 2 + RD_MAC_LEN);
  if (v == NULL) {
    free(bytes);
    return TN_ENOMEM;
  }
  char kind = ok ? 'T' : 'F', rs[24];
  num(rs, sizeof rs, job->run);
  v[0] = kind;
  v[1] = w->keys.set ? 1 : 0;
  memcpy(v + 2, bytes, len);
  size_t total = len + 2;
  if (w->keys.set) {
    rd_piece_t p[5];
    result_pieces(p, s->key, rs, s->is, &kind, bytes, len);
    rd_mac(w->keys.result, "result", p, 5, (unsigned char *)v + total);
    total += RD_MAC_LEN;
  }
  free(bytes);
  rc = finish_raw(s, rs, v, total, kind, true);
  free(v);
  pthread_mutex_lock(&w->mutex);
  s->running = 0;
  if (s->cancel != NULL) tn_cancel_clear(s->cancel);
  s->cancel = NULL;
  pthread_mutex_unlock(&w->mutex);
  return rc;
}

void tn_wslot_release(tn_wslot_t *s) {
  if (s == NULL) return;
  tn_worker_t *w = s->w;
  pthread_mutex_lock(&w->mutex);
  for (tn_wslot_t **l = &w->slots; *l != NULL; l = &(*l)->next)
    if (*l == s) {
      *l = s->next;
      break;
    }
  bool give = !s->released && !s->lost;
  pthread_mutex_unlock(&w->mutex);
  if (give) {
    /* A job the last finish took, not started: it goes back. */
    char run[32] = "";
    long long code;
    const redisReply *t = s->taken != NULL ? rep_str(s->taken, 2) : NULL;
    if (t != NULL && rep_int(s->taken, 1, &code) && code == 1 &&
        t->len < sizeof run)
      snprintf(run, sizeof run, "%.*s", (int)t->len, t->str);
    const char *args[] = {s->is, s->token, run};
    redisReply *r;
    if (block_eval(w->c, s->key, &release_script, &r, run[0] ? 3 : 2, args,
                   NULL) == TN_OK)
      freeReplyObject(r);
  }
  slot_free(s);
}

/* ---- status ------------------------------------------------------------------- */

static char *rep_dup(const redisReply *r, size_t k) {
  const redisReply *e = rep_str(r, k);
  if (e != NULL) return dup_n(e->str, e->len);
  long long v;
  if (rep_int(r, k, &v)) {
    char buf[32];
    snprintf(buf, sizeof buf, "%lld", v);
    return dup_s(buf);
  }
  return dup_s("");
}

void tn_jobs_status_free(tn_jobs_status_t *s) {
  if (s == NULL) return;
  for (size_t i = 0; i < s->nworkers; i++) {
    tn_jobs_worker_t *w = &s->workers[i];
    free(w->id);
    free(w->host);
    free(w->runtime);
    free(w->version);
    free(w->slots);
  }
  for (size_t i = 0; i < s->nblocks; i++) {
    tn_jobs_block_t *b = &s->blocks[i];
    free(b->name);
    free(b->queued);
    free(b->running);
    free(b->age);
    for (int j = 0; b->owner != NULL && j < b->size; j++) free(b->owner[j]);
    free(b->owner);
  }
  for (size_t i = 0; i < s->nfailures; i++) {
    free(s->failures[i].block);
    free(s->failures[i].message);
  }
  free(s->workers);
  free(s->blocks);
  free(s->failures);
  free(s);
}

static int by_block_name(const void *a, const void *b) {
  return strcmp(((const tn_jobs_block_t *)a)->name,
                ((const tn_jobs_block_t *)b)->name);
}

/* Append " name:i" to the slots of the worker whose lease `own` is. */
static void add_slot(tn_jobs_status_t *s, const char *own, const char *name,
                     int i) {
  const char *colon = strchr(own, ':');
  size_t idlen = colon != NULL ? (size_t)(colon - own) : strlen(own);
  for (size_t k = 0; k < s->nworkers; k++) {
    tn_jobs_worker_t *w = &s->workers[k];
    if (strlen(w->id) != idlen || memcmp(w->id, own, idlen) != 0) continue;
    size_t old = strlen(w->slots), add = strlen(name) + 16;
    char *p = realloc(w->slots, old + add);
    if (p == NULL) return;
    snprintf(p + old, add, "%s%s:%d", old > 0 ? " " : "", name, i);
    w->slots = p;
    return;
  }
}

int tn_jobs_status(tn_cluster_t *c, tn_jobs_status_t **out) {
  char blocks[600];
  snprintf(blocks, sizeof blocks, "%sblocks", c->prefix);
  redisReply *r;
  int rc = block_eval(c, blocks, &status_script, &r, 0, NULL, NULL);
  if (rc != TN_OK) return rc;
  long long now;
  if (r->type != REDIS_REPLY_ARRAY || r->elements != 4 ||
      r->element[0]->type != REDIS_REPLY_ARRAY ||
      r->element[1]->type != REDIS_REPLY_ARRAY ||
      r->element[2]->type != REDIS_REPLY_ARRAY || !rep_int(r, 3, &now))
    return bad_reply(c, &status_script, blocks, r);
  const redisReply *ws = r->element[0], *bs = r->element[1],
                   *fs = r->element[2];
  tn_jobs_status_t *s = calloc(1, sizeof *s);
  if (s == NULL) {
    freeReplyObject(r);
    return TN_ENOMEM;
  }
  s->workers = calloc(ws->elements + 1, sizeof *s->workers);
  s->blocks = calloc(bs->elements + 1, sizeof *s->blocks);
  s->failures = calloc(fs->elements + 1, sizeof *s->failures);
  rc = s->workers && s->blocks && s->failures ? TN_OK : TN_ENOMEM;
  for (size_t i = 0; rc == TN_OK && i < ws->elements; i++) {
    const redisReply *e = ws->element[i];
    long long pid = 0, threads = 0, age = 0, alive = 0;
    if (e->type != REDIS_REPLY_ARRAY || e->elements != 8) continue;
    tn_jobs_worker_t *w = &s->workers[s->nworkers++];
    w->id = rep_dup(e, 0);
    w->host = rep_dup(e, 1);
    rep_int(e, 2, &pid);
    rep_int(e, 3, &threads);
    w->runtime = rep_dup(e, 4);
    w->version = rep_dup(e, 5);
    rep_int(e, 6, &age);
    rep_int(e, 7, &alive);
    w->slots = dup_s("");
    w->pid = (long)pid;
    w->threads = (int)threads;
    w->beat = (double)age / 1000;
    w->alive = alive != 0;
    if (!w->id || !w->host || !w->runtime || !w->version || !w->slots)
      rc = TN_ENOMEM;
  }
  for (size_t i = 0; rc == TN_OK && i < bs->elements; i++) {
    const redisReply *e = bs->element[i];
    long long size, term, next;
    if (e->type != REDIS_REPLY_ARRAY || e->elements != 5 ||
        !rep_int(e, 1, &size) || !rep_int(e, 2, &term) ||
        !rep_int(e, 3, &next) || e->element[4]->type != REDIS_REPLY_ARRAY ||
        e->element[4]->elements != (size_t)size)
      continue;
    tn_jobs_block_t *b = &s->blocks[s->nblocks++];
    b->name = rep_dup(e, 0);
    b->size = (int)size;
    b->terminated = term != 0;
    b->runs = (unsigned long)next;
    b->queued = calloc((size_t)size, sizeof *b->queued);
    b->running = calloc((size_t)size, sizeof *b->running);
    b->age = calloc((size_t)size, sizeof *b->age);
    b->owner = calloc((size_t)size, sizeof *b->owner);
    if (!b->name || !b->queued || !b->running || !b->age || !b->owner) {
      rc = TN_ENOMEM;
      break;
    }
    for (int j = 0; j < b->size; j++) {
      const redisReply *sl = e->element[4]->element[j];
      long long q = 0, run = 0, age = 0;
      rep_int(sl, 0, &q);
      rep_int(sl, 1, &run);
      rep_int(sl, 2, &age);
      b->queued[j] = (long)q;
      b->running[j] = (unsigned long)run;
      b->age[j] = (double)age / 1000;
      const redisReply *own = rep_str(sl, 3);
      if (own != NULL && own->len > 0) {
        b->owner[j] = dup_n(own->str, own->len);
        if (b->owner[j] != NULL) add_slot(s, b->owner[j], b->name, j + 1);
      }
    }
  }
  for (size_t i = 0; rc == TN_OK && i < fs->elements; i++) {
    const redisReply *e = fs->element[i];
    if (e->type != REDIS_REPLY_STRING) continue;
    /* now \t block \t run \t slot \t message */
    char *t = dup_n(e->str, e->len), *f[5] = {t};
    if (t == NULL) {
      rc = TN_ENOMEM;
      break;
    }
    int k = 1;
    for (char *p = t; *p && k < 5; p++)
      if (*p == '\t') {
        *p = '\0';
        f[k++] = p + 1;
      }
    if (k == 5) {
      tn_jobs_failure_t *x = &s->failures[s->nfailures++];
      x->age = (double)(now - strtoll(f[0], NULL, 10)) / 1000;
      x->block = dup_s(f[1]);
      x->run = strtoul(f[2], NULL, 10);
      x->slot = atoi(f[3]);
      x->message = dup_s(f[4]);
      if (!x->block || !x->message) rc = TN_ENOMEM;
    }
    free(t);
  }
  freeReplyObject(r);
  if (rc != TN_OK) {
    tn_jobs_status_free(s);
    return rc;
  }
  /* The owner strings are leases "<worker>:<epoch>": keep the worker. */
  for (size_t i = 0; i < s->nblocks; i++)
    for (int j = 0; j < s->blocks[i].size; j++) {
      char *o = s->blocks[i].owner[j];
      if (o != NULL && strchr(o, ':') != NULL) *strchr(o, ':') = '\0';
    }
  qsort(s->blocks, s->nblocks, sizeof *s->blocks, by_block_name);
  *out = s;
  return TN_OK;
}

int tn_cblock_served(tn_cblock_t *b, int *served) {
  tn_jobs_status_t *s;
  int rc = tn_jobs_status(b->c, &s);
  if (rc != TN_OK) return rc;
  int any = 0;
  for (size_t i = 0; i < s->nworkers && !any; i++) any = s->workers[i].alive;
  for (size_t i = 0; i < s->nblocks && !any; i++) {
    if (strcmp(s->blocks[i].name, b->name) != 0) continue;
    for (int j = 0; j < s->blocks[i].size && !any; j++)
      any = s->blocks[i].owner[j] != NULL;
  }
  tn_jobs_status_free(s);
  *served = any;
  return TN_OK;
}
