/*
** test_block_pool.c - the pool of parked block threads (block.c): a
** block's thread serves the next block, starts it as a new thread would,
** exits after its idle time, the bound holds, and a forked child has no
** parked threads and makes blocks.
*/
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"
#include "test.h"

#if defined(__SANITIZE_THREAD__)
#define UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define UNDER_TSAN 1
#endif
#endif
#ifndef UNDER_TSAN
#define UNDER_TSAN 0
#endif

/* What a start hook saw in its thread. */
typedef struct seen {
  pthread_t thread[8];
  int cancelled[8];   /* tn_cancelled() at the start */
  int error_empty[8]; /* tn_last_error() was "" */
  sigset_t mask[8];
} seen_t;

static int seen_start(void *ud, int index, void **ctx) {
  seen_t *s = ud;
  s->thread[index - 1] = pthread_self();
  s->cancelled[index - 1] = tn_cancelled();
  s->error_empty[index - 1] = tn_last_error()[0] == '\0';
  pthread_sigmask(SIG_BLOCK, NULL, &s->mask[index - 1]);
  *ctx = NULL;
  return 0;
}

static const tn_block_hooks_t seen_hooks = {seen_start, NULL};

/* A job that leaves its thread changed: a message in tn_last_error, a
** signal mask of its own, and (cancelled) a requested token. */
static void dirty_job(void *ctx, int index, void *arg) {
  (void)ctx, (void)index, (void)arg;
  tn_error_set(TN_EIO, "left by the first block");
  sigset_t m;
  sigemptyset(&m);
  sigaddset(&m, SIGWINCH);
  pthread_sigmask(SIG_BLOCK, &m, NULL);
  sigemptyset(&m);
  sigaddset(&m, SIGUSR1);
  pthread_sigmask(SIG_UNBLOCK, &m, NULL);
  tn_sleep(30); /* until cancelled */
}

static int masks_equal(const sigset_t *a, const sigset_t *b) {
  for (int sig = 1; sig < 32; sig++)
    if (sigismember(a, sig) != sigismember(b, sig)) return 0;
  return 1;
}

TEST(block_pool_reuse,
     "a terminated block's thread parks and runs the next block, started "
     "as a new thread: token not requested, no tn_last_error, a new "
     "thread's signal mask") {
  tn_block_pool_drain();
  seen_t *first = calloc(1, sizeof *first), *second = calloc(1, sizeof *second);
  tn_block_t *b;
  CHECK_RC(tn_block_new(1, &seen_hooks, first, &b), TN_OK);
  CHECK_RC(tn_block_run(b, dirty_job, NULL, NULL), TN_OK);
  tn_sleep(0.05);
  CHECK_INT(tn_block_cancel(b, 0), 1); /* the job ends with its token set */
  tn_block_free(b);
  CHECK_INT(tn_block_pool_idle(), 1);
  CHECK_RC(tn_block_new(1, &seen_hooks, second, &b), TN_OK);
  CHECK_INT(tn_block_pool_idle(), 0);
  CHECK(pthread_equal(first->thread[0], second->thread[0]));
  CHECK_INT(second->cancelled[0], 0);
  CHECK_INT(second->error_empty[0], 1);
  CHECK(masks_equal(&first->mask[0], &second->mask[0]));
  CHECK_INT(sigismember(&second->mask[0], SIGINT), 1);
  CHECK_INT(sigismember(&second->mask[0], SIGUSR1), 1);
  CHECK_INT(sigismember(&second->mask[0], SIGWINCH), 0);
  tn_block_free(b);
  free(first);
  free(second);
}

TEST(block_pool_bounded_and_idle_exit,
     "at most the pool's bound of threads park; parked threads exit after "
     "about 2 s idle, so the process is back to its own threads") {
  tn_block_pool_drain();
  int before = test_thread_count();
  int max = tn_block_pool_limit(-1);
  CHECK(max >= 4);
  tn_block_t *b;
  CHECK_RC(tn_block_new(max + 3, NULL, NULL, &b), TN_OK);
  tn_block_free(b);
  CHECK_INT(tn_block_pool_idle(), max);
  /* The 3 that found the pool full exit (a moment after the terminate). */
  for (int i = 0; i < 200 && test_thread_count() > before + max; i++)
    tn_sleep(0.005);
  CHECK_INT(test_thread_count(), before + max);
  double t0 = test_now();
  while (tn_block_pool_idle() > 0 && test_now() - t0 < 10) tn_sleep(0.05);
  CHECK_INT(tn_block_pool_idle(), 0);
  CHECK(test_now() - t0 > 1.0); /* not at once */
  /* The last one to exit is joined by the next exit or a drain. */
  tn_block_pool_drain();
  for (int i = 0; i < 200 && test_thread_count() > before; i++) tn_sleep(0.005);
  CHECK_INT(test_thread_count(), before);
}

TEST(block_pool_limit_zero,
     "with a bound of 0 no thread parks (every block makes its threads)") {
  tn_block_pool_drain();
  int old = tn_block_pool_limit(0);
  seen_t *s = calloc(1, sizeof *s);
  tn_block_t *b;
  CHECK_RC(tn_block_new(2, &seen_hooks, s, &b), TN_OK);
  tn_block_free(b);
  CHECK_INT(tn_block_pool_idle(), 0);
  tn_block_pool_limit(old);
  free(s);
}

static void count_job(void *ctx, int index, void *arg) {
  (void)ctx, (void)index;
  atomic_fetch_add((atomic_int *)arg, 1);
}

/* In the child: no parked thread, and blocks work (exit code 0). */
static int child_blocks(void) {
  if (tn_block_pool_idle() != 0) return 1;
  atomic_int runs = 0;
  for (int k = 0; k < 3; k++) {
    tn_block_t *b;
    if (tn_block_new(2, NULL, NULL, &b) != TN_OK) return 2;
    if (tn_block_run(b, count_job, &runs, NULL) != TN_OK) return 3;
    tn_block_free(b);
  }
  if (atomic_load(&runs) != 6) return 4;
  if (tn_block_pool_idle() != 2) return 5; /* the child's own pool works */
  tn_block_pool_drain();
  return 0;
}

TEST(block_pool_fork,
     "a forked child does not see the parent's parked threads, and makes, "
     "runs and ends blocks") {
  if (UNDER_TSAN) {
    test_skip("TSan does not support threads after a multi-threaded fork");
    return;
  }
  tn_block_t *b;
  CHECK_RC(tn_block_new(2, NULL, NULL, &b), TN_OK);
  tn_block_free(b);
  CHECK(tn_block_pool_idle() >= 2);
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) _exit(child_blocks());
  int status = 0;
  CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
  CHECK(WIFEXITED(status));
  CHECK_INT(WEXITSTATUS(status), 0);
  CHECK(tn_block_pool_idle() >= 2); /* the parent's are still there */
}
