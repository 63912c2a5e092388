/*
** semaphore.c - tunnel.Semaphore on Redis, with leased permits (the shape
** of Redisson's RPermitExpirableSemaphore, woken by tokens rather than
** pub/sub).
**
** Keys (K = prefix .. name):
**   K          hash: permits (the total), used (taken and not expired)
**   K:held     hash: holder token -> permits it holds
**   K:leases   sorted set: holder token, scored by its lease's end (ms,
**              server time)
**   K:w        list: wake-up keys of waiting takers (barrier.c's K:wake:T)
**
** A holder is a process: one token per process ("pid-nonce"), whatever
** thread took or gives back the permits. Every script first reclaims the
** permits of holders whose lease ended (a process that died, or stalled
** longer than a lease) and wakes the waiters when it did. While this
** process holds permits of a semaphore, the renewal thread of the callback
** locks (atomic.c) extends its lease every RD_RENEW_MS; so a holder that
** is kill -9'd gives its permits back within RD_LEASE_MS.
**
** Waiting. A taker that cannot be served registers its wake-up key in K:w
** in the same script; every release (and every reclaim) pushes a token to
** each registered key and clears K:w, so all waiters try again (no
** polling, and no lost wake-up: registering and checking are one script).
** A waiter blocks at most until the earliest lease ends (the script tells
** it when), so permits of a dead holder are taken up without a release.
**
** Caveats:
** - Not fair: every waiter tries again after a release.
** - Permits can be given back only by the process that took them.
** - A process whose lease ran out (it stalled) learns it at its release:
**   TN_EIO (tunnel.h, tn_semaphore_release).
*/
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "redis.h"

/* Checks, then the reclaim of expired leases (which may write: after the
** checks). ARGV[1] is the holder token in every script. */
#define SSANE                                                                \
  RD_PROLOGUE                                                                \
  "local kinds = {'hash', 'hash', 'zset', 'list'}\n"                         \
  "for i = 1, 4 do\n"                                                        \
  "  local t = redis.call('TYPE', KEYS[i])['ok']\n"                          \
  "  if t ~= 'none' and t ~= kinds[i] then return redis.error_reply("       \
  "'TUNNEL-CORRUPT ' .. KEYS[i] .. ' is a ' .. t .. ', not a ' .. kinds[i] .. ': nothing was changed') end\n" \
  "end\n"                                                                    \
  "local m = redis.call('HMGET', KEYS[1], 'permits', 'used')\n"              \
  "local function int(x) return #x <= 18 and string.match(x, '^%d+$') ~= nil end\n" \
  "if not m[1] or not int(m[1]) or tonumber(m[1]) < 1 or (m[2] and not int(m[2])) then\n" \
  "  return redis.error_reply('TUNNEL-CORRUPT ' .. KEYS[1] .. ' is not a semaphore tunnel wrote (deleted?): nothing was changed') end\n" \
  "local permits = tonumber(m[1])\n"                                         \
  "local used = tonumber(m[2] or '0')\n"                                     \
  "local function wake_all()\n"                                              \
  "  local ws = redis.call('LRANGE', KEYS[4], 0, -1)\n"                      \
  "  for _, w in ipairs(ws) do\n"                                            \
  "    if string.sub(w, 1, #KEYS[1] + 6) == KEYS[1] .. ':wake:' then\n"      \
  "      redis.call('RPUSH', w, '1')\n"                                      \
  "      redis.call('PEXPIRE', w, 60000)\n"                                  \
  "    end\n"                                                                \
  "  end\n"                                                                  \
  "  redis.call('DEL', KEYS[4])\n"                                           \
  "end\n"                                                                    \
  "local expired = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now)\n"      \
  "if #expired > 0 then\n"                                                   \
  "  for _, t in ipairs(expired) do\n"                                       \
  "    used = used - (tonumber(redis.call('HGET', KEYS[2], t) or '0') or 0)\n" \
  "    redis.call('HDEL', KEYS[2], t)\n"                                     \
  "  end\n"                                                                  \
  "  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)\n"                 \
  "  if used < 0 then used = 0 end\n"                                        \
  "  redis.call('HSET', KEYS[1], 'used', used)\n"                            \
  "  wake_all()\n"                                                           \
  "end\n"

