/*
** test.h - a tiny unit-test framework for the C tests.
**
** TEST(id, "what the behaviour is") { ... } defines and registers a test
** (registration runs before main, from a constructor). CHECK(cond) and its
** typed variants record a failure with file:line and carry on, so one run
** shows every broken expectation; they may be used from any thread.
** The runner (main.c) prints TAP-like lines, `ok N - name`,
** `ok N - name # SKIP why` (test_skip) or `not ok N - name`, then
** `N passed, N failed, N skipped`, and exits nonzero when anything failed. An optional argument runs only the tests whose name or
** id contains it.
*/
#ifndef TN_TEST_H
#define TN_TEST_H

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "tunnel.h"
#include "testing.h" /* tn_fault_alloc */

typedef void (*test_fn)(void);

void test_register(const char *id, const char *name, const char *file,
                   int line, test_fn fn);
/* Record a failed check (prints a `#` diagnostic line). Thread-safe. */
void test_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Mark the current test skipped, with why (printf-style): it then prints
** `ok N - name # SKIP why` and counts as skipped, not passed (a failed
** check still fails it). The test returns by itself after calling it. */
void test_skip(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Seconds on the monotonic clock, for timing checks. */
double test_now(void);
/* Threads of this process, from /proc (-1 if unreadable). */
int test_thread_count(void);
/* The test server's cluster (TUNNEL_REDIS_URL; keys under `prefix`), or
** NULL with the test marked skipped (no URL: scripts/with-redis.sh sets
** it) or failed (no connection). */
tn_cluster_t *test_cluster(const char *prefix);
/* A name no other test of any run uses: "what-pid-n" (in a buffer of the
** calling thread's, until its next call). */
const char *test_fresh(const char *what);

#define TEST(id, name)                                                      \
  static void id(void);                                                     \
  __attribute__((constructor)) static void id##_register(void) {            \
    test_register(#id, name, __FILE__, __LINE__, id);                       \
  }                                                                         \
  static void id(void)

#define CHECK(cond)                                                         \
  do {                                                                      \
    if (!(cond)) test_fail(__FILE__, __LINE__, "CHECK(%s)", #cond);         \
  } while (0)

/* Integer equality, printing both values on failure. */
#define CHECK_INT(a, b)                                                     \
  do {                                                                      \
    long long check_a_ = (long long)(a), check_b_ = (long long)(b);         \
    if (check_a_ != check_b_)                                               \
      test_fail(__FILE__, __LINE__, "CHECK_INT(%s, %s): %lld != %lld", #a,  \
                #b, check_a_, check_b_);                                    \
  } while (0)

/* An API call's result code, printing the codes' names on failure. */
#define CHECK_RC(call, expected)                                            \
  do {                                                                      \
    int check_rc_ = (call), check_e_ = (expected);                          \
    if (check_rc_ != check_e_)                                              \
      test_fail(__FILE__, __LINE__, "%s returned %d (%s), expected %d (%s)", \
                #call, check_rc_, tn_strerror(check_rc_), check_e_,         \
                tn_strerror(check_e_));                                     \
  } while (0)

/* Blobs holding one long, the values most tests move around. */
static inline tn_blob_t *blob_long(long v) {
  return tn_blob_new(&v, sizeof v, NULL, 0);
}
static inline long long_of(const tn_blob_t *b) {
  long v;
  memcpy(&v, tn_blob_data(b), sizeof v);
  return v;
}

/* A thread that holds `mutex` until told to let go: set `release`; `held`
** says it has it. For tests of TN_TRY on a busy lock. */
typedef struct test_holder {
  pthread_mutex_t *mutex;
  atomic_int held, release;
} test_holder_t;
void *test_hold_mutex(void *holder);

/* Run fn(arg) on a new thread / join it (abort on failure: not a test). */
#include <stdlib.h>
static inline pthread_t test_spawn(void *(*fn)(void *), void *arg) {
  pthread_t t;
  if (pthread_create(&t, NULL, fn, arg) != 0) abort();
  return t;
}
static inline void test_join(pthread_t t) {
  if (pthread_join(t, NULL) != 0) abort();
}

#endif
