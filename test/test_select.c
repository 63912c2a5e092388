/*
** test_select.c - tn_deque_select over in-process deques: the first deque
** with a value, fairness, waiting on all at once, closed deques, the
** callback gate, cancellation, exactly once under threads, bad input.
*/
#include <sched.h>
#include <stdlib.h>

#include "internal.h"
#include "test.h"

static tn_deque_t *deque(size_t hint) {
  tn_deque_t *d = NULL;
  CHECK_RC(tn_deque_new(hint, &d), TN_OK);
  return d;
}

static void push(tn_deque_t *d, long v) {
  CHECK_RC(tn_deque_push_back(d, blob_long(v), TN_FOREVER), TN_OK);
}

/* Select once with `timeout`: the value's long (or -1), its deque's index
** in *index, the code in *rc. */
static long sel(tn_deque_t **ds, size_t n, double timeout, size_t *index,
                int *rc) {
  tn_blob_t *b = NULL;
  *index = (size_t)-1;
  *rc = tn_deque_select(ds, n, index, &b, timeout);
  if (*rc != TN_OK) return -1;
  long v = b != NULL ? long_of(b) : 0;
  tn_blob_release(b);
  return v;
}

static void release_all(tn_deque_t **ds, size_t n) {
  for (size_t i = 0; i < n; i++) tn_object_release(TN_OBJECT(ds[i]));
}

TEST(select_first_ready, "select pops the front of the one deque that has a "
                         "value and names it") {
  tn_deque_t *ds[3] = {deque(TN_UNBOUNDED), deque(TN_UNBOUNDED),
                       deque(TN_UNBOUNDED)};
  push(ds[2], 7);
  push(ds[2], 8);
  size_t i;
  int rc;
  CHECK_INT(sel(ds, 3, 0, &i, &rc), 7);
  CHECK_RC(rc, TN_OK);
  CHECK_INT(i, 2);
  CHECK_INT(sel(ds, 3, TN_TRY, &i, &rc), 8);
  CHECK_INT(i, 2);
  CHECK_INT(tn_deque_size(ds[2]), 0);
  release_all(ds, 3);
}

TEST(select_fair, "two busy deques: consecutive selects take from each in "
                  "turn") {
  tn_deque_t *ds[2] = {deque(TN_UNBOUNDED), deque(TN_UNBOUNDED)};
  for (long v = 0; v < 100; v++) {
    push(ds[0], v);
    push(ds[1], 1000 + v);
  }
  int from[2] = {0, 0};
  long last[2] = {-1, 999};
  for (int k = 0; k < 100; k++) {
    size_t i;
    int rc;
    long v = sel(ds, 2, 0, &i, &rc);
    CHECK_RC(rc, TN_OK);
    if (rc != TN_OK || i > 1) break;
    from[i]++;
    CHECK(v == last[i] + 1); /* each deque's own order */
    last[i] = v;
  }
  CHECK(from[0] >= 45 && from[1] >= 45);
  CHECK_INT(from[0] + from[1], 100);
  release_all(ds, 2);
}

/* A producer that keeps a deque non-empty until told to stop. */
typedef struct flood {
  tn_deque_t *d;
  atomic_int stop;
  long pushed;
} flood_t;

static void *flood_main(void *p) {
  flood_t *f = p;
  while (!atomic_load(&f->stop)) {
    if (tn_deque_size(f->d) < 64) {
      if (tn_deque_push_back(f->d, blob_long(-5), TN_FOREVER) != TN_OK) break;
      f->pushed++;
    } else {
      sched_yield();
    }
  }
  return NULL;
}

TEST(select_no_starvation, "a deque that is never empty does not starve "
                           "the second one") {
  tn_deque_t *ds[2] = {deque(TN_UNBOUNDED), deque(TN_UNBOUNDED)};
  flood_t f = {ds[0], 0, 0};
  for (int k = 0; k < 64; k++) push(ds[0], -5);
  pthread_t t = test_spawn(flood_main, &f);
  for (long v = 1; v <= 10; v++) push(ds[1], v);
  long got = 0, next = 1;
  for (int k = 0; k < 40 && next <= 10; k++) {
    size_t i;
    int rc;
    long v = sel(ds, 2, 5, &i, &rc);
    CHECK_RC(rc, TN_OK);
    if (rc == TN_OK && i == 1) {
      CHECK_INT(v, next);
      next++;
      got++;
    }
  }
  atomic_store(&f.stop, 1);
  test_join(t);
  CHECK_INT(got, 10); /* all of them within 40 selects */
  release_all(ds, 2);
}

/* A thread that selects once and records what it got. */
typedef struct selector {
  tn_deque_t **ds;
  size_t n;
  double timeout;
  tn_cancel_t *token;
  atomic_int started;
  int rc;
  size_t index;
  long value;
  double took;
} selector_t;

static void *select_main(void *p) {
  selector_t *s = p;
  if (s->token != NULL) tn_cancel_enter(s->token);
  atomic_store(&s->started, 1);
  double t0 = test_now();
  s->value = sel(s->ds, s->n, s->timeout, &s->index, &s->rc);
  s->took = test_now() - t0;
  if (s->token != NULL) tn_cancel_enter(NULL);
  return NULL;
}

