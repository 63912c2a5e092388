/*
** deque.c - the deque behind tunnel.Vector: a ring buffer of blob
** pointers, usable as a queue, a stack and an array.
**
** Two locks. `front` is taken by pop_front alone; `back` by push_back and
** pop_back; every other operation (push_front, insert, remove, get, set,
** snapshot, replace, close, growing the buffer) takes both, front first.
** A producer pushing at the back and a consumer popping at the front then
** never contend for a lock, and each keeps its lock's cache line: with one
** lock the line moved between the cores twice per item, and the 1P/1C
** hand-off took 2x longer (the two-lock queue of Michael and Scott, 1996).
**
** What the ends share is `size`, the number of values published:
** - a push writes its slot, then increments size (publishing it);
** - a pop claims a value by decrementing size (a CAS: never below 0), then
**   reads its slot. A pop at the front and one at the back can both claim
**   only when two values are there, so they never read the same slot.
** - pushes all hold `back`, so the size a push reads cannot grow under it:
**   the size hint is exact.
** - the ring always keeps a free slot: a push at the back alone then has
**   room even while a pop at the front has claimed a value (size counts
**   it gone) and not read it yet. Operations holding both locks see the
**   size exactly. The buffer itself (buf, cap) changes only under both.
**
** Waiting. A push or pop that must wait first spins for a few microseconds
** on a relaxed read of the size (never on a lock), then drops its locks
** and sleeps on a condition variable under a third mutex, `wait`. In a VM a
** futex wake-up costs tens of microseconds, so the spin is what makes small
** size hints fast (PERF.md point 1). No wake-up is lost: a sleeper counts
** itself in pop_waiters (push_waiters), then checks the size under `wait`;
** a pusher changes the size, then reads pop_waiters, and if it is not zero
** signals under `wait`. Both sides use sequentially consistent atomics, so
** at least one sees the other (the store-buffering pattern): the sleeper
** sees the value, or the pusher sees the sleeper, and the sleeper holds
** `wait` from its check until it sleeps. Signals are sent only when a
** waiter is counted (PERF.md point 2); woken threads re-take their locks
** and re-check.
**
** Batches. push_many writes its values under `back` like a push (the
** free-slot argument holds for any count: it needs size + k < cap);
** pop_many takes both locks, because the front lock alone would let it
** claim several values whose slots a pusher then reuses before they are
** read (the free slot covers one claimed value, not k). A batch pusher
** waiting for room for k counts itself in batch_waiters too, and then a
** pop that frees a slot wakes every pusher: the one a signal would pick
** may be a batch that still does not fit.
**
** Select (select.c) registers one waiter on several deques: tn_deque_watch
** adds it to `watchers` and counts it in pop_waiters, so a push that sees
** no sleeper stays one load, and one that sees any wakes the watchers too
** (wake_poppers), as do close and the callback gate opening (a pop held
** off by a callback may go on).
**
** Caveats:
** - The size hint bounds pushes only: insert and set never wait for room,
**   so the size may exceed the hint (and so may a push_many of more values
**   than the hint, into an empty deque).
** - insert/remove in the middle move up to half the values (O(n)).
** - The buffer grows by doubling and never shrinks until the deque is
**   freed (no allocation per item on a steady stream).
*/
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* The first buffer; a power of two, enough for the common small hints. */
#define DEQUE_INITIAL_CAPACITY 8

/* The bounded spin before sleeping (nanoseconds). */
#define DEQUE_SPIN_NS 6000L

/* The line size the hot fields are spread over. */
#define LINE 64

struct tn_deque {
  tn_object_t object;
  tn_blob_t **buf;          /* ring of `cap` slots, cap a power of two */
  size_t cap;               /* buf and cap change under both locks */
  size_t hint;              /* pushes wait while size >= hint */

  _Alignas(LINE) pthread_mutex_t front;
  size_t head;              /* index in buf of the front value (front) */
  uint64_t front_version;   /* modifications under front alone */

  _Alignas(LINE) pthread_mutex_t back;
  size_t tail;              /* index in buf after the back value (back) */
  uint64_t back_version;    /* modifications under back (or both) */

  /* Changed by every push and pop, and read right after by the same
  ** thread: one line. */
  _Alignas(LINE) atomic_size_t size; /* values published */
  atomic_int pop_waiters;   /* threads asleep (or about to) on not_empty */
  atomic_int push_waiters;  /* threads asleep (or about to) on not_full */
  atomic_bool closed;       /* set under both locks */

  _Alignas(LINE) pthread_mutex_t wait; /* guards sleeping only */
  pthread_cond_t not_empty; /* poppers wait here */
  pthread_cond_t not_full;  /* pushers wait here */
  int batch_waiters;        /* push_many waiting for room (under wait) */
  tn_watch_t *watchers;     /* selects waiting on this deque (under wait) */
};

