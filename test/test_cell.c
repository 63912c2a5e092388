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
