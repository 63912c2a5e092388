/*
** test_deque.c - the deque: queue, stack and array behaviour, waiting,
** closing, snapshots, and many threads moving many values exactly once.
*/
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "internal.h"
#include "test.h"

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#endif
#endif

static tn_deque_t *new_deque(size_t hint) {
  tn_deque_t *d = NULL;
  if (tn_deque_new(hint, &d) != TN_OK) abort();
  return d;
}

static void free_deque(tn_deque_t *d) { tn_object_release(TN_OBJECT(d)); }

/* Pop one value and return its long (LONG_MIN when the pop failed). */
static long pop_long(tn_deque_t *d, int front) {
  tn_blob_t *b = NULL;
  int rc = front ? tn_deque_pop_front(d, &b, 0) : tn_deque_pop_back(d, &b, 0);
  if (rc != TN_OK) return -999999;
  long v = b != NULL ? long_of(b) : -1;
  tn_blob_release(b);
  return v;
}

static long get_long(tn_deque_t *d, size_t i) {
  tn_blob_t *b = NULL;
  if (tn_deque_get(d, i, &b, 0) != TN_OK) return -999999;
  long v = b != NULL ? long_of(b) : -1;
  tn_blob_release(b);
  return v;
}

TEST(deque_new_validates, "a deque needs a size hint of at least 1") {
  tn_deque_t *d = NULL;
  CHECK_RC(tn_deque_new(0, &d), TN_EINVAL);
  CHECK_RC(tn_deque_new(3, &d), TN_OK);
  CHECK_INT(tn_deque_size_hint(d), 3);
  CHECK_INT(tn_deque_size(d), 0);
  CHECK(!tn_deque_is_closed(d));
  free_deque(d);
  d = new_deque(TN_UNBOUNDED);
  CHECK(tn_deque_size_hint(d) == SIZE_MAX);
  free_deque(d);
}

TEST(deque_new_as_types,
     "a deque can be made as a Plural; other types are refused") {
  tn_deque_t *d = NULL;
  CHECK_RC(tn_deque_new_as(TN_TYPE_PLURAL, 2, &d), TN_OK);
  CHECK(tn_object_type(TN_OBJECT(d)) == TN_TYPE_PLURAL);
  CHECK_RC(tn_deque_push_back(d, blob_long(1), 0), TN_OK);
  free_deque(d);
  CHECK_RC(tn_deque_new_as(TN_TYPE_COUNTER, 2, &d), TN_EINVAL);
  CHECK_RC(tn_deque_new_as(TN_TYPE_DEQUE, 0, &d), TN_EINVAL);
}

TEST(deque_insert_at_end, "inserting at TN_END appends whatever the size") {
  tn_deque_t *d = new_deque(TN_UNBOUNDED);
  for (long i = 0; i < 12; i++)
    CHECK_RC(tn_deque_insert(d, TN_END, blob_long(i), 0), TN_OK);
  CHECK_INT(tn_deque_size(d), 12);
  for (long i = 0; i < 12; i++) CHECK_INT(pop_long(d, 1), i);
  tn_deque_close(d);
  tn_blob_t *x = blob_long(0);
  CHECK_RC(tn_deque_insert(d, TN_END, x, 0), TN_ECLOSED);
  tn_blob_release(x);
  free_deque(d);
}

TEST(deque_fifo, "values pushed at the back pop from the front in order") {
  tn_deque_t *d = new_deque(TN_UNBOUNDED);
  for (long i = 0; i < 100; i++)
    CHECK_RC(tn_deque_push_back(d, blob_long(i), 0), TN_OK);
  CHECK_INT(tn_deque_size(d), 100);
  for (long i = 0; i < 100; i++) CHECK_INT(pop_long(d, 1), i);
  CHECK_INT(tn_deque_size(d), 0);
  free_deque(d);
}

TEST(deque_lifo, "values pushed at the back pop from the back in reverse") {
  tn_deque_t *d = new_deque(TN_UNBOUNDED);
  for (long i = 0; i < 50; i++)
    CHECK_RC(tn_deque_push_back(d, blob_long(i), 0), TN_OK);
  for (long i = 49; i >= 0; i--) CHECK_INT(pop_long(d, 0), i);
  free_deque(d);
}

