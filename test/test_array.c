/*
** test_array.c - the numeric array: types, bounds, views, every kernel
** against a plain loop, exact atomic adds from several threads, and
** allocation failures that leave nothing behind.
*/
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "test.h"

static const tn_dtype_t all_types[] = {
    TN_DOUBLE, TN_FLOAT,  TN_INT8,   TN_INT16,  TN_INT32,
    TN_INT64,  TN_UINT8,  TN_UINT16, TN_UINT32, TN_UINT64};
#define NTYPES (sizeof all_types / sizeof all_types[0])

static bool is_float(tn_dtype_t t) { return t == TN_DOUBLE || t == TN_FLOAT; }
static bool is_signed(tn_dtype_t t) {
  return t == TN_INT8 || t == TN_INT16 || t == TN_INT32 || t == TN_INT64;
}

/* A small integer as an element of `t`. */
static tn_elem_t num(tn_dtype_t t, long v) {
  tn_elem_t e;
  if (is_float(t))
    e.f = (double)v;
  else if (is_signed(t))
    e.i = v;
  else
    e.u = (uint64_t)v;
  return e;
}

/* An element of `t` as a long (the values here are small). */
static long long_of_elem(tn_dtype_t t, tn_elem_t e) {
  if (is_float(t)) return (long)e.f;
  return is_signed(t) ? (long)e.i : (long)e.u;
}

static long get_long(tn_array_t *a, size_t i) {
  tn_elem_t e;
  tn_dtype_t t;
  size_t n;
  tn_array_shape(a, &t, &n);
  if (tn_array_get(a, i, &e) != TN_OK) return -999999;
  return long_of_elem(t, e);
}

TEST(array_types, "every element type has a name, a size and a round trip") {
  static const size_t sizes[] = {8, 4, 1, 2, 4, 8, 1, 2, 4, 8};
  for (size_t k = 0; k < NTYPES; k++) {
    tn_dtype_t t = all_types[k], back;
    CHECK_INT(tn_dtype_size(t), sizes[k]);
    CHECK(tn_dtype_name(t) != NULL);
    CHECK_RC(tn_dtype_from_name(tn_dtype_name(t), &back), TN_OK);
    CHECK_INT(back, t);
  }
  tn_dtype_t t = TN_DOUBLE;
  CHECK_RC(tn_dtype_from_name("complex", &t), TN_EINVAL);
  CHECK_RC(tn_dtype_from_name(NULL, &t), TN_EINVAL);
  CHECK_INT(t, TN_DOUBLE);
  CHECK_INT(tn_dtype_size((tn_dtype_t)0), 0);
  CHECK_INT(tn_dtype_size((tn_dtype_t)11), 0);
  CHECK(tn_dtype_name((tn_dtype_t)11) == NULL);
  tn_array_t *a = NULL;
  CHECK_RC(tn_array_new((tn_dtype_t)0, 4, &a), TN_EINVAL);
  CHECK_RC(tn_array_new((tn_dtype_t)11, 4, &a), TN_EINVAL);
  CHECK_RC(tn_array_new(TN_DOUBLE, SIZE_MAX / 4, &a), TN_ENOMEM);
  CHECK(a == NULL);
}

TEST(array_new_zero_aligned,
     "a new array is zero, aligned to 64 bytes, and of its type and size") {
  for (size_t k = 0; k < NTYPES; k++) {
    tn_array_t *a;
    CHECK_RC(tn_array_new(all_types[k], 37, &a), TN_OK);
    CHECK_INT((uintptr_t)tn_array_data(a) % TN_ARRAY_ALIGN, 0);
    CHECK_INT(tn_object_type(TN_OBJECT(a)), TN_TYPE_ARRAY);
    CHECK(!tn_object_is_remote(TN_OBJECT(a)));
    tn_dtype_t t;
    size_t n;
    CHECK_RC(tn_array_shape(a, &t, &n), TN_OK);
    CHECK_INT(t, all_types[k]);
    CHECK_INT(n, 37);
    for (size_t i = 0; i < 37; i++) CHECK_INT(get_long(a, i), 0);
    tn_object_release(TN_OBJECT(a));
  }
  tn_array_t *e;
  CHECK_RC(tn_array_new(TN_FLOAT, 0, &e), TN_OK);
  tn_elem_t v;
  CHECK_RC(tn_array_get(e, 0, &v), TN_ERANGE);
  CHECK_RC(tn_array_sum(e, &v), TN_OK);
  CHECK(v.f == 0);
  CHECK_RC(tn_array_min(e, &v, NULL), TN_ERANGE);
  tn_object_release(TN_OBJECT(e));
}