/* ---- locks -------------------------------------------------------------- */

/* Take both locks, front first (the one order). TN_TRY tries each once. */
static int lock_both(tn_deque_t *d, double timeout) {
  int rc = tn_mutex_acquire(&d->front, timeout);
  if (rc != TN_OK) return rc;
  rc = tn_mutex_acquire(&d->back, timeout);
  if (rc != TN_OK) pthread_mutex_unlock(&d->front);
  return rc;
}

static void unlock_both(tn_deque_t *d) {
  pthread_mutex_unlock(&d->back);
  pthread_mutex_unlock(&d->front);
}

/* lock_both_gated once the gate was seen shut, the locks dropped. */
static __attribute__((noinline)) int
lock_both_waiting(tn_deque_t *d, double timeout, bool modifies, int rc) {
  tn_deadline_t dl = {.forever = true};
  bool dl_set = false;
  for (;;) {
    if (rc != TN_EBUSY_GATE) return rc;
    rc = tn_gate_wait(&d->object, modifies, timeout, &dl, &dl_set);
    if (rc != TN_OK) return rc;
    if ((rc = lock_both(d, timeout)) != TN_OK) return rc;
    rc = tn_gate_enter(&d->object, modifies, timeout);
    if (rc == TN_OK) return TN_OK;
    unlock_both(d);
  }
}

/*
** Both locks, past the callback gate: a `modifies` operation waits while a
** callback holds the deque, a read only while a write callback does (the
** gate, internal.h). TN_OK with both held, or an error with neither.
*/
static inline int lock_both_gated(tn_deque_t *d, double timeout,
                                  bool modifies) {
  int rc = lock_both(d, timeout);
  if (rc != TN_OK) return rc;
  rc = tn_gate_enter(&d->object, modifies, timeout);
  if (__builtin_expect(rc == TN_OK, 1)) return TN_OK;
  unlock_both(d);
  return lock_both_waiting(d, timeout, modifies, rc);
}

/* The gate moved: an operation under way holds a lock; wait for it to end,
** and the next one sees the gate (it reads it under its lock). */
static void notify_watchers(tn_deque_t *d);
static void deque_quiesce(tn_object_t *o, int gate) {
  tn_deque_t *d = (tn_deque_t *)o;
  if (gate == TN_GATE_OPEN) {
    /* Waiters in the gate re-check under it; a select is told. */
    if (atomic_load(&d->pop_waiters) > 0) {
      pthread_mutex_lock(&d->wait);
      notify_watchers(d);
      pthread_mutex_unlock(&d->wait);
    }
    return;
  }
  lock_both(d, TN_FOREVER);
  unlock_both(d);
}

pthread_mutex_t *tn_deque_test_mutex(tn_deque_t *d, bool front) {
  return front ? &d->front : &d->back;
}

/* The size, exact when both locks are held. */
static inline size_t size_of(tn_deque_t *d) { return atomic_load(&d->size); }

/* ---- the ring (both locks held unless said) ----------------------------- */

static inline tn_blob_t **slot(tn_deque_t *d, size_t i) {
  return &d->buf[(d->head + i) & (d->cap - 1)];
}

/* After a change of the content under both locks: `n` values now. */
static void ring_changed(tn_deque_t *d, size_t n) {
  d->tail = (d->head + n) & (d->cap - 1);
  d->back_version++;
  atomic_store(&d->size, n); /* seq_cst: then the waiter counts are read */
}

/* Whether `n` values fit, with the free slot the ring keeps. */
static inline bool fits(size_t n, size_t cap) { return n < cap; }

/*
** Make room for `n` values, doubling the buffer. On failure (TN_ENOMEM)
** the deque is unchanged.
*/
static int deque_reserve(tn_deque_t *d, size_t n) {
  if (fits(n, d->cap)) return TN_OK;
  if (n == SIZE_MAX) return TN_ENOMEM;
  size_t count = size_of(d), cap = d->cap;
  while (!fits(n, cap)) {
    if (cap > SIZE_MAX / 2 / sizeof(tn_blob_t *)) return TN_ENOMEM;
    cap *= 2;
  }
  tn_blob_t **buf = tn_realloc(d->buf, cap * sizeof(tn_blob_t *));
  if (buf == NULL) return TN_ENOMEM;
  /* Unwrap: values that wrapped past the old end move after it, in order. */
  size_t wrapped = d->head + count > d->cap ? d->head + count - d->cap : 0;
  if (wrapped > 0) memcpy(buf + d->cap, buf, wrapped * sizeof(tn_blob_t *));
  d->buf = buf;
  d->cap = cap;
  d->tail = (d->head + count) & (cap - 1);
  return TN_OK;
}

