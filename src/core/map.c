/*
** map.c - the hash table behind tunnel.Hash and shared tables: byte-string
** keys (copied) to blobs, split into shards so that threads working on
** different keys rarely meet on a lock.
**
** Layout. A key's 64-bit hash picks its shard (top bits) and its bucket
** inside the shard (low bits), so the two choices are independent. Each
** shard has its own mutex and a chained table whose nodes hold the key
** bytes inline (one allocation per key). Shards sit on cache lines of
** their own: a lock word shared with a neighbour shard would make two
** threads on different shards contend anyway (PERF.md point 5). The size
** is an atomic beside them, so tn_map_size never locks.
**
** Why a mutex per shard and not a reader-writer lock: critical sections
** here are a few dozen nanoseconds, where an rwlock costs more than it
** saves and collapses under a reader/writer mix (PERF.md point 4). The
** user-visible read/write callbacks use the object's callback lock instead.
**
** Caveats:
** - Every map costs TN_MAP_SHARDS cache lines even when empty (bucket
**   arrays are only allocated on the first insert into a shard).
** - Bucket arrays grow by doubling and never shrink until the map is freed.
**   A failed growth is not an error: the table stays correct, only its
**   chains get longer until a later insert grows it.
** - A snapshot holds every shard's lock while it copies, so it is O(n) with
**   the whole map stopped; it is meant for iteration and printing, not for
**   hot paths.
** - The hash is seeded per map (from its address and the clock): keys
**   chosen to collide cannot be precomputed, but this is not a keyed PRF.
*/
#include <stdalign.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define TN_MAP_SHARDS 16 /* a power of two */
#define TN_MAP_SHARD_BITS 4
#define TN_MAP_INITIAL_BUCKETS 8 /* per shard, a power of two */
#define CACHE_LINE 64

typedef struct map_node {
  struct map_node *next;
  uint64_t hash;
  tn_blob_t *value; /* never NULL: storing nil deletes the node */
  size_t len;
  unsigned char key[]; /* `len` bytes */
} map_node_t;

typedef struct map_shard {
  alignas(CACHE_LINE) pthread_mutex_t mutex;
  map_node_t **buckets; /* NULL until the first insert */
  size_t nbuckets;      /* 0 or a power of two */
  size_t count;         /* nodes in this shard (under the mutex) */
  uint64_t version;     /* changes of the content (for the collector) */
} map_shard_t;

struct tn_map {
  tn_object_t object;
  void *block;   /* what tn_malloc returned (the struct is aligned in it) */
  uint64_t seed; /* hash seed, fixed for the map's life */
  alignas(CACHE_LINE) atomic_size_t size;
  map_shard_t shards[TN_MAP_SHARDS];
};

/* ---- hashing ------------------------------------------------------------ */

/* The finaliser of MurmurHash3: every input bit affects every output bit. */
static inline uint64_t mix64(uint64_t h) {
  h ^= h >> 33;
  h *= UINT64_C(0xff51afd7ed558ccd);
  h ^= h >> 33;
  h *= UINT64_C(0xc4ceb9fe1a85ec53);
  h ^= h >> 33;
  return h;
}

/*
** Eight bytes at a time (keys are mostly short strings and encoded
** numbers, where FNV's byte loop would dominate): one multiply and a
** rotation per word, then a full mix so that both the top bits (shard)
** and the low bits (bucket) depend on every input bit. The length is
** folded in so that "a" and "a\0" differ.
*/
static uint64_t hash_key(uint64_t seed, const void *key, size_t len) {
  const unsigned char *p = key;
  uint64_t h = seed ^ ((uint64_t)len * UINT64_C(0x9e3779b97f4a7c15));
  while (len >= 8) {
    uint64_t w;
    memcpy(&w, p, 8);
    h = (h ^ w) * UINT64_C(0xff51afd7ed558ccd);
    h = (h << 31) | (h >> 33);
    p += 8;
    len -= 8;
  }
  if (len > 0) {
    uint64_t w = 0;
    for (size_t i = 0; i < len; i++) w |= (uint64_t)p[i] << (8 * i);
    h = (h ^ w) * UINT64_C(0xc4ceb9fe1a85ec53);
  }
  return mix64(h);
}