TEST(array_bounds_and_ranges,
     "out-of-range indexes and values are refused and nothing is written") {
  tn_array_t *a;
  CHECK_RC(tn_array_new(TN_INT8, 4, &a), TN_OK);
  tn_elem_t v = {.i = 5};
  CHECK_RC(tn_array_set(a, 4, v), TN_ERANGE);
  CHECK_RC(tn_array_set(a, SIZE_MAX, v), TN_ERANGE);
  CHECK_RC(tn_array_get(a, 4, &v), TN_ERANGE);
  CHECK_RC(tn_array_atomic_add(a, 4, v, NULL), TN_ERANGE);
  v.i = 128;
  CHECK_RC(tn_array_set(a, 0, v), TN_EINVAL);
  CHECK_RC(tn_array_fill(a, v), TN_EINVAL);
  v.i = -129;
  CHECK_RC(tn_array_set(a, 1, v), TN_EINVAL);
  v.i = -128;
  CHECK_RC(tn_array_set(a, 2, v), TN_OK);
  v.i = 127;
  CHECK_RC(tn_array_set(a, 3, v), TN_OK);
  CHECK_INT(get_long(a, 0), 0);
  CHECK_INT(get_long(a, 1), 0);
  CHECK_INT(get_long(a, 2), -128);
  CHECK_INT(get_long(a, 3), 127);
  tn_object_release(TN_OBJECT(a));

  CHECK_RC(tn_array_new(TN_UINT16, 2, &a), TN_OK);
  v.u = 65536;
  CHECK_RC(tn_array_set(a, 0, v), TN_EINVAL);
  v.u = UINT64_MAX; /* a -1 seen as unsigned */
  CHECK_RC(tn_array_set(a, 0, v), TN_EINVAL);
  v.u = 65535;
  CHECK_RC(tn_array_set(a, 1, v), TN_OK);
  CHECK_INT(get_long(a, 0), 0);
  CHECK_INT(get_long(a, 1), 65535);
  tn_object_release(TN_OBJECT(a));

  /* 64-bit types take their whole range. */
  CHECK_RC(tn_array_new(TN_UINT64, 1, &a), TN_OK);
  v.u = UINT64_MAX;
  CHECK_RC(tn_array_set(a, 0, v), TN_OK);
  CHECK_RC(tn_array_get(a, 0, &v), TN_OK);
  CHECK(v.u == UINT64_MAX);
  tn_object_release(TN_OBJECT(a));
  CHECK_RC(tn_array_new(TN_INT64, 1, &a), TN_OK);
  v.i = INT64_MIN;
  CHECK_RC(tn_array_set(a, 0, v), TN_OK);
  CHECK_RC(tn_array_get(a, 0, &v), TN_OK);
  CHECK(v.i == INT64_MIN);
  tn_object_release(TN_OBJECT(a));

  /* A float element rounds; a double out of its range becomes infinite. */
  CHECK_RC(tn_array_new(TN_FLOAT, 2, &a), TN_OK);
  v.f = 0.1;
  CHECK_RC(tn_array_set(a, 0, v), TN_OK);
  CHECK_RC(tn_array_get(a, 0, &v), TN_OK);
  CHECK(v.f == (double)0.1f);
  v.f = 1e300;
  CHECK_RC(tn_array_set(a, 1, v), TN_OK);
  CHECK_RC(tn_array_get(a, 1, &v), TN_OK);
  CHECK(isinf(v.f));
  tn_object_release(TN_OBJECT(a));
}

TEST(array_views, "a view shares its base's memory, keeps it alive, nests") {
  tn_array_t *a, *v, *w;
  CHECK_RC(tn_array_new(TN_INT32, 10, &a), TN_OK);
  for (size_t i = 0; i < 10; i++) tn_array_set(a, i, num(TN_INT32, (long)i));
  CHECK_RC(tn_array_view(a, 11, 0, &v), TN_ERANGE);
  CHECK_RC(tn_array_view(a, 3, 8, &v), TN_ERANGE);
  CHECK_RC(tn_array_view(a, 1, SIZE_MAX, &v), TN_ERANGE);
  CHECK_RC(tn_array_view(a, 10, 0, &v), TN_OK); /* empty, at the end */
  tn_object_release(TN_OBJECT(v));
  CHECK_RC(tn_array_view(a, 2, 6, &v), TN_OK); /* a[2..7] */
  CHECK_RC(tn_array_view(v, 1, 3, &w), TN_OK); /* a[3..5] */
  CHECK(tn_array_base(w) == a);
  CHECK(tn_array_base(v) == a);
  CHECK(tn_array_base(a) == a);
  CHECK(tn_array_data(w) == (char *)tn_array_data(a) + 3 * 4);
  CHECK_INT(get_long(v, 0), 2);
  CHECK_INT(get_long(w, 0), 3);
  CHECK_RC(tn_array_get(w, 3, &(tn_elem_t){0}), TN_ERANGE);
  tn_array_set(w, 2, num(TN_INT32, 50));
  CHECK_INT(get_long(a, 5), 50);
  CHECK_INT(get_long(v, 3), 50);
  CHECK_RC(tn_array_fill(w, num(TN_INT32, 7)), TN_OK);
  CHECK_INT(get_long(a, 2), 2);
  CHECK_INT(get_long(a, 3), 7);
  CHECK_INT(get_long(a, 5), 7);
  CHECK_INT(get_long(a, 6), 6);
  /* The base goes; the views keep the memory. */
  tn_object_release(TN_OBJECT(a));
  tn_object_release(TN_OBJECT(v));
  CHECK_INT(get_long(w, 1), 7);
  tn_elem_t s;
  CHECK_RC(tn_array_sum(w, &s), TN_OK);
  CHECK_INT(s.i, 21);
  tn_object_release(TN_OBJECT(w));
}

