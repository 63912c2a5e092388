/*
** test_cell.c - the cell behind Share and Atomic: one value for life, a
** reference to it, and its release with the cell.
*/
#include <stdatomic.h>

#include "internal.h"
#include "test.h"

static long refs_of(tn_object_t *o) { return atomic_load(&o->refs); }

TEST(cell_holds_value, "a cell keeps its value and is a Share or an Atomic") {
  tn_cell_t *c = NULL;
  tn_blob_t *b = blob_long(42);
  CHECK_RC(tn_cell_new(TN_TYPE_HASH, b, &c), TN_EINVAL);
  CHECK_RC(tn_cell_new(TN_TYPE_SHARE, b, &c), TN_OK);
  CHECK_INT(tn_object_type(TN_OBJECT(c)), TN_TYPE_SHARE);
  CHECK(tn_cell_value(c) == b);
  CHECK_INT(long_of(tn_cell_value(c)), 42);
  tn_object_release(TN_OBJECT(c));
  CHECK_RC(tn_cell_new(TN_TYPE_ATOMIC, NULL, &c), TN_OK);
  CHECK_INT(tn_object_type(TN_OBJECT(c)), TN_TYPE_ATOMIC);
  CHECK(tn_cell_value(c) == NULL);
  /* Atomic's protocol is the object's callback lock. */
  CHECK_RC(tn_object_write_lock(TN_OBJECT(c), TN_TRY), TN_OK);
  CHECK_RC(tn_object_read_lock(TN_OBJECT(c), TN_TRY), TN_EAGAIN);
  tn_object_write_unlock(TN_OBJECT(c));
  tn_object_release(TN_OBJECT(c));
}

TEST(cell_releases_value,
     "a cell owns its value's reference and drops it, with the objects "
     "inside, when it is freed") {
  tn_counter_t *k;
  tn_counter_new(0, &k);
  tn_object_t *refs[1] = {TN_OBJECT(k)};
  tn_blob_t *b = tn_blob_new("x", 1, refs, 1);
  tn_cell_t *c;
  CHECK_RC(tn_cell_new(TN_TYPE_ATOMIC, b, &c), TN_OK);
  CHECK_INT(refs_of(TN_OBJECT(k)), 2);
  tn_object_retain(TN_OBJECT(c));
  tn_object_release(TN_OBJECT(c));
  CHECK_INT(refs_of(TN_OBJECT(k)), 2);
  tn_object_release(TN_OBJECT(c));
  CHECK_INT(refs_of(TN_OBJECT(k)), 1);
  tn_object_release(TN_OBJECT(k));
}

TEST(cell_fault, "a cell that cannot be allocated leaves its value with the "
                 "caller") {
  tn_blob_t *b = blob_long(1);
  tn_cell_t *c = NULL;
  tn_fault_alloc(1, 0);
  CHECK_RC(tn_cell_new(TN_TYPE_SHARE, b, &c), TN_ENOMEM);
  tn_fault_alloc(0, 0);
  CHECK_INT(long_of(b), 1);
  tn_blob_release(b);
}

/* ---- reads without the lock, beside sets ----------------------------------- */

enum { CELL_SETS = 20000 };

typedef struct cell_reader {
  tn_cell_t *c;
  tn_object_t *k; /* every value refers to it */
  atomic_int *stop;
  int peek;       /* tn_cell_peek (a copy), else tn_cell_get */
  long reads, bad;
} cell_reader_t;

/* One writer sets 1, 2, 3, ...: a reader sees each value whole, with its
** object, and never an older one after a newer. */
static void *cell_read_loop(void *p) {
  cell_reader_t *r = p;
  long last = 0;
  /* At least one read, however late the thread starts (a loaded machine
  ** may run the whole writer first). */
  do {
    long v = -1;
    if (r->peek) {
      tn_object_t *objs[1];
      tn_peek_t pk = {&v, sizeof v, objs, 1, 1, 0, 0, 0, NULL};
      if (tn_cell_peek(r->c, &pk, TN_FOREVER) != TN_OK || pk.blob != NULL ||
          !pk.found || pk.size != sizeof v || pk.nobjs != 1 || objs[0] != r->k)
        r->bad++;
    } else {
      tn_blob_t *b = NULL;
      if (tn_cell_get(r->c, &b, TN_FOREVER) != TN_OK || b == NULL ||
          tn_blob_ref(b, 0) != r->k) {
        r->bad++;
      } else {
        v = long_of(b);
      }
      tn_blob_release(b);
    }
    if (v < last || v > CELL_SETS) r->bad++;
    if (v > last) last = v;
    r->reads++;
  } while (!atomic_load(r->stop));
  return NULL;
}

static tn_blob_t *blob_long_ref(long v, tn_object_t *o) {
  tn_object_t *refs[1] = {o};
  return tn_blob_new(&v, sizeof v, refs, 1);
}

TEST(cell_reads_beside_sets,
     "gets and peeks on two threads, which take no lock, see every value "
     "whole and in order while a third thread sets new ones; every "
     "reference comes back") {
  tn_counter_t *k;
  tn_counter_new(0, &k);
  tn_cell_t *c;
  CHECK_RC(tn_cell_new(TN_TYPE_ATOMIC, blob_long_ref(0, TN_OBJECT(k)), &c),
           TN_OK);
  atomic_int stop = 0;
  cell_reader_t r[2] = {{c, TN_OBJECT(k), &stop, 0, 0, 0},
                        {c, TN_OBJECT(k), &stop, 1, 0, 0}};
  pthread_t t[2];
  for (int i = 0; i < 2; i++) t[i] = test_spawn(cell_read_loop, &r[i]);
  for (long i = 1; i <= CELL_SETS; i++) {
    tn_blob_t *b = blob_long_ref(i, TN_OBJECT(k));
    CHECK_RC(tn_cell_set(c, b, TN_FOREVER), TN_OK);
  }
  atomic_store(&stop, 1);
  for (int i = 0; i < 2; i++) test_join(t[i]);
  for (int i = 0; i < 2; i++) {
    CHECK(r[i].reads > 0);
    CHECK_INT(r[i].bad, 0);
  }
  CHECK_INT(long_of(tn_cell_value(c)), CELL_SETS);
  tn_object_release(TN_OBJECT(c));
  CHECK_INT(refs_of(TN_OBJECT(k)), 1); /* every value's reference came back */
  tn_object_release(TN_OBJECT(k));
}