/* ARGV: permits -> the stored permits (the first creator's). */
static rd_script_t create_script = {
    "semaphore.create",
    RD_PROLOGUE
    "local t = redis.call('TYPE', KEYS[1])['ok']\n"
    "if t ~= 'none' and t ~= 'hash' then return redis.error_reply('TUNNEL-CORRUPT ' .. KEYS[1] .. ' is a ' .. t .. ', not a hash: nothing was changed') end\n"
    "redis.call('HSETNX', KEYS[1], 'permits', ARGV[1])\n"
    "return redis.call('HGET', KEYS[1], 'permits')\n",
    "", 0};

/* ARGV: token, n, lease, wake key ('' : do not wait) -> {1} taken,
** {-1, permits} n is more than the total, {0, ms} not now (ms: until the
** earliest lease ends, -1: none). */
static rd_script_t acquire_script = {
    "semaphore.acquire",
    SSANE
    "local n = tonumber(ARGV[2])\n"
    "if n > permits then return {-1, permits} end\n"
    "if permits - used >= n then\n"
    "  redis.call('HINCRBY', KEYS[2], ARGV[1], n)\n"
    "  redis.call('ZADD', KEYS[3], now + tonumber(ARGV[3]), ARGV[1])\n"
    "  redis.call('HSET', KEYS[1], 'used', used + n)\n"
    "  return {1}\n"
    "end\n"
    "if ARGV[4] ~= '' then redis.call('RPUSH', KEYS[4], ARGV[4]) end\n"
    "local first = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')\n"
    "if first[2] then return {0, math.max(0, tonumber(first[2]) - now)} end\n"
    "return {0, -1}\n",
    "", 0};

/* ARGV: token, n -> {given, held before}: gives back min(n, held). */
static rd_script_t release_script = {
    "semaphore.release",
    SSANE
    "local held = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0') or 0\n"
    "local give = math.min(held, tonumber(ARGV[2]))\n"
    "if give > 0 then\n"
    "  if held == give then\n"
    "    redis.call('HDEL', KEYS[2], ARGV[1])\n"
    "    redis.call('ZREM', KEYS[3], ARGV[1])\n"
    "  else redis.call('HINCRBY', KEYS[2], ARGV[1], -give) end\n"
    "  redis.call('HSET', KEYS[1], 'used', math.max(0, used - give))\n"
    "  wake_all()\n"
    "end\n"
    "return {give, held}\n",
    "", 0};

/* ARGV: token, lease -> {1} renewed, {0} nothing held (lost). */
static rd_script_t renew_script = {
    "semaphore.renew",
    SSANE
    "if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then\n"
    "  redis.call('ZADD', KEYS[3], now + tonumber(ARGV[2]), ARGV[1])\n"
    "  return {1}\n"
    "end\n"
    "return {0}\n",
    "", 0};

/* ARGV: token -> {available, permits} */
static rd_script_t available_script = {
    "semaphore.available",
    SSANE "return {math.max(0, permits - used), permits}\n", "", 0};

/* ARGV: token, wake key -> {1}: a waiter that leaves takes its key out. */
static rd_script_t unwait_script = {
    "semaphore.unwait",
    SSANE
    "redis.call('LREM', KEYS[4], 0, ARGV[2])\n"
    "redis.call('DEL', ARGV[2])\n"
    "return {1}\n",
    "", 0};

typedef struct skeys {
  char held[512], leases[512], w[512];
  const char *keys[4];
} skeys_t;

static void skeys_init(skeys_t *k, const rd_object_t *o) {
  k->keys[0] = o->key;
  k->keys[1] = rd_subkey(o, ":held", k->held, sizeof k->held);
  k->keys[2] = rd_subkey(o, ":leases", k->leases, sizeof k->leases);
  k->keys[3] = rd_subkey(o, ":w", k->w, sizeof k->w);
}

/* This process's holder token: made once. */
static char token_buf[64];
static pthread_once_t token_once = PTHREAD_ONCE_INIT;
static void token_make(void) {
  unsigned long nonce =
      ((unsigned long)(tn_clock() * 1e9) ^ (unsigned long)&token_buf) | 1;
  snprintf(token_buf, sizeof token_buf, "%d-%lx", (int)getpid(), nonce);
}

static const char *token_of_process(void) {
  pthread_once(&token_once, token_make);
  return token_buf;
}

