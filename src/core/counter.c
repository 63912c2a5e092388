/*
** counter.c - an atomic 64-bit integer shared by threads.
**
** The value sits on a cache line of its own, away from the object header
** whose reference count other threads touch: false sharing would cost as
** much as true sharing (PERF.md point 5). malloc only promises 16-byte
** alignment, so the structure is placed by hand inside a larger block.
**
** Arithmetic is done on uint64_t, where wrap-around is defined; the
** conversion back to int64_t is two's complement on every compiler we use.
** The value has 63 bits (the word's last bit is the callback gate: below).
**
** Waiting for a value (tn_counter_wait). A waiter registers its target in
** a list under `wait_mutex` and narrows two bounds beside the word:
** `wake_up` (the lowest target of the waiters from below) and `wake_down`
** (the highest of those from above). Every add or set that succeeds
** compares its new value with them; only one that reaches a bound takes
** the mutex, marks the waiters it satisfies and wakes them. With nobody
** waiting the bounds are INT64_MAX / INT64_MIN, which no 63-bit value
** reaches: the add stays one compare-and-swap (plus two loads of the
** line it holds already). No wake-up is lost (the store-buffering
** pattern, as in deque.c): the waiter stores its bound, then reads the
** word; an adder swaps the word, then reads the bounds; all sequentially
** consistent, so at least one sees the other. A waiter widens both bounds
** before it reads the value that fixes its direction, so every change
** after it registered is seen, even one that passes the target and comes
** back before the waiter sleeps.
*/
#include <stdalign.h>
#include <stdint.h>

#include "internal.h"

#define CACHE_LINE 64

/*
** The word holds value * 2 + shut: bit 0 is the callback gate (any callback
** holds the counter), so one compare-and-swap both checks the gate and adds
** (2 * delta leaves the bit alone). A separate flag would leave a window
** between its check and the add in which a write callback could read the
** value, and an add landing in it would be overwritten.
*/
#define SHUT UINT64_C(1)

/* A thread in tn_counter_wait (on its stack, in the list while it waits). */
typedef struct cwaiter {
  struct cwaiter *next;
  int64_t target;
  int dir;       /* 1: until value >= target, -1: until <= target */
  bool reached;  /* set by a waker, with the value that reached it */
  int64_t seen;
} cwaiter_t;

struct tn_counter {
  tn_object_t object;
  void *block;                          /* what tn_malloc returned */
  alignas(CACHE_LINE) _Atomic uint64_t word;
  _Atomic int64_t wake_up;   /* an add reaching >= this takes wait_mutex */
  _Atomic int64_t wake_down; /* ... or <= this */
  char pad[CACHE_LINE - 3 * sizeof(uint64_t)]; /* keep the line to itself */
  pthread_mutex_t wait_mutex; /* the waiters (rare: off the hot line) */
  pthread_cond_t wait_cv;
  cwaiter_t *waiters;
};

static inline int64_t value_of(uint64_t w) {
  return (int64_t)w >> 1; /* arithmetic shift on every compiler we use */
}

static inline uint64_t word_of(int64_t v, uint64_t shut) {
  return ((uint64_t)v << 1) | shut;
}

static bool in_range(int64_t v) {
  return v >= TN_COUNTER_MIN && v <= TN_COUNTER_MAX;
}

static void counter_destroy(tn_object_t *o) {
  tn_counter_t *c = (tn_counter_t *)o;
  void *block = c->block;
  pthread_cond_destroy(&c->wait_cv);
  pthread_mutex_destroy(&c->wait_mutex);
  tn_object_fini(&c->object);
  tn_free(block);
}

/* The gate moved (under the callback lock's mutex): mirror it in bit 0. */
static void counter_quiesce(tn_object_t *o, int gate) {
  tn_counter_t *c = (tn_counter_t *)o;
  if (gate == TN_GATE_OPEN)
    atomic_fetch_and(&c->word, ~SHUT);
  else
    atomic_fetch_or(&c->word, SHUT);
}

