/*
** core_bench.c - the core C API with no Lua: the floor the Lua binding is
** measured against (bench/run.lua divides the Lua rates by these).
**
**   core_bench list          the case names
**   core_bench <case>        a warm-up, then BENCH_REPEAT result lines
**
** Items are 8-byte blobs holding an integer, one tn_blob_new per item (the
** binding allocates one blob per pushed value too). Every case checks its
** result: sums of the values received, counter totals, jobs run.
*/
#include <pthread.h>

#include "bench.h"
#include "tunnel.h"

/* ---- deque hand-off ------------------------------------------------------ */

typedef struct handoff {
  tn_deque_t *d;
  long first, count; /* a producer pushes first..first+count-1 */
  long long sum;     /* a consumer's sum of what it popped */
  int err;
  double end;
  bench_clock_t *clock;
} handoff_t;

static void *producer(void *arg) {
  handoff_t *h = arg;
  bench_wait_go(h->clock);
  for (long i = h->first; i < h->first + h->count; i++) {
    int64_t v = i;
    tn_blob_t *b = tn_blob_new(&v, sizeof v, NULL, 0);
    int rc = b == NULL ? TN_ENOMEM : tn_deque_push_back(h->d, b, TN_FOREVER);
    if (rc != TN_OK) {
      tn_blob_release(b);
      h->err = rc;
      break;
    }
  }
  h->end = bench_now();
  return NULL;
}

static void *consumer(void *arg) {
  handoff_t *h = arg;
  bench_wait_go(h->clock);
  long long sum = 0;
  for (long i = 0; i < h->count; i++) {
    tn_blob_t *b = NULL;
    int rc = tn_deque_pop_front(h->d, &b, TN_FOREVER);
    if (rc != TN_OK) {
      h->err = rc;
      break;
    }
    int64_t v;
    memcpy(&v, tn_blob_data(b), sizeof v);
    sum += v;
    tn_blob_release(b);
  }
  h->sum = sum;
  h->end = bench_now();
  return NULL;
}

/* `pairs` producers and `pairs` consumers move n integers (1..n). */
static double run_handoff(size_t hint, int pairs, long n, const char **fail) {
  tn_deque_t *d;
  if (tn_deque_new(hint, &d) != TN_OK) {
    *fail = "tn_deque_new";
    return 0;
  }
  bench_clock_t clock = {0};
  handoff_t h[8];
  pthread_t t[8];
  long per = n / pairs;
  for (int i = 0; i < pairs; i++) {
    h[i] = (handoff_t){d, 1 + i * per, per, 0, 0, 0, &clock};
    h[pairs + i] = (handoff_t){d, 0, per, 0, 0, 0, &clock};
    pthread_create(&t[i], NULL, producer, &h[i]);
    pthread_create(&t[pairs + i], NULL, consumer, &h[pairs + i]);
  }
  bench_release(&clock, 2 * pairs);
  double end = 0;
  long long sum = 0;
  for (int i = 0; i < 2 * pairs; i++) {
    pthread_join(t[i], NULL);
    if (h[i].end > end) end = h[i].end;
    if (h[i].err != 0) *fail = tn_strerror(h[i].err);
    sum += h[i].sum;
  }
  long m = per * pairs;
  if (*fail == NULL && sum != (long long)m * (m + 1) / 2) *fail = "wrong sum";
  if (*fail == NULL && tn_deque_size(d) != 0) *fail = "deque not empty";
  tn_object_release(TN_OBJECT(d));
  return end - clock.start;
}

/* One thread pushes then pops each item: the cost with no waiting. */
static double run_pushpop(long n, const char **fail) {
  tn_deque_t *d;
  if (tn_deque_new(TN_UNBOUNDED, &d) != TN_OK) {
    *fail = "tn_deque_new";
    return 0;
  }
  long long sum = 0;
  double t0 = bench_now();
  for (long i = 1; i <= n; i++) {
    int64_t v = i;
    tn_blob_t *b = tn_blob_new(&v, sizeof v, NULL, 0);
    if (b == NULL || tn_deque_push_back(d, b, TN_FOREVER) != TN_OK ||
        tn_deque_pop_front(d, &b, TN_FOREVER) != TN_OK) {
      *fail = "push or pop failed";
      break;
    }
    memcpy(&v, tn_blob_data(b), sizeof v);
    sum += v;
    tn_blob_release(b);
  }
  double t = bench_now() - t0;
  if (*fail == NULL && sum != (long long)n * (n + 1) / 2) *fail = "wrong sum";
  tn_object_release(TN_OBJECT(d));
  return t;
}