/* Run `s` with ARGV token + args; the reply's integers into v[0..nv). */
static int eval_ints(rd_object_t *o, rd_script_t *s, double deadline,
                     int nargs, const char **args, long long *v, size_t nv) {
  skeys_t k;
  skeys_init(&k, o);
  const char *all[5];
  all[0] = token_of_process();
  for (int i = 0; i < nargs; i++) all[i + 1] = args[i];
  redisReply *r;
  int rc = rd_eval(o->cluster, s, deadline, &r, 4, k.keys, nargs + 1, all,
                   NULL);
  if (rc != TN_OK) return rc;
  if (r->type != REDIS_REPLY_ARRAY || r->elements < 1 || r->elements > nv) {
    rc = rd_bad_reply(o->cluster, s->name, r);
    freeReplyObject(r);
    return rc;
  }
  for (size_t i = 0; i < nv; i++) v[i] = 0;
  for (size_t i = 0; i < r->elements; i++) {
    if (r->element[i]->type != REDIS_REPLY_INTEGER) {
      rc = rd_bad_reply(o->cluster, s->name, r);
      break;
    }
    v[i] = r->element[i]->integer;
  }
  freeReplyObject(r);
  return rc;
}

/* ---- what this process holds (renewed by atomic.c's renewal thread) ------- */

typedef struct held {
  tn_object_t *object; /* a reference while count > 0 */
  int64_t count;
  struct held *next;
} held_t;

static pthread_mutex_t held_mutex = PTHREAD_MUTEX_INITIALIZER;
static held_t *helds;

static held_t *find_held(const tn_object_t *o) {
  for (held_t *h = helds; h != NULL; h = h->next)
    if (h->object == o) return h;
  return NULL;
}

/* Count `n` more permits held of `o` (n < 0: fewer); the entry (and its
** reference) goes when the count reaches 0. TN_ENOMEM. */
static int held_add(tn_object_t *o, int64_t n) {
  tn_object_t *drop = NULL;
  int rc = TN_OK;
  pthread_mutex_lock(&held_mutex);
  held_t *h = find_held(o);
  if (h == NULL && n > 0) {
    h = calloc(1, sizeof *h);
    if (h == NULL) {
      rc = TN_ENOMEM;
    } else {
      h->object = tn_object_retain(o);
      h->next = helds;
      helds = h;
    }
  }
  if (h != NULL) {
    h->count += n;
    if (h->count <= 0) {
      for (held_t **p = &helds; *p != NULL; p = &(*p)->next)
        if (*p == h) {
          *p = h->next;
          break;
        }
      drop = h->object;
      free(h);
    }
  }
  pthread_mutex_unlock(&held_mutex);
  if (drop != NULL) tn_object_release(drop);
  return rc;
}

static int64_t held_count(const tn_object_t *o) {
  pthread_mutex_lock(&held_mutex);
  held_t *h = find_held(o);
  int64_t n = h != NULL ? h->count : 0;
  pthread_mutex_unlock(&held_mutex);
  return n;
}

void rd_semaphore_renew(void) {
  pthread_mutex_lock(&held_mutex);
  size_t n = 0;
  for (held_t *h = helds; h != NULL; h = h->next) n++;
  tn_object_t **objs = n > 0 ? malloc(n * sizeof *objs) : NULL;
  size_t k = 0;
  if (objs != NULL)
    for (held_t *h = helds; h != NULL; h = h->next)
      objs[k++] = tn_object_retain(h->object);
  pthread_mutex_unlock(&held_mutex);
  char lease[16];
  snprintf(lease, sizeof lease, "%d", RD_LEASE_MS);
  const char *args[] = {lease};
  for (size_t i = 0; i < k; i++) {
    long long v[1];
    /* Lost (0) is learnt at the release; a failure: the next renewal. */
    (void)eval_ints(RD(objs[i]), &renew_script, RD_NO_EXPIRY, 1, args, v, 1);
    tn_object_release(objs[i]);
  }
  free(objs);
}

/* ---- the operations --------------------------------------------------------- */

int rd_semaphore_create(rd_object_t *o, int64_t permits) {
  char p[32];
  snprintf(p, sizeof p, "%lld", (long long)permits);
  const char *keys[] = {o->key};
  const char *args[] = {p};
  redisReply *r;
  int rc = rd_eval(o->cluster, &create_script, INFINITY, &r, 1, keys, 1,
                   args, NULL);
  if (rc == TN_OK) freeReplyObject(r);
  return rc;
}