/* Insert `b` at `index` (<= n, the count), room reserved. */
static void ring_insert(tn_deque_t *d, size_t n, size_t index, tn_blob_t *b) {
  if (index < n / 2) {
    /* Nearer the front: move the front part one slot towards it. */
    d->head = (d->head - 1) & (d->cap - 1);
    for (size_t i = 0; i < index; i++) *slot(d, i) = *slot(d, i + 1);
  } else {
    for (size_t i = n; i > index; i--) *slot(d, i) = *slot(d, i - 1);
  }
  *slot(d, index) = b;
}

/* Remove and return the value at `index` (< n, the count). */
static tn_blob_t *ring_remove(tn_deque_t *d, size_t n, size_t index) {
  tn_blob_t *b = *slot(d, index);
  if (index < n / 2) {
    for (size_t i = index; i > 0; i--) *slot(d, i) = *slot(d, i - 1);
    d->head = (d->head + 1) & (d->cap - 1);
  } else {
    for (size_t i = index; i + 1 < n; i++) *slot(d, i) = *slot(d, i + 1);
  }
  return b;
}

/* ---- life --------------------------------------------------------------- */

static void deque_destroy(tn_object_t *o) {
  tn_deque_t *d = (tn_deque_t *)o;
  size_t n = size_of(d);
  for (size_t i = 0; i < n; i++) tn_blob_release(*slot(d, i));
  tn_free(d->buf);
  pthread_cond_destroy(&d->not_empty);
  pthread_cond_destroy(&d->not_full);
  pthread_mutex_destroy(&d->wait);
  pthread_mutex_destroy(&d->back);
  pthread_mutex_destroy(&d->front);
  tn_object_fini(&d->object);
  tn_free(d);
}

/* ---- the cycle collector's hooks (internal.h, collect.c) ---------------- */

static bool deque_gc_trylock(tn_object_t *o) {
  return lock_both((tn_deque_t *)o, TN_TRY) == TN_OK;
}

static void deque_gc_unlock(tn_object_t *o) { unlock_both((tn_deque_t *)o); }

static void deque_gc_children(tn_object_t *o, tn_visit_fn visit, void *arg) {
  tn_deque_t *d = (tn_deque_t *)o;
  size_t n = size_of(d);
  for (size_t i = 0; i < n; i++)
    if (*slot(d, i) != NULL) visit(*slot(d, i), arg);
}

static uint64_t deque_gc_version(tn_object_t *o) {
  tn_deque_t *d = (tn_deque_t *)o;
  return d->front_version + d->back_version; /* both only grow */
}

/* Unreachable: no one else will look at the slots once the size is 0. */
static void deque_gc_clear(tn_object_t *o) {
  tn_deque_t *d = (tn_deque_t *)o;
  lock_both(d, TN_FOREVER);
  size_t n = size_of(d);
  ring_changed(d, 0);
  unlock_both(d);
  for (size_t i = 0; i < n; i++) {
    tn_blob_t *b = *slot(d, i);
    *slot(d, i) = NULL;
    tn_blob_release(b);
  }
}

static const tn_gc_ops_t deque_gc = {deque_gc_trylock, deque_gc_unlock,
                                     deque_gc_children, deque_gc_version,
                                     deque_gc_clear};

/*
** A new, empty deque with one reference. TN_EINVAL for a zero hint,
** TN_ENOMEM (nothing allocated) when memory runs out.
*/
int tn_deque_new(size_t size_hint, tn_deque_t **out) {
  return tn_deque_new_as(TN_TYPE_DEQUE, size_hint, out);
}

int tn_deque_new_as(tn_type_t type, size_t size_hint, tn_deque_t **out) {
  if (size_hint == 0 || (type != TN_TYPE_DEQUE && type != TN_TYPE_PLURAL))
    return TN_EINVAL;
  tn_deque_t *d = tn_malloc_aligned(LINE, sizeof *d);
  if (d == NULL) return TN_ENOMEM;
  d->buf = tn_malloc(DEQUE_INITIAL_CAPACITY * sizeof(tn_blob_t *));
  if (d->buf == NULL) {
    tn_free(d);
    return TN_ENOMEM;
  }
  tn_object_init(&d->object, type, deque_destroy);
  d->object.quiesce = deque_quiesce;
  d->cap = DEQUE_INITIAL_CAPACITY;
  d->hint = size_hint;
  tn_mutex_init(&d->front);
  d->head = 0;
  d->front_version = 0;
  tn_mutex_init(&d->back);
  d->tail = 0;
  d->back_version = 0;
  atomic_init(&d->size, 0);
  atomic_init(&d->pop_waiters, 0);
  atomic_init(&d->push_waiters, 0);
  atomic_init(&d->closed, false);
  tn_mutex_init(&d->wait);
  tn_cond_init(&d->not_empty);
  tn_cond_init(&d->not_full);
  d->batch_waiters = 0;
  d->watchers = NULL;
  tn_gc_register(&d->object, &deque_gc);
  *out = d;
  return TN_OK;
}

