/*
** array.c - a typed numeric buffer shared by threads: the core of
** tunnel.Array, the replacement for the original's shared Torch tensors.
**
** An array is a shared object whose payload is one buffer aligned to
** TN_ARRAY_ALIGN bytes. A view is an array of its own (its own object,
** reference count and callback lock) that points into its base's buffer
** and holds a reference to the base, so the memory lives while any view
** does. Arrays hold no blobs: no cycle can pass through them, so they are
** not registered with the cycle collector.
**
** Nothing locks an element or a kernel: Hogwild training wants its races
** (DESIGN.md, "Shared numeric arrays"). Single elements are read and
** written with relaxed atomic loads and stores (plain moves on x86-64 and
** arm64): concurrent writers may overwrite each other's updates, but no
** element is ever torn. Kernels are plain loops, written for the
** compiler's vectoriser (this file is built with -O3, see the Makefile);
** they are not instrumented by ThreadSanitizer (TN_NO_TSAN): their races
** with other threads' accesses are by design, they touch only the user's
** numbers, never tunnel's own state, and TSan cannot tell a chosen race
** from a bug. Element accesses stay instrumented (they are atomics).
**
** Caveats:
** - Reductions over floats add into 8 partial sums (lane k takes the
**   elements i with i % 8 == k, in order), combined pairwise at the end:
**   the result is the same whatever the compiler vectorises, but not that
**   of a left-to-right sum.
** - Integer kernels compute in unsigned arithmetic of the element's width
**   (at least 32 bits): they wrap modulo 2^bits, never overflow.
*/
#include <math.h>
#include <string.h>

#include "array.h"

#if defined(__SANITIZE_THREAD__)
#define TN_NO_TSAN __attribute__((no_sanitize_thread))
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TN_NO_TSAN __attribute__((no_sanitize("thread")))
#endif
#endif
#ifndef TN_NO_TSAN
#define TN_NO_TSAN
#endif


/* ---- types --------------------------------------------------------------- */

static const struct {
  const char *name;
  size_t size;
} dtypes[] = {
    {NULL, 0},       {"double", 8}, {"float", 4},  {"int8", 1},
    {"int16", 2},    {"int32", 4},  {"int64", 8},  {"uint8", 1},
    {"uint16", 2},   {"uint32", 4}, {"uint64", 8},
};

#define NTYPES (sizeof dtypes / sizeof dtypes[0])

static bool valid_dtype(tn_dtype_t t) {
  return (unsigned)t >= 1 && (unsigned)t < NTYPES;
}

size_t tn_dtype_size(tn_dtype_t type) {
  return valid_dtype(type) ? dtypes[type].size : 0;
}

const char *tn_dtype_name(tn_dtype_t type) {
  return valid_dtype(type) ? dtypes[type].name : NULL;
}

int tn_dtype_from_name(const char *name, tn_dtype_t *out) {
  for (unsigned t = 1; name != NULL && t < NTYPES; t++)
    if (strcmp(name, dtypes[t].name) == 0) {
      *out = (tn_dtype_t)t;
      return TN_OK;
    }
  return TN_EINVAL;
}


/* ---- objects ------------------------------------------------------------- */

static void array_destroy(tn_object_t *o) {
  tn_array_t *a = (tn_array_t *)o;
  if (a->base != NULL)
    tn_object_release(TN_OBJECT(a->base)); /* iterative: object.c */
  else
    tn_free(a->data);
  tn_object_fini(&a->object);
  tn_free(a);
}

int tn_array_new(tn_dtype_t type, size_t n, tn_array_t **out) {
  if (!valid_dtype(type)) return TN_EINVAL;
  size_t size = tn_dtype_size(type);
  if (n > (SIZE_MAX - TN_ARRAY_ALIGN) / size) return TN_ENOMEM;
  /* Rounded up to whole alignment units, at least one: kernels may then
  ** be given whole vectors by a future version without reading past. */
  size_t bytes = (n * size + TN_ARRAY_ALIGN - 1) / TN_ARRAY_ALIGN *
                 TN_ARRAY_ALIGN;
  if (bytes == 0) bytes = TN_ARRAY_ALIGN;
  tn_array_t *a = tn_malloc(sizeof *a);
  if (a == NULL) return TN_ENOMEM;
  a->data = tn_malloc_aligned(TN_ARRAY_ALIGN, bytes);
  if (a->data == NULL) {
    tn_free(a);
    return TN_ENOMEM;
  }
  memset(a->data, 0, bytes);
  tn_object_init(&a->object, TN_TYPE_ARRAY, array_destroy);
  a->type = type;
  a->size = size;
  a->n = n;
  a->base = NULL;
  *out = a;
  return TN_OK;
}

