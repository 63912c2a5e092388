/*
** test_block.c - blocks of threads: jobs on every thread in order, hooks,
** synchronize, terminate, and the release of each run's argument.
*/
#include <stdatomic.h>
#include <stdlib.h>

#include "internal.h"
#include "test.h"

enum { MAX_THREADS = 8, MAX_JOBS = 256 };

/* What the hooks and jobs record, per thread index. */
typedef struct record {
  int fail_index;                  /* start hook of this index fails */
  atomic_int starts, stops;
  atomic_int stop_ctx_ok;          /* stop got the ctx start made */
  int log[MAX_THREADS + 1][MAX_JOBS];
  int nlog[MAX_THREADS + 1];       /* each touched by its thread only */
  atomic_int ctx_errors;
} record_t;

static int rec_start(void *ud, int index, void **ctx) {
  record_t *r = ud;
  atomic_fetch_add(&r->starts, 1);
  if (index == r->fail_index) return -1;
  int *mine = malloc(sizeof *mine); /* leaks unless stop runs */
  *mine = index;
  *ctx = mine;
  return 0;
}

static void rec_stop(void *ud, int index, void *ctx) {
  record_t *r = ud;
  atomic_fetch_add(&r->stops, 1);
  if (ctx != NULL && *(int *)ctx == index) atomic_fetch_add(&r->stop_ctx_ok, 1);
  free(ctx);
}

static const tn_block_hooks_t rec_hooks = {rec_start, rec_stop};

typedef struct job_arg {
  record_t *r;
  int seq;
  double sleep;
} job_arg_t;

static void rec_job(void *ctx, int index, void *arg) {
  job_arg_t *a = arg;
  if (ctx == NULL || *(int *)ctx != index) atomic_fetch_add(&a->r->ctx_errors, 1);
  tn_sleep(a->sleep);
  int *n = &a->r->nlog[index];
  if (*n < MAX_JOBS) a->r->log[index][(*n)++] = a->seq;
}

static record_t *new_record(void) {
  record_t *r = calloc(1, sizeof *r);
  r->fail_index = -1;
  return r;
}

TEST(block_jobs_everywhere_in_order,
     "every run's job executes once on every thread, in queue order, with "
     "that thread's context") {
  record_t *r = new_record();
  tn_block_t *b;
  CHECK_RC(tn_block_new(3, &rec_hooks, r, &b), TN_OK);
  CHECK_INT(tn_block_size(b), 3);
  CHECK_INT(atomic_load(&r->starts), 3); /* all started before new returns */
  job_arg_t args[100];
  for (int i = 0; i < 100; i++) {
    args[i] = (job_arg_t){r, i, 0};
    CHECK_RC(tn_block_run(b, rec_job, &args[i], NULL), TN_OK);
  }
  CHECK_RC(tn_block_synchronize(b, TN_FOREVER), TN_OK);
  for (int t = 1; t <= 3; t++) {
    CHECK_INT(r->nlog[t], 100);
    int disorder = 0;
    for (int i = 0; i < r->nlog[t]; i++)
      if (r->log[t][i] != i) disorder++;
    CHECK_INT(disorder, 0);
  }
  CHECK_INT(r->nlog[0], 0);
  CHECK_INT(atomic_load(&r->ctx_errors), 0);
  tn_block_free(b);
  CHECK_INT(atomic_load(&r->stops), 3);
  CHECK_INT(atomic_load(&r->stop_ctx_ok), 3);
  free(r);
}

TEST(block_synchronize_waits,
     "synchronize returns once every queued job has finished, or times "
     "out") {
  record_t *r = new_record();
  tn_block_t *b;
  CHECK_RC(tn_block_new(2, &rec_hooks, r, &b), TN_OK);
  CHECK_RC(tn_block_synchronize(b, TN_TRY), TN_OK); /* nothing queued */
  job_arg_t slow = {r, 1, 0.1};
  CHECK_RC(tn_block_run(b, rec_job, &slow, NULL), TN_OK);
  CHECK_RC(tn_block_synchronize(b, TN_TRY), TN_EAGAIN);
  double t0 = test_now();
  CHECK_RC(tn_block_synchronize(b, 0.02), TN_ETIMEDOUT);
  double took = test_now() - t0;
  CHECK(took >= 0.019 && took < 0.09);
  CHECK_RC(tn_block_synchronize(b, TN_FOREVER), TN_OK);
  CHECK_INT(r->nlog[1], 1);
  CHECK_INT(r->nlog[2], 1);
  tn_block_free(b);
  free(r);
}

TEST(block_synchronize_idle_needs_no_lock,
     "synchronize with nothing queued returns TN_OK at once, even under "
     "TN_TRY while another thread holds the block's mutex (idle threads "
     "take it between spinning and sleeping)") {
  tn_block_t *b;
  CHECK_RC(tn_block_new(2, NULL, NULL, &b), TN_OK);
  test_holder_t h = {tn_block_test_mutex(b), 0, 0};
  pthread_t t = test_spawn(test_hold_mutex, &h);
  while (!atomic_load(&h.held)) tn_sleep(0.001);
  CHECK_RC(tn_block_synchronize(b, TN_TRY), TN_OK);
  atomic_store(&h.release, 1);
  test_join(t);
  CHECK_RC(tn_block_synchronize(b, 0), TN_OK);
  CHECK_RC(tn_block_synchronize(b, TN_FOREVER), TN_OK);
  tn_block_free(b);
}

