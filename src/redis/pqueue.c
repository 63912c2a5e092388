/*
** pqueue.c - tunnel.PriorityQueue on Redis: a sorted set, plus the keys a
** Vector has beside its list.
**
** Keys (K = prefix .. name):
**   K          sorted set: score = the priority, member = a 17-byte order
**              tag, then the stored value (redis.h's value format)
**   K:meta     hash: hint (absent: unbounded), closed, seq (the last
**              push's number), useq (the last unpop's)
**   K:items    wake-up token for poppers: one token iff K is not empty or
**              the queue is closed
**   K:space    wake-up token for pushers: one token iff K is smaller than
**              the hint or the queue is closed (bounded queues only)
**
** Order. A sorted set orders equal scores by member, byte by byte; the tag
** makes that the order of arrival: "1" and the push's number in 16 hex
** digits (HINCRBY K:meta seq), so equal priorities pop first in first out.
** A value put back (unpop: a receiver that could not decode it) is tagged
** "0" and 2^53 minus the unpop's number, ahead of every push of its
** priority and of earlier unpops, as in process (core/pqueue.c).
**
** Every operation that changes anything is one script that validates the
** keys and fields it reads before its first write and ends by restoring
** the token invariant, exactly as src/redis/vector.c does; waiting is the
** same too: BLPOP on a token list, then the script again (the token is a
** hint), in slices (rd_wait_token), never polling.
**
** Caveats:
** - Scores are doubles, as the in-process priorities: integers beyond
**   2^53 may compare equal (then arrival decides).
** - The hint is stored by the first creator; later ones get that hint.
*/
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "redis.h"

/* What every script starts with: the deadline, the checks, the token
** invariant (see vector.c's FIX, whose shape this is). */
#define PQ_FIX                                                               \
  RD_PROLOGUE                                                                \
  "local kinds = {'zset', 'hash', 'list', 'list'}\n"                         \
  "for i = 1, 4 do\n"                                                        \
  "  local t = redis.call('TYPE', KEYS[i])['ok']\n"                          \
  "  if t ~= 'none' and t ~= kinds[i] then return redis.error_reply("       \
  "'TUNNEL-CORRUPT ' .. KEYS[i] .. ' is a ' .. t .. ', not a ' .. kinds[i] .. ': nothing was changed') end\n" \
  "end\n"                                                                    \
  "local m = redis.call('HMGET', KEYS[2], 'hint', 'closed', 'seq', 'useq')\n" \
  "local function int(x) return x == false or (#x <= 18 and string.match(x, '^%-?%d+$') ~= nil) end\n" \
  "if not int(m[1]) or not int(m[3]) or not int(m[4]) or (m[2] ~= false and m[2] ~= '1') then\n" \
  "  return redis.error_reply('TUNNEL-CORRUPT ' .. KEYS[2] .. ' holds a hint, closed, seq or useq field tunnel did not write: nothing was changed')\n" \
  "end\n"                                                                    \
  "local function fix(n, hint, closed)\n"                                    \
  "  if n > 0 or closed then\n"                                              \
  "    if redis.call('LLEN', KEYS[3]) == 0 then redis.call('RPUSH', KEYS[3], '1') end\n" \
  "  else redis.call('DEL', KEYS[3]) end\n"                                  \
  "  if hint > 0 then\n"                                                     \
  "    if n < hint or closed then\n"                                         \
  "      if redis.call('LLEN', KEYS[4]) == 0 then redis.call('RPUSH', KEYS[4], '1') end\n" \
  "    else redis.call('DEL', KEYS[4]) end\n"                                \
  "  end\n"                                                                  \
  "end\n"                                                                    \
  "local function score(s)\n"                                                \
  "  local x = tonumber(s)\n"                                                \
  "  return s == '+inf' or s == '-inf' or (x ~= nil and x == x)\n"           \
  "end\n"                                                                    \
  "local hint = tonumber(m[1] or '0')\n"                                     \
  "local closed = m[2] ~= false\n"                                           \
  "local n = redis.call('ZCARD', KEYS[1])\n"

