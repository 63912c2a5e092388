/*
** barrier.c - tunnel.Barrier on Redis: a generation count and the list of
** the round's waiters, each woken by a token in a list of its own. Also
** the wake-up keys that the cluster semaphore and counter waits share.
**
** Keys (K = prefix .. name):
**   K          hash: parties, gen (rounds completed or reset), broken
**   K:w        list: the wake-up keys of the current round's waiters, in
**              arrival order
**   K:wake:T   one waiter's wake-up list (T: a token unique to the call);
**              the round's outcome is pushed there: "T<index>" when it
**              completed, "B" when it broke. It expires an hour after the
**              push (a waiter that died never reads it).
**
** Every step is one script: arrive (the last arrival hands every waiter
** its index and clears K:w), give up (a timeout breaks the round for
** everyone in it; a cancel just leaves it), reset. A waiter blocks in
** BLPOP on its own key, in slices (RD_BLOCK_SLICE; shorter with a cancel
** token), and never polls the barrier: the outcome comes to it. The give-up
** script first takes an outcome already pushed, so a round that completed
** while the waiter's time ran out counts as completed.
**
** Caveats:
** - A waiter whose process dies stays counted in its round: the round
**   completes with it (as with a party that arrived and left). A timeout
**   of the others, or reset, clears it.
** - The scripts push to wake-up keys they read from K:w (checked to lie
**   under K): fine on one server, not for Redis Cluster's key slots.
*/
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "redis.h"

/* Shared by the barrier scripts: types, the hash's fields, wake_all. */
#define BSANE                                                                \
  RD_PROLOGUE                                                                \
  "local kinds = {'hash', 'list'}\n"                                         \
  "for i = 1, 2 do\n"                                                        \
  "  local t = redis.call('TYPE', KEYS[i])['ok']\n"                          \
  "  if t ~= 'none' and t ~= kinds[i] then return redis.error_reply("       \
  "'TUNNEL-CORRUPT ' .. KEYS[i] .. ' is a ' .. t .. ', not a ' .. kinds[i] .. ': nothing was changed') end\n" \
  "end\n"                                                                    \
  "local m = redis.call('HMGET', KEYS[1], 'parties', 'gen', 'broken')\n"     \
  "local function int(x) return #x <= 18 and string.match(x, '^%d+$') ~= nil end\n" \
  "if not m[1] or not int(m[1]) or tonumber(m[1]) < 1 or (m[2] and not int(m[2])) or (m[3] and m[3] ~= '0' and m[3] ~= '1') then\n" \
  "  return redis.error_reply('TUNNEL-CORRUPT ' .. KEYS[1] .. ' is not a barrier tunnel wrote (deleted?): nothing was changed') end\n" \
  "local parties = tonumber(m[1])\n"                                         \
  "local gen = tonumber(m[2] or '0')\n"                                      \
  "local broken = m[3] == '1'\n"                                             \
  "local function wake_all(msg)\n"                                           \
  "  local ws = redis.call('LRANGE', KEYS[2], 0, -1)\n"                      \
  "  for i, w in ipairs(ws) do\n"                                            \
  "    if string.sub(w, 1, #KEYS[1] + 6) == KEYS[1] .. ':wake:' then\n"      \
  "      redis.call('RPUSH', w, msg(i))\n"                                   \
  "      redis.call('PEXPIRE', w, 3600000)\n"                                \
  "    end\n"                                                                \
  "  end\n"                                                                  \
  "  redis.call('DEL', KEYS[2])\n"                                           \
  "end\n"

/* ARGV: parties -> the stored parties (the first creator's). */
static rd_script_t create_script = {
    "barrier.create",
    RD_PROLOGUE
    "local t = redis.call('TYPE', KEYS[1])['ok']\n"
    "if t ~= 'none' and t ~= 'hash' then return redis.error_reply('TUNNEL-CORRUPT ' .. KEYS[1] .. ' is a ' .. t .. ', not a hash: nothing was changed') end\n"
    "redis.call('HSETNX', KEYS[1], 'parties', ARGV[1])\n"
    "return redis.call('HGET', KEYS[1], 'parties')\n",
    "", 0};

/* ARGV: wake key -> {1, parties} completed it, {0} waits, {-1} broken. */
static rd_script_t arrive_script = {
    "barrier.wait",
    BSANE
    "if broken then return {-1} end\n"
    "if redis.call('LLEN', KEYS[2]) + 1 >= parties then\n"
    "  wake_all(function(i) return 'T' .. i end)\n"
    "  redis.call('HSET', KEYS[1], 'gen', gen + 1)\n"
    "  return {1, parties}\n"
    "end\n"
    "redis.call('RPUSH', KEYS[2], ARGV[1])\n"
    "return {0}\n",
    "", 0};

