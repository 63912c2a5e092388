/*
** barrier.c - the barrier behind tunnel.Barrier: cyclic rounds of
** `parties` threads, with Java's CyclicBarrier "broken" model.
**
** Each round is the list of its waiters, in arrival order. A waiter is a
** node on its own stack, linked in under the mutex; the thread that
** completes the round hands every node its outcome and its arrival index
** (1 .. parties - 1, itself `parties`), empties the list and wakes the
** sleepers. Outcomes live in the nodes, not in a shared generation number,
** so a waiter that is slow to wake never confuses its round with a later
** one (a round that completed, then one that broke, before it ran).
**
** Breaking. A waiter whose timeout runs out marks every node of its round
** broken and the barrier broken: later arrivals get TN_EBROKEN at once
** until tn_barrier_reset, so that a party that comes late never starts a
** round alone. A cancelled or interrupted waiter instead unlinks its node,
** leaving the round as it was before it arrived (the house rule for a
** call that fails); indexes are handed out only when the round completes,
** so they stay 1 .. parties.
**
** Waiting. Like the deque, a waiter first spins for a few microseconds on
** a counter of finished rounds (not on the mutex), then sleeps on the
** condition variable; the completing thread signals only when a sleeper is
** counted (PERF.md points 1 and 2). A 2-party round trip then costs a
** spin, not two futex wake-ups, when both threads have a core.
*/
#include "internal.h"

/* The bounded spin before sleeping (nanoseconds), as the deque's. */
#define BARRIER_SPIN_NS 6000L

enum { PENDING = 0, TRIPPED = 1, BROKEN = 2 };

typedef struct bwaiter {
  struct bwaiter *next;
  int outcome; /* PENDING, TRIPPED, BROKEN: under the mutex */
  int index;   /* TRIPPED: the arrival index */
} bwaiter_t;

struct tn_barrier {
  tn_object_t object;
  pthread_mutex_t mutex;
  pthread_cond_t cv;
  int parties;
  int arrived;             /* nodes in the list */
  int sleepers;            /* waiters inside tn_cond_wait_until */
  bool broken;
  bwaiter_t *head, *tail;  /* the current round, in arrival order */
  atomic_ulong rounds;     /* moves whenever a round ends: spinners watch it */
};

static void barrier_destroy(tn_object_t *o) {
  tn_barrier_t *b = (tn_barrier_t *)o;
  pthread_cond_destroy(&b->cv);
  pthread_mutex_destroy(&b->mutex);
  tn_object_fini(&b->object);
  tn_free(b);
}

int tn_barrier_new(int parties, tn_barrier_t **out) {
  if (parties < 1) return TN_EINVAL;
  tn_barrier_t *b = tn_malloc(sizeof *b);
  if (b == NULL) return TN_ENOMEM;
  tn_object_init(&b->object, TN_TYPE_BARRIER, barrier_destroy);
  tn_mutex_init(&b->mutex);
  tn_cond_init(&b->cv);
  b->parties = parties;
  b->arrived = 0;
  b->sleepers = 0;
  b->broken = false;
  b->head = b->tail = NULL;
  atomic_init(&b->rounds, 0);
  *out = b;
  return TN_OK;
}

/* End the round (mutex held): every node gets `outcome`, the list empties,
** spinners and sleepers see it. */
static void end_round(tn_barrier_t *b, int outcome) {
  int i = 1;
  for (bwaiter_t *w = b->head; w != NULL; w = w->next) {
    w->outcome = outcome;
    w->index = i++;
  }
  b->head = b->tail = NULL;
  b->arrived = 0;
  atomic_fetch_add(&b->rounds, 1);
  if (b->sleepers > 0) pthread_cond_broadcast(&b->cv);
}

static void unlink_waiter(tn_barrier_t *b, bwaiter_t *me) {
  bwaiter_t *prev = NULL;
  for (bwaiter_t *w = b->head; w != NULL; prev = w, w = w->next)
    if (w == me) {
      if (prev == NULL)
        b->head = me->next;
      else
        prev->next = me->next;
      if (b->tail == me) b->tail = prev;
      b->arrived--;
      return;
    }
}

typedef struct spin_arg {
  tn_barrier_t *b;
  unsigned long rounds;
} spin_arg_t;

static bool round_ended(void *arg) {
  spin_arg_t *s = arg;
  return atomic_load_explicit(&s->b->rounds, memory_order_relaxed) !=
         s->rounds;
}

int tn_barrier_wait(tn_barrier_t *b, double timeout, int *index) {
  if (TN_REMOTE(b)) return TN_BACKEND(b)->barrier_wait(b, timeout, index);
  /* The deadline counts from the call, spin included. */
  tn_deadline_t dl = {.forever = true};
  if (timeout > 0) dl = tn_deadline_in(timeout);
  int rc = tn_mutex_acquire(&b->mutex, timeout);
  if (rc != TN_OK) return rc;
  if (b->broken) {
    pthread_mutex_unlock(&b->mutex);
    return TN_EBROKEN;
  }
  if (b->arrived + 1 == b->parties) { /* the last: the round completes */
    int parties = b->parties;
    end_round(b, TRIPPED);
    pthread_mutex_unlock(&b->mutex);
    if (index != NULL) *index = parties;
    return TN_OK;
  }
  bwaiter_t me = {NULL, PENDING, 0};
  if (b->tail == NULL)
    b->head = &me;
  else
    b->tail->next = &me;
  b->tail = &me;
  b->arrived++;
  if (timeout > 0) {
    spin_arg_t s = {b, atomic_load(&b->rounds)};
    pthread_mutex_unlock(&b->mutex);
    tn_spin_until(round_ended, &s, BARRIER_SPIN_NS);
    pthread_mutex_lock(&b->mutex);
    b->sleepers++;
    while (me.outcome == PENDING) {
      int w = tn_cond_wait_until(&b->cv, &b->mutex, &dl);
      if (w != TN_OK && me.outcome == PENDING) {
        rc = w; /* timeout, cancel, interrupt */
        break;
      }
    }
    b->sleepers--;
  } else {
    rc = TN_ETIMEDOUT; /* 0 or TN_TRY: no waiting */
  }
  if (me.outcome == PENDING) {
    if (rc == TN_ETIMEDOUT) {
      unlink_waiter(b, &me);
      end_round(b, BROKEN);
      b->broken = true;
    } else {
      unlink_waiter(b, &me); /* as if it had not arrived */
    }
    pthread_mutex_unlock(&b->mutex);
    return rc;
  }
  pthread_mutex_unlock(&b->mutex);
  if (me.outcome == BROKEN) return TN_EBROKEN;
  if (index != NULL) *index = me.index;
  return TN_OK;
}

int tn_barrier_reset(tn_barrier_t *b) {
  if (TN_REMOTE(b)) return TN_BACKEND(b)->barrier_reset(b);
  pthread_mutex_lock(&b->mutex);
  if (b->arrived > 0) end_round(b, BROKEN);
  b->broken = false;
  pthread_mutex_unlock(&b->mutex);
  return TN_OK;
}

int tn_barrier_state(tn_barrier_t *b, int *parties, int *waiting,
                     int *broken) {
  if (TN_REMOTE(b))
    return TN_BACKEND(b)->barrier_state(b, parties, waiting, broken);
  pthread_mutex_lock(&b->mutex);
  if (parties != NULL) *parties = b->parties;
  if (waiting != NULL) *waiting = b->arrived;
  if (broken != NULL) *broken = b->broken;
  pthread_mutex_unlock(&b->mutex);
  return TN_OK;
}
