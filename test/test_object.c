/*
** test_object.c - shared objects, blobs, the callback lock, error names,
** and fault injection (every allocation failure leaves things as they were).
*/
#include <stdatomic.h>

#include "internal.h" /* the reference count, to watch it */
#include "test.h"

static long refs_of(tn_object_t *o) { return atomic_load(&o->refs); }

TEST(blob_copies_bytes, "a blob holds its own copy of the bytes") {
  char text[] = "hello";
  tn_blob_t *b = tn_blob_new(text, 5, NULL, 0);
  CHECK(b != NULL);
  text[0] = 'j';
  CHECK_INT(tn_blob_size(b), 5);
  CHECK(memcmp(tn_blob_data(b), "hello", 5) == 0);
  CHECK_INT(tn_blob_nrefs(b), 0);
  CHECK(tn_blob_ref(b, 0) == NULL);
  tn_blob_release(b);

  tn_blob_t *empty = tn_blob_new(NULL, 0, NULL, 0);
  CHECK(empty != NULL);
  CHECK_INT(tn_blob_size(empty), 0);
  tn_blob_release(empty);
  tn_blob_release(NULL); /* allowed */
  CHECK(tn_blob_retain(NULL) == NULL);
}

TEST(blob_holds_references,
     "a blob keeps the objects it refers to alive until its last release") {
  tn_deque_t *d;
  tn_counter_t *c;
  CHECK_RC(tn_deque_new(TN_UNBOUNDED, &d), TN_OK);
  CHECK_RC(tn_counter_new(7, &c), TN_OK);
  tn_object_t *refs[2] = {TN_OBJECT(d), TN_OBJECT(c)};
  tn_blob_t *b = tn_blob_new("x", 1, refs, 2);
  CHECK(b != NULL);
  CHECK_INT(refs_of(TN_OBJECT(d)), 2);
  CHECK_INT(refs_of(TN_OBJECT(c)), 2);
  CHECK_INT(tn_blob_nrefs(b), 2);
  CHECK(tn_blob_ref(b, 0) == TN_OBJECT(d));
  CHECK(tn_blob_ref(b, 1) == TN_OBJECT(c));
  CHECK(tn_object_type(tn_blob_ref(b, 1)) == TN_TYPE_COUNTER);

  CHECK(tn_blob_retain(b) == b);
  tn_blob_release(b);
  CHECK_INT(refs_of(TN_OBJECT(d)), 2); /* one blob reference remains */
  tn_blob_release(b);
  CHECK_INT(refs_of(TN_OBJECT(d)), 1);
  CHECK_INT(refs_of(TN_OBJECT(c)), 1);

  /* The creator's reference may go first: the blob keeps the object. */
  b = tn_blob_new(NULL, 0, refs, 1);
  tn_object_release(TN_OBJECT(d));
  CHECK_INT(refs_of(TN_OBJECT(d)), 1);
  CHECK_RC(tn_deque_push_back(d, blob_long(1), 0), TN_OK);
  tn_blob_release(b); /* frees the deque and the value in it */
  tn_object_release(TN_OBJECT(c));
  tn_object_release(NULL);
}

TEST(object_types, "every structure reports its type") {
  tn_deque_t *d;
  tn_counter_t *c;
  tn_printer_t *p;
  CHECK_RC(tn_deque_new(1, &d), TN_OK);
  CHECK_RC(tn_counter_new(0, &c), TN_OK);
  CHECK_RC(tn_printer_new(NULL, &p), TN_OK);
  CHECK(tn_object_type(TN_OBJECT(d)) == TN_TYPE_DEQUE);
  CHECK(tn_object_type(TN_OBJECT(c)) == TN_TYPE_COUNTER);
  CHECK(tn_object_type(TN_OBJECT(p)) == TN_TYPE_PRINTER);
  CHECK(tn_object_retain(TN_OBJECT(d)) == TN_OBJECT(d));
  CHECK_INT(refs_of(TN_OBJECT(d)), 2);
  tn_object_release(TN_OBJECT(d));
  tn_object_release(TN_OBJECT(d));
  tn_object_release(TN_OBJECT(c));
  tn_object_release(TN_OBJECT(p));
}

