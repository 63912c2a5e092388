/*
** counter.c - tunnel.Counter on Redis: one string key holding the integer.
**
** increase/decrease are INCRBY, set is SET: each in a script that
** carries the caller's deadline (RD_PROLOGUE), so a command the client
** gave up on (a stalled server) is not applied when the server resumes;
** get is GET. These calls have no error return in the C API: a failure
** returns 0 and is recorded for tn_error_take (the binding raises it).
**
** Waiting for a value (tn_counter_wait) needs no polling: a waiter
** registers its wake-up key (barrier.c's K:wake:T) in K:wu (waiting from
** below) or K:wd (from above), scored by its target, in the same script
** that reads the value; every increase and set then pushes the new value
** to the keys whose target it reaches and takes them out. Scores are
** doubles: past 2^53 a push may come early (the waiter compares exactly
** and registers again), never late.
**
** Caveats:
** - Redis refuses an increment that would overflow 64 bits (an error,
**   TN_EIO) where the in-process counter wraps.
** - A waiter whose process dies leaves its entry in K:wu or K:wd until
**   the counter reaches its target.
*/
#include <stdlib.h>
#include <string.h>

#include "redis.h"

/* KEYS[2], KEYS[3]: the waiters from below and from above; wake(v)
** pushes the new value `v` (a string) to those it satisfies. */
#define WAKE                                                                 \
  "local function wake(v)\n"                                                 \
  "  local x = tonumber(v)\n"                                                \
  "  for _, z in ipairs({{KEYS[2], '-inf', x}, {KEYS[3], x, '+inf'}}) do\n"  \
  "    if redis.call('TYPE', z[1])['ok'] == 'zset' then\n"                   \
  "      for _, w in ipairs(redis.call('ZRANGEBYSCORE', z[1], z[2], z[3])) do\n" \
  "        if string.sub(w, 1, #KEYS[1] + 6) == KEYS[1] .. ':wake:' then\n"  \
  "          redis.call('RPUSH', w, v)\n"                                    \
  "          redis.call('PEXPIRE', w, 60000)\n"                              \
  "        end\n"                                                            \
  "      end\n"                                                              \
  "      redis.call('ZREMRANGEBYSCORE', z[1], z[2], z[3])\n"                 \
  "    end\n"                                                                \
  "  end\n"                                                                  \
  "end\n"

/* ARGV: delta -> the new value, as a string: a script's numbers are
** doubles, exact only to 2^53. INCRBY refuses a value that is not an
** integer (or would overflow) before writing anything. */
static rd_script_t add_script = {
    "counter.add",
    RD_PROLOGUE WAKE "redis.call('INCRBY', KEYS[1], ARGV[1])\n"
                "local v = redis.call('GET', KEYS[1])\n"
                "wake(v)\n"
                "return v\n",
    "", 0};

/* ARGV: value -> the old value (false: none). A value that is not an
** integer is refused before the write. */
static rd_script_t set_script = {
    "counter.set",
    RD_PROLOGUE WAKE
    "local old = redis.call('GET', KEYS[1])\n"
    "if old and (#old > 20 or not string.match(old, '^%-?%d+$')) then\n"
    "  return redis.error_reply('TUNNEL-CORRUPT ' .. KEYS[1] .. ' does not hold an integer: nothing was changed') end\n"
    "redis.call('SET', KEYS[1], ARGV[1])\n"
    "wake(ARGV[1])\n"
    "return old\n",
    "", 0};

/* ARGV: value -> 1 (stored only if there is none yet). */
static rd_script_t create_script = {
    "counter.create",
    RD_PROLOGUE "redis.call('SET', KEYS[1], ARGV[1], 'NX')\nreturn 1\n", "",
    0};