/* ---- ping-pong ----------------------------------------------------------- */

typedef struct pingpong {
  tn_deque_t *there, *back;
  long rounds;
  int err;
  double end;
  bench_clock_t *clock;
} pingpong_t;

static void *pinger(void *arg) {
  pingpong_t *p = arg;
  bench_wait_go(p->clock);
  for (long i = 0; i < p->rounds && p->err == 0; i++) {
    int64_t v = i;
    tn_blob_t *b = tn_blob_new(&v, sizeof v, NULL, 0);
    if (tn_deque_push_back(p->there, b, TN_FOREVER) != TN_OK ||
        tn_deque_pop_front(p->back, &b, TN_FOREVER) != TN_OK) {
      p->err = 1;
      break;
    }
    memcpy(&v, tn_blob_data(b), sizeof v);
    if (v != i) p->err = 2;
    tn_blob_release(b);
  }
  p->end = bench_now();
  return NULL;
}

static void *ponger(void *arg) {
  pingpong_t *p = arg;
  bench_wait_go(p->clock);
  for (long i = 0; i < p->rounds; i++) {
    tn_blob_t *b;
    if (tn_deque_pop_front(p->there, &b, TN_FOREVER) != TN_OK ||
        tn_deque_push_back(p->back, b, TN_FOREVER) != TN_OK) {
      p->err = 1;
      break;
    }
  }
  p->end = bench_now();
  return NULL;
}

static double run_pingpong(long rounds, const char **fail) {
  tn_deque_t *a, *b;
  tn_deque_new(TN_UNBOUNDED, &a);
  tn_deque_new(TN_UNBOUNDED, &b);
  bench_clock_t clock = {0};
  pingpong_t p[2] = {{a, b, rounds, 0, 0, &clock}, {a, b, rounds, 0, 0, &clock}};
  pthread_t t[2];
  pthread_create(&t[0], NULL, pinger, &p[0]);
  pthread_create(&t[1], NULL, ponger, &p[1]);
  bench_release(&clock, 2);
  pthread_join(t[0], NULL);
  pthread_join(t[1], NULL);
  if (p[0].err != 0 || p[1].err != 0) *fail = "wrong value or error";
  tn_object_release(TN_OBJECT(a));
  tn_object_release(TN_OBJECT(b));
  return p[0].end - clock.start;
}

/* ---- counter ------------------------------------------------------------- */

typedef struct adder {
  tn_counter_t *c;
  long n;
  double end;
  bench_clock_t *clock;
} adder_t;

static void *add_loop(void *arg) {
  adder_t *a = arg;
  bench_wait_go(a->clock);
  for (long i = 0; i < a->n; i++) tn_counter_add(a->c, 1);
  a->end = bench_now();
  return NULL;
}

static double run_counter(int threads, long n, const char **fail) {
  tn_counter_t *c;
  if (tn_counter_new(0, &c) != TN_OK) {
    *fail = "tn_counter_new";
    return 0;
  }
  bench_clock_t clock = {0};
  adder_t a[4];
  pthread_t t[4];
  for (int i = 0; i < threads; i++) {
    a[i] = (adder_t){c, n / threads, 0, &clock};
    pthread_create(&t[i], NULL, add_loop, &a[i]);
  }
  bench_release(&clock, threads);
  double end = 0;
  for (int i = 0; i < threads; i++) {
    pthread_join(t[i], NULL);
    if (a[i].end > end) end = a[i].end;
  }
  if (tn_counter_get(c) != (n / threads) * threads) *fail = "wrong total";
  tn_object_release(TN_OBJECT(c));
  return end - clock.start;
}

/* ---- map (behind tunnel.Hash) -------------------------------------------- */

typedef struct mapper {
  tn_map_t *m;
  long n;
  int64_t base;
  long long sum;
  int err;
  double end;
  bench_clock_t *clock;
} mapper_t;