/* A new counter holding `value`, with one reference. TN_OK, TN_ERANGE or
** TN_ENOMEM. */
int tn_counter_new(int64_t value, tn_counter_t **out) {
  if (!in_range(value)) return TN_ERANGE;
  void *block = tn_malloc(sizeof(tn_counter_t) + CACHE_LINE - 1);
  if (block == NULL) return TN_ENOMEM;
  uintptr_t at = ((uintptr_t)block + CACHE_LINE - 1) &
                 ~(uintptr_t)(CACHE_LINE - 1);
  tn_counter_t *c = (tn_counter_t *)at;
  tn_object_init(&c->object, TN_TYPE_COUNTER, counter_destroy);
  c->object.quiesce = counter_quiesce;
  c->block = block;
  atomic_init(&c->word, word_of(value, 0));
  atomic_init(&c->wake_up, INT64_MAX);
  atomic_init(&c->wake_down, INT64_MIN);
  tn_mutex_init(&c->wait_mutex);
  tn_cond_init(&c->wait_cv);
  c->waiters = NULL;
  *out = c;
  return TN_OK;
}

/* ---- waiting for a value ------------------------------------------------ */

static inline bool reaches(int64_t v, int dir, int64_t target) {
  return dir > 0 ? v >= target : v <= target;
}

/* An add or set made the value `now`, which reaches a bound: mark the
** waiters it satisfies and wake them. Out of line: the rare path. */
static __attribute__((noinline)) void counter_wake(tn_counter_t *c,
                                                   int64_t now) {
  pthread_mutex_lock(&c->wait_mutex);
  bool any = false;
  for (cwaiter_t *w = c->waiters; w != NULL; w = w->next)
    if (!w->reached && w->dir != 0 && reaches(now, w->dir, w->target)) {
      w->reached = true;
      w->seen = now;
      any = true;
    }
  if (any) pthread_cond_broadcast(&c->wait_cv);
  pthread_mutex_unlock(&c->wait_mutex);
}

/* After a successful swap to `now`: the one check the fast path pays. */
static inline void counter_changed(tn_counter_t *c, int64_t now) {
  if (__builtin_expect(now >= atomic_load(&c->wake_up) ||
                           now <= atomic_load(&c->wake_down),
                       0))
    counter_wake(c, now);
}

/* The bounds from the waiters still registered (wait_mutex held); a
** waiter whose direction is not fixed yet (dir 0) widens both. */
static void narrow_bounds(tn_counter_t *c) {
  int64_t up = INT64_MAX, down = INT64_MIN;
  for (cwaiter_t *w = c->waiters; w != NULL; w = w->next) {
    if (w->reached) continue;
    if (w->dir >= 0 && w->target < up) up = w->target;
    if (w->dir <= 0 && w->target > down) down = w->target;
  }
  atomic_store(&c->wake_up, up);
  atomic_store(&c->wake_down, down);
}

static void unlink_waiter(tn_counter_t *c, cwaiter_t *me) {
  for (cwaiter_t **p = &c->waiters; *p != NULL; p = &(*p)->next)
    if (*p == me) {
      *p = me->next;
      break;
    }
  narrow_bounds(c);
}

