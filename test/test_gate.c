/*
** test_gate.c - the callback lock as a gate on the structure's operations:
** while a write callback holds a deque, map or counter, other threads'
** operations wait (TN_TRY: TN_EAGAIN; a timeout: TN_ETIMEDOUT); while read
** callbacks hold it, only modifications wait; the holder's own operations
** pass, and a lock (or a wait) the holder would have to wait for itself
** is TN_EDEADLK at once (TN_EAGAIN for TN_TRY, as any busy lock).
*/
#include "test.h"

/* ---- an operation on another thread ---------------------------------------- */

typedef enum op_kind {
  OP_PUSH, OP_POP, OP_GET, OP_SET, OP_SNAPSHOT, OP_CLOSE, OP_CLOSE_TRY,
  OP_MAP_GET, OP_MAP_SET, OP_MAP_SNAPSHOT,
  OP_ADD, OP_COUNTER_GET, OP_COUNTER_SET
} op_kind_t;

typedef struct op_probe {
  tn_object_t *o;
  op_kind_t kind;
  double timeout;
  long value;
  int rc;
  double took;
} op_probe_t;

static int run_op(tn_object_t *o, op_kind_t kind, double timeout, long v) {
  tn_deque_t *d = (tn_deque_t *)o;
  tn_map_t *m = (tn_map_t *)o;
  tn_counter_t *c = (tn_counter_t *)o;
  tn_blob_t *b = NULL;
  int64_t x;
  int rc;
  switch (kind) {
  case OP_PUSH:
    b = blob_long(v);
    rc = tn_deque_push_back(d, b, timeout);
    if (rc != TN_OK) tn_blob_release(b);
    return rc;
  case OP_POP:
    rc = tn_deque_pop_front(d, &b, timeout);
    tn_blob_release(b);
    return rc;
  case OP_GET:
    rc = tn_deque_get(d, 0, &b, timeout);
    tn_blob_release(b);
    return rc;
  case OP_SET:
    b = blob_long(v);
    rc = tn_deque_set(d, 0, b, NULL, timeout);
    if (rc != TN_OK) tn_blob_release(b);
    return rc;
  case OP_SNAPSHOT: {
    tn_blob_t **items;
    size_t n;
    uint64_t version;
    rc = tn_deque_snapshot(d, &items, &n, &version, timeout);
    if (rc == TN_OK) tn_blob_array_free(items, n);
    return rc;
  }
  case OP_CLOSE:
    tn_deque_close(d);
    return tn_error_take();
  case OP_CLOSE_TRY:
    return tn_deque_close_timed(d, TN_TRY);
  case OP_MAP_GET:
    rc = tn_map_get(m, "k", 1, &b, timeout);
    tn_blob_release(b);
    return rc;
  case OP_MAP_SET:
    b = blob_long(v);
    rc = tn_map_set(m, "k", 1, b, NULL, timeout);
    if (rc != TN_OK) tn_blob_release(b);
    return rc;
  case OP_MAP_SNAPSHOT: {
    tn_map_entry_t *e;
    size_t n;
    rc = tn_map_snapshot(m, &e, &n, timeout);
    if (rc == TN_OK) tn_map_entries_free(e, n);
    return rc;
  }
  case OP_ADD: return tn_counter_add_timed(c, v, timeout, &x);
  case OP_COUNTER_GET: return tn_counter_get_timed(c, timeout, &x);
  case OP_COUNTER_SET: return tn_counter_set_timed(c, v, timeout, &x);
  }
  return TN_EINVAL;
}

static void *probe_op(void *p) {
  op_probe_t *op = p;
  double t0 = test_now();
  op->rc = run_op(op->o, op->kind, op->timeout, op->value);
  op->took = test_now() - t0;
  return NULL;
}

/* Run the operation on another thread, wait for it, return its code. */
static int elsewhere(tn_object_t *o, op_kind_t kind, double timeout) {
  op_probe_t op = {o, kind, timeout, 7, 99, 0};
  test_join(test_spawn(probe_op, &op));
  return op.rc;
}

/* Each operation kind, from another thread, against a held gate: TN_TRY
** says at once whether it would wait; a short timeout waits that long. */
static void check_shut(tn_object_t *o, op_kind_t kind) {
  CHECK_RC(elsewhere(o, kind, TN_TRY), TN_EAGAIN);
  op_probe_t op = {o, kind, 0.05, 7, 99, 0};
  test_join(test_spawn(probe_op, &op));
  CHECK_RC(op.rc, TN_ETIMEDOUT);
  CHECK(op.took >= 0.045 && op.took < 2.0);
}