/* Set then get keys of its own in a window of 1,000; sums what it reads. */
static void *map_loop(void *arg) {
  mapper_t *a = arg;
  bench_wait_go(a->clock);
  long long sum = 0;
  for (long i = 1; i <= a->n; i++) {
    int64_t k = a->base + i % 1000, v = i;
    tn_blob_t *b = tn_blob_new(&v, sizeof v, NULL, 0), *got = NULL;
    if (b == NULL ||
        tn_map_set(a->m, &k, sizeof k, b, NULL, TN_FOREVER) != TN_OK ||
        tn_map_get(a->m, &k, sizeof k, &got, TN_FOREVER) != TN_OK ||
        got == NULL) {
      a->err = 1;
      break;
    }
    memcpy(&v, tn_blob_data(got), sizeof v);
    sum += v;
    tn_blob_release(got);
  }
  a->sum = sum;
  a->end = bench_now();
  return NULL;
}

static double run_map(int threads, long n, const char **fail) {
  tn_map_t *m;
  if (tn_map_new(TN_TYPE_HASH, &m) != TN_OK) {
    *fail = "tn_map_new";
    return 0;
  }
  bench_clock_t clock = {0};
  mapper_t a[4];
  pthread_t t[4];
  long per = n / threads;
  for (int i = 0; i < threads; i++) {
    a[i] = (mapper_t){m, per, (int64_t)(i + 1) * 1000000, 0, 0, 0, &clock};
    pthread_create(&t[i], NULL, map_loop, &a[i]);
  }
  bench_release(&clock, threads);
  double end = 0;
  long long sum = 0;
  for (int i = 0; i < threads; i++) {
    pthread_join(t[i], NULL);
    if (a[i].end > end) end = a[i].end;
    if (a[i].err) *fail = "set or get failed";
    sum += a[i].sum;
  }
  if (*fail == NULL && sum != (long long)threads * per * (per + 1) / 2)
    *fail = "wrong sum";
  tn_object_release(TN_OBJECT(m));
  return end - clock.start;
}

/* Reads only: every thread reads the same 1,000 keys (as table.get.Nt in
** Lua), copying each value out (tn_map_peek: no reference taken). */
static void *map_read_loop(void *arg) {
  mapper_t *a = arg;
  bench_wait_go(a->clock);
  long long sum = 0;
  for (long i = 1; i <= a->n; i++) {
    int64_t k = i % 1000, v = 0;
    tn_peek_t p = {.buf = &v, .cap = sizeof v};
    if (tn_map_peek(a->m, &k, sizeof k, &p, TN_FOREVER) != TN_OK ||
        p.size != sizeof v) {
      a->err = 1;
      break;
    }
    sum += v;
  }
  a->sum = sum;
  a->end = bench_now();
  return NULL;
}

static double run_map_read(int threads, long n, const char **fail) {
  tn_map_t *m;
  if (tn_map_new(TN_TYPE_TABLE, &m) != TN_OK) {
    *fail = "tn_map_new";
    return 0;
  }
  for (int64_t k = 0; k < 1000; k++) {
    tn_blob_t *b = tn_blob_new(&k, sizeof k, NULL, 0);
    if (b == NULL || tn_map_set(m, &k, sizeof k, b, NULL, TN_FOREVER) != TN_OK) {
      *fail = "set failed";
      return 0;
    }
  }
  bench_clock_t clock = {0};
  mapper_t a[4];
  pthread_t t[4];
  long per = n / threads;
  for (int i = 0; i < threads; i++) {
    a[i] = (mapper_t){m, per, 0, 0, 0, 0, &clock};
    pthread_create(&t[i], NULL, map_read_loop, &a[i]);
  }
  bench_release(&clock, threads);
  double end = 0;
  long long sum = 0, want = 0;
  for (long i = 1; i <= per; i++) want += i % 1000;
  for (int i = 0; i < threads; i++) {
    pthread_join(t[i], NULL);
    if (a[i].end > end) end = a[i].end;
    if (a[i].err) *fail = "read failed";
    sum += a[i].sum;
  }
  if (*fail == NULL && sum != threads * want) *fail = "wrong sum";
  tn_object_release(TN_OBJECT(m));
  return end - clock.start;
}

/* ---- the callback lock (behind tunnel.Atomic's read/write) ---------------- */

typedef struct locker {
  tn_object_t *o;
  long n;
  int write;
  long *shared;
  double end;
  bench_clock_t *clock;
} locker_t;