size_t tn_deque_size(tn_deque_t *d) {
  if (TN_REMOTE(d)) return TN_BACKEND(d)->deque_size(d);
  return atomic_load_explicit(&d->size, memory_order_relaxed);
}

size_t tn_deque_size_hint(const tn_deque_t *d) {
  if (TN_REMOTE(d)) return TN_BACKEND(d)->deque_size_hint(d);
  return d->hint;
}

/* Close under both locks, so that every operation sees it or finished
** before; then wake every sleeper: pushers to fail, poppers to drain. */
int tn_deque_close_timed(tn_deque_t *d, double timeout) {
  if (TN_REMOTE(d)) {
    TN_BACKEND(d)->deque_close(d);
    return tn_error_take();
  }
  int rc = lock_both_gated(d, timeout, true);
  if (rc != TN_OK) return rc;
  atomic_store(&d->closed, true);
  unlock_both(d);
  pthread_mutex_lock(&d->wait);
  pthread_cond_broadcast(&d->not_empty);
  pthread_cond_broadcast(&d->not_full);
  notify_watchers(d);
  pthread_mutex_unlock(&d->wait);
  return TN_OK;
}

void tn_deque_close(tn_deque_t *d) {
  int rc = tn_deque_close_timed(d, TN_FOREVER);
  if (rc != TN_OK) tn_error_pend(rc);
}

int tn_deque_is_closed(tn_deque_t *d) {
  if (TN_REMOTE(d)) return TN_BACKEND(d)->deque_is_closed(d);
  return atomic_load_explicit(&d->closed, memory_order_relaxed);
}

/* ---- waiting ------------------------------------------------------------ */

/* What a pusher and a popper wait for (closed ends every wait). Sequentially
** consistent loads: sleep_until relies on them (see the top). */
static bool has_room(void *p) {
  tn_deque_t *d = p;
  return atomic_load(&d->size) < d->hint || atomic_load(&d->closed);
}

static bool has_items(void *p) {
  tn_deque_t *d = p;
  return atomic_load(&d->size) > 0 || atomic_load(&d->closed);
}

/*
** Sleep, holding none of the deque's locks, until ready(d) or the deadline
** passes. TN_OK: ready was true under `wait` (the caller re-takes its
** locks and re-checks: another thread may be first); TN_ETIMEDOUT.
*/
static int sleep_until(tn_deque_t *d, pthread_cond_t *cond,
                       atomic_int *waiters, bool (*ready)(void *),
                       const tn_deadline_t *dl) {
  int rc = TN_OK;
  pthread_mutex_lock(&d->wait);
  atomic_fetch_add(waiters, 1); /* before the check: see the top */
  while (!ready(d)) {
    /* A timeout, cancel or interrupt ends the wait unless it is ready. */
    int w = tn_cond_wait_until(cond, &d->wait, dl);
    if (w != TN_OK && !ready(d)) {
      rc = w;
      break;
    }
  }
  atomic_fetch_sub(waiters, 1);
  pthread_mutex_unlock(&d->wait);
  return rc;
}

/* Wake every select watching the deque (`wait` held). */
static void notify_watchers(tn_deque_t *d) {
  for (tn_watch_t *w = d->watchers; w != NULL; w = w->next)
    tn_waiter_notify(w->waiter);
}

/* After the size grew: wake poppers (and selects) if any sleep. No lock of
** ours held. The check stays inline in every push; the rest does not. */
static __attribute__((noinline)) void wake_poppers_now(tn_deque_t *d,
                                                       bool all) {
  pthread_mutex_lock(&d->wait);
  if (all)
    pthread_cond_broadcast(&d->not_empty);
  else
    pthread_cond_signal(&d->not_empty);
  notify_watchers(d);
  pthread_mutex_unlock(&d->wait);
}

static inline void wake_poppers(tn_deque_t *d, bool all) {
  if (atomic_load(&d->pop_waiters) != 0) wake_poppers_now(d, all);
}

/* After the size shrank: wake pushers if any sleep and there is room
** (every one when a batch waits, see the top). */
static void wake_pushers(tn_deque_t *d, bool all) {
  if (atomic_load(&d->push_waiters) == 0 || !has_room(d)) return;
  pthread_mutex_lock(&d->wait);
  if (all || d->batch_waiters > 0)
    pthread_cond_broadcast(&d->not_full);
  else
    pthread_cond_signal(&d->not_full);
  pthread_mutex_unlock(&d->wait);
}

/* Give up a wait that found no room or no value: TN_TRY and 0 never wait. */
static int no_wait(double timeout) {
  return timeout < 0 ? TN_EAGAIN : TN_ETIMEDOUT;
}

/* A callback's own push into a full deque (pop from an empty one) would
** wait for other threads that its gate holds off: forever. */
static bool holder_would_wait(tn_deque_t *d) {
  return atomic_load_explicit(&d->object.gate, memory_order_relaxed) !=
             TN_GATE_OPEN &&
         tn_object_lock_held(&d->object) != 0;
}