TEST(block_terminate_drains,
     "terminate lets every queued job run, then stops and joins the "
     "threads") {
  record_t *r = new_record();
  tn_block_t *b;
  CHECK_RC(tn_block_new(2, &rec_hooks, r, &b), TN_OK);
  job_arg_t args[20];
  for (int i = 0; i < 20; i++) {
    args[i] = (job_arg_t){r, i, 0.002};
    CHECK_RC(tn_block_run(b, rec_job, &args[i], NULL), TN_OK);
  }
  CHECK(!tn_block_is_terminated(b));
  tn_block_terminate(b);
  CHECK(tn_block_is_terminated(b));
  CHECK_INT(r->nlog[1], 20);
  CHECK_INT(r->nlog[2], 20);
  CHECK_INT(atomic_load(&r->stops), 2); /* joined: the stop hooks ran */
  tn_block_terminate(b);                /* idempotent */
  CHECK_INT(atomic_load(&r->stops), 2);
  CHECK_RC(tn_block_synchronize(b, 0), TN_OK);
  tn_block_free(b);
  tn_block_free(NULL);
  free(r);
}

static atomic_int released_count;
static void count_release(void *arg) {
  (void)arg;
  atomic_fetch_add(&released_count, 1);
}

TEST(block_run_after_terminate,
     "a run after terminate returns TN_ETERMINATED and releases its "
     "argument") {
  tn_block_t *b;
  CHECK_RC(tn_block_new(1, NULL, NULL, &b), TN_OK);
  tn_block_terminate(b);
  atomic_store(&released_count, 0);
  record_t *r = new_record();
  job_arg_t a = {r, 0, 0};
  CHECK_RC(tn_block_run(b, rec_job, &a, count_release), TN_ETERMINATED);
  CHECK_INT(atomic_load(&released_count), 1);
  CHECK_INT(r->nlog[1], 0);
  CHECK_RC(tn_block_run(b, NULL, &a, count_release), TN_EINVAL);
  CHECK_INT(atomic_load(&released_count), 2);
  tn_block_free(b);
  free(r);
}

TEST(block_new_validates, "a block needs at least one thread") {
  tn_block_t *b = NULL;
  CHECK_RC(tn_block_new(0, NULL, NULL, &b), TN_EINVAL);
  CHECK_RC(tn_block_new(-3, NULL, NULL, &b), TN_EINVAL);
  CHECK(b == NULL);
}

TEST(block_start_failure,
     "a failing start hook makes creation fail with TN_EINIT; the other "
     "threads stop and nothing leaks") {
  record_t *r = new_record();
  r->fail_index = 2;
  tn_block_t *b = NULL;
  CHECK_RC(tn_block_new(4, &rec_hooks, r, &b), TN_EINIT);
  CHECK(b == NULL);
  /* tn_block_new returns as soon as thread 2 failed: threads whose start
  ** hook was still running then finish it and stop by themselves. */
  double t0 = test_now();
  while ((atomic_load(&r->starts) < 4 || atomic_load(&r->stops) < 3) &&
         test_now() - t0 < 5)
    tn_sleep(0.001);
  CHECK_INT(atomic_load(&r->starts), 4);
  CHECK_INT(atomic_load(&r->stops), 3); /* only where start succeeded */
  CHECK_INT(atomic_load(&r->stop_ctx_ok), 3);
  tn_sleep(0.05); /* let a detached thread free the block (LSan) */
  free(r);
}

/* A run's argument that checks it is released after all its jobs. */
typedef struct counted {
  atomic_int ran;
  int size;
  atomic_int *early; /* releases that came before every job ran */
  atomic_int *releases;
} counted_t;

static void counted_job(void *ctx, int index, void *arg) {
  (void)ctx, (void)index;
  counted_t *c = arg;
  atomic_fetch_add(&c->ran, 1);
}

static void counted_release(void *arg) {
  counted_t *c = arg;
  if (atomic_load(&c->ran) != c->size) atomic_fetch_add(c->early, 1);
  atomic_fetch_add(c->releases, 1);
  free(c);
}

/* Queue one counted run on the 4 threads of `b`. */
static void queue_counted(tn_block_t *b, atomic_int *early,
                          atomic_int *releases) {
  counted_t *c = malloc(sizeof *c);
  if (c == NULL) abort();
  atomic_init(&c->ran, 0);
  c->size = 4;
  c->early = early;
  c->releases = releases;
  CHECK_RC(tn_block_run(b, counted_job, c, counted_release), TN_OK);
}