static void *lock_loop(void *arg) {
  locker_t *a = arg;
  bench_wait_go(a->clock);
  for (long i = 0; i < a->n; i++) {
    if (a->write) {
      tn_object_write_lock(a->o, TN_FOREVER);
      (*a->shared)++;
      tn_object_write_unlock(a->o);
    } else {
      tn_object_read_lock(a->o, TN_FOREVER);
      tn_object_read_unlock(a->o);
    }
  }
  a->end = bench_now();
  return NULL;
}

/* n lock+unlock pairs of an Atomic's lock, over `threads` threads; the
** writers increment a shared count under it (checked). */
static double run_lock(int threads, int write, long n, const char **fail) {
  tn_cell_t *c;
  if (tn_cell_new(TN_TYPE_ATOMIC, NULL, &c) != TN_OK) {
    *fail = "tn_cell_new";
    return 0;
  }
  long shared = 0;
  bench_clock_t clock = {0};
  locker_t a[4];
  pthread_t t[4];
  long per = n / threads;
  for (int i = 0; i < threads; i++) {
    a[i] = (locker_t){TN_OBJECT(c), per, write, &shared, 0, &clock};
    pthread_create(&t[i], NULL, lock_loop, &a[i]);
  }
  bench_release(&clock, threads);
  double end = 0;
  for (int i = 0; i < threads; i++) {
    pthread_join(t[i], NULL);
    if (a[i].end > end) end = a[i].end;
  }
  if (write && shared != per * threads) *fail = "lost updates";
  tn_object_release(TN_OBJECT(c));
  return end - clock.start;
}

/* ---- block --------------------------------------------------------------- */

static atomic_long jobs_run;

static void empty_job(void *ctx, int index, void *arg) {
  (void)ctx, (void)index, (void)arg;
  atomic_fetch_add(&jobs_run, 1);
}

/* n times: a 1-thread block created, run once, synchronized, terminated. */
static double run_block_cycle(long n, const char **fail) {
  atomic_store(&jobs_run, 0);
  double t0 = bench_now();
  for (long i = 0; i < n; i++) {
    tn_block_t *b;
    if (tn_block_new(1, NULL, NULL, &b) != TN_OK ||
        tn_block_run(b, empty_job, NULL, NULL) != TN_OK ||
        tn_block_synchronize(b, TN_FOREVER) != TN_OK) {
      *fail = "block call failed";
      return 0;
    }
    tn_block_terminate(b);
    tn_block_free(b);
  }
  double t = bench_now() - t0;
  if (atomic_load(&jobs_run) != n) *fail = "wrong number of jobs run";
  return t;
}

/* n runs of an empty job on an existing 1-thread block, each synchronized. */
static double run_block_run(long n, const char **fail) {
  tn_block_t *b;
  if (tn_block_new(1, NULL, NULL, &b) != TN_OK) {
    *fail = "tn_block_new";
    return 0;
  }
  atomic_store(&jobs_run, 0);
  double t0 = bench_now();
  for (long i = 0; i < n; i++) {
    if (tn_block_run(b, empty_job, NULL, NULL) != TN_OK ||
        tn_block_synchronize(b, TN_FOREVER) != TN_OK) {
      *fail = "block call failed";
      break;
    }
  }
  double t = bench_now() - t0;
  tn_block_free(b);
  if (*fail == NULL && atomic_load(&jobs_run) != n) *fail = "wrong jobs run";
  return t;
}

/* ---- barrier and semaphore ---------------------------------------------- */

typedef struct rounder {
  tn_barrier_t *b;
  pthread_barrier_t *pb; /* the plain pthread barrier instead */
  long rounds;
  long long sum;         /* of the arrival indexes (checked) */
  int err;
  double end;
  bench_clock_t *clock;
} rounder_t;

static void *round_loop(void *arg) {
  rounder_t *r = arg;
  bench_wait_go(r->clock);
  for (long i = 0; i < r->rounds; i++) {
    if (r->pb != NULL) {
      int rc = pthread_barrier_wait(r->pb);
      r->sum += rc == PTHREAD_BARRIER_SERIAL_THREAD ? 2 : 1;
      continue;
    }
    int index = 0;
    if (tn_barrier_wait(r->b, TN_FOREVER, &index) != TN_OK) {
      r->err = 1;
      break;
    }
    r->sum += index;
  }
  r->end = bench_now();
  return NULL;
}