/* Deterministic pseudo-random small integers. */
static unsigned long lcg(unsigned long *state) {
  *state = *state * 6364136223846793005UL + 1442695040888963407UL;
  return *state >> 33;
}

/* A plain reference value of `t` from a small integer (wrapped as the
** type would). */
static long wrap_long(tn_dtype_t t, long v) {
  switch (t) {
  case TN_INT8: return (int8_t)v;
  case TN_INT16: return (int16_t)v;
  case TN_INT32: return (int32_t)v;
  case TN_UINT8: return (uint8_t)v;
  case TN_UINT16: return (uint16_t)v;
  case TN_UINT32: return (long)(uint32_t)v;
  default: return v;
  }
}

TEST(array_kernels_match_plain_loops,
     "fill, copy, add, mul, scale, dot, sum, min and max match a plain loop "
     "for every type, at every length around the vector width") {
  unsigned long seed = 42;
  for (size_t k = 0; k < NTYPES; k++) {
    tn_dtype_t t = all_types[k];
    bool sgn = is_float(t) || is_signed(t);
    for (size_t n = 0; n <= 37; n += (n < 20 ? 1 : 17)) {
      tn_array_t *a, *b;
      CHECK_RC(tn_array_new(t, n, &a), TN_OK);
      CHECK_RC(tn_array_new(t, n, &b), TN_OK);
      long ra[64], rb[64];
      for (size_t i = 0; i < n; i++) {
        long x = (long)(lcg(&seed) % 21) - (sgn ? 10 : 0);
        long y = (long)(lcg(&seed) % 21) - (sgn ? 10 : 0);
        ra[i] = x;
        rb[i] = y;
        CHECK_RC(tn_array_set(a, i, num(t, x)), TN_OK);
        CHECK_RC(tn_array_set(b, i, num(t, y)), TN_OK);
      }
      /* dot, sum, min, max */
      long dot = 0, sum = 0;
      size_t imin = 0, imax = 0;
      for (size_t i = 0; i < n; i++) {
        dot += ra[i] * rb[i];
        sum += ra[i];
        if (ra[i] < ra[imin]) imin = i;
        if (ra[i] > ra[imax]) imax = i;
      }
      tn_elem_t r;
      CHECK_RC(tn_array_dot(a, b, &r), TN_OK);
      CHECK_INT(long_of_elem(t, r), dot);
      CHECK_RC(tn_array_sum(a, &r), TN_OK);
      CHECK_INT(long_of_elem(t, r), sum);
      if (n > 0) {
        size_t at = 99;
        CHECK_RC(tn_array_min(a, &r, &at), TN_OK);
        CHECK_INT(long_of_elem(t, r), ra[imin]);
        CHECK_INT(at, imin);
        CHECK_RC(tn_array_max(a, &r, &at), TN_OK);
        CHECK_INT(long_of_elem(t, r), ra[imax]);
        CHECK_INT(at, imax);
      }
      /* add with a factor of 3, mul, scale by -2 (unsigned: wraps) */
      CHECK_RC(tn_array_add(a, b, num(t, 3)), TN_OK);
      for (size_t i = 0; i < n; i++) ra[i] = wrap_long(t, ra[i] + 3 * rb[i]);
      for (size_t i = 0; i < n; i++) CHECK_INT(get_long(a, i), ra[i]);
      CHECK_RC(tn_array_mul(a, b), TN_OK);
      for (size_t i = 0; i < n; i++) ra[i] = wrap_long(t, ra[i] * rb[i]);
      for (size_t i = 0; i < n; i++) CHECK_INT(get_long(a, i), ra[i]);
      tn_elem_t m2 = num(t, -2);
      if (!sgn) m2.u = (uint64_t)-2; /* a factor wraps like the sums */
      CHECK_RC(tn_array_scale(a, m2), TN_OK);
      for (size_t i = 0; i < n; i++) ra[i] = wrap_long(t, ra[i] * -2);
      for (size_t i = 0; i < n; i++) CHECK_INT(get_long(a, i), ra[i]);
      /* copy and fill */
      CHECK_RC(tn_array_copy(a, b), TN_OK);
      for (size_t i = 0; i < n; i++) CHECK_INT(get_long(a, i), rb[i]);
      CHECK_RC(tn_array_fill(b, num(t, 9)), TN_OK);
      for (size_t i = 0; i < n; i++) CHECK_INT(get_long(b, i), 9);
      for (size_t i = 0; i < n; i++) CHECK_INT(get_long(a, i), rb[i]);
      tn_object_release(TN_OBJECT(a));
      tn_object_release(TN_OBJECT(b));
    }
  }
}