TEST(deque_both_ends, "both ends push and pop, across buffer growth") {
  tn_deque_t *d = new_deque(TN_UNBOUNDED);
  /* front: 19 ... 1, back: 0 ... 19  =>  19..1 0..19 */
  for (long i = 0; i < 20; i++) {
    CHECK_RC(tn_deque_push_back(d, blob_long(i), 0), TN_OK);
    if (i > 0) CHECK_RC(tn_deque_push_front(d, blob_long(i), 0), TN_OK);
  }
  CHECK_INT(tn_deque_size(d), 39);
  CHECK_INT(get_long(d, 0), 19);
  CHECK_INT(get_long(d, 19), 0);
  CHECK_INT(get_long(d, 38), 19);
  for (long i = 19; i >= 1; i--) CHECK_INT(pop_long(d, 1), i);
  for (long i = 19; i >= 0; i--) CHECK_INT(pop_long(d, 0), i);
  CHECK_RC(tn_deque_pop_back(d, NULL, TN_TRY), TN_EAGAIN);
  free_deque(d);
}

TEST(deque_nil_values, "a NULL blob is stored and returned like any value") {
  tn_deque_t *d = new_deque(2);
  CHECK_RC(tn_deque_push_back(d, NULL, 0), TN_OK);
  CHECK_INT(tn_deque_size(d), 1);
  static char sentinel;
  tn_blob_t *b = (tn_blob_t *)&sentinel; /* the pop must overwrite it */
  CHECK_RC(tn_deque_pop_front(d, &b, 0), TN_OK);
  CHECK(b == NULL);
  free_deque(d);
}

TEST(deque_array_ops,
     "get, set, insert and remove address values by index and check "
     "ranges") {
  tn_deque_t *d = new_deque(TN_UNBOUNDED);
  tn_blob_t *b = NULL, *old = NULL;
  CHECK_RC(tn_deque_get(d, 0, &b, 0), TN_ERANGE);
  CHECK_RC(tn_deque_remove(d, 0, &b, 0), TN_ERANGE);
  tn_blob_t *x = blob_long(5);
  CHECK_RC(tn_deque_insert(d, 1, x, 0), TN_ERANGE);
  CHECK_RC(tn_deque_insert(d, 0, x, 0), TN_OK);     /* 5 */
  CHECK_RC(tn_deque_insert(d, 1, blob_long(7), 0), TN_OK); /* 5 7 */
  CHECK_RC(tn_deque_insert(d, 1, blob_long(6), 0), TN_OK); /* 5 6 7 */
  CHECK_RC(tn_deque_insert(d, 0, blob_long(4), 0), TN_OK); /* 4 5 6 7 */
  CHECK_INT(tn_deque_size(d), 4);
  for (long i = 0; i < 4; i++) CHECK_INT(get_long(d, (size_t)i), i + 4);
  CHECK_RC(tn_deque_get(d, 4, &b, 0), TN_ERANGE);

  /* get hands out a new reference: the deque keeps its own. */
  CHECK_RC(tn_deque_get(d, 1, &b, 0), TN_OK);
  CHECK(b == x);
  tn_blob_release(b);
  CHECK_INT(get_long(d, 1), 5);

  CHECK_RC(tn_deque_set(d, 2, blob_long(60), &old, 0), TN_OK);
  CHECK(old != NULL && long_of(old) == 6);
  tn_blob_release(old);
  CHECK_RC(tn_deque_set(d, 2, blob_long(61), NULL, 0), TN_OK); /* released */
  CHECK_INT(get_long(d, 2), 61);

  CHECK_RC(tn_deque_remove(d, 1, &b, 0), TN_OK); /* 4 61 7 */
  CHECK(b == x);
  tn_blob_release(b);
  CHECK_RC(tn_deque_remove(d, 3, &b, 0), TN_ERANGE);
  CHECK_INT(tn_deque_size(d), 3);
  CHECK_INT(get_long(d, 0), 4);
  CHECK_INT(get_long(d, 1), 61);
  CHECK_INT(get_long(d, 2), 7);
  free_deque(d);
}

