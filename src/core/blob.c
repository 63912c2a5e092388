/*
** blob.c - immutable, reference-counted byte strings with the shared
** objects they refer to. One allocation holds the header, the reference
** array and the bytes.
**
** Small blobs (most values: numbers, short strings, small tables) come from
** a pool of fixed-size chunks. A queue's blobs are made in the producer's
** thread and freed in the consumer's, and malloc pays dearly for that
** pattern (the chunk goes back to the producer's arena, under its lock).
** The pool keeps a short free list per thread, touched without atomics, and
** moves whole batches between threads through one mutex-protected list, so
** the mutex is taken once per POOL_BATCH blobs. A thread's list joins the
** shared one when the thread exits; the shared list is never handed back to
** malloc (it is as large as the most small values ever in flight).
**
** Builds with AddressSanitizer, or with TN_MEMCHECK (the valgrind build),
** use malloc for every blob, so that a use after free of a blob is caught
** instead of landing in a recycled chunk.
*/
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#if defined(TN_MEMCHECK) || defined(__SANITIZE_ADDRESS__)
#define TN_NO_BLOB_POOL 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TN_NO_BLOB_POOL 1
#endif
#endif

/*
** 24 bytes, then the reference array, then the bytes: a number or a short
** string and its header fit in one cache line, and a chunk of the pool
** starts on one, so handing a value to another core moves one line (PERF.md
** point 3: the copy is noise, the line transfer is not).
*/
struct tn_blob {
  atomic_long refs;
  size_t size;
  uint32_t nrefs;
  bool pooled;         /* a chunk of the pool, not a malloc */
  atomic_bool touched; /* retained while a collection ran (collect.c) */
};

static inline tn_object_t **objects_of(const tn_blob_t *b) {
  return (tn_object_t **)(b + 1);
}

static inline unsigned char *bytes_of(const tn_blob_t *b) {
  return (unsigned char *)(objects_of(b) + b->nrefs);
}

/* ---- the pool of small chunks ------------------------------------------- */

#define POOL_CHUNK 128 /* bytes: the header, a few references, the bytes */

#ifndef TN_NO_BLOB_POOL
#define POOL_BATCH 32  /* chunks moved between threads at a time */

typedef struct chunk {
  struct chunk *next;  /* the next free chunk of the same list */
  struct chunk *batch; /* in the shared list: the next batch */
  int count;           /* in the shared list: chunks in this batch */
} chunk_t;

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static chunk_t *pool_batches; /* batches of free chunks, from any thread */

static _Thread_local chunk_t *local_chunks; /* this thread's free chunks */
static _Thread_local int local_count;       /* exactly how many */
static _Thread_local bool local_registered; /* handed over at thread exit */

static pthread_key_t pool_key;
static pthread_once_t pool_once = PTHREAD_ONCE_INIT;

/* Add the `count` chunks linked from `first` to the shared list. */
static void pool_give(chunk_t *first, int count) {
  first->count = count;
  pthread_mutex_lock(&pool_lock);
  first->batch = pool_batches;
  pool_batches = first;
  pthread_mutex_unlock(&pool_lock);
}

/* Thread exit: the thread's chunks join the shared list, whole. */
static void pool_thread_exit(void *unused) {
  (void)unused;
  if (local_chunks != NULL) pool_give(local_chunks, local_count);
  local_chunks = NULL;
  local_count = 0;
}

static void pool_init(void) {
  if (pthread_key_create(&pool_key, pool_thread_exit) != 0) abort();
}

/* Before a thread first keeps chunks: make sure its exit gives them back. */
static void pool_register(void) {
  local_registered = true;
  pthread_once(&pool_once, pool_init);
  pthread_setspecific(pool_key, &pool_key); /* any non-NULL value */
}

static void *chunk_get(void) {
  if (local_chunks == NULL) {
    pthread_mutex_lock(&pool_lock);
    chunk_t *batch = pool_batches;
    if (batch != NULL) pool_batches = batch->batch;
    pthread_mutex_unlock(&pool_lock);
    if (batch == NULL) return tn_malloc_aligned(64, POOL_CHUNK); /* a line */
    if (!local_registered) pool_register();
    local_chunks = batch;
    local_count = batch->count;
  }
  chunk_t *c = local_chunks;
  local_chunks = c->next;
  local_count--;
  return c;
}

