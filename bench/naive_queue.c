/*
** naive_queue.c - the naive design, as a baseline: a bounded deque behind
** one mutex and two condition variables, where a pusher that finds it full
** and a popper that finds it empty go to sleep at once, and every push and
** pop signals. This is what "a queue with a lock" looks like when written
** in a hurry; tunnel's Vector must beat it by a wide margin at small
** capacities (see ../shared/PERF.md: a wake-up costs ~20 us in this VM).
**
**   naive_queue list | <case>     (as core_bench: warm-up, then results)
**
** It stores int64 values in a ring, so it does less work per item than
** tunnel (no allocation, no blob): that only favours the baseline.
*/
#include <pthread.h>

#include "bench.h"

typedef struct naive {
  pthread_mutex_t lock;
  pthread_cond_t not_full, not_empty;
  int64_t *ring;
  size_t cap, head, count;
} naive_t;

static naive_t *naive_new(size_t cap) {
  naive_t *q = calloc(1, sizeof *q);
  q->ring = calloc(cap, sizeof *q->ring);
  q->cap = cap;
  pthread_mutex_init(&q->lock, NULL);
  pthread_cond_init(&q->not_full, NULL);
  pthread_cond_init(&q->not_empty, NULL);
  return q;
}

static void naive_free(naive_t *q) {
  pthread_mutex_destroy(&q->lock);
  pthread_cond_destroy(&q->not_full);
  pthread_cond_destroy(&q->not_empty);
  free(q->ring);
  free(q);
}

static void naive_push(naive_t *q, int64_t v) {
  pthread_mutex_lock(&q->lock);
  while (q->count == q->cap) pthread_cond_wait(&q->not_full, &q->lock);
  q->ring[(q->head + q->count) % q->cap] = v;
  q->count++;
  pthread_cond_signal(&q->not_empty);
  pthread_mutex_unlock(&q->lock);
}

static int64_t naive_pop(naive_t *q) {
  pthread_mutex_lock(&q->lock);
  while (q->count == 0) pthread_cond_wait(&q->not_empty, &q->lock);
  int64_t v = q->ring[q->head];
  q->head = (q->head + 1) % q->cap;
  q->count--;
  pthread_cond_signal(&q->not_full);
  pthread_mutex_unlock(&q->lock);
  return v;
}

/* ---- hand-off ------------------------------------------------------------ */

typedef struct worker {
  naive_t *q, *back;
  long first, count;
  long long sum;
  int err;
  double end;
  bench_clock_t *clock;
} worker_t;

static void *producer(void *arg) {
  worker_t *w = arg;
  bench_wait_go(w->clock);
  for (long i = w->first; i < w->first + w->count; i++) naive_push(w->q, i);
  w->end = bench_now();
  return NULL;
}

static void *consumer(void *arg) {
  worker_t *w = arg;
  bench_wait_go(w->clock);
  long long sum = 0;
  for (long i = 0; i < w->count; i++) sum += naive_pop(w->q);
  w->sum = sum;
  w->end = bench_now();
  return NULL;
}

static double run_handoff(size_t cap, int pairs, long n, const char **fail) {
  naive_t *q = naive_new(cap);
  bench_clock_t clock = {0};
  worker_t w[8];
  pthread_t t[8];
  long per = n / pairs;
  for (int i = 0; i < pairs; i++) {
    w[i] = (worker_t){q, NULL, 1 + i * per, per, 0, 0, 0, &clock};
    w[pairs + i] = (worker_t){q, NULL, 0, per, 0, 0, 0, &clock};
    pthread_create(&t[i], NULL, producer, &w[i]);
    pthread_create(&t[pairs + i], NULL, consumer, &w[pairs + i]);
  }
  bench_release(&clock, 2 * pairs);
  double end = 0;
  long long sum = 0;
  for (int i = 0; i < 2 * pairs; i++) {
    pthread_join(t[i], NULL);
    if (w[i].end > end) end = w[i].end;
    sum += w[i].sum;
  }
  long m = per * pairs;
  if (sum != (long long)m * (m + 1) / 2 || q->count != 0) *fail = "wrong sum";
  naive_free(q);
  return end - clock.start;
}

/* ---- ping-pong ----------------------------------------------------------- */

static void *pinger(void *arg) {
  worker_t *w = arg;
  bench_wait_go(w->clock);
  for (long i = 0; i < w->count; i++) {
    naive_push(w->q, i);
    if (naive_pop(w->back) != i) w->err = 1;
  }
  w->end = bench_now();
  return NULL;
}

static void *ponger(void *arg) {
  worker_t *w = arg;
  bench_wait_go(w->clock);
  for (long i = 0; i < w->count; i++) naive_push(w->back, naive_pop(w->q));
  return NULL;
}

static double run_pingpong(long rounds, const char **fail) {
  naive_t *a = naive_new(16), *b = naive_new(16);
  bench_clock_t clock = {0};
  worker_t w[2] = {{a, b, 0, rounds, 0, 0, 0, &clock},
                   {a, b, 0, rounds, 0, 0, 0, &clock}};
  pthread_t t[2];
  pthread_create(&t[0], NULL, pinger, &w[0]);
  pthread_create(&t[1], NULL, ponger, &w[1]);
  bench_release(&clock, 2);
  pthread_join(t[0], NULL);
  pthread_join(t[1], NULL);
  if (w[0].err) *fail = "wrong value";
  naive_free(a);
  naive_free(b);
  return w[0].end - clock.start;
}

/* ---- the cases ----------------------------------------------------------- */

typedef struct bcase {
  const char *name;
  long full, quick;
  size_t cap; /* 0: ping-pong */
  int pairs;
} bcase_t;

/* Capacity 4 costs a wake-up per item (~10 us): fewer items keep it short. */
static const bcase_t cases[] = {{"1p1c.hint4", 100000, 2000, 4, 1},
                                {"1p1c.hint1024", 1000000, 10000, 1024, 1},
                                {"2p2c.hint4", 100000, 2000, 4, 2},
                                {"2p2c.hint1024", 1000000, 10000, 1024, 2},
                                {"pingpong", 20000, 200, 0, 1},
                                {NULL, 0, 0, 0, 0}};

int main(int argc, char **argv) {
  if (argc < 2 || strcmp(argv[1], "list") == 0) {
    for (const bcase_t *c = cases; c->name != NULL; c++) printf("%s\n", c->name);
    return 0;
  }
  for (const bcase_t *c = cases; c->name != NULL; c++) {
    if (strcmp(c->name, argv[1]) != 0) continue;
    long n = bench_items(c->full, c->quick);
    const char *fail = NULL;
    int bad = 0;
    for (int r = -1, reps = bench_repeat(); r < reps; r++) {
      long m = r < 0 ? (n / 10 > 0 ? n / 10 : 1) : n; /* r = -1: warm-up */
      fail = NULL;
      bench_cpu_t cpu = bench_cpu_start();
      double t = c->cap == 0 ? run_pingpong(m, &fail)
                             : run_handoff(c->cap, c->pairs, m, &fail);
      if (r >= 0) bench_report_cpu(c->name, m, t, bench_cpu_end(cpu), fail);
      bad |= fail != NULL;
    }
    return bad;
  }
  fprintf(stderr, "naive_queue: no case %s\n", argv[1]);
  return 2;
}
