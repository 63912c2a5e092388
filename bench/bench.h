/*
** bench.h - what the C benchmark programs share: a monotonic clock, the
** BENCH_REPEAT / BENCH_QUICK knobs, a start barrier, and the line format the
** driver (bench/run.lua) reads.
**
** Output, one line per measured repetition (tab-separated):
**   result  <case>  <items>  <seconds>  ok|FAIL:<why>
** A warm-up repetition runs first and is not reported.
*/
#ifndef TN_BENCH_H
#define TN_BENCH_H

#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static inline double bench_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static inline int bench_quick(void) {
  const char *q = getenv("BENCH_QUICK");
  return q != NULL && *q != '\0' && strcmp(q, "0") != 0;
}

static inline int bench_repeat(void) {
  const char *r = getenv("BENCH_REPEAT");
  int n = r != NULL ? atoi(r) : 0;
  if (n <= 0) n = bench_quick() ? 3 : 5;
  return n;
}

/* `full` items normally, `quick` under BENCH_QUICK=1. */
static inline long bench_items(long full, long quick) {
  return bench_quick() ? quick : full;
}

static inline void bench_report(const char *name, long items, double seconds,
                                const char *fail) {
  if (fail == NULL)
    printf("result\t%s\t%ld\t%.9f\tok\n", name, items, seconds);
  else
    printf("result\t%s\t%ld\t%.9f\tFAIL:%s\n", name, items, seconds, fail);
  fflush(stdout);
}

/*
** Timing across threads: every thread spins on `go` so that thread creation
** is not measured, and records when it finished; the case's time is from
** the release to the last finish.
*/
typedef struct bench_clock {
  atomic_int ready;
  atomic_int go;
  double start;
} bench_clock_t;

static inline void bench_wait_go(bench_clock_t *c) {
  atomic_fetch_add(&c->ready, 1);
  while (!atomic_load_explicit(&c->go, memory_order_acquire)) sched_yield();
}

/* Release `nthreads` threads (after they all arrived); returns the start. */
static inline void bench_release(bench_clock_t *c, int nthreads) {
  while (atomic_load(&c->ready) < nthreads) sched_yield();
  c->start = bench_now();
  atomic_store_explicit(&c->go, 1, memory_order_release);
}

#endif
