/*
** test_stress.c - many threads (more than cores, on purpose) on one
** structure, bounded in time, with the final state checked exactly.
**
** Each storm runs for STRESS_SECONDS (default 1.5; the environment
** variable TN_STRESS_SECONDS overrides it, e.g. for a long soak) and then
** checks exact accounting: every value handed over exactly once, sums and
** counts equal, every reference given back. Under valgrind (which runs one
** thread at a time) the storms still stop on time, they just do less.
*/
#include <limits.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "internal.h"
#include "test.h"

#define THREADS 8

static double stress_seconds(void) {
  const char *s = getenv("TN_STRESS_SECONDS");
  double t = s != NULL ? atof(s) : 0;
  return t > 0 ? t : 1.5;
}

/* A small per-thread random generator (xorshift). */
static unsigned rnd(unsigned *s) {
  *s ^= *s << 13;
  *s ^= *s >> 17;
  *s ^= *s << 5;
  return *s;
}

/* ---- one deque, 8 threads, every kind of call, then close ---------------- */

#define MAX_PER_THREAD (1 << 19)

typedef struct deque_storm {
  tn_deque_t *d;
  double until;
  atomic_uchar *seen[THREADS];     /* seen[t][seq]: times popped */
  atomic_long pushed[THREADS];     /* values thread t pushed with TN_OK */
  atomic_long popped;              /* pops with TN_OK */
  atomic_long pop_sum, push_sum;
  atomic_long timeouts, eagain, closed_push, closed_pop;
  atomic_long ended_on_close;      /* threads that ended on TN_ECLOSED */
  atomic_long bad;                 /* impossible results */
} deque_storm_t;

typedef struct worker {
  deque_storm_t *s;
  int id;
} worker_t;

static void note_pop(deque_storm_t *s, tn_blob_t *b) {
  long v = long_of(b);
  tn_blob_release(b);
  long t = v >> 32, seq = v & 0xffffffffL;
  if (t < 0 || t >= THREADS || seq >= MAX_PER_THREAD) {
    atomic_fetch_add(&s->bad, 1);
    return;
  }
  atomic_fetch_add(&s->seen[t][seq], 1);
  atomic_fetch_add(&s->popped, 1);
  atomic_fetch_add(&s->pop_sum, v);
}

/*
** Threads 0..3 mostly push, 4..7 mostly pop; each also does some of the
** other. A call may wait forever only on the side that is sure to be
** served (a pusher's push, a popper's pop): were every thread allowed to
** wait forever either way, all eight could end up pushing to a full deque
** (or popping an empty one) and wait for each other until the close.
*/
static void *deque_worker(void *p) {
  worker_t *w = p;
  deque_storm_t *s = w->s;
  unsigned r = 0x9e3779b9u * (unsigned)(w->id + 1);
  bool pusher = w->id < THREADS / 2;
  long seq = 0;
  for (;;) {
    unsigned k = rnd(&r);
    bool push = (k % 4 != 0) == pusher; /* 3 in 4 calls on its own side */
    if (push && seq >= MAX_PER_THREAD) continue;
    /* A timeout for this call: forever, a few ms, zero, or TN_TRY. */
    double timeout = (k >> 8) % 4 == 0 ? 0.002
                     : (k >> 8) % 4 == 1 ? 0
                     : (k >> 8) % 4 == 2 ? TN_TRY : TN_FOREVER;
    if (push != pusher && timeout == TN_FOREVER) timeout = 0.001;
    if (push) {
      long v = ((long)w->id << 32) | seq;
      tn_blob_t *b = blob_long(v);
      int rc = (k >> 4) % 3 == 0 ? tn_deque_push_front(s->d, b, timeout)
                                 : tn_deque_push_back(s->d, b, timeout);
      if (rc == TN_OK) {
        seq++;
        atomic_fetch_add(&s->pushed[w->id], 1);
        atomic_fetch_add(&s->push_sum, v);
        continue;
      }
      tn_blob_release(b);
      if (rc == TN_ETIMEDOUT && timeout != TN_FOREVER)
        atomic_fetch_add(&s->timeouts, 1);
      else if (rc == TN_EAGAIN && timeout == TN_TRY)
        atomic_fetch_add(&s->eagain, 1);
      else if (rc == TN_ECLOSED) {
        atomic_fetch_add(&s->closed_push, 1);
        if (pusher) { /* the poppers drain what is left */
          atomic_fetch_add(&s->ended_on_close, 1);
          break;
        }
      } else {
        atomic_fetch_add(&s->bad, 1);
      }
    } else {
      tn_blob_t *b = NULL;
      int rc = (k >> 4) % 3 == 0 ? tn_deque_pop_back(s->d, &b, timeout)
                                 : tn_deque_pop_front(s->d, &b, timeout);
      if (rc == TN_OK) {
        note_pop(s, b);
        continue;
      }
      if (rc == TN_ETIMEDOUT && timeout != TN_FOREVER) {
        atomic_fetch_add(&s->timeouts, 1);
      } else if (rc == TN_EAGAIN && timeout == TN_TRY) {
        atomic_fetch_add(&s->eagain, 1);
      } else if (rc == TN_ECLOSED) {
        atomic_fetch_add(&s->closed_pop, 1);
        atomic_fetch_add(&s->ended_on_close, 1);
        break; /* closed and drained: nothing more will come */
      } else {
        atomic_fetch_add(&s->bad, 1);
      }
    }
  }
  return NULL;
}