int tn_counter_wait(tn_counter_t *c, int64_t target, double timeout,
                    int64_t *value) {
  if (TN_REMOTE(c))
    return TN_BACKEND(c)->counter_wait(c, target, timeout, value);
  int64_t v = value_of(atomic_load(&c->word));
  if (v == target) {
    if (value != NULL) *value = v;
    return TN_OK;
  }
  if (!(timeout > 0)) { /* 0 or TN_TRY: the one look above */
    if (value != NULL) *value = v;
    return timeout < 0 ? TN_EAGAIN : TN_ETIMEDOUT;
  }
  tn_deadline_t dl = tn_deadline_in(timeout);
  cwaiter_t me = {NULL, target, 0, false, 0};
  pthread_mutex_lock(&c->wait_mutex);
  me.next = c->waiters;
  c->waiters = &me;
  /* Both ways first, then the value that fixes the direction (top). */
  if (target < atomic_load(&c->wake_up)) atomic_store(&c->wake_up, target);
  if (target > atomic_load(&c->wake_down)) atomic_store(&c->wake_down, target);
  v = value_of(atomic_load(&c->word));
  int rc = TN_OK;
  if (v == target) {
    me.reached = true;
    me.seen = v;
  } else {
    me.dir = v < target ? 1 : -1;
    narrow_bounds(c);
    while (!me.reached) {
      v = value_of(atomic_load(&c->word));
      if (reaches(v, me.dir, target)) {
        me.reached = true;
        me.seen = v;
        break;
      }
      int w = tn_cond_wait_until(&c->wait_cv, &c->wait_mutex, &dl);
      if (w != TN_OK && !me.reached) {
        v = value_of(atomic_load(&c->word));
        if (reaches(v, me.dir, target)) {
          me.reached = true;
          me.seen = v;
        } else {
          rc = w; /* timeout, cancel, interrupt: nothing changed */
        }
        break;
      }
    }
  }
  unlink_waiter(c, &me);
  pthread_mutex_unlock(&c->wait_mutex);
  if (value != NULL) *value = me.reached ? me.seen : v;
  return rc;
}

/*
** The gate is shut in the word: TN_OK if this thread may go on anyway (it
** holds the lock: see tn_gate_check; or a read while readers hold it),
** RETRY after waiting for the gate to open (the caller reloads the word),
** or an error (TN_EAGAIN for TN_TRY, TN_ETIMEDOUT, TN_EDEADLK).
*/
#define RETRY 2 /* not an error code, nor TN_EBUSY_GATE */
static int gate_slow(tn_counter_t *c, bool modifies, double timeout,
                     tn_deadline_t *dl, bool *dl_set) {
  int g = atomic_load(&c->object.gate);
  if (g == TN_GATE_READ && !modifies) return TN_OK; /* readers: a stable value */
  int rc = tn_gate_check(&c->object, modifies, timeout);
  if (rc != TN_EBUSY_GATE) return rc;
  rc = tn_gate_wait(&c->object, modifies, timeout, dl, dl_set);
  return rc == TN_OK ? RETRY : rc;
}

/* counter_update once the gate was seen shut: wait, or pass as its
** holder. Out of line, so that the fast path saves no registers. */
static __attribute__((noinline)) int
counter_update_gated(tn_counter_t *c, int64_t (*op)(int64_t, int64_t),
                     int64_t arg, double timeout, int64_t *before) {
  tn_deadline_t dl = {.forever = true};
  bool dl_set = false;
  uint64_t w = atomic_load_explicit(&c->word, memory_order_relaxed);
  for (;;) {
    if ((w & SHUT) != 0) {
      int rc = gate_slow(c, true, timeout, &dl, &dl_set);
      if (rc == RETRY) {
        w = atomic_load_explicit(&c->word, memory_order_relaxed);
        continue;
      }
      if (rc != TN_OK) return rc;
    }
    int64_t v = value_of(w);
    uint64_t nw = word_of(op(v, arg), w & SHUT);
    if (atomic_compare_exchange_weak(&c->word, &w, nw)) {
      *before = v;
      counter_changed(c, value_of(nw));
      return TN_OK;
    }
  }
}