TEST(deque_set_grows_with_nil,
     "setting past the end grows the deque with NULL values") {
  tn_deque_t *d = new_deque(TN_UNBOUNDED);
  static char sentinel;
  tn_blob_t *old = (tn_blob_t *)&sentinel; /* the set must overwrite it */
  CHECK_RC(tn_deque_set(d, 20, blob_long(20), &old, 0), TN_OK);
  CHECK(old == NULL);
  CHECK_INT(tn_deque_size(d), 21);
  for (size_t i = 0; i < 20; i++) CHECK_INT(get_long(d, i), -1); /* NULL */
  CHECK_INT(get_long(d, 20), 20);
  CHECK_RC(tn_deque_set(d, 21, blob_long(21), NULL, 0), TN_OK); /* append */
  CHECK_INT(tn_deque_size(d), 22);
  CHECK_INT(pop_long(d, 0), 21);
  CHECK_INT(pop_long(d, 0), 20);
  CHECK_INT(pop_long(d, 1), -1);
  tn_blob_t *y = blob_long(1);
  CHECK_RC(tn_deque_set(d, SIZE_MAX, y, NULL, 0), TN_ENOMEM);
  tn_blob_release(y);
  CHECK_INT(tn_deque_size(d), 19);
  free_deque(d);
}

/* A random walk over every operation, compared with a plain array. */
TEST(deque_matches_model,
     "a random mix of operations at every position matches a plain array") {
  tn_deque_t *d = new_deque(TN_UNBOUNDED);
  long model[4096];
  size_t n = 0;
  long next = 0;
  unsigned seed = 12345;
  for (int step = 0; step < 20000; step++) {
    seed = seed * 1103515245u + 12345u;
    unsigned r = (seed >> 16) & 0x7fff;
    int op = (int)(r % 8);
    if (n > 200) op = 4 + (int)(r % 3); /* drain when large */
    seed = seed * 1103515245u + 12345u;
    size_t pos = n > 0 ? ((seed >> 16) & 0x7fff) % (n + 1) : 0;
    tn_blob_t *b = NULL;
    switch (op) {
    case 0: /* push back */
      CHECK_RC(tn_deque_push_back(d, blob_long(next), 0), TN_OK);
      model[n++] = next++;
      break;
    case 1: /* push front */
      CHECK_RC(tn_deque_push_front(d, blob_long(next), 0), TN_OK);
      memmove(model + 1, model, n * sizeof *model);
      model[0] = next++;
      n++;
      break;
    case 2: case 3: /* insert anywhere */
      CHECK_RC(tn_deque_insert(d, pos, blob_long(next), 0), TN_OK);
      memmove(model + pos + 1, model + pos, (n - pos) * sizeof *model);
      model[pos] = next++;
      n++;
      break;
    case 4: /* remove anywhere */
      if (n == 0) break;
      if (pos == n) pos--;
      CHECK_RC(tn_deque_remove(d, pos, &b, 0), TN_OK);
      if (b != NULL) CHECK_INT(long_of(b), model[pos]);
      tn_blob_release(b);
      memmove(model + pos, model + pos + 1, (n - pos - 1) * sizeof *model);
      n--;
      break;
    case 5: /* pop front */
      if (n == 0) break;
      CHECK_INT(pop_long(d, 1), model[0]);
      memmove(model, model + 1, (n - 1) * sizeof *model);
      n--;
      break;
    case 6: /* pop back */
      if (n == 0) break;
      CHECK_INT(pop_long(d, 0), model[--n]);
      break;
    case 7: /* set in place */
      if (n == 0) break;
      if (pos == n) pos--;
      CHECK_RC(tn_deque_set(d, pos, blob_long(next), NULL, 0), TN_OK);
      model[pos] = next++;
      break;
    }
    CHECK_INT(tn_deque_size(d), n);
    if (step % 97 == 0)
      for (size_t i = 0; i < n; i++) CHECK_INT(get_long(d, i), model[i]);
  }
  free_deque(d);
}