static void deque_storm(size_t hint) {
  deque_storm_t s;
  memset(&s, 0, sizeof s);
  CHECK_RC(tn_deque_new(hint, &s.d), TN_OK);
  for (int t = 0; t < THREADS; t++) {
    s.seen[t] = calloc(MAX_PER_THREAD, sizeof(atomic_uchar));
    if (s.seen[t] == NULL) abort();
  }
  s.until = test_now() + stress_seconds() / 2;
  worker_t w[THREADS];
  pthread_t th[THREADS];
  for (int t = 0; t < THREADS; t++) {
    w[t] = (worker_t){&s, t};
    th[t] = test_spawn(deque_worker, &w[t]);
  }
  /* At the deadline, close: it wakes every waiting call; pushes fail from
  ** then on (the pushers end there), pops drain what is left and the
  ** poppers end on TN_ECLOSED. */
  tn_sleep(s.until - test_now());
  tn_deque_close(s.d);
  for (int t = 0; t < THREADS; t++) test_join(th[t]);

  CHECK_INT(tn_deque_size(s.d), 0); /* the poppers drained it */
  long pushed = 0, lost = 0, twice = 0;
  for (int t = 0; t < THREADS; t++) {
    long n = atomic_load(&s.pushed[t]);
    pushed += n;
    for (long i = 0; i < n; i++) {
      unsigned char c = atomic_load(&s.seen[t][i]);
      lost += c == 0;
      twice += c > 1;
    }
    for (long i = n; i < MAX_PER_THREAD; i++) twice += atomic_load(&s.seen[t][i]) != 0;
    free(s.seen[t]);
  }
  CHECK_INT(atomic_load(&s.bad), 0);
  CHECK_INT(lost, 0);
  CHECK_INT(twice, 0);
  CHECK_INT(atomic_load(&s.popped), pushed);
  CHECK_INT(atomic_load(&s.pop_sum), atomic_load(&s.push_sum));
  CHECK_INT(atomic_load(&s.ended_on_close), THREADS);
  CHECK(pushed > 1000);
  printf("# hint %zu: %ld values, %ld timeouts, %ld EAGAIN, %ld pushes "
         "refused by close\n", hint, pushed, atomic_load(&s.timeouts),
         atomic_load(&s.eagain), atomic_load(&s.closed_push));
  tn_object_release(TN_OBJECT(s.d));
}

TEST(stress_deque_mixed_small,
     "8 threads mixing pushes and pops at both ends, waiting, timed and "
     "TN_TRY, on a deque of size hint 4, then close: every value popped "
     "exactly once, sums equal, every thread ends on TN_ECLOSED") {
  deque_storm(4);
}

TEST(stress_deque_mixed_unbounded,
     "the same storm on an unbounded deque: exactly once, sums equal") {
  deque_storm(TN_UNBOUNDED);
}

/* ---- counter storm ------------------------------------------------------- */

typedef struct counter_storm {
  tn_counter_t *c;
  double until;
  atomic_long added[THREADS]; /* what each thread added in total */
  atomic_long bad;
} counter_storm_t;

typedef struct counter_worker {
  counter_storm_t *s;
  int id;
} counter_worker_t;

