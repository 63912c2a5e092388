/*
** test_pqueue.c - the priority queue: lowest priority first and FIFO among
** equals, the size hint, timeouts, close, unpop, every item exactly once
** under threads, allocation failure and the cycle collector.
*/
#include <math.h>
#include <stdlib.h>

#include "internal.h"
#include "test.h"

static tn_pqueue_t *pq(size_t hint) {
  tn_pqueue_t *q = NULL;
  CHECK_RC(tn_pqueue_new(hint, &q), TN_OK);
  return q;
}

/* Pop one value at once: its long, and its priority in *prio. */
static long pop_long(tn_pqueue_t *q, double *prio) {
  tn_blob_t *b = NULL;
  int rc = tn_pqueue_pop(q, &b, prio, 0);
  CHECK_RC(rc, TN_OK);
  if (rc != TN_OK) return -1;
  long v = long_of(b);
  tn_blob_release(b);
  return v;
}

TEST(pqueue_order, "pops take the lowest priority first, and the first "
                   "pushed among equal priorities") {
  tn_pqueue_t *q = pq(TN_UNBOUNDED);
  CHECK_INT(tn_object_type(TN_OBJECT(q)), TN_TYPE_PQUEUE);
  CHECK(!tn_object_is_remote(TN_OBJECT(q)));
  /* value = 10 * rank in the expected order + 0 */
  const double prio[] = {5, 1, 5, -2.5, INFINITY, 1, -INFINITY, 5, 0};
  const long val[] = {50, 30, 60, 10, 80, 40, 0, 70, 20};
  for (int i = 0; i < 9; i++)
    CHECK_RC(tn_pqueue_push(q, prio[i], blob_long(val[i]), TN_FOREVER), TN_OK);
  CHECK_INT(tn_pqueue_size(q), 9);
  const double want_prio[] = {-INFINITY, -2.5, 0, 1, 1, 5, 5, 5, INFINITY};
  for (int i = 0; i < 9; i++) {
    double p = NAN;
    CHECK_INT(pop_long(q, &p), 10 * i);
    CHECK(p == want_prio[i]);
  }
  CHECK_INT(tn_pqueue_size(q), 0);
  tn_object_release(TN_OBJECT(q));
}

TEST(pqueue_bad_input, "a NaN priority and a zero hint are refused, nothing "
                       "changed") {
  tn_pqueue_t *q;
  CHECK_RC(tn_pqueue_new(0, &q), TN_EINVAL);
  q = pq(4);
  tn_blob_t *b = blob_long(1);
  CHECK_RC(tn_pqueue_push(q, NAN, b, TN_FOREVER), TN_EINVAL);
  CHECK_RC(tn_pqueue_unpop(q, NAN, b), TN_EINVAL);
  CHECK_INT(tn_pqueue_size(q), 0);
  CHECK_RC(tn_pqueue_push(q, 1, b, TN_FOREVER), TN_OK); /* still ours */
  CHECK_INT(tn_pqueue_size(q), 1);
  CHECK_INT(tn_pqueue_size_hint(q), 4);
  tn_object_release(TN_OBJECT(q));
}

TEST(pqueue_nil_values, "a NULL blob is a value like any other") {
  tn_pqueue_t *q = pq(TN_UNBOUNDED);
  CHECK_RC(tn_pqueue_push(q, 2, NULL, TN_FOREVER), TN_OK);
  CHECK_RC(tn_pqueue_push(q, 1, blob_long(7), TN_FOREVER), TN_OK);
  CHECK_INT(pop_long(q, NULL), 7);
  tn_blob_t *sentinel = blob_long(0), *b = sentinel; /* the pop sets it */
  double p = 0;
  CHECK_RC(tn_pqueue_pop(q, &b, &p, 0), TN_OK);
  CHECK(b == NULL);
  CHECK(p == 2);
  tn_blob_release(sentinel);
  tn_object_release(TN_OBJECT(q));
}