/* n rounds of a 2-party barrier (a round trip of two threads); `plain`:
** pthread_barrier_t, the floor in the same run. */
static double run_barrier(int plain, long n, const char **fail) {
  tn_barrier_t *b = NULL;
  pthread_barrier_t pb;
  if (plain)
    pthread_barrier_init(&pb, NULL, 2);
  else if (tn_barrier_new(2, &b) != TN_OK) {
    *fail = "tn_barrier_new";
    return 0;
  }
  bench_clock_t clock = {0};
  rounder_t r[2];
  pthread_t t[2];
  for (int i = 0; i < 2; i++) {
    r[i] = (rounder_t){b, plain ? &pb : NULL, n, 0, 0, 0, &clock};
    pthread_create(&t[i], NULL, round_loop, &r[i]);
  }
  bench_release(&clock, 2);
  double end = 0;
  for (int i = 0; i < 2; i++) {
    pthread_join(t[i], NULL);
    if (r[i].end > end) end = r[i].end;
    if (r[i].err) *fail = "wait failed";
  }
  if (*fail == NULL && r[0].sum + r[1].sum != 3LL * n) *fail = "wrong indexes";
  if (plain)
    pthread_barrier_destroy(&pb);
  else
    tn_object_release(TN_OBJECT(b));
  return end - clock.start;
}

typedef struct taker {
  tn_semaphore_t *s;
  long n;
  atomic_int *inside;
  int err;
  double end;
  bench_clock_t *clock;
} taker_t;

static void *take_loop(void *arg) {
  taker_t *a = arg;
  bench_wait_go(a->clock);
  for (long i = 0; i < a->n; i++) {
    if (tn_semaphore_acquire(a->s, 1, TN_FOREVER) != TN_OK) {
      a->err = 1;
      break;
    }
    if (atomic_fetch_add(a->inside, 1) != 0) a->err = 2; /* 1 permit */
    atomic_fetch_sub(a->inside, 1);
    if (tn_semaphore_release(a->s, 1) != TN_OK) a->err = 1;
  }
  a->end = bench_now();
  return NULL;
}

/* n acquire+release pairs of a 1-permit semaphore over `threads` threads
** (checked: never two inside). */
static double run_semaphore(int threads, long n, const char **fail) {
  tn_semaphore_t *s;
  if (tn_semaphore_new(1, &s) != TN_OK) {
    *fail = "tn_semaphore_new";
    return 0;
  }
  atomic_int inside = 0;
  bench_clock_t clock = {0};
  taker_t a[4];
  pthread_t t[4];
  for (int i = 0; i < threads; i++) {
    a[i] = (taker_t){s, n / threads, &inside, 0, 0, &clock};
    pthread_create(&t[i], NULL, take_loop, &a[i]);
  }
  bench_release(&clock, threads);
  double end = 0;
  for (int i = 0; i < threads; i++) {
    pthread_join(t[i], NULL);
    if (a[i].end > end) end = a[i].end;
    if (a[i].err == 2) *fail = "two holders of one permit";
    else if (a[i].err) *fail = "acquire or release failed";
  }
  int64_t avail = 0;
  tn_semaphore_available(s, &avail, NULL);
  if (*fail == NULL && avail != 1) *fail = "permit lost";
  tn_object_release(TN_OBJECT(s));
  return end - clock.start;
}

/* ---- priority queue, select, batches (issue 15) -------------------------- */

static tn_blob_t *item(long i) {
  int64_t v = i;
  return tn_blob_new(&v, sizeof v, NULL, 0);
}

static long long value_of(tn_blob_t *b) {
  int64_t v;
  memcpy(&v, tn_blob_data(b), sizeof v);
  tn_blob_release(b);
  return v;
}

/* One thread pushes then pops each item through a priority queue
** (priorities cycling over 16 values): against deque.pushpop.1t. */
static double run_pq_pushpop(long n, const char **fail) {
  tn_pqueue_t *q;
  if (tn_pqueue_new(TN_UNBOUNDED, &q) != TN_OK) {
    *fail = "tn_pqueue_new";
    return 0;
  }
  long long sum = 0;
  double t0 = bench_now();
  for (long i = 1; i <= n; i++) {
    tn_blob_t *b = item(i);
    if (tn_pqueue_push(q, (double)(i & 15), b, TN_FOREVER) != TN_OK ||
        tn_pqueue_pop(q, &b, NULL, TN_FOREVER) != TN_OK) {
      *fail = "push or pop failed";
      break;
    }
    sum += value_of(b);
  }
  double t = bench_now() - t0;
  if (*fail == NULL && sum != (long long)n * (n + 1) / 2) *fail = "wrong sum";
  tn_object_release(TN_OBJECT(q));
  return t;
}

