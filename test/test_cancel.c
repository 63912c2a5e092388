/*
** test_cancel.c - cancel tokens (cancel.c) and block cancellation: a
** request wakes each kind of wait, leaves the structure as it was, holds
** for the whole job, and never reaches the next job; a poll ends a wait
** with TN_EINTR; tn_block_cancel drops queued jobs and reaches running ones;
** tn_block_abandon lets a block go while a job still runs.
*/
#include <stdatomic.h>
#include <stdlib.h>

#include "internal.h"
#include "test.h"

/* ---- a token on a thread of our own ---------------------------------- */

typedef struct waiter {
  tn_cancel_t *token;
  tn_deque_t *deque;
  atomic_int entered; /* the thread is about to wait */
  int rc;             /* what its wait returned */
  int rc_again;       /* ... and a second wait after it */
  int kind;           /* 0 pop, 1 sleep, 2 push into a full deque */
} waiter_t;

static void *wait_main(void *p) {
  waiter_t *w = p;
  tn_cancel_enter(w->token);
  tn_blob_t *b = NULL;
  atomic_store(&w->entered, 1);
  if (w->kind == 0) {
    w->rc = tn_deque_pop_front(w->deque, &b, TN_FOREVER);
    w->rc_again = tn_deque_pop_front(w->deque, &b, 5.0);
  } else if (w->kind == 1) {
    w->rc = tn_sleep(1000.0);
    w->rc_again = tn_sleep(5.0);
  } else {
    w->rc = tn_deque_push_back(w->deque, NULL, TN_FOREVER);
    w->rc_again = tn_deque_push_back(w->deque, NULL, 5.0);
  }
  tn_cancel_enter(NULL);
  return NULL;
}

/* Start a waiter of `kind`, cancel it after it sleeps, join it. Returns
** the seconds from the request to its end. */
static double cancel_waiter(waiter_t *w, int kind) {
  w->kind = kind;
  atomic_init(&w->entered, 0);
  CHECK_RC(tn_cancel_new(&w->token), TN_OK);
  pthread_t t;
  CHECK(pthread_create(&t, NULL, wait_main, w) == 0);
  while (!atomic_load(&w->entered)) tn_sleep(0.001);
  tn_sleep(0.05); /* asleep by now (or soon: the flag is seen either way) */
  double t0 = test_now();
  tn_cancel_request(w->token);
  pthread_join(t, NULL);
  double dt = test_now() - t0;
  tn_cancel_free(w->token);
  return dt;
}

TEST(cancel_pop, "a request wakes a pop that waits forever: TN_ECANCELED, and every later wait of the thread too; the deque is as it was") {
  waiter_t w = {0};
  CHECK_RC(tn_deque_new(TN_UNBOUNDED, &w.deque), TN_OK);
  double dt = cancel_waiter(&w, 0);
  CHECK_RC(w.rc, TN_ECANCELED);
  CHECK_RC(w.rc_again, TN_ECANCELED);
  CHECK(dt < 2.0);
  CHECK_INT(tn_deque_size(w.deque), 0);
  /* Still a working deque. */
  CHECK_RC(tn_deque_push_back(w.deque, NULL, 0), TN_OK);
  tn_blob_t *b = (tn_blob_t *)1;
  CHECK_RC(tn_deque_pop_front(w.deque, &b, 0), TN_OK);
  CHECK(b == NULL);
  tn_object_release(TN_OBJECT(w.deque));
}

TEST(cancel_push, "a request wakes a push into a full deque; nothing is pushed") {
  waiter_t w = {0};
  CHECK_RC(tn_deque_new(1, &w.deque), TN_OK);
  CHECK_RC(tn_deque_push_back(w.deque, NULL, 0), TN_OK);
  cancel_waiter(&w, 2);
  CHECK_RC(w.rc, TN_ECANCELED);
  CHECK_INT(tn_deque_size(w.deque), 1);
  tn_object_release(TN_OBJECT(w.deque));
}

TEST(cancel_sleep, "a request ends tn_sleep early with TN_ECANCELED") {
  waiter_t w = {0};
  double dt = cancel_waiter(&w, 1);
  CHECK_RC(w.rc, TN_ECANCELED);
  CHECK_RC(w.rc_again, TN_ECANCELED);
  CHECK(dt < 2.0);
}