TEST(array_kernels_refuse_mismatches,
     "binary kernels refuse another type or size and change nothing") {
  tn_array_t *a, *b, *c;
  CHECK_RC(tn_array_new(TN_DOUBLE, 4, &a), TN_OK);
  CHECK_RC(tn_array_new(TN_FLOAT, 4, &b), TN_OK);
  CHECK_RC(tn_array_new(TN_DOUBLE, 5, &c), TN_OK);
  tn_array_fill(a, (tn_elem_t){.f = 1});
  tn_array_fill(b, (tn_elem_t){.f = 2});
  tn_array_fill(c, (tn_elem_t){.f = 3});
  tn_elem_t r = {.f = -1};
  CHECK_RC(tn_array_copy(a, b), TN_EINVAL);
  CHECK_RC(tn_array_copy(a, c), TN_EINVAL);
  CHECK_RC(tn_array_add(a, b, (tn_elem_t){.f = 1}), TN_EINVAL);
  CHECK_RC(tn_array_add(a, c, (tn_elem_t){.f = 1}), TN_EINVAL);
  CHECK_RC(tn_array_mul(a, c), TN_EINVAL);
  CHECK_RC(tn_array_dot(a, c, &r), TN_EINVAL);
  CHECK(r.f == -1);
  CHECK_RC(tn_array_sum(a, &r), TN_OK);
  CHECK(r.f == 4);
  CHECK_RC(tn_array_version(a, &(uint64_t){0}), TN_EINVAL);
  tn_object_release(TN_OBJECT(a));
  tn_object_release(TN_OBJECT(b));
  tn_object_release(TN_OBJECT(c));
}

TEST(array_float_kernels, "float kernels: fractions, NaN in min and max, "
                          "float sums in double, overlapping views") {
  tn_array_t *a, *b;
  CHECK_RC(tn_array_new(TN_DOUBLE, 5, &a), TN_OK);
  CHECK_RC(tn_array_new(TN_DOUBLE, 5, &b), TN_OK);
  double x[] = {NAN, 0.5, -2.25, NAN, 3.0};
  for (size_t i = 0; i < 5; i++) tn_array_set(a, i, (tn_elem_t){.f = x[i]});
  tn_elem_t r;
  size_t at;
  CHECK_RC(tn_array_min(a, &r, &at), TN_OK);
  CHECK(r.f == -2.25);
  CHECK_INT(at, 2);
  CHECK_RC(tn_array_max(a, &r, &at), TN_OK);
  CHECK(r.f == 3.0);
  CHECK_INT(at, 4);
  tn_array_fill(b, (tn_elem_t){.f = NAN});
  CHECK_RC(tn_array_max(b, &r, &at), TN_OK);
  CHECK(isnan(r.f));
  CHECK_INT(at, 0);
  tn_array_fill(b, (tn_elem_t){.f = 0.25});
  tn_array_set(a, 0, (tn_elem_t){.f = 1});
  tn_array_set(a, 3, (tn_elem_t){.f = 1});
  CHECK_RC(tn_array_add(a, b, (tn_elem_t){.f = -4}), TN_OK); /* a -= b*4 */
  CHECK_RC(tn_array_get(a, 2, &r), TN_OK);
  CHECK(r.f == -3.25);
  CHECK_RC(tn_array_dot(a, b, &r), TN_OK); /* (0 - 0.5 - 3.25 + 0 + 2) / 4 */
  CHECK(r.f == -1.75 / 4);
  tn_object_release(TN_OBJECT(a));
  tn_object_release(TN_OBJECT(b));

  /* Float elements summed in double: 2^24 + 1 + 1 ... is not lost. */
  tn_array_t *f;
  CHECK_RC(tn_array_new(TN_FLOAT, 17, &f), TN_OK);
  tn_array_fill(f, (tn_elem_t){.f = 1});
  tn_array_set(f, 0, (tn_elem_t){.f = 16777216.0});
  CHECK_RC(tn_array_sum(f, &r), TN_OK);
  CHECK(r.f == 16777216.0 + 16);
  tn_object_release(TN_OBJECT(f));

  /* Overlapping views: add goes element by element in increasing order
  ** (a running sum), copy as if through a temporary (a shift). */
  tn_array_t *base, *lo, *hi;
  CHECK_RC(tn_array_new(TN_DOUBLE, 40, &base), TN_OK);
  for (size_t i = 0; i < 40; i++)
    tn_array_set(base, i, (tn_elem_t){.f = (double)i});
  CHECK_RC(tn_array_view(base, 0, 39, &lo), TN_OK);
  CHECK_RC(tn_array_view(base, 1, 39, &hi), TN_OK);
  CHECK_RC(tn_array_add(hi, lo, (tn_elem_t){.f = 1}), TN_OK);
  double run = 0;
  for (size_t i = 0; i < 40; i++) {
    run += (double)i;
    CHECK_RC(tn_array_get(base, i, &r), TN_OK);
    CHECK(r.f == run);
  }
  for (size_t i = 0; i < 40; i++)
    tn_array_set(base, i, (tn_elem_t){.f = (double)i});
  CHECK_RC(tn_array_copy(hi, lo), TN_OK);
  CHECK_RC(tn_array_get(base, 0, &r), TN_OK);
  CHECK(r.f == 0);
  for (size_t i = 1; i < 40; i++) {
    CHECK_RC(tn_array_get(base, i, &r), TN_OK);
    CHECK(r.f == (double)(i - 1));
  }
  CHECK_RC(tn_array_add(base, base, (tn_elem_t){.f = 1}), TN_OK); /* 2x */
  CHECK_RC(tn_array_get(base, 39, &r), TN_OK);
  CHECK(r.f == 76);
  tn_object_release(TN_OBJECT(lo));
  tn_object_release(TN_OBJECT(hi));
  tn_object_release(TN_OBJECT(base));
}

