/*
** test_batch.c - tn_deque_push_many and tn_deque_pop_many in process: one
** operation each, all or nothing, waiting for room for the whole batch,
** close, cancellation, and every item once, in order, under threads.
*/
#include <stdlib.h>

#include "internal.h"
#include "test.h"

static tn_deque_t *deque(size_t hint) {
  tn_deque_t *d = NULL;
  CHECK_RC(tn_deque_new(hint, &d), TN_OK);
  return d;
}

/* `n` blobs holding first, first + 1, ... */
static tn_blob_t **batch(long first, size_t n) {
  tn_blob_t **b = malloc(n * sizeof *b);
  for (size_t i = 0; i < n; i++) b[i] = blob_long(first + (long)i);
  return b;
}

static void batch_free(tn_blob_t **b, size_t n) {
  for (size_t i = 0; i < n; i++) tn_blob_release(b[i]);
  free(b);
}

/* The deque's next n values, popped one by one, must be first .. first +
** n - 1. */
static void check_drain(tn_deque_t *d, long first, size_t n) {
  CHECK(tn_deque_size(d) >= n);
  for (size_t i = 0; i < n; i++) {
    tn_blob_t *b = NULL;
    CHECK_RC(tn_deque_pop_front(d, &b, 0), TN_OK);
    if (b == NULL) return;
    CHECK_INT(long_of(b), first + (long)i);
    tn_blob_release(b);
  }
}

TEST(batch_basics, "push_many appends a batch in order, pop_many takes up "
                   "to max from the front") {
  tn_deque_t *d = deque(TN_UNBOUNDED);
  CHECK_RC(tn_deque_push_back(d, blob_long(0), 0), TN_OK);
  tn_blob_t **b = batch(1, 5);
  CHECK_RC(tn_deque_push_many(d, b, 5, TN_FOREVER), TN_OK);
  free(b); /* the deque owns the blobs, the array is ours */
  CHECK_INT(tn_deque_size(d), 6);
  tn_blob_t **items = NULL;
  size_t n = 0;
  CHECK_RC(tn_deque_pop_many(d, 4, &items, &n, 0), TN_OK);
  CHECK_INT(n, 4);
  for (size_t i = 0; i < n; i++) CHECK_INT(long_of(items[i]), (long)i);
  tn_blob_array_free(items, n);
  CHECK_RC(tn_deque_pop_many(d, 100, &items, &n, TN_TRY), TN_OK);
  CHECK_INT(n, 2);
  CHECK_INT(long_of(items[0]), 4);
  CHECK_INT(long_of(items[1]), 5);
  tn_blob_array_free(items, n);
  /* NULL values, and an empty batch. */
  tn_blob_t *nils[3] = {NULL, blob_long(9), NULL};
  CHECK_RC(tn_deque_push_many(d, nils, 3, 0), TN_OK);
  CHECK_RC(tn_deque_push_many(d, NULL, 0, 0), TN_OK);
  CHECK_RC(tn_deque_pop_many(d, 3, &items, &n, 0), TN_OK);
  CHECK_INT(n, 3);
  CHECK(items[0] == NULL && items[2] == NULL);
  CHECK_INT(long_of(items[1]), 9);
  tn_blob_array_free(items, n);
  tn_object_release(TN_OBJECT(d));
}

TEST(batch_wraps_and_grows, "batches across the ring's end and past its "
                            "capacity keep their order") {
  tn_deque_t *d = deque(TN_UNBOUNDED);
  long next_in = 0, next_out = 0;
  for (int round = 0; round < 50; round++) {
    size_t k = (size_t)(round % 13) + 1;
    tn_blob_t **b = batch(next_in, k);
    CHECK_RC(tn_deque_push_many(d, b, k, 0), TN_OK);
    free(b);
    next_in += (long)k;
    tn_blob_t **items;
    size_t n;
    CHECK_RC(tn_deque_pop_many(d, (size_t)(round % 7) + 1, &items, &n, 0),
             TN_OK);
    for (size_t i = 0; i < n; i++) CHECK_INT(long_of(items[i]), next_out++);
    tn_blob_array_free(items, n);
  }
  CHECK_INT(tn_deque_size(d), next_in - next_out);
  check_drain(d, next_out, (size_t)(next_in - next_out));
  tn_object_release(TN_OBJECT(d));
}