TEST(pqueue_try_and_timeout, "an empty pop and a full push give up as "
                             "TN_TRY, 0 and a timeout say, changing nothing") {
  tn_pqueue_t *q = pq(2);
  tn_blob_t *b = NULL;
  CHECK_RC(tn_pqueue_pop(q, &b, NULL, TN_TRY), TN_EAGAIN);
  CHECK_RC(tn_pqueue_pop(q, &b, NULL, 0), TN_ETIMEDOUT);
  double t0 = test_now();
  CHECK_RC(tn_pqueue_pop(q, &b, NULL, 0.05), TN_ETIMEDOUT);
  CHECK(test_now() - t0 >= 0.045);
  CHECK_RC(tn_pqueue_push(q, 1, blob_long(1), TN_TRY), TN_OK);
  CHECK_RC(tn_pqueue_push(q, 2, blob_long(2), 0), TN_OK);
  b = blob_long(3);
  CHECK_RC(tn_pqueue_push(q, 0, b, TN_TRY), TN_EAGAIN);
  CHECK_RC(tn_pqueue_push(q, 0, b, 0), TN_ETIMEDOUT);
  t0 = test_now();
  CHECK_RC(tn_pqueue_push(q, 0, b, 0.05), TN_ETIMEDOUT);
  CHECK(test_now() - t0 >= 0.045);
  tn_blob_release(b);
  CHECK_INT(tn_pqueue_size(q), 2);
  CHECK_INT(pop_long(q, NULL), 1);
  CHECK_INT(pop_long(q, NULL), 2);
  tn_object_release(TN_OBJECT(q));
}

/* A thread that does one blocking push or pop and records its code. */
typedef struct waiter {
  tn_pqueue_t *q;
  bool pop;
  double timeout;
  int rc;
  long got;
  atomic_int started;
} waiter_t;

static void *wait_one(void *p) {
  waiter_t *w = p;
  atomic_store(&w->started, 1);
  if (w->pop) {
    tn_blob_t *b = NULL;
    w->rc = tn_pqueue_pop(w->q, &b, NULL, w->timeout);
    if (w->rc == TN_OK) {
      w->got = long_of(b);
      tn_blob_release(b);
    }
  } else {
    tn_blob_t *b = blob_long(99);
    w->rc = tn_pqueue_push(w->q, 0, b, w->timeout);
    if (w->rc != TN_OK) tn_blob_release(b);
  }
  return NULL;
}

TEST(pqueue_wakeups, "a waiting pop takes the next push, a waiting push "
                     "the next free slot") {
  tn_pqueue_t *q = pq(1);
  waiter_t w = {q, true, TN_FOREVER, 1, 0, 0};
  pthread_t t = test_spawn(wait_one, &w);
  while (!atomic_load(&w.started)) tn_sleep(0.001);
  tn_sleep(0.02);
  CHECK_RC(tn_pqueue_push(q, 3, blob_long(42), TN_FOREVER), TN_OK);
  test_join(t);
  CHECK_RC(w.rc, TN_OK);
  CHECK_INT(w.got, 42);

  CHECK_RC(tn_pqueue_push(q, 1, blob_long(1), TN_FOREVER), TN_OK);
  waiter_t p = {q, false, TN_FOREVER, 1, 0, 0};
  t = test_spawn(wait_one, &p);
  while (!atomic_load(&p.started)) tn_sleep(0.001);
  tn_sleep(0.02);
  CHECK_INT(tn_pqueue_size(q), 1); /* still waiting: full */
  CHECK_INT(pop_long(q, NULL), 1);
  test_join(t);
  CHECK_RC(p.rc, TN_OK);
  CHECK_INT(pop_long(q, NULL), 99);
  tn_object_release(TN_OBJECT(q));
}

