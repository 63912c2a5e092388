/*
** vector.c - tunnel.Vector on Redis: a list, plus a few keys beside it.
**
** Keys (K = prefix .. name):
**   K          the list of stored values (redis.h's value format)
**   K:meta     hash: hint (absent: unbounded), closed, v (the version),
**              want and wantat (a waiting pushMany, below)
**   K:items    wake-up token for poppers: one token iff K is not empty or
**              the vector is closed
**   K:space    wake-up token for pushers: one token iff K is shorter than
**              the hint (and has room for the batch in want, if any) or
**              the vector is closed (bounded vectors only)
**
** Every operation that changes anything is one server-side script, so no
** interleaving of clients can break the structure (a push that respects
** the hint, insert at an index, set past the end, close, replace). Each
** script ends by restoring the token invariant (`fix`).
**
** Waiting. A pop that finds the list empty blocks in BLPOP on K:items (a
** push that respects the hint, in BLPOP on K:space), then runs its script
** again: the token is only a hint that something changed. A waiter that
** takes the token and finds nothing (another client was faster) waits
** again; one that finds the vector closed leaves the token there (fix
** puts it back), so close wakes every waiter in turn. Each block lasts
** at most RD_BLOCK_SLICE seconds before a re-check, a safety net for a
** token lost with a client that crashed between its BLPOP and its script.
**
** Batches. pushMany of k values is one script that pushes them all or
** none: it needs room for all k (or, for more than the hint, an empty
** vector, as in process). A batch that does not fit while there is room
** for one value would find the K:space token there at once, forever: so
** it records its need in K:meta (want = k, the largest waiting, and wantat
** = the server time), and while that record is fresh (RD_WANT_MS: the
** waiter renews it at each re-check, one slice apart) the token means
** "room for the batch": fix holds it back until there is. A batch that
** got in, or gave up, clears the record; one that crashed leaves it to
** expire. popMany takes up to max values in one script; select runs one
** script over several vectors and blocks in one BLPOP on their K:items.
**
** Caveats:
** - insert and remove in the middle rewrite the tail of the list (O(n)
**   on the server, like the in-process deque's O(n) moves).
** - The hint is stored by the first creator; later ones get that hint.
*/
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "redis.h"

/* How long a waiting pushMany's record of its need holds (milliseconds):
** three of its re-checks (RD_BLOCK_SLICE apart at most). */
#define RD_WANT_MS "15000"

/*
** Shared prologue: the deadline (RD_PROLOGUE), then every key and meta
** field the scripts read is checked before anything is written (a
** corrupt K:meta or a key of the wrong type is a TUNNEL-CORRUPT error
** reply and nothing changes), then the token invariant.
*/
#define FIX                                                                  \
  RD_PROLOGUE                                                                \
  "local kinds = {'list', 'hash', 'list', 'list'}\n"                         \
  "for i = 1, 4 do\n"                                                        \
  "  local t = redis.call('TYPE', KEYS[i])['ok']\n"                          \
  "  if t ~= 'none' and t ~= kinds[i] then return redis.error_reply("       \
  "'TUNNEL-CORRUPT ' .. KEYS[i] .. ' is a ' .. t .. ', not a ' .. kinds[i] .. ': nothing was changed') end\n" \
  "end\n"                                                                    \
  "local m = redis.call('HMGET', KEYS[2], 'hint', 'closed', 'v', 'want', 'wantat')\n" \
  "local function int(x) return x == false or (#x <= 18 and string.match(x, '^%-?%d+$') ~= nil) end\n" \
  "if not int(m[1]) or not int(m[3]) or not int(m[4]) or not int(m[5]) or (m[2] ~= false and m[2] ~= '1') then\n" \
  "  return redis.error_reply('TUNNEL-CORRUPT ' .. KEYS[2] .. ' holds a hint, closed, v, want or wantat field tunnel did not write: nothing was changed')\n" \
  "end\n"                                                                    \
  "local function room(n, k, hint) return (k <= hint and n <= hint - k) or (k > hint and n == 0) end\n" \
  "local want = 0\n"                                                         \
  "if m[4] and m[5] and now - tonumber(m[5]) <= " RD_WANT_MS " then want = tonumber(m[4]) end\n" \
  "local function ours(v) return type(v) == 'string' and string.sub(v, 1, 3) == 'TN\\1' end\n" \
  "local function foreign(i) return redis.error_reply('TUNNEL-CORRUPT the item at ' .. i .. ' of ' .. KEYS[1] .. ' was not written by this tunnel: nothing was changed') end\n" \
  "local function fix(n, hint, closed)\n"                                    \
  "  if n > 0 or closed then\n"                                              \
  "    if redis.call('LLEN', KEYS[3]) == 0 then redis.call('RPUSH', KEYS[3], '1') end\n" \
  "  else redis.call('DEL', KEYS[3]) end\n"                                  \
  "  if hint > 0 then\n"                                                     \
  "    if (n < hint and (want == 0 or room(n, want, hint))) or closed then\n" \
  "      if redis.call('LLEN', KEYS[4]) == 0 then redis.call('RPUSH', KEYS[4], '1') end\n" \
  "    else redis.call('DEL', KEYS[4]) end\n"                                \
  "  end\n"                                                                  \
  "end\n"                                                                    \
  "local hint = tonumber(m[1] or '0')\n"                                     \
  "local closed = m[2] ~= false\n"                                           \
  "local n = redis.call('LLEN', KEYS[1])\n"