TEST(strerror_names, "every error code has its own message") {
  int codes[] = {TN_OK,     TN_ENOMEM, TN_ETIMEDOUT,   TN_EAGAIN,
                 TN_ECLOSED, TN_EINVAL, TN_ERANGE,     TN_ETERMINATED,
                 TN_ETHREAD, TN_ECONFLICT, TN_EINIT};
  size_t n = sizeof codes / sizeof codes[0];
  const char *unknown = tn_strerror(-1000);
  CHECK(unknown != NULL);
  for (size_t i = 0; i < n; i++) {
    const char *m = tn_strerror(codes[i]);
    CHECK(m != NULL && m[0] != '\0');
    CHECK(strcmp(m, unknown) != 0);
    for (size_t j = 0; j < i; j++) CHECK(strcmp(m, tn_strerror(codes[j])) != 0);
  }
  CHECK(strcmp(tn_strerror(TN_ETIMEDOUT), "timed out") == 0);
}

/* ---- the callback lock -------------------------------------------------- */

typedef struct lock_probe {
  tn_object_t *o;
  double timeout;
  int write;  /* 1: take the write lock, else the read lock */
  int rc;
  double took;
  atomic_int *release; /* if set: hold until it becomes nonzero */
} lock_probe_t;

static void *probe_lock(void *p) {
  lock_probe_t *lp = p;
  double t0 = test_now();
  lp->rc = lp->write ? tn_object_write_lock(lp->o, lp->timeout)
                     : tn_object_read_lock(lp->o, lp->timeout);
  lp->took = test_now() - t0;
  if (lp->rc == TN_OK) {
    while (lp->release != NULL && atomic_load(lp->release) == 0) tn_sleep(0.001);
    if (lp->write)
      tn_object_write_unlock(lp->o);
    else
      tn_object_read_unlock(lp->o);
  }
  return NULL;
}

/* Take the lock on another thread with `timeout`; report rc and time. */
static lock_probe_t probe(tn_object_t *o, int write, double timeout) {
  lock_probe_t lp = {o, timeout, write, 99, 0, NULL};
  test_join(test_spawn(probe_lock, &lp));
  return lp;
}

TEST(rwlock_readers_share, "many readers hold the callback lock at once") {
  tn_counter_t *c;
  tn_counter_new(0, &c);
  tn_object_t *o = TN_OBJECT(c);
  CHECK_RC(tn_object_read_lock(o, TN_FOREVER), TN_OK);
  CHECK_INT(probe(o, 0, TN_TRY).rc, TN_OK);
  CHECK_INT(probe(o, 0, 0).rc, TN_OK);
  CHECK_INT(probe(o, 1, TN_TRY).rc, TN_EAGAIN);
  lock_probe_t w = probe(o, 1, 0.05);
  CHECK_INT(w.rc, TN_ETIMEDOUT);
  CHECK(w.took >= 0.045 && w.took < 1.0);
  tn_object_read_unlock(o);
  CHECK_INT(probe(o, 1, TN_TRY).rc, TN_OK);
  tn_object_release(o);
}

TEST(rwlock_writer_excludes, "a writer excludes readers and other writers") {
  tn_counter_t *c;
  tn_counter_new(0, &c);
  tn_object_t *o = TN_OBJECT(c);
  CHECK_RC(tn_object_write_lock(o, TN_TRY), TN_OK);
  CHECK_INT(probe(o, 0, TN_TRY).rc, TN_EAGAIN);
  CHECK_INT(probe(o, 1, TN_TRY).rc, TN_EAGAIN);
  CHECK_INT(probe(o, 0, 0).rc, TN_ETIMEDOUT);
  lock_probe_t r = probe(o, 0, 0.05);
  CHECK_INT(r.rc, TN_ETIMEDOUT);
  CHECK(r.took >= 0.045 && r.took < 1.0);
  tn_object_write_unlock(o);
  CHECK_INT(probe(o, 0, TN_TRY).rc, TN_OK);
  tn_object_release(o);
}