TEST(pqueue_close, "close wakes every waiter: pops drain then get "
                   "TN_ECLOSED, pushes get TN_ECLOSED") {
  tn_pqueue_t *q = pq(1);
  waiter_t w[3] = {{q, true, TN_FOREVER, 1, 0, 0},
                   {q, true, TN_FOREVER, 1, 0, 0},
                   {q, true, 10, 1, 0, 0}};
  pthread_t t[3];
  for (int i = 0; i < 3; i++) t[i] = test_spawn(wait_one, &w[i]);
  for (int i = 0; i < 3; i++)
    while (!atomic_load(&w[i].started)) tn_sleep(0.001);
  tn_sleep(0.02);
  double t0 = test_now();
  CHECK_RC(tn_pqueue_close(q), TN_OK);
  for (int i = 0; i < 3; i++) {
    test_join(t[i]);
    CHECK_RC(w[i].rc, TN_ECLOSED);
  }
  CHECK(test_now() - t0 < 5);
  CHECK(tn_pqueue_is_closed(q));
  CHECK_RC(tn_pqueue_close(q), TN_OK); /* idempotent */
  tn_blob_t *b = blob_long(1);
  CHECK_RC(tn_pqueue_push(q, 1, b, TN_FOREVER), TN_ECLOSED);
  tn_blob_release(b);
  tn_object_release(TN_OBJECT(q));

  /* A full queue: a waiting push wakes with TN_ECLOSED; the values stay
  ** and drain. */
  q = pq(1);
  CHECK_RC(tn_pqueue_push(q, 1, blob_long(5), TN_FOREVER), TN_OK);
  waiter_t p = {q, false, TN_FOREVER, 1, 0, 0};
  pthread_t tp = test_spawn(wait_one, &p);
  while (!atomic_load(&p.started)) tn_sleep(0.001);
  tn_sleep(0.02);
  CHECK_RC(tn_pqueue_close(q), TN_OK);
  test_join(tp);
  CHECK_RC(p.rc, TN_ECLOSED);
  CHECK_INT(pop_long(q, NULL), 5);
  b = NULL;
  CHECK_RC(tn_pqueue_pop(q, &b, NULL, TN_FOREVER), TN_ECLOSED);
  CHECK_RC(tn_pqueue_pop(q, &b, NULL, TN_TRY), TN_ECLOSED);
  tn_object_release(TN_OBJECT(q));
}

TEST(pqueue_unpop, "a value put back goes ahead of its equals, past the "
                   "hint and the close") {
  tn_pqueue_t *q = pq(2);
  CHECK_RC(tn_pqueue_push(q, 1, blob_long(1), 0), TN_OK);
  CHECK_RC(tn_pqueue_push(q, 1, blob_long(2), 0), TN_OK);
  tn_blob_t *b;
  double p;
  CHECK_RC(tn_pqueue_pop(q, &b, &p, 0), TN_OK);
  CHECK_RC(tn_pqueue_close(q), TN_OK);
  CHECK_RC(tn_pqueue_unpop(q, p, b), TN_OK);
  CHECK_RC(tn_pqueue_unpop(q, 0.5, blob_long(0)), TN_OK); /* past the hint */
  CHECK_INT(tn_pqueue_size(q), 3);
  CHECK_INT(pop_long(q, NULL), 0);
  CHECK_INT(pop_long(q, NULL), 1);
  CHECK_INT(pop_long(q, NULL), 2);
  tn_object_release(TN_OBJECT(q));
}

/* ---- threads ------------------------------------------------------------- */

enum { PQ_PRODUCERS = 4, PQ_CONSUMERS = 4, PQ_ITEMS = 20000 };

/* Item i of producer k: the long k * PQ_ITEMS + i, priority (i * 7) % 13. */
static double prio_of(long v) { return (double)(((v % PQ_ITEMS) * 7) % 13); }

typedef struct pq_worker {
  tn_pqueue_t *q;
  int id;
  atomic_uchar *seen; /* per item: times popped */
  long popped;
  int err;
} pq_worker_t;

static void *pq_produce(void *p) {
  pq_worker_t *w = p;
  for (long i = 0; i < PQ_ITEMS; i++) {
    long v = (long)w->id * PQ_ITEMS + i;
    tn_blob_t *b = blob_long(v);
    int rc = tn_pqueue_push(w->q, prio_of(v), b, TN_FOREVER);
    if (rc != TN_OK) {
      tn_blob_release(b);
      w->err = rc;
      return NULL;
    }
  }
  return NULL;
}

