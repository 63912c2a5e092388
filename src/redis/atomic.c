/*
** atomic.c - tunnel.Atomic on a cluster (a cell: one stored value), and
** the reader-writer callback lock of every cluster object, with leases.
**
** Keys (K = prefix .. name):
**   K            the Atomic's value
**   K:lock:w     the writer's token, expiring after its lease (PX)
**   K:lock:r     sorted set: reader tokens scored by their lease's end
**   K:lock:ww    a waiting writer's token (holds off new readers), PX
**   K:lock:q     wake-up token list for waiters
**
** Leases. A lock is granted for RD_LEASE_MS; while this process holds it,
** a renewal thread (one per process, started on the first lock) renews it
** every RD_RENEW_MS. A process that dies holding a lock stops renewing and
** the lock frees itself when the lease runs out, so others wait at most
** one lease. The price: a holder that stalls longer than a lease (stopped
** with SIGSTOP, swapped out, cut off from the server) loses the lock
** without knowing it while it still runs its callback; another client may
** then take the lock. Atomic:write stores its value only if it still holds
** the lease (a fenced SET): a stalled writer's store fails with TN_EIO
** ("the lease expired") instead of overwriting a newer value. Reads under a
** lost lease may have seen a value that changed meanwhile.
**
** Waiting. A lock that is busy is waited for in BLPOP on K:lock:q, which
** every release (and every reader that gets in) refills; each block lasts
** at most RD_BLOCK_SLICE seconds, so an expired lease is noticed within
** that time even when no release comes.
*/
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "redis.h"

/*
** The lock scripts' prologue: the deadline (RD_PROLOGUE, which sets
** `now`), then lock state tunnel did not write is treated as expired and
** removed, before anything else is written: a lease tunnel grants is a
** token ("pid-hex-n") with a time to live of at most one lease, so a
** K:lock:w or K:lock:ww without one (`SET K:lock:w garbage`, no expiry)
** would otherwise hold the lock forever. K:lock:r must be a sorted set
** whose scores end within one lease, K:lock:q a list; anything else goes.
** ARGV[2] is the lease (ms) in the scripts that take a lock.
*/
#define SANE                                                              \
  RD_PROLOGUE                                                             \
  "local lease = tonumber(ARGV[2]) or 10000\n"                            \
  "local function ours(x) return string.match(x, '^%d+%-%x+%-%d+$') ~= nil end\n" \
  "for _, i in ipairs({1, 3}) do\n"                                       \
  "  local t = redis.call('TYPE', KEYS[i])['ok']\n"                       \
  "  if t ~= 'none' then\n"                                               \
  "    local ttl = redis.call('PTTL', KEYS[i])\n"                         \
  "    if t ~= 'string' or ttl < 0 or ttl > lease or not ours(redis.call('GET', KEYS[i])) then\n" \
  "      redis.call('DEL', KEYS[i]) end\n"                                \
  "  end\n"                                                               \
  "end\n"                                                                 \
  "local tr = redis.call('TYPE', KEYS[2])['ok']\n"                        \
  "if tr ~= 'none' and tr ~= 'zset' then redis.call('DEL', KEYS[2]) end\n" \
  "local tq = redis.call('TYPE', KEYS[4])['ok']\n"                        \
  "if tq ~= 'none' and tq ~= 'list' then redis.call('DEL', KEYS[4]) end\n" \
  "redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)\n"                \
  "redis.call('ZREMRANGEBYSCORE', KEYS[2], '(' .. (now + lease), '+inf')\n"

#define WAKE "if redis.call('LLEN', KEYS[4]) == 0 then redis.call('RPUSH', KEYS[4], '1') end\n"

/*
** A granted lock of an Atomic (a fifth key: its value) returns the value
** too, so the callback's data costs no GET of its own (one round trip
** less: Atomic:read is two, the lock and the unlock). GRANTED is the
** reply: {1, 1, value} (a string), {1, 0} (no value: nil), or 1 (no
** fifth key, or a key of another type: the GET after the lock reports
** it). The value cannot change while the lock is held: tunnel stores it
** only under the write lock (the fenced set below), and the caveat of a
** lost lease (the top) is the same as for a GET.
*/
#define GRANTED                                                           \
  "if KEYS[5] then\n"                                                     \
  "  local tv = redis.call('TYPE', KEYS[5])['ok']\n"                      \
  "  if tv == 'string' then return {1, 1, redis.call('GET', KEYS[5])} end\n" \
  "  if tv == 'none' then return {1, 0} end\n"                            \
  "end\n"                                                                 \
  "return 1\n"