TEST(block_release_once_per_run,
     "release runs exactly once per run, after the last thread finished "
     "with it") {
  tn_block_t *b;
  CHECK_RC(tn_block_new(4, NULL, NULL, &b), TN_OK);
  atomic_int early = 0, releases = 0;
  for (int i = 0; i < 500; i++) queue_counted(b, &early, &releases);
  CHECK_RC(tn_block_synchronize(b, TN_FOREVER), TN_OK);
  CHECK_INT(atomic_load(&releases), 500); /* synchronize covers releases */
  CHECK_INT(atomic_load(&early), 0);
  /* Runs still queued at free are run, then released. */
  for (int i = 0; i < 50; i++) queue_counted(b, &early, &releases);
  tn_block_free(b);
  CHECK_INT(atomic_load(&releases), 550);
  CHECK_INT(atomic_load(&early), 0);
}

static void *terminate_thread(void *p) {
  tn_block_terminate(p);
  return NULL;
}

TEST(block_concurrent_terminate,
     "terminate called from several threads at once joins once and returns "
     "in each after the threads stopped") {
  record_t *r = new_record();
  tn_block_t *b;
  CHECK_RC(tn_block_new(2, &rec_hooks, r, &b), TN_OK);
  job_arg_t a = {r, 0, 0.05};
  tn_block_run(b, rec_job, &a, NULL);
  pthread_t t[3];
  for (int i = 0; i < 3; i++) t[i] = test_spawn(terminate_thread, b);
  for (int i = 0; i < 3; i++) test_join(t[i]);
  CHECK_INT(atomic_load(&r->stops), 2);
  CHECK_INT(r->nlog[1], 1);
  tn_block_free(b);
  free(r);
}

static void noop_job(void *ctx, int index, void *arg) {
  (void)ctx, (void)index, (void)arg;
}

TEST(block_lifecycle_cost,
     "creating, running on and freeing a block many times works (and is "
     "timed)") {
  int n = 200;
  double t0 = test_now();
  for (int i = 0; i < n; i++) {
    tn_block_t *b;
    if (tn_block_new(1, NULL, NULL, &b) != TN_OK) {
      CHECK(0);
      break;
    }
    CHECK_RC(tn_block_run(b, noop_job, NULL, NULL), TN_OK);
    tn_block_free(b);
  }
  double per = (test_now() - t0) / n;
  tn_block_t *b;
  CHECK_RC(tn_block_new(1, NULL, NULL, &b), TN_OK);
  int runs = 20000;
  t0 = test_now();
  for (int i = 0; i < runs; i++) tn_block_run(b, noop_job, NULL, NULL);
  CHECK_RC(tn_block_synchronize(b, TN_FOREVER), TN_OK);
  double run = (test_now() - t0) / runs;
  tn_block_free(b);
  printf("# block create+run+free: %.0f us; per run: %.0f ns\n", per * 1e6,
         run * 1e9);
}

/* Start hooks for the next test: thread 1 fails at once, thread 2 blocks
** until `go` is set (a Lua init popping an empty vector), then succeeds. */
typedef struct late_start {
  atomic_int go;
  atomic_int in_hook;   /* thread 2 is inside its start hook */
  atomic_int returned;  /* start hooks that returned */
  atomic_int stopped;   /* stop hooks that ran */
} late_start_t;

static int late_start(void *ud, int index, void **ctx) {
  late_start_t *s = ud;
  if (index == 2) {
    atomic_store(&s->in_hook, 1);
    while (!atomic_load(&s->go)) tn_sleep(0.001);
  }
  *ctx = ud;
  atomic_fetch_add(&s->returned, 1);
  return index == 1 ? -1 : 0;
}

static void late_stop(void *ud, int index, void *ctx) {
  late_start_t *s = ud;
  if (index == 2 && ctx == ud) atomic_fetch_add(&s->stopped, 1);
}

static const tn_block_hooks_t late_hooks = {late_start, late_stop};

TEST(block_start_failure_at_once,
     "a failed start hook makes tn_block_new return TN_EINIT at once, while "
     "another thread's hook still blocks; that thread, detached, runs its "
     "stop hook when its start returns, and frees the block (ASan: no leak, "
     "no use after free)") {
  late_start_t *s = calloc(1, sizeof *s);
  tn_block_t *b = NULL;
  double t0 = test_now();
  CHECK_RC(tn_block_new(2, &late_hooks, s, &b), TN_EINIT);
  CHECK(test_now() - t0 < 1.0);
  while (!atomic_load(&s->in_hook)) tn_sleep(0.001);
  tn_sleep(0.05);
  CHECK_INT(atomic_load(&s->returned), 1); /* thread 2 still in its hook */
  CHECK_INT(atomic_load(&s->stopped), 0);
  atomic_store(&s->go, 1);
  t0 = test_now();
  while (atomic_load(&s->stopped) == 0 && test_now() - t0 < 5) tn_sleep(0.001);
  CHECK_INT(atomic_load(&s->returned), 2);
  CHECK_INT(atomic_load(&s->stopped), 1);
  tn_sleep(0.05); /* let it free the block before the run ends (LSan) */
  free(s);
}
