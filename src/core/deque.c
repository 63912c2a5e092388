/*
** deque.c - the deque behind tunnel.Vector: a ring buffer of blob
** pointers under one mutex, usable as a queue, a stack and an array.
**
** Waiting. A blocking push or pop first spins for a few microseconds on a
** relaxed read of the size (never on the mutex), then sleeps on a condition
** variable. In a VM a futex wake-up costs tens of microseconds, so the spin
** is what makes small size hints fast (PERF.md point 1); it is skipped on a
** single CPU, where it would only burn the time the other thread needs.
** Signals are sent only when a waiter is counted (PERF.md point 2).
**
** Caveats:
** - The size hint bounds pushes only: insert and set never wait for room,
**   so the size may exceed the hint.
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

struct tn_deque {
  tn_object_t object;
  pthread_mutex_t mutex;    /* right after the header: test_deque.c holds it */
  pthread_cond_t not_empty; /* poppers wait here */
  pthread_cond_t not_full;  /* pushers wait here */
  tn_blob_t **buf;          /* ring of `cap` slots, cap a power of two */
  size_t cap;
  size_t head;              /* index in buf of the front value */
  size_t count;             /* values held (under the mutex) */
  size_t hint;              /* pushes wait while count >= hint */
  int pop_waiters;          /* threads asleep on not_empty */
  int push_waiters;         /* threads asleep on not_full */
  uint64_t version;         /* bumped on every modification */
  bool closed_locked;       /* the closed flag, read under the mutex */
  atomic_size_t size;       /* = count, for lock-free readers and spinners */
  atomic_bool closed;       /* = closed_locked, for lock-free readers */
};

/* ---- the ring ----------------------------------------------------------- */

static inline tn_blob_t **slot(tn_deque_t *d, size_t i) {
  return &d->buf[(d->head + i) & (d->cap - 1)];
}

/*
** Make room for at least `n` values, doubling the buffer. On failure
** (TN_ENOMEM) the deque is unchanged. Mutex held.
*/
static int deque_reserve(tn_deque_t *d, size_t n) {
  if (n <= d->cap) return TN_OK;
  size_t cap = d->cap;
  while (cap < n) {
    if (cap > SIZE_MAX / 2 / sizeof(tn_blob_t *)) return TN_ENOMEM;
    cap *= 2;
  }
  tn_blob_t **buf = tn_realloc(d->buf, cap * sizeof(tn_blob_t *));
  if (buf == NULL) return TN_ENOMEM;
  /* Unwrap: values that wrapped past the old end move after it, in order. */
  size_t wrapped = d->head + d->count > d->cap ? d->head + d->count - d->cap : 0;
  if (wrapped > 0) memcpy(buf + d->cap, buf, wrapped * sizeof(tn_blob_t *));
  d->buf = buf;
  d->cap = cap;
  return TN_OK;
}

/* Publish a change of content. Mutex held. */
static inline void deque_changed(tn_deque_t *d) {
  d->version++;
  atomic_store_explicit(&d->size, d->count, memory_order_relaxed);
}

/* Wake a popper if one sleeps (items were added). Mutex held. */
static inline void wake_poppers(tn_deque_t *d, bool all) {
  if (d->pop_waiters == 0) return;
  if (all)
    pthread_cond_broadcast(&d->not_empty);
  else
    pthread_cond_signal(&d->not_empty);
}

/* Wake a pusher if one sleeps and there is room now. Mutex held. */
static inline void wake_pushers(tn_deque_t *d, bool all) {
  if (d->push_waiters == 0 || d->count >= d->hint) return;
  if (all)
    pthread_cond_broadcast(&d->not_full);
  else
    pthread_cond_signal(&d->not_full);
}

/* Insert `b` at `index` (<= count), room reserved. Mutex held. */
static void ring_insert(tn_deque_t *d, size_t index, tn_blob_t *b) {
  if (index < d->count / 2) {
    /* Nearer the front: move the front part one slot towards it. */
    d->head = (d->head - 1) & (d->cap - 1);
    for (size_t i = 0; i < index; i++) *slot(d, i) = *slot(d, i + 1);
  } else {
    for (size_t i = d->count; i > index; i--) *slot(d, i) = *slot(d, i - 1);
  }
  *slot(d, index) = b;
  d->count++;
}

