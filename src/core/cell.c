/*
** cell.c - one value for an object's whole life: the core of tunnel.Share
** and tunnel.Atomic.
**
** The value never changes, so reading it needs no lock: a shared table
** inside it is itself a synchronized structure, and Atomic's reader-writer
** protocol is the object's callback lock (tn_object_read_lock and
** tn_object_write_lock), which the cell never takes itself.
*/
#include "internal.h"

struct tn_cell {
  tn_object_t object;
  tn_blob_t *value; /* may be NULL (nil) */
};

static void cell_destroy(tn_object_t *o) {
  tn_cell_t *c = (tn_cell_t *)o;
  tn_blob_release(c->value);
  tn_object_fini(&c->object);
  tn_free(c);
}

/*
** A cell holding `b` (its reference taken on TN_OK, left with the caller
** otherwise). TN_EINVAL for a type other than TN_TYPE_SHARE or
** TN_TYPE_ATOMIC; TN_ENOMEM.
*/
int tn_cell_new(tn_type_t type, tn_blob_t *b, tn_cell_t **out) {
  if (type != TN_TYPE_SHARE && type != TN_TYPE_ATOMIC) return TN_EINVAL;
  tn_cell_t *c = tn_malloc(sizeof *c);
  if (c == NULL) return TN_ENOMEM;
  tn_object_init(&c->object, type, cell_destroy);
  c->value = b;
  *out = c;
  return TN_OK;
}

tn_blob_t *tn_cell_value(const tn_cell_t *c) { return c->value; }
