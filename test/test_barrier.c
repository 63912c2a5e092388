/*
** test_barrier.c - the cyclic barrier: rounds that never overlap, arrival
** indexes, timeouts that break a round, reset.
*/
#include <stdlib.h>

#include "test.h"

TEST(barrier_bad_parties, "a barrier needs at least one party") {
  tn_barrier_t *b = NULL;
  CHECK_RC(tn_barrier_new(0, &b), TN_EINVAL);
  CHECK_RC(tn_barrier_new(-3, &b), TN_EINVAL);
  CHECK(b == NULL);
}

TEST(barrier_one_party, "a barrier of one party lets each wait through at once, index 1") {
  tn_barrier_t *b;
  CHECK_RC(tn_barrier_new(1, &b), TN_OK);
  for (int i = 0; i < 3; i++) {
    int index = 0;
    CHECK_RC(tn_barrier_wait(b, TN_FOREVER, &index), TN_OK);
    CHECK_INT(index, 1);
  }
  CHECK_RC(tn_barrier_wait(b, 0, NULL), TN_OK);
  CHECK_RC(tn_barrier_wait(b, TN_TRY, NULL), TN_OK);
  int parties = 0, waiting = -1, broken = -1;
  CHECK_RC(tn_barrier_state(b, &parties, &waiting, &broken), TN_OK);
  CHECK_INT(parties, 1);
  CHECK_INT(waiting, 0);
  CHECK_INT(broken, 0);
  tn_object_release(TN_OBJECT(b));
}

enum { ROUND_THREADS = 4, ROUNDS = 1000 };

typedef struct rounds {
  tn_barrier_t *b;
  atomic_long arrivals;          /* every arrival of every round */
  atomic_int seen[ROUNDS];       /* round r: a bit per index handed out */
  atomic_int overlaps, errors;
} rounds_t;

static void *round_loop(void *p) {
  rounds_t *r = p;
  for (long round = 0; round < ROUNDS; round++) {
    atomic_fetch_add(&r->arrivals, 1);
    int index = 0;
    if (tn_barrier_wait(r->b, TN_FOREVER, &index) != TN_OK ||
        index < 1 || index > ROUND_THREADS) {
      atomic_fetch_add(&r->errors, 1);
      return NULL;
    }
    /* Every party of this round arrived before anyone left it, and none
    ** can have gone through the next one: this thread has not arrived. */
    long a = atomic_load(&r->arrivals);
    if (a < ROUND_THREADS * (round + 1) ||
        a > ROUND_THREADS * (round + 1) + ROUND_THREADS - 1)
      atomic_fetch_add(&r->overlaps, 1);
    atomic_fetch_or(&r->seen[round], 1 << index);
  }
  return NULL;
}

TEST(barrier_rounds_never_overlap,
     "1,000 rounds of 4 threads: nobody leaves a round before all arrived, "
     "nobody passes the next one early, each round hands out indexes 1..4 once") {
  rounds_t *r = calloc(1, sizeof *r);
  CHECK_RC(tn_barrier_new(ROUND_THREADS, &r->b), TN_OK);
  pthread_t t[ROUND_THREADS];
  for (int i = 0; i < ROUND_THREADS; i++) t[i] = test_spawn(round_loop, r);
  for (int i = 0; i < ROUND_THREADS; i++) test_join(t[i]);
  CHECK_INT(atomic_load(&r->errors), 0);
  CHECK_INT(atomic_load(&r->overlaps), 0);
  int bad = 0;
  for (int i = 0; i < ROUNDS; i++)
    if (atomic_load(&r->seen[i]) != 0x1e) bad++; /* bits 1..4 */
  CHECK_INT(bad, 0);
  CHECK_INT(atomic_load(&r->arrivals), (long)ROUND_THREADS * ROUNDS);
  int waiting = -1;
  CHECK_RC(tn_barrier_state(r->b, NULL, &waiting, NULL), TN_OK);
  CHECK_INT(waiting, 0);
  tn_object_release(TN_OBJECT(r->b));
  free(r);
}

typedef struct one_wait {
  tn_barrier_t *b;
  double timeout;
  int rc, index;
  atomic_int done;
} one_wait_t;