/* Remove and return the value at `index` (< count). Mutex held. */
static tn_blob_t *ring_remove(tn_deque_t *d, size_t index) {
  tn_blob_t *b = *slot(d, index);
  if (index < d->count / 2) {
    for (size_t i = index; i > 0; i--) *slot(d, i) = *slot(d, i - 1);
    d->head = (d->head + 1) & (d->cap - 1);
  } else {
    for (size_t i = index; i + 1 < d->count; i++) *slot(d, i) = *slot(d, i + 1);
  }
  d->count--;
  return b;
}

/* ---- life --------------------------------------------------------------- */

static void deque_destroy(tn_object_t *o) {
  tn_deque_t *d = (tn_deque_t *)o;
  for (size_t i = 0; i < d->count; i++) tn_blob_release(*slot(d, i));
  tn_free(d->buf);
  pthread_cond_destroy(&d->not_empty);
  pthread_cond_destroy(&d->not_full);
  pthread_mutex_destroy(&d->mutex);
  tn_object_fini(&d->object);
  tn_free(d);
}

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
  tn_deque_t *d = tn_malloc(sizeof *d);
  if (d == NULL) return TN_ENOMEM;
  d->buf = tn_malloc(DEQUE_INITIAL_CAPACITY * sizeof(tn_blob_t *));
  if (d->buf == NULL) {
    tn_free(d);
    return TN_ENOMEM;
  }
  tn_object_init(&d->object, type, deque_destroy);
  tn_mutex_init(&d->mutex);
  tn_cond_init(&d->not_empty);
  tn_cond_init(&d->not_full);
  d->cap = DEQUE_INITIAL_CAPACITY;
  d->head = 0;
  d->count = 0;
  d->hint = size_hint;
  d->pop_waiters = 0;
  d->push_waiters = 0;
  d->version = 0;
  d->closed_locked = false;
  atomic_init(&d->size, 0);
  atomic_init(&d->closed, false);
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

/* Close under the mutex, so that no waiter can miss it between its check
** and its sleep; then wake everyone: pushers to fail, poppers to drain. */
void tn_deque_close(tn_deque_t *d) {
  if (TN_REMOTE(d)) {
    TN_BACKEND(d)->deque_close(d);
    return;
  }
  pthread_mutex_lock(&d->mutex);
  d->closed_locked = true;
  atomic_store_explicit(&d->closed, true, memory_order_relaxed);
  pthread_cond_broadcast(&d->not_empty);
  pthread_cond_broadcast(&d->not_full);
  pthread_mutex_unlock(&d->mutex);
}

int tn_deque_is_closed(tn_deque_t *d) {
  if (TN_REMOTE(d)) return TN_BACKEND(d)->deque_is_closed(d);
  return atomic_load_explicit(&d->closed, memory_order_relaxed);
}

/* ---- waiting ------------------------------------------------------------ */

/* Spin predicates: a push (room) or a pop (items) may proceed, or closed. */
static bool has_room(void *p) {
  tn_deque_t *d = p;
  return atomic_load_explicit(&d->size, memory_order_relaxed) < d->hint ||
         atomic_load_explicit(&d->closed, memory_order_relaxed);
}

static bool has_items(void *p) {
  tn_deque_t *d = p;
  return atomic_load_explicit(&d->size, memory_order_relaxed) > 0 ||
         atomic_load_explicit(&d->closed, memory_order_relaxed);
}

/*
** Lock the deque and wait until a push may proceed: returns TN_OK with the
** mutex held and room for one value (or an error with the mutex released).
*/
static int push_acquire(tn_deque_t *d, double timeout) {
  /* Spin only for a wait that may sleep: TN_TRY and 0 never wait. */
  if (!(timeout <= 0) &&
      atomic_load_explicit(&d->size, memory_order_relaxed) >= d->hint)
    tn_spin_until(has_room, d, DEQUE_SPIN_NS);
  int rc = tn_mutex_acquire(&d->mutex, timeout);
  if (rc != TN_OK) return rc;
  if (!d->closed_locked && d->count >= d->hint) {
    if (timeout <= 0) { /* TN_TRY or 0: never wait for room or items */
      pthread_mutex_unlock(&d->mutex);
      return timeout < 0 ? TN_EAGAIN : TN_ETIMEDOUT;
    }
    tn_deadline_t dl = tn_deadline_in(timeout);
    d->push_waiters++;
    /* Re-check under the mutex: another pusher may have taken the room a
    ** pop made, close may have come, and wake-ups may be spurious. */
    while (!d->closed_locked && d->count >= d->hint) {
      if (tn_cond_wait_until(&d->not_full, &d->mutex, &dl) == TN_ETIMEDOUT &&
          !d->closed_locked && d->count >= d->hint) {
        d->push_waiters--;
        pthread_mutex_unlock(&d->mutex);
        return TN_ETIMEDOUT;
      }
    }
    d->push_waiters--;
  }
  if (d->closed_locked) {
    pthread_mutex_unlock(&d->mutex);
    return TN_ECLOSED;
  }
  rc = deque_reserve(d, d->count + 1);
  if (rc != TN_OK) pthread_mutex_unlock(&d->mutex);
  return rc;
}