TEST(deque_snapshot_replace,
     "a snapshot copies the content; replace succeeds only if nothing "
     "changed since") {
  tn_deque_t *d = new_deque(TN_UNBOUNDED);
  tn_blob_t **items = NULL;
  size_t n = 99;
  uint64_t v0, v1, v2;
  CHECK_RC(tn_deque_snapshot(d, &items, &n, &v0, 0), TN_OK);
  CHECK_INT(n, 0);
  tn_blob_array_free(items, n);
  for (long i = 0; i < 3; i++) tn_deque_push_back(d, blob_long(i), 0);
  tn_deque_push_back(d, NULL, 0);
  CHECK_RC(tn_deque_snapshot(d, &items, &n, &v1, 0), TN_OK);
  CHECK(v1 != v0);
  CHECK_INT(n, 4);
  for (long i = 0; i < 3; i++) CHECK_INT(long_of(items[i]), i);
  CHECK(items[3] == NULL);
  tn_blob_array_free(items, n);

  /* A modification after the snapshot: replace refuses, changes nothing. */
  CHECK_RC(tn_deque_push_back(d, blob_long(3), 0), TN_OK);
  tn_blob_t *repl[20];
  for (long i = 0; i < 20; i++) repl[i] = blob_long(100 + i);
  CHECK_RC(tn_deque_replace(d, repl, 20, v1, 0), TN_ECONFLICT);
  CHECK_INT(tn_deque_size(d), 5);
  CHECK_INT(get_long(d, 4), 3);

  /* With the current version it goes through; the deque owns the blobs. */
  CHECK_RC(tn_deque_snapshot(d, &items, &n, &v2, 0), TN_OK);
  tn_blob_array_free(items, n);
  CHECK_RC(tn_deque_replace(d, repl, 20, v2, 0), TN_OK);
  CHECK_INT(tn_deque_size(d), 20);
  for (size_t i = 0; i < 20; i++) CHECK_INT(get_long(d, i), 100 + (long)i);
  CHECK_RC(tn_deque_push_front(d, blob_long(99), 0), TN_OK);
  CHECK_INT(pop_long(d, 1), 99);
  CHECK_INT(pop_long(d, 0), 119);
  CHECK_RC(tn_deque_replace(d, repl, 20, v2, 0), TN_ECONFLICT);

  /* Replacing with nothing empties it. */
  CHECK_RC(tn_deque_snapshot(d, &items, &n, &v2, 0), TN_OK);
  tn_blob_array_free(items, n);
  CHECK_RC(tn_deque_replace(d, NULL, 0, v2, 0), TN_OK);
  CHECK_INT(tn_deque_size(d), 0);
  free_deque(d);
}

TEST(deque_versions_change,
     "every modification changes the version, reads do not") {
  tn_deque_t *d = new_deque(TN_UNBOUNDED);
  tn_blob_t **items;
  size_t n;
  uint64_t v[8];
  int k = 0;
#define SNAP() \
  (tn_deque_snapshot(d, &items, &n, &v[k++], 0), tn_blob_array_free(items, n))
  SNAP();
  tn_deque_push_back(d, blob_long(1), 0);
  SNAP();
  tn_blob_t *b;
  tn_deque_get(d, 0, &b, 0);
  tn_blob_release(b);
  SNAP();
  CHECK(v[2] == v[1]);
  tn_deque_set(d, 0, blob_long(2), NULL, 0);
  SNAP();
  tn_deque_insert(d, 0, NULL, 0);
  SNAP();
  tn_deque_remove(d, 0, &b, 0);
  SNAP();
  tn_deque_pop_back(d, &b, 0);
  tn_blob_release(b);
  SNAP();
#undef SNAP
  for (int i = 1; i < k; i++)
    if (i != 2) CHECK(v[i] != v[i - 1]);
  free_deque(d);
}

/* ---- try forms and timeouts --------------------------------------------- */

TEST(deque_try_full_empty,
     "TN_TRY returns TN_EAGAIN and 0 returns TN_ETIMEDOUT at once when "
     "full or empty") {
  tn_deque_t *d = new_deque(2);
  tn_blob_t *b = NULL;
  double t0 = test_now();
  CHECK_RC(tn_deque_pop_front(d, &b, TN_TRY), TN_EAGAIN);
  CHECK_RC(tn_deque_pop_back(d, &b, TN_TRY), TN_EAGAIN);
  CHECK_RC(tn_deque_pop_front(d, &b, 0), TN_ETIMEDOUT);
  CHECK_RC(tn_deque_push_back(d, blob_long(1), TN_TRY), TN_OK);
  CHECK_RC(tn_deque_push_back(d, blob_long(2), 0), TN_OK);
  tn_blob_t *x = blob_long(3);
  CHECK_RC(tn_deque_push_back(d, x, TN_TRY), TN_EAGAIN);
  CHECK_RC(tn_deque_push_front(d, x, TN_TRY), TN_EAGAIN);
  CHECK_RC(tn_deque_push_back(d, x, 0), TN_ETIMEDOUT);
  CHECK(test_now() - t0 < 0.05);
  CHECK_INT(tn_deque_size(d), 2);
  /* Array operations never wait for room. */
  CHECK_RC(tn_deque_insert(d, 0, x, TN_TRY), TN_OK);
  CHECK_INT(tn_deque_size(d), 3);
  CHECK_INT(pop_long(d, 1), 3);
  CHECK_INT(pop_long(d, 1), 1);
  /* A push that makes size reach the hint is fine. */
  CHECK_RC(tn_deque_push_front(d, blob_long(0), TN_TRY), TN_OK);
  CHECK_INT(tn_deque_size(d), 2);
  free_deque(d);
}