TEST(batch_room_for_all, "a batch waits until all of it fits under the "
                         "hint; giving up pushes none of it") {
  tn_deque_t *d = deque(4);
  tn_blob_t **b = batch(0, 2);
  CHECK_RC(tn_deque_push_many(d, b, 2, 0), TN_OK);
  free(b);
  b = batch(10, 3);
  CHECK_RC(tn_deque_push_many(d, b, 3, TN_TRY), TN_EAGAIN);
  CHECK_RC(tn_deque_push_many(d, b, 3, 0), TN_ETIMEDOUT);
  double t0 = test_now();
  CHECK_RC(tn_deque_push_many(d, b, 3, 0.05), TN_ETIMEDOUT);
  CHECK(test_now() - t0 >= 0.045);
  CHECK_INT(tn_deque_size(d), 2);
  tn_blob_t *x;
  CHECK_RC(tn_deque_pop_front(d, &x, 0), TN_OK); /* room for 3 now */
  tn_blob_release(x);
  CHECK_RC(tn_deque_push_many(d, b, 3, 0), TN_OK);
  free(b);
  CHECK_INT(tn_deque_size(d), 4);
  check_drain(d, 1, 1);
  check_drain(d, 10, 3);
  tn_object_release(TN_OBJECT(d));
}

TEST(batch_larger_than_hint, "a batch larger than the hint goes into an "
                             "empty deque only, all at once") {
  tn_deque_t *d = deque(2);
  CHECK_RC(tn_deque_push_back(d, blob_long(0), 0), TN_OK);
  tn_blob_t **b = batch(1, 5);
  CHECK_RC(tn_deque_push_many(d, b, 5, 0), TN_ETIMEDOUT);
  check_drain(d, 0, 1);
  CHECK_RC(tn_deque_push_many(d, b, 5, 0), TN_OK);
  free(b);
  CHECK_INT(tn_deque_size(d), 5);
  tn_blob_t *x = blob_long(6);
  CHECK_RC(tn_deque_push_back(d, x, 0), TN_ETIMEDOUT); /* over the hint */
  tn_blob_release(x);
  check_drain(d, 1, 5);
  tn_object_release(TN_OBJECT(d));
}

TEST(batch_pop_waits, "pop_many waits for a first value; TN_TRY, 0 and a "
                      "timeout give up; max 0 is refused") {
  tn_deque_t *d = deque(TN_UNBOUNDED);
  tn_blob_t **items = NULL;
  size_t n = 7;
  CHECK_RC(tn_deque_pop_many(d, 0, &items, &n, 0), TN_EINVAL);
  CHECK_RC(tn_deque_pop_many(d, 3, &items, &n, TN_TRY), TN_EAGAIN);
  CHECK_RC(tn_deque_pop_many(d, 3, &items, &n, 0), TN_ETIMEDOUT);
  double t0 = test_now();
  CHECK_RC(tn_deque_pop_many(d, 3, &items, &n, 0.05), TN_ETIMEDOUT);
  CHECK(test_now() - t0 >= 0.045);
  CHECK(items == NULL);
  CHECK_INT(n, 7);
  tn_object_release(TN_OBJECT(d));
}