static void *counter_worker(void *p) {
  counter_worker_t *w = p;
  unsigned r = 0x85ebca6bu * (unsigned)(w->id + 1);
  long sum = 0;
  for (long i = 0;; i++) {
    if ((i & 1023) == 0 && test_now() > w->s->until) break;
    long delta = (long)(rnd(&r) % 2001) - 1000;
    tn_counter_add(w->s->c, delta);
    sum += delta;
  }
  atomic_store(&w->s->added[w->id], sum);
  return NULL;
}

TEST(stress_counter_storm,
     "8 threads adding random deltas to one counter: the final value is "
     "exactly the sum of every delta") {
  counter_storm_t s;
  memset(&s, 0, sizeof s);
  CHECK_RC(tn_counter_new(12345, &s.c), TN_OK);
  s.until = test_now() + stress_seconds() / 4;
  counter_worker_t w[THREADS];
  pthread_t th[THREADS];
  for (int t = 0; t < THREADS; t++) {
    w[t] = (counter_worker_t){&s, t};
    th[t] = test_spawn(counter_worker, &w[t]);
  }
  for (int t = 0; t < THREADS; t++) test_join(th[t]);
  long total = 12345;
  for (int t = 0; t < THREADS; t++) total += atomic_load(&s.added[t]);
  CHECK_INT(tn_counter_get(s.c), total);
  tn_object_release(TN_OBJECT(s.c));
}

/* ---- blocks made and destroyed while jobs hold references --------------- */

typedef struct churn_arg {
  tn_deque_t *d;     /* a reference held by the run */
  tn_counter_t *c;   /* likewise */
  long value;
} churn_arg_t;

static void churn_job(void *ctx, int index, void *p) {
  (void)ctx;
  churn_arg_t *a = p;
  tn_blob_t *b = blob_long(a->value * 100 + index);
  if (tn_deque_push_back(a->d, b, TN_FOREVER) != TN_OK) tn_blob_release(b);
  tn_counter_add(a->c, a->value);
}

static void churn_release(void *p) {
  churn_arg_t *a = p;
  tn_object_release(TN_OBJECT(a->d));
  tn_object_release(TN_OBJECT(a->c));
  free(a);
}

TEST(stress_block_churn,
     "blocks made and destroyed in a loop while their jobs hold references "
     "to a deque and a counter: every job runs, every reference comes back") {
  tn_deque_t *d;
  tn_counter_t *c;
  CHECK_RC(tn_deque_new(TN_UNBOUNDED, &d), TN_OK);
  CHECK_RC(tn_counter_new(0, &c), TN_OK);
  double until = test_now() + stress_seconds() / 2;
  long blocks = 0, jobs = 0, expect_sum = 0;
  unsigned r = 12345;
  while (test_now() < until || blocks < 10) {
    int size = 1 + (int)(rnd(&r) % 4);
    tn_block_t *b;
    if (tn_block_new(size, NULL, NULL, &b) != TN_OK) {
      test_fail(__FILE__, __LINE__, "tn_block_new failed");
      break;
    }
    int runs = 1 + (int)(rnd(&r) % 5);
    for (int i = 0; i < runs; i++) {
      churn_arg_t *a = malloc(sizeof *a);
      if (a == NULL) abort();
      a->d = (tn_deque_t *)tn_object_retain(TN_OBJECT(d));
      a->c = (tn_counter_t *)tn_object_retain(TN_OBJECT(c));
      a->value = blocks + 1;
      CHECK_RC(tn_block_run(b, churn_job, a, churn_release), TN_OK);
      jobs += size;
      expect_sum += (blocks + 1) * size;
    }
    /* Sometimes wait, sometimes let terminate drain the queues. */
    if (rnd(&r) % 2) CHECK_RC(tn_block_synchronize(b, TN_FOREVER), TN_OK);
    tn_block_free(b);
    blocks++;
  }
  CHECK_INT(tn_counter_get(c), expect_sum);
  CHECK_INT(tn_deque_size(d), jobs);
  CHECK_INT(atomic_load(&TN_OBJECT(d)->refs), 1);
  CHECK_INT(atomic_load(&TN_OBJECT(c)->refs), 1);
  printf("# %ld blocks, %ld jobs\n", blocks, jobs);
  tn_object_release(TN_OBJECT(d));
  tn_object_release(TN_OBJECT(c));
}

/* ---- map storm ----------------------------------------------------------- */

#define MAP_KEYS 64