/* Holding one of the deque's locks from another thread plays "another
** thread is inside the deque": every operation that needs that lock must
** give up at once under TN_TRY, and the others must not notice. */
static void try_while_held(bool front) {
  tn_deque_t *d = new_deque(TN_UNBOUNDED);
  tn_deque_push_back(d, blob_long(1), 0);
  tn_deque_push_back(d, blob_long(2), 0);
  test_holder_t h = {tn_deque_test_mutex(d, front), 0, 0};
  pthread_t t = test_spawn(test_hold_mutex, &h);
  while (!atomic_load(&h.held)) tn_sleep(0.001);
  tn_blob_t *x = blob_long(3), *b = NULL, **items = NULL;
  size_t n;
  uint64_t v;
  double t0 = test_now();
  /* Both locks: */
  CHECK_RC(tn_deque_push_front(d, x, TN_TRY), TN_EAGAIN);
  CHECK_RC(tn_deque_insert(d, 0, x, TN_TRY), TN_EAGAIN);
  CHECK_RC(tn_deque_remove(d, 0, &b, TN_TRY), TN_EAGAIN);
  CHECK_RC(tn_deque_get(d, 0, &b, TN_TRY), TN_EAGAIN);
  CHECK_RC(tn_deque_set(d, 0, x, NULL, TN_TRY), TN_EAGAIN);
  CHECK_RC(tn_deque_snapshot(d, &items, &n, &v, TN_TRY), TN_EAGAIN);
  CHECK_RC(tn_deque_replace(d, &x, 1, 0, TN_TRY), TN_EAGAIN);
  CHECK_INT(tn_deque_size(d), 2); /* never locks */
  if (front) {
    /* The back alone: push_back and pop_back go on; pop_front waits. */
    CHECK_RC(tn_deque_pop_front(d, &b, TN_TRY), TN_EAGAIN);
    CHECK_RC(tn_deque_push_back(d, x, TN_TRY), TN_OK);
    CHECK_RC(tn_deque_pop_back(d, &b, TN_TRY), TN_OK);
    CHECK(b == x);
  } else {
    /* The front alone: pop_front goes on. */
    CHECK_RC(tn_deque_push_back(d, x, TN_TRY), TN_EAGAIN);
    CHECK_RC(tn_deque_pop_back(d, &b, TN_TRY), TN_EAGAIN);
    CHECK_RC(tn_deque_pop_front(d, &b, TN_TRY), TN_OK);
    CHECK_INT(long_of(b), 1);
    tn_blob_release(b);
  }
  CHECK(test_now() - t0 < 0.05);
  atomic_store(&h.release, 1);
  test_join(t);
  CHECK_RC(tn_deque_push_back(d, x, TN_TRY), TN_OK);
  CHECK_INT(tn_deque_size(d), front ? 3 : 2);
  free_deque(d);
}

TEST(deque_try_never_waits_for_lock,
     "TN_TRY returns TN_EAGAIN while another thread holds a lock the "
     "operation needs: push_back and pop_back need only the back lock, "
     "pop_front only the front lock, everything else both") {
  try_while_held(true);
  try_while_held(false);
}

TEST(deque_pop_deadline,
     "a timed pop on an empty deque returns TN_ETIMEDOUT after about the "
     "timeout, never much earlier") {
  tn_deque_t *d = new_deque(TN_UNBOUNDED);
  tn_blob_t *b = NULL;
  double t0 = test_now();
  CHECK_RC(tn_deque_pop_front(d, &b, 0.1), TN_ETIMEDOUT);
  double took = test_now() - t0;
  CHECK(took >= 0.099);
  CHECK(took < 0.6);
  CHECK(b == NULL);
  t0 = test_now();
  CHECK_RC(tn_deque_pop_back(d, &b, 0.01), TN_ETIMEDOUT);
  took = test_now() - t0;
  CHECK(took >= 0.0099 && took < 0.5);
  free_deque(d);
}

