/*
** main.c - the C test runner: runs every registered test (or those whose
** name or id contains argv[1]) in a stable order (by file, then line).
*/
#include <dirent.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "test.h"

typedef struct test_case {
  const char *id, *name, *file;
  int line;
  test_fn fn;
} test_case_t;

static test_case_t *tests;
static size_t ntests, captests;
static atomic_long failures; /* checks failed in the current test */
/* Why the current test skipped itself (test_skip); "" when it did not. */
static char skip_reason[256];
static pthread_mutex_t skip_lock = PTHREAD_MUTEX_INITIALIZER;

void test_register(const char *id, const char *name, const char *file,
                   int line, test_fn fn) {
  if (ntests == captests) {
    captests = captests ? captests * 2 : 64;
    tests = realloc(tests, captests * sizeof *tests);
    if (tests == NULL) abort();
  }
  tests[ntests++] = (test_case_t){id, name, file, line, fn};
}

void test_fail(const char *file, int line, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  /* One fprintf per line, so lines from several threads stay whole. */
  fprintf(stdout, "# %s:%d: %s\n", file, line, msg);
  fflush(stdout);
  atomic_fetch_add(&failures, 1);
}

void test_skip(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  pthread_mutex_lock(&skip_lock);
  vsnprintf(skip_reason, sizeof skip_reason, fmt, ap);
  if (skip_reason[0] == '\0') snprintf(skip_reason, sizeof skip_reason, "skipped");
  pthread_mutex_unlock(&skip_lock);
  va_end(ap);
}

int test_thread_count(void) {
  DIR *dir = opendir("/proc/self/task");
  if (dir == NULL) return -1;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(dir)) != NULL) n += e->d_name[0] != '.';
  closedir(dir);
  return n;
}

tn_cluster_t *test_cluster(const char *prefix) {
  const char *url = getenv("TUNNEL_REDIS_URL");
  if (url == NULL || url[0] == '\0') {
    test_skip("TUNNEL_REDIS_URL is not set (scripts/with-redis.sh)");
    return NULL;
  }
  tn_cluster_t *c;
  if (tn_cluster_open(url, prefix, 5, &c) != TN_OK) {
    test_fail(__FILE__, __LINE__, "tn_cluster_open: %s", tn_last_error());
    return NULL;
  }
  return c;
}

const char *test_fresh(const char *what) {
  static _Thread_local char buf[128];
  static atomic_int n;
  snprintf(buf, sizeof buf, "%s-%d-%d", what, (int)getpid(),
           atomic_fetch_add(&n, 1) + 1);
  return buf;
}

void *test_hold_mutex(void *holder) {
  test_holder_t *h = holder;
  pthread_mutex_lock(h->mutex);
  atomic_store(&h->held, 1);
  while (!atomic_load(&h->release)) tn_sleep(0.001);
  pthread_mutex_unlock(h->mutex);
  return NULL;
}

double test_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int by_place(const void *a, const void *b) {
  const test_case_t *x = a, *y = b;
  int c = strcmp(x->file, y->file);
  return c != 0 ? c : (x->line > y->line) - (x->line < y->line);
}

int main(int argc, char **argv) {
  const char *filter = argc > 1 ? argv[1] : NULL;
  qsort(tests, ntests, sizeof *tests, by_place);
  int passed = 0, failed = 0, skipped = 0, n = 0;
  double start = test_now();
  for (size_t i = 0; i < ntests; i++) {
    test_case_t *t = &tests[i];
    if (filter != NULL && strstr(t->name, filter) == NULL &&
        strstr(t->id, filter) == NULL)
      continue;
    atomic_store(&failures, 0);
    skip_reason[0] = '\0';
    double t0 = test_now();
    t->fn();
    double dt = test_now() - t0;
    n++;
    if (atomic_load(&failures) == 0 && skip_reason[0] != '\0') {
      skipped++; /* TAP: an ok line with a SKIP directive, not a pass */
      printf("ok %d - %s # SKIP %s", n, t->name, skip_reason);
    } else if (atomic_load(&failures) == 0) {
      passed++;
      printf("ok %d - %s", n, t->name);
    } else {
      failed++;
      printf("not ok %d - %s", n, t->name);
    }
    if (dt >= 0.5) printf(" # %.1f s", dt);
    printf("\n");
    fflush(stdout);
  }
  printf("1..%d\n", n);
  printf("# %.1f s\n", test_now() - start);
  printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
  free(tests);
  return failed == 0 ? 0 : 1;
}
