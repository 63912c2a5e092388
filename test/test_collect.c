/*
** test_collect.c - tn_collect frees what only cycles keep alive, and
** nothing that anyone outside the cycle can still reach (counted with the
** collector's registry of live structures).
*/
#include <stdatomic.h>
#include <stdlib.h>

#include "internal.h"
#include "test.h"

/* A blob referring to `o` (retained by the blob). */
static tn_blob_t *ref_to(tn_object_t *o) { return tn_blob_new("r", 1, &o, 1); }

/* Collect until nothing more goes (other tests' leftovers included). */
static size_t collect_all(void) {
  size_t total = 0, n;
  for (;;) {
    int rc = tn_collect(&n);
    CHECK_RC(rc, TN_OK);
    if (rc != TN_OK || n == 0) return total;
    total += n;
  }
}

/* A deque that holds a blob referring to itself, with no other reference. */
static tn_deque_t *self_deque(void) {
  tn_deque_t *d;
  CHECK_RC(tn_deque_new(TN_UNBOUNDED, &d), TN_OK);
  CHECK_RC(tn_deque_push_back(d, ref_to(TN_OBJECT(d)), TN_FOREVER), TN_OK);
  return d;
}

TEST(collect_self_deque, "a deque holding itself is freed by tn_collect") {
  collect_all();
  size_t before = tn_gc_registered();
  tn_deque_t *d = self_deque();
  tn_object_release(TN_OBJECT(d));
  CHECK_INT(tn_gc_registered(), before + 1); /* counting cannot free it */
  size_t n = 99;
  CHECK_RC(tn_collect(&n), TN_OK);
  CHECK_INT(n, 1);
  CHECK_INT(tn_gc_registered(), before);
  CHECK_RC(tn_collect(&n), TN_OK);
  CHECK_INT(n, 0);
}

TEST(collect_two_maps, "two maps holding each other are freed, with a counter "
                       "that only they hold") {
  collect_all();
  size_t before = tn_gc_registered();
  tn_map_t *a, *b;
  CHECK_RC(tn_map_new(TN_TYPE_HASH, &a), TN_OK);
  CHECK_RC(tn_map_new(TN_TYPE_TABLE, &b), TN_OK);
  tn_counter_t *k;
  CHECK_RC(tn_counter_new(7, &k), TN_OK);
  tn_object_t *refs[2] = {TN_OBJECT(b), TN_OBJECT(k)};
  CHECK_RC(tn_map_set(a, "b", 1, tn_blob_new("x", 1, refs, 2), NULL, TN_FOREVER),
           TN_OK);
  CHECK_RC(tn_map_set(b, "a", 1, ref_to(TN_OBJECT(a)), NULL, TN_FOREVER), TN_OK);
  tn_object_release(TN_OBJECT(k));
  tn_object_release(TN_OBJECT(a));
  tn_object_release(TN_OBJECT(b));
  size_t n = 0;
  CHECK_RC(tn_collect(&n), TN_OK);
  CHECK_INT(n, 2);
  CHECK_INT(tn_gc_registered(), before);
}

TEST(collect_cell_cycle, "an Atomic whose table holds the Atomic is freed") {
  collect_all();
  size_t before = tn_gc_registered();
  tn_map_t *t;
  CHECK_RC(tn_map_new(TN_TYPE_TABLE, &t), TN_OK);
  tn_cell_t *c;
  CHECK_RC(tn_cell_new(TN_TYPE_ATOMIC, ref_to(TN_OBJECT(t)), &c), TN_OK);
  CHECK_RC(tn_map_set(t, "self", 4, ref_to(TN_OBJECT(c)), NULL, TN_FOREVER),
           TN_OK);
  tn_object_release(TN_OBJECT(t));
  tn_object_release(TN_OBJECT(c));
  size_t n = 0;
  CHECK_RC(tn_collect(&n), TN_OK);
  CHECK_INT(n, 2);
  CHECK_INT(tn_gc_registered(), before);
}

TEST(collect_keeps_referenced,
     "a cycle that a reference from outside reaches is not freed: an object "
     "reference, a blob held by a thread, a live structure holding it") {
  collect_all();
  size_t before = tn_gc_registered();
  size_t n = 99;

  /* Held directly: the deque itself is referenced. */
  tn_deque_t *d = self_deque();
  CHECK_RC(tn_collect(&n), TN_OK);
  CHECK_INT(n, 0);
  tn_blob_t *b = NULL;
  CHECK_RC(tn_deque_get(d, 0, &b, TN_FOREVER), TN_OK);
  CHECK(tn_blob_ref(b, 0) == TN_OBJECT(d)); /* intact */
  /* Held through a blob outside any structure (a value in flight). */
  tn_object_release(TN_OBJECT(d));
  CHECK_RC(tn_collect(&n), TN_OK);
  CHECK_INT(n, 0);
  CHECK_INT(tn_deque_size(d), 1); /* still there */

  /* Held by a live map: the map is referenced, so the cycle is reachable. */
  tn_map_t *m;
  CHECK_RC(tn_map_new(TN_TYPE_HASH, &m), TN_OK);
  CHECK_RC(tn_map_set(m, "d", 1, b, NULL, TN_FOREVER), TN_OK); /* takes b */
  CHECK_RC(tn_collect(&n), TN_OK);
  CHECK_INT(n, 0);
  CHECK_INT(tn_gc_registered(), before + 2);
  tn_blob_t *got = NULL;
  CHECK_RC(tn_map_get(m, "d", 1, &got, TN_FOREVER), TN_OK);
  CHECK(got != NULL && tn_blob_ref(got, 0) == TN_OBJECT(d));
  tn_blob_release(got);

  /* The map goes: now the cycle is garbage. */
  tn_object_release(TN_OBJECT(m));
  CHECK_INT(tn_gc_registered(), before + 1);
  CHECK_RC(tn_collect(&n), TN_OK);
  CHECK_INT(n, 1);
  CHECK_INT(tn_gc_registered(), before);
}