/* Whether `k` values may be pushed onto `n`: they fit under the hint, or
** they are more than the hint and the deque is empty (push_many). */
static inline bool room_for(const tn_deque_t *d, size_t n, size_t k) {
  if (k == 1) return n < d->hint; /* a single push: folded at its call */
  return k <= d->hint ? n <= d->hint - k : n == 0;
}

/* sleep_until for a batch of `k`: counted in batch_waiters too (see the
** top). */
static int sleep_for_room(tn_deque_t *d, size_t k, const tn_deadline_t *dl) {
  int rc = TN_OK;
  pthread_mutex_lock(&d->wait);
  atomic_fetch_add(&d->push_waiters, 1); /* before the check */
  d->batch_waiters++;
  while (!room_for(d, atomic_load(&d->size), k) && !atomic_load(&d->closed)) {
    int w = tn_cond_wait_until(&d->not_full, &d->wait, dl);
    if (w != TN_OK && !room_for(d, atomic_load(&d->size), k) &&
        !atomic_load(&d->closed)) {
      rc = w;
      break;
    }
  }
  d->batch_waiters--;
  atomic_fetch_sub(&d->push_waiters, 1);
  pthread_mutex_unlock(&d->wait);
  return rc;
}

/*
** Lock for a push of `k` values and wait until it may proceed: TN_OK with
** the push's locks held (back; both for the front) and room for them, or
** an error with no lock held.
*/
#define FULL 2 /* push_acquire: no room (not an error code) */
static inline __attribute__((always_inline)) int
push_acquire(tn_deque_t *d, double timeout, bool front, size_t k) {
  tn_deadline_t dl = {.forever = true};
  bool deadline_set = false;
  for (;;) {
    /* Spin only for a wait that may sleep. */
    if (timeout > 0 &&
        !room_for(d, atomic_load_explicit(&d->size, memory_order_relaxed), k))
      tn_spin_until(has_room, d, DEQUE_SPIN_NS);
    int rc = front ? lock_both(d, timeout)
                   : tn_mutex_acquire(&d->back, timeout);
    if (rc != TN_OK) return rc;
    if ((rc = tn_gate_enter(&d->object, true, timeout)) != TN_OK) {
      /* TN_EBUSY_GATE: wait below for the gate; or an error */
    } else if (atomic_load_explicit(&d->closed, memory_order_relaxed)) {
      rc = TN_ECLOSED;
    } else {
      /* Pushes hold `back`: this size can only shrink until we unlock. */
      size_t n = size_of(d);
      if (room_for(d, n, k)) {
        if (front) {
          rc = deque_reserve(d, n + k);
          if (rc == TN_OK) return TN_OK;
        } else if (fits(n + k, d->cap)) {
          return TN_OK;
        } else {
          /* Growing needs both locks, taken in order: start again. */
          pthread_mutex_unlock(&d->back);
          rc = lock_both(d, timeout);
          if (rc != TN_OK) return rc;
          rc = deque_reserve(d, size_of(d) + k);
          unlock_both(d);
          if (rc != TN_OK) return rc;
          continue;
        }
      } else {
        rc = FULL; /* wait below for room */
      }
    }
    if (front)
      unlock_both(d);
    else
      pthread_mutex_unlock(&d->back);
    if (rc == TN_EBUSY_GATE) {
      rc = tn_gate_wait(&d->object, true, timeout, &dl, &deadline_set);
      if (rc != TN_OK) return rc;
      continue;
    }
    if (rc != FULL) return rc;
    if (timeout <= 0) return no_wait(timeout);
    if (holder_would_wait(d)) return TN_EDEADLK;
    if (!deadline_set) {
      dl = tn_deadline_in(timeout);
      deadline_set = true;
    }
    rc = k == 1 ? sleep_until(d, &d->not_full, &d->push_waiters, has_room, &dl)
                : sleep_for_room(d, k, &dl);
    if (rc != TN_OK) return rc;
  }
}