typedef struct map_storm {
  tn_map_t *m;
  double until;
  long last[THREADS][MAP_KEYS]; /* own keys: the last value written */
  atomic_long bad;
} map_storm_t;

typedef struct map_worker {
  map_storm_t *s;
  int id;
} map_worker_t;

static void *map_worker(void *p) {
  map_worker_t *w = p;
  map_storm_t *s = w->s;
  unsigned r = 0x27d4eb2du * (unsigned)(w->id + 1);
  char k[32];
  for (int i = 0; i < MAP_KEYS; i++) s->last[w->id][i] = -1;
  for (long n = 0;; n++) {
    if ((n & 255) == 0 && test_now() > s->until) break;
    unsigned x = rnd(&r);
    int key = (int)((x >> 3) % MAP_KEYS);
    bool own = x % 4 != 0;
    if (own)
      snprintf(k, sizeof k, "t%d.%d", w->id, key);
    else
      snprintf(k, sizeof k, "shared.%d", key % 8);
    switch ((x >> 10) % 4) {
    case 0: /* delete */
    case 1: /* set */ {
      bool del = (x >> 10) % 4 == 0;
      long v = own ? ((long)w->id << 32) | n : ((long)(key % 8) << 32) | n;
      tn_blob_t *b = del ? NULL : blob_long(v);
      tn_blob_t *old = NULL;
      int rc = tn_map_set(s->m, k, strlen(k), b, &old, (x >> 12) % 2 ? TN_TRY : 0);
      if (rc == TN_OK) {
        if (own) {
          long was = old == NULL ? -1 : long_of(old);
          if (was != s->last[w->id][key]) atomic_fetch_add(&s->bad, 1);
          s->last[w->id][key] = del ? -1 : v;
        } else if (old != NULL && (long_of(old) >> 32) != key % 8) {
          atomic_fetch_add(&s->bad, 1);
        }
        tn_blob_release(old);
      } else {
        tn_blob_release(b);
        if (rc != TN_EAGAIN) atomic_fetch_add(&s->bad, 1);
      }
      break;
    }
    case 2: { /* get */
      tn_blob_t *b = NULL;
      int rc = tn_map_get(s->m, k, strlen(k), &b, TN_FOREVER);
      if (rc != TN_OK) {
        atomic_fetch_add(&s->bad, 1);
      } else if (own) {
        if ((b == NULL ? -1 : long_of(b)) != s->last[w->id][key])
          atomic_fetch_add(&s->bad, 1);
      } else if (b != NULL && (long_of(b) >> 32) != key % 8) {
        atomic_fetch_add(&s->bad, 1);
      }
      tn_blob_release(b);
      break;
    }
    default: { /* a snapshot now and then */
      if (x % 64 != 0) break;
      tn_map_entry_t *e = NULL;
      size_t cnt = 0;
      if (tn_map_snapshot(s->m, &e, &cnt, TN_FOREVER) != TN_OK) {
        atomic_fetch_add(&s->bad, 1);
        break;
      }
      for (size_t i = 0; i < cnt; i++)
        if (e[i].value == NULL || tn_blob_size(e[i].value) != sizeof(long))
          atomic_fetch_add(&s->bad, 1);
      tn_map_entries_free(e, cnt);
    }
    }
  }
  return NULL;
}

TEST(stress_map_storm,
     "8 threads setting, deleting and reading their own keys and shared "
     "keys, with snapshots: every thread reads back exactly what it wrote, "
     "and the final map holds exactly the last values") {
  map_storm_t s;
  memset(&s, 0, sizeof s);
  CHECK_RC(tn_map_new(TN_TYPE_HASH, &s.m), TN_OK);
  s.until = test_now() + stress_seconds() / 2;
  map_worker_t w[THREADS];
  pthread_t th[THREADS];
  for (int t = 0; t < THREADS; t++) {
    w[t] = (map_worker_t){&s, t};
    th[t] = test_spawn(map_worker, &w[t]);
  }
  for (int t = 0; t < THREADS; t++) test_join(th[t]);
  CHECK_INT(atomic_load(&s.bad), 0);
  size_t expect = 0;
  int wrong = 0;
  char k[32];
  for (int t = 0; t < THREADS; t++)
    for (int i = 0; i < MAP_KEYS; i++) {
      snprintf(k, sizeof k, "t%d.%d", t, i);
      tn_blob_t *b = NULL;
      CHECK_RC(tn_map_get(s.m, k, strlen(k), &b, 0), TN_OK);
      wrong += (b == NULL ? -1 : long_of(b)) != s.last[t][i];
      expect += s.last[t][i] >= 0;
      tn_blob_release(b);
    }
  for (int i = 0; i < 8; i++) {
    snprintf(k, sizeof k, "shared.%d", i);
    tn_blob_t *b = NULL;
    CHECK_RC(tn_map_get(s.m, k, strlen(k), &b, 0), TN_OK);
    expect += b != NULL;
    tn_blob_release(b);
  }
  CHECK_INT(wrong, 0);
  CHECK_INT(tn_map_size(s.m), expect);
  tn_object_release(TN_OBJECT(s.m));
}