TEST(cancel_flag, "tn_cancelled follows the thread's token; clear forgets a request") {
  CHECK(!tn_cancelled());
  CHECK(tn_cancel_current() == NULL);
  tn_cancel_t *t;
  CHECK_RC(tn_cancel_new(&t), TN_OK);
  CHECK(tn_cancel_enter(t) == NULL);
  CHECK(!tn_cancelled());
  tn_cancel_request(t);
  CHECK(tn_cancelled());
  CHECK(tn_cancel_requested(t));
  CHECK_RC(tn_cancel_check(), TN_ECANCELED);
  CHECK_RC(tn_sleep(0.5), TN_ECANCELED);
  tn_cancel_clear(t);
  CHECK(!tn_cancelled());
  CHECK_RC(tn_cancel_check(), TN_OK);
  CHECK_RC(tn_sleep(0.001), TN_OK);
  CHECK(tn_cancel_enter(NULL) == t);
  tn_cancel_free(t);
}

/* ---- polls ------------------------------------------------------------- */

static atomic_int poll_calls, poll_answer;

static int count_poll(void *arg) {
  (void)arg;
  atomic_fetch_add(&poll_calls, 1);
  return atomic_load(&poll_answer);
}

TEST(cancel_poll, "a poll is asked while the thread waits; its yes ends the wait with TN_EINTR, and a wait with a deadline still times out") {
  tn_cancel_t *t;
  CHECK_RC(tn_cancel_new(&t), TN_OK);
  tn_cancel_enter(t);
  tn_cancel_set_poll(t, count_poll, NULL);
  tn_deque_t *d;
  CHECK_RC(tn_deque_new(TN_UNBOUNDED, &d), TN_OK);
  tn_blob_t *b;
  atomic_store(&poll_calls, 0);
  atomic_store(&poll_answer, 0);
  double t0 = test_now();
  CHECK_RC(tn_deque_pop_front(d, &b, 0.35), TN_ETIMEDOUT);
  CHECK(test_now() - t0 >= 0.3);
  CHECK(atomic_load(&poll_calls) >= 2); /* every TN_CANCEL_POLL */
  atomic_store(&poll_answer, 1);
  t0 = test_now();
  CHECK_RC(tn_deque_pop_front(d, &b, TN_FOREVER), TN_EINTR);
  CHECK(test_now() - t0 < 1.0);
  CHECK_RC(tn_sleep(10.0), TN_EINTR);
  CHECK_RC(tn_cancel_check(), TN_EINTR);
  tn_cancel_set_poll(t, NULL, NULL);
  tn_cancel_enter(NULL);
  tn_cancel_free(t);
  tn_object_release(TN_OBJECT(d));
}

/* ---- blocks ------------------------------------------------------------ */

typedef struct jobs {
  tn_deque_t *gate;      /* the first run's jobs pop from it */
  atomic_int ran[3];     /* jobs of run 1, 2, 3 that ran their body */
  atomic_int cancelled_at_start[3];
  atomic_int rc1;        /* how run 1's pops ended, TN_ECANCELED count */
  atomic_int later_cancelled; /* a later run saw a request: must not */
} jobs_t;

typedef struct job_arg {
  jobs_t *j;
  int run; /* 0, 1, 2 */
} job_arg_t;

static void job(void *ctx, int index, void *arg) {
  (void)ctx;
  (void)index;
  job_arg_t *a = arg;
  jobs_t *j = a->j;
  if (tn_cancelled()) {
    atomic_fetch_add(&j->cancelled_at_start[a->run], 1);
    return;
  }
  atomic_fetch_add(&j->ran[a->run], 1);
  if (a->run == 0) {
    tn_blob_t *b;
    if (tn_deque_pop_front(j->gate, &b, TN_FOREVER) == TN_ECANCELED)
      atomic_fetch_add(&j->rc1, 1);
  } else if (tn_cancelled()) {
    atomic_fetch_add(&j->later_cancelled, 1);
  }
}