static void check_open(tn_object_t *o, op_kind_t kind) {
  CHECK_RC(elsewhere(o, kind, TN_TRY), TN_OK);
}

/* ---- deque ------------------------------------------------------------------ */

static tn_deque_t *deque_with(long first) {
  tn_deque_t *d;
  if (tn_deque_new(SIZE_MAX, &d) != TN_OK) abort();
  if (tn_deque_push_back(d, blob_long(first), TN_FOREVER) != TN_OK) abort();
  return d;
}

TEST(gate_deque_write,
     "while a write callback holds a deque, every operation of another "
     "thread waits; the holder's own operations pass") {
  tn_deque_t *d = deque_with(1);
  tn_object_t *o = TN_OBJECT(d);
  CHECK_RC(tn_object_write_lock(o, TN_FOREVER), TN_OK);
  check_shut(o, OP_PUSH);
  check_shut(o, OP_POP);
  check_shut(o, OP_GET);
  check_shut(o, OP_SET);
  check_shut(o, OP_SNAPSHOT);
  CHECK_RC(elsewhere(o, OP_CLOSE_TRY, 0), TN_EAGAIN);
  CHECK(!tn_deque_is_closed(d));
  CHECK_RC(run_op(o, OP_GET, TN_TRY, 0), TN_OK);
  CHECK_RC(run_op(o, OP_SET, TN_TRY, 5), TN_OK);
  CHECK_RC(run_op(o, OP_PUSH, TN_TRY, 6), TN_OK);
  tn_object_write_unlock(o);
  check_open(o, OP_GET);
  check_open(o, OP_PUSH);
  CHECK_INT(tn_deque_size(d), 3);
  tn_object_release(o);
}

TEST(gate_deque_read,
     "while read callbacks hold a deque, other threads read it but wait to "
     "change it; the reader's own change is TN_EDEADLK") {
  tn_deque_t *d = deque_with(1);
  tn_object_t *o = TN_OBJECT(d);
  CHECK_RC(tn_object_read_lock(o, TN_FOREVER), TN_OK);
  check_open(o, OP_GET);
  check_open(o, OP_SNAPSHOT);
  check_shut(o, OP_PUSH);
  check_shut(o, OP_POP);
  check_shut(o, OP_SET);
  CHECK_RC(run_op(o, OP_GET, TN_FOREVER, 0), TN_OK);
  CHECK_RC(run_op(o, OP_SET, TN_FOREVER, 5), TN_EDEADLK);
  CHECK_RC(run_op(o, OP_SET, TN_TRY, 5), TN_EAGAIN);
  CHECK_RC(run_op(o, OP_CLOSE, TN_FOREVER, 0), TN_EDEADLK);
  CHECK(!tn_deque_is_closed(d));
  tn_object_read_unlock(o);
  check_open(o, OP_SET);
  tn_object_release(o);
}

TEST(gate_deque_holder_waits,
     "a callback's own pop from an empty deque, or push into a full one, "
     "would wait for itself: TN_EDEADLK, not forever") {
  tn_deque_t *d;
  CHECK_RC(tn_deque_new(1, &d), TN_OK);
  tn_object_t *o = TN_OBJECT(d);
  CHECK_RC(tn_object_write_lock(o, TN_FOREVER), TN_OK);
  CHECK_RC(run_op(o, OP_POP, TN_FOREVER, 0), TN_EDEADLK);
  CHECK_RC(run_op(o, OP_POP, TN_TRY, 0), TN_EAGAIN);
  CHECK_RC(run_op(o, OP_PUSH, TN_FOREVER, 1), TN_OK);
  CHECK_RC(run_op(o, OP_PUSH, TN_FOREVER, 2), TN_EDEADLK);
  tn_object_write_unlock(o);
  CHECK_INT(tn_deque_size(d), 1);
  tn_object_release(o);
}

/* A writer that holds the deque while another thread's set waits, then
** stores its own value: the other set must land after it. */
typedef struct late_set {
  tn_deque_t *d;
  atomic_int started;
  int rc;
} late_set_t;

static void *set_now(void *p) {
  late_set_t *ls = p;
  atomic_store(&ls->started, 1);
  ls->rc = tn_deque_set(ls->d, 0, blob_long(200), NULL, TN_FOREVER);
  return NULL;
}