/* What the threaded cases below share: a priority queue, or two deques a
** producer fills in turn (select), or one deque moved in batches. */
typedef struct mover {
  tn_pqueue_t *q;
  tn_deque_t *d[2];
  int mode; /* 0 priority queue, 1 select over two, 2 batches of 64 */
  long n;
  long long sum;
  int err;
  double end;
  bench_clock_t *clock;
} mover_t;

#define BATCH 64

static void *move_in(void *arg) {
  mover_t *m = arg;
  bench_wait_go(m->clock);
  tn_blob_t *batch[BATCH];
  for (long i = 1; i <= m->n && m->err == 0;) {
    int rc;
    if (m->mode == 0) {
      tn_blob_t *b = item(i);
      rc = tn_pqueue_push(m->q, (double)(i & 15), b, TN_FOREVER);
      i++;
    } else if (m->mode == 1) {
      rc = tn_deque_push_back(m->d[i & 1], item(i), TN_FOREVER);
      i++;
    } else {
      size_t k = 0;
      while (k < BATCH && i <= m->n) batch[k++] = item(i++);
      rc = tn_deque_push_many(m->d[0], batch, k, TN_FOREVER);
    }
    if (rc != TN_OK) m->err = rc;
  }
  if (m->mode == 1) {
    tn_deque_close(m->d[0]);
    tn_deque_close(m->d[1]);
  }
  m->end = bench_now();
  return NULL;
}

static void *move_out(void *arg) {
  mover_t *m = arg;
  bench_wait_go(m->clock);
  long long sum = 0;
  for (long got = 0; got < m->n;) {
    tn_blob_t *b = NULL, **items = NULL;
    size_t k = 1, index;
    int rc = m->mode == 0   ? tn_pqueue_pop(m->q, &b, NULL, TN_FOREVER)
             : m->mode == 1 ? tn_deque_select(m->d, 2, &index, &b, TN_FOREVER)
                            : tn_deque_pop_many(m->d[0], BATCH, &items, &k,
                                                TN_FOREVER);
    if (rc != TN_OK) {
      m->err = rc;
      break;
    }
    if (items != NULL) {
      for (size_t j = 0; j < k; j++) sum += value_of(items[j]);
      tn_blob_array_free(items, 0);
    } else {
      sum += value_of(b);
    }
    got += (long)k;
  }
  m->sum = sum;
  m->end = bench_now();
  return NULL;
}

/* 1 producer, 1 consumer (mode as in mover_t): against
** deque.1p1c.unbounded. */
static double run_mover(int mode, long n, const char **fail) {
  mover_t m[2] = {{NULL, {NULL, NULL}, mode, n, 0, 0, 0, NULL}};
  if (mode == 0 ? tn_pqueue_new(TN_UNBOUNDED, &m[0].q) != TN_OK
                : tn_deque_new(TN_UNBOUNDED, &m[0].d[0]) != TN_OK ||
                      tn_deque_new(TN_UNBOUNDED, &m[0].d[1]) != TN_OK) {
    *fail = "new";
    return 0;
  }
  bench_clock_t clock = {0};
  m[0].clock = &clock;
  m[1] = m[0];
  pthread_t t[2];
  pthread_create(&t[0], NULL, move_in, &m[0]);
  pthread_create(&t[1], NULL, move_out, &m[1]);
  bench_release(&clock, 2);
  pthread_join(t[0], NULL);
  pthread_join(t[1], NULL);
  if (m[0].err != 0 || m[1].err != 0) *fail = "push or pop failed";
  if (*fail == NULL && m[1].sum != (long long)n * (n + 1) / 2)
    *fail = "wrong sum";
  double end = m[0].end > m[1].end ? m[0].end : m[1].end;
  if (m[0].q != NULL) tn_object_release(TN_OBJECT(m[0].q));
  for (int i = 0; i < 2; i++)
    if (m[0].d[i] != NULL) tn_object_release(TN_OBJECT(m[0].d[i]));
  return end - clock.start;
}