TEST(array_fetch_copies, "fetch gives an independent in-process copy") {
  tn_array_t *a, *c;
  CHECK_RC(tn_array_new(TN_INT16, 3, &a), TN_OK);
  tn_array_set(a, 1, num(TN_INT16, -5));
  uint64_t version = 77;
  CHECK_RC(tn_array_fetch(a, &c, &version), TN_OK);
  CHECK_INT(version, 0);
  CHECK(c != a);
  CHECK_INT(get_long(c, 1), -5);
  tn_array_set(a, 1, num(TN_INT16, 6));
  CHECK_INT(get_long(c, 1), -5);
  tn_object_release(TN_OBJECT(a));
  tn_object_release(TN_OBJECT(c));
}

enum { ADD_THREADS = 4, ADDS = 50000, SLOTS = 3 };

typedef struct adder {
  tn_array_t *a;
  tn_elem_t delta;
} adder_t;

static void *add_many(void *p) {
  adder_t *w = p;
  for (int i = 0; i < ADDS; i++)
    tn_array_atomic_add(w->a, (size_t)i % SLOTS, w->delta, NULL);
  return NULL;
}

TEST(array_atomic_add_exact,
     "atomic adds from 4 threads lose nothing, for floats and integers") {
  static const tn_dtype_t types[] = {TN_DOUBLE, TN_FLOAT, TN_INT64, TN_INT16,
                                     TN_UINT32};
  for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
    tn_dtype_t t = types[k];
    tn_array_t *a;
    CHECK_RC(tn_array_new(t, SLOTS, &a), TN_OK);
    adder_t w = {a, num(t, 1)};
    if (t == TN_DOUBLE) w.delta.f = 0.5; /* exact in binary */
    pthread_t th[ADD_THREADS];
    for (int i = 0; i < ADD_THREADS; i++) th[i] = test_spawn(add_many, &w);
    for (int i = 0; i < ADD_THREADS; i++) test_join(th[i]);
    /* Each slot got ADDS / SLOTS (rounded) adds from each thread. */
    long per = 0;
    for (int i = 0; i < ADDS; i++) per += (i % SLOTS == 0);
    tn_elem_t r;
    CHECK_RC(tn_array_get(a, 0, &r), TN_OK);
    long want = (long)ADD_THREADS * per;
    if (t == TN_DOUBLE)
      CHECK(r.f == 0.5 * (double)want);
    else if (t == TN_INT16)
      CHECK_INT(long_of_elem(t, r), (int16_t)want);
    else
      CHECK_INT(long_of_elem(t, r), want);
    tn_object_release(TN_OBJECT(a));
  }
  /* The old value, and wrap-around. */
  tn_array_t *a;
  CHECK_RC(tn_array_new(TN_UINT8, 1, &a), TN_OK);
  tn_array_set(a, 0, num(TN_UINT8, 250));
  tn_elem_t old;
  CHECK_RC(tn_array_atomic_add(a, 0, num(TN_UINT8, 10), &old), TN_OK);
  CHECK_INT(old.u, 250);
  CHECK_INT(get_long(a, 0), 4);
  tn_object_release(TN_OBJECT(a));
}

enum { QUARTER = 25000 };

typedef struct filler {
  tn_array_t *a;
  int index;
} filler_t;

/* Fill one quarter through a view of its own, plus single elements. */
static void *fill_quarter(void *p) {
  filler_t *f = p;
  tn_array_t *v;
  if (tn_array_view(f->a, (size_t)f->index * QUARTER, QUARTER, &v) != TN_OK)
    return NULL;
  tn_array_fill(v, (tn_elem_t){.f = f->index + 1});
  tn_array_set(v, QUARTER - 1, (tn_elem_t){.f = -(f->index + 1)});
  tn_object_release(TN_OBJECT(v));
  return NULL;
}