static void *wait_once(void *p) {
  one_wait_t *w = p;
  w->rc = tn_barrier_wait(w->b, w->timeout, &w->index);
  atomic_store(&w->done, 1);
  return NULL;
}

/* Wait (bounded, generously) until `n` threads wait in the round. */
static void until_waiting(tn_barrier_t *b, int n) {
  int waiting = 0;
  for (int i = 0; i < 10000; i++) {
    tn_barrier_state(b, NULL, &waiting, NULL);
    if (waiting >= n) return;
    tn_sleep(0.001);
  }
}

TEST(barrier_timeout_breaks,
     "a timeout breaks the round: the waiter gets ETIMEDOUT, the others and "
     "later arrivals EBROKEN, until reset") {
  tn_barrier_t *b;
  CHECK_RC(tn_barrier_new(3, &b), TN_OK);
  one_wait_t patient = {b, TN_FOREVER, -99, 0, 0};
  pthread_t t = test_spawn(wait_once, &patient);
  until_waiting(b, 1);
  double t0 = test_now();
  CHECK_RC(tn_barrier_wait(b, 0.1, NULL), TN_ETIMEDOUT);
  CHECK(test_now() - t0 >= 0.09);
  test_join(t);
  CHECK_RC(patient.rc, TN_EBROKEN);
  int broken = 0, waiting = -1;
  CHECK_RC(tn_barrier_state(b, NULL, &waiting, &broken), TN_OK);
  CHECK_INT(broken, 1);
  CHECK_INT(waiting, 0);
  CHECK_RC(tn_barrier_wait(b, TN_FOREVER, NULL), TN_EBROKEN); /* at once */
  CHECK_RC(tn_barrier_reset(b), TN_OK);
  CHECK_RC(tn_barrier_state(b, NULL, NULL, &broken), TN_OK);
  CHECK_INT(broken, 0);
  /* A whole round after the reset. */
  one_wait_t w[2] = {{b, 5, -99, 0, 0}, {b, 5, -99, 0, 0}};
  pthread_t tw[2] = {test_spawn(wait_once, &w[0]), test_spawn(wait_once, &w[1])};
  int index = 0;
  CHECK_RC(tn_barrier_wait(b, 5, &index), TN_OK);
  test_join(tw[0]);
  test_join(tw[1]);
  CHECK_RC(w[0].rc, TN_OK);
  CHECK_RC(w[1].rc, TN_OK);
  CHECK_INT(index + w[0].index + w[1].index, 1 + 2 + 3);
  tn_object_release(TN_OBJECT(b));
}

TEST(barrier_zero_timeout, "wait(0) and TN_TRY do not wait: the round breaks unless they complete it") {
  tn_barrier_t *b;
  CHECK_RC(tn_barrier_new(2, &b), TN_OK);
  CHECK_RC(tn_barrier_wait(b, 0, NULL), TN_ETIMEDOUT);
  CHECK_RC(tn_barrier_wait(b, 0, NULL), TN_EBROKEN);
  CHECK_RC(tn_barrier_reset(b), TN_OK);
  CHECK_RC(tn_barrier_wait(b, TN_TRY, NULL), TN_ETIMEDOUT);
  CHECK_RC(tn_barrier_reset(b), TN_OK);
  one_wait_t w = {b, TN_FOREVER, -99, 0, 0};
  pthread_t t = test_spawn(wait_once, &w);
  until_waiting(b, 1);
  int index = 0;
  CHECK_RC(tn_barrier_wait(b, 0, &index), TN_OK); /* it completes it */
  CHECK_INT(index, 2);
  test_join(t);
  CHECK_RC(w.rc, TN_OK);
  CHECK_INT(w.index, 1);
  tn_object_release(TN_OBJECT(b));
}

