/*
** pqueue.c - the priority queue behind tunnel.PriorityQueue: a binary
** min-heap of (priority, sequence number, blob) under one mutex.
**
** Order. An entry goes before another when its priority is lower, or equal
** with a lower sequence number. Pushes number their entries 1, 2, 3, ...,
** so equal priorities leave in the order they came (FIFO). A value put back
** by unpop (a receiver that could not decode it) takes the numbers 0, -1,
** -2, ...: ahead of every entry of its priority, which is where it was when
** it was popped (it was the first of them), and a later unpop ahead of an
** earlier one (that one was popped before it).
**
** Waiting is the deque's protocol made simple by the single mutex: a
** popper (pusher) that must wait counts itself in pop_waiters
** (push_waiters) and sleeps on not_empty (not_full) with the mutex held
** until then, so a push, pop or close under the same mutex that sees no
** waiter needs no signal, and one that sees one signals it (close
** broadcasts). Before it sleeps, a wait spins a few microseconds on a
** relaxed read of the size (never on the lock): a futex wake-up costs tens
** of microseconds in a VM (PERF.md point 1). Every sleep goes through
** tn_cond_wait_until, so a cancel or an interrupt ends it; a wait that
** gives up (timeout, cancel) changes nothing.
**
** Caveats:
** - One mutex for both ends: a producer and a consumer contend for it
**   (the deque's two-lock trick needs a FIFO; a heap's root and its last
**   leaf are the same array). push and pop are O(log n).
** - Priorities are doubles: integers beyond 2^53 in magnitude may compare
**   equal to their neighbours (then FIFO decides). NaN is refused.
** - The heap grows by doubling and never shrinks until the queue is freed.
** - No read/write callbacks: the callback lock is never taken, so the
**   queue's operations are not gated (object.quiesce is NULL).
*/
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define PQ_INITIAL_CAPACITY 8

/* The bounded spin before sleeping (nanoseconds), as the deque's. */
#define PQ_SPIN_NS 6000L

typedef struct pq_entry {
  double priority;
  int64_t seq;
  tn_blob_t *blob;
} pq_entry_t;

struct tn_pqueue {
  tn_object_t object;
  pthread_mutex_t mutex;    /* guards everything below but `size` reads */
  pthread_cond_t not_empty; /* poppers wait here */
  pthread_cond_t not_full;  /* pushers wait here */
  pq_entry_t *heap;         /* heap[0] is the least */
  size_t cap;
  size_t hint;              /* pushes wait while size >= hint */
  int64_t push_seq;         /* the last push's sequence number */
  int64_t unpop_seq;        /* the next unpop's (0, -1, ...) */
  uint64_t version;         /* changes of the content (for the collector) */
  int pop_waiters;          /* asleep on not_empty */
  int push_waiters;         /* asleep on not_full */
  atomic_size_t size;       /* entries; written under the mutex */
  atomic_bool closed;       /* written under the mutex */
};

/* ---- the heap (mutex held) ----------------------------------------------- */

static inline bool before(const pq_entry_t *a, const pq_entry_t *b) {
  return a->priority < b->priority ||
         (a->priority == b->priority && a->seq < b->seq);
}

/* Room for one more entry; TN_ENOMEM leaves the queue as it was. */
static int reserve(tn_pqueue_t *q, size_t n) {
  if (n < q->cap) return TN_OK;
  if (q->cap > SIZE_MAX / 2 / sizeof(pq_entry_t)) return TN_ENOMEM;
  pq_entry_t *h = tn_realloc(q->heap, 2 * q->cap * sizeof *h);
  if (h == NULL) return TN_ENOMEM;
  q->heap = h;
  q->cap *= 2;
  return TN_OK;
}

/* Add `e` to the `n` entries (room reserved). */
static void heap_push(tn_pqueue_t *q, size_t n, pq_entry_t e) {
  pq_entry_t *h = q->heap;
  size_t i = n;
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (!before(&e, &h[parent])) break;
    h[i] = h[parent];
    i = parent;
  }
  h[i] = e;
}

/* Remove and return the least of the `n` (> 0) entries. */
static pq_entry_t heap_pop(tn_pqueue_t *q, size_t n) {
  pq_entry_t *h = q->heap, top = h[0], last = h[n - 1];
  size_t i = 0, count = n - 1;
  for (;;) {
    size_t child = 2 * i + 1;
    if (child >= count) break;
    if (child + 1 < count && before(&h[child + 1], &h[child])) child++;
    if (!before(&h[child], &last)) break;
    h[i] = h[child];
    i = child;
  }
  if (count > 0) h[i] = last;
  return top;
}

static inline size_t size_now(tn_pqueue_t *q) {
  return atomic_load_explicit(&q->size, memory_order_relaxed);
}

/* ---- life ---------------------------------------------------------------- */