/* ARGV: value, front -> 1 pushed, -1 closed, -2 full. */
static rd_script_t push_script = {
    "vector.push",
    FIX "if closed then fix(n, hint, closed) return -1 end\n"
        "if hint > 0 and n >= hint then fix(n, hint, closed) return -2 end\n"
        "if ARGV[2] == '1' then redis.call('LPUSH', KEYS[1], ARGV[1])\n"
        "else redis.call('RPUSH', KEYS[1], ARGV[1]) end\n"
        "redis.call('HINCRBY', KEYS[2], 'v', 1)\n"
        "fix(n + 1, hint, closed)\n"
        "return 1\n",
    "", 0};

/* ARGV: front -> {1, value} popped, {-1} closed and drained, {0} empty. */
static rd_script_t pop_script = {
    "vector.pop",
    FIX "if n == 0 then fix(n, hint, closed) if closed then return {-1} end "
        "return {0} end\n"
        "local at = ARGV[1] == '1' and 0 or -1\n"
        "local v = redis.call('LINDEX', KEYS[1], at)\n"
        "if not ours(v) then return foreign(at) end\n"
        "if at == 0 then redis.call('LPOP', KEYS[1])\n"
        "else redis.call('RPOP', KEYS[1]) end\n"
        "redis.call('HINCRBY', KEYS[2], 'v', 1)\n"
        "fix(n - 1, hint, closed)\n"
        "return {1, v}\n",
    "", 0};

/* ARGV: index (-1: the end), value -> 1, -1 closed, -3 out of range. */
static rd_script_t insert_script = {
    "vector.insert",
    FIX "if closed then return -1 end\n"
        "local i = tonumber(ARGV[1])\n"
        "if i < 0 then i = n end\n"
        "if i > n then return -3 end\n"
        "if i == n then redis.call('RPUSH', KEYS[1], ARGV[2])\n"
        "elseif i == 0 then redis.call('LPUSH', KEYS[1], ARGV[2])\n"
        "else\n"
        "  local rest = redis.call('LRANGE', KEYS[1], i, -1)\n"
        "  redis.call('LTRIM', KEYS[1], 0, i - 1)\n"
        "  redis.call('RPUSH', KEYS[1], ARGV[2])\n"
        "  for j = 1, #rest, 1000 do\n"
        "    redis.call('RPUSH', KEYS[1], unpack(rest, j, math.min(j + 999, #rest)))\n"
        "  end\n"
        "end\n"
        "redis.call('HINCRBY', KEYS[2], 'v', 1)\n"
        "fix(n + 1, hint, closed)\n"
        "return 1\n",
    "", 0};

/* ARGV: index, tombstone -> {1, value}, {-3} out of range. */
static rd_script_t remove_script = {
    "vector.remove",
    FIX "local i = tonumber(ARGV[1])\n"
        "if i >= n then return {-3} end\n"
        "local v = redis.call('LINDEX', KEYS[1], i)\n"
        "if not ours(v) then return foreign(i) end\n"
        "if i == 0 then redis.call('LPOP', KEYS[1])\n"
        "elseif i == n - 1 then redis.call('RPOP', KEYS[1])\n"
        "else redis.call('LSET', KEYS[1], i, ARGV[2])\n"
        "  redis.call('LREM', KEYS[1], 1, ARGV[2]) end\n"
        "redis.call('HINCRBY', KEYS[2], 'v', 1)\n"
        "fix(n - 1, hint, closed)\n"
        "return {1, v}\n",
    "", 0};

/* ARGV: index, value, nil -> {1, old} / {1} (grown), {-1} closed. */
static rd_script_t set_script = {
    "vector.set",
    FIX "local i = tonumber(ARGV[1])\n"
        "if i < n then\n"
        "  local old = redis.call('LINDEX', KEYS[1], i)\n"
        "  redis.call('LSET', KEYS[1], i, ARGV[2])\n"
        "  redis.call('HINCRBY', KEYS[2], 'v', 1)\n"
        "  return {1, old}\n"
        "end\n"
        "if closed then return {-1} end\n"
        "local pad = {}\n"
        "for j = n, i - 1 do\n"
        "  pad[#pad + 1] = ARGV[3]\n"
        "  if #pad == 1000 then redis.call('RPUSH', KEYS[1], unpack(pad)) pad = {} end\n"
        "end\n"
        "if #pad > 0 then redis.call('RPUSH', KEYS[1], unpack(pad)) end\n"
        "redis.call('RPUSH', KEYS[1], ARGV[2])\n"
        "redis.call('HINCRBY', KEYS[2], 'v', 1)\n"
        "fix(i + 1, hint, closed)\n"
        "return {1}\n",
    "", 0};

static rd_script_t close_script = {
    "vector.close",
    FIX "redis.call('HSET', KEYS[2], 'closed', '1')\n"
        "fix(n, hint, true)\n"
        "return 1\n",
    "", 0};

/* -> {version, {values...}} */
static rd_script_t snapshot_script = {
    "vector.snapshot",
    RD_PROLOGUE
    "local v = redis.call('HGET', KEYS[2], 'v') or '0'\n"
    "return {v, redis.call('LRANGE', KEYS[1], 0, -1)}\n",
    "", 0};