static inline map_shard_t *shard_of(tn_map_t *m, uint64_t hash) {
  return &m->shards[hash >> (64 - TN_MAP_SHARD_BITS)];
}

/* The link that points at the node for `key` in `s`, or at the NULL ending
** its chain when the key is absent. Shard mutex held, buckets allocated. */
static map_node_t **shard_find(map_shard_t *s, uint64_t hash, const void *key,
                               size_t len) {
  map_node_t **link = &s->buckets[hash & (s->nbuckets - 1)];
  for (map_node_t *n = *link; n != NULL; link = &n->next, n = n->next)
    if (n->hash == hash && n->len == len &&
        (len == 0 || memcmp(n->key, key, len) == 0))
      return link;
  return link;
}

/* Double the bucket array (or create it). Failure leaves the shard as it
** was and is harmless: see the caveats. Shard mutex held. */
static int shard_grow(map_shard_t *s) {
  size_t nb = s->nbuckets ? s->nbuckets * 2 : TN_MAP_INITIAL_BUCKETS;
  if (nb > SIZE_MAX / sizeof(map_node_t *)) return TN_ENOMEM;
  map_node_t **b = tn_malloc(nb * sizeof *b);
  if (b == NULL) return TN_ENOMEM;
  for (size_t i = 0; i < nb; i++) b[i] = NULL;
  for (size_t i = 0; i < s->nbuckets; i++) {
    map_node_t *n = s->buckets[i];
    while (n != NULL) {
      map_node_t *next = n->next;
      map_node_t **head = &b[n->hash & (nb - 1)];
      n->next = *head;
      *head = n;
      n = next;
    }
  }
  tn_free(s->buckets);
  s->buckets = b;
  s->nbuckets = nb;
  return TN_OK;
}

/* ---- the callback gate (internal.h) ---------------------------------------- */

static void unlock_shards(tn_map_t *m, int upto);

/* shard_lock_gated once the gate was seen shut, the shard unlocked. */
static __attribute__((noinline)) int
shard_lock_waiting(tn_map_t *m, map_shard_t *s, double timeout, bool modifies,
                   int rc) {
  tn_deadline_t dl = {.forever = true};
  bool dl_set = false;
  for (;;) {
    if (rc != TN_EBUSY_GATE) return rc;
    rc = tn_gate_wait(&m->object, modifies, timeout, &dl, &dl_set);
    if (rc != TN_OK) return rc;
    if ((rc = tn_mutex_acquire(&s->mutex, timeout)) != TN_OK) return rc;
    rc = tn_gate_enter(&m->object, modifies, timeout);
    if (rc == TN_OK) return TN_OK;
    pthread_mutex_unlock(&s->mutex);
  }
}

/* Lock `s` for an operation past the gate (TN_OK with it held, or an error
** with it free): a Hash's set waits while a callback holds the map, a get
** only while a write callback does. Inline: an open gate costs one load. */
static inline int shard_lock_gated(tn_map_t *m, map_shard_t *s,
                                   double timeout, bool modifies) {
  int rc = tn_mutex_acquire(&s->mutex, timeout);
  if (rc != TN_OK) return rc;
  rc = tn_gate_enter(&m->object, modifies, timeout);
  if (__builtin_expect(rc == TN_OK, 1)) return TN_OK;
  pthread_mutex_unlock(&s->mutex);
  return shard_lock_waiting(m, s, timeout, modifies, rc);
}