static void pqueue_destroy(tn_object_t *o) {
  tn_pqueue_t *q = (tn_pqueue_t *)o;
  size_t n = size_now(q);
  for (size_t i = 0; i < n; i++) tn_blob_release(q->heap[i].blob);
  tn_free(q->heap);
  pthread_cond_destroy(&q->not_full);
  pthread_cond_destroy(&q->not_empty);
  pthread_mutex_destroy(&q->mutex);
  tn_object_fini(&q->object);
  tn_free(q);
}

/* ---- the cycle collector's hooks (internal.h, collect.c) ----------------- */

static bool pqueue_gc_trylock(tn_object_t *o) {
  return pthread_mutex_trylock(&((tn_pqueue_t *)o)->mutex) == 0;
}

static void pqueue_gc_unlock(tn_object_t *o) {
  pthread_mutex_unlock(&((tn_pqueue_t *)o)->mutex);
}

static void pqueue_gc_children(tn_object_t *o, tn_visit_fn visit, void *arg) {
  tn_pqueue_t *q = (tn_pqueue_t *)o;
  size_t n = size_now(q);
  for (size_t i = 0; i < n; i++)
    if (q->heap[i].blob != NULL) visit(q->heap[i].blob, arg);
}

static uint64_t pqueue_gc_version(tn_object_t *o) {
  return ((tn_pqueue_t *)o)->version;
}

/* Unreachable: nobody else looks at the entries once the size is 0. */
static void pqueue_gc_clear(tn_object_t *o) {
  tn_pqueue_t *q = (tn_pqueue_t *)o;
  pthread_mutex_lock(&q->mutex);
  size_t n = size_now(q);
  atomic_store(&q->size, 0);
  q->version++;
  pthread_mutex_unlock(&q->mutex);
  for (size_t i = 0; i < n; i++) {
    tn_blob_t *b = q->heap[i].blob;
    q->heap[i].blob = NULL;
    tn_blob_release(b);
  }
}

static const tn_gc_ops_t pqueue_gc = {pqueue_gc_trylock, pqueue_gc_unlock,
                                      pqueue_gc_children, pqueue_gc_version,
                                      pqueue_gc_clear};

int tn_pqueue_new(size_t size_hint, tn_pqueue_t **out) {
  if (size_hint == 0) return TN_EINVAL;
  tn_pqueue_t *q = tn_malloc(sizeof *q);
  if (q == NULL) return TN_ENOMEM;
  q->heap = tn_malloc(PQ_INITIAL_CAPACITY * sizeof *q->heap);
  if (q->heap == NULL) {
    tn_free(q);
    return TN_ENOMEM;
  }
  tn_object_init(&q->object, TN_TYPE_PQUEUE, pqueue_destroy);
  tn_mutex_init(&q->mutex);
  tn_cond_init(&q->not_empty);
  tn_cond_init(&q->not_full);
  q->cap = PQ_INITIAL_CAPACITY;
  q->hint = size_hint;
  q->push_seq = 0;
  q->unpop_seq = 0;
  q->version = 0;
  q->pop_waiters = 0;
  q->push_waiters = 0;
  atomic_init(&q->size, 0);
  atomic_init(&q->closed, false);
  tn_gc_register(&q->object, &pqueue_gc);
  *out = q;
  return TN_OK;
}

size_t tn_pqueue_size(tn_pqueue_t *q) {
  if (TN_REMOTE(q)) return TN_BACKEND(q)->pqueue_size(q);
  return size_now(q);
}

size_t tn_pqueue_size_hint(const tn_pqueue_t *q) {
  if (TN_REMOTE(q)) return TN_BACKEND(q)->pqueue_size_hint(q);
  return q->hint;
}

int tn_pqueue_is_closed(tn_pqueue_t *q) {
  if (TN_REMOTE(q)) return TN_BACKEND(q)->pqueue_is_closed(q);
  return atomic_load_explicit(&q->closed, memory_order_relaxed);
}

int tn_pqueue_close(tn_pqueue_t *q) {
  if (TN_REMOTE(q)) return TN_BACKEND(q)->pqueue_close(q);
  pthread_mutex_lock(&q->mutex);
  atomic_store(&q->closed, true);
  if (q->pop_waiters > 0) pthread_cond_broadcast(&q->not_empty);
  if (q->push_waiters > 0) pthread_cond_broadcast(&q->not_full);
  pthread_mutex_unlock(&q->mutex);
  return TN_OK;
}

/* ---- waiting ------------------------------------------------------------- */

/* What the spin before a sleep waits for (the mutex re-checks). */
static bool spin_has_room(void *p) {
  tn_pqueue_t *q = p;
  return size_now(q) < q->hint || atomic_load(&q->closed);
}

static bool spin_has_items(void *p) {
  tn_pqueue_t *q = p;
  return size_now(q) > 0 || atomic_load(&q->closed);
}

/* Mutex held: ready to push (room or closed) / to pop (items or closed). */
static inline bool can_push(tn_pqueue_t *q) {
  return size_now(q) < q->hint || atomic_load_explicit(&q->closed,
                                                       memory_order_relaxed);
}