/*
** Replace the value by op(value, arg) in one CAS that also checks the gate;
** `*before` gets the value it replaced. Inlined with a constant op, so an
** open counter's add is a load and a CAS.
*/
static inline int counter_update(tn_counter_t *c,
                                 int64_t (*op)(int64_t, int64_t), int64_t arg,
                                 double timeout, int64_t *before) {
  uint64_t w = atomic_load_explicit(&c->word, memory_order_relaxed);
  while (__builtin_expect((w & SHUT) == 0, 1)) {
    int64_t v = value_of(w);
    uint64_t nw = word_of(op(v, arg), 0);
    if (atomic_compare_exchange_weak(&c->word, &w, nw)) {
      *before = v;
      counter_changed(c, value_of(nw));
      return TN_OK;
    }
  }
  return counter_update_gated(c, op, arg, timeout, before);
}

/* Wrapping addition within 63 bits: the shift of word_of drops the carry. */
static inline int64_t op_add(int64_t v, int64_t d) {
  return value_of(word_of((int64_t)((uint64_t)v + (uint64_t)d), 0));
}

static inline int64_t op_set(int64_t v, int64_t value) {
  (void)v;
  return value;
}

/* A cluster counter's add: the backend's, with its code. Out of line, as
** the gated path: the in-process add then needs no stack frame. */
static __attribute__((noinline)) int remote_add(tn_counter_t *c,
                                                int64_t delta,
                                                int64_t *result) {
  int64_t v = TN_BACKEND(c)->counter_add(c, delta);
  int rc = tn_error_take();
  if (rc == TN_OK && result != NULL) *result = v;
  return rc;
}

int tn_counter_add_timed(tn_counter_t *c, int64_t delta, double timeout,
                         int64_t *result) {
  if (TN_REMOTE(c)) return remote_add(c, delta, result);
  int64_t v;
  int rc = counter_update(c, op_add, delta, timeout, &v);
  if (rc == TN_OK && result != NULL) *result = op_add(v, delta);
  return rc;
}

int tn_counter_get_timed(tn_counter_t *c, double timeout, int64_t *value) {
  if (TN_REMOTE(c)) {
    int64_t v = TN_BACKEND(c)->counter_get(c);
    int rc = tn_error_take();
    if (rc == TN_OK) *value = v;
    return rc;
  }
  tn_deadline_t dl = {.forever = true};
  bool dl_set = false;
  for (;;) {
    uint64_t w = atomic_load(&c->word);
    if ((w & SHUT) != 0) {
      int rc = gate_slow(c, false, timeout, &dl, &dl_set);
      if (rc == RETRY) continue;
      if (rc != TN_OK) return rc;
    }
    *value = value_of(w);
    return TN_OK;
  }
}

int tn_counter_set_timed(tn_counter_t *c, int64_t value, double timeout,
                         int64_t *old) {
  int64_t v;
  if (TN_REMOTE(c)) {
    v = TN_BACKEND(c)->counter_set(c, value);
    int rc = tn_error_take();
    if (rc == TN_OK && old != NULL) *old = v;
    return rc;
  }
  if (!in_range(value)) return TN_ERANGE;
  int rc = counter_update(c, op_set, value, timeout, &v);
  if (rc == TN_OK && old != NULL) *old = v;
  return rc;
}

/* The untimed forms: a failure (remote, or TN_EDEADLK) is kept for
** tn_error_take and the value is 0. */
static int64_t kept(int rc, const int64_t *v) {
  if (rc == TN_OK) return *v;
  tn_error_pend(rc);
  return 0;
}

int64_t tn_counter_add(tn_counter_t *c, int64_t delta) {
  int64_t v = 0;
  int rc = tn_counter_add_timed(c, delta, TN_FOREVER, &v);
  return kept(rc, &v);
}

int64_t tn_counter_get(tn_counter_t *c) {
  int64_t v = 0;
  int rc = tn_counter_get_timed(c, TN_FOREVER, &v);
  return kept(rc, &v);
}

int64_t tn_counter_set(tn_counter_t *c, int64_t value) {
  int64_t v = 0;
  int rc = tn_counter_set_timed(c, value, TN_FOREVER, &v);
  return kept(rc, &v);
}
