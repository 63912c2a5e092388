/*
** test_faults.c - allocation failure at every allocation of a scenario, and
** thread-creation failure.
**
** The walk. walk(scenario) runs the scenario with the 1st allocation
** failing (tn_fault_alloc(1, 0)), then the 2nd, and so on, until a run
** makes fewer allocations than the failing number, i.e. completes without
** an injected failure. Each scenario keeps a model of what its structure
** must hold and, whenever a call fails, checks that the call returned
** TN_ENOMEM (or its documented error) and that the structure still equals
** the model (size and every value); it then carries on, so the structure is
** also shown to stay usable. Every scenario releases all it made, so the
** sanitizer and valgrind runs of this file show that no failure path
** leaks.
**
** Thread creation. No hook: tn_block_new is made to fail for real, in a
** forked child whose address space is limited (RLIMIT_AS) so that the
** k-th thread's stack cannot be mapped. Skipped under a sanitizer or
** valgrind, whose own reservations cannot live under such a limit.
*/
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"
#include "test.h"

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#endif
#endif
#ifndef RUNNING_ON_VALGRIND
#define RUNNING_ON_VALGRIND 0
#endif

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define UNDER_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define UNDER_SANITIZER 1
#endif
#endif
#ifndef UNDER_SANITIZER
#define UNDER_SANITIZER 0
#endif

/* A NULL blob stands for nil in the deque; the model writes it as this. */
#define NIL_VALUE (-424242L)

/* What walk() learnt: allocations failed (runs) and calls seen failing. */
static unsigned long walk_failures;

/*
** Run `scenario` with the n-th allocation failing, n = 1, 2, ... until a
** run completes without reaching the n-th allocation. Returns the number
** of allocations of the complete run.
*/
static unsigned long walk(void (*scenario)(void)) {
  walk_failures = 0;
  for (unsigned long n = 1; n < 100000; n++) {
    tn_fault_alloc(n, 0);
    scenario();
    unsigned long made = tn_fault_alloc(0, 0);
    if (made < n) return made;
  }
  test_fail(__FILE__, __LINE__, "the scenario never completed");
  return 0;
}

/* A failed call: it must be `expected`; count it. */
#define CHECK_FAILED(rc, expected)                                          \
  do {                                                                      \
    CHECK_RC(rc, expected);                                                 \
    walk_failures++;                                                        \
  } while (0)

/* ---- deque -------------------------------------------------------------- */

typedef struct model {
  long v[256];
  size_t n;
} model_t;

static long value_of(const tn_blob_t *b) {
  return b == NULL ? NIL_VALUE : long_of(b);
}

/* The deque holds exactly the model (tn_deque_get allocates nothing). */
static void check_deque(tn_deque_t *d, const model_t *m) {
  CHECK_INT(tn_deque_size(d), m->n);
  int bad = 0;
  for (size_t i = 0; i < m->n; i++) {
    tn_blob_t *b = NULL;
    if (tn_deque_get(d, i, &b, 0) != TN_OK) {
      bad++;
      continue;
    }
    bad += value_of(b) != m->v[i];
    tn_blob_release(b);
  }
  tn_blob_t *b = NULL;
  CHECK_RC(tn_deque_get(d, m->n, &b, 0), TN_ERANGE);
  CHECK_INT(bad, 0);
}

static void model_insert(model_t *m, size_t at, long v) {
  memmove(&m->v[at + 1], &m->v[at], (m->n - at) * sizeof m->v[0]);
  m->v[at] = v;
  m->n++;
}

static long model_remove(model_t *m, size_t at) {
  long v = m->v[at];
  memmove(&m->v[at], &m->v[at + 1], (m->n - at - 1) * sizeof m->v[0]);
  m->n--;
  return v;
}

