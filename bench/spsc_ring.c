/*
** spsc_ring.c - the limit, as a baseline: a lock-free single-producer,
** single-consumer ring of int64 values (Lamport's ring with each side's
** copy of the other's index, as in FastForward and folly's
** ProducerConsumerQueue). Nothing is allocated, nothing sleeps, and the
** only cache lines that move between the cores are the slots and, now and
** then, an index: what moving an item from one core to another costs at
** least on this machine. Every Vector figure is shown against it (and
** against naive_queue.c, the naive design).
**
**   spsc_ring list | <case>       (as core_bench: warm-up, then results)
**
** Each slot is a cache line (an int64 and padding), as PERF.md's floor: a
** Vector item is a blob pointer and a blob, so at least one line of data
** crosses per item. A full or empty ring spins on the other side's index,
** and yields the CPU after 1024 turns, so that 2p2c (two independent
** rings, four threads on two cores) still progresses. "unbounded" is a
** ring of 2^16 slots.
*/
#include <pthread.h>
#include <stdalign.h>

#include "bench.h"

typedef struct ring {
  alignas(64) atomic_size_t head; /* next slot to read: the consumer's */
  size_t tail_seen;               /* the consumer's copy of tail */
  alignas(64) atomic_size_t tail; /* next slot to write: the producer's */
  size_t head_seen;               /* the producer's copy of head */
  alignas(64) size_t mask;        /* capacity - 1 (a power of two) */
  struct slot {
    alignas(64) int64_t v;
  } *slots;
} ring_t;

static ring_t *ring_new(size_t cap) {
  ring_t *r = aligned_alloc(64, sizeof *r);
  memset(r, 0, sizeof *r);
  r->mask = cap - 1;
  r->slots = aligned_alloc(64, cap * sizeof *r->slots);
  return r;
}

static void ring_free(ring_t *r) {
  free(r->slots);
  free(r);
}

static inline void backoff(unsigned *spins) {
  if (++*spins > 1024)
    sched_yield();
  else
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#else
    ;
#endif
}

/* The release store of tail publishes the slot; the acquire load of head
** says the consumer is done with the slot being reused. */
static inline void ring_push(ring_t *r, int64_t v) {
  size_t t = atomic_load_explicit(&r->tail, memory_order_relaxed);
  if (t - r->head_seen > r->mask) {
    unsigned spins = 0;
    while (t - (r->head_seen = atomic_load_explicit(
                    &r->head, memory_order_acquire)) > r->mask)
      backoff(&spins);
  }
  r->slots[t & r->mask].v = v;
  atomic_store_explicit(&r->tail, t + 1, memory_order_release);
}

static inline int64_t ring_pop(ring_t *r) {
  size_t h = atomic_load_explicit(&r->head, memory_order_relaxed);
  if (h == r->tail_seen) {
    unsigned spins = 0;
    while (h == (r->tail_seen = atomic_load_explicit(&r->tail,
                                                     memory_order_acquire)))
      backoff(&spins);
  }
  int64_t v = r->slots[h & r->mask].v;
  atomic_store_explicit(&r->head, h + 1, memory_order_release);
  return v;
}

/* ---- hand-off ------------------------------------------------------------ */

typedef struct worker {
  ring_t *q, *back;
  long first, count;
  long long sum;
  int err;
  double end;
  bench_clock_t *clock;
} worker_t;

static void *producer(void *arg) {
  worker_t *w = arg;
  bench_wait_go(w->clock);
  for (long i = w->first; i < w->first + w->count; i++) ring_push(w->q, i);
  w->end = bench_now();
  return NULL;
}

static void *consumer(void *arg) {
  worker_t *w = arg;
  bench_wait_go(w->clock);
  long long sum = 0;
  for (long i = 0; i < w->count; i++) sum += ring_pop(w->q);
  w->sum = sum;
  w->end = bench_now();
  return NULL;
}

/* `pairs` producer/consumer pairs, each pair on a ring of its own. */
static double run_handoff(size_t cap, int pairs, long n, const char **fail) {
  ring_t *q[4];
  bench_clock_t clock = {0};
  worker_t w[8];
  pthread_t t[8];
  long per = n / pairs;
  for (int i = 0; i < pairs; i++) {
    q[i] = ring_new(cap);
    w[i] = (worker_t){q[i], NULL, 1 + i * per, per, 0, 0, 0, &clock};
    w[pairs + i] = (worker_t){q[i], NULL, 0, per, 0, 0, 0, &clock};
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
  if (sum != (long long)m * (m + 1) / 2) *fail = "wrong sum";
  for (int i = 0; i < pairs; i++) ring_free(q[i]);
  return end - clock.start;
}

/* ---- ping-pong ----------------------------------------------------------- */

static void *pinger(void *arg) {
  worker_t *w = arg;
  bench_wait_go(w->clock);
  for (long i = 0; i < w->count; i++) {
    ring_push(w->q, i);
    if (ring_pop(w->back) != i) w->err = 1;
  }
  w->end = bench_now();
  return NULL;
}

static void *ponger(void *arg) {
  worker_t *w = arg;
  bench_wait_go(w->clock);
  for (long i = 0; i < w->count; i++) ring_push(w->back, ring_pop(w->q));
  return NULL;
}

static double run_pingpong(long rounds, const char **fail) {
  ring_t *a = ring_new(16), *b = ring_new(16);
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
  ring_free(a);
  ring_free(b);
  return w[0].end - clock.start;
}

/* ---- the cases ----------------------------------------------------------- */

typedef struct bcase {
  const char *name;
  long full, quick;
  size_t cap; /* 0: ping-pong */
  int pairs;
} bcase_t;

static const bcase_t cases[] = {{"1p1c.unbounded", 10000000, 100000, 65536, 1},
                                {"1p1c.hint1024", 10000000, 100000, 1024, 1},
                                {"1p1c.hint4", 10000000, 100000, 4, 1},
                                {"2p2c.unbounded", 10000000, 100000, 65536, 2},
                                {"2p2c.hint1024", 10000000, 100000, 1024, 2},
                                {"2p2c.hint4", 10000000, 100000, 4, 2},
                                {"pingpong", 1000000, 10000, 0, 1},
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
  fprintf(stderr, "spsc_ring: no case %s\n", argv[1]);
  return 2;
}
