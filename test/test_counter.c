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