TEST(cancel_block, "tn_block_cancel: running jobs of the run wake with TN_ECANCELED, queued ones start cancelled, later runs are untouched") {
  jobs_t j = {0};
  CHECK_RC(tn_deque_new(TN_UNBOUNDED, &j.gate), TN_OK);
  tn_block_t *b;
  CHECK_RC(tn_block_new(3, NULL, NULL, &b), TN_OK);
  job_arg_t a[3] = {{&j, 0}, {&j, 1}, {&j, 2}};
  CHECK_RC(tn_block_run(b, job, &a[0], NULL), TN_OK);
  CHECK_RC(tn_block_run(b, job, &a[1], NULL), TN_OK);
  CHECK_INT(tn_block_runs(b), 2);
  while (atomic_load(&j.ran[0]) < 3) tn_sleep(0.001);
  tn_sleep(0.05);
  /* Run 1 is running on 3 threads, run 2 queued behind it on 3. */
  CHECK_INT(tn_block_cancel(b, 2), 3);
  CHECK_INT(tn_block_cancel(b, 1), 3);
  CHECK_RC(tn_block_synchronize(b, 10.0), TN_OK);
  CHECK_INT(atomic_load(&j.rc1), 3);
  CHECK_INT(atomic_load(&j.ran[1]), 0);
  CHECK_INT(atomic_load(&j.cancelled_at_start[1]), 3);
  /* A run after the cancel is not cancelled. */
  CHECK_RC(tn_block_run(b, job, &a[2], NULL), TN_OK);
  CHECK_RC(tn_block_synchronize(b, 10.0), TN_OK);
  CHECK_INT(atomic_load(&j.ran[2]), 3);
  CHECK_INT(atomic_load(&j.later_cancelled), 0);
  CHECK_INT(tn_block_cancel(b, 0), 0); /* idle: nothing to reach */
  tn_block_free(b);
  tn_object_release(TN_OBJECT(j.gate));
}

static atomic_int stuck_job_started;

static void wait_forever(void *ctx, int index, void *arg) {
  (void)ctx;
  (void)index;
  tn_blob_t *b;
  atomic_fetch_add(&stuck_job_started, 1);
  tn_deque_pop_front(arg, &b, TN_FOREVER);
}

TEST(cancel_stuck, "tn_jobs_progress sees every job asleep without a deadline, and a cancel ends them") {
  tn_deque_t *d;
  CHECK_RC(tn_deque_new(TN_UNBOUNDED, &d), TN_OK);
  tn_block_t *b;
  CHECK_RC(tn_block_new(2, NULL, NULL, &b), TN_OK);
  atomic_store(&stuck_job_started, 0);
  CHECK_RC(tn_block_run(b, wait_forever, d, NULL), TN_OK);
  while (atomic_load(&stuck_job_started) < 2) tn_sleep(0.001);
  int stuck = 0;
  unsigned long p1 = 0, p2 = 0;
  for (int i = 0; i < 200 && !stuck; i++) { /* until both sleep */
    tn_sleep(0.01);
    p1 = tn_jobs_progress(&stuck);
  }
  CHECK(stuck);
  tn_sleep(0.05);
  p2 = tn_jobs_progress(&stuck);
  CHECK(stuck);
  CHECK(p1 == p2);
  CHECK_INT(tn_block_cancel(b, 0), 2);
  CHECK_RC(tn_block_synchronize(b, 10.0), TN_OK);
  tn_jobs_progress(&stuck);
  CHECK(!stuck); /* nothing runs */
  tn_block_free(b);
  tn_object_release(TN_OBJECT(d));
}

static atomic_int spin_stop, spin_running;

static void spin(void *ctx, int index, void *arg) {
  (void)ctx;
  (void)index;
  (void)arg;
  atomic_store(&spin_running, 1);
  while (!atomic_load(&spin_stop)) tn_cpu_relax(); /* no wait: a cancel
                                                     cannot reach it */
  atomic_store(&spin_running, 2);
}

TEST(cancel_abandon, "tn_block_abandon returns while a job runs; the thread finishes it and frees the block") {
  tn_block_t *b;
  CHECK_RC(tn_block_new(1, NULL, NULL, &b), TN_OK);
  atomic_store(&spin_stop, 0);
  atomic_store(&spin_running, 0);
  CHECK_RC(tn_block_run(b, spin, NULL, NULL), TN_OK);
  while (atomic_load(&spin_running) == 0) tn_sleep(0.001);
  tn_block_cancel(b, 0);
  tn_block_abandon(b); /* returns at once */
  CHECK_INT(atomic_load(&spin_running), 1);
  atomic_store(&spin_stop, 1);
  for (int i = 0; i < 1000 && atomic_load(&spin_running) != 2; i++)
    tn_sleep(0.001);
  CHECK_INT(atomic_load(&spin_running), 2);
  tn_sleep(0.05); /* the thread frees the block (valgrind/ASan check it) */
}
