/*
** semaphore.c - the counting semaphore behind tunnel.Semaphore.
**
** The available permits are one atomic word: acquire is a compare-and-swap
** that takes n only while n are there, release one that gives them back
** (never past the total). Neither takes a lock while nobody waits. A taker
** that must wait spins for a few microseconds on a relaxed read of the
** word, then sleeps under `mutex`, counted in `waiters`; a release reads
** `waiters` after its swap and wakes the sleepers only if there are any.
** No wake-up is lost: the store-buffering pattern of deque.c (the sleeper
** counts itself, then reads the word; the releaser swaps the word, then
** reads the count; all sequentially consistent), and the sleeper holds
** `mutex` from its check until it sleeps.
**
** Caveats:
** - Not fair: a release wakes every sleeper and the first to swap wins, so
**   a taker of many permits may be overtaken by takers of few.
** - A permit is not owned by a thread: any thread may release what another
**   took (as Java's Semaphore). Releasing more than are taken is refused.
*/
#include "internal.h"

#define SEMAPHORE_SPIN_NS 6000L
#define LINE 64

struct tn_semaphore {
  tn_object_t object;
  int64_t permits;                    /* the total, fixed */
  _Alignas(LINE) _Atomic int64_t available;
  atomic_int waiters;                 /* sleepers (or about to be) */
  _Alignas(LINE) pthread_mutex_t mutex; /* guards sleeping only */
  pthread_cond_t cv;
};

static void semaphore_destroy(tn_object_t *o) {
  tn_semaphore_t *s = (tn_semaphore_t *)o;
  pthread_cond_destroy(&s->cv);
  pthread_mutex_destroy(&s->mutex);
  tn_object_fini(&s->object);
  tn_free(s);
}

int tn_semaphore_new(int64_t permits, tn_semaphore_t **out) {
  if (permits < 1) return TN_EINVAL;
  tn_semaphore_t *s = tn_malloc_aligned(LINE, sizeof *s);
  if (s == NULL) return TN_ENOMEM;
  tn_object_init(&s->object, TN_TYPE_SEMAPHORE, semaphore_destroy);
  s->permits = permits;
  atomic_init(&s->available, permits);
  atomic_init(&s->waiters, 0);
  tn_mutex_init(&s->mutex);
  tn_cond_init(&s->cv);
  *out = s;
  return TN_OK;
}

/* Take n permits if n are there (one CAS loop). */
static inline bool try_take(tn_semaphore_t *s, int64_t n) {
  int64_t a = atomic_load(&s->available);
  while (a >= n)
    if (atomic_compare_exchange_weak(&s->available, &a, a - n)) return true;
  return false;
}

typedef struct spin_arg {
  tn_semaphore_t *s;
  int64_t n;
} spin_arg_t;

static bool enough(void *arg) {
  spin_arg_t *a = arg;
  return atomic_load_explicit(&a->s->available, memory_order_relaxed) >= a->n;
}

int tn_semaphore_acquire(tn_semaphore_t *s, int64_t n, double timeout) {
  if (TN_REMOTE(s)) return TN_BACKEND(s)->semaphore_acquire(s, n, timeout);
  if (n < 1 || n > s->permits) return TN_EINVAL;
  if (try_take(s, n)) return TN_OK;
  if (!(timeout > 0)) return timeout < 0 ? TN_EAGAIN : TN_ETIMEDOUT;
  tn_deadline_t dl = tn_deadline_in(timeout);
  spin_arg_t arg = {s, n};
  tn_spin_until(enough, &arg, SEMAPHORE_SPIN_NS);
  if (try_take(s, n)) return TN_OK;
  int rc = TN_OK;
  pthread_mutex_lock(&s->mutex);
  atomic_fetch_add(&s->waiters, 1); /* before the check: see the top */
  while (!try_take(s, n)) {
    int w = tn_cond_wait_until(&s->cv, &s->mutex, &dl);
    if (w != TN_OK) {
      if (!try_take(s, n)) rc = w; /* timeout, cancel, interrupt */
      break;
    }
  }
  atomic_fetch_sub(&s->waiters, 1);
  pthread_mutex_unlock(&s->mutex);
  return rc;
}

int tn_semaphore_release(tn_semaphore_t *s, int64_t n) {
  if (TN_REMOTE(s)) return TN_BACKEND(s)->semaphore_release(s, n);
  if (n < 1) return TN_EINVAL;
  int64_t a = atomic_load(&s->available);
  do {
    if (n > s->permits - a) return TN_ERANGE; /* more than are taken */
  } while (!atomic_compare_exchange_weak(&s->available, &a, a + n));
  if (atomic_load(&s->waiters) > 0) {
    pthread_mutex_lock(&s->mutex);
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mutex);
  }
  return TN_OK;
}

int tn_semaphore_available(tn_semaphore_t *s, int64_t *available,
                           int64_t *permits) {
  if (TN_REMOTE(s))
    return TN_BACKEND(s)->semaphore_available(s, available, permits);
  if (available != NULL) *available = atomic_load(&s->available);
  if (permits != NULL) *permits = s->permits;
  return TN_OK;
}