/* ARGV: hint -> 1 (the first creator's hint is kept). */
static rd_script_t create_script = {
    "pqueue.create",
    PQ_FIX "if not m[1] then redis.call('HSET', KEYS[2], 'hint', ARGV[1])\n"
           "  fix(n, tonumber(ARGV[1]), closed) end\n"
           "return 1\n",
    "", 0};

/* ARGV: score, value -> 1 pushed, -1 closed, -2 full. */
static rd_script_t push_script = {
    "pqueue.push",
    PQ_FIX "if not score(ARGV[1]) then return redis.error_reply('TUNNEL-CORRUPT bad score ' .. ARGV[1] .. ': nothing was changed') end\n"
           "if closed then fix(n, hint, closed) return -1 end\n"
           "if hint > 0 and n >= hint then fix(n, hint, closed) return -2 end\n"
           "local s = redis.call('HINCRBY', KEYS[2], 'seq', 1)\n"
           "redis.call('ZADD', KEYS[1], ARGV[1], string.format('1%016x', s) .. ARGV[2])\n"
           "fix(n + 1, hint, closed)\n"
           "return 1\n",
    "", 0};

/* ARGV: score, value -> 1: ahead of its equals, past the hint and the
** close (it was in the queue). */
static rd_script_t unpop_script = {
    "pqueue.unpop",
    PQ_FIX "if not score(ARGV[1]) then return redis.error_reply('TUNNEL-CORRUPT bad score ' .. ARGV[1] .. ': nothing was changed') end\n"
           "local u = redis.call('HINCRBY', KEYS[2], 'useq', 1)\n"
           "redis.call('ZADD', KEYS[1], ARGV[1], string.format('0%016x', 9007199254740992 - u) .. ARGV[2])\n"
           "fix(n + 1, hint, closed)\n"
           "return 1\n",
    "", 0};

/* -> {1, value, score} popped, {-1} closed and drained, {0} empty. */
static rd_script_t pop_script = {
    "pqueue.pop",
    PQ_FIX "if n == 0 then fix(n, hint, closed) if closed then return {-1} end "
           "return {0} end\n"
           "local r = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')\n"
           "local v = r[1]\n"
           "if #v < 21 or string.sub(v, 18, 20) ~= 'TN\\1' then return redis.error_reply("
           "'TUNNEL-CORRUPT the first item of ' .. KEYS[1] .. ' was not written by this tunnel: nothing was changed') end\n"
           "redis.call('ZREM', KEYS[1], v)\n"
           "fix(n - 1, hint, closed)\n"
           "return {1, string.sub(v, 18), r[2]}\n",
    "", 0};

static rd_script_t close_script = {
    "pqueue.close",
    PQ_FIX "redis.call('HSET', KEYS[2], 'closed', '1')\n"
           "fix(n, hint, true)\n"
           "return 1\n",
    "", 0};

/* The four keys every script takes. */
typedef struct qkeys {
  char meta[512], items[512], space[512];
  const char *keys[4];
} qkeys_t;

static void qkeys_init(qkeys_t *k, const rd_object_t *o) {
  k->keys[0] = o->key;
  k->keys[1] = rd_subkey(o, ":meta", k->meta, sizeof k->meta);
  k->keys[2] = rd_subkey(o, ":items", k->items, sizeof k->items);
  k->keys[3] = rd_subkey(o, ":space", k->space, sizeof k->space);
}

/* A call's deadline: TN_TRY (never wait for items or room) is now. */
static double deadline_of(double timeout) {
  if (timeout < 0) return tn_clock();
  return timeout < 1e9 ? tn_clock() + timeout : INFINITY;
}

static int bad(rd_object_t *o, rd_script_t *s, redisReply *r) {
  char what[600];
  snprintf(what, sizeof what, "%s %s", s->name, o->key);
  int rc = rd_bad_reply(o->cluster, what, r);
  if (r != NULL) freeReplyObject(r);
  return rc;
}