TEST(gate_deque_no_lost_update,
     "a set made by another thread during a write callback lands after the "
     "callback's own store, never under it") {
  tn_deque_t *d = deque_with(1);
  tn_object_t *o = TN_OBJECT(d);
  CHECK_RC(tn_object_write_lock(o, TN_FOREVER), TN_OK);
  late_set_t ls = {d, 0, 99};
  pthread_t t = test_spawn(set_now, &ls);
  while (!atomic_load(&ls.started)) tn_sleep(0.001);
  tn_sleep(0.05); /* the set is waiting at the gate now (or soon) */
  tn_blob_t *b;
  CHECK_RC(tn_deque_get(d, 0, &b, TN_FOREVER), TN_OK);
  CHECK_INT(long_of(b), 1);
  tn_blob_release(b);
  CHECK_RC(tn_deque_set(d, 0, blob_long(100), NULL, TN_FOREVER), TN_OK);
  tn_object_write_unlock(o);
  test_join(t);
  CHECK_RC(ls.rc, TN_OK);
  CHECK_RC(tn_deque_get(d, 0, &b, TN_FOREVER), TN_OK);
  CHECK_INT(long_of(b), 200);
  tn_blob_release(b);
  tn_object_release(o);
}

/* ---- map -------------------------------------------------------------------- */

TEST(gate_map,
     "a Hash's write callback holds off every other thread's get, set and "
     "snapshot; read callbacks hold off only set") {
  tn_map_t *m;
  CHECK_RC(tn_map_new(TN_TYPE_HASH, &m), TN_OK);
  tn_object_t *o = TN_OBJECT(m);
  CHECK_RC(tn_map_set(m, "k", 1, blob_long(1), NULL, TN_FOREVER), TN_OK);
  CHECK_RC(tn_object_write_lock(o, TN_FOREVER), TN_OK);
  check_shut(o, OP_MAP_GET);
  check_shut(o, OP_MAP_SET);
  check_shut(o, OP_MAP_SNAPSHOT);
  CHECK_RC(run_op(o, OP_MAP_SET, TN_TRY, 3), TN_OK);
  CHECK_RC(run_op(o, OP_MAP_SNAPSHOT, TN_TRY, 0), TN_OK);
  tn_object_write_unlock(o);
  CHECK_RC(tn_object_read_lock(o, TN_FOREVER), TN_OK);
  check_open(o, OP_MAP_GET);
  check_open(o, OP_MAP_SNAPSHOT);
  check_shut(o, OP_MAP_SET);
  CHECK_RC(run_op(o, OP_MAP_SET, TN_FOREVER, 4), TN_EDEADLK);
  tn_object_read_unlock(o);
  check_open(o, OP_MAP_SET);
  tn_object_release(o);
}

/* ---- counter ---------------------------------------------------------------- */

TEST(gate_counter,
     "a Counter's write callback holds off other threads' add, get and set; "
     "read callbacks hold off add and set; the holder passes") {
  tn_counter_t *c;
  CHECK_RC(tn_counter_new(10, &c), TN_OK);
  tn_object_t *o = TN_OBJECT(c);
  CHECK_RC(tn_object_write_lock(o, TN_FOREVER), TN_OK);
  check_shut(o, OP_ADD);
  check_shut(o, OP_COUNTER_GET);
  check_shut(o, OP_COUNTER_SET);
  int64_t v = 0;
  CHECK_RC(tn_counter_add_timed(c, 5, TN_TRY, &v), TN_OK);
  CHECK_INT(v, 15);
  tn_object_write_unlock(o);
  CHECK_INT(tn_counter_get(c), 15);
  CHECK_RC(tn_object_read_lock(o, TN_FOREVER), TN_OK);
  check_open(o, OP_COUNTER_GET);
  check_shut(o, OP_ADD);
  check_shut(o, OP_COUNTER_SET);
  CHECK_RC(tn_counter_add_timed(c, 1, TN_FOREVER, &v), TN_EDEADLK);
  CHECK_RC(tn_counter_add_timed(c, 1, TN_TRY, &v), TN_EAGAIN);
  CHECK_INT(tn_counter_add(c, 1), 0); /* the untimed form keeps the error */
  CHECK_RC(tn_error_take(), TN_EDEADLK);
  tn_object_read_unlock(o);
  CHECK_INT(tn_counter_get(c), 15);
  check_open(o, OP_ADD);
  CHECK_INT(tn_counter_get(c), 22);
  tn_object_release(o);
}