/*
** Lock the deque and wait until a pop may proceed: TN_OK with the mutex
** held and at least one value, or an error with the mutex released.
*/
static int pop_acquire(tn_deque_t *d, double timeout) {
  if (!(timeout <= 0) &&
      atomic_load_explicit(&d->size, memory_order_relaxed) == 0)
    tn_spin_until(has_items, d, DEQUE_SPIN_NS);
  int rc = tn_mutex_acquire(&d->mutex, timeout);
  if (rc != TN_OK) return rc;
  if (d->count == 0 && !d->closed_locked) {
    if (timeout <= 0) { /* TN_TRY or 0: never wait for room or items */
      pthread_mutex_unlock(&d->mutex);
      return timeout < 0 ? TN_EAGAIN : TN_ETIMEDOUT;
    }
    tn_deadline_t dl = tn_deadline_in(timeout);
    d->pop_waiters++;
    /* Re-check under the mutex: another popper may have taken the value
    ** that woke us, close may have come, and wake-ups may be spurious. */
    while (d->count == 0 && !d->closed_locked) {
      if (tn_cond_wait_until(&d->not_empty, &d->mutex, &dl) == TN_ETIMEDOUT &&
          d->count == 0 && !d->closed_locked) {
        d->pop_waiters--;
        pthread_mutex_unlock(&d->mutex);
        return TN_ETIMEDOUT;
      }
    }
    d->pop_waiters--;
  }
  if (d->count == 0) { /* closed and drained */
    pthread_mutex_unlock(&d->mutex);
    return TN_ECLOSED;
  }
  return TN_OK;
}

/* ---- queue and stack ---------------------------------------------------- */