/* Push (front or back) or insert `v` at `at` (SIZE_MAX: push back;
** SIZE_MAX - 1: push front); on failure check the deque is unchanged. */
static void try_add(tn_deque_t *d, model_t *m, size_t at, long v) {
  tn_blob_t *b = blob_long(v);
  if (b == NULL) return; /* the blob itself was the failing allocation */
  int rc;
  size_t where;
  if (at == SIZE_MAX) {
    rc = tn_deque_push_back(d, b, 0);
    where = m->n;
  } else if (at == SIZE_MAX - 1) {
    rc = tn_deque_push_front(d, b, 0);
    where = 0;
  } else {
    rc = tn_deque_insert(d, at, b, 0);
    where = at;
  }
  if (rc == TN_OK) {
    model_insert(m, where, v);
  } else {
    CHECK_FAILED(rc, TN_ENOMEM);
    tn_blob_release(b); /* still ours */
    check_deque(d, m);
  }
}

static void take(tn_deque_t *d, model_t *m, bool front) {
  tn_blob_t *b = NULL;
  int rc = front ? tn_deque_pop_front(d, &b, 0) : tn_deque_pop_back(d, &b, 0);
  CHECK_RC(rc, TN_OK); /* a pop never allocates */
  if (rc != TN_OK) return;
  long want = model_remove(m, front ? 0 : m->n - 1);
  CHECK_INT(value_of(b), want);
  tn_blob_release(b);
}

static void try_set(tn_deque_t *d, model_t *m, size_t at, long v) {
  tn_blob_t *b = blob_long(v);
  if (b == NULL) return;
  tn_blob_t *old = (tn_blob_t *)&old; /* must be overwritten on TN_OK */
  int rc = tn_deque_set(d, at, b, &old, 0);
  if (rc == TN_OK) {
    if (at < m->n) {
      CHECK_INT(value_of(old), m->v[at]);
    } else {
      CHECK(old == NULL);
      while (m->n < at) m->v[m->n++] = NIL_VALUE;
      m->n++;
    }
    m->v[at] = v;
    tn_blob_release(old);
  } else {
    CHECK_FAILED(rc, TN_ENOMEM);
    CHECK(at >= m->n); /* an in-place set needs no memory */
    tn_blob_release(b);
    check_deque(d, m);
  }
}

/* Snapshot, then replace the content with the snapshot reversed. */
static void try_snapshot_replace(tn_deque_t *d, model_t *m) {
  tn_blob_t **items = NULL;
  size_t n = 0;
  uint64_t version = 0;
  int rc = tn_deque_snapshot(d, &items, &n, &version, 0);
  if (rc != TN_OK) {
    CHECK_FAILED(rc, TN_ENOMEM);
    check_deque(d, m);
    return;
  }
  CHECK_INT(n, m->n);
  int bad = 0;
  for (size_t i = 0; i < n && i < m->n; i++) bad += value_of(items[i]) != m->v[i];
  CHECK_INT(bad, 0);
  for (size_t i = 0; i < n / 2; i++) {
    tn_blob_t *t = items[i];
    items[i] = items[n - 1 - i];
    items[n - 1 - i] = t;
  }
  rc = tn_deque_replace(d, items, n, version, 0);
  if (rc == TN_OK) {
    tn_free(items); /* the deque owns the references now */
    for (size_t i = 0; i < m->n / 2; i++) {
      long t = m->v[i];
      m->v[i] = m->v[m->n - 1 - i];
      m->v[m->n - 1 - i] = t;
    }
  } else {
    CHECK_FAILED(rc, TN_ENOMEM);
    tn_blob_array_free(items, n);
    check_deque(d, m);
  }
}

static void deque_scenario(void) {
  tn_deque_t *d = NULL;
  int rc = tn_deque_new(TN_UNBOUNDED, &d);
  if (rc != TN_OK) {
    CHECK_FAILED(rc, TN_ENOMEM);
    return;
  }
  model_t m = {{0}, 0};
  for (long i = 0; i < 20; i++) try_add(d, &m, SIZE_MAX, i); /* grows twice */
  for (long i = 1; i <= 5; i++) try_add(d, &m, SIZE_MAX - 1, -i);
  take(d, &m, true);
  take(d, &m, false);
  for (long i = 0; i < 10; i++) try_add(d, &m, m.n / 3, 100 + i);
  try_set(d, &m, 2, 500);            /* in place */
  try_set(d, &m, m.n + 40, 600);     /* grows with NULLs */
  try_snapshot_replace(d, &m);
  for (long i = 0; i < 40; i++) try_add(d, &m, SIZE_MAX, 1000 + i);
  try_snapshot_replace(d, &m);
  check_deque(d, &m);
  tn_object_release(TN_OBJECT(d));
}