TEST(barrier_reset_breaks_waiters,
     "reset releases the waiters of the round with EBROKEN; the barrier is usable at once") {
  tn_barrier_t *b;
  CHECK_RC(tn_barrier_new(3, &b), TN_OK);
  one_wait_t w[2] = {{b, TN_FOREVER, -99, 0, 0}, {b, TN_FOREVER, -99, 0, 0}};
  pthread_t t[2] = {test_spawn(wait_once, &w[0]), test_spawn(wait_once, &w[1])};
  until_waiting(b, 2);
  CHECK_RC(tn_barrier_reset(b), TN_OK);
  test_join(t[0]);
  test_join(t[1]);
  CHECK_RC(w[0].rc, TN_EBROKEN);
  CHECK_RC(w[1].rc, TN_EBROKEN);
  int broken = 1, waiting = -1;
  CHECK_RC(tn_barrier_state(b, NULL, &waiting, &broken), TN_OK);
  CHECK_INT(broken, 0);
  CHECK_INT(waiting, 0);
  tn_object_release(TN_OBJECT(b));
}

typedef struct cancelled_wait {
  tn_barrier_t *b;
  tn_semaphore_t *s;
  tn_counter_t *c;
  tn_cancel_t *token;
  int rc;
  atomic_int started;
} cancelled_wait_t;

static void *wait_cancellable(void *p) {
  cancelled_wait_t *w = p;
  tn_cancel_enter(w->token);
  atomic_store(&w->started, 1);
  if (w->b != NULL)
    w->rc = tn_barrier_wait(w->b, TN_FOREVER, NULL);
  else if (w->s != NULL)
    w->rc = tn_semaphore_acquire(w->s, 1, TN_FOREVER);
  else
    w->rc = tn_counter_wait(w->c, 1, TN_FOREVER, NULL);
  tn_cancel_enter(NULL);
  return NULL;
}

/* Run wait_cancellable on a thread, cancel it once it waits. */
static int cancel_one(cancelled_wait_t *w) {
  CHECK_RC(tn_cancel_new(&w->token), TN_OK);
  w->rc = -99;
  pthread_t t = test_spawn(wait_cancellable, w);
  while (!atomic_load(&w->started)) tn_sleep(0.001);
  tn_sleep(0.05); /* asleep, most likely; if not, it sees the flag */
  tn_cancel_request(w->token);
  test_join(t);
  tn_cancel_free(w->token);
  return w->rc;
}

TEST(sync_waits_cancel,
     "a cancelled barrier, semaphore or counter wait returns ECANCELED and "
     "leaves the structure as it was") {
  tn_barrier_t *b;
  CHECK_RC(tn_barrier_new(2, &b), TN_OK);
  cancelled_wait_t w = {b, NULL, NULL, NULL, 0, 0};
  CHECK_RC(cancel_one(&w), TN_ECANCELED);
  int waiting = -1, broken = -1;
  CHECK_RC(tn_barrier_state(b, NULL, &waiting, &broken), TN_OK);
  CHECK_INT(waiting, 0); /* as if it had not arrived */
  CHECK_INT(broken, 0);
  one_wait_t other = {b, 5, -99, 0, 0};
  pthread_t t = test_spawn(wait_once, &other);
  int index = 0;
  CHECK_RC(tn_barrier_wait(b, 5, &index), TN_OK); /* a whole new round */
  test_join(t);
  CHECK_RC(other.rc, TN_OK);
  CHECK_INT(index + other.index, 3);
  tn_object_release(TN_OBJECT(b));

  tn_semaphore_t *s;
  CHECK_RC(tn_semaphore_new(1, &s), TN_OK);
  CHECK_RC(tn_semaphore_acquire(s, 1, TN_FOREVER), TN_OK);
  cancelled_wait_t ws = {NULL, s, NULL, NULL, 0, 0};
  CHECK_RC(cancel_one(&ws), TN_ECANCELED);
  CHECK_RC(tn_semaphore_release(s, 1), TN_OK);
  int64_t avail = -1;
  CHECK_RC(tn_semaphore_available(s, &avail, NULL), TN_OK);
  CHECK_INT(avail, 1);
  tn_object_release(TN_OBJECT(s));

  tn_counter_t *c;
  CHECK_RC(tn_counter_new(0, &c), TN_OK);
  cancelled_wait_t wc = {NULL, NULL, c, NULL, 0, 0};
  CHECK_RC(cancel_one(&wc), TN_ECANCELED);
  CHECK_INT(tn_counter_add(c, 1), 1);
  CHECK_INT(tn_counter_get(c), 1);
  tn_object_release(TN_OBJECT(c));
}