TEST(rwlock_waiting_writer_first,
     "a waiting writer holds off new readers, and gets the lock when "
     "readers leave") {
  tn_counter_t *c;
  tn_counter_new(0, &c);
  tn_object_t *o = TN_OBJECT(c);
  CHECK_RC(tn_object_read_lock(o, TN_FOREVER), TN_OK);
  atomic_int go = 0;
  lock_probe_t w = {o, TN_FOREVER, 1, 99, 0, &go};
  pthread_t t = test_spawn(probe_lock, &w);
  tn_sleep(0.05); /* let the writer queue */
  CHECK_INT(probe(o, 0, TN_TRY).rc, TN_EAGAIN);
  CHECK_INT(probe(o, 0, 0.02).rc, TN_ETIMEDOUT);
  tn_object_read_unlock(o);
  atomic_store(&go, 1);
  test_join(t);
  CHECK_INT(w.rc, TN_OK);
  CHECK_INT(probe(o, 0, TN_TRY).rc, TN_OK);
  tn_object_release(o);
}

TEST(rwlock_writer_timeout_frees_readers,
     "a writer that gives up lets the readers it held off in") {
  tn_counter_t *c;
  tn_counter_new(0, &c);
  tn_object_t *o = TN_OBJECT(c);
  CHECK_RC(tn_object_read_lock(o, TN_FOREVER), TN_OK);
  lock_probe_t w = {o, 0.1, 1, 99, 0, NULL};
  pthread_t t = test_spawn(probe_lock, &w);
  tn_sleep(0.02);
  lock_probe_t r = {o, 1.0, 0, 99, 0, NULL};
  pthread_t t2 = test_spawn(probe_lock, &r); /* waits behind the writer */
  test_join(t);
  test_join(t2);
  CHECK_INT(w.rc, TN_ETIMEDOUT);
  CHECK_INT(r.rc, TN_OK);
  CHECK(r.took < 0.5);
  tn_object_read_unlock(o);
  tn_object_release(o);
}

/* ---- fault injection ---------------------------------------------------- */

TEST(fault_new_fails_cleanly,
     "creating any structure or blob fails with TN_ENOMEM when memory runs "
     "out") {
  tn_deque_t *d = NULL;
  for (unsigned long n = 1; n <= 2; n++) { /* the struct, then its buffer */
    tn_fault_alloc(n, 0);
    CHECK_RC(tn_deque_new(4, &d), TN_ENOMEM);
  }
  tn_fault_alloc(1, 0);
  CHECK(tn_blob_new("abc", 3, NULL, 0) == NULL);
  tn_counter_t *c;
  tn_fault_alloc(1, 0);
  CHECK_RC(tn_counter_new(0, &c), TN_ENOMEM);
  tn_printer_t *p;
  tn_fault_alloc(1, 0);
  CHECK_RC(tn_printer_new(NULL, &p), TN_ENOMEM);
  tn_block_t *b;
  for (unsigned long n = 1; n <= 2; n++) {
    tn_fault_alloc(n, 0);
    CHECK_RC(tn_block_new(2, NULL, NULL, &b), TN_ENOMEM);
  }
  tn_fault_alloc(0, 0);
  /* And everything works again once injection is off. */
  CHECK_RC(tn_deque_new(4, &d), TN_OK);
  tn_object_release(TN_OBJECT(d));
}

TEST(fault_blob_refs_untouched,
     "a blob that cannot be allocated retains none of its objects") {
  tn_counter_t *c;
  tn_counter_new(0, &c);
  tn_object_t *refs[1] = {TN_OBJECT(c)};
  tn_fault_alloc(1, 0);
  CHECK(tn_blob_new("x", 1, refs, 1) == NULL);
  tn_fault_alloc(0, 0);
  CHECK_INT(refs_of(TN_OBJECT(c)), 1);
  tn_object_release(TN_OBJECT(c));
}

/* Check that d holds 0..n-1 in order. */
static void check_sequence(tn_deque_t *d, long n) {
  CHECK_INT(tn_deque_size(d), n);
  for (long i = 0; i < n; i++) {
    tn_blob_t *b = NULL;
    CHECK_RC(tn_deque_get(d, (size_t)i, &b, TN_FOREVER), TN_OK);
    if (b != NULL) CHECK_INT(long_of(b), i);
    tn_blob_release(b);
  }
}

