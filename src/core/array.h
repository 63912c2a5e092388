/*
** array.h - the core array's layout and its element accessors, shared by
** array.c and the Lua binding (src/lua/larray.c), whose a[i] and a[i] = x
** read and write elements inline: through the public functions an access
** cost twice as much as the Lua work around it.
**
** Only for in-process arrays (object.backend == NULL): a cluster array is
** an rd_object_t, not this struct.
*/
#ifndef TN_ARRAY_H
#define TN_ARRAY_H

#include <string.h>

#include "internal.h"

struct tn_array {
  tn_object_t object;
  tn_dtype_t type;
  size_t size;         /* bytes per element */
  size_t n;
  unsigned char *data; /* n elements; a base's is aligned */
  tn_array_t *base;    /* the array whose memory a view shares (held) */
};

/* Whether `v` (in the member of `t`) is a value of type `t`. */
static inline bool tn_array_fits(tn_dtype_t t, tn_elem_t v) {
  switch (t) {
  case TN_INT8: return v.i >= INT8_MIN && v.i <= INT8_MAX;
  case TN_INT16: return v.i >= INT16_MIN && v.i <= INT16_MAX;
  case TN_INT32: return v.i >= INT32_MIN && v.i <= INT32_MAX;
  case TN_UINT8: return v.u <= UINT8_MAX;
  case TN_UINT16: return v.u <= UINT16_MAX;
  case TN_UINT32: return v.u <= UINT32_MAX;
  default: return true;
  }
}

/* Relaxed atomics: one plain move each, never torn, and visible as
** atomics to ThreadSanitizer. */
#define TN_ARRAY_LOAD(T, p) __atomic_load_n((T *)(p), __ATOMIC_RELAXED)
#define TN_ARRAY_STORE(T, p, x)                                              \
  __atomic_store_n((T *)(p), (T)(x), __ATOMIC_RELAXED)

static inline tn_elem_t tn_array_load(tn_dtype_t t, const void *p) {
  tn_elem_t v;
  switch (t) {
  case TN_DOUBLE: {
    double x;
    __atomic_load((double *)p, &x, __ATOMIC_RELAXED);
    v.f = x;
    break;
  }
  case TN_FLOAT: {
    float x;
    __atomic_load((float *)p, &x, __ATOMIC_RELAXED);
    v.f = x;
    break;
  }
  case TN_INT8: v.i = TN_ARRAY_LOAD(int8_t, p); break;
  case TN_INT16: v.i = TN_ARRAY_LOAD(int16_t, p); break;
  case TN_INT32: v.i = TN_ARRAY_LOAD(int32_t, p); break;
  case TN_INT64: v.i = TN_ARRAY_LOAD(int64_t, p); break;
  case TN_UINT8: v.u = TN_ARRAY_LOAD(uint8_t, p); break;
  case TN_UINT16: v.u = TN_ARRAY_LOAD(uint16_t, p); break;
  case TN_UINT32: v.u = TN_ARRAY_LOAD(uint32_t, p); break;
  default: v.u = TN_ARRAY_LOAD(uint64_t, p); break;
  }
  return v;
}

static inline void tn_array_store_elem(tn_dtype_t t, void *p, tn_elem_t v) {
  switch (t) {
  case TN_DOUBLE: {
    double x = v.f;
    __atomic_store((double *)p, &x, __ATOMIC_RELAXED);
    break;
  }
  case TN_FLOAT: {
    float x = (float)v.f;
    __atomic_store((float *)p, &x, __ATOMIC_RELAXED);
    break;
  }
  case TN_INT8: TN_ARRAY_STORE(int8_t, p, v.i); break;
  case TN_INT16: TN_ARRAY_STORE(int16_t, p, v.i); break;
  case TN_INT32: TN_ARRAY_STORE(int32_t, p, v.i); break;
  case TN_INT64: TN_ARRAY_STORE(int64_t, p, v.i); break;
  case TN_UINT8: TN_ARRAY_STORE(uint8_t, p, v.u); break;
  case TN_UINT16: TN_ARRAY_STORE(uint16_t, p, v.u); break;
  case TN_UINT32: TN_ARRAY_STORE(uint32_t, p, v.u); break;
  default: TN_ARRAY_STORE(uint64_t, p, v.u); break;
  }
}

#endif