/*
** Lock for a pop and claim a value: TN_OK with the end's lock held and one
** value claimed (size already counts it gone), or an error with no lock
** held. A closed deque still gives its values; then TN_ECLOSED.
*/
static int pop_acquire(tn_deque_t *d, double timeout, bool front) {
  pthread_mutex_t *m = front ? &d->front : &d->back;
  tn_deadline_t dl = {.forever = true};
  bool deadline_set = false;
  for (;;) {
    if (timeout > 0 &&
        atomic_load_explicit(&d->size, memory_order_relaxed) == 0)
      tn_spin_until(has_items, d, DEQUE_SPIN_NS);
    int rc = tn_mutex_acquire(m, timeout);
    if (rc != TN_OK) return rc;
    if ((rc = tn_gate_enter(&d->object, true, timeout)) != TN_OK) {
      pthread_mutex_unlock(m);
      if (rc != TN_EBUSY_GATE) return rc;
      rc = tn_gate_wait(&d->object, true, timeout, &dl, &deadline_set);
      if (rc != TN_OK) return rc;
      continue;
    }
    /* The other end's pop may claim too: never below zero. */
    size_t n = atomic_load(&d->size);
    while (n > 0 && !atomic_compare_exchange_weak(&d->size, &n, n - 1)) {
    }
    if (n > 0) return TN_OK;
    bool closed = atomic_load(&d->closed);
    pthread_mutex_unlock(m);
    if (closed) return TN_ECLOSED;
    if (timeout <= 0) return no_wait(timeout);
    if (holder_would_wait(d)) return TN_EDEADLK;
    if (!deadline_set) {
      dl = tn_deadline_in(timeout);
      deadline_set = true;
    }
    rc = sleep_until(d, &d->not_empty, &d->pop_waiters, has_items, &dl);
    if (rc != TN_OK) return rc;
  }
}

/* ---- queue and stack ---------------------------------------------------- */

/*
** Push `b` at the back (or front). TN_OK: the deque owns the reference.
** TN_ECLOSED, TN_EAGAIN, TN_ETIMEDOUT, TN_ENOMEM: the caller keeps it.
*/
static int deque_push(tn_deque_t *d, tn_blob_t *b, double timeout,
                      bool front) {
  int rc = push_acquire(d, timeout, front, 1);
  if (rc != TN_OK) return rc;
  if (front) {
    d->head = (d->head - 1) & (d->cap - 1);
    d->buf[d->head] = b;
    d->back_version++;
    atomic_fetch_add(&d->size, 1); /* publish */
    unlock_both(d);
  } else {
    d->buf[d->tail] = b;
    d->tail = (d->tail + 1) & (d->cap - 1);
    d->back_version++;
    atomic_fetch_add(&d->size, 1); /* publish */
    pthread_mutex_unlock(&d->back);
  }
  wake_poppers(d, false); /* one new value: one popper */
  return TN_OK;
}

int tn_deque_push_back(tn_deque_t *d, tn_blob_t *b, double timeout) {
  if (TN_REMOTE(d)) return TN_BACKEND(d)->deque_push(d, b, timeout, false);
  return deque_push(d, b, timeout, false);
}

int tn_deque_push_front(tn_deque_t *d, tn_blob_t *b, double timeout) {
  if (TN_REMOTE(d)) return TN_BACKEND(d)->deque_push(d, b, timeout, true);
  return deque_push(d, b, timeout, true);
}

static int deque_pop(tn_deque_t *d, tn_blob_t **out, double timeout,
                     bool front) {
  int rc = pop_acquire(d, timeout, front);
  if (rc != TN_OK) return rc;
  if (front) {
    *out = d->buf[d->head];
    d->head = (d->head + 1) & (d->cap - 1);
    d->front_version++;
    pthread_mutex_unlock(&d->front);
  } else {
    d->tail = (d->tail - 1) & (d->cap - 1);
    *out = d->buf[d->tail];
    d->back_version++;
    pthread_mutex_unlock(&d->back);
  }
  wake_pushers(d, false); /* one slot freed: one pusher */
  return TN_OK;
}

int tn_deque_pop_front(tn_deque_t *d, tn_blob_t **out, double timeout) {
  if (TN_REMOTE(d)) return TN_BACKEND(d)->deque_pop(d, out, timeout, true);
  return deque_pop(d, out, timeout, true);
}

int tn_deque_pop_back(tn_deque_t *d, tn_blob_t **out, double timeout) {
  if (TN_REMOTE(d)) return TN_BACKEND(d)->deque_pop(d, out, timeout, false);
  return deque_pop(d, out, timeout, false);
}

/* ---- batches ------------------------------------------------------------ */

/* The fewest slots pop_many makes room for (it takes what is there, up to
** max, and never allocates under a lock). */
#define POP_MANY_MIN 256

int tn_deque_push_many(tn_deque_t *d, tn_blob_t *const *items, size_t n,
                       double timeout) {
  if (TN_REMOTE(d))
    return TN_BACKEND(d)->deque_push_many(d, items, n, timeout);
  if (n == 0) return tn_deque_is_closed(d) ? TN_ECLOSED : TN_OK;
  if (n > SIZE_MAX / 4 / sizeof(tn_blob_t *)) return TN_ENOMEM;
  int rc = push_acquire(d, timeout, false, n);
  if (rc != TN_OK) return rc;
  for (size_t i = 0; i < n; i++) {
    d->buf[d->tail] = items[i];
    d->tail = (d->tail + 1) & (d->cap - 1);
  }
  d->back_version++;
  atomic_fetch_add(&d->size, n); /* publish them all at once */
  pthread_mutex_unlock(&d->back);
  wake_poppers(d, n > 1);
  return TN_OK;
}