/* A score Redis reads back as the same double: "%.17g", or +inf/-inf. */
static void format_score(double p, char *buf, size_t size) {
  if (isinf(p))
    snprintf(buf, size, p > 0 ? "+inf" : "-inf");
  else
    snprintf(buf, size, "%.17g", p);
}

/* Run a script over the queue's keys with ARGV args. */
static int run(rd_object_t *o, qkeys_t *k, rd_script_t *s, double deadline,
               redisReply **r, int nargs, const char **args,
               const size_t *lens) {
  return rd_eval(o->cluster, s, deadline, r, 4, k->keys, nargs, args, lens);
}

int rd_pqueue_create(rd_object_t *o, size_t hint) {
  if (hint == TN_UNBOUNDED) return TN_OK;
  qkeys_t k;
  qkeys_init(&k, o);
  char h[32];
  snprintf(h, sizeof h, "%zu", hint);
  const char *args[] = {h};
  redisReply *r;
  int rc = run(o, &k, &create_script, INFINITY, &r, 1, args, NULL);
  if (rc == TN_OK) freeReplyObject(r);
  return rc;
}

int rd_pqueue_push(tn_pqueue_t *q, double priority, tn_blob_t *b,
                   double timeout) {
  rd_object_t *o = RD(q);
  char *val;
  size_t len;
  int rc = rd_value_encode(b, &val, &len);
  if (rc != TN_OK) return rc;
  qkeys_t k;
  qkeys_init(&k, o);
  char sc[40];
  format_score(priority, sc, sizeof sc);
  const char *args[] = {sc, val};
  size_t lens[] = {strlen(sc), len};
  double deadline = deadline_of(timeout);
  for (;;) {
    redisReply *r;
    rc = run(o, &k, &push_script, deadline, &r, 2, args, lens);
    if (rc == TN_ETIMEDOUT && timeout < 0) rc = TN_EAGAIN;
    if (rc != TN_OK) break;
    if (r->type != REDIS_REPLY_INTEGER) {
      rc = bad(o, &push_script, r);
      break;
    }
    long long res = r->integer;
    freeReplyObject(r);
    if (res == 1) {
      tn_blob_release(b); /* stored: the queue "owns" it */
      break;
    }
    if (res == -1) {
      rc = TN_ECLOSED;
      break;
    }
    if (timeout < 0) {
      rc = TN_EAGAIN;
      break;
    }
    if (rd_left(deadline) <= 0) {
      rc = TN_ETIMEDOUT;
      break;
    }
    if ((rc = rd_wait_token(o->cluster, k.keys[3], deadline, true)) != TN_OK)
      break;
  }
  free(val);
  return rc;
}

/* unpop with the stored bytes as they are (no encoding). */
static int unpop_raw(rd_object_t *o, qkeys_t *k, const char *sc,
                     const char *val, size_t len) {
  const char *args[] = {sc, val};
  size_t lens[] = {strlen(sc), len};
  redisReply *r;
  int rc = run(o, k, &unpop_script, INFINITY, &r, 2, args, lens);
  if (rc != TN_OK) return rc;
  if (r->type != REDIS_REPLY_INTEGER) return bad(o, &unpop_script, r);
  freeReplyObject(r);
  return TN_OK;
}

int rd_pqueue_unpop(tn_pqueue_t *q, double priority, tn_blob_t *b) {
  rd_object_t *o = RD(q);
  char *val;
  size_t len;
  /* The blob was read through this cluster: its data-only mark (if any)
  ** is not part of the value. */
  int rc = rd_value_encode_read(b, o->cluster->data_only, &val, &len);
  if (rc != TN_OK) return rc;
  qkeys_t k;
  qkeys_init(&k, o);
  char sc[40];
  format_score(priority, sc, sizeof sc);
  rc = unpop_raw(o, &k, sc, val, len);
  free(val);
  if (rc == TN_OK) tn_blob_release(b);
  return rc;
}