/* Run `argv` (a script when `s` is set); the integer (or integer string)
** reply, 0 for nil. */
static int64_t counter_command(rd_object_t *o, rd_script_t *s, int argc,
                               const char **argv) {
  redisReply *r;
  char wu[512], wd[512];
  const char *keys[] = {o->key, rd_subkey(o, ":wu", wu, sizeof wu),
                        rd_subkey(o, ":wd", wd, sizeof wd)};
  int rc = s != NULL ? rd_eval(o->cluster, s, INFINITY, &r, 3, keys, argc - 2,
                               argv + 2, NULL)
                     : rd_command(o->cluster, 0, INFINITY, &r, argc, argv,
                                  NULL);
  if (rc != TN_OK) {
    tn_error_pend(rc);
    return 0;
  }
  int64_t v = 0;
  if (r->type == REDIS_REPLY_INTEGER) {
    v = (int64_t)r->integer;
  } else if (r->type == REDIS_REPLY_STRING) {
    char *end;
    v = (int64_t)strtoll(r->str, &end, 10);
    if (end == r->str || *end != '\0')
      tn_error_pend(TN_EPROTO), tn_error_set(TN_EPROTO, "redis %s: %s %s: not an integer: %.40s",
                   o->cluster->where, argv[0], o->key,
                   r->str);
  } else if (r->type != REDIS_REPLY_NIL) {
    tn_error_pend(rd_bad_reply(o->cluster, argv[0], r));
  }
  freeReplyObject(r);
  return v;
}

int rd_counter_create(rd_object_t *o, const int64_t *init) {
  if (init == NULL) return TN_OK;
  char v[32];
  snprintf(v, sizeof v, "%lld", (long long)*init);
  const char *keys[] = {o->key};
  const char *args[] = {v};
  redisReply *r;
  int rc = rd_eval(o->cluster, &create_script, INFINITY, &r, 1, keys, 1, args,
                   NULL);
  if (rc == TN_OK) freeReplyObject(r);
  return rc;
}

int64_t rd_counter_add(tn_counter_t *c, int64_t delta) {
  char d[32];
  snprintf(d, sizeof d, "%lld", (long long)delta);
  const char *argv[] = {"INCRBY", RD(c)->key, d};
  return counter_command(RD(c), &add_script, 3, argv);
}

int64_t rd_counter_get(tn_counter_t *c) {
  const char *argv[] = {"GET", RD(c)->key};
  return counter_command(RD(c), NULL, 2, argv);
}

int64_t rd_counter_set(tn_counter_t *c, int64_t value) {
  char v[32];
  snprintf(v, sizeof v, "%lld", (long long)value);
  const char *argv[] = {"SET", RD(c)->key, v};
  return counter_command(RD(c), &set_script, 3, argv);
}

/* ---- waiting for a value ---------------------------------------------------- */

/* ARGV: target, dir (0: from the value now), wake key ('' : only look) ->
** {1, value} reached, {0, value, dir} registered (or only looked). */
static rd_script_t wait_script = {
    "counter.wait",
    RD_PROLOGUE
    "for i = 2, 3 do\n"
    "  local t = redis.call('TYPE', KEYS[i])['ok']\n"
    "  if t ~= 'none' and t ~= 'zset' then return redis.error_reply('TUNNEL-CORRUPT ' .. KEYS[i] .. ' is a ' .. t .. ', not a zset: nothing was changed') end\n"
    "end\n"
    "local v = redis.call('GET', KEYS[1]) or '0'\n"
    "if #v > 20 or not string.match(v, '^%-?%d+$') then\n"
    "  return redis.error_reply('TUNNEL-CORRUPT ' .. KEYS[1] .. ' does not hold an integer: nothing was changed') end\n"
    /* exact comparison of two canonical integer strings */
    "local function cmp(a, b)\n"
    "  local na, nb = string.sub(a, 1, 1) == '-', string.sub(b, 1, 1) == '-'\n"
    "  if na ~= nb then return na and -1 or 1 end\n"
    "  local s = na and -1 or 1\n"
    "  if #a ~= #b then return (#a < #b and -1 or 1) * s end\n"
    "  if a == b then return 0 end\n"
    "  return (a < b and -1 or 1) * s\n"
    "end\n"
    "local c = cmp(v, ARGV[1])\n"
    "local dir = tonumber(ARGV[2])\n"
    "if dir == 0 then\n"
    "  if c == 0 then return {1, v} end\n"
    "  dir = c < 0 and 1 or -1\n"
    "end\n"
    "if (dir > 0 and c >= 0) or (dir < 0 and c <= 0) then return {1, v} end\n"
    "if ARGV[3] ~= '' then\n"
    "  redis.call('ZADD', dir > 0 and KEYS[2] or KEYS[3], tonumber(ARGV[1]), ARGV[3])\n"
    "end\n"
    "return {0, v, dir}\n",
    "", 0};