TEST(collect_garbage_holding_live,
     "garbage that holds a live object frees only the garbage") {
  collect_all();
  size_t before = tn_gc_registered();
  tn_map_t *live;
  CHECK_RC(tn_map_new(TN_TYPE_HASH, &live), TN_OK);
  tn_deque_t *d = self_deque();
  CHECK_RC(tn_deque_push_back(d, ref_to(TN_OBJECT(live)), TN_FOREVER), TN_OK);
  tn_object_release(TN_OBJECT(d));
  size_t n = 0;
  CHECK_RC(tn_collect(&n), TN_OK);
  CHECK_INT(n, 1);
  CHECK_INT(tn_gc_registered(), before + 1);
  CHECK_INT(atomic_load(&TN_OBJECT(live)->refs), 1);
  CHECK_RC(tn_map_set(live, "k", 1, blob_long(1), NULL, TN_FOREVER), TN_OK);
  tn_object_release(TN_OBJECT(live));
  CHECK_INT(tn_gc_registered(), before);
}

TEST(collect_long_cycle, "a cycle of 10^5 deques goes in one collection") {
  collect_all();
  size_t before = tn_gc_registered();
  const int N = getenv("TN_TEST_SLOW") != NULL ? 10000 : 100000; /* valgrind */
  tn_deque_t *first;
  CHECK_RC(tn_deque_new(TN_UNBOUNDED, &first), TN_OK);
  tn_deque_t *prev = first;
  for (int i = 1; i < N; i++) {
    tn_deque_t *d;
    CHECK_RC(tn_deque_new(TN_UNBOUNDED, &d), TN_OK);
    CHECK_RC(tn_deque_push_back(d, ref_to(TN_OBJECT(prev)), TN_FOREVER), TN_OK);
    tn_object_release(TN_OBJECT(prev));
    prev = d;
  }
  CHECK_RC(tn_deque_push_back(first, ref_to(TN_OBJECT(prev)), TN_FOREVER),
           TN_OK);
  tn_object_release(TN_OBJECT(prev));
  size_t n = 0;
  CHECK_RC(tn_collect(&n), TN_OK);
  CHECK_INT(n, N);
  CHECK_INT(tn_gc_registered(), before);
}

/* ---- while other threads work ------------------------------------------- */

typedef struct work {
  tn_deque_t *q;   /* live: values pass through it */
  atomic_int stop;
  atomic_long cycles;
} work_t;

/*
** Makes cycles and drops them, and moves references around a live cycle:
** pops a value referring to a deque of the live cycle, retains that deque
** from the blob, drops the blob, pushes a new reference back -- the moves
** that the collector's second round must see.
*/
static void *worker(void *arg) {
  work_t *w = arg;
  while (!atomic_load(&w->stop)) {
    tn_deque_t *d = self_deque();
    tn_object_release(TN_OBJECT(d));
    tn_blob_t *b = NULL;
    if (tn_deque_pop_front(w->q, &b, 0.01) == TN_OK) {
      tn_object_t *o = tn_object_retain(tn_blob_ref(b, 0));
      tn_blob_release(b);
      /* o's own content refers to o: read it, to show it is alive. */
      tn_blob_t *inner = NULL;
      CHECK_RC(tn_deque_get((tn_deque_t *)o, 0, &inner, TN_FOREVER), TN_OK);
      CHECK(inner != NULL && tn_blob_ref(inner, 0) == o);
      tn_blob_release(inner);
      CHECK_RC(tn_deque_push_back(w->q, ref_to(o), TN_FOREVER), TN_OK);
      tn_object_release(o);
    }
    atomic_fetch_add(&w->cycles, 1);
  }
  return NULL;
}

TEST(collect_concurrent,
     "collections while threads make cycles and move references to live "
     "ones free only garbage") {
  collect_all();
  size_t before = tn_gc_registered();
  work_t w;
  CHECK_RC(tn_deque_new(TN_UNBOUNDED, &w.q), TN_OK);
  atomic_init(&w.stop, 0);
  atomic_init(&w.cycles, 0);
  /* Live self-cycles whose only outside reference travels through w.q. */
  for (int i = 0; i < 4; i++) {
    tn_deque_t *d = self_deque();
    CHECK_RC(tn_deque_push_back(w.q, ref_to(TN_OBJECT(d)), TN_FOREVER), TN_OK);
    tn_object_release(TN_OBJECT(d));
  }
  pthread_t t[2];
  for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, worker, &w);
  double end = test_now() + 1.0;
  size_t freed = 0, n;
  /* At least a second, and until the workers made some garbage: under
  ** valgrind (one thread at a time) they may not have run by then. */
  while (test_now() < end || atomic_load(&w.cycles) < 2) {
    int rc = tn_collect(&n);
    CHECK(rc == TN_OK || rc == TN_EAGAIN);
    if (rc == TN_OK) freed += n;
  }
  atomic_store(&w.stop, 1);
  for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
  /* (Under valgrind every attempt may find something busy: TN_EAGAIN.) */
  freed += collect_all();
  CHECK(freed > 0);
  /* The 4 live cycles and the queue remain, with their values. */
  CHECK_INT(tn_gc_registered(), before + 5);
  CHECK_INT(tn_deque_size(w.q), 4);
  tn_object_release(TN_OBJECT(w.q));
  CHECK_INT(tn_gc_registered(), before + 4);
  CHECK_INT(collect_all(), 4);
  CHECK_INT(tn_gc_registered(), before);
}