/*
** Push `b` at the back (or front). TN_OK: the deque owns the reference.
** TN_ECLOSED, TN_EAGAIN, TN_ETIMEDOUT, TN_ENOMEM: the caller keeps it.
*/
static int deque_push(tn_deque_t *d, tn_blob_t *b, double timeout,
                      bool front) {
  int rc = push_acquire(d, timeout);
  if (rc != TN_OK) return rc;
  if (front) {
    d->head = (d->head - 1) & (d->cap - 1);
    d->buf[d->head] = b;
  } else {
    *slot(d, d->count) = b;
  }
  d->count++;
  deque_changed(d);
  wake_poppers(d, false); /* one new value: one popper */
  pthread_mutex_unlock(&d->mutex);
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
  int rc = pop_acquire(d, timeout);
  if (rc != TN_OK) return rc;
  if (front) {
    *out = d->buf[d->head];
    d->head = (d->head + 1) & (d->cap - 1);
  } else {
    *out = *slot(d, d->count - 1);
  }
  d->count--;
  deque_changed(d);
  wake_pushers(d, false); /* one slot freed: one pusher */
  pthread_mutex_unlock(&d->mutex);
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

/* ---- array -------------------------------------------------------------- */

int tn_deque_insert(tn_deque_t *d, size_t index, tn_blob_t *b,
                    double timeout) {
  if (TN_REMOTE(d)) return TN_BACKEND(d)->deque_insert(d, index, b, timeout);
  int rc = tn_mutex_acquire(&d->mutex, timeout);
  if (rc != TN_OK) return rc;
  if (index == TN_END) index = d->count;
  if (d->closed_locked)
    rc = TN_ECLOSED;
  else if (index > d->count)
    rc = TN_ERANGE;
  else
    rc = deque_reserve(d, d->count + 1);
  if (rc == TN_OK) {
    ring_insert(d, index, b);
    deque_changed(d);
    wake_poppers(d, false);
  }
  pthread_mutex_unlock(&d->mutex);
  return rc;
}

int tn_deque_remove(tn_deque_t *d, size_t index, tn_blob_t **out,
                    double timeout) {
  if (TN_REMOTE(d)) return TN_BACKEND(d)->deque_remove(d, index, out, timeout);
  int rc = tn_mutex_acquire(&d->mutex, timeout);
  if (rc != TN_OK) return rc;
  if (index >= d->count) {
    rc = TN_ERANGE;
  } else {
    *out = ring_remove(d, index);
    deque_changed(d);
    wake_pushers(d, false);
  }
  pthread_mutex_unlock(&d->mutex);
  return rc;
}

int tn_deque_get(tn_deque_t *d, size_t index, tn_blob_t **out,
                 double timeout) {
  if (TN_REMOTE(d)) return TN_BACKEND(d)->deque_get(d, index, out, timeout);
  int rc = tn_mutex_acquire(&d->mutex, timeout);
  if (rc != TN_OK) return rc;
  if (index >= d->count)
    rc = TN_ERANGE;
  else
    *out = tn_blob_retain(*slot(d, index));
  pthread_mutex_unlock(&d->mutex);
  return rc;
}

/*
** Store `b` at `index`, growing with NULLs past the end. The previous
** value goes to `*old`, or is released after the mutex is dropped (its
** release may free other structures; no reason to do that under our lock).
*/
int tn_deque_set(tn_deque_t *d, size_t index, tn_blob_t *b, tn_blob_t **old,
                 double timeout) {
  if (TN_REMOTE(d))
    return TN_BACKEND(d)->deque_set(d, index, b, old, timeout);
  int rc = tn_mutex_acquire(&d->mutex, timeout);
  if (rc != TN_OK) return rc;
  tn_blob_t *prev = NULL;
  if (index < d->count) {
    prev = *slot(d, index);
    *slot(d, index) = b;
    deque_changed(d);
  } else if (d->closed_locked) {
    rc = TN_ECLOSED;
  } else if (index == SIZE_MAX) {
    rc = TN_ENOMEM; /* index + 1 values cannot exist */
  } else if ((rc = deque_reserve(d, index + 1)) == TN_OK) {
    while (d->count < index) *slot(d, d->count++) = NULL;
    *slot(d, d->count++) = b;
    deque_changed(d);
    wake_poppers(d, true); /* several values may have appeared */
  }
  pthread_mutex_unlock(&d->mutex);
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
  int rc = tn_mutex_acquire(&d->mutex, timeout);
  if (rc != TN_OK) return rc;
  tn_blob_t **copy = NULL;
  if (d->count > 0) {
    copy = tn_malloc(d->count * sizeof *copy);
    if (copy == NULL) {
      pthread_mutex_unlock(&d->mutex);
      return TN_ENOMEM;
    }
    for (size_t i = 0; i < d->count; i++)
      copy[i] = tn_blob_retain(*slot(d, i));
  }
  *items = copy;
  *n = d->count;
  *version = d->version;
  pthread_mutex_unlock(&d->mutex);
  return TN_OK;
}

/*
** The new buffer is built before taking the mutex, so the lock is held
** only to compare versions and swap; the old values are released after.
** A closed deque accepts a replacement that does not grow it (as set does).
*/
int tn_deque_replace(tn_deque_t *d, tn_blob_t **items, size_t n,
                     uint64_t version, double timeout) {
  if (TN_REMOTE(d))
    return TN_BACKEND(d)->deque_replace(d, items, n, version, timeout);
  size_t cap = DEQUE_INITIAL_CAPACITY;
  while (cap < n) {
    if (cap > SIZE_MAX / 2 / sizeof(tn_blob_t *)) return TN_ENOMEM;
    cap *= 2;
  }
  tn_blob_t **buf = tn_malloc(cap * sizeof *buf);
  if (buf == NULL) return TN_ENOMEM;
  if (n > 0) memcpy(buf, items, n * sizeof *buf);

  int rc = tn_mutex_acquire(&d->mutex, timeout);
  if (rc != TN_OK) {
    tn_free(buf);
    return rc;
  }
  if (d->version != version) {
    rc = TN_ECONFLICT;
  } else if (d->closed_locked && n > d->count) {
    rc = TN_ECLOSED;
  }
  if (rc != TN_OK) {
    pthread_mutex_unlock(&d->mutex);
    tn_free(buf);
    return rc;
  }
  tn_blob_t **old = d->buf;
  size_t old_cap = d->cap, old_head = d->head, old_count = d->count;
  d->buf = buf;
  d->cap = cap;
  d->head = 0;
  d->count = n;
  deque_changed(d);
  wake_poppers(d, true);
  wake_pushers(d, true);
  pthread_mutex_unlock(&d->mutex);

  for (size_t i = 0; i < old_count; i++)
    tn_blob_release(old[(old_head + i) & (old_cap - 1)]);
  tn_free(old);
  return TN_OK;
}