int tn_array_view(tn_array_t *a, size_t first, size_t n, tn_array_t **out) {
  if (TN_REMOTE(a)) return TN_EINVAL;
  if (first > a->n || n > a->n - first) return TN_ERANGE;
  tn_array_t *v = tn_malloc(sizeof *v);
  if (v == NULL) return TN_ENOMEM;
  tn_array_t *base = tn_array_base(a);
  tn_object_init(&v->object, TN_TYPE_ARRAY, array_destroy);
  v->type = a->type;
  v->size = a->size;
  v->n = n;
  v->data = a->data + first * tn_dtype_size(a->type);
  v->base = (tn_array_t *)tn_object_retain(TN_OBJECT(base));
  *out = v;
  return TN_OK;
}

tn_array_t *tn_array_base(tn_array_t *a) {
  if (TN_REMOTE(a)) return a;
  return a->base != NULL ? a->base : a;
}

int tn_array_shape(tn_array_t *a, tn_dtype_t *type, size_t *n) {
  if (TN_REMOTE(a)) return TN_BACKEND(a)->array_shape(a, type, n);
  *type = a->type;
  *n = a->n;
  return TN_OK;
}

void *tn_array_data(const tn_array_t *a) {
  if (TN_REMOTE(a)) return NULL;
  return a->data;
}

/* ---- elements ------------------------------------------------------------ */

int tn_array_get(tn_array_t *a, size_t i, tn_elem_t *out) {
  if (TN_REMOTE(a)) return TN_BACKEND(a)->array_get(a, i, out);
  if (i >= a->n) return TN_ERANGE;
  *out = tn_array_load(a->type, a->data + i * tn_dtype_size(a->type));
  return TN_OK;
}

int tn_array_set(tn_array_t *a, size_t i, tn_elem_t v) {
  if (TN_REMOTE(a)) return TN_BACKEND(a)->array_set(a, i, v);
  if (i >= a->n) return TN_ERANGE;
  if (!tn_array_fits(a->type, v)) return TN_EINVAL;
  tn_array_store_elem(a->type, a->data + i * tn_dtype_size(a->type), v);
  return TN_OK;
}

/* A float element's add: a compare-and-swap loop over its bits. */
#define CAS_ADD(T, B, p, d, old)                                            \
  do {                                                                      \
    B *w_ = (B *)(p);                                                       \
    B bits_ = __atomic_load_n(w_, __ATOMIC_RELAXED), nbits_;                \
    T x_, y_;                                                               \
    do {                                                                    \
      memcpy(&x_, &bits_, sizeof x_);                                       \
      y_ = (T)(x_ + (T)(d));                                                \
      memcpy(&nbits_, &y_, sizeof y_);                                      \
    } while (!__atomic_compare_exchange_n(w_, &bits_, nbits_, true,         \
                                          __ATOMIC_RELAXED,                 \
                                          __ATOMIC_RELAXED));               \
    (old) = x_;                                                             \
  } while (0)

/* An integer element's add: fetch_add wraps (GCC's __atomic builtins are
** defined modulo 2^bits, also on signed types). */
#define INT_ADD(T, p, d) __atomic_fetch_add((T *)(p), (T)(d), __ATOMIC_RELAXED)