/* ARGV: version, values... -> 1, -1 closed (would grow), -4 conflict. */
static rd_script_t replace_script = {
    "vector.replace",
    FIX "if (redis.call('HGET', KEYS[2], 'v') or '0') ~= ARGV[1] then return -4 end\n"
        "local k = #ARGV - 1\n"
        "if closed and k > n then return -1 end\n"
        "redis.call('DEL', KEYS[1])\n"
        "for j = 2, #ARGV, 1000 do\n"
        "  redis.call('RPUSH', KEYS[1], unpack(ARGV, j, math.min(j + 999, #ARGV)))\n"
        "end\n"
        "redis.call('HINCRBY', KEYS[2], 'v', 1)\n"
        "fix(k, hint, closed)\n"
        "return 1\n",
    "", 0};

/* The four keys every script takes. */
typedef struct vkeys {
  char meta[512], items[512], space[512];
  const char *keys[4];
} vkeys_t;

static void vkeys_init(vkeys_t *k, const rd_object_t *o) {
  k->keys[0] = o->key;
  k->keys[1] = rd_subkey(o, ":meta", k->meta, sizeof k->meta);
  k->keys[2] = rd_subkey(o, ":items", k->items, sizeof k->items);
  k->keys[3] = rd_subkey(o, ":space", k->space, sizeof k->space);
}

/* A call's deadline: TN_TRY (never wait for items or room) is now; the
** commands it sends still get rd_expiry's minimum to be answered. */
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

/* Decode a bulk reply element into a blob. */
static int decode(rd_object_t *o, const char *op, const redisReply *e,
                  tn_blob_t **out) {
  char what[600];
  snprintf(what, sizeof what, "%s %s", op, o->key);
  if (e->type != REDIS_REPLY_STRING)
    return rd_bad_reply(o->cluster, what, e);
  return rd_value_decode(o->cluster, what, e->str, e->len, out);
}

/* ARGV: hint -> 1 (the first creator's hint is kept). */
static rd_script_t create_script = {
    "vector.create",
    FIX "if not m[1] then redis.call('HSET', KEYS[2], 'hint', ARGV[1])\n"
        "  fix(n, tonumber(ARGV[1]), closed) end\n"
        "return 1\n",
    "", 0};

int rd_deque_create(rd_object_t *o, size_t hint) {
  if (hint == TN_UNBOUNDED) return TN_OK;
  vkeys_t k;
  vkeys_init(&k, o);
  char h[32];
  snprintf(h, sizeof h, "%zu", hint);
  const char *args[] = {h};
  redisReply *r;
  int rc = rd_eval(o->cluster, &create_script, INFINITY, &r, 4, k.keys, 1,
                   args, NULL);
  if (rc == TN_OK) freeReplyObject(r);
  return rc;
}

int rd_deque_push(tn_deque_t *d, tn_blob_t *b, double timeout, bool front) {
  rd_object_t *o = RD(d);
  char *val;
  size_t len;
  int rc = rd_value_encode(b, &val, &len);
  if (rc != TN_OK) return rc;
  vkeys_t k;
  vkeys_init(&k, o);
  const char *args[] = {val, front ? "1" : "0"};
  size_t lens[] = {len, 1};
  double deadline = deadline_of(timeout);
  for (;;) {
    redisReply *r;
    rc = rd_eval(o->cluster, &push_script, deadline, &r, 4, k.keys, 2, args,
                 lens);
    if (rc == TN_ETIMEDOUT && timeout < 0) rc = TN_EAGAIN;
    if (rc != TN_OK) break;
    if (r->type != REDIS_REPLY_INTEGER) {
      rc = bad(o, &push_script, r);
      break;
    }
    long long res = r->integer;
    freeReplyObject(r);
    if (res == 1) {
      tn_blob_release(b); /* stored: the deque "owns" it */
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
    if ((rc = rd_wait_token(o->cluster, k.keys[3], deadline, true)) != TN_OK) break;
  }
  free(val);
  return rc;
}

/* ARGV: value, front -> 1: a popped value put back at its end (past the
** hint and the close: it was in the vector). */
static rd_script_t unpop_script = {
    "vector.unpop",
    FIX "if ARGV[2] == '1' then redis.call('LPUSH', KEYS[1], ARGV[1])\n"
        "else redis.call('RPUSH', KEYS[1], ARGV[1]) end\n"
        "redis.call('HINCRBY', KEYS[2], 'v', 1)\n"
        "fix(n + 1, hint, closed)\n"
        "return 1\n",
    "", 0};

/* Put back a popped value the caller cannot take; keeps tn_last_error
** (the reason the pop failed). */
static void unpop(rd_object_t *o, vkeys_t *k, const redisReply *v,
                  bool front, int why) {
  char saved[512];
  snprintf(saved, sizeof saved, "%s", tn_last_error());
  const char *args[] = {v->str, front ? "1" : "0"};
  size_t lens[] = {v->len, 1};
  redisReply *r;
  if (rd_eval(o->cluster, &unpop_script, INFINITY, &r, 4, k->keys, 2, args,
              lens) == TN_OK)
    freeReplyObject(r);
  tn_error_set(why, "%s", saved);
}

int rd_deque_pop(tn_deque_t *d, tn_blob_t **out, double timeout, bool front) {
  rd_object_t *o = RD(d);
  vkeys_t k;
  vkeys_init(&k, o);
  const char *args[] = {front ? "1" : "0"};
  double deadline = deadline_of(timeout);
  for (;;) {
    redisReply *r;
    int rc = rd_eval(o->cluster, &pop_script, deadline, &r, 4, k.keys, 1,
                     args, NULL);
    if (rc == TN_ETIMEDOUT && timeout < 0) rc = TN_EAGAIN;
    if (rc != TN_OK) return rc;
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 1 ||
        r->element[0]->type != REDIS_REPLY_INTEGER)
      return bad(o, &pop_script, r);
    long long res = r->element[0]->integer;
    if (res == 1 && r->elements == 2) {
      rc = decode(o, "vector.pop", r->element[1], out);
      /* The script let only values with our header go; one whose body is
      ** corrupt (or needs memory we lack) goes back where it was. */
      if (rc != TN_OK && r->element[1]->type == REDIS_REPLY_STRING)
        unpop(o, &k, r->element[1], front, rc);
      freeReplyObject(r);
      return rc;
    }
    freeReplyObject(r);
    if (res == -1) return TN_ECLOSED;
    if (timeout < 0) return TN_EAGAIN;
    if (rd_left(deadline) <= 0) return TN_ETIMEDOUT;
    if ((rc = rd_wait_token(o->cluster, k.keys[2], deadline, true)) != TN_OK) return rc;
  }
}