/* The gate shut: wait for the operations under way (each holds a shard). */
static void map_quiesce(tn_object_t *o, int gate) {
  if (gate == TN_GATE_OPEN) return;
  tn_map_t *m = (tn_map_t *)o;
  for (int i = 0; i < TN_MAP_SHARDS; i++) {
    pthread_mutex_lock(&m->shards[i].mutex);
    pthread_mutex_unlock(&m->shards[i].mutex);
  }
}

/* ---- life --------------------------------------------------------------- */

static void map_destroy(tn_object_t *o) {
  tn_map_t *m = (tn_map_t *)o;
  void *block = m->block;
  for (int i = 0; i < TN_MAP_SHARDS; i++) {
    map_shard_t *s = &m->shards[i];
    for (size_t j = 0; j < s->nbuckets; j++) {
      map_node_t *n = s->buckets[j];
      while (n != NULL) {
        map_node_t *next = n->next;
        tn_blob_release(n->value);
        tn_free(n);
        n = next;
      }
    }
    tn_free(s->buckets);
    pthread_mutex_destroy(&s->mutex);
  }
  tn_object_fini(&m->object);
  tn_free(block);
}

/* ---- the cycle collector's hooks (internal.h, collect.c) ---------------- */

static bool map_gc_trylock(tn_object_t *o) {
  tn_map_t *m = (tn_map_t *)o;
  for (int i = 0; i < TN_MAP_SHARDS; i++)
    if (pthread_mutex_trylock(&m->shards[i].mutex) != 0) {
      unlock_shards(m, i);
      return false;
    }
  return true;
}

static void map_gc_unlock(tn_object_t *o) {
  unlock_shards((tn_map_t *)o, TN_MAP_SHARDS);
}

static void map_gc_children(tn_object_t *o, tn_visit_fn visit, void *arg) {
  tn_map_t *m = (tn_map_t *)o;
  for (int i = 0; i < TN_MAP_SHARDS; i++) {
    map_shard_t *s = &m->shards[i];
    for (size_t j = 0; j < s->nbuckets; j++)
      for (map_node_t *n = s->buckets[j]; n != NULL; n = n->next)
        visit(n->value, arg);
  }
}

static uint64_t map_gc_version(tn_object_t *o) {
  tn_map_t *m = (tn_map_t *)o;
  uint64_t v = 0;
  for (int i = 0; i < TN_MAP_SHARDS; i++) v += m->shards[i].version;
  return v; /* each only grows */
}

/* Unreachable: take every node out under its shard, free them after. */
static void map_gc_clear(tn_object_t *o) {
  tn_map_t *m = (tn_map_t *)o;
  for (int i = 0; i < TN_MAP_SHARDS; i++) {
    map_shard_t *s = &m->shards[i];
    map_node_t *all = NULL;
    pthread_mutex_lock(&s->mutex);
    for (size_t j = 0; j < s->nbuckets; j++) {
      map_node_t *n = s->buckets[j];
      while (n != NULL) {
        map_node_t *next = n->next;
        n->next = all;
        all = n;
        n = next;
      }
      s->buckets[j] = NULL;
    }
    atomic_fetch_sub(&m->size, s->count);
    s->count = 0;
    s->version++;
    pthread_mutex_unlock(&s->mutex);
    while (all != NULL) {
      map_node_t *next = all->next;
      tn_blob_release(all->value);
      tn_free(all);
      all = next;
    }
  }
}

static const tn_gc_ops_t map_gc = {map_gc_trylock, map_gc_unlock,
                                   map_gc_children, map_gc_version,
                                   map_gc_clear};

