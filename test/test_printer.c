/*
** test_printer.c - the printer: whole lines from many threads, the
** recursive lock, and its try and timeout forms.
*/
#include <stdatomic.h>
#include <stdlib.h>

#include "test.h"

enum { PRINT_THREADS = 4, PRINT_LINES = 500 };

typedef struct printing {
  tn_printer_t *p;
  int id;
} printing_t;

/* Each line goes out in four writes under one (recursive) lock: without
** the lock, lines from several threads would mix. */
static void *print_lines(void *arg) {
  printing_t *pr = arg;
  char buf[64];
  for (int i = 0; i < PRINT_LINES; i++) {
    if (tn_printer_lock(pr->p, TN_FOREVER) != TN_OK) abort();
    int n = snprintf(buf, sizeof buf, "thread %d", pr->id);
    tn_printer_write(pr->p, buf, (size_t)n, TN_FOREVER);
    tn_printer_write(pr->p, " line", 5, TN_FOREVER);
    n = snprintf(buf, sizeof buf, " %d", i);
    tn_printer_write(pr->p, buf, (size_t)n, TN_FOREVER);
    tn_printer_write(pr->p, "\n", 1, 0);
    tn_printer_unlock(pr->p);
  }
  return NULL;
}

TEST(printer_lines_whole,
     "lines written by 4 threads under the printer's lock never interleave") {
  FILE *f = tmpfile();
  CHECK(f != NULL);
  if (f == NULL) return;
  tn_printer_t *p;
  CHECK_RC(tn_printer_new(f, &p), TN_OK);
  printing_t pr[PRINT_THREADS];
  pthread_t t[PRINT_THREADS];
  for (int i = 0; i < PRINT_THREADS; i++) {
    pr[i] = (printing_t){p, i};
    t[i] = test_spawn(print_lines, &pr[i]);
  }
  for (int i = 0; i < PRINT_THREADS; i++) test_join(t[i]);
  tn_object_release(TN_OBJECT(p));

  rewind(f);
  char line[128];
  int next[PRINT_THREADS] = {0}, lines = 0, bad = 0;
  while (fgets(line, sizeof line, f) != NULL) {
    int id, i;
    char end;
    lines++;
    if (sscanf(line, "thread %d line %d%c", &id, &i, &end) != 3 ||
        end != '\n' || id < 0 || id >= PRINT_THREADS || i != next[id]) {
      if (bad++ < 3) printf("# bad line: %s", line);
      continue;
    }
    next[id]++;
  }
  CHECK_INT(bad, 0);
  CHECK_INT(lines, PRINT_THREADS * PRINT_LINES);
  for (int i = 0; i < PRINT_THREADS; i++) CHECK_INT(next[i], PRINT_LINES);
  fclose(f);
}

typedef struct lock_try {
  tn_printer_t *p;
  double timeout;
  int rc;
  double took;
} lock_try_t;

static void *try_lock(void *arg) {
  lock_try_t *lt = arg;
  double t0 = test_now();
  lt->rc = tn_printer_lock(lt->p, lt->timeout);
  lt->took = test_now() - t0;
  if (lt->rc == TN_OK) tn_printer_unlock(lt->p);
  return NULL;
}

static lock_try_t lock_elsewhere(tn_printer_t *p, double timeout) {
  lock_try_t lt = {p, timeout, 99, 0};
  test_join(test_spawn(try_lock, &lt));
  return lt;
}

TEST(printer_recursive_lock,
     "the holder may lock again; others get TN_EAGAIN or TN_ETIMEDOUT until "
     "the last unlock") {
  FILE *f = tmpfile();
  tn_printer_t *p;
  CHECK_RC(tn_printer_new(f, &p), TN_OK);
  CHECK_RC(tn_printer_lock(p, TN_TRY), TN_OK);
  CHECK_RC(tn_printer_lock(p, TN_TRY), TN_OK);
  CHECK_RC(tn_printer_write(p, "ab", 2, TN_TRY), TN_OK);
  CHECK_INT(lock_elsewhere(p, TN_TRY).rc, TN_EAGAIN);
  CHECK_INT(lock_elsewhere(p, 0).rc, TN_ETIMEDOUT);
  lock_try_t lt = lock_elsewhere(p, 0.05);
  CHECK_INT(lt.rc, TN_ETIMEDOUT);
  CHECK(lt.took >= 0.049 && lt.took < 1.0);
  tn_printer_unlock(p);
  CHECK_INT(lock_elsewhere(p, TN_TRY).rc, TN_EAGAIN); /* still held once */
  tn_printer_unlock(p);
  CHECK_INT(lock_elsewhere(p, TN_TRY).rc, TN_OK);
  tn_object_release(TN_OBJECT(p));
  rewind(f);
  char buf[8] = {0};
  CHECK(fread(buf, 1, sizeof buf, f) == 2);
  CHECK(strcmp(buf, "ab") == 0);
  fclose(f);
}

TEST(printer_waiter_gets_lock,
     "a thread waiting for the printer gets it when the holder lets go") {
  FILE *f = tmpfile();
  tn_printer_t *p;
  CHECK_RC(tn_printer_new(f, &p), TN_OK);
  CHECK_RC(tn_printer_lock(p, TN_FOREVER), TN_OK);
  lock_try_t lt = {p, TN_FOREVER, 99, 0};
  pthread_t t = test_spawn(try_lock, &lt);
  tn_sleep(0.05);
  tn_printer_unlock(p);
  test_join(t);
  CHECK_INT(lt.rc, TN_OK);
  CHECK(lt.took >= 0.04);
  tn_object_release(TN_OBJECT(p));
  fclose(f);
}

TEST(printer_default_stdout, "a printer made with no stream writes to stdout") {
  tn_printer_t *p;
  CHECK_RC(tn_printer_new(NULL, &p), TN_OK);
  const char line[] = "# (this comment line was written by a printer)\n";
  fflush(stdout);
  long before = ftell(stdout); /* -1 on a pipe or terminal: not checked */
  CHECK_RC(tn_printer_write(p, line, sizeof line - 1, TN_FOREVER), TN_OK);
  if (before >= 0) CHECK_INT(ftell(stdout), before + (long)sizeof line - 1);
  tn_object_release(TN_OBJECT(p));
}
