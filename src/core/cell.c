/*
** cell.c - one value per object: the core of tunnel.Share and
** tunnel.Atomic.
**
** The value changes only through tn_cell_set, which Atomic:write calls
** (under the object's callback lock) to store its data back. For an
** in-process Atomic that data is a shared table, so the stored value is a
** reference to the same table and nothing observable changes; for a
** cluster Atomic (src/redis) it is the copy the callback changed.
**
** Reads take no lock (share.data from every thread of a block is the hot
** path): the value is an atomic pointer, read inside an epoch (ebr.c) and
** copied out or retained there. A set swaps it under a short mutex (sets
** among themselves) and keeps the old value until no reader can hold it:
** the next set releases it, or waits for the readers first in the rare
** case they are still inside (tn_ebr_synchronize). tn_cell_value reads the
** pointer as it is, for the callers that know the value does not change
** (Share).
**
** Caveat: a borrowed tn_cell_value pointer is valid only until the next
** tn_cell_set; code that may race a set must use tn_cell_get.
*/
#include "internal.h"

struct tn_cell {
  tn_object_t object;
  pthread_mutex_t mutex;     /* orders sets; guards `old` */
  _Atomic(tn_blob_t *) value; /* may be NULL (nil) */
  tn_blob_t *old;            /* the value before the last set, retired */
  uint64_t old_tag;          /* its epoch tag (ebr.c) */
  uint64_t version;          /* sets so far (for the collector) */
};

static inline tn_blob_t *value_of(const tn_cell_t *c) {
  return atomic_load_explicit(&((tn_cell_t *)c)->value, memory_order_relaxed);
}

static void cell_destroy(tn_object_t *o) {
  tn_cell_t *c = (tn_cell_t *)o;
  tn_blob_release(value_of(c));
  tn_blob_release(c->old);
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
  if (value_of(c) != NULL) visit(value_of(c), arg);
  if (c->old != NULL) visit(c->old, arg); /* still the cell's own */
}

static uint64_t cell_gc_version(tn_object_t *o) {
  return ((tn_cell_t *)o)->version;
}

/* Unreachable, so no thread reads it (a reader would hold a reference):
** both values go at once. */
static void cell_gc_clear(tn_object_t *o) {
  tn_cell_t *c = (tn_cell_t *)o;
  pthread_mutex_lock(&c->mutex);
  tn_blob_t *b = atomic_exchange(&c->value, NULL), *old = c->old;
  c->old = NULL;
  c->version++;
  pthread_mutex_unlock(&c->mutex);
  tn_blob_release(b);
  tn_blob_release(old);
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
  atomic_init(&c->value, b);
  c->old = NULL;
  c->old_tag = 0;
  c->version = 0;
  tn_gc_register(&c->object, &cell_gc);
  *out = c;
  return TN_OK;
}

tn_blob_t *tn_cell_value(const tn_cell_t *c) {
  if (TN_REMOTE(c)) return NULL;
  return value_of(c);
}

int tn_cell_peek(tn_cell_t *c, tn_peek_t *p, double timeout) {
  if (TN_REMOTE(c)) {
    tn_blob_t *b = NULL;
    int rc = TN_BACKEND(c)->cell_get(c, &b, timeout);
    if (rc != TN_OK) return rc;
    tn_peek_value(b, p);
    tn_blob_release(b);
    return TN_OK;
  }
  (void)timeout; /* never waits */
  /* Inside the epoch, the value we load stays alive (a set retires it);
  ** without a record, the mutex keeps sets out instead. */
  tn_ebr_thread_t *e = tn_ebr_enter();
  if (e == NULL) pthread_mutex_lock(&c->mutex);
  tn_peek_value(atomic_load_explicit(&c->value, memory_order_acquire), p);
  if (e == NULL)
    pthread_mutex_unlock(&c->mutex);
  else
    tn_ebr_leave(e);
  return TN_OK;
}

/* A new reference to the value. */
int tn_cell_get(tn_cell_t *c, tn_blob_t **out, double timeout) {
  if (TN_REMOTE(c)) return TN_BACKEND(c)->cell_get(c, out, timeout);
  tn_peek_t p = {.take = 1};
  int rc = tn_cell_peek(c, &p, timeout);
  if (rc == TN_OK) *out = p.blob;
  return rc;
}

/*
** Swap in `b`. The value before the last set goes now: it was retired
** then, and has normally expired since (if a reader is still inside, wait
** for it, outside the mutex); the value this set replaces is retired in
** its place. Releases happen after the mutex is dropped (a release may
** free other structures).
*/
int tn_cell_set(tn_cell_t *c, tn_blob_t *b, double timeout) {
  if (TN_REMOTE(c)) return TN_BACKEND(c)->cell_set(c, b, timeout);
  int rc = tn_mutex_acquire(&c->mutex, timeout);
  if (rc != TN_OK) return rc;
  tn_blob_t *gone = c->old;
  uint64_t gone_tag = c->old_tag;
  c->old = atomic_exchange_explicit(&c->value, b, memory_order_acq_rel);
  c->old_tag = tn_ebr_tag();
  c->version++;
  pthread_mutex_unlock(&c->mutex);
  if (gone != NULL) {
    if (!tn_ebr_expired(gone_tag, tn_ebr_advance()))
      tn_ebr_synchronize(gone_tag);
    tn_blob_release(gone);
  }
  return TN_OK;
}
