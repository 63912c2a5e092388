/*
** test_semaphore.c - the counting semaphore: counts, bad input, timeouts,
** and never more than k holders among many threads.
*/
#include "test.h"

TEST(semaphore_bad_input, "bad permit counts are refused and change nothing") {
  tn_semaphore_t *s = NULL;
  CHECK_RC(tn_semaphore_new(0, &s), TN_EINVAL);
  CHECK_RC(tn_semaphore_new(-1, &s), TN_EINVAL);
  CHECK_RC(tn_semaphore_new(3, &s), TN_OK);
  CHECK_RC(tn_semaphore_acquire(s, 0, TN_FOREVER), TN_EINVAL);
  CHECK_RC(tn_semaphore_acquire(s, 4, TN_FOREVER), TN_EINVAL); /* never */
  CHECK_RC(tn_semaphore_release(s, 0), TN_EINVAL);
  CHECK_RC(tn_semaphore_release(s, 1), TN_ERANGE); /* none taken */
  int64_t avail = -1, total = -1;
  CHECK_RC(tn_semaphore_available(s, &avail, &total), TN_OK);
  CHECK_INT(avail, 3);
  CHECK_INT(total, 3);
  tn_object_release(TN_OBJECT(s));
}

TEST(semaphore_counts, "acquire takes n at once, release gives n back, never past the total") {
  tn_semaphore_t *s;
  CHECK_RC(tn_semaphore_new(5, &s), TN_OK);
  CHECK_RC(tn_semaphore_acquire(s, 2, TN_FOREVER), TN_OK);
  CHECK_RC(tn_semaphore_acquire(s, 3, 0), TN_OK);
  int64_t avail = -1;
  CHECK_RC(tn_semaphore_available(s, &avail, NULL), TN_OK);
  CHECK_INT(avail, 0);
  CHECK_RC(tn_semaphore_acquire(s, 1, TN_TRY), TN_EAGAIN);
  CHECK_RC(tn_semaphore_acquire(s, 1, 0), TN_ETIMEDOUT);
  CHECK_RC(tn_semaphore_release(s, 4), TN_OK);
  CHECK_RC(tn_semaphore_acquire(s, 5, TN_TRY), TN_EAGAIN); /* 4 there */
  CHECK_RC(tn_semaphore_release(s, 2), TN_ERANGE);          /* only 1 taken */
  CHECK_RC(tn_semaphore_available(s, &avail, NULL), TN_OK);
  CHECK_INT(avail, 4);
  CHECK_RC(tn_semaphore_release(s, 1), TN_OK);
  CHECK_RC(tn_semaphore_acquire(s, 5, TN_TRY), TN_OK);
  CHECK_RC(tn_semaphore_release(s, 5), TN_OK);
  tn_object_release(TN_OBJECT(s));
}

TEST(semaphore_timeout, "an acquire that cannot be served times out, taking nothing") {
  tn_semaphore_t *s;
  CHECK_RC(tn_semaphore_new(2, &s), TN_OK);
  CHECK_RC(tn_semaphore_acquire(s, 1, TN_FOREVER), TN_OK);
  double t0 = test_now();
  CHECK_RC(tn_semaphore_acquire(s, 2, 0.1), TN_ETIMEDOUT);
  CHECK(test_now() - t0 >= 0.09);
  int64_t avail = -1;
  CHECK_RC(tn_semaphore_available(s, &avail, NULL), TN_OK);
  CHECK_INT(avail, 1);
  tn_object_release(TN_OBJECT(s));
}

typedef struct taker {
  tn_semaphore_t *s;
  int64_t n;
  int rc;
} taker_t;

static void *take_forever(void *p) {
  taker_t *t = p;
  t->rc = tn_semaphore_acquire(t->s, t->n, TN_FOREVER);
  return NULL;
}

