/*
** cell.c - one value per object: the core of tunnel.Share and
** tunnel.Atomic.
**
** The value changes only through tn_cell_set, which Atomic:write calls
** (under the object's callback lock) to store its data back. For an
** in-process Atomic that data is a shared table, so the stored value is a
** reference to the same table and nothing observable changes; for a
** cluster Atomic (src/redis) it is the copy the callback changed. A short
** mutex makes get/set safe against each other; tn_cell_value reads without
** it, for the callers that know the value does not change (Share).
**
** Caveat: a borrowed tn_cell_value pointer is valid only until the next
** tn_cell_set; code that may race a set must use tn_cell_get.
*/
#include "internal.h"

struct tn_cell {
  tn_object_t object;
  pthread_mutex_t mutex; /* guards `value` for get/set */
  tn_blob_t *value;      /* may be NULL (nil) */
  uint64_t version;      /* sets so far (for the collector) */
};

static void cell_destroy(tn_object_t *o) {
  tn_cell_t *c = (tn_cell_t *)o;
  tn_blob_release(c->value);
  pthread_mutex_destroy(&c->mutex);
  tn_object_fini(&c->object);
  tn_free(c);
}

/* ---- the cycle collector's hooks (internal.h, collect.c) ---------------- */

static bool cell_gc_trylock(tn_object_t *o) {
  return pthread_mutex_trylock(&((tn_cell_t *)o)->mutex) == 0;
}

static void cell_gc_unlock(tn_object_t *o) {
  pthread_mutex_unlock(&((tn_cell_t *)o)->mutex);
}

static void cell_gc_children(tn_object_t *o, tn_visit_fn visit, void *arg) {
  tn_cell_t *c = (tn_cell_t *)o;
  if (c->value != NULL) visit(c->value, arg);
}

static uint64_t cell_gc_version(tn_object_t *o) {
  return ((tn_cell_t *)o)->version;
}

static void cell_gc_clear(tn_object_t *o) {
  tn_cell_t *c = (tn_cell_t *)o;
  pthread_mutex_lock(&c->mutex);
  tn_blob_t *b = c->value;
  c->value = NULL;
  c->version++;
  pthread_mutex_unlock(&c->mutex);
  tn_blob_release(b);
}

static const tn_gc_ops_t cell_gc = {cell_gc_trylock, cell_gc_unlock,
                                    cell_gc_children, cell_gc_version,
                                    cell_gc_clear};

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
  tn_mutex_init(&c->mutex);
  c->value = b;
  c->version = 0;
  tn_gc_register(&c->object, &cell_gc);
  *out = c;
  return TN_OK;
}

tn_blob_t *tn_cell_value(const tn_cell_t *c) {
  if (TN_REMOTE(c)) return NULL;
  return c->value;
}

/* A new reference to the value; TN_TRY may give TN_EAGAIN. */
int tn_cell_get(tn_cell_t *c, tn_blob_t **out, double timeout) {
  if (TN_REMOTE(c)) return TN_BACKEND(c)->cell_get(c, out, timeout);
  int rc = tn_mutex_acquire(&c->mutex, timeout);
  if (rc != TN_OK) return rc;
  *out = tn_blob_retain(c->value);
  pthread_mutex_unlock(&c->mutex);
  return TN_OK;
}

/* Swap in `b`; the old value is released after the mutex is dropped (its
** release may free other structures). */
int tn_cell_set(tn_cell_t *c, tn_blob_t *b, double timeout) {
  if (TN_REMOTE(c)) return TN_BACKEND(c)->cell_set(c, b, timeout);
  int rc = tn_mutex_acquire(&c->mutex, timeout);
  if (rc != TN_OK) return rc;
  tn_blob_t *old = c->value;
  c->value = b;
  c->version++;
  pthread_mutex_unlock(&c->mutex);
  tn_blob_release(old);
  return TN_OK;
}
