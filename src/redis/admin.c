/*
** admin.c - a cluster's objects by name, whatever their class:
** tn_cluster_exists and tn_cluster_delete (cluster:exists, cluster:delete).
**
** The keys of an object called NAME are K = prefix .. NAME and K with the
** suffixes below: the union of the key lists at the top of vector.c,
** pqueue.c, hash.c, counter.c, atomic.c (the callback lock of every
** class), printer.c, array.c, barrier.c and semaphore.c. A class that adds
** a key adds its suffix here, so that delete leaves nothing behind.
**
** What "exists" means: the server holds state of the object (its data, a
** vector's hint or close mark, a callback lock, a semaphore's permits held).
** The wake-up token lists (K:items, K:space, K:lock:q) and the lists of
** registered waiters (K:w, K:wu, K:wd) are derived from that state: they
** are removed with it but do not make an object exist. So an object that
** never held anything (an unbounded vector never pushed to or closed, an
** empty hash) does not exist, as in Redis.
**
** A deleted object that a process still holds is not invalidated: no key
** is left to mark it. Its next operation sees what the class makes of
** absent keys: a fresh, empty object for a Vector, PriorityQueue, Hash,
** Counter (0), Atomic (nil) and Printer (a new stream); an error for a
** Barrier, Semaphore or Array, whose size the creator sets ("... deleted?";
** making it again with cluster:Barrier(name, n) ... restores it). A
** callback lock or semaphore permits held on it are gone as if their
** lease had expired (Atomic:write's fenced store then fails). Waiters
** registered by key (barrier, semaphore and counter waits) are woken by
** the delete: a barrier's round breaks, a semaphore taker tries again and
** fails, a counter waiter sees 0. Waiters on token lists (a pop or push of
** a vector, a lock) re-check within a wait slice (at most 5 s): a pop
** keeps waiting on the fresh, empty vector.
**
** Caveat: the wake-up list K:wake:T of a waiter woken by the delete (or
** just before it) lives until that waiter reads it, or a minute.
*/
#include <stdlib.h>
#include <string.h>

#include "redis.h"

/* Every key family, in the order the delete script takes them: state
** (what exists counts), the waiter registries, the wake-up tokens. */
static const char *const suffixes[] = {
    "",         /* the data: list, hash, string, stream, sorted set */
    ":meta",    /* vector, priority queue, array: hint, closed, version */
    ":lock:w",  /* callback lock: the writer's lease */
    ":lock:r",  /* callback lock: readers' leases */
    ":lock:ww", /* callback lock: a waiting writer */
    ":held",    /* semaphore: permits per holder */
    ":leases",  /* semaphore: holders' leases */
    ":w",       /* barrier, semaphore: registered waiters (a list) */
    ":wu",      /* counter: waiters from below (a sorted set) */
    ":wd",      /* counter: waiters from above (a sorted set) */
    ":items",   /* vector, priority queue: wake-up token for poppers */
    ":space",   /* vector, priority queue: wake-up token for pushers */
    ":lock:q",  /* callback lock: wake-up token for waiters */
};
#define RD_KEYS (sizeof suffixes / sizeof suffixes[0])
#define RD_STATE_KEYS 7

/*
** KEYS: as `suffixes` -> how many state keys existed. Registered waiters
** are woken first, as their classes' own scripts wake them (barrier.c's
** wake_all, counter.c's wake): "B" (a broken round; a semaphore taker
** just tries again), and a counter's new value, 0. Only keys under
** K:wake: are written, as those scripts do.
*/
static rd_script_t delete_script = {
    "cluster.delete",
    RD_PROLOGUE
    "local n = redis.call('EXISTS', unpack(KEYS, 1, 7))\n"
    "local base = KEYS[1] .. ':wake:'\n"
    "local function wake(ws, msg)\n"
    "  for _, w in ipairs(ws) do\n"
    "    if string.sub(w, 1, #base) == base then\n"
    "      redis.call('RPUSH', w, msg)\n"
    "      redis.call('PEXPIRE', w, 60000)\n"
    "    end\n"
    "  end\n"
    "end\n"
    "if redis.call('TYPE', KEYS[8])['ok'] == 'list' then\n"
    "  wake(redis.call('LRANGE', KEYS[8], 0, -1), 'B') end\n"
    "for i = 9, 10 do\n"
    "  if redis.call('TYPE', KEYS[i])['ok'] == 'zset' then\n"
    "    wake(redis.call('ZRANGE', KEYS[i], 0, -1), '0') end\n"
    "end\n"
    "redis.call('DEL', unpack(KEYS))\n"
    "return n\n",
    "", 0};

/* The keys of `name` in `keys` (malloc'd, one block: free keys[0]). */
static int keys_of(tn_cluster_t *c, const char *name, const char **keys) {
  if (name == NULL || name[0] == '\0')
    return tn_error_set(TN_EINVAL, "a cluster object needs a non-empty name");
  size_t base = strlen(c->prefix) + strlen(name), total = 0;
  for (size_t i = 0; i < RD_KEYS; i++)
    total += base + strlen(suffixes[i]) + 1;
  char *buf = malloc(total);
  if (buf == NULL) return TN_ENOMEM;
  char *p = buf;
  for (size_t i = 0; i < RD_KEYS; i++) {
    keys[i] = p;
    p += sprintf(p, "%s%s%s", c->prefix, name, suffixes[i]) + 1;
  }
  return TN_OK;
}

int tn_cluster_exists(tn_cluster_t *c, const char *name, int *exists) {
  const char *keys[RD_KEYS];
  int rc = keys_of(c, name, keys);
  if (rc != TN_OK) return rc;
  const char *argv[1 + RD_STATE_KEYS] = {"EXISTS"};
  for (size_t i = 0; i < RD_STATE_KEYS; i++) argv[1 + i] = keys[i];
  redisReply *r;
  rc = rd_command(c, 0, INFINITY, &r, 1 + RD_STATE_KEYS, argv, NULL);
  if (rc == TN_OK) {
    if (r->type == REDIS_REPLY_INTEGER)
      *exists = r->integer > 0;
    else
      rc = rd_bad_reply(c, "EXISTS", r);
    freeReplyObject(r);
  }
  free((void *)keys[0]);
  return rc;
}

int tn_cluster_delete(tn_cluster_t *c, const char *name, int *existed) {
  const char *keys[RD_KEYS];
  int rc = keys_of(c, name, keys);
  if (rc != TN_OK) return rc;
  redisReply *r;
  rc = rd_eval(c, &delete_script, INFINITY, &r, (int)RD_KEYS, keys, 0, NULL,
               NULL);
  if (rc == TN_OK) {
    if (r->type != REDIS_REPLY_INTEGER)
      rc = rd_bad_reply(c, delete_script.name, r);
    else if (existed != NULL)
      *existed = r->integer > 0;
    freeReplyObject(r);
  }
  free((void *)keys[0]);
  return rc;
}