TEST(deque_push_deadline,
     "a timed push on a full deque returns TN_ETIMEDOUT after about the "
     "timeout and keeps the caller's blob") {
  tn_deque_t *d = new_deque(1);
  tn_deque_push_back(d, blob_long(1), 0);
  tn_blob_t *x = blob_long(2);
  double t0 = test_now();
  CHECK_RC(tn_deque_push_back(d, x, 0.1), TN_ETIMEDOUT);
  double took = test_now() - t0;
  CHECK(took >= 0.099 && took < 0.6);
  CHECK_INT(tn_deque_size(d), 1);
  tn_blob_release(x);
  free_deque(d);
}

/* ---- waking ------------------------------------------------------------- */

typedef struct waiter {
  tn_deque_t *d;
  int push;       /* 1: push `value`, else pop into `got` */
  double timeout;
  tn_blob_t *value, *got;
  int rc;
  atomic_int done;
} waiter_t;

static void *wait_op(void *p) {
  waiter_t *w = p;
  if (w->push)
    w->rc = tn_deque_push_back(w->d, w->value, w->timeout);
  else
    w->rc = tn_deque_pop_front(w->d, &w->got, w->timeout);
  atomic_store(&w->done, 1);
  return NULL;
}

TEST(deque_pop_woken_by_push, "a waiting pop takes the value a push brings") {
  tn_deque_t *d = new_deque(1);
  waiter_t w = {d, 0, TN_FOREVER, NULL, NULL, 99, 0};
  pthread_t t = test_spawn(wait_op, &w);
  tn_sleep(0.05);
  CHECK(!atomic_load(&w.done));
  CHECK_RC(tn_deque_push_back(d, blob_long(42), TN_FOREVER), TN_OK);
  test_join(t);
  CHECK_INT(w.rc, TN_OK);
  CHECK(w.got != NULL && long_of(w.got) == 42);
  tn_blob_release(w.got);
  free_deque(d);
}

TEST(deque_push_woken_by_pop, "a push waiting for room gets it from a pop") {
  tn_deque_t *d = new_deque(1);
  tn_deque_push_back(d, blob_long(1), 0);
  waiter_t w = {d, 1, 5.0, blob_long(2), NULL, 99, 0};
  pthread_t t = test_spawn(wait_op, &w);
  tn_sleep(0.05);
  CHECK(!atomic_load(&w.done));
  CHECK_INT(pop_long(d, 1), 1);
  test_join(t);
  CHECK_INT(w.rc, TN_OK);
  CHECK_INT(pop_long(d, 1), 2);
  free_deque(d);
}

TEST(deque_close_wakes_waiters,
     "close wakes blocked poppers and pushers, which return TN_ECLOSED") {
  tn_deque_t *empty = new_deque(1), *full = new_deque(1);
  tn_deque_push_back(full, blob_long(1), 0);
  waiter_t w[4] = {
      {empty, 0, TN_FOREVER, NULL, NULL, 99, 0},
      {empty, 0, 10.0, NULL, NULL, 99, 0},
      {full, 1, TN_FOREVER, blob_long(2), NULL, 99, 0},
      {full, 1, 10.0, blob_long(3), NULL, 99, 0},
  };
  pthread_t t[4];
  for (int i = 0; i < 4; i++) t[i] = test_spawn(wait_op, &w[i]);
  tn_sleep(0.05);
  for (int i = 0; i < 4; i++) CHECK(!atomic_load(&w[i].done));
  double t0 = test_now();
  tn_deque_close(empty);
  tn_deque_close(full);
  for (int i = 0; i < 4; i++) test_join(t[i]);
  CHECK(test_now() - t0 < 1.0);
  for (int i = 0; i < 4; i++) CHECK_INT(w[i].rc, TN_ECLOSED);
  tn_blob_release(w[2].value); /* a failed push leaves the blob with us */
  tn_blob_release(w[3].value);
  CHECK(tn_deque_is_closed(empty) && tn_deque_is_closed(full));
  /* The value in the closed deque is still there to pop, then ECLOSED. */
  CHECK_INT(pop_long(full, 1), 1);
  tn_blob_t *b;
  CHECK_RC(tn_deque_pop_front(full, &b, TN_FOREVER), TN_ECLOSED);
  CHECK_RC(tn_deque_pop_back(full, &b, TN_TRY), TN_ECLOSED);
  free_deque(empty);
  free_deque(full);
}