/* KEYS w r ww q [value]; ARGV token lease -> granted (GRANTED), 0 busy. */
static rd_script_t read_lock_script = {
    "lock.read",
    SANE
    "if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('EXISTS', KEYS[3]) == 1 then return 0 end\n"
    "redis.call('ZADD', KEYS[2], now + lease, ARGV[1])\n"
    "redis.call('PEXPIRE', KEYS[2], 2 * lease)\n"
    WAKE GRANTED,
    "", 0};

/* KEYS w r ww q [value]; ARGV token lease -> granted (GRANTED), 0 busy. */
static rd_script_t write_lock_script = {
    "lock.write",
    SANE
    "local ww = redis.call('GET', KEYS[3])\n"
    "if redis.call('EXISTS', KEYS[1]) == 0 and redis.call('ZCARD', KEYS[2]) == 0 then\n"
    "  redis.call('SET', KEYS[1], ARGV[1], 'PX', lease)\n"
    "  if ww == ARGV[1] then redis.call('DEL', KEYS[3]) end\n"
    GRANTED
    "end\n"
    "if not ww or ww == ARGV[1] then redis.call('SET', KEYS[3], ARGV[1], 'PX', lease) end\n"
    "return 0\n",
    "", 0};

/* KEYS w r ww q; ARGV token -> 1 released, 0 not held (lease lost). */
static rd_script_t read_unlock_script = {
    "unlock.read",
    SANE "local n = redis.call('ZREM', KEYS[2], ARGV[1])\n" WAKE "return n\n",
    "", 0};

static rd_script_t write_unlock_script = {
    "unlock.write",
    SANE "local held = redis.call('GET', KEYS[1]) == ARGV[1]\n"
    "if held then redis.call('DEL', KEYS[1]) end\n" WAKE
    "if held then return 1 end return 0\n",
    "", 0};

/* A waiting writer gives up: readers it held off may go. */
static rd_script_t give_up_script = {
    "lock.giveup",
    SANE "if redis.call('GET', KEYS[3]) == ARGV[1] then redis.call('DEL', KEYS[3]) end\n" WAKE
    "return 1\n",
    "", 0};

/* KEYS w r; ARGV token lease write -> 1 renewed, 0 lost. */
static rd_script_t renew_script = {
    "lock.renew",
    RD_PROLOGUE
    "if ARGV[3] == '1' then\n"
    "  if redis.call('GET', KEYS[1]) == ARGV[1] then\n"
    "    redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end\n"
    "  return 0\n"
    "end\n"
    "if redis.call('ZSCORE', KEYS[2], ARGV[1]) then\n"
    "  redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), ARGV[1])\n"
    "  redis.call('PEXPIRE', KEYS[2], 2 * tonumber(ARGV[2])) return 1 end\n"
    "return 0\n",
    "", 0};

/* KEYS data w; ARGV value token -> 1 stored, 0 the lease is lost. */
static rd_script_t fenced_set_script = {
    "atomic.set",
    RD_PROLOGUE
    "if ARGV[2] ~= '' and redis.call('GET', KEYS[2]) ~= ARGV[2] then return 0 end\n"
    "redis.call('SET', KEYS[1], ARGV[1])\n"
    "return 1\n",
    "", 0};

/* KEYS data; ARGV value -> 1 (stored only if there is none yet). */
static rd_script_t create_script = {
    "atomic.create",
    RD_PROLOGUE "redis.call('SET', KEYS[1], ARGV[1], 'NX')\nreturn 1\n",
    "", 0};

/* ---- held locks ----------------------------------------------------------- */

typedef struct lease {
  tn_object_t *object; /* identity only */
  pthread_t owner;
  bool write;
  bool lost; /* a renewal found it gone */
  char token[64];
  /* An Atomic's value as the lock found it (GRANTED), for the first get
  ** under the lock; under leases_mutex once the lease is listed. */
  bool has_value;
  char *value; /* NULL: nil */
  size_t value_len;
  struct lease *next;
} lease_t;

