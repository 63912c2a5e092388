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
** Writers (set, delete, snapshot) take their shard's mutex. Gets take no
** lock at all (tn_map_peek): a mutex is a cache line every user writes, so
** two threads reading one shard would pass it back and forth, as they
** would a value's reference count. A get follows the chain with acquire
** loads inside an epoch (ebr.c), checks a per-shard sequence number
** around it (a seqlock: a growth relinks the chains), copies a small value
** out instead of retaining it, and so writes nothing any other thread
** reads. Whatever a writer unlinks (a deleted node, an overwritten value,
** an outgrown bucket array) waits in the shard's limbo until no reader can
** hold it. Why not a reader-writer lock: critical sections here are a few
** dozen nanoseconds, where an rwlock costs more than it saves and
** collapses under a reader/writer mix (PERF.md point 4). The user-visible
** read/write callbacks use the object's callback lock instead; a get
** still waits while a write callback holds the map (map_quiesce).
**
** Caveats:
** - Every map costs TN_MAP_SHARDS cache lines even when empty (bucket
**   arrays are only allocated on the first insert into a shard).
** - A value overwritten or deleted is released a little later than the
**   call that replaced it: by a later write to its shard, after at most
**   LIMBO_BATCH more such values (or when the map goes). A collection
**   (collect.c) counts those values as the map's own.
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
#define LIMBO_BATCH 32 /* retired items a shard keeps before it frees */

/* Fields a lock-free reader follows are atomics (relaxed or acquire loads;
** writers store with release under the shard mutex); the rest of a node
** (hash, len, key) never changes after the node is published. */
typedef struct map_node {
  _Atomic(struct map_node *) next;
  uint64_t hash;
  _Atomic(tn_blob_t *) value; /* never NULL: storing nil deletes the node */
  size_t len;
  unsigned char key[]; /* `len` bytes */
} map_node_t;

/* A shard's buckets, with their number: a reader loads one pointer and
** gets both, so a growth cannot pair a new count with an old array. */
typedef struct map_table {
  size_t n; /* a power of two */
  _Atomic(map_node_t *) b[];
} map_table_t;

/* Something unlinked that a reader may still hold (ebr.c): freed once its
** tag has expired. A node owns its last value. */
enum { LIMBO_NODE, LIMBO_BLOB, LIMBO_TABLE };
typedef struct limbo_item {
  void *p;
  uint64_t tag;
  int kind;
} limbo_item_t;