TEST(batch_close, "a closed deque refuses batches and gives what is left, "
                  "then TN_ECLOSED") {
  tn_deque_t *d = deque(TN_UNBOUNDED);
  tn_blob_t **b = batch(0, 3);
  CHECK_RC(tn_deque_push_many(d, b, 3, 0), TN_OK);
  free(b);
  tn_deque_close(d);
  b = batch(5, 2);
  CHECK_RC(tn_deque_push_many(d, b, 2, TN_FOREVER), TN_ECLOSED);
  CHECK_RC(tn_deque_push_many(d, b, 0, TN_FOREVER), TN_ECLOSED);
  batch_free(b, 2);
  tn_blob_t **items;
  size_t n;
  CHECK_RC(tn_deque_pop_many(d, 2, &items, &n, TN_FOREVER), TN_OK);
  CHECK_INT(n, 2);
  tn_blob_array_free(items, n);
  CHECK_RC(tn_deque_pop_many(d, 2, &items, &n, TN_FOREVER), TN_OK);
  CHECK_INT(n, 1);
  tn_blob_array_free(items, n);
  CHECK_RC(tn_deque_pop_many(d, 2, &items, &n, TN_FOREVER), TN_ECLOSED);
  CHECK_RC(tn_deque_pop_many(d, 2, &items, &n, TN_TRY), TN_ECLOSED);
  tn_object_release(TN_OBJECT(d));
}

/* A thread doing one push_many (k values from `first`) or pop_many (up to
** k) or single push, and recording its code. */
typedef struct worker {
  tn_deque_t *d;
  int kind; /* 0 push_many, 1 pop_many, 2 push */
  size_t k;
  long first;
  double timeout;
  tn_cancel_t *token;
  atomic_int started, done;
  int rc;
  size_t got;
  double took;
} worker_t;

static void *work_main(void *p) {
  worker_t *w = p;
  if (w->token != NULL) tn_cancel_enter(w->token);
  atomic_store(&w->started, 1);
  double t0 = test_now();
  if (w->kind == 0) {
    tn_blob_t **b = batch(w->first, w->k);
    w->rc = tn_deque_push_many(w->d, b, w->k, w->timeout);
    if (w->rc == TN_OK)
      free(b);
    else
      batch_free(b, w->k);
  } else if (w->kind == 1) {
    tn_blob_t **items;
    size_t n = 0;
    w->rc = tn_deque_pop_many(w->d, w->k, &items, &n, w->timeout);
    if (w->rc == TN_OK) tn_blob_array_free(items, n);
    w->got = n;
  } else {
    tn_blob_t *b = blob_long(w->first);
    w->rc = tn_deque_push_back(w->d, b, w->timeout);
    if (w->rc != TN_OK) tn_blob_release(b);
  }
  w->took = test_now() - t0;
  if (w->token != NULL) tn_cancel_enter(NULL);
  atomic_store(&w->done, 1);
  return NULL;
}

static pthread_t start(worker_t *w) {
  atomic_init(&w->started, 0);
  atomic_init(&w->done, 0);
  pthread_t t = test_spawn(work_main, w);
  while (!atomic_load(&w->started)) tn_sleep(0.001);
  tn_sleep(0.05); /* asleep by now */
  return t;
}