TEST(array_shared_by_threads,
     "4 threads each fill a quarter; the main thread sees all of it") {
  tn_array_t *a;
  CHECK_RC(tn_array_new(TN_DOUBLE, 4 * QUARTER, &a), TN_OK);
  pthread_t th[4];
  filler_t f[4];
  for (int i = 0; i < 4; i++) {
    f[i] = (filler_t){a, i};
    th[i] = test_spawn(fill_quarter, &f[i]);
  }
  for (int i = 0; i < 4; i++) test_join(th[i]);
  tn_elem_t r;
  CHECK_RC(tn_array_sum(a, &r), TN_OK);
  /* quarter q: (QUARTER - 1) * (q + 1) - (q + 1) */
  double want = 0;
  for (int q = 0; q < 4; q++) want += (double)(QUARTER - 2) * (q + 1);
  CHECK(r.f == want);
  tn_object_release(TN_OBJECT(a));
}

TEST(array_out_of_memory, "an array or view that cannot be allocated leaves "
                          "nothing allocated and the base unchanged") {
  tn_array_t *a = NULL, *v = NULL;
  for (unsigned long k = 1; k <= 2; k++) {
    tn_fault_alloc(k, 0);
    CHECK_RC(tn_array_new(TN_DOUBLE, 100, &a), TN_ENOMEM);
    tn_fault_alloc(0, 0);
  }
  CHECK(a == NULL);
  CHECK_RC(tn_array_new(TN_DOUBLE, 100, &a), TN_OK);
  tn_fault_alloc(1, 0);
  CHECK_RC(tn_array_view(a, 0, 10, &v), TN_ENOMEM);
  tn_fault_alloc(1, 0);
  CHECK_RC(tn_array_fetch(a, &v, NULL), TN_ENOMEM);
  tn_fault_alloc(0, 0);
  CHECK(v == NULL);
  tn_object_release(TN_OBJECT(a)); /* the last reference: leak checkers see */
}

/* ---- cluster arrays (need TUNNEL_REDIS_URL: scripts/with-redis.sh) ---- */

TEST(array_cluster_shape, "a cluster array is created with its shape, "
                          "attached by name, and refuses another shape") {
  tn_cluster_t *c = test_cluster("tunnel-ctest:");
  if (c == NULL) return;
  char name[128];
  snprintf(name, sizeof name, "%s", test_fresh("shape"));
  tn_array_t *a, *b = NULL;
  CHECK_RC(tn_cluster_array(c, name, (tn_dtype_t)0, 0, &b), TN_EINVAL);
  CHECK(strstr(tn_last_error(), "no such Array") != NULL);
  CHECK_RC(tn_cluster_array(c, name, TN_INT16, 6, &a), TN_OK);
  CHECK(tn_object_is_remote(TN_OBJECT(a)));
  CHECK_INT(tn_object_type(TN_OBJECT(a)), TN_TYPE_ARRAY);
  CHECK(tn_array_data(a) == NULL);
  CHECK_RC(tn_cluster_array(c, name, TN_INT16, 7, &b), TN_ECONFLICT);
  CHECK(strstr(tn_last_error(), "6 int16") != NULL);
  CHECK_RC(tn_cluster_array(c, name, TN_UINT16, 6, &b), TN_ECONFLICT);
  CHECK_RC(tn_cluster_array(c, name, (tn_dtype_t)0, 0, &b), TN_OK);
  CHECK(a == b); /* interned */
  tn_dtype_t t;
  size_t n;
  CHECK_RC(tn_array_shape(b, &t, &n), TN_OK);
  CHECK_INT(t, TN_INT16);
  CHECK_INT(n, 6);
  tn_object_release(TN_OBJECT(b));
  /* Zero elements, and the in-place kernels refuse a cluster array. */
  tn_array_t *e;
  CHECK_RC(tn_cluster_array(c, test_fresh("empty"), TN_DOUBLE, 0, &e), TN_OK);
  tn_array_t *copy;
  CHECK_RC(tn_array_fetch(e, &copy, NULL), TN_OK);
  CHECK_RC(tn_array_shape(copy, &t, &n), TN_OK);
  CHECK_INT(n, 0);
  tn_object_release(TN_OBJECT(copy));
  tn_elem_t x = {.f = 1};
  CHECK_RC(tn_array_fill(e, x), TN_EINVAL);
  CHECK_RC(tn_array_view(e, 0, 0, &copy), TN_EINVAL);
  CHECK_RC(tn_array_sum(e, &x), TN_EINVAL);
  tn_object_release(TN_OBJECT(e));
  tn_object_release(TN_OBJECT(a));
}

