/*
** test_counter.c - the atomic counter: arithmetic, wrap-around, and exact
** totals under contention.
*/
#include <stdint.h>

#include "test.h"

TEST(counter_basics, "a counter adds, reads and stores 64-bit values") {
  tn_counter_t *c;
  CHECK_RC(tn_counter_new(5, &c), TN_OK);
  CHECK_INT(tn_counter_get(c), 5);
  CHECK_INT(tn_counter_add(c, 10), 15);
  CHECK_INT(tn_counter_add(c, -20), -5);
  CHECK_INT(tn_counter_set(c, INT64_C(1) << 40), -5);
  CHECK(tn_counter_get(c) == INT64_C(1) << 40);
  CHECK(tn_counter_add(c, 0) == INT64_C(1) << 40);
  tn_object_release(TN_OBJECT(c));
}

TEST(counter_wraps, "adding past the 63-bit range wraps around within it") {
  tn_counter_t *c;
  CHECK_RC(tn_counter_new(TN_COUNTER_MAX, &c), TN_OK);
  CHECK(tn_counter_add(c, 1) == TN_COUNTER_MIN);
  CHECK(tn_counter_add(c, -1) == TN_COUNTER_MAX);
  CHECK(tn_counter_add(c, TN_COUNTER_MIN) == -1);
  CHECK(tn_counter_add(c, INT64_MIN) == -1); /* 2^63: a whole turn */
  CHECK_RC(tn_error_take(), TN_OK);
  tn_object_release(TN_OBJECT(c));
}

TEST(counter_range, "a value outside 63 bits is refused, nothing changed") {
  tn_counter_t *c;
  CHECK_RC(tn_counter_new(TN_COUNTER_MAX + 1, &c), TN_ERANGE);
  CHECK_RC(tn_counter_new(TN_COUNTER_MIN - 1, &c), TN_ERANGE);
  CHECK_RC(tn_counter_new(TN_COUNTER_MIN, &c), TN_OK);
  int64_t old = 1;
  CHECK_RC(tn_counter_set_timed(c, INT64_MAX, TN_FOREVER, &old), TN_ERANGE);
  CHECK_INT(old, 1);
  CHECK(tn_counter_get(c) == TN_COUNTER_MIN);
  tn_object_release(TN_OBJECT(c));
}

enum { COUNTER_THREADS = 4, COUNTER_ADDS = 200000 };

static void *count_up(void *p) {
  tn_counter_t *c = p;
  for (int i = 0; i < COUNTER_ADDS; i++) {
    tn_counter_add(c, 3);
    tn_counter_add(c, -1);
  }
  return NULL;
}

TEST(counter_exact_under_contention,
     "several threads adding at once lose no update") {
  tn_counter_t *c;
  CHECK_RC(tn_counter_new(-7, &c), TN_OK);
  pthread_t t[COUNTER_THREADS];
  for (int i = 0; i < COUNTER_THREADS; i++) t[i] = test_spawn(count_up, c);
  for (int i = 0; i < COUNTER_THREADS; i++) test_join(t[i]);
  CHECK_INT(tn_counter_get(c), -7 + 2LL * COUNTER_THREADS * COUNTER_ADDS);
  tn_object_release(TN_OBJECT(c));
}

/* ---- waiting for a value ------------------------------------------------ */

TEST(counter_wait_at_once, "waiting for the value the counter holds returns at once; 0 and TN_TRY only look") {
  tn_counter_t *c;
  CHECK_RC(tn_counter_new(4, &c), TN_OK);
  int64_t v = 0;
  CHECK_RC(tn_counter_wait(c, 4, TN_FOREVER, &v), TN_OK);
  CHECK_INT(v, 4);
  CHECK_RC(tn_counter_wait(c, 5, 0, &v), TN_ETIMEDOUT);
  CHECK_INT(v, 4);
  CHECK_RC(tn_counter_wait(c, 3, TN_TRY, &v), TN_EAGAIN);
  CHECK_INT(v, 4);
  double t0 = test_now();
  CHECK_RC(tn_counter_wait(c, 9, 0.1, &v), TN_ETIMEDOUT);
  CHECK(test_now() - t0 >= 0.09);
  CHECK_INT(v, 4);
  CHECK_INT(tn_counter_get(c), 4); /* a wait changes nothing */
  tn_object_release(TN_OBJECT(c));
}