/* ARGV: wake key, 'timeout' | 'cancel' -> {2, outcome} it came already,
** {3} the timeout broke the round, {4} left the round, {5} not in the
** round and no outcome (it expired): broken. */
static rd_script_t give_up_script = {
    "barrier.wait",
    BSANE
    "local msg = redis.call('LPOP', ARGV[1])\n"
    "if msg then return {2, msg} end\n"
    "if redis.call('LREM', KEYS[2], 1, ARGV[1]) == 1 then\n"
    "  if ARGV[2] == 'timeout' then\n"
    "    wake_all(function() return 'B' end)\n"
    "    redis.call('HSET', KEYS[1], 'broken', '1')\n"
    "    return {3}\n"
    "  end\n"
    "  return {4}\n"
    "end\n"
    "return {5}\n",
    "", 0};

static rd_script_t reset_script = {
    "barrier.reset",
    BSANE
    "wake_all(function() return 'B' end)\n"
    "redis.call('HSET', KEYS[1], 'broken', '0', 'gen', gen + 1)\n"
    "return {1}\n",
    "", 0};

/* -> {parties, waiting, broken} */
static rd_script_t state_script = {
    "barrier.state",
    BSANE
    "return {parties, redis.call('LLEN', KEYS[2]), broken and 1 or 0}\n",
    "", 0};

typedef struct bkeys {
  char w[512];
  const char *keys[2];
} bkeys_t;

static void bkeys_init(bkeys_t *k, const rd_object_t *o) {
  k->keys[0] = o->key;
  k->keys[1] = rd_subkey(o, ":w", k->w, sizeof k->w);
}

/* ---- wake-up keys (shared with semaphore.c and counter.c) ----------------- */

void rd_wake_key(const rd_object_t *o, char *buf, size_t size) {
  static atomic_ulong serial;
  static atomic_ulong nonce;
  unsigned long n = atomic_load(&nonce);
  if (n == 0) {
    unsigned long fresh =
        ((unsigned long)(tn_clock() * 1e9) ^ (unsigned long)&nonce) | 1;
    n = atomic_compare_exchange_strong(&nonce, &n, fresh) ? fresh : n;
  }
  snprintf(buf, size, "%s:wake:%d-%lx-%lu", o->key, (int)getpid(), n,
           atomic_fetch_add(&serial, 1) + 1);
}

int rd_wake_wait(tn_cluster_t *c, const char *key, double block,
                 double deadline, char *buf, size_t size, bool *got) {
  *got = false;
  int rc = tn_cancel_check();
  if (rc != TN_OK) return rc;
  if (block < 0.01) block = 0.01;
  char secs[32];
  snprintf(secs, sizeof secs, "%.3f", block);
  const char *argv[] = {"BLPOP", key, secs};
  redisReply *r;
  rc = rd_command(c, block, deadline, &r, 3, argv, NULL);
  if (rc != TN_OK) return rc;
  if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
      r->element[1]->type == REDIS_REPLY_STRING) {
    snprintf(buf, size, "%.*s", (int)r->element[1]->len, r->element[1]->str);
    *got = true;
  } else if (r->type != REDIS_REPLY_NIL) {
    rc = rd_bad_reply(c, "BLPOP", r);
  }
  freeReplyObject(r);
  return rc;
}

/* ---- the barrier ------------------------------------------------------------ */

static int eval_ints(rd_object_t *o, rd_script_t *s, double deadline,
                     int nargs, const char **args, long long *v, size_t nv,
                     char *str, size_t strsize) {
  bkeys_t k;
  bkeys_init(&k, o);
  redisReply *r;
  int rc = rd_eval(o->cluster, s, deadline, &r, 2, k.keys, nargs, args, NULL);
  if (rc != TN_OK) return rc;
  if (r->type != REDIS_REPLY_ARRAY || r->elements < 1 ||
      r->elements > nv + 1) {
    rc = rd_bad_reply(o->cluster, s->name, r);
    freeReplyObject(r);
    return rc;
  }
  for (size_t i = 0; i < nv; i++) v[i] = 0;
  for (size_t i = 0; i < r->elements; i++) {
    redisReply *e = r->element[i];
    if (e->type == REDIS_REPLY_INTEGER && i < nv) {
      v[i] = e->integer;
    } else if (e->type == REDIS_REPLY_STRING && str != NULL) {
      snprintf(str, strsize, "%.*s", (int)e->len, e->str);
    } else {
      rc = rd_bad_reply(o->cluster, s->name, r);
      break;
    }
  }
  freeReplyObject(r);
  return rc;
}