/* ---- barrier, semaphore and counter waits together ------------------------ */

typedef struct sync_storm {
  tn_barrier_t *b;
  tn_semaphore_t *s;
  tn_counter_t *done;
  double until;
  atomic_int inside, most, errors, stop;
  atomic_long rounds, takes, fewest, most_rounds;
} sync_storm_t;

enum { SYNC_PERMITS = 3 };

static void *sync_worker(void *p) {
  sync_storm_t *s = p;
  unsigned r = 0x9e3779b9u ^ (unsigned)(uintptr_t)&r;
  long round = 0;
  for (;;) {
    for (int k = 0; k < 8; k++) { /* a few takes of 1 or 2 permits */
      int64_t n = 1 + (int64_t)(rnd(&r) % 2);
      if (tn_semaphore_acquire(s->s, n, 30) != TN_OK) {
        atomic_fetch_add(&s->errors, 1);
        continue;
      }
      int in = atomic_fetch_add(&s->inside, (int)n) + (int)n;
      int most = atomic_load(&s->most);
      while (in > most && !atomic_compare_exchange_weak(&s->most, &most, in)) {
      }
      atomic_fetch_add(&s->takes, 1);
      atomic_fetch_sub(&s->inside, (int)n);
      if (tn_semaphore_release(s->s, n) != TN_OK) atomic_fetch_add(&s->errors, 1);
    }
    /* Two rounds: the last arrival of the first decides whether to stop,
    ** everyone reads it after the second (no one leaves a round early). */
    int index = 0;
    if (tn_barrier_wait(s->b, 60, &index) != TN_OK) {
      atomic_fetch_add(&s->errors, 1);
      break;
    }
    if (index == THREADS && test_now() > s->until) atomic_store(&s->stop, 1);
    if (tn_barrier_wait(s->b, 60, NULL) != TN_OK) {
      atomic_fetch_add(&s->errors, 1);
      break;
    }
    round++;
    if (atomic_load(&s->stop)) break;
  }
  atomic_fetch_add(&s->rounds, round);
  long f = atomic_load(&s->fewest), m = atomic_load(&s->most_rounds);
  while (round < f && !atomic_compare_exchange_weak(&s->fewest, &f, round)) {
  }
  while (round > m && !atomic_compare_exchange_weak(&s->most_rounds, &m, round)) {
  }
  tn_counter_add(s->done, 1);
  return NULL;
}

TEST(stress_sync_storm,
     "8 threads taking permits of a semaphore of 3 between barrier rounds: "
     "never more than 3 held, every thread does the same rounds, a latch "
     "sees them all finish") {
  sync_storm_t s;
  memset(&s, 0, sizeof s);
  CHECK_RC(tn_barrier_new(THREADS, &s.b), TN_OK);
  CHECK_RC(tn_semaphore_new(SYNC_PERMITS, &s.s), TN_OK);
  CHECK_RC(tn_counter_new(0, &s.done), TN_OK);
  s.until = test_now() + stress_seconds() / 4;
  atomic_store(&s.fewest, LONG_MAX);
  pthread_t th[THREADS];
  for (int t = 0; t < THREADS; t++) th[t] = test_spawn(sync_worker, &s);
  int64_t v = 0;
  CHECK_RC(tn_counter_wait(s.done, THREADS, 120, &v), TN_OK);
  CHECK_INT(v, THREADS);
  for (int t = 0; t < THREADS; t++) test_join(th[t]);
  CHECK_INT(atomic_load(&s.errors), 0);
  CHECK(atomic_load(&s.most) <= SYNC_PERMITS);
  CHECK(atomic_load(&s.takes) > 0);
  CHECK_INT(atomic_load(&s.fewest), atomic_load(&s.most_rounds)); /* the same for each */
  CHECK(atomic_load(&s.fewest) >= 1);
  int64_t avail = -1;
  CHECK_RC(tn_semaphore_available(s.s, &avail, NULL), TN_OK);
  CHECK_INT(avail, SYNC_PERMITS);
  int waiting = -1;
  CHECK_RC(tn_barrier_state(s.b, NULL, &waiting, NULL), TN_OK);
  CHECK_INT(waiting, 0);
  tn_object_release(TN_OBJECT(s.b));
  tn_object_release(TN_OBJECT(s.s));
  tn_object_release(TN_OBJECT(s.done));
}