int tn_array_atomic_add(tn_array_t *a, size_t i, tn_elem_t delta,
                        tn_elem_t *old) {
  if (TN_REMOTE(a)) return TN_BACKEND(a)->array_atomic_add(a, i, delta, old);
  if (i >= a->n) return TN_ERANGE;
  void *p = a->data + i * tn_dtype_size(a->type);
  tn_elem_t v;
  switch (a->type) {
  case TN_DOUBLE: {
    double x;
    CAS_ADD(double, uint64_t, p, delta.f, x);
    v.f = x;
    break;
  }
  case TN_FLOAT: {
    float x;
    CAS_ADD(float, uint32_t, p, delta.f, x);
    v.f = x;
    break;
  }
  case TN_INT8: v.i = (int8_t)INT_ADD(uint8_t, p, delta.u); break;
  case TN_INT16: v.i = (int16_t)INT_ADD(uint16_t, p, delta.u); break;
  case TN_INT32: v.i = (int32_t)INT_ADD(uint32_t, p, delta.u); break;
  case TN_INT64: v.i = (int64_t)INT_ADD(uint64_t, p, delta.u); break;
  case TN_UINT8: v.u = INT_ADD(uint8_t, p, delta.u); break;
  case TN_UINT16: v.u = INT_ADD(uint16_t, p, delta.u); break;
  case TN_UINT32: v.u = INT_ADD(uint32_t, p, delta.u); break;
  default: v.u = INT_ADD(uint64_t, p, delta.u); break;
  }
  if (old != NULL) *old = v;
  return TN_OK;
}

/* ---- kernels ------------------------------------------------------------- */

/*
** One set of loops per type: T the element type, U the type the
** arithmetic is done in (unsigned, at least 32 bits, for the integer
** types: defined wrap-around and no promotion to int), A the accumulator
** of the reductions, S the scalar's member of tn_elem_t.
*/
#define LANES 8

#define KERNELS(NAME, T, U, A, NAN_AT)                                       \
  static TN_NO_TSAN void fill_##NAME(T *a, size_t n, T x) {                 \
    for (size_t i = 0; i < n; i++) a[i] = x;                                \
  }                                                                         \
  static TN_NO_TSAN void add_##NAME(T *a, const T *b, size_t n, U s) {      \
    for (size_t i = 0; i < n; i++) a[i] = (T)((U)a[i] + s * (U)b[i]);       \
  }                                                                         \
  static TN_NO_TSAN void mul_##NAME(T *a, const T *b, size_t n) {           \
    for (size_t i = 0; i < n; i++) a[i] = (T)((U)a[i] * (U)b[i]);           \
  }                                                                         \
  static TN_NO_TSAN void scale_##NAME(T *a, size_t n, U s) {                \
    for (size_t i = 0; i < n; i++) a[i] = (T)((U)a[i] * s);                 \
  }                                                                         \
  static TN_NO_TSAN A dot_##NAME(const T *a, const T *b, size_t n) {        \
    A acc[LANES] = {0};                                                     \
    size_t i = 0;                                                           \
    for (; i + LANES <= n; i += LANES)                                      \
      for (size_t k = 0; k < LANES; k++)                                    \
        acc[k] += (A)a[i + k] * (A)b[i + k];                                \
    for (size_t k = 0; i < n; i++, k++) acc[k] += (A)a[i] * (A)b[i];        \
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) +                        \
           ((acc[4] + acc[5]) + (acc[6] + acc[7]));                         \
  }                                                                         \
  static TN_NO_TSAN A sum_##NAME(const T *a, size_t n) {                    \
    A acc[LANES] = {0};                                                     \
    size_t i = 0;                                                           \
    for (; i + LANES <= n; i += LANES)                                      \
      for (size_t k = 0; k < LANES; k++) acc[k] += (A)a[i + k];             \
    for (size_t k = 0; i < n; i++, k++) acc[k] += (A)a[i];                  \
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) +                        \
           ((acc[4] + acc[5]) + (acc[6] + acc[7]));                         \
  }                                                                         \
  /* The first extreme (max: sign 1, min: -1); NaN never compares. */       \
  static TN_NO_TSAN size_t extreme_##NAME(const T *a, size_t n, int max) {  \
    size_t at = 0;                                                          \
    while (at < n && NAN_AT(a, at)) at++; /* leading NaNs */                 \
    if (at == n) return 0;                                                  \
    T m = a[at];                                                            \
    if (max) {                                                              \
      for (size_t i = at + 1; i < n; i++)                                   \
        if (a[i] > m) m = a[i], at = i;                                     \
    } else {                                                                \
      for (size_t i = at + 1; i < n; i++)                                   \
        if (a[i] < m) m = a[i], at = i;                                     \
    }                                                                       \
    return at;                                                              \
  }