/* ARGV: wake key -> 1: a waiter that leaves takes its entry out. */
static rd_script_t unwait_script = {
    "counter.unwait",
    RD_PROLOGUE
    "for i = 2, 3 do\n"
    "  if redis.call('TYPE', KEYS[i])['ok'] == 'zset' then redis.call('ZREM', KEYS[i], ARGV[1]) end\n"
    "end\n"
    "redis.call('DEL', ARGV[1])\n"
    "return 1\n",
    "", 0};

static int parse_int64(const char *s, size_t len, int64_t *v) {
  char buf[32];
  if (len == 0 || len >= sizeof buf) return TN_EPROTO;
  memcpy(buf, s, len);
  buf[len] = '\0';
  char *end;
  long long x = strtoll(buf, &end, 10);
  if (*end != '\0') return TN_EPROTO;
  *v = (int64_t)x;
  return TN_OK;
}

/* One run of wait_script: *reached, *v, *dir (in and out). */
static int wait_once(rd_object_t *o, const char **keys, const char *target,
                     const char *wkey, double deadline, bool *reached,
                     int64_t *v, int *dir) {
  char d[8];
  snprintf(d, sizeof d, "%d", *dir);
  const char *args[] = {target, d, wkey};
  redisReply *r;
  int rc = rd_eval(o->cluster, &wait_script, deadline, &r, 3, keys, 3, args,
                   NULL);
  if (rc != TN_OK) return rc;
  if (r->type != REDIS_REPLY_ARRAY || r->elements < 2 ||
      r->element[0]->type != REDIS_REPLY_INTEGER ||
      r->element[1]->type != REDIS_REPLY_STRING ||
      parse_int64(r->element[1]->str, r->element[1]->len, v) != TN_OK) {
    rc = rd_bad_reply(o->cluster, "counter.wait", r);
    freeReplyObject(r);
    return rc;
  }
  *reached = r->element[0]->integer == 1;
  if (!*reached && r->elements == 3 &&
      r->element[2]->type == REDIS_REPLY_INTEGER)
    *dir = (int)r->element[2]->integer;
  freeReplyObject(r);
  return TN_OK;
}

int rd_counter_wait(tn_counter_t *c, int64_t target, double timeout,
                    int64_t *value) {
  rd_object_t *o = RD(c);
  double deadline = timeout < 0     ? tn_clock()
                    : timeout < 1e9 ? tn_clock() + timeout
                                    : INFINITY;
  char wu[512], wd[512], t[32], wkey[600];
  const char *keys[] = {o->key, rd_subkey(o, ":wu", wu, sizeof wu),
                        rd_subkey(o, ":wd", wd, sizeof wd)};
  snprintf(t, sizeof t, "%lld", (long long)target);
  bool waits = timeout > 0, registered = false, reached = false;
  if (waits) rd_wake_key(o, wkey, sizeof wkey);
  int64_t v = 0;
  int dir = 0, rc;
  for (;;) {
    rc = wait_once(o, keys, t, waits ? wkey : "", deadline, &reached, &v,
                   &dir);
    if (rc == TN_ETIMEDOUT && timeout < 0) rc = TN_EAGAIN;
    if (rc != TN_OK || reached) break;
    registered = waits;
    if (!waits) {
      rc = timeout < 0 ? TN_EAGAIN : TN_ETIMEDOUT;
      break;
    }
    if (rd_left(deadline) <= 0) {
      rc = TN_ETIMEDOUT;
      break;
    }
    char msg[32];
    bool got;
    rc = rd_wake_wait(o->cluster, wkey, rd_slice(deadline), deadline, msg,
                      sizeof msg, &got);
    if (rc != TN_OK) break;
    int64_t pushed;
    if (got && parse_int64(msg, strlen(msg), &pushed) == TN_OK &&
        (dir > 0 ? pushed >= target : pushed <= target)) {
      v = pushed; /* the value that reached it, even if it moved on */
      reached = true;
      registered = false; /* the push took the entry out */
      break;
    }
  }
  if (registered) {
    const char *args[] = {wkey};
    redisReply *r;
    if (rd_eval(o->cluster, &unwait_script, RD_NO_EXPIRY, &r, 3, keys, 1,
                args, NULL) == TN_OK)
      freeReplyObject(r);
  }
  if (value != NULL) *value = v;
  return reached ? TN_OK : rc;
}