static pthread_t start_selector(selector_t *s) {
  atomic_init(&s->started, 0);
  pthread_t t = test_spawn(select_main, s);
  while (!atomic_load(&s->started)) tn_sleep(0.001);
  tn_sleep(0.05); /* asleep by now */
  return t;
}

TEST(select_waits_on_all, "a select on empty deques takes the first value "
                          "pushed into any of them") {
  tn_deque_t *ds[3] = {deque(TN_UNBOUNDED), deque(4), deque(TN_UNBOUNDED)};
  for (size_t which = 0; which < 3; which++) {
    selector_t s = {ds, 3, 30, NULL, 0, 1, 0, 0, 0};
    pthread_t t = start_selector(&s);
    push(ds[which], 40 + (long)which);
    test_join(t);
    CHECK_RC(s.rc, TN_OK);
    CHECK_INT(s.index, which);
    CHECK_INT(s.value, 40 + (long)which);
    CHECK(s.took < 20); /* woken by the push, not by the timeout */
  }
  release_all(ds, 3);
}

TEST(select_timeouts, "nothing to take: TN_TRY, 0 and a timeout give up, "
                      "taking nothing") {
  tn_deque_t *ds[2] = {deque(TN_UNBOUNDED), deque(TN_UNBOUNDED)};
  size_t i;
  int rc;
  sel(ds, 2, TN_TRY, &i, &rc);
  CHECK_RC(rc, TN_EAGAIN);
  sel(ds, 2, 0, &i, &rc);
  CHECK_RC(rc, TN_ETIMEDOUT);
  double t0 = test_now();
  sel(ds, 2, 0.05, &i, &rc);
  CHECK_RC(rc, TN_ETIMEDOUT);
  CHECK(test_now() - t0 >= 0.045);
  /* Nothing is left registered: a later push takes the fast path, a pop
  ** sees it. */
  push(ds[1], 3);
  CHECK_INT(sel(ds, 2, 0, &i, &rc), 3);
  release_all(ds, 2);
}

TEST(select_closed, "closed and drained deques are skipped; when all are, "
                    "TN_ECLOSED, also for a select waiting then") {
  tn_deque_t *ds[2] = {deque(TN_UNBOUNDED), deque(TN_UNBOUNDED)};
  push(ds[0], 1);
  tn_deque_close(ds[0]);
  size_t i;
  int rc;
  CHECK_INT(sel(ds, 2, 0, &i, &rc), 1); /* closed, not drained yet */
  CHECK_INT(i, 0);
  sel(ds, 2, 0, &i, &rc);
  CHECK_RC(rc, TN_ETIMEDOUT); /* the other is open and empty */
  /* A select waiting on the open one gets its value... */
  selector_t s = {ds, 2, 30, NULL, 0, 1, 0, 0, 0};
  pthread_t t = start_selector(&s);
  push(ds[1], 2);
  test_join(t);
  CHECK_RC(s.rc, TN_OK);
  CHECK_INT(s.index, 1);
  CHECK_INT(s.value, 2);
  /* ...and TN_ECLOSED when it closes too. */
  selector_t s2 = {ds, 2, 30, NULL, 0, 1, 0, 0, 0};
  t = start_selector(&s2);
  tn_deque_close(ds[1]);
  test_join(t);
  CHECK_RC(s2.rc, TN_ECLOSED);
  CHECK(s2.took < 20);
  sel(ds, 2, TN_FOREVER, &i, &rc);
  CHECK_RC(rc, TN_ECLOSED);
  sel(ds, 2, TN_TRY, &i, &rc);
  CHECK_RC(rc, TN_ECLOSED);
  release_all(ds, 2);
}

/* Hold `d`'s write callback lock until told, from another thread. */
typedef struct holder {
  tn_deque_t *d;
  atomic_int held, release;
} holder_t;

static void *hold_write(void *p) {
  holder_t *h = p;
  CHECK_RC(tn_object_write_lock(TN_OBJECT(h->d), TN_FOREVER), TN_OK);
  atomic_store(&h->held, 1);
  while (!atomic_load(&h->release)) tn_sleep(0.001);
  tn_object_write_unlock(TN_OBJECT(h->d));
  return NULL;
}

TEST(select_gate, "a value held off by another thread's write callback is "
                  "taken as soon as the callback ends") {
  tn_deque_t *ds[2] = {deque(TN_UNBOUNDED), deque(TN_UNBOUNDED)};
  push(ds[0], 9);
  holder_t h = {ds[0], 0, 0};
  pthread_t th = test_spawn(hold_write, &h);
  while (!atomic_load(&h.held)) tn_sleep(0.001);
  size_t i;
  int rc;
  sel(ds, 2, 0, &i, &rc);
  CHECK_RC(rc, TN_ETIMEDOUT); /* gated: not taken */
  selector_t s = {ds, 2, 30, NULL, 0, 1, 0, 0, 0};
  pthread_t t = start_selector(&s);
  atomic_store(&h.release, 1);
  test_join(th);
  test_join(t);
  CHECK_RC(s.rc, TN_OK);
  CHECK_INT(s.index, 0);
  CHECK_INT(s.value, 9);
  CHECK(s.took < 20); /* woken by the gate opening, not the timeout */
  release_all(ds, 2);
}