int rd_deque_insert(tn_deque_t *d, size_t index, tn_blob_t *b,
                    double timeout) {
  (void)timeout;
  rd_object_t *o = RD(d);
  char *val;
  size_t len;
  int rc = rd_value_encode(b, &val, &len);
  if (rc != TN_OK) return rc;
  vkeys_t k;
  vkeys_init(&k, o);
  char idx[32];
  if (index == TN_END)
    snprintf(idx, sizeof idx, "-1");
  else
    snprintf(idx, sizeof idx, "%zu", index);
  const char *args[] = {idx, val};
  size_t lens[] = {strlen(idx), len};
  redisReply *r;
  rc = rd_eval(o->cluster, &insert_script, INFINITY, &r, 4, k.keys, 2, args, lens);
  free(val);
  if (rc != TN_OK) return rc;
  if (r->type != REDIS_REPLY_INTEGER) return bad(o, &insert_script, r);
  long long res = r->integer;
  freeReplyObject(r);
  if (res == 1) {
    tn_blob_release(b);
    return TN_OK;
  }
  return res == -1 ? TN_ECLOSED : TN_ERANGE;
}

/* A stored value never starts with a NUL: a safe placeholder for LREM. */
static const char tombstone[] = "\0tunnel-removed";

int rd_deque_remove(tn_deque_t *d, size_t index, tn_blob_t **out,
                    double timeout) {
  (void)timeout;
  rd_object_t *o = RD(d);
  vkeys_t k;
  vkeys_init(&k, o);
  char idx[32];
  snprintf(idx, sizeof idx, "%zu", index);
  const char *args[] = {idx, tombstone};
  size_t lens[] = {strlen(idx), sizeof tombstone - 1};
  redisReply *r;
  int rc = rd_eval(o->cluster, &remove_script, INFINITY, &r, 4, k.keys, 2, args, lens);
  if (rc != TN_OK) return rc;
  if (r->type != REDIS_REPLY_ARRAY || r->elements < 1 ||
      r->element[0]->type != REDIS_REPLY_INTEGER)
    return bad(o, &remove_script, r);
  if (r->element[0]->integer != 1 || r->elements != 2) {
    freeReplyObject(r);
    return TN_ERANGE;
  }
  rc = decode(o, "vector.remove", r->element[1], out);
  freeReplyObject(r);
  return rc;
}

int rd_deque_get(tn_deque_t *d, size_t index, tn_blob_t **out,
                 double timeout) {
  (void)timeout;
  rd_object_t *o = RD(d);
  if (index > (size_t)INT64_MAX) return TN_ERANGE;
  char idx[32];
  snprintf(idx, sizeof idx, "%zu", index);
  const char *argv[] = {"LINDEX", o->key, idx};
  redisReply *r;
  int rc = rd_command(o->cluster, 0, INFINITY, &r, 3, argv, NULL);
  if (rc != TN_OK) return rc;
  if (r->type == REDIS_REPLY_NIL) {
    freeReplyObject(r);
    return TN_ERANGE;
  }
  rc = decode(o, "LINDEX", r, out);
  freeReplyObject(r);
  return rc;
}

int rd_deque_set(tn_deque_t *d, size_t index, tn_blob_t *b, tn_blob_t **old,
                 double timeout) {
  (void)timeout;
  rd_object_t *o = RD(d);
  if (index >= (size_t)INT64_MAX) return TN_ENOMEM;
  char *val;
  size_t len;
  int rc = rd_value_encode(b, &val, &len);
  if (rc != TN_OK) return rc;
  vkeys_t k;
  vkeys_init(&k, o);
  char idx[32];
  snprintf(idx, sizeof idx, "%zu", index);
  const char *args[] = {idx, val, rd_nil_value};
  size_t lens[] = {strlen(idx), len, sizeof rd_nil_value};
  redisReply *r;
  rc = rd_eval(o->cluster, &set_script, INFINITY, &r, 4, k.keys, 3, args, lens);
  free(val);
  if (rc != TN_OK) return rc;
  if (r->type != REDIS_REPLY_ARRAY || r->elements < 1 ||
      r->element[0]->type != REDIS_REPLY_INTEGER)
    return bad(o, &set_script, r);
  if (r->element[0]->integer != 1) {
    freeReplyObject(r);
    return TN_ECLOSED;
  }
  tn_blob_t *prev = NULL;
  if (r->elements == 2) rc = decode(o, "vector.set", r->element[1], &prev);
  freeReplyObject(r);
  tn_blob_release(b); /* stored */
  if (rc != TN_OK) return rc == TN_EPROTO ? TN_OK : rc; /* old unreadable */
  if (old != NULL)
    *old = prev;
  else
    tn_blob_release(prev);
  return TN_OK;
}

