/*
** bench.h - what the C benchmark programs share: a monotonic clock, the
** BENCH_REPEAT / BENCH_QUICK knobs, a start barrier, and the line format the
** driver (bench/run.lua) reads.
**
** Output, one line per measured repetition (tab-separated):
**   result  <case>  <items>  <seconds>  ok|FAIL:<why>  [cpu=<seconds>]
** A warm-up repetition runs first and is not reported. cpu= is the CPU
** time of the whole process (every thread, user + system: getrusage)
** over the repetition.
*/
#ifndef TN_BENCH_H
#define TN_BENCH_H

#include <sched.h>
#include <sys/resource.h>
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

/* CPU seconds the process used so far, every thread, user + system. */
typedef double bench_cpu_t;

static inline double bench_cpu_now(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
}

static inline bench_cpu_t bench_cpu_start(void) { return bench_cpu_now(); }
static inline double bench_cpu_end(bench_cpu_t start) {
  return bench_cpu_now() - start;
}

/* bench_report with the CPU time of the repetition. */
static inline void bench_report_cpu(const char *name, long items,
                                    double seconds, double cpu,
                                    const char *fail) {
  if (fail == NULL)
    printf("result\t%s\t%ld\t%.9f\tok\tcpu=%.6f\n", name, items, seconds,
           cpu);
  else
    printf("result\t%s\t%ld\t%.9f\tFAIL:%s\tcpu=%.6f\n", name, items,
           seconds, fail, cpu);
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