/* One thread, two deques: push into one of them (in turn), select it back:
** against deque.pushpop.1t (a push and a popFront). */
static double run_select_pushpop(long n, const char **fail) {
  tn_deque_t *d[2];
  tn_deque_new(TN_UNBOUNDED, &d[0]);
  tn_deque_new(TN_UNBOUNDED, &d[1]);
  long long sum = 0;
  double t0 = bench_now();
  for (long i = 1; i <= n; i++) {
    tn_blob_t *b;
    size_t index;
    if (tn_deque_push_back(d[i & 1], item(i), TN_FOREVER) != TN_OK ||
        tn_deque_select(d, 2, &index, &b, TN_FOREVER) != TN_OK) {
      *fail = "push or select failed";
      break;
    }
    sum += value_of(b);
  }
  double t = bench_now() - t0;
  if (*fail == NULL && sum != (long long)n * (n + 1) / 2) *fail = "wrong sum";
  tn_object_release(TN_OBJECT(d[0]));
  tn_object_release(TN_OBJECT(d[1]));
  return t;
}

/* One thread: 64 values in, 64 out, as two batches (`batched`) or as 64
** pushes and 64 pops (the baseline, deque.single64.1t). */
static double run_batch64(int batched, long n, const char **fail) {
  tn_deque_t *d;
  tn_deque_new(TN_UNBOUNDED, &d);
  long long sum = 0;
  n -= n % BATCH;
  double t0 = bench_now();
  for (long i = 1; i <= n && *fail == NULL; i += BATCH) {
    tn_blob_t *batch[BATCH];
    for (long j = 0; j < BATCH; j++) batch[j] = item(i + j);
    if (batched) {
      tn_blob_t **items;
      size_t k;
      if (tn_deque_push_many(d, batch, BATCH, TN_FOREVER) != TN_OK ||
          tn_deque_pop_many(d, BATCH, &items, &k, TN_FOREVER) != TN_OK ||
          k != BATCH) {
        *fail = "push_many or pop_many failed";
        break;
      }
      for (size_t j = 0; j < k; j++) sum += value_of(items[j]);
      tn_blob_array_free(items, 0);
    } else {
      for (long j = 0; j < BATCH; j++)
        if (tn_deque_push_back(d, batch[j], TN_FOREVER) != TN_OK)
          *fail = "push failed";
      for (long j = 0; j < BATCH && *fail == NULL; j++) {
        tn_blob_t *b;
        if (tn_deque_pop_front(d, &b, TN_FOREVER) != TN_OK)
          *fail = "pop failed";
        else
          sum += value_of(b);
      }
    }
  }
  double t = bench_now() - t0;
  if (*fail == NULL && sum != (long long)n * (n + 1) / 2) *fail = "wrong sum";
  tn_object_release(TN_OBJECT(d));
  return t;
}

/* ---- the cases ----------------------------------------------------------- */

typedef struct bcase {
  const char *name;
  long full, quick; /* items */
  double (*run)(const struct bcase *, long, const char **);
  size_t hint;
  int threads;
} bcase_t;

static double c_handoff(const bcase_t *c, long n, const char **fail) {
  return run_handoff(c->hint, c->threads, n, fail);
}
static double c_pushpop(const bcase_t *c, long n, const char **fail) {
  (void)c;
  return run_pushpop(n, fail);
}
static double c_pingpong(const bcase_t *c, long n, const char **fail) {
  (void)c;
  return run_pingpong(n, fail);
}
static double c_counter(const bcase_t *c, long n, const char **fail) {
  return run_counter(c->threads, n, fail);
}
static double c_map(const bcase_t *c, long n, const char **fail) {
  return run_map(c->threads, n, fail);
}
static double c_map_read(const bcase_t *c, long n, const char **fail) {
  return run_map_read(c->threads, n, fail);
}
static double c_lock_write(const bcase_t *c, long n, const char **fail) {
  return run_lock(c->threads, 1, n, fail);
}
static double c_lock_read(const bcase_t *c, long n, const char **fail) {
  return run_lock(c->threads, 0, n, fail);
}
static double c_block_cycle(const bcase_t *c, long n, const char **fail) {
  (void)c;
  return run_block_cycle(n, fail);
}
static double c_block_run(const bcase_t *c, long n, const char **fail) {
  (void)c;
  return run_block_run(n, fail);
}

static double c_barrier(const bcase_t *c, long n, const char **fail) {
  return run_barrier((int)c->hint, n, fail);
}
static double c_semaphore(const bcase_t *c, long n, const char **fail) {
  return run_semaphore(c->threads, n, fail);
}