static void unwait(rd_object_t *o, const char *wkey) {
  const char *args[] = {wkey};
  long long v[1];
  char saved[512];
  snprintf(saved, sizeof saved, "%s", tn_last_error());
  (void)eval_ints(o, &unwait_script, RD_NO_EXPIRY, 1, args, v, 1);
  tn_error_set(TN_OK, "%s", saved); /* keep the reason the wait ended */
}

int rd_semaphore_acquire(tn_semaphore_t *s, int64_t n, double timeout) {
  rd_object_t *o = RD(s);
  if (n < 1) return TN_EINVAL;
  double deadline = timeout < 0     ? tn_clock()
                    : timeout < 1e9 ? tn_clock() + timeout
                                    : INFINITY;
  char ns[32], lease[16], wkey[600];
  snprintf(ns, sizeof ns, "%lld", (long long)n);
  snprintf(lease, sizeof lease, "%d", RD_LEASE_MS);
  bool waits = timeout > 0;
  if (waits) rd_wake_key(o, wkey, sizeof wkey);
  const char *args[] = {ns, lease, waits ? wkey : ""};
  bool registered = false;
  int rc;
  for (;;) {
    long long v[2];
    rc = eval_ints(o, &acquire_script, deadline, 3, args, v, 2);
    if (rc == TN_ETIMEDOUT && timeout < 0) rc = TN_EAGAIN;
    if (rc != TN_OK) break;
    if (v[0] == 1) {
      rc = held_add(TN_OBJECT(s), n);
      if (rc == TN_OK) rd_renewer_start();
      break;
    }
    if (v[0] == -1) {
      rc = TN_EINVAL;
      break;
    }
    registered = waits;
    if (!waits) {
      rc = timeout < 0 ? TN_EAGAIN : TN_ETIMEDOUT;
      break;
    }
    if (rd_left(deadline) <= 0) {
      rc = TN_ETIMEDOUT;
      break;
    }
    /* Until woken, or the earliest lease ends (a dead holder's permits). */
    double block = rd_slice(deadline);
    if (v[1] >= 0 && v[1] / 1000.0 + 0.005 < block)
      block = v[1] / 1000.0 + 0.005;
    char msg[16];
    bool got;
    rc = rd_wake_wait(o->cluster, wkey, block, deadline, msg, sizeof msg,
                      &got);
    if (rc != TN_OK) break;
  }
  if (registered) unwait(o, wkey);
  return rc;
}

int rd_semaphore_release(tn_semaphore_t *s, int64_t n) {
  rd_object_t *o = RD(s);
  if (n < 1) return TN_EINVAL;
  if (held_count(TN_OBJECT(s)) < n) return TN_ERANGE;
  char ns[32];
  snprintf(ns, sizeof ns, "%lld", (long long)n);
  const char *args[] = {ns};
  long long v[2];
  int rc = eval_ints(o, &release_script, INFINITY, 1, args, v, 2);
  if (rc != TN_OK) return rc;
  held_add(TN_OBJECT(s), -n);
  if (v[0] < n)
    return tn_error_set(TN_EIO,
                        "semaphore.release %s: the lease of %lld "
                        "permit(s) had expired (the holder stalled longer "
                        "than the lease): the server had given them back "
                        "already",
                        o->key, (long long)(n - v[0]));
  return TN_OK;
}

int rd_semaphore_available(tn_semaphore_t *s, int64_t *available,
                           int64_t *permits) {
  long long v[2];
  int rc = eval_ints(RD(s), &available_script, INFINITY, 0, NULL, v, 2);
  if (rc != TN_OK) return rc;
  if (available != NULL) *available = v[0];
  if (permits != NULL) *permits = v[1];
  return TN_OK;
}

int tn_cluster_semaphore(tn_cluster_t *c, const char *name, int64_t permits,
                         tn_semaphore_t **out) {
  if (name == NULL || name[0] == '\0')
    return tn_error_set(TN_EINVAL, "a cluster object needs a non-empty name");
  if (permits < 1) return TN_EINVAL;
  tn_object_t *o;
  int rc = rd_object_get(c, TN_TYPE_SEMAPHORE, name, &o);
  if (rc != TN_OK) return rc;
  if ((rc = rd_semaphore_create(RD(o), permits)) != TN_OK) {
    tn_object_release(o);
    return rc;
  }
  *out = (tn_semaphore_t *)o;
  return TN_OK;
}