#define FLOAT_NAN(a, i) isnan(a[i])
#define INT_NAN(a, i) ((void)(a), 0)

/* Floats: the arithmetic in the type itself; sums in double. */
KERNELS(double, double, double, double, FLOAT_NAN)
KERNELS(float, float, float, double, FLOAT_NAN)
KERNELS(int8, int8_t, uint32_t, uint64_t, INT_NAN)
KERNELS(int16, int16_t, uint32_t, uint64_t, INT_NAN)
KERNELS(int32, int32_t, uint32_t, uint64_t, INT_NAN)
KERNELS(int64, int64_t, uint64_t, uint64_t, INT_NAN)
KERNELS(uint8, uint8_t, uint32_t, uint64_t, INT_NAN)
KERNELS(uint16, uint16_t, uint32_t, uint64_t, INT_NAN)
KERNELS(uint32, uint32_t, uint32_t, uint64_t, INT_NAN)
KERNELS(uint64, uint64_t, uint64_t, uint64_t, INT_NAN)

#define D(T, a) ((T *)(a)->data)

static bool same_shape(const tn_array_t *a, const tn_array_t *b) {
  return a->type == b->type && a->n == b->n;
}

int tn_array_fill(tn_array_t *a, tn_elem_t x) {
  if (TN_REMOTE(a)) return TN_EINVAL;
  if (!tn_array_fits(a->type, x)) return TN_EINVAL;
  size_t n = a->n;
  switch (a->type) {
  case TN_DOUBLE: fill_double(D(double, a), n, x.f); break;
  case TN_FLOAT: fill_float(D(float, a), n, (float)x.f); break;
  case TN_INT8: fill_int8(D(int8_t, a), n, (int8_t)x.i); break;
  case TN_INT16: fill_int16(D(int16_t, a), n, (int16_t)x.i); break;
  case TN_INT32: fill_int32(D(int32_t, a), n, (int32_t)x.i); break;
  case TN_INT64: fill_int64(D(int64_t, a), n, x.i); break;
  case TN_UINT8: fill_uint8(D(uint8_t, a), n, (uint8_t)x.u); break;
  case TN_UINT16: fill_uint16(D(uint16_t, a), n, (uint16_t)x.u); break;
  case TN_UINT32: fill_uint32(D(uint32_t, a), n, (uint32_t)x.u); break;
  default: fill_uint64(D(uint64_t, a), n, x.u); break;
  }
  return TN_OK;
}

/* Where `b` is a cluster array: a fetched copy to work from (released by
** the caller), else `b` itself with no new reference. */
static int local_source(tn_array_t *b, tn_array_t **src, bool *fetched) {
  *fetched = false;
  *src = b;
  if (!TN_REMOTE(b)) return TN_OK;
  int rc = tn_array_fetch(b, src, NULL);
  if (rc == TN_OK) *fetched = true;
  return rc;
}

static TN_NO_TSAN void copy_bytes(void *to, const void *from, size_t n) {
  memmove(to, from, n);
}

int tn_array_copy(tn_array_t *a, tn_array_t *b) {
  tn_array_t *src;
  bool fetched;
  int rc = local_source(b, &src, &fetched);
  if (rc != TN_OK) return rc;
  if (TN_REMOTE(a)) {
    rc = TN_BACKEND(a)->array_store(a, src);
  } else if (!same_shape(a, src)) {
    rc = TN_EINVAL;
  } else if (a->data != src->data) {
    copy_bytes(a->data, src->data, a->n * tn_dtype_size(a->type));
  }
  if (fetched) tn_object_release(TN_OBJECT(src));
  return rc;
}