static inline bool can_pop(tn_pqueue_t *q) {
  return size_now(q) > 0 || atomic_load_explicit(&q->closed,
                                                 memory_order_relaxed);
}

/*
** Take the mutex and wait (mutex held) until ready(q) or the timeout runs
** out: TN_OK with the mutex held and ready(q) true; otherwise the code
** (TN_EAGAIN for TN_TRY and TN_ETIMEDOUT for 0 when not ready at once;
** TN_ETIMEDOUT, TN_ECANCELED, TN_EINTR after a wait) with no mutex held.
*/
static int acquire_ready(tn_pqueue_t *q, double timeout,
                         bool (*ready)(tn_pqueue_t *), bool (*spin)(void *),
                         pthread_cond_t *cv, int *waiters) {
  int rc = tn_mutex_acquire(&q->mutex, timeout);
  if (rc != TN_OK) return rc;
  if (ready(q)) return TN_OK;
  if (timeout <= 0) {
    pthread_mutex_unlock(&q->mutex);
    return timeout < 0 ? TN_EAGAIN : TN_ETIMEDOUT;
  }
  /* Spin with the mutex dropped: the other side needs it to act. */
  pthread_mutex_unlock(&q->mutex);
  tn_spin_until(spin, q, PQ_SPIN_NS);
  pthread_mutex_lock(&q->mutex);
  tn_deadline_t dl = tn_deadline_in(timeout);
  rc = TN_OK;
  while (!ready(q)) {
    (*waiters)++;
    int w = tn_cond_wait_until(cv, &q->mutex, &dl);
    (*waiters)--;
    if (w != TN_OK && !ready(q)) { /* timeout, cancel, interrupt */
      rc = w;
      break;
    }
  }
  if (rc != TN_OK) pthread_mutex_unlock(&q->mutex);
  return rc;
}

/* ---- push and pop -------------------------------------------------------- */

/* Mutex held, room reserved: add the entry. True when a popper sleeps:
** the caller signals not_empty once it has dropped the mutex (a popper
** woken under it would only block on it; it is counted, so it is in its
** wait already and the signal cannot be lost). */
static bool insert_locked(tn_pqueue_t *q, pq_entry_t e) {
  size_t n = size_now(q);
  heap_push(q, n, e);
  q->version++;
  atomic_store_explicit(&q->size, n + 1, memory_order_relaxed);
  return q->pop_waiters > 0;
}

int tn_pqueue_push(tn_pqueue_t *q, double priority, tn_blob_t *b,
                   double timeout) {
  if (isnan(priority)) return TN_EINVAL;
  if (TN_REMOTE(q)) return TN_BACKEND(q)->pqueue_push(q, priority, b, timeout);
  int rc = acquire_ready(q, timeout, can_push, spin_has_room, &q->not_full,
                         &q->push_waiters);
  if (rc != TN_OK) return rc;
  if (atomic_load_explicit(&q->closed, memory_order_relaxed))
    rc = TN_ECLOSED;
  else
    rc = reserve(q, size_now(q));
  bool wake = rc == TN_OK &&
              insert_locked(q, (pq_entry_t){priority, ++q->push_seq, b});
  pthread_mutex_unlock(&q->mutex);
  if (wake) pthread_cond_signal(&q->not_empty);
  return rc;
}

int tn_pqueue_pop(tn_pqueue_t *q, tn_blob_t **out, double *priority,
                  double timeout) {
  if (TN_REMOTE(q)) return TN_BACKEND(q)->pqueue_pop(q, out, priority, timeout);
  int rc = acquire_ready(q, timeout, can_pop, spin_has_items, &q->not_empty,
                         &q->pop_waiters);
  if (rc != TN_OK) return rc;
  size_t n = size_now(q);
  if (n == 0) { /* closed and drained */
    pthread_mutex_unlock(&q->mutex);
    return TN_ECLOSED;
  }
  pq_entry_t e = heap_pop(q, n);
  q->version++;
  atomic_store_explicit(&q->size, n - 1, memory_order_relaxed);
  bool wake = q->push_waiters > 0; /* signalled unlocked: see insert */
  pthread_mutex_unlock(&q->mutex);
  if (wake) pthread_cond_signal(&q->not_full);
  *out = e.blob;
  if (priority != NULL) *priority = e.priority;
  return TN_OK;
}

int tn_pqueue_unpop(tn_pqueue_t *q, double priority, tn_blob_t *b) {
  if (isnan(priority)) return TN_EINVAL;
  if (TN_REMOTE(q)) return TN_BACKEND(q)->pqueue_unpop(q, priority, b);
  pthread_mutex_lock(&q->mutex);
  int rc = reserve(q, size_now(q));
  bool wake = rc == TN_OK &&
              insert_locked(q, (pq_entry_t){priority, q->unpop_seq--, b});
  pthread_mutex_unlock(&q->mutex);
  if (wake) pthread_cond_signal(&q->not_empty);
  return rc;
}