int rd_pqueue_pop(tn_pqueue_t *q, tn_blob_t **out, double *priority,
                  double timeout) {
  rd_object_t *o = RD(q);
  qkeys_t k;
  qkeys_init(&k, o);
  double deadline = deadline_of(timeout);
  for (;;) {
    redisReply *r;
    int rc = run(o, &k, &pop_script, deadline, &r, 0, NULL, NULL);
    if (rc == TN_ETIMEDOUT && timeout < 0) rc = TN_EAGAIN;
    if (rc != TN_OK) return rc;
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 1 ||
        r->element[0]->type != REDIS_REPLY_INTEGER)
      return bad(o, &pop_script, r);
    long long res = r->element[0]->integer;
    if (res == 1) {
      if (r->elements != 3 || r->element[1]->type != REDIS_REPLY_STRING ||
          r->element[2]->type != REDIS_REPLY_STRING)
        return bad(o, &pop_script, r);
      const redisReply *v = r->element[1], *s = r->element[2];
      char what[600];
      snprintf(what, sizeof what, "pqueue.pop %s", o->key);
      tn_blob_t *b = NULL;
      rc = rd_value_decode(o->cluster, what, v->str, v->len, &b);
      if (rc != TN_OK) {
        /* A corrupt body (or no memory): back where it was, and the pop
        ** fails with its own reason. */
        char saved[512];
        snprintf(saved, sizeof saved, "%s", tn_last_error());
        unpop_raw(o, &k, s->str, v->str, v->len);
        tn_error_set(rc, "%s", saved);
        freeReplyObject(r);
        return rc;
      }
      if (priority != NULL) *priority = strtod(s->str, NULL);
      *out = b;
      freeReplyObject(r);
      return TN_OK;
    }
    freeReplyObject(r);
    if (res == -1) return TN_ECLOSED;
    if (timeout < 0) return TN_EAGAIN;
    if (rd_left(deadline) <= 0) return TN_ETIMEDOUT;
    if ((rc = rd_wait_token(o->cluster, k.keys[2], deadline, true)) != TN_OK)
      return rc;
  }
}

/* An integer reply of a simple command; 0 and a recorded error on failure. */
static long long simple_int(rd_object_t *o, const char *cmd, const char *key,
                            const char *field) {
  const char *argv[] = {cmd, key, field};
  redisReply *r;
  int rc = rd_command(o->cluster, 0, INFINITY, &r, field != NULL ? 3 : 2,
                      argv, NULL);
  if (rc != TN_OK) {
    tn_error_pend(rc);
    return 0;
  }
  long long v = 0;
  if (r->type == REDIS_REPLY_INTEGER)
    v = r->integer;
  else if (r->type == REDIS_REPLY_STRING)
    v = strtoll(r->str, NULL, 10);
  else if (r->type != REDIS_REPLY_NIL)
    tn_error_pend(rd_bad_reply(o->cluster, cmd, r));
  freeReplyObject(r);
  return v;
}

size_t rd_pqueue_size(tn_pqueue_t *q) {
  return (size_t)simple_int(RD(q), "ZCARD", RD(q)->key, NULL);
}

size_t rd_pqueue_size_hint(const tn_pqueue_t *q) {
  rd_object_t *o = RD(q);
  char meta[512];
  long long h = simple_int(o, "HGET", rd_subkey(o, ":meta", meta, sizeof meta),
                           "hint");
  return h > 0 ? (size_t)h : TN_UNBOUNDED;
}

int rd_pqueue_close(tn_pqueue_t *q) {
  rd_object_t *o = RD(q);
  qkeys_t k;
  qkeys_init(&k, o);
  redisReply *r;
  int rc = run(o, &k, &close_script, INFINITY, &r, 0, NULL, NULL);
  if (rc == TN_OK) freeReplyObject(r);
  return rc;
}

int rd_pqueue_is_closed(tn_pqueue_t *q) {
  rd_object_t *o = RD(q);
  char meta[512];
  return simple_int(o, "HGET", rd_subkey(o, ":meta", meta, sizeof meta),
                    "closed") != 0;
}