int tn_array_add(tn_array_t *a, tn_array_t *b, tn_elem_t s) {
  tn_array_t *src;
  bool fetched;
  int rc = local_source(b, &src, &fetched);
  if (rc != TN_OK) return rc;
  if (TN_REMOTE(a)) {
    rc = TN_BACKEND(a)->array_add(a, src, s);
  } else if (!same_shape(a, src)) {
    rc = TN_EINVAL;
  } else {
    size_t n = a->n;
    switch (a->type) {
    case TN_DOUBLE: add_double(D(double, a), D(double, src), n, s.f); break;
    case TN_FLOAT:
      add_float(D(float, a), D(float, src), n, (float)s.f);
      break;
    case TN_INT8:
      add_int8(D(int8_t, a), D(int8_t, src), n, (uint32_t)s.u);
      break;
    case TN_INT16:
      add_int16(D(int16_t, a), D(int16_t, src), n, (uint32_t)s.u);
      break;
    case TN_INT32:
      add_int32(D(int32_t, a), D(int32_t, src), n, (uint32_t)s.u);
      break;
    case TN_INT64: add_int64(D(int64_t, a), D(int64_t, src), n, s.u); break;
    case TN_UINT8:
      add_uint8(D(uint8_t, a), D(uint8_t, src), n, (uint32_t)s.u);
      break;
    case TN_UINT16:
      add_uint16(D(uint16_t, a), D(uint16_t, src), n, (uint32_t)s.u);
      break;
    case TN_UINT32:
      add_uint32(D(uint32_t, a), D(uint32_t, src), n, (uint32_t)s.u);
      break;
    default: add_uint64(D(uint64_t, a), D(uint64_t, src), n, s.u); break;
    }
  }
  if (fetched) tn_object_release(TN_OBJECT(src));
  return rc;
}

int tn_array_mul(tn_array_t *a, tn_array_t *b) {
  if (TN_REMOTE(a) || TN_REMOTE(b) || !same_shape(a, b)) return TN_EINVAL;
  size_t n = a->n;
  void *x = a->data;
  const void *y = b->data;
  switch (a->type) {
  case TN_DOUBLE: mul_double(x, y, n); break;
  case TN_FLOAT: mul_float(x, y, n); break;
  case TN_INT8: mul_int8(x, y, n); break;
  case TN_INT16: mul_int16(x, y, n); break;
  case TN_INT32: mul_int32(x, y, n); break;
  case TN_INT64: mul_int64(x, y, n); break;
  case TN_UINT8: mul_uint8(x, y, n); break;
  case TN_UINT16: mul_uint16(x, y, n); break;
  case TN_UINT32: mul_uint32(x, y, n); break;
  default: mul_uint64(x, y, n); break;
  }
  return TN_OK;
}

int tn_array_scale(tn_array_t *a, tn_elem_t s) {
  if (TN_REMOTE(a)) return TN_EINVAL;
  size_t n = a->n;
  switch (a->type) {
  case TN_DOUBLE: scale_double(D(double, a), n, s.f); break;
  case TN_FLOAT: scale_float(D(float, a), n, (float)s.f); break;
  case TN_INT8: scale_int8(D(int8_t, a), n, (uint32_t)s.u); break;
  case TN_INT16: scale_int16(D(int16_t, a), n, (uint32_t)s.u); break;
  case TN_INT32: scale_int32(D(int32_t, a), n, (uint32_t)s.u); break;
  case TN_INT64: scale_int64(D(int64_t, a), n, s.u); break;
  case TN_UINT8: scale_uint8(D(uint8_t, a), n, (uint32_t)s.u); break;
  case TN_UINT16: scale_uint16(D(uint16_t, a), n, (uint32_t)s.u); break;
  case TN_UINT32: scale_uint32(D(uint32_t, a), n, (uint32_t)s.u); break;
  default: scale_uint64(D(uint64_t, a), n, s.u); break;
  }
  return TN_OK;
}

/* A 64-bit integer accumulator as the member of the array's kind. */
static tn_elem_t int_result(tn_dtype_t t, uint64_t acc) {
  tn_elem_t v;
  if (t == TN_INT8 || t == TN_INT16 || t == TN_INT32 || t == TN_INT64)
    v.i = (int64_t)acc; /* modulo 2^64: GCC's conversion */
  else
    v.u = acc;
  return v;
}