TEST(faults_deque_walk,
     "a deque survives a failed allocation at every point of new, push, "
     "insert, grow, set, snapshot and replace: TN_ENOMEM, content "
     "unchanged, nothing leaked") {
  unsigned long allocs = walk(deque_scenario);
  CHECK(allocs > 80);
  printf("# %lu allocations, %lu failed calls\n", allocs, walk_failures);
  CHECK(walk_failures > 0);
}

/* The same deque, seen from a blob that holds it: failure never touches
** the reference counts of the objects a blob would have held. */
static void blob_scenario(void) {
  tn_deque_t *d = NULL;
  int rc = tn_deque_new(4, &d);
  if (rc != TN_OK) {
    CHECK_FAILED(rc, TN_ENOMEM);
    return;
  }
  tn_counter_t *c = NULL;
  rc = tn_counter_new(5, &c);
  if (rc != TN_OK) {
    CHECK_FAILED(rc, TN_ENOMEM);
    tn_object_release(TN_OBJECT(d));
    return;
  }
  tn_object_t *refs[2] = {TN_OBJECT(d), TN_OBJECT(c)};
  tn_blob_t *b = tn_blob_new("payload", 7, refs, 2);
  if (b == NULL) {
    walk_failures++;
    CHECK_INT(atomic_load(&refs[0]->refs), 1);
    CHECK_INT(atomic_load(&refs[1]->refs), 1);
  } else {
    CHECK_INT(atomic_load(&refs[0]->refs), 2);
    CHECK(memcmp(tn_blob_data(b), "payload", 7) == 0);
    /* The deque holds a blob that holds the deque: released by hand. */
    tn_blob_t *inner = tn_blob_retain(b);
    rc = tn_deque_push_back(d, inner, 0);
    if (rc != TN_OK) {
      CHECK_FAILED(rc, TN_ENOMEM);
      tn_blob_release(inner);
    } else {
      tn_blob_t *out = NULL;
      CHECK_RC(tn_deque_pop_front(d, &out, 0), TN_OK);
      CHECK(out == b);
      tn_blob_release(out);
    }
    tn_blob_release(b);
  }
  CHECK_INT(atomic_load(&refs[0]->refs), 1);
  CHECK_INT(atomic_load(&refs[1]->refs), 1);
  tn_object_release(refs[0]);
  tn_object_release(refs[1]);
}

TEST(faults_blob_walk,
     "a blob that cannot be made retains none of its objects, at every "
     "allocation") {
  CHECK(walk(blob_scenario) >= 3);
  CHECK(walk_failures > 0);
}

/* ---- map ---------------------------------------------------------------- */

static long map_get(tn_map_t *m, const char *k) {
  tn_blob_t *b = NULL;
  if (tn_map_get(m, k, strlen(k), &b, 0) != TN_OK) return -999999;
  long v = b != NULL ? long_of(b) : -1;
  tn_blob_release(b);
  return v;
}

/* The map holds key "k<i>" -> have[i] for have[i] >= 0, nothing else. */
static void check_map(tn_map_t *m, const long *have, int n) {
  char k[16];
  size_t size = 0;
  int bad = 0;
  for (int i = 0; i < n; i++) {
    snprintf(k, sizeof k, "k%d", i);
    bad += map_get(m, k) != have[i];
    size += have[i] >= 0;
  }
  CHECK_INT(bad, 0);
  CHECK_INT(tn_map_size(m), size);
}