int tn_deque_pop_many(tn_deque_t *d, size_t max, tn_blob_t ***items,
                      size_t *n, double timeout) {
  if (TN_REMOTE(d))
    return TN_BACKEND(d)->deque_pop_many(d, max, items, n, timeout);
  if (max == 0) return TN_EINVAL;
  size_t want = atomic_load_explicit(&d->size, memory_order_relaxed);
  if (want < POP_MANY_MIN) want = POP_MANY_MIN;
  if (want > max) want = max;
  if (want > SIZE_MAX / sizeof(tn_blob_t *)) return TN_ENOMEM;
  tn_blob_t **out = tn_malloc(want * sizeof *out);
  if (out == NULL) return TN_ENOMEM;
  tn_deadline_t dl = {.forever = true};
  bool deadline_set = false;
  int rc;
  for (;;) {
    if (timeout > 0 &&
        atomic_load_explicit(&d->size, memory_order_relaxed) == 0)
      tn_spin_until(has_items, d, DEQUE_SPIN_NS);
    /* Both locks: see the top. */
    if ((rc = lock_both_gated(d, timeout, true)) != TN_OK) break;
    size_t count = size_of(d);
    if (count > 0) {
      size_t k = count < want ? count : want;
      for (size_t i = 0; i < k; i++) out[i] = *slot(d, i);
      d->head = (d->head + k) & (d->cap - 1);
      d->front_version++;
      ring_changed(d, count - k);
      unlock_both(d);
      wake_pushers(d, k > 1);
      *items = out;
      *n = k;
      return TN_OK;
    }
    bool closed = atomic_load(&d->closed);
    unlock_both(d);
    if (closed) {
      rc = TN_ECLOSED;
      break;
    }
    if (timeout <= 0) {
      rc = no_wait(timeout);
      break;
    }
    if (holder_would_wait(d)) {
      rc = TN_EDEADLK;
      break;
    }
    if (!deadline_set) {
      dl = tn_deadline_in(timeout);
      deadline_set = true;
    }
    rc = sleep_until(d, &d->not_empty, &d->pop_waiters, has_items, &dl);
    if (rc != TN_OK) break;
  }
  tn_free(out);
  return rc;
}

/* ---- select's hooks (internal.h, select.c) ------------------------------ */

void tn_deque_watch(tn_deque_t *d, tn_watch_t *node) {
  pthread_mutex_lock(&d->wait);
  node->prev = NULL;
  node->next = d->watchers;
  if (d->watchers != NULL) d->watchers->prev = node;
  d->watchers = node;
  /* Counted before the caller looks at the size (see the top). */
  atomic_fetch_add(&d->pop_waiters, 1);
  pthread_mutex_unlock(&d->wait);
}

void tn_deque_unwatch(tn_deque_t *d, tn_watch_t *node) {
  pthread_mutex_lock(&d->wait);
  if (node->prev != NULL)
    node->prev->next = node->next;
  else
    d->watchers = node->next;
  if (node->next != NULL) node->next->prev = node->prev;
  atomic_fetch_sub(&d->pop_waiters, 1);
  pthread_mutex_unlock(&d->wait);
}

/* ---- array (both locks) ------------------------------------------------- */

int tn_deque_insert(tn_deque_t *d, size_t index, tn_blob_t *b,
                    double timeout) {
  if (TN_REMOTE(d)) return TN_BACKEND(d)->deque_insert(d, index, b, timeout);
  int rc = lock_both_gated(d, timeout, true);
  if (rc != TN_OK) return rc;
  size_t n = size_of(d);
  if (index == TN_END) index = n;
  if (atomic_load(&d->closed))
    rc = TN_ECLOSED;
  else if (index > n)
    rc = TN_ERANGE;
  else
    rc = deque_reserve(d, n + 1);
  if (rc == TN_OK) {
    ring_insert(d, n, index, b);
    ring_changed(d, n + 1);
  }
  unlock_both(d);
  if (rc == TN_OK) wake_poppers(d, false);
  return rc;
}

int tn_deque_remove(tn_deque_t *d, size_t index, tn_blob_t **out,
                    double timeout) {
  if (TN_REMOTE(d)) return TN_BACKEND(d)->deque_remove(d, index, out, timeout);
  int rc = lock_both_gated(d, timeout, true);
  if (rc != TN_OK) return rc;
  size_t n = size_of(d);
  if (index >= n) {
    rc = TN_ERANGE;
  } else {
    *out = ring_remove(d, n, index);
    ring_changed(d, n - 1);
  }
  unlock_both(d);
  if (rc == TN_OK) wake_pushers(d, false);
  return rc;
}