int rd_barrier_create(rd_object_t *o, int parties) {
  char p[32];
  snprintf(p, sizeof p, "%d", parties);
  const char *keys[] = {o->key};
  const char *args[] = {p};
  redisReply *r;
  int rc = rd_eval(o->cluster, &create_script, INFINITY, &r, 1, keys, 1,
                   args, NULL);
  if (rc == TN_OK) freeReplyObject(r);
  return rc;
}

/* An outcome pushed to a waiter: "T<index>" or "B". */
static int outcome(const char *msg, int *index) {
  if (msg[0] == 'T') {
    if (index != NULL) *index = atoi(msg + 1);
    return TN_OK;
  }
  return TN_EBROKEN;
}

/* Leave the round: `why` "timeout" or "cancel"; `rc` the reason to give
** when it left without an outcome. */
static int give_up(rd_object_t *o, const char *wkey, const char *why, int rc,
                   int *index) {
  const char *args[] = {wkey, why};
  long long v[1];
  char msg[64] = "";
  int e = eval_ints(o, &give_up_script, RD_NO_EXPIRY, 2, args, v, 1, msg,
                    sizeof msg);
  if (e != TN_OK) return e;
  if (v[0] == 2) return outcome(msg, index);
  if (v[0] == 3 || v[0] == 4) return rc;
  return TN_EBROKEN;
}

int rd_barrier_wait(tn_barrier_t *b, double timeout, int *index) {
  rd_object_t *o = RD(b);
  double deadline = timeout < 0     ? tn_clock()
                    : timeout < 1e9 ? tn_clock() + timeout
                                    : INFINITY;
  char wkey[600];
  rd_wake_key(o, wkey, sizeof wkey);
  const char *args[] = {wkey};
  long long v[2];
  int rc = eval_ints(o, &arrive_script, deadline, 1, args, v, 2, NULL, 0);
  if (rc == TN_ETIMEDOUT && timeout < 0) rc = TN_EAGAIN;
  if (rc != TN_OK) return rc;
  if (v[0] == -1) return TN_EBROKEN;
  if (v[0] == 1) {
    if (index != NULL) *index = (int)v[1];
    return TN_OK;
  }
  for (;;) {
    double left = rd_left(deadline);
    if (!(timeout > 0) || left <= 0)
      return give_up(o, wkey, "timeout", TN_ETIMEDOUT, index);
    char msg[64];
    bool got;
    rc = rd_wake_wait(o->cluster, wkey, rd_slice(deadline), deadline, msg,
                      sizeof msg, &got);
    if (rc == TN_ECANCELED || rc == TN_EINTR)
      return give_up(o, wkey, "cancel", rc, index);
    if (rc != TN_OK) return rc; /* the server is gone: it stays counted */
    if (got) return outcome(msg, index);
  }
}

int rd_barrier_reset(tn_barrier_t *b) {
  long long v[1];
  return eval_ints(RD(b), &reset_script, INFINITY, 0, NULL, v, 1, NULL, 0);
}

int rd_barrier_state(tn_barrier_t *b, int *parties, int *waiting,
                     int *broken) {
  long long v[3];
  int rc = eval_ints(RD(b), &state_script, INFINITY, 0, NULL, v, 3, NULL, 0);
  if (rc != TN_OK) return rc;
  if (parties != NULL) *parties = (int)v[0];
  if (waiting != NULL) *waiting = (int)v[1];
  if (broken != NULL) *broken = (int)v[2];
  return TN_OK;
}

int tn_cluster_barrier(tn_cluster_t *c, const char *name, int parties,
                       tn_barrier_t **out) {
  if (name == NULL || name[0] == '\0')
    return tn_error_set(TN_EINVAL, "a cluster object needs a non-empty name");
  if (parties < 1) return TN_EINVAL;
  tn_object_t *o;
  int rc = rd_object_get(c, TN_TYPE_BARRIER, name, &o);
  if (rc != TN_OK) return rc;
  if ((rc = rd_barrier_create(RD(o), parties)) != TN_OK) {
    tn_object_release(o);
    return rc;
  }
  *out = (tn_barrier_t *)o;
  return TN_OK;
}