static pthread_mutex_t leases_mutex = PTHREAD_MUTEX_INITIALIZER;
static lease_t *leases;
static pthread_once_t renewer_once = PTHREAD_ONCE_INIT;
static atomic_ulong token_counter;

typedef struct lkeys {
  char w[512], r[512], ww[512], q[512];
  const char *keys[5]; /* the fifth: an Atomic's value (lock scripts) */
} lkeys_t;

static void lkeys_init(lkeys_t *k, const rd_object_t *o) {
  k->keys[0] = rd_subkey(o, ":lock:w", k->w, sizeof k->w);
  k->keys[1] = rd_subkey(o, ":lock:r", k->r, sizeof k->r);
  k->keys[2] = rd_subkey(o, ":lock:ww", k->ww, sizeof k->ww);
  k->keys[3] = rd_subkey(o, ":lock:q", k->q, sizeof k->q);
  k->keys[4] = o->key;
}

/* Renew every lease of the process every RD_RENEW_MS. Copies what it
** renews, so unlocks never wait for it. */
static void *renewer(void *arg) {
  (void)arg;
  char lease_ms[16];
  snprintf(lease_ms, sizeof lease_ms, "%d", RD_LEASE_MS);
  for (;;) {
    tn_sleep(RD_RENEW_MS / 1000.0);
    pthread_mutex_lock(&leases_mutex);
    size_t n = 0;
    for (lease_t *l = leases; l != NULL; l = l->next) n++;
    lease_t *copy = n > 0 ? malloc(n * sizeof *copy) : NULL;
    rd_object_t **objs = n > 0 ? malloc(n * sizeof *objs) : NULL;
    size_t k = 0;
    if (copy != NULL && objs != NULL)
      for (lease_t *l = leases; l != NULL; l = l->next, k++) {
        copy[k] = *l;
        objs[k] = RD(l->object);
        tn_object_retain(l->object);
      }
    pthread_mutex_unlock(&leases_mutex);
    for (size_t i = 0; i < k; i++) {
      lkeys_t keys;
      lkeys_init(&keys, objs[i]);
      const char *args[] = {copy[i].token, lease_ms, copy[i].write ? "1" : "0"};
      redisReply *r;
      int rc = rd_eval(objs[i]->cluster, &renew_script, RD_NO_EXPIRY, &r, 2,
                       keys.keys, 3, args, NULL);
      if (rc == TN_OK) {
        if (r->type == REDIS_REPLY_INTEGER && r->integer == 0) {
          pthread_mutex_lock(&leases_mutex);
          for (lease_t *l = leases; l != NULL; l = l->next)
            if (strcmp(l->token, copy[i].token) == 0) l->lost = true;
          pthread_mutex_unlock(&leases_mutex);
        }
        freeReplyObject(r);
      }
      tn_object_release(&objs[i]->object);
    }
    free(copy);
    free(objs);
    rd_semaphore_renew(); /* the leased permits (semaphore.c) */
  }
  return NULL;
}

static void start_renewer(void) {
  pthread_t t;
  if (pthread_create(&t, NULL, renewer, NULL) == 0) pthread_detach(t);
}

void rd_renewer_start(void) { pthread_once(&renewer_once, start_renewer); }

static void new_token(char *buf, size_t size) {
  /* Made once, by whichever thread comes first (threads take leases
  ** concurrently). */
  static atomic_ulong nonce;
  unsigned long n = atomic_load(&nonce);
  if (n == 0) {
    unsigned long fresh =
        ((unsigned long)(tn_clock() * 1e9) ^ (unsigned long)&nonce) | 1;
    n = atomic_compare_exchange_strong(&nonce, &n, fresh) ? fresh : n;
  }
  snprintf(buf, size, "%d-%lx-%lu", (int)getpid(), n,
           atomic_fetch_add(&token_counter, 1) + 1);
}

/* This thread's lease on `o`, unlinked from the list if `take`. */
static lease_t *find_lease(const tn_object_t *o, bool take) {
  pthread_t self = pthread_self();
  pthread_mutex_lock(&leases_mutex);
  lease_t *found = NULL;
  for (lease_t **l = &leases; *l != NULL; l = &(*l)->next)
    if ((*l)->object == o && pthread_equal((*l)->owner, self)) {
      found = *l;
      if (take) *l = found->next;
      break;
    }
  pthread_mutex_unlock(&leases_mutex);
  return found;
}