typedef struct cwait {
  tn_counter_t *c;
  int64_t target;
  int rc;
  int64_t value;
  atomic_int done;
} cwait_t;

static void *wait_for_value(void *p) {
  cwait_t *w = p;
  w->rc = tn_counter_wait(w->c, w->target, 20, &w->value);
  atomic_store(&w->done, 1);
  return NULL;
}

TEST(counter_wait_from_both_sides,
     "waiters from below and from above wake when adds reach their targets") {
  tn_counter_t *c;
  CHECK_RC(tn_counter_new(0, &c), TN_OK);
  enum { N = 8 };
  cwait_t w[2 * N];
  pthread_t t[2 * N];
  for (int i = 0; i < N; i++) {
    w[i] = (cwait_t){c, i + 1, -99, 0, 0};      /* from below: 1..8 */
    w[N + i] = (cwait_t){c, -(i + 1), -99, 0, 0}; /* from above: -1..-8 */
  }
  for (int i = 0; i < 2 * N; i++) t[i] = test_spawn(wait_for_value, &w[i]);
  tn_sleep(0.05); /* most have registered; the others see the value */
  for (int i = 0; i < N; i++) tn_counter_add(c, 1);
  for (int i = 0; i < N; i++) test_join(t[i]);
  for (int i = 0; i < N; i++) {
    CHECK_RC(w[i].rc, TN_OK);
    CHECK(w[i].value >= w[i].target);
    CHECK_INT(atomic_load(&w[N + i].done), 0); /* above: not yet */
  }
  tn_counter_set(c, 0);
  for (int i = 0; i < N; i++) tn_counter_add(c, -1);
  for (int i = N; i < 2 * N; i++) test_join(t[i]);
  for (int i = N; i < 2 * N; i++) {
    CHECK_RC(w[i].rc, TN_OK);
    CHECK(w[i].value <= w[i].target);
  }
  tn_object_release(TN_OBJECT(c));
}

TEST(counter_wait_sees_passing_value,
     "a value that reaches the target and leaves again still wakes the waiter, with that value") {
  tn_counter_t *c;
  CHECK_RC(tn_counter_new(0, &c), TN_OK);
  cwait_t w = {c, 10, -99, 0, 0};
  pthread_t t = test_spawn(wait_for_value, &w);
  /* Pass 10 and come back until the waiter has seen it once. */
  for (int i = 0; i < 200000 && !atomic_load(&w.done); i++) {
    tn_counter_set(c, 10);
    tn_counter_set(c, 0);
    if (i % 100 == 99) tn_sleep(0.001);
  }
  test_join(t);
  CHECK_RC(w.rc, TN_OK);
  CHECK_INT(w.value, 10);
  tn_object_release(TN_OBJECT(c));
}

static void *add_many(void *p) {
  tn_counter_t *c = p;
  for (int i = 0; i < 20000; i++) tn_counter_add(c, 1);
  return NULL;
}

TEST(counter_wait_latch, "a wait for the total of 4 adding threads returns exactly that total") {
  tn_counter_t *c;
  CHECK_RC(tn_counter_new(0, &c), TN_OK);
  pthread_t t[4];
  for (int i = 0; i < 4; i++) t[i] = test_spawn(add_many, c);
  int64_t v = 0;
  CHECK_RC(tn_counter_wait(c, 80000, 30, &v), TN_OK);
  CHECK_INT(v, 80000);
  for (int i = 0; i < 4; i++) test_join(t[i]);
  CHECK_INT(tn_counter_get(c), 80000);
  tn_object_release(TN_OBJECT(c));
}
