/*
** counter.c - an atomic 64-bit integer shared by threads.
**
** The value sits on a cache line of its own, away from the object header
** whose reference count other threads touch: false sharing would cost as
** much as true sharing (PERF.md point 5). malloc only promises 16-byte
** alignment, so the structure is placed by hand inside a larger block.
**
** Arithmetic is done on uint64_t, where wrap-around is defined; the
** conversion back to int64_t is two's complement on every compiler we use.
*/
#include <stdalign.h>
#include <stdint.h>

#include "internal.h"

#define CACHE_LINE 64

struct tn_counter {
  tn_object_t object;
  void *block;                          /* what tn_malloc returned */
  alignas(CACHE_LINE) _Atomic uint64_t value;
  char pad[CACHE_LINE - sizeof(uint64_t)]; /* keep the line to itself */
};

static void counter_destroy(tn_object_t *o) {
  tn_counter_t *c = (tn_counter_t *)o;
  void *block = c->block;
  tn_object_fini(&c->object);
  tn_free(block);
}

/* A new counter holding `value`, with one reference. TN_OK or TN_ENOMEM. */
int tn_counter_new(int64_t value, tn_counter_t **out) {
  void *block = tn_malloc(sizeof(tn_counter_t) + CACHE_LINE - 1);
  if (block == NULL) return TN_ENOMEM;
  uintptr_t at = ((uintptr_t)block + CACHE_LINE - 1) &
                 ~(uintptr_t)(CACHE_LINE - 1);
  tn_counter_t *c = (tn_counter_t *)at;
  tn_object_init(&c->object, TN_TYPE_COUNTER, counter_destroy);
  c->block = block;
  atomic_init(&c->value, (uint64_t)value);
  *out = c;
  return TN_OK;
}

int64_t tn_counter_add(tn_counter_t *c, int64_t delta) {
  if (TN_REMOTE(c)) return TN_BACKEND(c)->counter_add(c, delta);
  uint64_t d = (uint64_t)delta;
  return (int64_t)(atomic_fetch_add(&c->value, d) + d);
}

int64_t tn_counter_get(tn_counter_t *c) {
  if (TN_REMOTE(c)) return TN_BACKEND(c)->counter_get(c);
  return (int64_t)atomic_load(&c->value);
}

int64_t tn_counter_set(tn_counter_t *c, int64_t value) {
  if (TN_REMOTE(c)) return TN_BACKEND(c)->counter_set(c, value);
  return (int64_t)atomic_exchange(&c->value, (uint64_t)value);
}