static double c_pq_pushpop(const bcase_t *c, long n, const char **fail) {
  (void)c;
  return run_pq_pushpop(n, fail);
}
static double c_mover(const bcase_t *c, long n, const char **fail) {
  return run_mover((int)c->hint, n, fail);
}
static double c_select_pushpop(const bcase_t *c, long n, const char **fail) {
  (void)c;
  return run_select_pushpop(n, fail);
}
static double c_batch64(const bcase_t *c, long n, const char **fail) {
  return run_batch64((int)c->hint, n, fail);
}

static const bcase_t cases[] = {
    {"deque.1p1c.unbounded", 1000000, 10000, c_handoff, TN_UNBOUNDED, 1},
    {"deque.1p1c.hint1024", 1000000, 10000, c_handoff, 1024, 1},
    {"deque.1p1c.hint4", 1000000, 10000, c_handoff, 4, 1},
    {"deque.2p2c.unbounded", 1000000, 10000, c_handoff, TN_UNBOUNDED, 2},
    {"deque.2p2c.hint1024", 1000000, 10000, c_handoff, 1024, 2},
    {"deque.2p2c.hint4", 1000000, 10000, c_handoff, 4, 2},
    {"deque.pushpop.1t", 2000000, 20000, c_pushpop, TN_UNBOUNDED, 1},
    {"pingpong", 100000, 2000, c_pingpong, 0, 2},
    {"counter.1t", 20000000, 100000, c_counter, 0, 1},
    {"counter.2t", 20000000, 100000, c_counter, 0, 2},
    {"map.setget.1t", 2000000, 20000, c_map, 0, 1},
    {"map.setget.2t", 2000000, 20000, c_map, 0, 2},
    {"map.get.1t", 5000000, 50000, c_map_read, 0, 1},
    {"map.get.2t", 5000000, 50000, c_map_read, 0, 2},
    {"lock.write.1t", 5000000, 50000, c_lock_write, 0, 1},
    {"lock.read.1t", 5000000, 50000, c_lock_read, 0, 1},
    {"lock.write.2t", 2000000, 20000, c_lock_write, 0, 2},
    {"block.cycle", 300, 20, c_block_cycle, 0, 1},
    {"block.run", 5000, 200, c_block_run, 0, 1},
    {"barrier.2t", 200000, 2000, c_barrier, 0, 2},
    {"pthread_barrier.2t", 200000, 2000, c_barrier, 1, 2},
    {"semaphore.pairs.1t", 5000000, 50000, c_semaphore, 0, 1},
    {"semaphore.pairs.2t", 2000000, 20000, c_semaphore, 0, 2},
    {"pqueue.pushpop.1t", 2000000, 20000, c_pq_pushpop, 0, 1},
    {"pqueue.1p1c", 1000000, 10000, c_mover, 0, 1},
    {"select2.pushpop.1t", 2000000, 20000, c_select_pushpop, 0, 1},
    {"select2.1p1c", 1000000, 10000, c_mover, 1, 1},
    {"batch64.pushpop.1t", 2000000, 19200, c_batch64, 1, 1},
    {"single64.pushpop.1t", 2000000, 19200, c_batch64, 0, 1},
    {"batch64.1p1c", 1000000, 9600, c_mover, 2, 1},
    {NULL, 0, 0, NULL, 0, 0}};

int main(int argc, char **argv) {
  if (argc < 2 || strcmp(argv[1], "list") == 0) {
    for (const bcase_t *c = cases; c->name != NULL; c++) printf("%s\n", c->name);
    return 0;
  }
  for (const bcase_t *c = cases; c->name != NULL; c++) {
    if (strcmp(c->name, argv[1]) != 0) continue;
    long n = bench_items(c->full, c->quick);
    const char *fail = NULL;
    c->run(c, n / 10 > 0 ? n / 10 : 1, &fail); /* warm-up */
    int bad = fail != NULL;
    for (int r = 0, reps = bench_repeat(); r < reps; r++) {
      fail = NULL;
      bench_cpu_t cpu = bench_cpu_start();
      double t = c->run(c, n, &fail);
      bench_report_cpu(c->name, n, t, bench_cpu_end(cpu), fail);
      bad |= fail != NULL;
    }
    return bad;
  }
  fprintf(stderr, "core_bench: no case %s\n", argv[1]);
  return 2;
}