TEST(batch_wakeups, "a waiting batch gets in once room for all of it "
                    "frees up; a single push waiting beside it is not "
                    "held up by it") {
  tn_deque_t *d = deque(3);
  tn_blob_t **b = batch(0, 3);
  CHECK_RC(tn_deque_push_many(d, b, 3, 0), TN_OK);
  free(b);
  worker_t many = {d, 0, 2, 100, 30, NULL, 0, 0, 1, 0, 0};
  pthread_t tm = start(&many);
  worker_t one = {d, 2, 1, 200, 30, NULL, 0, 0, 1, 0, 0};
  pthread_t to = start(&one);
  /* One slot: room for the single push, not the batch. */
  check_drain(d, 0, 1);
  test_join(to);
  CHECK_RC(one.rc, TN_OK);
  CHECK(one.took < 20); /* woken by the pop, not by its timeout */
  CHECK(!atomic_load(&many.done));
  /* Two more: room for the batch. */
  tn_blob_t **items;
  size_t n;
  CHECK_RC(tn_deque_pop_many(d, 2, &items, &n, 0), TN_OK);
  CHECK_INT(n, 2);
  CHECK_INT(long_of(items[0]), 1);
  CHECK_INT(long_of(items[1]), 2);
  tn_blob_array_free(items, n);
  test_join(tm);
  CHECK_RC(many.rc, TN_OK);
  CHECK(many.took < 20);
  check_drain(d, 200, 1);
  check_drain(d, 100, 2);

  /* A pop_many waiting on an empty deque takes a whole batch at once. */
  worker_t pop = {d, 1, 10, 0, 30, NULL, 0, 0, 1, 0, 0};
  pthread_t tp = start(&pop);
  b = batch(0, 6);
  CHECK_RC(tn_deque_push_many(d, b, 6, 0), TN_OK);
  free(b);
  test_join(tp);
  CHECK_RC(pop.rc, TN_OK);
  CHECK(pop.got >= 1 && pop.got <= 6);
  CHECK_INT(tn_deque_size(d), 6 - pop.got);
  tn_object_release(TN_OBJECT(d));
}

TEST(batch_close_wakes, "close wakes a waiting batch push (TN_ECLOSED, "
                        "nothing pushed) and a waiting pop_many") {
  tn_deque_t *full = deque(1), *empty = deque(TN_UNBOUNDED);
  CHECK_RC(tn_deque_push_back(full, blob_long(1), 0), TN_OK);
  worker_t push = {full, 0, 1, 5, TN_FOREVER, NULL, 0, 0, 1, 0, 0};
  worker_t pop = {empty, 1, 4, 0, TN_FOREVER, NULL, 0, 0, 1, 0, 0};
  pthread_t t1 = start(&push), t2 = start(&pop);
  tn_deque_close(full);
  tn_deque_close(empty);
  test_join(t1);
  test_join(t2);
  CHECK_RC(push.rc, TN_ECLOSED);
  CHECK_RC(pop.rc, TN_ECLOSED);
  check_drain(full, 1, 1);
  tn_object_release(TN_OBJECT(full));
  tn_object_release(TN_OBJECT(empty));
}

TEST(batch_cancel, "a cancel request ends a waiting push_many and pop_many "
                   "with TN_ECANCELED, nothing changed") {
  tn_deque_t *d = deque(2);
  CHECK_RC(tn_deque_push_back(d, blob_long(1), 0), TN_OK);
  for (int kind = 0; kind < 2; kind++) {
    tn_deque_t *q = kind == 0 ? d : deque(TN_UNBOUNDED);
    worker_t w = {q, kind, 2, 7, TN_FOREVER, NULL, 0, 0, 1, 0, 0};
    CHECK_RC(tn_cancel_new(&w.token), TN_OK);
    pthread_t t = start(&w);
    tn_cancel_request(w.token);
    test_join(t);
    CHECK_RC(w.rc, TN_ECANCELED);
    tn_cancel_free(w.token);
    CHECK_INT(tn_deque_size(q), kind == 0 ? 1 : 0);
    if (q != d) tn_object_release(TN_OBJECT(q));
  }
  check_drain(d, 1, 1);
  tn_object_release(TN_OBJECT(d));
}

TEST(batch_enomem, "a batch that cannot grow the ring fails with TN_ENOMEM "
                   "and pushes none of it") {
  tn_deque_t *d = deque(TN_UNBOUNDED);
  tn_blob_t **b = batch(0, 20);
  tn_fault_alloc(1, 1);
  int rc = tn_deque_push_many(d, b, 20, 0);
  tn_fault_alloc(0, 0);
  CHECK_RC(rc, TN_ENOMEM);
  CHECK_INT(tn_deque_size(d), 0);
  CHECK_RC(tn_deque_push_many(d, b, 20, 0), TN_OK);
  free(b);
  tn_blob_t **items = NULL;
  size_t n = 0;
  tn_fault_alloc(1, 1);
  rc = tn_deque_pop_many(d, 5, &items, &n, 0);
  tn_fault_alloc(0, 0);
  CHECK_RC(rc, TN_ENOMEM);
  check_drain(d, 0, 20);
  tn_object_release(TN_OBJECT(d));
}