static void *pq_consume(void *p) {
  pq_worker_t *w = p;
  for (;;) {
    tn_blob_t *b;
    double prio;
    int rc = tn_pqueue_pop(w->q, &b, &prio, TN_FOREVER);
    if (rc == TN_ECLOSED) return NULL;
    if (rc != TN_OK) {
      w->err = rc;
      return NULL;
    }
    long v = long_of(b);
    tn_blob_release(b);
    if (v < 0 || v >= PQ_PRODUCERS * PQ_ITEMS || prio != prio_of(v)) {
      w->err = TN_EPROTO;
      return NULL;
    }
    atomic_fetch_add(&w->seen[v], 1);
    w->popped++;
  }
}

TEST(pqueue_threads_exactly_once, "4 producers and 4 consumers through a "
                                  "bounded queue: every item popped once") {
  tn_pqueue_t *q = pq(64);
  atomic_uchar *seen = calloc(PQ_PRODUCERS * PQ_ITEMS, sizeof *seen);
  pq_worker_t w[PQ_PRODUCERS + PQ_CONSUMERS];
  pthread_t t[PQ_PRODUCERS + PQ_CONSUMERS];
  for (int i = 0; i < PQ_PRODUCERS + PQ_CONSUMERS; i++) {
    w[i] = (pq_worker_t){q, i, seen, 0, 0};
    t[i] = test_spawn(i < PQ_PRODUCERS ? pq_produce : pq_consume, &w[i]);
  }
  for (int i = 0; i < PQ_PRODUCERS; i++) test_join(t[i]);
  CHECK_RC(tn_pqueue_close(q), TN_OK);
  long popped = 0;
  for (int i = PQ_PRODUCERS; i < PQ_PRODUCERS + PQ_CONSUMERS; i++) {
    test_join(t[i]);
    popped += w[i].popped;
  }
  for (int i = 0; i < PQ_PRODUCERS + PQ_CONSUMERS; i++) CHECK_RC(w[i].err, TN_OK);
  CHECK_INT(popped, PQ_PRODUCERS * PQ_ITEMS);
  long wrong = 0;
  for (long v = 0; v < PQ_PRODUCERS * PQ_ITEMS; v++) wrong += seen[v] != 1;
  CHECK_INT(wrong, 0);
  CHECK_INT(tn_pqueue_size(q), 0);
  free(seen);
  tn_object_release(TN_OBJECT(q));
}

TEST(pqueue_threads_in_order, "items pushed by 4 threads at once pop in "
                              "priority order, each thread's equals FIFO") {
  tn_pqueue_t *q = pq(TN_UNBOUNDED);
  pq_worker_t w[PQ_PRODUCERS];
  pthread_t t[PQ_PRODUCERS];
  for (int i = 0; i < PQ_PRODUCERS; i++) {
    w[i] = (pq_worker_t){q, i, NULL, 0, 0};
    t[i] = test_spawn(pq_produce, &w[i]);
  }
  for (int i = 0; i < PQ_PRODUCERS; i++) {
    test_join(t[i]);
    CHECK_RC(w[i].err, TN_OK);
  }
  CHECK_INT(tn_pqueue_size(q), PQ_PRODUCERS * PQ_ITEMS);
  double last = -INFINITY;
  long last_of[PQ_PRODUCERS]; /* per producer: last value at this priority */
  long bad_order = 0, bad_fifo = 0, n = 0;
  for (int k = 0; k < PQ_PRODUCERS; k++) last_of[k] = -1;
  for (;;) {
    tn_blob_t *b;
    double p;
    if (tn_pqueue_pop(q, &b, &p, 0) != TN_OK) break;
    long v = long_of(b);
    tn_blob_release(b);
    n++;
    if (p < last) bad_order++;
    if (p != last)
      for (int k = 0; k < PQ_PRODUCERS; k++) last_of[k] = -1;
    int k = (int)(v / PQ_ITEMS);
    if (v <= last_of[k]) bad_fifo++;
    last_of[k] = v;
    last = p;
  }
  CHECK_INT(n, PQ_PRODUCERS * PQ_ITEMS);
  CHECK_INT(bad_order, 0);
  CHECK_INT(bad_fifo, 0);
  tn_object_release(TN_OBJECT(q));
}