/*
** A new, empty map with one reference. TN_EINVAL for a type other than
** TN_TYPE_HASH or TN_TYPE_TABLE; TN_ENOMEM (nothing allocated).
*/
int tn_map_new(tn_type_t type, tn_map_t **out) {
  if (type != TN_TYPE_HASH && type != TN_TYPE_TABLE) return TN_EINVAL;
  /* malloc promises 16-byte alignment only: place the struct by hand. */
  void *block = tn_malloc(sizeof(tn_map_t) + CACHE_LINE - 1);
  if (block == NULL) return TN_ENOMEM;
  uintptr_t at = ((uintptr_t)block + CACHE_LINE - 1) &
                 ~(uintptr_t)(CACHE_LINE - 1);
  tn_map_t *m = (tn_map_t *)at;
  tn_object_init(&m->object, type, map_destroy);
  m->object.quiesce = map_quiesce;
  m->block = block;
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  m->seed = mix64((uint64_t)at ^ ((uint64_t)ts.tv_nsec << 20) ^
                  (uint64_t)ts.tv_sec);
  atomic_init(&m->size, 0);
  for (int i = 0; i < TN_MAP_SHARDS; i++) {
    map_shard_t *s = &m->shards[i];
    tn_mutex_init(&s->mutex);
    s->buckets = NULL;
    s->nbuckets = 0;
    s->count = 0;
    s->version = 0;
  }
  tn_gc_register(&m->object, &map_gc);
  *out = m;
  return TN_OK;
}

size_t tn_map_size(tn_map_t *m) {
  if (TN_REMOTE(m)) return TN_BACKEND(m)->map_size(m);
  return atomic_load_explicit(&m->size, memory_order_relaxed);
}

/* ---- get and set -------------------------------------------------------- */

int tn_map_get(tn_map_t *m, const void *key, size_t len, tn_blob_t **out,
               double timeout) {
  if (TN_REMOTE(m)) return TN_BACKEND(m)->map_get(m, key, len, out, timeout);
  uint64_t h = hash_key(m->seed, key, len);
  map_shard_t *s = shard_of(m, h);
  int rc = shard_lock_gated(m, s, timeout, false);
  if (rc != TN_OK) return rc;
  tn_blob_t *v = NULL;
  if (s->count > 0) {
    map_node_t *n = *shard_find(s, h, key, len);
    if (n != NULL) v = tn_blob_retain(n->value);
  }
  pthread_mutex_unlock(&s->mutex);
  *out = v;
  return TN_OK;
}

/*
** Overwrite, insert or delete. The only allocation (a new key's node, and
** maybe a bigger bucket array, which may fail harmlessly) happens under
** the shard's mutex, before anything changes. Whatever leaves the map (the
** old value, a deleted node) is released after the mutex is dropped: a
** release may free other structures, no reason to do that under our lock.
*/
int tn_map_set(tn_map_t *m, const void *key, size_t len, tn_blob_t *b,
               tn_blob_t **old, double timeout) {
  if (TN_REMOTE(m))
    return TN_BACKEND(m)->map_set(m, key, len, b, old, timeout);
  uint64_t h = hash_key(m->seed, key, len);
  map_shard_t *s = shard_of(m, h);
  if (b != NULL && len > SIZE_MAX - sizeof(map_node_t)) return TN_ENOMEM;
  int rc = shard_lock_gated(m, s, timeout, true);
  if (rc != TN_OK) return rc;
  tn_blob_t *prev = NULL;
  map_node_t *dead = NULL;
  map_node_t **link = s->nbuckets > 0 ? shard_find(s, h, key, len) : NULL;
  map_node_t *n = link != NULL ? *link : NULL;
  if (n != NULL) {
    prev = n->value;
    if (b != NULL) {
      n->value = b; /* overwrite: no allocation, size unchanged */
    } else {
      *link = n->next;
      dead = n;
      s->count--;
      atomic_fetch_sub_explicit(&m->size, 1, memory_order_relaxed);
    }
  } else if (b != NULL) {
    n = tn_malloc(sizeof *n + len);
    if (n == NULL) {
      rc = TN_ENOMEM;
    } else if (s->nbuckets == 0 && shard_grow(s) != TN_OK) {
      tn_free(n); /* a shard cannot hold a key without any bucket */
      rc = TN_ENOMEM;
    } else {
      /* Keep the load factor at most 1; a failed growth still inserts. */
      if (s->count >= s->nbuckets) (void)shard_grow(s);
      n->hash = h;
      n->value = b;
      n->len = len;
      if (len > 0) memcpy(n->key, key, len);
      map_node_t **head = &s->buckets[h & (s->nbuckets - 1)];
      n->next = *head;
      *head = n;
      s->count++;
      atomic_fetch_add_explicit(&m->size, 1, memory_order_relaxed);
    }
  }
  s->version++; /* for the collector: any call may have changed it */
  pthread_mutex_unlock(&s->mutex);
  if (rc != TN_OK) return rc;
  tn_free(dead);
  if (old != NULL)
    *old = prev;
  else
    tn_blob_release(prev);
  return TN_OK;
}