TEST(semaphore_release_wakes, "a release wakes a taker waiting for several permits") {
  tn_semaphore_t *s;
  CHECK_RC(tn_semaphore_new(3, &s), TN_OK);
  CHECK_RC(tn_semaphore_acquire(s, 3, TN_FOREVER), TN_OK);
  taker_t tk = {s, 2, -99};
  pthread_t t = test_spawn(take_forever, &tk);
  tn_sleep(0.02);
  CHECK_RC(tn_semaphore_release(s, 1), TN_OK); /* not enough yet */
  tn_sleep(0.02);
  CHECK_RC(tn_semaphore_release(s, 2), TN_OK);
  test_join(t);
  CHECK_RC(tk.rc, TN_OK);
  int64_t avail = -1;
  CHECK_RC(tn_semaphore_available(s, &avail, NULL), TN_OK);
  CHECK_INT(avail, 1);
  tn_object_release(TN_OBJECT(s));
}

enum { SEM_THREADS = 8, SEM_K = 3, SEM_ROUNDS = 3000 };

typedef struct holders {
  tn_semaphore_t *s;
  atomic_int now, most, errors;
  atomic_long entries;
} holders_t;

static void *hold_loop(void *p) {
  holders_t *h = p;
  for (int i = 0; i < SEM_ROUNDS; i++) {
    int64_t n = 1 + i % 2; /* one or two permits */
    if (tn_semaphore_acquire(h->s, n, TN_FOREVER) != TN_OK) {
      atomic_fetch_add(&h->errors, 1);
      return NULL;
    }
    int in = atomic_fetch_add(&h->now, (int)n) + (int)n;
    int most = atomic_load(&h->most);
    while (in > most && !atomic_compare_exchange_weak(&h->most, &most, in)) {
    }
    atomic_fetch_add(&h->entries, 1);
    if (i % 64 == 0) tn_sleep(0.0001); /* sometimes hold it a while */
    atomic_fetch_sub(&h->now, (int)n);
    if (tn_semaphore_release(h->s, n) != TN_OK) atomic_fetch_add(&h->errors, 1);
  }
  return NULL;
}

TEST(semaphore_at_most_k, "8 threads taking 1 or 2 of 3 permits: never more than 3 held at once") {
  holders_t h = {0};
  CHECK_RC(tn_semaphore_new(SEM_K, &h.s), TN_OK);
  pthread_t t[SEM_THREADS];
  for (int i = 0; i < SEM_THREADS; i++) t[i] = test_spawn(hold_loop, &h);
  for (int i = 0; i < SEM_THREADS; i++) test_join(t[i]);
  CHECK_INT(atomic_load(&h.errors), 0);
  CHECK(atomic_load(&h.most) <= SEM_K);
  CHECK(atomic_load(&h.most) >= 1);
  CHECK_INT(atomic_load(&h.entries), (long)SEM_THREADS * SEM_ROUNDS);
  int64_t avail = -1;
  CHECK_RC(tn_semaphore_available(h.s, &avail, NULL), TN_OK);
  CHECK_INT(avail, SEM_K);
  tn_object_release(TN_OBJECT(h.s));
}

TEST(sync_out_of_memory, "a barrier and a semaphore fail to be made with TN_ENOMEM, then work") {
  tn_barrier_t *b = NULL;
  tn_semaphore_t *s = NULL;
  tn_fault_alloc(1, 0);
  CHECK_RC(tn_barrier_new(2, &b), TN_ENOMEM);
  tn_fault_alloc(1, 0);
  CHECK_RC(tn_semaphore_new(2, &s), TN_ENOMEM);
  tn_fault_alloc(0, 0);
  CHECK(b == NULL && s == NULL);
  CHECK_RC(tn_barrier_new(2, &b), TN_OK);
  CHECK_RC(tn_semaphore_new(2, &s), TN_OK);
  tn_object_release(TN_OBJECT(b));
  tn_object_release(TN_OBJECT(s));
}