int tn_array_dot(tn_array_t *a, tn_array_t *b, tn_elem_t *out) {
  if (TN_REMOTE(a) || TN_REMOTE(b) || !same_shape(a, b)) return TN_EINVAL;
  size_t n = a->n;
  const void *x = a->data, *y = b->data;
  uint64_t acc = 0;
  switch (a->type) {
  case TN_DOUBLE: out->f = dot_double(x, y, n); return TN_OK;
  case TN_FLOAT: out->f = dot_float(x, y, n); return TN_OK;
  case TN_INT8: acc = dot_int8(x, y, n); break;
  case TN_INT16: acc = dot_int16(x, y, n); break;
  case TN_INT32: acc = dot_int32(x, y, n); break;
  case TN_INT64: acc = dot_int64(x, y, n); break;
  case TN_UINT8: acc = dot_uint8(x, y, n); break;
  case TN_UINT16: acc = dot_uint16(x, y, n); break;
  case TN_UINT32: acc = dot_uint32(x, y, n); break;
  default: acc = dot_uint64(x, y, n); break;
  }
  *out = int_result(a->type, acc);
  return TN_OK;
}

int tn_array_sum(tn_array_t *a, tn_elem_t *out) {
  if (TN_REMOTE(a)) return TN_EINVAL;
  size_t n = a->n;
  const void *x = a->data;
  uint64_t acc = 0;
  switch (a->type) {
  case TN_DOUBLE: out->f = sum_double(x, n); return TN_OK;
  case TN_FLOAT: out->f = sum_float(x, n); return TN_OK;
  case TN_INT8: acc = sum_int8(x, n); break;
  case TN_INT16: acc = sum_int16(x, n); break;
  case TN_INT32: acc = sum_int32(x, n); break;
  case TN_INT64: acc = sum_int64(x, n); break;
  case TN_UINT8: acc = sum_uint8(x, n); break;
  case TN_UINT16: acc = sum_uint16(x, n); break;
  case TN_UINT32: acc = sum_uint32(x, n); break;
  default: acc = sum_uint64(x, n); break;
  }
  *out = int_result(a->type, acc);
  return TN_OK;
}

static int extreme(tn_array_t *a, tn_elem_t *out, size_t *index, int max) {
  if (TN_REMOTE(a)) return TN_EINVAL;
  if (a->n == 0) return TN_ERANGE;
  size_t n = a->n, at = 0;
  const void *x = a->data;
  switch (a->type) {
  case TN_DOUBLE: at = extreme_double(x, n, max); break;
  case TN_FLOAT: at = extreme_float(x, n, max); break;
  case TN_INT8: at = extreme_int8(x, n, max); break;
  case TN_INT16: at = extreme_int16(x, n, max); break;
  case TN_INT32: at = extreme_int32(x, n, max); break;
  case TN_INT64: at = extreme_int64(x, n, max); break;
  case TN_UINT8: at = extreme_uint8(x, n, max); break;
  case TN_UINT16: at = extreme_uint16(x, n, max); break;
  case TN_UINT32: at = extreme_uint32(x, n, max); break;
  default: at = extreme_uint64(x, n, max); break;
  }
  *out = tn_array_load(a->type, a->data + at * tn_dtype_size(a->type));
  if (index != NULL) *index = at;
  return TN_OK;
}

int tn_array_min(tn_array_t *a, tn_elem_t *out, size_t *index) {
  return extreme(a, out, index, 0);
}

int tn_array_max(tn_array_t *a, tn_elem_t *out, size_t *index) {
  return extreme(a, out, index, 1);
}

/* ---- copies and versions ------------------------------------------------- */

int tn_array_fetch(tn_array_t *a, tn_array_t **copy, uint64_t *version) {
  if (TN_REMOTE(a)) return TN_BACKEND(a)->array_fetch(a, copy, version);
  tn_array_t *c;
  int rc = tn_array_new(a->type, a->n, &c);
  if (rc != TN_OK) return rc;
  copy_bytes(c->data, a->data, a->n * tn_dtype_size(a->type));
  if (version != NULL) *version = 0;
  *copy = c;
  return TN_OK;
}

int tn_array_version(tn_array_t *a, uint64_t *version) {
  if (TN_REMOTE(a)) return TN_BACKEND(a)->array_version(a, version);
  return TN_EINVAL;
}
