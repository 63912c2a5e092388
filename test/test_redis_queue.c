/*
** test_redis_queue.c - the cluster forms of issue 15's queue parts: the
** priority queue (a sorted set), Vector batches (push_many, pop_many) and
** select over cluster vectors (one script, one BLPOP over their token
** lists). Waits must be woken by tokens, never by polling: the tests that
** say so count the scripts the server ran meanwhile (INFO commandstats).
**
** Needs a server: TUNNEL_REDIS_URL (scripts/with-redis.sh). Without it
** every test prints a "# skip" line and passes.
*/
#include <hiredis/hiredis.h>
#include <math.h>
#include <stdlib.h>
#include <unistd.h>

#include "test.h"

/* Scripts the server has run so far (EVALSHA and EVAL calls). */
static long scripts_run(void) {
  const char *url = getenv("TUNNEL_REDIS_URL");
  const char *port = strrchr(url, ':');
  redisContext *r = redisConnect("127.0.0.1", port ? atoi(port + 1) : 6379);
  long n = -1;
  if (r != NULL && !r->err) {
    redisReply *x = redisCommand(r, "INFO commandstats");
    if (x != NULL && x->type == REDIS_REPLY_STRING) {
      n = 0;
      for (const char *k = x->str; (k = strstr(k, "cmdstat_eval")) != NULL;
           k++) {
        const char *c = strstr(k, "calls=");
        if (c != NULL) n += atol(c + 6);
      }
    }
    if (x != NULL) freeReplyObject(x);
  }
  if (r != NULL) redisFree(r);
  return n;
}

static tn_deque_t *vec(tn_cluster_t *c, size_t hint) {
  tn_deque_t *d = NULL;
  CHECK_RC(tn_cluster_deque(c, test_fresh("qvec"), hint, &d), TN_OK);
  return d;
}

static long pop_long(tn_deque_t *d) {
  tn_blob_t *b = NULL;
  int rc = tn_deque_pop_front(d, &b, 0);
  CHECK_RC(rc, TN_OK);
  long v = rc == TN_OK && b != NULL ? long_of(b) : -1;
  tn_blob_release(b);
  return v;
}

/* ---- priority queue -------------------------------------------------------- */

TEST(redis_pqueue_order, "a cluster priority queue pops the lowest priority "
                         "first, FIFO among equals, unpop ahead of them") {
  tn_cluster_t *c = test_cluster("tunnel-ctest:");
  if (c == NULL) return;
  tn_pqueue_t *q;
  CHECK_RC(tn_cluster_pqueue(c, test_fresh("pq"), 3, &q), TN_OK);
  CHECK(tn_object_is_remote(TN_OBJECT(q)));
  CHECK_INT(tn_object_type(TN_OBJECT(q)), TN_TYPE_PQUEUE);
  CHECK_INT(tn_pqueue_size_hint(q), 3);
  CHECK_RC(tn_pqueue_push(q, 2, blob_long(20), 0), TN_OK);
  CHECK_RC(tn_pqueue_push(q, -INFINITY, blob_long(0), 0), TN_OK);
  CHECK_RC(tn_pqueue_push(q, 2, blob_long(21), 0), TN_OK);
  tn_blob_t *b = blob_long(9);
  CHECK_RC(tn_pqueue_push(q, 1, b, TN_TRY), TN_EAGAIN); /* full */
  CHECK_RC(tn_pqueue_push(q, 1, b, 0.05), TN_ETIMEDOUT);
  CHECK_RC(tn_pqueue_push(q, NAN, b, 0), TN_EINVAL);
  tn_blob_release(b);
  CHECK_INT(tn_pqueue_size(q), 3);
  double p = 0;
  CHECK_RC(tn_pqueue_pop(q, &b, &p, 0), TN_OK);
  CHECK_INT(long_of(b), 0);
  CHECK(p == -INFINITY);
  tn_blob_release(b);
  CHECK_RC(tn_pqueue_pop(q, &b, &p, 0), TN_OK);
  CHECK_INT(long_of(b), 20);
  CHECK(p == 2);
  CHECK_RC(tn_pqueue_unpop(q, p, b), TN_OK); /* back, ahead of 21 */
  CHECK_RC(tn_pqueue_close(q), TN_OK);
  CHECK(tn_pqueue_is_closed(q));
  b = blob_long(5);
  CHECK_RC(tn_pqueue_push(q, 0, b, 0), TN_ECLOSED);
  tn_blob_release(b);
  CHECK_RC(tn_pqueue_pop(q, &b, NULL, 0), TN_OK);
  CHECK_INT(long_of(b), 20);
  tn_blob_release(b);
  CHECK_RC(tn_pqueue_pop(q, &b, NULL, 0), TN_OK);
  CHECK_INT(long_of(b), 21);
  tn_blob_release(b);
  CHECK_RC(tn_pqueue_pop(q, &b, NULL, TN_FOREVER), TN_ECLOSED);
  tn_object_release(TN_OBJECT(q));
}