TEST(array_cluster_elements, "cluster elements: get, set, ranges, atomic "
                             "add, and a version that moves with writes") {
  tn_cluster_t *c = test_cluster("tunnel-ctest:");
  if (c == NULL) return;
  tn_array_t *a;
  CHECK_RC(tn_cluster_array(c, test_fresh("elems"), TN_INT8, 3, &a), TN_OK);
  uint64_t v0 = 99, v1 = 0;
  CHECK_RC(tn_array_version(a, &v0), TN_OK);
  CHECK_INT(v0, 0);
  CHECK_RC(tn_array_set(a, 1, num(TN_INT8, -7)), TN_OK);
  CHECK_RC(tn_array_set(a, 3, num(TN_INT8, 1)), TN_ERANGE);
  CHECK_RC(tn_array_set(a, 0, num(TN_INT8, 200)), TN_EINVAL);
  CHECK_RC(tn_array_version(a, &v1), TN_OK);
  CHECK_INT(v1, 1);
  CHECK_INT(get_long(a, 0), 0);
  CHECK_INT(get_long(a, 1), -7);
  tn_elem_t old;
  CHECK_RC(tn_array_atomic_add(a, 1, num(TN_INT8, 130), &old), TN_OK);
  CHECK_INT(old.i, -7);
  CHECK_INT(get_long(a, 1), (int8_t)123); /* wraps like in process */
  CHECK_RC(tn_array_get(a, 3, &old), TN_ERANGE);
  tn_object_release(TN_OBJECT(a));

  tn_array_t *d;
  CHECK_RC(tn_cluster_array(c, test_fresh("elemd"), TN_DOUBLE, 2, &d), TN_OK);
  CHECK_RC(tn_array_set(d, 0, (tn_elem_t){.f = 0.1}), TN_OK);
  CHECK_RC(tn_array_get(d, 0, &old), TN_OK);
  CHECK(old.f == 0.1); /* the bytes travel: exact */
  CHECK_RC(tn_array_atomic_add(d, 0, (tn_elem_t){.f = 0.2}, NULL), TN_OK);
  CHECK_RC(tn_array_get(d, 0, &old), TN_OK);
  CHECK(old.f == 0.1 + 0.2);
  tn_object_release(TN_OBJECT(d));
}

TEST(array_cluster_store_fetch_add,
     "store, fetch and add move whole arrays; copy and add from a cluster "
     "array fetch it") {
  tn_cluster_t *c = test_cluster("tunnel-ctest:");
  if (c == NULL) return;
  tn_array_t *r, *l, *f;
  CHECK_RC(tn_cluster_array(c, test_fresh("whole"), TN_FLOAT, 2500, &r), TN_OK);
  CHECK_RC(tn_array_new(TN_FLOAT, 2500, &l), TN_OK);
  for (size_t i = 0; i < 2500; i++)
    tn_array_set(l, i, (tn_elem_t){.f = (double)i});
  CHECK_RC(tn_array_copy(r, l), TN_OK); /* a store */
  CHECK_RC(tn_array_add(r, l, (tn_elem_t){.f = 0.5}), TN_OK);
  uint64_t v = 0;
  CHECK_RC(tn_array_fetch(r, &f, &v), TN_OK);
  CHECK_INT(v, 2);
  tn_elem_t s;
  CHECK_RC(tn_array_sum(f, &s), TN_OK);
  CHECK(s.f == 1.5 * 2499 * 2500 / 2);
  tn_object_release(TN_OBJECT(f));
  /* From a cluster array into an in-process one. */
  CHECK_RC(tn_array_copy(l, r), TN_OK);
  CHECK_RC(tn_array_get(l, 10, &s), TN_OK);
  CHECK(s.f == 15);
  CHECK_RC(tn_array_add(l, r, (tn_elem_t){.f = -1}), TN_OK);
  CHECK_RC(tn_array_sum(l, &s), TN_OK);
  CHECK(s.f == 0);
  /* Another shape: refused, nothing stored. */
  tn_array_t *other;
  CHECK_RC(tn_array_new(TN_FLOAT, 2499, &other), TN_OK);
  CHECK_RC(tn_array_copy(r, other), TN_EINVAL);
  CHECK_RC(tn_array_add(r, other, (tn_elem_t){.f = 1}), TN_EINVAL);
  CHECK_RC(tn_array_version(r, &v), TN_OK);
  CHECK_INT(v, 2);
  tn_object_release(TN_OBJECT(other));
  tn_object_release(TN_OBJECT(l));
  tn_object_release(TN_OBJECT(r));
}

enum { CLUSTER_ADDERS = 4, CLUSTER_ADDS = 25 };

typedef struct cluster_adder {
  const char *name;
  tn_cluster_t *c;
  int rc;
} cluster_adder_t;

/* Each thread opens the array by name (its own connection) and adds. */
static void *cluster_add_many(void *p) {
  cluster_adder_t *w = p;
  tn_array_t *a, *ones;
  w->rc = tn_cluster_array(w->c, w->name, (tn_dtype_t)0, 0, &a);
  if (w->rc != TN_OK) return NULL;
  tn_array_new(TN_INT32, 1000, &ones);
  tn_array_fill(ones, num(TN_INT32, 1));
  for (int i = 0; i < CLUSTER_ADDS && w->rc == TN_OK; i++)
    w->rc = tn_array_add(a, ones, num(TN_INT32, 2));
  tn_object_release(TN_OBJECT(ones));
  tn_object_release(TN_OBJECT(a));
  return NULL;
}