TEST(deque_closed_rules,
     "a closed deque refuses pushes and growth, drains pops, allows "
     "in-place sets") {
  tn_deque_t *d = new_deque(TN_UNBOUNDED);
  for (long i = 0; i < 3; i++) tn_deque_push_back(d, blob_long(i), 0);
  tn_deque_close(d);
  tn_deque_close(d); /* idempotent */
  tn_blob_t *x = blob_long(9), *old = NULL;
  CHECK_RC(tn_deque_push_back(d, x, 0), TN_ECLOSED);
  CHECK_RC(tn_deque_push_front(d, x, TN_FOREVER), TN_ECLOSED);
  CHECK_RC(tn_deque_insert(d, 0, x, 0), TN_ECLOSED);
  CHECK_RC(tn_deque_set(d, 3, x, NULL, 0), TN_ECLOSED);
  CHECK_RC(tn_deque_set(d, 1, x, &old, 0), TN_OK);
  CHECK(old != NULL && long_of(old) == 1);
  tn_blob_release(old);
  CHECK_INT(tn_deque_size(d), 3);
  CHECK_INT(pop_long(d, 0), 2);
  CHECK_INT(pop_long(d, 1), 0);
  tn_blob_t *b;
  CHECK_RC(tn_deque_remove(d, 0, &b, 0), TN_OK);
  CHECK(b == x);
  tn_blob_release(b);
  double t0 = test_now();
  CHECK_RC(tn_deque_pop_front(d, &b, 5.0), TN_ECLOSED);
  CHECK(test_now() - t0 < 0.5);
  free_deque(d);
}

/* ---- many threads ------------------------------------------------------- */

enum { MP_PRODUCERS = 4, MP_CONSUMERS = 4 };

typedef struct mp_shared {
  tn_deque_t *d;
  long per_producer;
  atomic_uchar *seen;            /* per item: times it was popped */
  atomic_long sum, popped;
  atomic_int order_errors;
} mp_shared_t;

typedef struct mp_thread {
  mp_shared_t *s;
  long id;
} mp_thread_t;

static void *mp_produce(void *p) {
  mp_thread_t *t = p;
  mp_shared_t *s = t->s;
  for (long i = 0; i < s->per_producer; i++) {
    tn_blob_t *b = blob_long(t->id * s->per_producer + i);
    int rc = tn_deque_push_back(s->d, b, TN_FOREVER);
    if (rc != TN_OK) {
      test_fail(__FILE__, __LINE__, "push: %s", tn_strerror(rc));
      tn_blob_release(b);
      break;
    }
  }
  return NULL;
}

static void *mp_consume(void *p) {
  mp_thread_t *t = p;
  mp_shared_t *s = t->s;
  long last[MP_PRODUCERS];
  for (int i = 0; i < MP_PRODUCERS; i++) last[i] = -1;
  long sum = 0, n = 0;
  for (;;) {
    tn_blob_t *b = NULL;
    /* Alternate forms: waits, timed waits, and tries with a retry. */
    int rc;
    if (n % 3 == 2) {
      rc = tn_deque_pop_front(s->d, &b, TN_TRY);
      if (rc == TN_EAGAIN) { /* let the others run (one CPU, valgrind) */
        sched_yield();
        continue;
      }
    } else if (n % 3 == 1) {
      rc = tn_deque_pop_front(s->d, &b, 0.5);
      if (rc == TN_ETIMEDOUT) continue;
    } else {
      rc = tn_deque_pop_front(s->d, &b, TN_FOREVER);
    }
    if (rc == TN_ECLOSED) break;
    if (rc != TN_OK || b == NULL) {
      test_fail(__FILE__, __LINE__, "pop: %s", tn_strerror(rc));
      break;
    }
    long v = long_of(b);
    tn_blob_release(b);
    long total = s->per_producer * MP_PRODUCERS;
    if (v < 0 || v >= total) {
      atomic_fetch_add(&s->order_errors, 1);
      continue;
    }
    atomic_fetch_add(&s->seen[v], 1);
    long producer = v / s->per_producer;
    /* FIFO: one consumer sees each producer's items in increasing order. */
    if (v <= last[producer]) atomic_fetch_add(&s->order_errors, 1);
    last[producer] = v;
    sum += v;
    n++;
  }
  atomic_fetch_add(&s->sum, sum);
  atomic_fetch_add(&s->popped, n);
  return NULL;
}