typedef struct map_shard {
  /* What readers load shares the mutex's line: only writers write it. */
  alignas(CACHE_LINE) pthread_mutex_t mutex;
  atomic_uint seq;              /* odd while chains move; see tn_map_peek */
  _Atomic(map_table_t *) table; /* NULL until the first insert */
  size_t count;                 /* nodes in this shard (under the mutex) */
  uint64_t version;             /* changes of the content (for the collector) */
  limbo_item_t *limbo;          /* oldest first (tags never decrease) */
  size_t nlimbo, limbo_cap;
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

static inline bool node_is(const map_node_t *n, uint64_t hash,
                           const void *key, size_t len) {
  return n->hash == hash && n->len == len &&
         (len == 0 || memcmp(n->key, key, len) == 0);
}

/* The link that points at the node for `key` in table `t`, or at the NULL
** ending its chain when the key is absent. Shard mutex held. */
static _Atomic(map_node_t *) *shard_find(map_table_t *t, uint64_t hash,
                                         const void *key, size_t len) {
  _Atomic(map_node_t *) *link = &t->b[hash & (t->n - 1)];
  for (map_node_t *n; (n = atomic_load_explicit(link, memory_order_relaxed));
       link = &n->next)
    if (node_is(n, hash, key, len)) return link;
  return link;
}

static inline map_table_t *shard_table(map_shard_t *s) {
  return atomic_load_explicit(&s->table, memory_order_relaxed);
}

/* ---- retired memory (ebr.c) ---------------------------------------------- */

static void limbo_free(limbo_item_t *it) {
  switch (it->kind) {
  case LIMBO_NODE: {
    map_node_t *n = it->p;
    tn_blob_release(atomic_load_explicit(&n->value, memory_order_relaxed));
    tn_free(n);
    break;
  }
  case LIMBO_BLOB: tn_blob_release(it->p); break;
  default: tn_free(it->p); break;
  }
}

/* Room for `k` more retired items. Shard mutex held. */
static int limbo_reserve(map_shard_t *s, size_t k) {
  if (s->nlimbo + k <= s->limbo_cap) return TN_OK;
  size_t cap = s->limbo_cap ? s->limbo_cap * 2 : LIMBO_BATCH + 4;
  while (cap < s->nlimbo + k) cap *= 2;
  limbo_item_t *a = tn_realloc(s->limbo, cap * sizeof *a);
  if (a == NULL) return TN_ENOMEM;
  s->limbo = a;
  s->limbo_cap = cap;
  return TN_OK;
}

/* Retire `p` (reserved before), unlinked by the caller: no reader that
** starts from now on can reach it. Shard mutex held. */
static void limbo_put(map_shard_t *s, void *p, int kind, uint64_t tag) {
  s->limbo[s->nlimbo++] = (limbo_item_t){p, tag, kind};
}

/* What a writer frees after dropping the shard mutex (a release may free
** other structures: not under our lock). */
typedef struct reaped {
  limbo_item_t items[LIMBO_BATCH];
  size_t n;
} reaped_t;

/* Move the expired items out (at most a batch), when enough piled up.
** Shard mutex held. */
static void limbo_reap(map_shard_t *s, reaped_t *r) {
  r->n = 0;
  if (s->nlimbo < LIMBO_BATCH) return;
  uint64_t epoch = tn_ebr_advance();
  size_t k = 0;
  while (k < s->nlimbo && k < LIMBO_BATCH &&
         tn_ebr_expired(s->limbo[k].tag, epoch))
    k++;
  if (k == 0) return;
  memcpy(r->items, s->limbo, k * sizeof *s->limbo);
  memmove(s->limbo, s->limbo + k, (s->nlimbo - k) * sizeof *s->limbo);
  s->nlimbo -= k;
  r->n = k;
  s->version++; /* the blobs it holds changed (for the collector) */
}

static void reaped_free(reaped_t *r) {
  for (size_t i = 0; i < r->n; i++) limbo_free(&r->items[i]);
}

/* seqlock writes (see tn_map_peek): chains move between the two calls. */
static void seq_begin(map_shard_t *s) {
  atomic_store_explicit(&s->seq,
                        atomic_load_explicit(&s->seq, memory_order_relaxed) +
                            1,
                        memory_order_relaxed);
  TN_FENCE(memory_order_release);
}

static void seq_end(map_shard_t *s) {
  atomic_store_explicit(&s->seq,
                        atomic_load_explicit(&s->seq, memory_order_relaxed) +
                            1,
                        memory_order_release);
}

/* Double the buckets (or create them). Failure leaves the shard as it was
** and is harmless: see the caveats. Shard mutex held. Nodes are relinked
** in place under seq_begin/seq_end: a reader on the old table sees the
** sequence move and starts again; the old array is retired. */
static int shard_grow(map_shard_t *s) {
  map_table_t *old = shard_table(s);
  size_t nb = old ? old->n * 2 : TN_MAP_INITIAL_BUCKETS;
  if (nb > (SIZE_MAX - sizeof(map_table_t)) / sizeof(map_node_t *))
    return TN_ENOMEM;
  if (old != NULL && limbo_reserve(s, 1) != TN_OK) return TN_ENOMEM;
  map_table_t *t = tn_malloc(sizeof *t + nb * sizeof t->b[0]);
  if (t == NULL) return TN_ENOMEM;
  t->n = nb;
  for (size_t i = 0; i < nb; i++) atomic_init(&t->b[i], NULL);
  if (old == NULL) {
    atomic_store_explicit(&s->table, t, memory_order_release);
    return TN_OK;
  }
  seq_begin(s);
  for (size_t i = 0; i < old->n; i++) {
    map_node_t *n = atomic_load_explicit(&old->b[i], memory_order_relaxed);
    while (n != NULL) {
      map_node_t *next = atomic_load_explicit(&n->next, memory_order_relaxed);
      _Atomic(map_node_t *) *head = &t->b[n->hash & (nb - 1)];
      /* Release stores (plain ones on x86): a reader still walking the
      ** old chains may follow the new link before the sequence tells it
      ** to start over, and must then see the node it reaches whole (its
      ** key was written before it was first published; a relaxed link
      ** would not carry that, a data race that ThreadSanitizer saw). */
      atomic_store_explicit(&n->next,
                            atomic_load_explicit(head, memory_order_relaxed),
                            memory_order_release);
      atomic_store_explicit(head, n, memory_order_release);
      n = next;
    }
  }
  atomic_store_explicit(&s->table, t, memory_order_release);
  seq_end(s);
  limbo_put(s, old, LIMBO_TABLE, tn_ebr_tag());
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

/*
** The gate shut: wait for the operations under way (each holds a shard),
** and move every shard's sequence, so that a lock-free get that began
** before the gate shut and could see what the callback does starts again,
** and then sees the gate (tn_map_peek).
*/
static void map_quiesce(tn_object_t *o, int gate) {
  if (gate == TN_GATE_OPEN) return;
  tn_map_t *m = (tn_map_t *)o;
  for (int i = 0; i < TN_MAP_SHARDS; i++) {
    map_shard_t *s = &m->shards[i];
    pthread_mutex_lock(&s->mutex);
    atomic_store_explicit(
        &s->seq, atomic_load_explicit(&s->seq, memory_order_relaxed) + 2,
        memory_order_release);
    pthread_mutex_unlock(&s->mutex);
  }
}

/* ---- life --------------------------------------------------------------- */

/* Free a chain of nodes with their values (no reader can reach them). */
static void free_nodes(map_node_t *n) {
  while (n != NULL) {
    map_node_t *next = atomic_load_explicit(&n->next, memory_order_relaxed);
    tn_blob_release(atomic_load_explicit(&n->value, memory_order_relaxed));
    tn_free(n);
    n = next;
  }
}

/* Take every node of `s` out into one chain. Shard mutex held (or the map
** is being destroyed). */
static map_node_t *shard_detach(map_shard_t *s) {
  map_node_t *all = NULL;
  map_table_t *t = shard_table(s);
  for (size_t j = 0; t != NULL && j < t->n; j++) {
    map_node_t *n = atomic_load_explicit(&t->b[j], memory_order_relaxed);
    while (n != NULL) {
      map_node_t *next = atomic_load_explicit(&n->next, memory_order_relaxed);
      atomic_store_explicit(&n->next, all, memory_order_relaxed);
      all = n;
      n = next;
    }
    atomic_store_explicit(&t->b[j], NULL, memory_order_relaxed);
  }
  return all;
}

static void map_destroy(tn_object_t *o) {
  tn_map_t *m = (tn_map_t *)o;
  void *block = m->block;
  for (int i = 0; i < TN_MAP_SHARDS; i++) {
    map_shard_t *s = &m->shards[i];
    free_nodes(shard_detach(s));
    tn_free(shard_table(s));
    for (size_t j = 0; j < s->nlimbo; j++) limbo_free(&s->limbo[j]);
    tn_free(s->limbo);
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

/* The retired values count too: the map holds them until they expire. */
static void map_gc_children(tn_object_t *o, tn_visit_fn visit, void *arg) {
  tn_map_t *m = (tn_map_t *)o;
  for (int i = 0; i < TN_MAP_SHARDS; i++) {
    map_shard_t *s = &m->shards[i];
    map_table_t *t = shard_table(s);
    for (size_t j = 0; t != NULL && j < t->n; j++)
      for (map_node_t *n = atomic_load_explicit(&t->b[j], memory_order_relaxed);
           n != NULL; n = atomic_load_explicit(&n->next, memory_order_relaxed))
        visit(atomic_load_explicit(&n->value, memory_order_relaxed), arg);
    for (size_t j = 0; j < s->nlimbo; j++) {
      limbo_item_t *it = &s->limbo[j];
      if (it->kind == LIMBO_BLOB)
        visit(it->p, arg);
      else if (it->kind == LIMBO_NODE)
        visit(atomic_load_explicit(&((map_node_t *)it->p)->value,
                                   memory_order_relaxed),
              arg);
    }
  }
}

static uint64_t map_gc_version(tn_object_t *o) {
  tn_map_t *m = (tn_map_t *)o;
  uint64_t v = 0;
  for (int i = 0; i < TN_MAP_SHARDS; i++) v += m->shards[i].version;
  return v; /* each only grows */
}

/*
** Unreachable: take every node and retired item out under its shard, free
** them after. At once, not through the epochs: a thread reading the map
** holds a reference to it, which would have made it reachable.
*/
static void map_gc_clear(tn_object_t *o) {
  tn_map_t *m = (tn_map_t *)o;
  for (int i = 0; i < TN_MAP_SHARDS; i++) {
    map_shard_t *s = &m->shards[i];
    pthread_mutex_lock(&s->mutex);
    seq_begin(s);
    map_node_t *all = shard_detach(s);
    seq_end(s);
    limbo_item_t *limbo = s->limbo;
    size_t nlimbo = s->nlimbo;
    s->limbo = NULL;
    s->nlimbo = s->limbo_cap = 0;
    atomic_fetch_sub(&m->size, s->count);
    s->count = 0;
    s->version++;
    pthread_mutex_unlock(&s->mutex);
    free_nodes(all);
    for (size_t j = 0; j < nlimbo; j++) limbo_free(&limbo[j]);
    tn_free(limbo);
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
    atomic_init(&s->seq, 0);
    atomic_init(&s->table, NULL);
    s->count = 0;
    s->version = 0;
    s->limbo = NULL;
    s->nlimbo = s->limbo_cap = 0;
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

#define TRY_AGAIN 1 /* not an error code: take the locked path */

/*
** A get without the shard mutex, inside an epoch (ebr.c: nothing it
** reaches is freed meanwhile). A seqlock tells a consistent view from a
** torn one: the sequence is odd while a growth or a clear moves the chains
** (the periodic re-check below stops a walk that a relink sent astray),
** and a closing gate moves it too (map_quiesce). Inserts, deletes and
** overwrites leave it alone: they change one link or one value with a
** release store, and a reader that sees either side of it is a get
** ordered before or after it. So: the sequence (acquire), the gate (a
** write callback holds everything: locked path), the walk, the value; an
** acquire fence; the same sequence again, else start over. A reader whose
** loads saw anything written after a sequence change (a relinked node, a
** callback's store, which comes after map_quiesce) sees that change in its
** second read of the sequence, by the fence.
*/
static int read_optimistic(tn_map_t *m, map_shard_t *s, uint64_t h,
                           const void *key, size_t len, tn_peek_t *p) {
  for (int tries = 0; tries < 4; tries++) {
    unsigned seq = atomic_load_explicit(&s->seq, memory_order_acquire);
    if (seq & 1) {
      tn_cpu_relax();
      continue;
    }
    if (atomic_load_explicit(&m->object.gate, memory_order_relaxed) ==
        TN_GATE_WRITE)
      return TRY_AGAIN;
    map_table_t *t = atomic_load_explicit(&s->table, memory_order_acquire);
    tn_blob_t *v = NULL;
    bool torn = false;
    if (t != NULL) {
      map_node_t *n =
          atomic_load_explicit(&t->b[h & (t->n - 1)], memory_order_acquire);
      for (unsigned steps = 1; n != NULL; steps++) {
        if (node_is(n, h, key, len)) {
          v = atomic_load_explicit(&n->value, memory_order_acquire);
          break;
        }
        n = atomic_load_explicit(&n->next, memory_order_acquire);
        if (steps % 8 == 0 &&
            atomic_load_explicit(&s->seq, memory_order_acquire) != seq) {
          torn = true;
          break;
        }
      }
    }
    if (torn) continue;
    tn_peek_value(v, p);
    TN_FENCE(memory_order_acquire);
    if (atomic_load_explicit(&s->seq, memory_order_relaxed) == seq)
      return TN_OK;
    tn_blob_release(p->blob); /* alive: inside the epoch */
    p->blob = NULL;
  }
  return TRY_AGAIN;
}

int tn_map_peek(tn_map_t *m, const void *key, size_t len, tn_peek_t *p,
                double timeout) {
  if (TN_REMOTE(m)) {
    tn_blob_t *b = NULL;
    int rc = TN_BACKEND(m)->map_get(m, key, len, &b, timeout);
    if (rc != TN_OK) return rc;
    tn_peek_value(b, p);
    tn_blob_release(b);
    return TN_OK;
  }
  uint64_t h = hash_key(m->seed, key, len);
  map_shard_t *s = shard_of(m, h);
  tn_ebr_thread_t *e = tn_ebr_enter();
  if (e != NULL) {
    int rc = read_optimistic(m, s, h, key, len, p);
    tn_ebr_leave(e);
    if (rc == TN_OK) return TN_OK;
  }
  /* A write callback holds the map (this thread's own, or another's: the
  ** gate decides), or the shard keeps moving, or no epoch record. */
  int rc = shard_lock_gated(m, s, timeout, false);
  if (rc != TN_OK) return rc;
  tn_blob_t *v = NULL;
  map_table_t *t = shard_table(s);
  if (t != NULL) {
    map_node_t *n =
        atomic_load_explicit(shard_find(t, h, key, len), memory_order_relaxed);
    if (n != NULL) v = atomic_load_explicit(&n->value, memory_order_relaxed);
  }
  tn_peek_value(v, p);
  pthread_mutex_unlock(&s->mutex);
  return TN_OK;
}

int tn_map_get(tn_map_t *m, const void *key, size_t len, tn_blob_t **out,
               double timeout) {
  if (TN_REMOTE(m)) return TN_BACKEND(m)->map_get(m, key, len, out, timeout);
  tn_peek_t p = {.take = 1};
  int rc = tn_map_peek(m, key, len, &p, timeout);
  if (rc == TN_OK) *out = p.blob;
  return rc;
}

/*
** Overwrite, insert or delete. The only allocations (a new key's node, and
** maybe a bigger bucket array or room to retire what leaves, which may
** fail harmlessly) happen under the shard's mutex, before anything
** changes. Whatever leaves the map (the old value, a deleted node) may
** still be read by a lock-free get: it is retired (ebr.c) and freed by a
** later call once no reader can hold it. When there is no room to retire
** it (out of memory), this call waits for the readers instead, after
** dropping the mutex (tn_ebr_synchronize), so an overwrite or a delete
** never fails for want of memory. Frees happen after the mutex is
** dropped: a release may free other structures, no reason to do that
** under our lock.
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
  map_table_t *t = shard_table(s);
  _Atomic(map_node_t *) *link = t != NULL ? shard_find(t, h, key, len) : NULL;
  map_node_t *n =
      link != NULL ? atomic_load_explicit(link, memory_order_relaxed) : NULL;
  limbo_item_t unkept = {NULL, 0, 0}; /* no room to retire it: ours */
  reaped_t reaped;
  reaped.n = 0;
  if (n != NULL) {
    prev = atomic_load_explicit(&n->value, memory_order_relaxed);
    if (old != NULL) *old = tn_blob_retain(prev);
    bool room = limbo_reserve(s, 1) == TN_OK;
    void *gone;
    int kind;
    if (b != NULL) {
      /* Overwrite: no allocation, size unchanged. */
      atomic_store_explicit(&n->value, b, memory_order_release);
      gone = prev;
      kind = LIMBO_BLOB;
    } else {
      atomic_store_explicit(
          link, atomic_load_explicit(&n->next, memory_order_relaxed),
          memory_order_release);
      gone = n;
      kind = LIMBO_NODE;
      s->count--;
      atomic_fetch_sub_explicit(&m->size, 1, memory_order_relaxed);
    }
    uint64_t tag = tn_ebr_tag();
    if (room)
      limbo_put(s, gone, kind, tag);
    else
      unkept = (limbo_item_t){gone, tag, kind};
    limbo_reap(s, &reaped);
  } else {
    if (old != NULL) *old = NULL;
    if (b != NULL) {
      n = tn_malloc(sizeof *n + len);
      if (n == NULL) {
        rc = TN_ENOMEM;
      } else if (t == NULL && shard_grow(s) != TN_OK) {
        tn_free(n); /* a shard cannot hold a key without any bucket */
        rc = TN_ENOMEM;
      } else {
        /* Keep the load factor at most 1; a failed growth still inserts. */
        if (s->count >= shard_table(s)->n) (void)shard_grow(s);
        t = shard_table(s);
        n->hash = h;
        atomic_init(&n->value, b);
        n->len = len;
        if (len > 0) memcpy(n->key, key, len);
        _Atomic(map_node_t *) *head = &t->b[h & (t->n - 1)];
        atomic_init(&n->next, atomic_load_explicit(head, memory_order_relaxed));
        atomic_store_explicit(head, n, memory_order_release); /* published */
        s->count++;
        atomic_fetch_add_explicit(&m->size, 1, memory_order_relaxed);
      }
    }
  }
  s->version++; /* for the collector: any call may have changed it */
  pthread_mutex_unlock(&s->mutex);
  if (rc != TN_OK) return rc;
  if (unkept.p != NULL) {
    tn_ebr_synchronize(unkept.tag);
    limbo_free(&unkept);
  }
  reaped_free(&reaped);
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
      map_table_t *t = shard_table(&m->shards[i]);
      for (size_t j = 0; t != NULL && j < t->n; j++)
        for (map_node_t *node =
                 atomic_load_explicit(&t->b[j], memory_order_relaxed);
             node != NULL;
             node = atomic_load_explicit(&node->next, memory_order_relaxed)) {
          void *key = tn_malloc(node->len > 0 ? node->len : 1);
          if (key == NULL) goto nomem;
          if (node->len > 0) memcpy(key, node->key, node->len);
          e[k].key = key;
          e[k].len = node->len;
          e[k].value = tn_blob_retain(
              atomic_load_explicit(&node->value, memory_order_relaxed));
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