static void map_scenario(void) {
  tn_map_t *m = NULL;
  int rc = tn_map_new(TN_TYPE_HASH, &m);
  if (rc != TN_OK) {
    CHECK_FAILED(rc, TN_ENOMEM);
    return;
  }
  enum { N = 60 };
  long have[N];
  for (int i = 0; i < N; i++) have[i] = -1;
  char k[16];
  for (int round = 0; round < 3; round++) {
    for (int i = 0; i < N; i++) {
      if (round == 1 && i % 3 != 0) continue;
      snprintf(k, sizeof k, "k%d", i);
      long v = round == 2 && i % 4 == 0 ? -1 : round * 1000 + i;
      tn_blob_t *b = v >= 0 ? blob_long(v) : NULL;
      if (v >= 0 && b == NULL) continue;
      tn_blob_t *old = (tn_blob_t *)&old;
      rc = tn_map_set(m, k, strlen(k), b, &old, 0);
      if (rc == TN_OK) {
        CHECK_INT(old == NULL ? -1 : long_of(old), have[i]);
        tn_blob_release(old);
        have[i] = v;
      } else {
        CHECK_FAILED(rc, TN_ENOMEM);
        tn_blob_release(b);
        check_map(m, have, N);
      }
    }
    tn_map_entry_t *e = NULL;
    size_t n = 0;
    rc = tn_map_snapshot(m, &e, &n, 0);
    if (rc == TN_OK) {
      CHECK_INT(n, tn_map_size(m));
      tn_map_entries_free(e, n);
    } else {
      CHECK_FAILED(rc, TN_ENOMEM);
    }
    check_map(m, have, N);
  }
  tn_object_release(TN_OBJECT(m));
}

TEST(faults_map_walk,
     "a map survives a failed allocation at every point of new, set, "
     "growth, delete and snapshot: TN_ENOMEM, content unchanged, nothing "
     "leaked") {
  CHECK(walk(map_scenario) > 60);
  CHECK(walk_failures > 0);
}

/* ---- other structures --------------------------------------------------- */

static void small_scenario(void) {
  tn_counter_t *c = NULL;
  int rc = tn_counter_new(3, &c);
  if (rc == TN_OK) {
    CHECK_INT(tn_counter_add(c, 2), 5);
    tn_object_release(TN_OBJECT(c));
  } else {
    CHECK_FAILED(rc, TN_ENOMEM);
  }
  tn_printer_t *p = NULL;
  rc = tn_printer_new(stderr, &p);
  if (rc == TN_OK)
    tn_object_release(TN_OBJECT(p));
  else
    CHECK_FAILED(rc, TN_ENOMEM);
  tn_blob_t *v = blob_long(8);
  tn_cell_t *cell = NULL;
  if (v != NULL) {
    rc = tn_cell_new(TN_TYPE_ATOMIC, v, &cell);
    if (rc == TN_OK) {
      tn_object_release(TN_OBJECT(cell));
    } else {
      CHECK_FAILED(rc, TN_ENOMEM);
      CHECK_INT(long_of(v), 8); /* still ours, still whole */
      tn_blob_release(v);
    }
  }
}

TEST(faults_small_walk,
     "a counter, a printer and a cell fail to be made with TN_ENOMEM at "
     "any allocation, and a cell leaves its value with the caller") {
  CHECK(walk(small_scenario) >= 3);
  CHECK(walk_failures > 0);
}

/* ---- block -------------------------------------------------------------- */

static atomic_long job_runs, job_releases;

/* A job that uses the deque its run holds a reference to. */
static void ref_job(void *ctx, int index, void *arg) {
  (void)ctx;
  tn_deque_t *d = arg;
  tn_blob_t *b = blob_long(index);
  if (b != NULL && tn_deque_push_back(d, b, TN_TRY) != TN_OK)
    tn_blob_release(b);
  atomic_fetch_add(&job_runs, 1);
}

/*
** The thread count once the kernel has let go of joined threads: a thread
** pthread_join has returned for may stay listed in /proc/self/task for a
** moment (its tid is cleared before the task is reaped), so wait up to a
** second for the count to come down to `want`.
*/
static int thread_count_settled(int want) {
  int n = test_thread_count();
  for (int i = 0; i < 200 && n > want; i++) {
    usleep(5000);
    n = test_thread_count();
  }
  return n;
}

static void ref_release(void *arg) {
  tn_object_release(arg);
  atomic_fetch_add(&job_releases, 1);
}

/* The threads of a block that ended park in the pool (block.c): join
** them, so the count shows that none is left running. */
static int thread_count_drained(int want) {
  tn_block_pool_drain();
  return thread_count_settled(want);
}