/* ---- two deques and a priority queue: select, batches, heap ------------- */

enum { QUEUE_MAX = 1 << 18, QUEUE_HINT = 8 };

typedef struct queue_storm {
  tn_deque_t *d[2];
  tn_pqueue_t *q;
  atomic_uchar *seen[THREADS]; /* seen[t][seq]: times popped */
  atomic_long pushed[THREADS];
  atomic_long popped, selects, batches, heap_pops, bad;
  atomic_int producers_left;
} queue_storm_t;

typedef struct queue_worker {
  queue_storm_t *s;
  int id;
} queue_worker_t;

static void queue_seen(queue_storm_t *s, tn_blob_t *b) {
  long v = long_of(b);
  tn_blob_release(b);
  long t = v >> 32, seq = v & 0xffffffffL;
  if (t < 0 || t >= THREADS / 2 || seq >= QUEUE_MAX) {
    atomic_fetch_add(&s->bad, 1);
    return;
  }
  atomic_fetch_add(&s->seen[t][seq], 1);
  atomic_fetch_add(&s->popped, 1);
}

/* A timeout: mostly short, sometimes 0, TN_TRY or (1 in 8) forever; the
** close at the end wakes a wait forever. */
static double queue_timeout(unsigned k) {
  unsigned c = (k >> 8) % 8;
  return c == 0 ? TN_FOREVER : c == 1 ? 0 : c == 2 ? TN_TRY : 0.002;
}

/* Producers (threads 0..3): single pushes and batches of 1..8 into either
** deque, pushes into the priority queue; each ends on its first
** TN_ECLOSED. */
static void *queue_producer(void *p) {
  queue_worker_t *w = p;
  queue_storm_t *s = w->s;
  unsigned r = 0x2545f491u * (unsigned)(w->id + 1);
  long seq = 0;
  while (seq < QUEUE_MAX - 8) {
    unsigned k = rnd(&r);
    double timeout = queue_timeout(k);
    tn_blob_t *b[8];
    size_t n = (k % 3 == 1) ? 1 + (k >> 12) % 8 : 1;
    for (size_t i = 0; i < n; i++)
      b[i] = blob_long(((long)w->id << 32) | (seq + (long)i));
    int rc;
    if (k % 3 == 0)
      rc = tn_pqueue_push(s->q, (double)((k >> 4) % 5), b[0], timeout);
    else if (n == 1)
      rc = tn_deque_push_back(s->d[(k >> 4) & 1], b[0], timeout);
    else
      rc = tn_deque_push_many(s->d[(k >> 4) & 1], b, n, timeout);
    if (rc == TN_OK) {
      seq += (long)n;
      atomic_fetch_add(&s->pushed[w->id], (long)n);
      continue;
    }
    for (size_t i = 0; i < n; i++) tn_blob_release(b[i]);
    if (rc == TN_ECLOSED) break;
    if (rc != TN_ETIMEDOUT && rc != TN_EAGAIN) atomic_fetch_add(&s->bad, 1);
  }
  atomic_fetch_sub(&s->producers_left, 1);
  return NULL;
}