/* ---- threads ------------------------------------------------------------- */

enum { BATCH_PRODUCERS = 3, BATCH_ITEMS = 30000, BATCH_K = 64 };

typedef struct bworker {
  tn_deque_t *d;
  int id;
  atomic_uchar *seen;
  long got;
  int err;
} bworker_t;

static void *bproduce(void *p) {
  bworker_t *w = p;
  long base = (long)w->id * BATCH_ITEMS;
  for (long i = 0; i < BATCH_ITEMS;) {
    size_t k = (size_t)(1 + (i / 7) % BATCH_K);
    if (i + (long)k > BATCH_ITEMS) k = (size_t)(BATCH_ITEMS - i);
    tn_blob_t **b = batch(base + i, k);
    int rc = tn_deque_push_many(w->d, b, k, TN_FOREVER);
    if (rc != TN_OK) {
      batch_free(b, k);
      w->err = rc;
      return NULL;
    }
    free(b);
    i += (long)k;
  }
  return NULL;
}

static void *bconsume(void *p) {
  bworker_t *w = p;
  long last[BATCH_PRODUCERS];
  for (int k = 0; k < BATCH_PRODUCERS; k++) last[k] = -1;
  for (;;) {
    tn_blob_t **items;
    size_t n;
    int rc = tn_deque_pop_many(w->d, BATCH_K, &items, &n, TN_FOREVER);
    if (rc == TN_ECLOSED) return NULL;
    if (rc != TN_OK) {
      w->err = rc;
      return NULL;
    }
    for (size_t i = 0; i < n; i++) {
      long v = long_of(items[i]);
      int k = (int)(v / BATCH_ITEMS);
      if (v < 0 || k >= BATCH_PRODUCERS || v <= last[k]) w->err = TN_EPROTO;
      else last[k] = v; /* each producer's values in its order */
      if (v >= 0 && v < BATCH_PRODUCERS * BATCH_ITEMS)
        atomic_fetch_add(&w->seen[v], 1);
    }
    w->got += (long)n;
    tn_blob_array_free(items, n);
  }
}

TEST(batch_threads_exactly_once, "3 producers of batches, 2 consumers of "
                                 "batches through a bounded deque: every "
                                 "item once, each producer's in order") {
  tn_deque_t *d = deque(100);
  atomic_uchar *seen = calloc(BATCH_PRODUCERS * BATCH_ITEMS, sizeof *seen);
  bworker_t w[BATCH_PRODUCERS + 2];
  pthread_t t[BATCH_PRODUCERS + 2];
  for (int k = 0; k < BATCH_PRODUCERS + 2; k++) {
    w[k] = (bworker_t){d, k, seen, 0, 0};
    t[k] = test_spawn(k < BATCH_PRODUCERS ? bproduce : bconsume, &w[k]);
  }
  for (int k = 0; k < BATCH_PRODUCERS; k++) test_join(t[k]);
  tn_deque_close(d);
  long got = 0, wrong = 0;
  for (int k = BATCH_PRODUCERS; k < BATCH_PRODUCERS + 2; k++) {
    test_join(t[k]);
    got += w[k].got;
  }
  for (int k = 0; k < BATCH_PRODUCERS + 2; k++) CHECK_RC(w[k].err, TN_OK);
  for (long v = 0; v < BATCH_PRODUCERS * BATCH_ITEMS; v++) wrong += seen[v] != 1;
  CHECK_INT(got, BATCH_PRODUCERS * BATCH_ITEMS);
  CHECK_INT(wrong, 0);
  free(seen);
  tn_object_release(TN_OBJECT(d));
}