enum { RPQ_ITEMS = 300 };

typedef struct rpq_worker {
  tn_pqueue_t *q;
  int id;
  atomic_uchar *seen;
  int err;
} rpq_worker_t;

static void *rpq_produce(void *p) {
  rpq_worker_t *w = p;
  for (long i = 0; i < RPQ_ITEMS && w->err == 0; i++) {
    long v = w->id * RPQ_ITEMS + i;
    tn_blob_t *b = blob_long(v);
    int rc = tn_pqueue_push(w->q, (double)(i % 5), b, TN_FOREVER);
    if (rc != TN_OK) {
      tn_blob_release(b);
      w->err = rc;
    }
  }
  return NULL;
}

static void *rpq_consume(void *p) {
  rpq_worker_t *w = p;
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
    if (v < 0 || v >= 2 * RPQ_ITEMS || prio != (double)((v % RPQ_ITEMS) % 5))
      w->err = TN_EPROTO;
    else
      atomic_fetch_add(&w->seen[v], 1);
  }
}

TEST(redis_pqueue_threads, "2 producers and 2 consumers of a bounded cluster "
                           "priority queue: every item popped once") {
  tn_cluster_t *c = test_cluster("tunnel-ctest:");
  if (c == NULL) return;
  tn_pqueue_t *q;
  CHECK_RC(tn_cluster_pqueue(c, test_fresh("pqt"), 8, &q), TN_OK);
  atomic_uchar *seen = calloc(2 * RPQ_ITEMS, 1);
  rpq_worker_t w[4];
  pthread_t t[4];
  for (int k = 0; k < 4; k++) {
    w[k] = (rpq_worker_t){q, k % 2, seen, 0};
    t[k] = test_spawn(k < 2 ? rpq_produce : rpq_consume, &w[k]);
  }
  test_join(t[0]);
  test_join(t[1]);
  CHECK_RC(tn_pqueue_close(q), TN_OK);
  test_join(t[2]);
  test_join(t[3]);
  long wrong = 0;
  for (int k = 0; k < 4; k++) CHECK_RC(w[k].err, TN_OK);
  for (long v = 0; v < 2 * RPQ_ITEMS; v++) wrong += seen[v] != 1;
  CHECK_INT(wrong, 0);
  free(seen);
  tn_object_release(TN_OBJECT(q));
}

/* ---- batches --------------------------------------------------------------- */

static tn_blob_t **batch(long first, size_t n) {
  tn_blob_t **b = malloc(n * sizeof *b);
  for (size_t i = 0; i < n; i++) b[i] = blob_long(first + (long)i);
  return b;
}

static void batch_free(tn_blob_t **b, size_t n) {
  for (size_t i = 0; i < n; i++) tn_blob_release(b[i]);
  free(b);
}