/* ---- snapshot ----------------------------------------------------------- */

static void unlock_shards(tn_map_t *m, int upto) {
  for (int i = upto - 1; i >= 0; i--)
    pthread_mutex_unlock(&m->shards[i].mutex);
}

/*
** Lock every shard in index order (the one order every snapshot uses, so
** two snapshots cannot deadlock; get and set hold one shard only), copy,
** unlock. TN_TRY gives up, unlocking, at the first busy shard. An empty
** map gives `*entries` = NULL and `*n` = 0. Each key is its own tn_malloc
** block (non-NULL even for the empty key), as tunnel.h promises.
*/
int tn_map_snapshot(tn_map_t *m, tn_map_entry_t **entries, size_t *n,
                    double timeout) {
  if (TN_REMOTE(m))
    return TN_BACKEND(m)->map_snapshot(m, entries, n, timeout);
  /* The gate is read under the first shard's mutex, which the quiesce of
  ** a callback that shuts it takes too. */
  int rc = shard_lock_gated(m, &m->shards[0], timeout, false);
  if (rc != TN_OK) return rc;
  for (int i = 1; i < TN_MAP_SHARDS; i++) {
    rc = tn_mutex_acquire(&m->shards[i].mutex, timeout);
    if (rc != TN_OK) {
      unlock_shards(m, i);
      return rc;
    }
  }
  size_t total = 0;
  for (int i = 0; i < TN_MAP_SHARDS; i++) total += m->shards[i].count;
  tn_map_entry_t *e = NULL;
  size_t k = 0;
  if (total > 0) {
    if (total > SIZE_MAX / sizeof *e ||
        (e = tn_malloc(total * sizeof *e)) == NULL)
      goto nomem;
    for (int i = 0; i < TN_MAP_SHARDS; i++) {
      map_shard_t *s = &m->shards[i];
      for (size_t j = 0; j < s->nbuckets; j++)
        for (map_node_t *node = s->buckets[j]; node != NULL;
             node = node->next) {
          void *key = tn_malloc(node->len > 0 ? node->len : 1);
          if (key == NULL) goto nomem;
          if (node->len > 0) memcpy(key, node->key, node->len);
          e[k].key = key;
          e[k].len = node->len;
          e[k].value = tn_blob_retain(node->value);
          k++;
        }
    }
  }
  unlock_shards(m, TN_MAP_SHARDS);
  *entries = e;
  *n = total;
  return TN_OK;

nomem:
  unlock_shards(m, TN_MAP_SHARDS);
  tn_map_entries_free(e, k);
  return TN_ENOMEM;
}

void tn_map_entries_free(tn_map_entry_t *entries, size_t n) {
  if (entries == NULL) return;
  for (size_t i = 0; i < n; i++) {
    tn_free(entries[i].key);
    tn_blob_release(entries[i].value);
  }
  tn_free(entries);
}

/* ---- for the tests ------------------------------------------------------ */

/*
** The mutex of the shard that holds `key`, so test/test_map.c can hold it
** from another thread and watch TN_TRY give up. Not part of the API.
*/
pthread_mutex_t *tn_map_shard_mutex(tn_map_t *m, const void *key, size_t len) {
  return &shard_of(m, hash_key(m->seed, key, len))->mutex;
}
