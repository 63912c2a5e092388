/*
** array_bench.c - tunnel.Array's kernels against what a C programmer
** writes by hand, on 10^7 doubles (BENCH_QUICK: 10^5): memcpy, and plain
** loops for copy, add (axpy) and dot, compiled at -O3 like the kernels
** (bench/bench.mk), against tn_array_copy, tn_array_add and tn_array_dot.
**
**   array_bench list      the case names
**   array_bench <case>    a warm-up, then BENCH_REPEAT result lines
**
** Items are elements. Every case checks its result (a checksum of the
** destination, the dot product's value). At 10^7 doubles (80 MB an array)
** every case streams from memory: the figures are about the memory
** system as much as the loops.
*/
#include "bench.h"
#include "tunnel.h"

static long N;
static double *pa, *pb; /* the plain arrays (64-byte aligned) */
static tn_array_t *ta, *tb;

static void setup(void) {
  N = bench_items(10000000, 100000);
  if (posix_memalign((void **)&pa, 64, (size_t)N * sizeof(double)) != 0 ||
      posix_memalign((void **)&pb, 64, (size_t)N * sizeof(double)) != 0 ||
      tn_array_new(TN_DOUBLE, (size_t)N, &ta) != TN_OK ||
      tn_array_new(TN_DOUBLE, (size_t)N, &tb) != TN_OK) {
    fprintf(stderr, "array_bench: out of memory\n");
    exit(1);
  }
  double *xa = tn_array_data(ta), *xb = tn_array_data(tb);
  for (long i = 0; i < N; i++) {
    pa[i] = xa[i] = (double)(i % 7);
    pb[i] = xb[i] = (double)(i % 5) * 0.5;
  }
}

/* The plain loops: what the kernels are compared with. noinline, so the
** compiler cannot see through the measurement. */
static __attribute__((noinline)) void loop_copy(double *a, const double *b,
                                                long n) {
  for (long i = 0; i < n; i++) a[i] = b[i];
}
static __attribute__((noinline)) void loop_add(double *a, const double *b,
                                               long n, double s) {
  for (long i = 0; i < n; i++) a[i] += s * b[i];
}
static __attribute__((noinline)) double loop_dot(const double *a,
                                                 const double *b, long n) {
  double s = 0;
  for (long i = 0; i < n; i++) s += a[i] * b[i];
  return s;
}

static double sum(const double *a, long n) {
  double s = 0;
  for (long i = 0; i < n; i++) s += a[i];
  return s;
}

/* The expected values: b's sum (after a copy), the dot of the start data. */
static double want_b_sum(void) {
  double s = 0;
  for (long i = 0; i < N; i++) s += (double)(i % 5) * 0.5;
  return s;
}

static const char *check(double got, double want) {
  double d = got - want;
  if (d < 0) d = -d;
  return d <= 1e-9 * (want < 0 ? -want : want) + 1e-9 ? NULL : "wrong result";
}

typedef struct bcase {
  const char *name;
  double (*run)(const char **fail);
} bcase_t;

static double c_memcpy(const char **fail) {
  double t0 = bench_now();
  memcpy(pa, pb, (size_t)N * sizeof(double));
  double t = bench_now() - t0;
  *fail = check(sum(pa, N), want_b_sum());
  return t;
}

static double c_loop_copy(const char **fail) {
  double t0 = bench_now();
  loop_copy(pa, pb, N);
  double t = bench_now() - t0;
  *fail = check(sum(pa, N), want_b_sum());
  return t;
}

static double c_tunnel_copy(const char **fail) {
  double t0 = bench_now();
  int rc = tn_array_copy(ta, tb);
  double t = bench_now() - t0;
  *fail = rc != TN_OK ? "tn_array_copy failed"
                      : check(sum(tn_array_data(ta), N), want_b_sum());
  return t;
}

/* add: a += 0.5 * b then a -= 0.5 * b (two passes, timed together), so the
** data stay the same whatever the repetitions. */
static double c_loop_add(const char **fail) {
  double before = sum(pa, N);
  double t0 = bench_now();
  loop_add(pa, pb, N, 0.5);
  loop_add(pa, pb, N, -0.5);
  double t = bench_now() - t0;
  *fail = check(sum(pa, N), before);
  return t / 2;
}

static double c_tunnel_add(const char **fail) {
  double before = sum(tn_array_data(ta), N);
  double t0 = bench_now();
  int rc = tn_array_add(ta, tb, (tn_elem_t){.f = 0.5});
  if (rc == TN_OK) rc = tn_array_add(ta, tb, (tn_elem_t){.f = -0.5});
  double t = bench_now() - t0;
  *fail = rc != TN_OK ? "tn_array_add failed"
                      : check(sum(tn_array_data(ta), N), before);
  return t / 2;
}

static double c_loop_dot(const char **fail) {
  double want = 0;
  for (long i = 0; i < N; i++) want += pa[i] * pb[i];
  double t0 = bench_now();
  double got = loop_dot(pa, pb, N);
  double t = bench_now() - t0;
  *fail = check(got, want);
  return t;
}

static double c_tunnel_dot(const char **fail) {
  const double *a = tn_array_data(ta), *b = tn_array_data(tb);
  double want = 0;
  for (long i = 0; i < N; i++) want += a[i] * b[i];
  tn_elem_t got = {.f = 0};
  double t0 = bench_now();
  int rc = tn_array_dot(ta, tb, &got);
  double t = bench_now() - t0;
  *fail = rc != TN_OK ? "tn_array_dot failed" : check(got.f, want);
  return t;
}

static const bcase_t cases[] = {
    {"array.memcpy", c_memcpy},     {"array.loop.copy", c_loop_copy},
    {"array.copy", c_tunnel_copy},  {"array.loop.add", c_loop_add},
    {"array.add", c_tunnel_add},    {"array.loop.dot", c_loop_dot},
    {"array.dot", c_tunnel_dot},    {NULL, NULL}};

int main(int argc, char **argv) {
  if (argc < 2 || strcmp(argv[1], "list") == 0) {
    for (const bcase_t *c = cases; c->name != NULL; c++) printf("%s\n", c->name);
    return 0;
  }
  for (const bcase_t *c = cases; c->name != NULL; c++) {
    if (strcmp(c->name, argv[1]) != 0) continue;
    setup();
    int bad = 0;
    for (int r = 0; r <= bench_repeat(); r++) { /* r = 0: the warm-up */
      const char *fail = NULL;
      double t = c->run(&fail);
      if (r > 0 || fail != NULL) bench_report(c->name, N, t, fail);
      if (fail != NULL) {
        bad = 1;
        break;
      }
    }
    return bad;
  }
  fprintf(stderr, "array_bench: no case %s\n", argv[1]);
  return 2;
}