int tn_deque_get(tn_deque_t *d, size_t index, tn_blob_t **out,
                 double timeout) {
  if (TN_REMOTE(d)) return TN_BACKEND(d)->deque_get(d, index, out, timeout);
  int rc = lock_both_gated(d, timeout, false);
  if (rc != TN_OK) return rc;
  if (index >= size_of(d))
    rc = TN_ERANGE;
  else
    *out = tn_blob_retain(*slot(d, index));
  unlock_both(d);
  return rc;
}

/*
** Store `b` at `index`, growing with NULLs past the end. The previous
** value goes to `*old`, or is released after the locks are dropped (its
** release may free other structures; no reason to do that under our lock).
*/
int tn_deque_set(tn_deque_t *d, size_t index, tn_blob_t *b, tn_blob_t **old,
                 double timeout) {
  if (TN_REMOTE(d))
    return TN_BACKEND(d)->deque_set(d, index, b, old, timeout);
  int rc = lock_both_gated(d, timeout, true);
  if (rc != TN_OK) return rc;
  size_t n = size_of(d);
  tn_blob_t *prev = NULL;
  bool grew = false;
  if (index < n) {
    prev = *slot(d, index);
    *slot(d, index) = b;
    d->back_version++;
  } else if (atomic_load(&d->closed)) {
    rc = TN_ECLOSED;
  } else if (index == SIZE_MAX) {
    rc = TN_ENOMEM; /* index + 1 values cannot exist */
  } else if ((rc = deque_reserve(d, index + 1)) == TN_OK) {
    while (n < index) *slot(d, n++) = NULL;
    *slot(d, n++) = b;
    ring_changed(d, n);
    grew = true;
  }
  unlock_both(d);
  if (grew) wake_poppers(d, true); /* several values may have appeared */
  if (rc == TN_OK) {
    if (old != NULL)
      *old = prev;
    else
      tn_blob_release(prev);
  }
  return rc;
}

/* ---- snapshot and replace ----------------------------------------------- */

/*
** Copy the content with one new reference per value. An empty deque gives
** `*items` = NULL and `*n` = 0 (tn_blob_array_free accepts that).
*/
int tn_deque_snapshot(tn_deque_t *d, tn_blob_t ***items, size_t *n,
                      uint64_t *version, double timeout) {
  if (TN_REMOTE(d))
    return TN_BACKEND(d)->deque_snapshot(d, items, n, version, timeout);
  int rc = lock_both_gated(d, timeout, false);
  if (rc != TN_OK) return rc;
  size_t count = size_of(d);
  tn_blob_t **copy = NULL;
  if (count > 0) {
    copy = tn_malloc(count * sizeof *copy);
    if (copy == NULL) {
      unlock_both(d);
      return TN_ENOMEM;
    }
    for (size_t i = 0; i < count; i++) copy[i] = tn_blob_retain(*slot(d, i));
  }
  *items = copy;
  *n = count;
  /* Both counters only grow, so their sum changes with any modification. */
  *version = d->front_version + d->back_version;
  unlock_both(d);
  return TN_OK;
}

/*
** The new buffer is built before taking the locks, so they are held only
** to compare versions and swap; the old values are released after.
** A closed deque accepts a replacement that does not grow it (as set does).
*/
int tn_deque_replace(tn_deque_t *d, tn_blob_t **items, size_t n,
                     uint64_t version, double timeout) {
  if (TN_REMOTE(d))
    return TN_BACKEND(d)->deque_replace(d, items, n, version, timeout);
  size_t cap = DEQUE_INITIAL_CAPACITY;
  while (!fits(n, cap)) {
    if (cap > SIZE_MAX / 2 / sizeof(tn_blob_t *)) return TN_ENOMEM;
    cap *= 2;
  }
  tn_blob_t **buf = tn_malloc(cap * sizeof *buf);
  if (buf == NULL) return TN_ENOMEM;
  if (n > 0) memcpy(buf, items, n * sizeof *buf);

  int rc = lock_both_gated(d, timeout, true);
  if (rc != TN_OK) {
    tn_free(buf);
    return rc;
  }
  size_t old_count = size_of(d);
  if (d->front_version + d->back_version != version) {
    rc = TN_ECONFLICT;
  } else if (atomic_load(&d->closed) && n > old_count) {
    rc = TN_ECLOSED;
  }
  if (rc != TN_OK) {
    unlock_both(d);
    tn_free(buf);
    return rc;
  }
  tn_blob_t **old = d->buf;
  size_t old_cap = d->cap, old_head = d->head;
  d->buf = buf;
  d->cap = cap;
  d->head = 0;
  ring_changed(d, n);
  unlock_both(d);
  wake_poppers(d, true);
  wake_pushers(d, true);

  for (size_t i = 0; i < old_count; i++)
    tn_blob_release(old[(old_head + i) & (old_cap - 1)]);
  tn_free(old);
  return TN_OK;
}