TEST(redis_batch_basics, "cluster push_many and pop_many: in order, all or "
                         "nothing, larger than the hint into an empty one") {
  tn_cluster_t *c = test_cluster("tunnel-ctest:");
  if (c == NULL) return;
  tn_deque_t *d = vec(c, 4);
  tn_blob_t **b = batch(0, 3);
  CHECK_RC(tn_deque_push_many(d, b, 3, 0), TN_OK);
  free(b);
  b = batch(10, 2);
  CHECK_RC(tn_deque_push_many(d, b, 2, TN_TRY), TN_EAGAIN);
  CHECK_RC(tn_deque_push_many(d, b, 2, 0.05), TN_ETIMEDOUT);
  CHECK_INT(tn_deque_size(d), 3);
  tn_blob_t **items;
  size_t n;
  CHECK_RC(tn_deque_pop_many(d, 2, &items, &n, 0), TN_OK);
  CHECK_INT(n, 2);
  CHECK_INT(long_of(items[0]), 0);
  CHECK_INT(long_of(items[1]), 1);
  tn_blob_array_free(items, n);
  CHECK_RC(tn_deque_push_many(d, b, 2, 0), TN_OK);
  free(b);
  CHECK_RC(tn_deque_pop_many(d, 10, &items, &n, 0), TN_OK);
  CHECK_INT(n, 3);
  CHECK_INT(long_of(items[0]), 2);
  CHECK_INT(long_of(items[2]), 11);
  tn_blob_array_free(items, n);
  CHECK_RC(tn_deque_pop_many(d, 10, &items, &n, 0), TN_ETIMEDOUT);
  CHECK_RC(tn_deque_pop_many(d, 0, &items, &n, 0), TN_EINVAL);
  b = batch(20, 6); /* more than the hint: an empty vector takes them */
  CHECK_RC(tn_deque_push_many(d, b, 6, 0), TN_OK);
  free(b);
  CHECK_INT(tn_deque_size(d), 6);
  tn_deque_close(d);
  b = batch(30, 1);
  CHECK_RC(tn_deque_push_many(d, b, 1, 0), TN_ECLOSED);
  CHECK_RC(tn_deque_push_many(d, b, 0, 0), TN_ECLOSED);
  batch_free(b, 1);
  CHECK_RC(tn_deque_pop_many(d, 100, &items, &n, TN_FOREVER), TN_OK);
  CHECK_INT(n, 6);
  tn_blob_array_free(items, n);
  CHECK_RC(tn_deque_pop_many(d, 100, &items, &n, TN_FOREVER), TN_ECLOSED);
  tn_object_release(TN_OBJECT(d));
}

typedef struct pusher {
  tn_deque_t *d;
  size_t k; /* 0: a single push */
  long first;
  atomic_int started;
  int rc;
  double took;
} pusher_t;

static void *push_main(void *p) {
  pusher_t *w = p;
  atomic_store(&w->started, 1);
  double t0 = test_now();
  if (w->k == 0) {
    tn_blob_t *b = blob_long(w->first);
    w->rc = tn_deque_push_back(w->d, b, 30);
    if (w->rc != TN_OK) tn_blob_release(b);
  } else {
    tn_blob_t **b = batch(w->first, w->k);
    w->rc = tn_deque_push_many(w->d, b, w->k, 30);
    if (w->rc == TN_OK)
      free(b);
    else
      batch_free(b, w->k);
  }
  w->took = test_now() - t0;
  return NULL;
}

TEST(redis_batch_wait, "a waiting cluster batch sleeps while there is room "
                       "for one value but not for it (no polling), lets a "
                       "new single push in, and gets in when it fits") {
  tn_cluster_t *c = test_cluster("tunnel-ctest:");
  if (c == NULL) return;
  tn_deque_t *d = vec(c, 3);
  tn_blob_t **b = batch(0, 3);
  CHECK_RC(tn_deque_push_many(d, b, 3, 0), TN_OK);
  free(b);
  pusher_t many = {d, 2, 100, 0, 1, 0}, one = {d, 0, 200, 0, 1, 0};
  pthread_t tm = test_spawn(push_main, &many);
  while (!atomic_load(&many.started)) tn_sleep(0.001);
  tn_sleep(0.1);
  CHECK_INT(pop_long(d), 0); /* room for one: not for the batch */
  long before = scripts_run();
  tn_sleep(0.5);
  long ran = scripts_run() - before;
  CHECK(ran >= 0 && ran < 10); /* asleep, not retrying */
  pthread_t to = test_spawn(push_main, &one);
  test_join(to);
  CHECK_RC(one.rc, TN_OK);
  CHECK(one.took < 4); /* it found the room at once */
  CHECK_INT(pop_long(d), 1);
  CHECK_INT(pop_long(d), 2); /* room for two now */
  test_join(tm);
  CHECK_RC(many.rc, TN_OK);
  CHECK_INT(pop_long(d), 200);
  CHECK_INT(pop_long(d), 100);
  CHECK_INT(pop_long(d), 101);
  tn_object_release(TN_OBJECT(d));
}

/* ---- select ---------------------------------------------------------------- */

typedef struct selector {
  tn_deque_t **ds;
  size_t n;
  atomic_int started;
  int rc;
  size_t index;
  long value;
  double took;
} selector_t;

static void *select_main(void *p) {
  selector_t *s = p;
  atomic_store(&s->started, 1);
  double t0 = test_now();
  tn_blob_t *b = NULL;
  s->rc = tn_deque_select(s->ds, s->n, &s->index, &b, 30);
  if (s->rc == TN_OK) s->value = long_of(b);
  tn_blob_release(b);
  s->took = test_now() - t0;
  return NULL;
}