TEST(array_cluster_concurrent_adds,
     "adds from 4 threads on their own connections all count") {
  tn_cluster_t *c = test_cluster("tunnel-ctest:");
  if (c == NULL) return;
  char name[128];
  snprintf(name, sizeof name, "%s", test_fresh("adds"));
  tn_array_t *a;
  CHECK_RC(tn_cluster_array(c, name, TN_INT32, 1000, &a), TN_OK);
  pthread_t th[CLUSTER_ADDERS];
  cluster_adder_t w[CLUSTER_ADDERS];
  for (int i = 0; i < CLUSTER_ADDERS; i++) {
    w[i] = (cluster_adder_t){name, c, TN_OK};
    th[i] = test_spawn(cluster_add_many, &w[i]);
  }
  for (int i = 0; i < CLUSTER_ADDERS; i++) test_join(th[i]);
  for (int i = 0; i < CLUSTER_ADDERS; i++) CHECK_RC(w[i].rc, TN_OK);
  tn_array_t *f;
  uint64_t v;
  CHECK_RC(tn_array_fetch(a, &f, &v), TN_OK);
  CHECK_INT(v, CLUSTER_ADDERS * CLUSTER_ADDS);
  for (size_t i = 0; i < 1000; i += 111)
    CHECK_INT(get_long(f, i), 2 * CLUSTER_ADDERS * CLUSTER_ADDS);
  tn_object_release(TN_OBJECT(f));
  tn_object_release(TN_OBJECT(a));
}

/* A raw command on the test server (TUNNEL_REDIS_PORT), for corrupting
** keys behind tunnel's back. */
static void raw(const char *fmt, const char *key, const char *arg) {
  const char *port = getenv("TUNNEL_REDIS_PORT");
  redisContext *k = redisConnect("127.0.0.1", port ? atoi(port) : 6379);
  if (k == NULL || k->err) {
    test_fail(__FILE__, __LINE__, "cannot connect for a raw command");
    if (k) redisFree(k);
    return;
  }
  redisReply *r = redisCommand(k, fmt, key, arg);
  if (r == NULL || r->type == REDIS_REPLY_ERROR)
    test_fail(__FILE__, __LINE__, "raw %s failed", fmt);
  if (r) freeReplyObject(r);
  redisFree(k);
}

TEST(array_cluster_corrupt, "stored state tunnel did not write is an "
                            "error that changes nothing") {
  tn_cluster_t *c = test_cluster("tunnel-ctest:");
  if (c == NULL || getenv("TUNNEL_REDIS_PORT") == NULL) return;
  char name[128], key[200], meta[220];
  snprintf(name, sizeof name, "%s", test_fresh("corrupt"));
  snprintf(key, sizeof key, "tunnel-ctest:%s", name);
  snprintf(meta, sizeof meta, "%s:meta", key);
  tn_array_t *a, *l;
  CHECK_RC(tn_cluster_array(c, name, TN_UINT8, 4, &a), TN_OK);
  CHECK_RC(tn_array_new(TN_UINT8, 4, &l), TN_OK);
  tn_array_fill(l, num(TN_UINT8, 1));
  raw("SET %s %s", key, "abc"); /* 3 bytes, not 4 */
  CHECK_RC(tn_array_add(a, l, num(TN_UINT8, 1)), TN_EIO);
  CHECK(strstr(tn_last_error(), "3 bytes") != NULL);
  CHECK(strstr(tn_last_error(), "nothing was changed") != NULL);
  CHECK_RC(tn_array_set(a, 0, num(TN_UINT8, 1)), TN_EIO);
  raw("HSET %s type %s", meta, "complex");
  raw("SET %s %s", key, "abcd");
  CHECK_RC(tn_array_copy(a, l), TN_EIO);
  CHECK(strstr(tn_last_error(), "did not write") != NULL);
  raw("HSET %s type %s", meta, "uint8");
  tn_elem_t e;
  CHECK_RC(tn_array_get(a, 0, &e), TN_OK);
  CHECK_INT(e.u, 'a'); /* the failed calls stored nothing */
  /* Deleted and made again with another shape: not reinterpreted. */
  raw("DEL %s%s", meta, "");
  raw("DEL %s%s", key, "");
  tn_array_t *b;
  CHECK_RC(tn_array_get(a, 0, &e), TN_EIO);
  CHECK(strstr(tn_last_error(), "no such Array") != NULL);
  tn_object_release(TN_OBJECT(a)); /* the interned object goes */
  CHECK_RC(tn_cluster_array(c, name, TN_UINT16, 2, &b), TN_OK);
  CHECK_RC(tn_array_shape(b, &(tn_dtype_t){0}, &(size_t){0}), TN_OK);
  tn_object_release(TN_OBJECT(b));
  tn_object_release(TN_OBJECT(l));
}