/* 200k items; TN_TEST_ITEMS overrides. Valgrind runs one thread at a time,
** 50-100 times slower, and yields at every PAUSE of a spin: there 4000
** items keep the suite within a minute. */
static long mp_items(void) {
  const char *e = getenv("TN_TEST_ITEMS");
  long n = e != NULL ? atol(e) : 200000;
#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
  if (e == NULL && RUNNING_ON_VALGRIND) n = 4000;
#endif
#endif
  return n >= MP_PRODUCERS ? n : 200000;
}

static void mp_run(size_t hint) {
  mp_shared_t s;
  s.d = new_deque(hint);
  s.per_producer = mp_items() / MP_PRODUCERS;
  long total = s.per_producer * MP_PRODUCERS;
  s.seen = calloc((size_t)total, sizeof *s.seen);
  atomic_init(&s.sum, 0);
  atomic_init(&s.popped, 0);
  atomic_init(&s.order_errors, 0);
  mp_thread_t pt[MP_PRODUCERS], ct[MP_CONSUMERS];
  pthread_t ptid[MP_PRODUCERS], ctid[MP_CONSUMERS];
  for (int i = 0; i < MP_CONSUMERS; i++) {
    ct[i] = (mp_thread_t){&s, i};
    ctid[i] = test_spawn(mp_consume, &ct[i]);
  }
  for (int i = 0; i < MP_PRODUCERS; i++) {
    pt[i] = (mp_thread_t){&s, i};
    ptid[i] = test_spawn(mp_produce, &pt[i]);
  }
  for (int i = 0; i < MP_PRODUCERS; i++) test_join(ptid[i]);
  tn_deque_close(s.d);
  for (int i = 0; i < MP_CONSUMERS; i++) test_join(ctid[i]);

  CHECK_INT(atomic_load(&s.popped), total);
  CHECK_INT(atomic_load(&s.sum), (long long)total * (total - 1) / 2);
  CHECK_INT(atomic_load(&s.order_errors), 0);
  long wrong = 0;
  for (long i = 0; i < total; i++)
    if (atomic_load(&s.seen[i]) != 1) wrong++;
  CHECK_INT(wrong, 0); /* every item exactly once */
  CHECK_INT(tn_deque_size(s.d), 0);
  free(s.seen);
  free_deque(s.d);
}

TEST(deque_mpmc_hint4,
     "4 producers and 4 consumers through a size hint of 4 deliver every "
     "item exactly once") {
  mp_run(4);
}

TEST(deque_mpmc_hint1024,
     "4 producers and 4 consumers through a size hint of 1024 deliver every "
     "item exactly once") {
  mp_run(1024);
}

TEST(deque_mpmc_unbounded,
     "4 producers and 4 consumers through an unbounded deque deliver every "
     "item exactly once") {
  mp_run(TN_UNBOUNDED);
}

/* Ping-pong: two deques of hint 1, a value bounced back and forth. */
typedef struct pingpong {
  tn_deque_t *a, *b;
  long rounds;
} pingpong_t;

static void *pong(void *p) {
  pingpong_t *pp = p;
  for (long i = 0; i < pp->rounds; i++) {
    tn_blob_t *b = NULL;
    if (tn_deque_pop_front(pp->a, &b, TN_FOREVER) != TN_OK) break;
    tn_deque_push_back(pp->b, b, TN_FOREVER);
  }
  return NULL;
}

TEST(deque_ping_pong, "a value bounced between two threads is never lost") {
  pingpong_t pp = {new_deque(1), new_deque(1), 20000};
  pthread_t t = test_spawn(pong, &pp);
  tn_blob_t *ball = blob_long(7);
  double t0 = test_now();
  for (long i = 0; i < pp.rounds; i++) {
    CHECK_RC(tn_deque_push_back(pp.a, ball, TN_FOREVER), TN_OK);
    CHECK_RC(tn_deque_pop_front(pp.b, &ball, TN_FOREVER), TN_OK);
  }
  double dt = test_now() - t0;
  test_join(t);
  CHECK(ball != NULL && long_of(ball) == 7);
  tn_blob_release(ball);
  printf("# ping-pong round trip: %.0f ns\n", dt / (double)pp.rounds * 1e9);
  free_deque(pp.a);
  free_deque(pp.b);
}