/* Consumers (threads 4..7): select over the two deques, pop_many from one,
** pops from the priority queue; each ends once the three are closed and
** drained. */
static void *queue_consumer(void *p) {
  queue_worker_t *w = p;
  queue_storm_t *s = w->s;
  unsigned r = 0x68e31da4u * (unsigned)(w->id + 1);
  bool deques_done = false, heap_done = false;
  while (!deques_done || !heap_done) {
    unsigned k = rnd(&r);
    double timeout = queue_timeout(k);
    int rc;
    if (k % 3 == 0 && !heap_done) {
      tn_blob_t *b;
      rc = tn_pqueue_pop(s->q, &b, NULL, timeout);
      if (rc == TN_OK) {
        queue_seen(s, b);
        atomic_fetch_add(&s->heap_pops, 1);
      } else if (rc == TN_ECLOSED) {
        heap_done = true;
      }
    } else if (k % 3 == 1 && !deques_done) {
      tn_blob_t **items;
      size_t n;
      tn_deque_t *d = s->d[(k >> 4) & 1];
      rc = tn_deque_pop_many(d, 1 + (k >> 12) % 16, &items, &n, timeout);
      if (rc == TN_OK) {
        for (size_t i = 0; i < n; i++) queue_seen(s, items[i]);
        tn_blob_array_free(items, 0);
        atomic_fetch_add(&s->batches, 1);
      } else if (rc == TN_ECLOSED) {
        rc = TN_OK; /* one deque drained: select knows about both */
      }
    } else if (!deques_done) {
      tn_blob_t *b;
      size_t index;
      rc = tn_deque_select(s->d, 2, &index, &b, timeout);
      if (rc == TN_OK) {
        queue_seen(s, b);
        atomic_fetch_add(&s->selects, 1);
      } else if (rc == TN_ECLOSED) {
        deques_done = true;
      }
    } else {
      continue;
    }
    if (rc != TN_OK && rc != TN_ECLOSED && rc != TN_ETIMEDOUT &&
        rc != TN_EAGAIN)
      atomic_fetch_add(&s->bad, 1);
  }
  return NULL;
}

TEST(stress_queue_storm,
     "4 producers of single pushes, batches and priority pushes, 4 consumers "
     "of selects, pop_many and priority pops, waiting, timed and TN_TRY, on "
     "two deques and a priority queue of hint 8, then close: every value "
     "popped exactly once") {
  queue_storm_t s;
  memset(&s, 0, sizeof s);
  CHECK_RC(tn_deque_new(QUEUE_HINT, &s.d[0]), TN_OK);
  CHECK_RC(tn_deque_new(QUEUE_HINT, &s.d[1]), TN_OK);
  CHECK_RC(tn_pqueue_new(QUEUE_HINT, &s.q), TN_OK);
  for (int t = 0; t < THREADS / 2; t++) {
    s.seen[t] = calloc(QUEUE_MAX, sizeof(atomic_uchar));
    if (s.seen[t] == NULL) abort();
  }
  atomic_store(&s.producers_left, THREADS / 2);
  queue_worker_t w[THREADS];
  pthread_t th[THREADS];
  for (int t = 0; t < THREADS; t++) {
    w[t] = (queue_worker_t){&s, t % (THREADS / 2)};
    th[t] = test_spawn(t < THREADS / 2 ? queue_producer : queue_consumer, &w[t]);
  }
  tn_sleep(stress_seconds() / 4);
  tn_deque_close(s.d[0]);
  tn_deque_close(s.d[1]);
  CHECK_RC(tn_pqueue_close(s.q), TN_OK);
  for (int t = 0; t < THREADS; t++) test_join(th[t]);
  long pushed = 0, lost = 0, twice = 0;
  for (int t = 0; t < THREADS / 2; t++) {
    long n = atomic_load(&s.pushed[t]);
    pushed += n;
    for (long i = 0; i < QUEUE_MAX; i++) {
      unsigned char c = atomic_load(&s.seen[t][i]);
      if (i < n) lost += c == 0;
      twice += i < n ? c > 1 : c != 0;
    }
    free(s.seen[t]);
  }
  CHECK_INT(atomic_load(&s.bad), 0);
  CHECK_INT(lost, 0);
  CHECK_INT(twice, 0);
  CHECK_INT(atomic_load(&s.popped), pushed);
  CHECK_INT(tn_deque_size(s.d[0]) + tn_deque_size(s.d[1]) + tn_pqueue_size(s.q), 0);
  CHECK(pushed > 1000);
  printf("# %ld values: %ld selects, %ld pop_many, %ld priority pops\n",
         pushed, atomic_load(&s.selects), atomic_load(&s.batches),
         atomic_load(&s.heap_pops));
  tn_object_release(TN_OBJECT(s.d[0]));
  tn_object_release(TN_OBJECT(s.d[1]));
  tn_object_release(TN_OBJECT(s.q));
}