TEST(select_cancel, "a cancel request ends a waiting select with "
                    "TN_ECANCELED, taking nothing") {
  tn_deque_t *ds[2] = {deque(TN_UNBOUNDED), deque(TN_UNBOUNDED)};
  tn_cancel_t *token;
  CHECK_RC(tn_cancel_new(&token), TN_OK);
  selector_t s = {ds, 2, TN_FOREVER, token, 0, 1, 0, 0, 0};
  pthread_t t = start_selector(&s);
  tn_cancel_request(token);
  test_join(t);
  CHECK_RC(s.rc, TN_ECANCELED);
  tn_cancel_free(token);
  push(ds[0], 1); /* unregistered: still two working deques */
  size_t i;
  int rc;
  CHECK_INT(sel(ds, 2, 0, &i, &rc), 1);
  CHECK_INT(tn_deque_size(ds[0]) + tn_deque_size(ds[1]), 0);
  release_all(ds, 2);
}

TEST(select_bad_input, "no deques, a NULL deque: TN_EINVAL") {
  tn_deque_t *ds[2] = {deque(TN_UNBOUNDED), NULL};
  size_t i;
  tn_blob_t *b;
  CHECK_RC(tn_deque_select(ds, 0, &i, &b, 0), TN_EINVAL);
  CHECK_RC(tn_deque_select(NULL, 1, &i, &b, 0), TN_EINVAL);
  CHECK_RC(tn_deque_select(ds, 2, &i, &b, 0), TN_EINVAL);
  tn_object_release(TN_OBJECT(ds[0]));
}

TEST(select_many_deques, "a select over 40 deques (watch nodes on the heap) "
                         "is woken by the last one") {
  enum { N = 40 };
  tn_deque_t *ds[N];
  for (int k = 0; k < N; k++) ds[k] = deque(TN_UNBOUNDED);
  selector_t s = {ds, N, 30, NULL, 0, 1, 0, 0, 0};
  pthread_t t = start_selector(&s);
  push(ds[N - 1], 77);
  test_join(t);
  CHECK_RC(s.rc, TN_OK);
  CHECK_INT(s.index, N - 1);
  CHECK_INT(s.value, 77);
  release_all(ds, N);
}

/* ---- exactly once under threads ------------------------------------------ */

enum { SEL_ITEMS = 20000 };

typedef struct sel_worker {
  tn_deque_t **ds;
  int id;
  atomic_uchar *seen;
  long got;
  int err;
} sel_worker_t;

static void *sel_produce(void *p) {
  sel_worker_t *w = p;
  for (long k = 0; k < SEL_ITEMS; k++) {
    tn_blob_t *b = blob_long(w->id * SEL_ITEMS + k);
    int rc = tn_deque_push_back(w->ds[w->id], b, TN_FOREVER);
    if (rc != TN_OK) {
      tn_blob_release(b);
      w->err = rc;
      break;
    }
  }
  tn_deque_close(w->ds[w->id]);
  return NULL;
}

static void *sel_consume(void *p) {
  sel_worker_t *w = p;
  long last[2] = {-1, -1};
  for (;;) {
    size_t i;
    tn_blob_t *b;
    int rc = tn_deque_select(w->ds, 2, &i, &b, TN_FOREVER);
    if (rc == TN_ECLOSED) return NULL;
    if (rc != TN_OK) {
      w->err = rc;
      return NULL;
    }
    long v = long_of(b);
    tn_blob_release(b);
    if (v < 0 || v >= 2 * SEL_ITEMS || v / SEL_ITEMS != (long)i ||
        v <= last[i]) { /* a deque's values come in its order */
      w->err = TN_EPROTO;
      return NULL;
    }
    last[i] = v;
    atomic_fetch_add(&w->seen[v], 1);
    w->got++;
  }
}

TEST(select_threads_exactly_once, "2 producers into their own deques, 2 "
                                  "consumers selecting over both: every "
                                  "item once") {
  tn_deque_t *ds[2] = {deque(16), deque(16)};
  atomic_uchar *seen = calloc(2 * SEL_ITEMS, sizeof *seen);
  sel_worker_t w[4];
  pthread_t t[4];
  for (int k = 0; k < 4; k++) {
    w[k] = (sel_worker_t){ds, k % 2, seen, 0, 0};
    t[k] = test_spawn(k < 2 ? sel_produce : sel_consume, &w[k]);
  }
  for (int k = 0; k < 4; k++) test_join(t[k]);
  long got = 0, wrong = 0;
  for (int k = 0; k < 4; k++) {
    CHECK_RC(w[k].err, TN_OK);
    got += w[k].got;
  }
  for (long v = 0; v < 2 * SEL_ITEMS; v++) wrong += seen[v] != 1;
  CHECK_INT(got, 2 * SEL_ITEMS);
  CHECK_INT(wrong, 0);
  free(seen);
  release_all(ds, 2);
}