/* An integer reply of a simple command; 0 and a recorded error on failure. */
static long long simple_int(rd_object_t *o, const char *cmd, const char *key,
                            const char *field) {
  const char *argv[] = {cmd, key, field};
  redisReply *r;
  int rc = rd_command(o->cluster, 0, INFINITY, &r, field != NULL ? 3 : 2,
                      argv, NULL);
  if (rc != TN_OK) {
    tn_error_pend(rc); /* for tn_error_take */
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

size_t rd_deque_size(tn_deque_t *d) {
  return (size_t)simple_int(RD(d), "LLEN", RD(d)->key, NULL);
}

size_t rd_deque_size_hint(const tn_deque_t *d) {
  rd_object_t *o = RD(d);
  char meta[512];
  long long h = simple_int(o, "HGET", rd_subkey(o, ":meta", meta, sizeof meta),
                           "hint");
  return h > 0 ? (size_t)h : TN_UNBOUNDED;
}

void rd_deque_close(tn_deque_t *d) {
  rd_object_t *o = RD(d);
  vkeys_t k;
  vkeys_init(&k, o);
  redisReply *r;
  int rc = rd_eval(o->cluster, &close_script, INFINITY, &r, 4, k.keys, 0, NULL, NULL);
  if (rc == TN_OK)
    freeReplyObject(r);
  else
    tn_error_pend(rc);
}

int rd_deque_is_closed(tn_deque_t *d) {
  rd_object_t *o = RD(d);
  char meta[512];
  return simple_int(o, "HGET", rd_subkey(o, ":meta", meta, sizeof meta),
                    "closed") != 0;
}

int rd_deque_snapshot(tn_deque_t *d, tn_blob_t ***items, size_t *n,
                      uint64_t *version, double timeout) {
  (void)timeout;
  rd_object_t *o = RD(d);
  vkeys_t k;
  vkeys_init(&k, o);
  redisReply *r;
  int rc = rd_eval(o->cluster, &snapshot_script, INFINITY, &r, 2, k.keys, 0, NULL, NULL);
  if (rc != TN_OK) return rc;
  if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
      r->element[0]->type != REDIS_REPLY_STRING ||
      r->element[1]->type != REDIS_REPLY_ARRAY)
    return bad(o, &snapshot_script, r);
  redisReply *list = r->element[1];
  tn_blob_t **out = NULL;
  if (list->elements > 0 &&
      (out = calloc(list->elements, sizeof *out)) == NULL) {
    freeReplyObject(r);
    return TN_ENOMEM;
  }
  size_t i = 0;
  for (; i < list->elements; i++) {
    rc = decode(o, "vector.snapshot", list->element[i], &out[i]);
    if (rc != TN_OK) break;
  }
  if (rc != TN_OK) {
    tn_blob_array_free(out, i);
    freeReplyObject(r);
    return rc;
  }
  /* tn_blob_array_free frees with tn_free = free: calloc'd is fine. */
  *items = out;
  *n = list->elements;
  *version = strtoull(r->element[0]->str, NULL, 10);
  freeReplyObject(r);
  return TN_OK;
}

int rd_deque_replace(tn_deque_t *d, tn_blob_t **items, size_t n,
                     uint64_t version, double timeout) {
  (void)timeout;
  rd_object_t *o = RD(d);
  vkeys_t k;
  vkeys_init(&k, o);
  const char **args = malloc((n + 1) * sizeof *args);
  size_t *lens = malloc((n + 1) * sizeof *lens);
  char **vals = calloc(n + 1, sizeof *vals);
  char ver[32];
  int rc = args != NULL && lens != NULL && vals != NULL ? TN_OK : TN_ENOMEM;
  snprintf(ver, sizeof ver, "%llu", (unsigned long long)version);
  if (rc == TN_OK) {
    args[0] = ver;
    lens[0] = strlen(ver);
  }
  for (size_t i = 0; rc == TN_OK && i < n; i++) {
    /* sort's blobs are those it read (RD_DATA_ONLY-marked if so) */
    rc = rd_value_encode_read(items[i], o->cluster->data_only, &vals[i],
                              &lens[i + 1]);
    args[i + 1] = vals[i];
  }
  redisReply *r = NULL;
  if (rc == TN_OK)
    rc = rd_eval(o->cluster, &replace_script, INFINITY, &r, 4, k.keys, (int)n + 1, args,
                 lens);
  if (vals != NULL)
    for (size_t i = 0; i < n; i++) free(vals[i]);
  free(vals);
  free(args);
  free(lens);
  if (rc != TN_OK) return rc;
  if (r->type != REDIS_REPLY_INTEGER) return bad(o, &replace_script, r);
  long long res = r->integer;
  freeReplyObject(r);
  if (res == -4) return TN_ECONFLICT;
  if (res == -1) return TN_ECLOSED;
  for (size_t i = 0; i < n; i++) tn_blob_release(items[i]); /* stored */
  return TN_OK;
}

/* ---- batches ------------------------------------------------------------ */

/* ARGV: values... -> 1 pushed (all), -1 closed, -2 no room for all (the
** need recorded: see the top). */
static rd_script_t push_many_script = {
    "vector.pushMany",
    FIX "if closed then fix(n, hint, closed) return -1 end\n"
        "local k = #ARGV\n"
        "if hint > 0 and not room(n, k, hint) then\n"
        "  if k > want then want = k end\n"
        "  redis.call('HSET', KEYS[2], 'want', want, 'wantat', now)\n"
        "  fix(n, hint, closed)\n"
        "  return -2\n"
        "end\n"
        "for j = 1, k, 1000 do\n"
        "  redis.call('RPUSH', KEYS[1], unpack(ARGV, j, math.min(j + 999, k)))\n"
        "end\n"
        "if want > 0 and want <= k then\n"
        "  redis.call('HDEL', KEYS[2], 'want', 'wantat') want = 0\n"
        "end\n"
        "redis.call('HINCRBY', KEYS[2], 'v', 1)\n"
        "fix(n + k, hint, closed)\n"
        "return 1\n",
    "", 0};

/* A batch that gave up clears the need it may have recorded (a larger one
** still waiting records its own again at its next re-check). */
static rd_script_t unwant_script = {
    "vector.unwant",
    FIX "if m[4] then redis.call('HDEL', KEYS[2], 'want', 'wantat') want = 0 end\n"
        "fix(n, hint, closed)\n"
        "return 1\n",
    "", 0};

int rd_deque_push_many(tn_deque_t *d, tn_blob_t *const *items, size_t n,
                       double timeout) {
  rd_object_t *o = RD(d);
  if (n == 0) {
    int closed = rd_deque_is_closed(d), rc = tn_error_take();
    return rc != TN_OK ? rc : closed ? TN_ECLOSED : TN_OK;
  }
  if (n > INT32_MAX / 2) return TN_ENOMEM;
  char **vals = calloc(n, sizeof *vals);
  size_t *lens = malloc(n * sizeof *lens);
  int rc = vals != NULL && lens != NULL ? TN_OK : TN_ENOMEM;
  for (size_t i = 0; rc == TN_OK && i < n; i++)
    rc = rd_value_encode(items[i], &vals[i], &lens[i]);
  vkeys_t k;
  vkeys_init(&k, o);
  double deadline = deadline_of(timeout);
  bool wanted = false; /* a need may be recorded */
  while (rc == TN_OK) {
    redisReply *r;
    rc = rd_eval(o->cluster, &push_many_script, deadline, &r, 4, k.keys,
                 (int)n, (const char **)vals, lens);
    if (rc == TN_ETIMEDOUT && timeout < 0) rc = TN_EAGAIN;
    if (rc != TN_OK) break;
    if (r->type != REDIS_REPLY_INTEGER) {
      rc = bad(o, &push_many_script, r);
      break;
    }
    long long res = r->integer;
    freeReplyObject(r);
    if (res == 1) {
      for (size_t i = 0; i < n; i++) tn_blob_release(items[i]); /* stored */
      wanted = false;
      break;
    }
    if (res == -1) {
      rc = TN_ECLOSED;
      break;
    }
    wanted = true;
    if (timeout < 0) {
      rc = TN_EAGAIN;
      break;
    }
    if (rd_left(deadline) <= 0) {
      rc = TN_ETIMEDOUT;
      break;
    }
    rc = rd_wait_token(o->cluster, k.keys[3], deadline, true);
  }
  if (wanted && rc != TN_ECLOSED) {
    redisReply *r;
    if (rd_eval(o->cluster, &unwant_script, INFINITY, &r, 4, k.keys, 0, NULL,
                NULL) == TN_OK)
      freeReplyObject(r);
  }
  if (vals != NULL)
    for (size_t i = 0; i < n; i++) free(vals[i]);
  free(vals);
  free(lens);
  return rc;
}

/* ARGV: max -> {1, values...} popped, {-1} closed and drained, {0}
** empty. */
static rd_script_t pop_many_script = {
    "vector.popMany",
    FIX "if n == 0 then fix(n, hint, closed) if closed then return {-1} end "
        "return {0} end\n"
        "local k = math.min(n, tonumber(ARGV[1]))\n"
        "local vs = redis.call('LRANGE', KEYS[1], 0, k - 1)\n"
        "for j = 1, #vs do if not ours(vs[j]) then return foreign(j - 1) end end\n"
        "redis.call('LTRIM', KEYS[1], k, -1)\n"
        "redis.call('HINCRBY', KEYS[2], 'v', 1)\n"
        "fix(n - k, hint, closed)\n"
        "table.insert(vs, 1, 1)\n"
        "return vs\n",
    "", 0};

/* ARGV: values... -> 1: popped values put back at the front, in order
** (past the hint and the close: they were in the vector). */
static rd_script_t unpop_many_script = {
    "vector.unpopMany",
    FIX "for j = #ARGV, 1, -1 do redis.call('LPUSH', KEYS[1], ARGV[j]) end\n"
        "redis.call('HINCRBY', KEYS[2], 'v', 1)\n"
        "fix(n + #ARGV, hint, closed)\n"
        "return 1\n",
    "", 0};

int rd_deque_pop_many(tn_deque_t *d, size_t max, tn_blob_t ***items,
                      size_t *n, double timeout) {
  rd_object_t *o = RD(d);
  if (max == 0) return TN_EINVAL;
  vkeys_t k;
  vkeys_init(&k, o);
  char m[32];
  snprintf(m, sizeof m, "%zu", max > (size_t)1 << 40 ? (size_t)1 << 40 : max);
  const char *args[] = {m};
  double deadline = deadline_of(timeout);
  for (;;) {
    redisReply *r;
    int rc = rd_eval(o->cluster, &pop_many_script, deadline, &r, 4, k.keys, 1,
                     args, NULL);
    if (rc == TN_ETIMEDOUT && timeout < 0) rc = TN_EAGAIN;
    if (rc != TN_OK) return rc;
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 1 ||
        r->element[0]->type != REDIS_REPLY_INTEGER)
      return bad(o, &pop_many_script, r);
    long long res = r->element[0]->integer;
    if (res == 1) {
      size_t count = r->elements - 1;
      if (count == 0) return bad(o, &pop_many_script, r);
      tn_blob_t **out = calloc(count, sizeof *out);
      rc = out != NULL ? TN_OK : TN_ENOMEM;
      size_t i = 0;
      for (; rc == TN_OK && i < count; i++)
        rc = decode(o, "vector.popMany", r->element[i + 1], &out[i]);
      if (rc != TN_OK) {
        /* Back at the front, in order; the pop fails with its reason. */
        char saved[512];
        snprintf(saved, sizeof saved, "%s", tn_last_error());
        tn_blob_array_free(out, i); /* a failed one is NULL */
        const char **vals = malloc((count + 1) * sizeof *vals);
        size_t *lens = malloc((count + 1) * sizeof *lens);
        if (vals != NULL && lens != NULL) {
          for (size_t j = 0; j < count; j++) {
            vals[j] = r->element[j + 1]->str;
            lens[j] = r->element[j + 1]->len;
          }
          redisReply *u;
          if (rd_eval(o->cluster, &unpop_many_script, INFINITY, &u, 4, k.keys,
                      (int)count, vals, lens) == TN_OK)
            freeReplyObject(u);
        }
        free(vals);
        free(lens);
        tn_error_set(rc, "%s", saved);
        freeReplyObject(r);
        return rc;
      }
      freeReplyObject(r);
      *items = out; /* calloc'd: tn_blob_array_free frees with free */
      *n = count;
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

/* ---- select ------------------------------------------------------------- */

/*
** KEYS: the four keys of each vector in turn; ARGV: start (0-based) ->
** {1, i, value}: popped from vector i (0-based), the first with a value
** from `start` on; {-1}: every vector closed and drained; {0, i...}: none
** has a value, the i listed are closed and drained. Every vector's keys
** are checked before anything is written, and every token invariant is
** restored (the BLPOP that woke the caller took one vector's token; the
** value may have come from another).
*/
static rd_script_t select_script = {
    "vector.select",
    RD_PROLOGUE
    "local kinds = {'list', 'hash', 'list', 'list'}\n"
    "local function int(x) return x == false or (#x <= 18 and string.match(x, '^%-?%d+$') ~= nil) end\n"
    "local function room(n, k, hint) return (k <= hint and n <= hint - k) or (k > hint and n == 0) end\n"
    "local nv = #KEYS / 4\n"
    "local hint, closed, len, want = {}, {}, {}, {}\n"
    "for v = 0, nv - 1 do\n"
    "  for i = 1, 4 do\n"
    "    local key = KEYS[4 * v + i]\n"
    "    local t = redis.call('TYPE', key)['ok']\n"
    "    if t ~= 'none' and t ~= kinds[i] then return redis.error_reply("
    "'TUNNEL-CORRUPT ' .. key .. ' is a ' .. t .. ', not a ' .. kinds[i] .. ': nothing was changed') end\n"
    "  end\n"
    "  local m = redis.call('HMGET', KEYS[4 * v + 2], 'hint', 'closed', 'v', 'want', 'wantat')\n"
    "  if not int(m[1]) or not int(m[3]) or not int(m[4]) or not int(m[5]) or (m[2] ~= false and m[2] ~= '1') then\n"
    "    return redis.error_reply('TUNNEL-CORRUPT ' .. KEYS[4 * v + 2] .. ' holds a hint, closed, v, want or wantat field tunnel did not write: nothing was changed')\n"
    "  end\n"
    "  hint[v] = tonumber(m[1] or '0')\n"
    "  closed[v] = m[2] ~= false\n"
    "  want[v] = 0\n"
    "  if m[4] and m[5] and now - tonumber(m[5]) <= " RD_WANT_MS " then want[v] = tonumber(m[4]) end\n"
    "  len[v] = redis.call('LLEN', KEYS[4 * v + 1])\n"
    "end\n"
    "local function fix(v)\n"
    "  local n, h, c, items, space = len[v], hint[v], closed[v], KEYS[4 * v + 3], KEYS[4 * v + 4]\n"
    "  if n > 0 or c then\n"
    "    if redis.call('LLEN', items) == 0 then redis.call('RPUSH', items, '1') end\n"
    "  else redis.call('DEL', items) end\n"
    "  if h > 0 then\n"
    "    if (n < h and (want[v] == 0 or room(n, want[v], h))) or c then\n"
    "      if redis.call('LLEN', space) == 0 then redis.call('RPUSH', space, '1') end\n"
    "    else redis.call('DEL', space) end\n"
    "  end\n"
    "end\n"
    "local start = tonumber(ARGV[1])\n"
    "local got, shut = nil, {}\n"
    "for k = 0, nv - 1 do\n"
    "  local v = (start + k) % nv\n"
    "  if len[v] > 0 then\n"
    "    local x = redis.call('LINDEX', KEYS[4 * v + 1], 0)\n"
    "    if type(x) ~= 'string' or string.sub(x, 1, 3) ~= 'TN\\1' then return redis.error_reply("
    "'TUNNEL-CORRUPT the item at 0 of ' .. KEYS[4 * v + 1] .. ' was not written by this tunnel: nothing was changed') end\n"
    "    redis.call('LPOP', KEYS[4 * v + 1])\n"
    "    redis.call('HINCRBY', KEYS[4 * v + 2], 'v', 1)\n"
    "    len[v] = len[v] - 1\n"
    "    got = {1, v, x}\n"
    "    break\n"
    "  elseif closed[v] then shut[#shut + 1] = v end\n"
    "end\n"
    "for v = 0, nv - 1 do fix(v) end\n"
    "if got then return got end\n"
    "if #shut == nv then return {-1} end\n"
    "table.insert(shut, 1, 0)\n"
    "return shut\n",
    "", 0};

static _Thread_local size_t select_turn;

/* Block for one slice in BLPOP over the token lists `keys[0..n)`. */
static int wait_tokens(tn_cluster_t *c, const char **keys, size_t n,
                       double deadline) {
  int rc = tn_cancel_check();
  if (rc != TN_OK) return rc;
  double block = rd_slice(deadline);
  char secs[32];
  snprintf(secs, sizeof secs, "%.3f", block);
  const char **argv = malloc((n + 2) * sizeof *argv);
  if (argv == NULL) return TN_ENOMEM;
  argv[0] = "BLPOP";
  for (size_t i = 0; i < n; i++) argv[i + 1] = keys[i];
  argv[n + 1] = secs;
  redisReply *r;
  rc = rd_command(c, block, deadline, &r, (int)n + 2, argv, NULL);
  if (rc == TN_OK) freeReplyObject(r);
  free(argv);
  return rc;
}

int rd_deque_select(tn_deque_t *const *ds, size_t n, size_t *index,
                    tn_blob_t **out, double timeout) {
  tn_cluster_t *c = RD(ds[0])->cluster;
  for (size_t i = 0; i < n; i++) {
    if (tn_object_type(TN_OBJECT(ds[i])) != TN_TYPE_DEQUE)
      return tn_error_set(TN_EINVAL, "%s is not a vector", RD(ds[i])->name);
    if (RD(ds[i])->cluster != c)
      return tn_error_set(TN_EINVAL,
                          "the vectors must be all of one cluster (vector "
                          "%zu is on %s prefix %s, vector 1 on %s prefix %s)",
                          i + 1, RD(ds[i])->cluster->url,
                          RD(ds[i])->cluster->prefix, c->url, c->prefix);
  }
  if (n > INT32_MAX / 8) return TN_ENOMEM;
  vkeys_t *k = malloc(n * sizeof *k);
  const char **keys = malloc(4 * n * sizeof *keys);
  const char **wait = malloc(n * sizeof *wait);
  if (k == NULL || keys == NULL || wait == NULL) {
    free(k);
    free(keys);
    free(wait);
    return TN_ENOMEM;
  }
  bool *shut = calloc(n, sizeof *shut);
  for (size_t i = 0; i < n; i++) {
    vkeys_init(&k[i], RD(ds[i]));
    memcpy(&keys[4 * i], k[i].keys, 4 * sizeof *keys);
  }
  char start[32];
  snprintf(start, sizeof start, "%zu", select_turn++ % n);
  const char *args[] = {start};
  double deadline = deadline_of(timeout);
  int rc = shut != NULL ? TN_OK : TN_ENOMEM;
  while (rc == TN_OK) {
    redisReply *r;
    rc = rd_eval(c, &select_script, deadline, &r, (int)(4 * n), keys, 1, args,
                 NULL);
    if (rc == TN_ETIMEDOUT && timeout < 0) rc = TN_EAGAIN;
    if (rc != TN_OK) break;
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 1 ||
        r->element[0]->type != REDIS_REPLY_INTEGER) {
      rc = bad(RD(ds[0]), &select_script, r);
      break;
    }
    long long res = r->element[0]->integer;
    if (res == 1) {
      if (r->elements != 3 || r->element[1]->type != REDIS_REPLY_INTEGER ||
          r->element[1]->integer < 0 || (size_t)r->element[1]->integer >= n) {
        rc = bad(RD(ds[0]), &select_script, r);
        break;
      }
      size_t i = (size_t)r->element[1]->integer;
      rc = decode(RD(ds[i]), "vector.select", r->element[2], out);
      if (rc != TN_OK && r->element[2]->type == REDIS_REPLY_STRING)
        unpop(RD(ds[i]), &k[i], r->element[2], true, rc);
      else if (rc == TN_OK)
        *index = i;
      freeReplyObject(r);
      break;
    }
    if (res == -1) {
      freeReplyObject(r);
      rc = TN_ECLOSED;
      break;
    }
    for (size_t j = 1; j < r->elements; j++)
      if (r->element[j]->type == REDIS_REPLY_INTEGER &&
          r->element[j]->integer >= 0 && (size_t)r->element[j]->integer < n)
        shut[r->element[j]->integer] = true;
    freeReplyObject(r);
    if (timeout < 0) {
      rc = TN_EAGAIN;
      break;
    }
    if (rd_left(deadline) <= 0) {
      rc = TN_ETIMEDOUT;
      break;
    }
    /* One BLPOP over the open vectors' K:items (a closed, drained one
    ** keeps its token: it would wake us at once, forever). */
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
      if (!shut[i]) wait[m++] = k[i].keys[2];
    rc = wait_tokens(c, wait, m, deadline);
  }
  free(shut);
  free(wait);
  free(keys);
  free(k);
  return rc;
}