TEST(fault_growth_leaves_deque,
     "a push, insert, set or replace that must grow fails with TN_ENOMEM "
     "and leaves the deque as it was") {
  tn_deque_t *d;
  CHECK_RC(tn_deque_new(TN_UNBOUNDED, &d), TN_OK);
  /* Rotate the ring so the content wraps around the buffer's end. */
  for (long i = 0; i < 5; i++) {
    tn_blob_t *b = blob_long(-1);
    CHECK_RC(tn_deque_push_back(d, b, 0), TN_OK);
    CHECK_RC(tn_deque_pop_front(d, &b, 0), TN_OK);
    tn_blob_release(b);
  }
  long n = 0;
  /* Fill until the next push must grow the buffer: pushes that need no
  ** allocation succeed even with every allocation failing. */
  tn_blob_t *extra = blob_long(999);
  for (;;) {
    tn_blob_t *b = blob_long(n);
    tn_fault_alloc(1, 1);
    int rc = tn_deque_push_back(d, b, 0);
    tn_fault_alloc(0, 0);
    if (rc != TN_OK) {
      CHECK_RC(rc, TN_ENOMEM);
      tn_blob_release(b);
      break;
    }
    n++;
    if (n > 1000) break;
  }
  CHECK(n >= 4 && n < 1000);
  check_sequence(d, n);
  uint64_t v0;
  tn_blob_t **items;
  size_t k;
  CHECK_RC(tn_deque_snapshot(d, &items, &k, &v0, 0), TN_OK);
  tn_blob_array_free(items, k);

  tn_fault_alloc(1, 1);
  CHECK_RC(tn_deque_push_front(d, extra, 0), TN_ENOMEM);
  CHECK_RC(tn_deque_insert(d, 3, extra, 0), TN_ENOMEM);
  CHECK_RC(tn_deque_set(d, (size_t)n, extra, NULL, 0), TN_ENOMEM);
  CHECK_RC(tn_deque_set(d, (size_t)n + 100, extra, NULL, 0), TN_ENOMEM);
  CHECK_RC(tn_deque_snapshot(d, &items, &k, &v0, 0), TN_ENOMEM);
  tn_blob_t *repl[1] = {extra};
  CHECK_RC(tn_deque_replace(d, repl, 1, v0, 0), TN_ENOMEM);
  tn_fault_alloc(0, 0);
  check_sequence(d, n);
  /* An in-place set needs no memory. */
  tn_blob_t *old = NULL;
  tn_blob_t *zero = blob_long(0);
  tn_fault_alloc(1, 1);
  CHECK_RC(tn_deque_set(d, 0, zero, &old, 0), TN_OK);
  tn_fault_alloc(0, 0);
  tn_blob_release(old);
  check_sequence(d, n);
  uint64_t v1;
  CHECK_RC(tn_deque_snapshot(d, &items, &k, &v1, 0), TN_OK);
  CHECK(v1 == v0 + 1); /* only the set changed it */
  tn_blob_array_free(items, k);

  /* With memory back, the same push grows the deque. */
  CHECK_RC(tn_deque_push_back(d, extra, 0), TN_OK);
  CHECK_INT(tn_deque_size(d), n + 1);
  tn_object_release(TN_OBJECT(d));
}

static atomic_int fault_released;
static void fault_release(void *arg) {
  (void)arg;
  atomic_fetch_add(&fault_released, 1);
}
static void fault_job(void *ctx, int index, void *arg) {
  (void)ctx, (void)index, (void)arg;
}

TEST(fault_block_run_releases,
     "a run that cannot be queued returns TN_ENOMEM and releases its "
     "argument at once") {
  tn_block_t *b;
  CHECK_RC(tn_block_new(2, NULL, NULL, &b), TN_OK);
  atomic_store(&fault_released, 0);
  tn_fault_alloc(1, 0);
  CHECK_RC(tn_block_run(b, fault_job, NULL, fault_release), TN_ENOMEM);
  tn_fault_alloc(0, 0);
  CHECK_INT(atomic_load(&fault_released), 1);
  CHECK_RC(tn_block_run(b, fault_job, NULL, fault_release), TN_OK);
  CHECK_RC(tn_block_synchronize(b, TN_FOREVER), TN_OK);
  CHECK_INT(atomic_load(&fault_released), 2);
  tn_block_free(b);
}