/* ---- failures and the collector ----------------------------------------- */

TEST(pqueue_enomem, "a push that cannot grow the heap fails with TN_ENOMEM "
                    "and leaves the queue as it was") {
  tn_pqueue_t *q = pq(TN_UNBOUNDED);
  for (long i = 0; i < 8; i++)
    CHECK_RC(tn_pqueue_push(q, (double)(8 - i), blob_long(i), 0), TN_OK);
  tn_blob_t *b = blob_long(100);
  tn_fault_alloc(1, 1);
  int rc = tn_pqueue_push(q, 0, b, 0); /* the 9th: the heap doubles */
  tn_fault_alloc(0, 0);
  CHECK_RC(rc, TN_ENOMEM);
  CHECK_INT(tn_pqueue_size(q), 8);
  for (long i = 7; i >= 0; i--) CHECK_INT(pop_long(q, NULL), i);
  CHECK_RC(tn_pqueue_push(q, 0, b, 0), TN_OK);
  CHECK_INT(pop_long(q, NULL), 100);
  tn_object_release(TN_OBJECT(q));
}

TEST(pqueue_collect, "a priority queue holding itself is freed by "
                     "tn_collect") {
  size_t n;
  while (tn_collect(&n) == TN_OK && n > 0) {
  }
  size_t before = tn_gc_registered();
  tn_pqueue_t *q = pq(TN_UNBOUNDED);
  tn_object_t *self = TN_OBJECT(q);
  CHECK_RC(tn_pqueue_push(q, 1, tn_blob_new("r", 1, &self, 1), 0), TN_OK);
  tn_object_release(self);
  CHECK_INT(tn_gc_registered(), before + 1);
  CHECK_RC(tn_collect(&n), TN_OK);
  CHECK_INT(n, 1);
  CHECK_INT(tn_gc_registered(), before);
}

/* A pop (or a push into a full queue) in a thread whose cancel token is
** requested while it waits. */
typedef struct canceled {
  tn_pqueue_t *q;
  bool push;
  tn_cancel_t *token;
  atomic_int started;
  int rc;
} canceled_t;

static void *cancel_main(void *p) {
  canceled_t *c = p;
  tn_cancel_enter(c->token);
  atomic_store(&c->started, 1);
  if (c->push) {
    tn_blob_t *b = blob_long(5);
    c->rc = tn_pqueue_push(c->q, 0, b, TN_FOREVER);
    if (c->rc != TN_OK) tn_blob_release(b);
  } else {
    tn_blob_t *b = NULL;
    c->rc = tn_pqueue_pop(c->q, &b, NULL, TN_FOREVER);
    if (c->rc == TN_OK) tn_blob_release(b);
  }
  tn_cancel_enter(NULL);
  return NULL;
}

TEST(pqueue_cancel, "a cancel request ends a waiting pop and a waiting push "
                    "with TN_ECANCELED, the queue as it was") {
  for (int push = 0; push <= 1; push++) {
    tn_pqueue_t *q = pq(1);
    if (push) CHECK_RC(tn_pqueue_push(q, 1, blob_long(1), 0), TN_OK);
    canceled_t c = {q, push != 0, NULL, 0, 1};
    CHECK_RC(tn_cancel_new(&c.token), TN_OK);
    pthread_t t = test_spawn(cancel_main, &c);
    while (!atomic_load(&c.started)) tn_sleep(0.001);
    tn_sleep(0.05);
    tn_cancel_request(c.token);
    test_join(t);
    CHECK_RC(c.rc, TN_ECANCELED);
    tn_cancel_free(c.token);
    CHECK_INT(tn_pqueue_size(q), push ? 1 : 0);
    if (push) CHECK_INT(pop_long(q, NULL), 1);
    tn_object_release(TN_OBJECT(q));
  }
}