TEST(redis_select, "select over cluster vectors: the first with a value, "
                   "in turn, woken by a push to any, closed ones skipped") {
  tn_cluster_t *c = test_cluster("tunnel-ctest:");
  if (c == NULL) return;
  tn_deque_t *ds[3] = {vec(c, TN_UNBOUNDED), vec(c, 2), vec(c, TN_UNBOUNDED)};
  size_t i = 9;
  tn_blob_t *b = NULL;
  CHECK_RC(tn_deque_select(ds, 3, &i, &b, TN_TRY), TN_EAGAIN);
  CHECK_RC(tn_deque_select(ds, 3, &i, &b, 0.05), TN_ETIMEDOUT);
  /* Fair: both busy, consecutive selects alternate. */
  for (long v = 0; v < 10; v++) {
    CHECK_RC(tn_deque_push_back(ds[0], blob_long(v), 0), TN_OK);
    CHECK_RC(tn_deque_push_back(ds[2], blob_long(100 + v), 0), TN_OK);
  }
  int from[3] = {0, 0, 0};
  for (int k = 0; k < 10; k++) {
    CHECK_RC(tn_deque_select(ds, 3, &i, &b, 0), TN_OK);
    if (i < 3) from[i]++;
    tn_blob_release(b);
  }
  CHECK(from[0] >= 3 && from[2] >= 3);
  CHECK_INT(from[1], 0);
  while (tn_deque_select(ds, 3, &i, &b, 0) == TN_OK) tn_blob_release(b);
  /* Woken by a push into the bounded one. */
  selector_t s = {ds, 3, 0, 1, 0, 0, 0};
  pthread_t t = test_spawn(select_main, &s);
  while (!atomic_load(&s.started)) tn_sleep(0.001);
  tn_sleep(0.1);
  CHECK_RC(tn_deque_push_back(ds[1], blob_long(55), 0), TN_OK);
  test_join(t);
  CHECK_RC(s.rc, TN_OK);
  CHECK_INT(s.index, 1);
  CHECK_INT(s.value, 55);
  CHECK(s.took < 4); /* by the token, not a slice (5 s) */
  /* A closed, drained vector is skipped without spinning on its token. */
  tn_deque_close(ds[0]);
  long before = scripts_run();
  CHECK_RC(tn_deque_select(ds, 3, &i, &b, 0.5), TN_ETIMEDOUT);
  long ran = scripts_run() - before;
  CHECK(ran >= 0 && ran < 10);
  tn_deque_close(ds[1]);
  tn_deque_close(ds[2]);
  CHECK_RC(tn_deque_select(ds, 3, &i, &b, TN_FOREVER), TN_ECLOSED);
  for (int k = 0; k < 3; k++) tn_object_release(TN_OBJECT(ds[k]));
}

TEST(redis_select_mixed, "select refuses in-process and cluster vectors "
                         "together, and vectors of two clusters") {
  tn_cluster_t *c = test_cluster("tunnel-ctest:");
  if (c == NULL) return;
  tn_cluster_t *other;
  CHECK_RC(tn_cluster_open(getenv("TUNNEL_REDIS_URL"), "tunnel-ctest-other:",
                           5, &other),
           TN_OK);
  tn_deque_t *local, *ds[2];
  CHECK_RC(tn_deque_new(TN_UNBOUNDED, &local), TN_OK);
  ds[0] = vec(c, TN_UNBOUNDED);
  ds[1] = local;
  size_t i;
  tn_blob_t *b;
  CHECK_RC(tn_deque_select(ds, 2, &i, &b, 0), TN_EINVAL);
  ds[1] = ds[0];
  ds[0] = local;
  CHECK_RC(tn_deque_select(ds, 2, &i, &b, 0), TN_EINVAL);
  tn_deque_t *far;
  CHECK_RC(tn_cluster_deque(other, test_fresh("far"), TN_UNBOUNDED, &far), TN_OK);
  ds[0] = far;
  CHECK_RC(tn_deque_select(ds, 2, &i, &b, 0), TN_EINVAL);
  CHECK(strstr(tn_last_error(), "one cluster") != NULL);
  tn_object_release(TN_OBJECT(far));
  tn_object_release(TN_OBJECT(ds[1]));
  tn_object_release(TN_OBJECT(local));
}