const char *rd_write_token(const tn_object_t *o) {
  lease_t *l = find_lease(o, false);
  return l != NULL && l->write ? l->token : NULL;
}

static int lock(tn_object_t *o, double timeout, bool write) {
  rd_object_t *ro = RD(o);
  lease_t *l = calloc(1, sizeof *l);
  if (l == NULL) return TN_ENOMEM;
  l->object = o;
  l->owner = pthread_self();
  l->write = write;
  new_token(l->token, sizeof l->token);
  lkeys_t k;
  lkeys_init(&k, ro);
  char lease_ms[16];
  snprintf(lease_ms, sizeof lease_ms, "%d", RD_LEASE_MS);
  const char *args[] = {l->token, lease_ms};
  /* TN_TRY is "now": its script still gets rd_expiry's minimum. */
  double deadline = timeout < 0     ? tn_clock()
                    : timeout < 1e9 ? tn_clock() + timeout
                                    : INFINITY;
  rd_script_t *s = write ? &write_lock_script : &read_lock_script;
  /* An Atomic's lock fetches its value with it (GRANTED). */
  int nkeys = tn_object_type(o) == TN_TYPE_ATOMIC ? 5 : 4;
  int rc;
  for (;;) {
    redisReply *r;
    rc = rd_eval(ro->cluster, s, deadline, &r, nkeys, k.keys, 2, args, NULL);
    if (rc == TN_ETIMEDOUT && timeout < 0) rc = TN_EAGAIN;
    if (rc != TN_OK) break;
    long long got = r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    if (r->type == REDIS_REPLY_ARRAY && r->elements >= 2 &&
        r->element[0]->type == REDIS_REPLY_INTEGER &&
        r->element[0]->integer == 1 &&
        r->element[1]->type == REDIS_REPLY_INTEGER) {
      got = 1;
      if (r->element[1]->integer == 0) {
        l->has_value = true; /* nil */
      } else if (r->elements == 3 &&
                 r->element[2]->type == REDIS_REPLY_STRING) {
        /* Short of memory the get after the lock does a GET instead. */
        size_t len = r->element[2]->len;
        if ((l->value = malloc(len > 0 ? len : 1)) != NULL) {
          memcpy(l->value, r->element[2]->str, len);
          l->value_len = len;
          l->has_value = true;
        }
      }
    }
    freeReplyObject(r);
    if (got == 1) break;
    if (got != 0) {
      rc = rd_bad_reply(ro->cluster, s->name, NULL);
      break;
    }
    if (timeout < 0) {
      rc = TN_EAGAIN;
    } else if (rd_left(deadline) <= 0) {
      rc = TN_ETIMEDOUT;
    } else {
      rc = rd_wait_token(ro->cluster, k.keys[3], deadline, true);
      if (rc == TN_OK) continue;
    }
    /* Giving up: a writer's "waiting" mark must not hold readers off. */
    if (write) {
      int saved = rc;
      if (rd_eval(ro->cluster, &give_up_script, RD_NO_EXPIRY, &r, 4, k.keys,
                  2, args, NULL) == TN_OK)
        freeReplyObject(r);
      rc = saved;
    }
    break;
  }
  if (rc != TN_OK) {
    free(l->value);
    free(l);
    return rc;
  }
  pthread_once(&renewer_once, start_renewer);
  pthread_mutex_lock(&leases_mutex);
  l->next = leases;
  leases = l;
  pthread_mutex_unlock(&leases_mutex);
  return TN_OK;
}

static void unlock(tn_object_t *o, bool write) {
  lease_t *l = find_lease(o, true);
  if (l == NULL) return;
  lkeys_t k;
  lkeys_init(&k, RD(o));
  char lease_ms[16];
  snprintf(lease_ms, sizeof lease_ms, "%d", RD_LEASE_MS);
  const char *args[] = {l->token, lease_ms};
  redisReply *r;
  /* A failure here is recorded; the lease then runs out on its own. */
  if (rd_eval(RD(o)->cluster,
              write ? &write_unlock_script : &read_unlock_script,
              RD_NO_EXPIRY, &r, 4, k.keys, 2, args, NULL) == TN_OK)
    freeReplyObject(r);
  free(l->value);
  free(l);
}