static void chunk_put(void *p) {
  if (!local_registered) pool_register();
  chunk_t *c = p;
  c->next = local_chunks;
  local_chunks = c;
  if (++local_count < 2 * POOL_BATCH) return;
  /* Keep one batch, give the other to whichever thread runs short. */
  chunk_t *last = local_chunks;
  for (int i = 1; i < POOL_BATCH; i++) last = last->next;
  chunk_t *give = local_chunks;
  local_chunks = last->next;
  last->next = NULL;
  local_count -= POOL_BATCH;
  pool_give(give, POOL_BATCH);
}
#else
static void *chunk_get(void) { return tn_malloc(POOL_CHUNK); }
static void chunk_put(void *p) { tn_free(p); }
#endif

/* ---- blobs --------------------------------------------------------------- */

tn_blob_t *tn_blob_new(const void *data, size_t len, tn_object_t *const *refs,
                       size_t nrefs) {
  size_t head = sizeof(tn_blob_t) + nrefs * sizeof(tn_object_t *);
  if (nrefs > UINT32_MAX || len > SIZE_MAX - head) return NULL;
  bool pooled = head + len <= POOL_CHUNK;
  tn_blob_t *b;
  if (pooled)
    b = tn_fault_check() ? NULL : chunk_get();
  else
    b = tn_malloc(head + len);
  if (b == NULL) return NULL;
  atomic_init(&b->refs, 1);
  b->pooled = pooled;
  atomic_init(&b->touched, false);
  b->size = len;
  b->nrefs = (uint32_t)nrefs;
  tn_object_t **objects = objects_of(b);
  for (size_t i = 0; i < nrefs; i++) objects[i] = tn_object_retain(refs[i]);
  if (len > 0) memcpy(bytes_of(b), data, len);
  return b;
}

/* As tn_object_retain: seq_cst, then the collector's mark (collect.c). */
tn_blob_t *tn_blob_retain(tn_blob_t *b) {
  if (b != NULL) {
    atomic_fetch_add_explicit(&b->refs, 1, memory_order_seq_cst);
    if (__builtin_expect(atomic_load(&tn_gc_running) != 0, 0))
      atomic_store(&b->touched, true);
  }
  return b;
}

/*
** No recursion here: the objects a dying blob releases are destroyed by
** the outermost release of the thread (object.c), not inside this call.
*/
void tn_blob_release(tn_blob_t *b) {
  if (b == NULL) return;
  /* acq_rel rather than release + an acquire fence: the same guarantee
  ** (and the same instruction on x86), and ThreadSanitizer, which does not
  ** model fences, can see it. */
  if (atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) != 1)
    return;
  tn_object_t **objects = objects_of(b);
  for (size_t i = 0; i < b->nrefs; i++) tn_object_release(objects[i]);
  if (b->pooled)
    chunk_put(b);
  else
    tn_free(b);
}

void tn_peek_value(tn_blob_t *v, tn_peek_t *p) {
  p->blob = NULL;
  p->nobjs = 0;
  if (v == NULL) {
    p->found = 0;
    p->size = 0;
    return;
  }
  p->found = 1;
  p->size = v->size;
  if (v->size <= p->cap && v->nrefs <= p->ocap) {
    if (v->size > 0) memcpy(p->buf, bytes_of(v), v->size);
    for (size_t i = 0; i < v->nrefs; i++) p->objs[i] = objects_of(v)[i];
    p->nobjs = v->nrefs;
  } else if (p->take) {
    p->blob = tn_blob_retain(v);
  }
}

const void *tn_blob_data(const tn_blob_t *b) { return bytes_of(b); }
size_t tn_blob_size(const tn_blob_t *b) { return b->size; }
size_t tn_blob_nrefs(const tn_blob_t *b) { return b->nrefs; }

tn_object_t *tn_blob_ref(const tn_blob_t *b, size_t i) {
  return i < b->nrefs ? objects_of(b)[i] : NULL;
}

void tn_blob_array_free(tn_blob_t **items, size_t n) {
  if (items == NULL) return;
  for (size_t i = 0; i < n; i++) tn_blob_release(items[i]);
  tn_free(items);
}

long tn_blob_refs_now(tn_blob_t *b) { return atomic_load(&b->refs); }
void tn_blob_touch_clear(tn_blob_t *b) { atomic_store(&b->touched, false); }
bool tn_blob_touched(tn_blob_t *b) { return atomic_load(&b->touched); }