static void block_scenario(void) {
  tn_block_pool_drain();
  int before = test_thread_count();
  tn_deque_t *d = NULL;
  int rc = tn_deque_new(TN_UNBOUNDED, &d);
  if (rc != TN_OK) {
    CHECK_FAILED(rc, TN_ENOMEM);
    return;
  }
  atomic_store(&job_runs, 0);
  atomic_store(&job_releases, 0);
  tn_block_t *b = NULL;
  rc = tn_block_new(3, NULL, NULL, &b);
  if (rc != TN_OK) {
    CHECK_FAILED(rc, TN_ENOMEM);
    CHECK_INT(thread_count_drained(before), before); /* all joined */
    tn_object_release(TN_OBJECT(d));
    return;
  }
  long queued = 0;
  for (int i = 0; i < 5; i++) {
    tn_object_retain(TN_OBJECT(d)); /* the run's reference */
    rc = tn_block_run(b, ref_job, d, ref_release);
    if (rc == TN_OK) {
      queued++;
    } else {
      CHECK_FAILED(rc, TN_ENOMEM);
      /* release ran before the call returned (queued runs may add to it) */
      CHECK(atomic_load(&job_releases) >= i + 1 - queued);
    }
  }
  tn_block_free(b);
  CHECK_INT(atomic_load(&job_runs), 3 * queued);
  CHECK_INT(atomic_load(&job_releases), 5); /* once per run, queued or not */
  CHECK_INT(atomic_load(&TN_OBJECT(d)->refs), 1);
  tn_object_release(TN_OBJECT(d));
  CHECK_INT(thread_count_drained(before), before);
}

TEST(faults_block_walk,
     "a block that cannot be made stops and joins the threads it started; "
     "a run that cannot be queued releases its argument at once; every "
     "queued run releases once") {
  CHECK(walk(block_scenario) >= 7);
  CHECK(walk_failures > 0);
}

/* ---- thread creation ---------------------------------------------------- */

/* VmSize of this process in bytes (0 if unknown). */
static size_t vm_size(void) {
  FILE *f = fopen("/proc/self/status", "r");
  if (f == NULL) return 0;
  char line[256];
  size_t kb = 0;
  while (fgets(line, sizeof line, f) != NULL)
    if (sscanf(line, "VmSize: %zu kB", &kb) == 1) break;
  fclose(f);
  return kb * 1024;
}

/*
** In a child: limit the address space to what it uses plus `room` bytes,
** then make a block of 8 threads. Exit codes: 0 the block was made (and
** freed), 1 TN_ETHREAD with every started thread joined, 2 anything else.
*/
static int child_block(size_t room) {
  size_t now = vm_size();
  if (now == 0) return 3;
  int before = test_thread_count();
  struct rlimit rl = {now + room, now + room};
  if (setrlimit(RLIMIT_AS, &rl) != 0) return 3;
  tn_block_t *b = NULL;
  int rc = tn_block_new(8, NULL, NULL, &b);
  if (rc == TN_OK) {
    tn_block_free(b);
    return thread_count_drained(before) == before ? 0 : 2;
  }
  if (rc != TN_ETHREAD) return 2;
  return thread_count_drained(before) == before ? 1 : 2;
}

TEST(faults_thread_creation,
     "a block whose threads cannot all be created returns TN_ETHREAD and "
     "stops and joins the threads it did start") {
  if (UNDER_SANITIZER || RUNNING_ON_VALGRIND) {
    test_skip("an address-space limit breaks the sanitizer or valgrind");
    return;
  }
  int ethread = 0, made = 0;
  /* From no room at all up to room for every stack (8 MiB each). */
  for (size_t mib = 0; mib <= 80; mib += 4) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) _exit(child_block(mib << 20));
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) {
      test_fail(__FILE__, __LINE__, "child with %zu MiB died", mib);
      continue;
    }
    int code = WEXITSTATUS(status);
    if (code == 3) {
      test_skip("cannot limit the address space here");
      return;
    }
    if (code == 2) test_fail(__FILE__, __LINE__, "with %zu MiB of room: "
                             "not TN_ETHREAD, or threads left", mib);
    ethread += code == 1;
    made += code == 0;
  }
  CHECK(ethread > 0); /* a partial start happened */
  CHECK(made > 0);    /* and with room, the block is made */
}