enum { ADDERS = 3, ADDS = 20000, WRITES = 300 };

static void *add_ones(void *p) {
  for (int i = 0; i < ADDS; i++) tn_counter_add(p, 1);
  return NULL;
}

TEST(gate_counter_read_modify_write,
     "adds from several threads racing write callbacks that store v + 1000: "
     "the total is exact (no add lands under a callback)") {
  tn_counter_t *c;
  CHECK_RC(tn_counter_new(0, &c), TN_OK);
  tn_object_t *o = TN_OBJECT(c);
  pthread_t t[ADDERS];
  for (int i = 0; i < ADDERS; i++) t[i] = test_spawn(add_ones, c);
  for (int i = 0; i < WRITES; i++) {
    CHECK_RC(tn_object_write_lock(o, TN_FOREVER), TN_OK);
    int64_t v = tn_counter_get(c);
    for (volatile int spin = 0; spin < 200; spin++) {
    }
    tn_counter_set(c, v + 1000);
    tn_object_write_unlock(o);
  }
  for (int i = 0; i < ADDERS; i++) test_join(t[i]);
  CHECK_INT(tn_counter_get(c), (long long)ADDERS * ADDS + WRITES * 1000LL);
  tn_object_release(o);
}

/* ---- re-entrance -------------------------------------------------------------- */

TEST(gate_reentrant_lock,
     "a thread that holds an object's callback lock and asks for it again "
     "gets TN_EDEADLK at once; other objects lock as usual") {
  tn_counter_t *a, *b;
  CHECK_RC(tn_counter_new(0, &a), TN_OK);
  CHECK_RC(tn_counter_new(0, &b), TN_OK);
  tn_object_t *oa = TN_OBJECT(a), *ob = TN_OBJECT(b);
  CHECK_RC(tn_object_write_lock(oa, TN_FOREVER), TN_OK);
  CHECK_INT(tn_object_lock_held(oa), 2);
  CHECK_RC(tn_object_write_lock(oa, TN_FOREVER), TN_EDEADLK);
  CHECK_RC(tn_object_read_lock(oa, TN_FOREVER), TN_EDEADLK);
  CHECK_RC(tn_object_read_lock(ob, TN_FOREVER), TN_OK);
  CHECK_INT(tn_object_lock_held(ob), 1);
  CHECK_RC(tn_object_write_lock(ob, TN_TRY), TN_EAGAIN); /* Async: nil */
  CHECK_RC(tn_object_write_lock(ob, 0.01), TN_EDEADLK);
  tn_object_write_unlock(oa); /* out of order: allowed */
  CHECK_INT(tn_object_lock_held(oa), 0);
  CHECK_INT(tn_object_lock_held(ob), 1);
  tn_object_read_unlock(ob);
  CHECK_INT(tn_object_lock_held(ob), 0);
  CHECK_RC(tn_object_write_lock(oa, TN_TRY), TN_OK);
  tn_object_write_unlock(oa);
  tn_object_release(oa);
  tn_object_release(ob);
}

TEST(gate_nested_read,
     "a read inside this thread's own read joins at once, even with a writer "
     "queued behind the first; the writer gets the lock after both") {
  tn_counter_t *c;
  CHECK_RC(tn_counter_new(0, &c), TN_OK);
  tn_object_t *o = TN_OBJECT(c);
  CHECK_RC(tn_object_read_lock(o, TN_FOREVER), TN_OK);
  op_probe_t w = {o, OP_COUNTER_SET, 5.0, 9, 99, 0};
  pthread_t t = test_spawn(probe_op, &w); /* a set waits at the gate */
  tn_sleep(0.02);
  CHECK_RC(tn_object_read_lock(o, TN_FOREVER), TN_OK);
  CHECK_RC(tn_object_read_lock(o, TN_TRY), TN_OK);
  tn_object_read_unlock(o);
  tn_object_read_unlock(o);
  CHECK_INT(tn_object_lock_held(o), 1);
  CHECK_INT(tn_counter_get(c), 0); /* still shut to the set */
  tn_object_read_unlock(o);
  test_join(t);
  CHECK_RC(w.rc, TN_OK);
  CHECK_INT(tn_counter_get(c), 9);
  tn_object_release(o);
}