/* The value this thread's lock on `o` fetched (GRANTED), taken: 1 and
** *value (malloc'd, NULL for nil), or 0 when there is none (no lock of
** this thread, a get took it already, a set came after it). */
static int take_value(const tn_object_t *o, char **value, size_t *len) {
  pthread_t self = pthread_self();
  int got = 0;
  pthread_mutex_lock(&leases_mutex);
  for (lease_t *l = leases; l != NULL; l = l->next)
    if (l->object == o && pthread_equal(l->owner, self)) {
      if (l->has_value) {
        got = 1;
        *value = l->value;
        *len = l->value_len;
        l->value = NULL;
        l->has_value = false;
      }
      break;
    }
  pthread_mutex_unlock(&leases_mutex);
  return got;
}

int rd_read_lock(tn_object_t *o, double timeout) {
  return lock(o, timeout, false);
}
void rd_read_unlock(tn_object_t *o) { unlock(o, false); }
int rd_write_lock(tn_object_t *o, double timeout) {
  return lock(o, timeout, true);
}
void rd_write_unlock(tn_object_t *o) { unlock(o, true); }

/* ---- the cell ------------------------------------------------------------- */

int rd_cell_create(rd_object_t *o, tn_blob_t *init) {
  char *val;
  size_t len;
  int rc = rd_value_encode(init, &val, &len);
  if (rc != TN_OK) return rc;
  const char *keys[] = {o->key};
  const char *args[] = {val};
  size_t lens[] = {len};
  redisReply *r;
  rc = rd_eval(o->cluster, &create_script, INFINITY, &r, 1, keys, 1, args,
               lens);
  free(val);
  if (rc == TN_OK) freeReplyObject(r);
  return rc;
}

int rd_cell_get(tn_cell_t *c, tn_blob_t **out, double timeout) {
  (void)timeout;
  rd_object_t *o = RD(c);
  char *held;
  size_t held_len;
  if (take_value(TN_OBJECT(c), &held, &held_len)) {
    /* The value the lock fetched: no GET (the first get under a lock). */
    int rc = TN_OK;
    if (held == NULL) {
      *out = NULL;
    } else {
      char what[600];
      snprintf(what, sizeof what, "GET %s", o->key);
      rc = rd_value_decode(o->cluster, what, held, held_len, out);
    }
    free(held);
    return rc;
  }
  const char *argv[] = {"GET", o->key};
  redisReply *r;
  int rc = rd_command(o->cluster, 0, INFINITY, &r, 2, argv, NULL);
  if (rc != TN_OK) return rc;
  if (r->type == REDIS_REPLY_NIL) {
    *out = NULL;
  } else if (r->type == REDIS_REPLY_STRING) {
    char what[600];
    snprintf(what, sizeof what, "GET %s", o->key);
    rc = rd_value_decode(o->cluster, what, r->str, r->len, out);
  } else {
    rc = rd_bad_reply(o->cluster, "GET", r);
  }
  freeReplyObject(r);
  return rc;
}

int rd_cell_set(tn_cell_t *c, tn_blob_t *b, double timeout) {
  (void)timeout;
  rd_object_t *o = RD(c);
  char *stale;
  size_t stale_len;
  if (take_value(TN_OBJECT(c), &stale, &stale_len)) /* a get reads the new */
    free(stale);
  char *val;
  size_t len;
  int rc = rd_value_encode(b, &val, &len);
  if (rc != TN_OK) return rc;
  char w[512];
  const char *keys[] = {o->key, rd_subkey(o, ":lock:w", w, sizeof w)};
  const char *token = rd_write_token(TN_OBJECT(c));
  const char *args[] = {val, token != NULL ? token : ""};
  size_t lens[] = {len, token != NULL ? strlen(token) : 0};
  redisReply *r;
  rc = rd_eval(o->cluster, &fenced_set_script, INFINITY, &r, 2, keys, 2,
               args, lens);
  free(val);
  if (rc != TN_OK) return rc;
  long long ok = r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
  freeReplyObject(r);
  if (ok != 1)
    return tn_error_set(TN_EIO,
                        "redis %s: atomic.set %s: the write lock's lease "
                        "expired (the holder stalled): the value was not "
                        "stored",
                        o->cluster->where, o->key);
  tn_blob_release(b);
  return TN_OK;
}
