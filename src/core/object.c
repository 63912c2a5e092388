/*
** object.c - the shared-object header, the reader-writer lock behind user
** callbacks, the allocator hook, and the small helpers (errors, sleep).
*/
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <unistd.h>

#include "internal.h"
#include "testing.h"

/* ---- errors and sleep --------------------------------------------------- */

const char *tn_strerror(int err) {
  switch (err) {
  case TN_OK: return "success";
  case TN_ENOMEM: return "out of memory";
  case TN_ETIMEDOUT: return "timed out";
  case TN_EAGAIN: return "would wait";
  case TN_ECLOSED: return "closed";
  case TN_EINVAL: return "invalid argument";
  case TN_ERANGE: return "index out of range";
  case TN_ETERMINATED: return "block is terminated";
  case TN_ETHREAD: return "cannot create thread";
  case TN_ECONFLICT: return "changed concurrently";
  case TN_EINIT: return "thread initialisation failed";
  case TN_EIO: return "server error";
  case TN_EPROTO: return "undecodable reply";
  case TN_ELOCAL: return "in-process object in a cluster value";
  case TN_EDEADLK:
    return "would deadlock: this thread holds the object's callback lock";
  case TN_ECANCELED: return "cancelled";
  case TN_EINTR: return "interrupted!";
  case TN_EBROKEN: return "the barrier's round was broken";
  default: return "unknown error";
  }
}

/* ---- remote failures ---------------------------------------------------- */

static _Thread_local char last_error[512];
static _Thread_local int pending_error;

const char *tn_last_error(void) { return last_error; }

int tn_error_take(void) {
  int err = pending_error;
  pending_error = TN_OK;
  return err;
}

int tn_error_set(int err, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(last_error, sizeof last_error, fmt, ap);
  va_end(ap);
  return err;
}

void tn_error_pend(int err) { pending_error = err; }

/* A pooled block thread starts its next block as a new thread would. */
void tn_error_reset(void) {
  last_error[0] = '\0';
  pending_error = TN_OK;
}

double tn_clock(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- allocation with fault injection ------------------------------------ */

static atomic_ulong alloc_count;     /* allocations since the last arm */
static atomic_ulong alloc_fail_at;   /* 0: off, else the failing number */
static atomic_int alloc_fail_sticky; /* fail every allocation after it too */

unsigned long tn_fault_alloc(unsigned long n, int sticky) {
  unsigned long made = atomic_exchange(&alloc_count, 0);
  atomic_store(&alloc_fail_sticky, sticky != 0);
  atomic_store(&alloc_fail_at, n);
  return made;
}

/* Off: one relaxed load. */
bool tn_fault_check(void) {
  unsigned long at = atomic_load_explicit(&alloc_fail_at, memory_order_relaxed);
  if (at == 0) return false;
  unsigned long k = atomic_fetch_add(&alloc_count, 1) + 1;
  return k == at || (k > at && atomic_load(&alloc_fail_sticky));
}

void *tn_malloc(size_t size) {
  return tn_fault_check() ? NULL : malloc(size);
}

void *tn_realloc(void *p, size_t size) {
  return tn_fault_check() ? NULL : realloc(p, size);
}

void *tn_malloc_aligned(size_t align, size_t size) {
  void *p = NULL;
  if (tn_fault_check() || posix_memalign(&p, align, size) != 0) return NULL;
  return p;
}

void tn_free(void *p) { free(p); }

/* ---- locks and deadlines ------------------------------------------------ */

tn_deadline_t tn_deadline_in(double timeout) {
  tn_deadline_t d = {{0, 0}, false};
  if (!(timeout < 1e9)) { /* TN_FOREVER, huge values and NaN */
    d.forever = true;
    return d;
  }
  clock_gettime(CLOCK_MONOTONIC, &d.at);
  if (timeout > 0) {
    time_t s = (time_t)timeout;
    long ns = d.at.tv_nsec + (long)((timeout - (double)s) * 1e9);
    d.at.tv_sec += s + ns / 1000000000L;
    d.at.tv_nsec = ns % 1000000000L;
  }
  return d;
}

bool tn_deadline_passed(const tn_deadline_t *d) {
  if (d->forever) return false;
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return now.tv_sec > d->at.tv_sec ||
         (now.tv_sec == d->at.tv_sec && now.tv_nsec >= d->at.tv_nsec);
}

/* Adaptive: a thread that finds the mutex taken spins a little before it
** sleeps. Structure mutexes are held for a few dozen instructions, so the
** wait is usually shorter than a futex round trip (measured: a 1P/1C
** hand-off 15-20% faster). */
void tn_mutex_init(pthread_mutex_t *m) {
#ifdef TN_MEMCHECK
  int kind = PTHREAD_MUTEX_NORMAL;
#else
  int kind = PTHREAD_MUTEX_ADAPTIVE_NP;
#endif
  pthread_mutexattr_t attr;
  if (pthread_mutexattr_init(&attr) != 0 ||
      pthread_mutexattr_settype(&attr, kind) != 0 ||
      pthread_mutex_init(m, &attr) != 0)
    abort();
  pthread_mutexattr_destroy(&attr);
}

void tn_cond_init(pthread_cond_t *c) {
  pthread_condattr_t attr;
  if (pthread_condattr_init(&attr) != 0 ||
      pthread_condattr_setclock(&attr, CLOCK_MONOTONIC) != 0 ||
      pthread_cond_init(c, &attr) != 0)
    abort();
  pthread_condattr_destroy(&attr);
}

int tn_mutex_acquire(pthread_mutex_t *m, double timeout) {
  if (timeout < 0) {
    int rc = pthread_mutex_trylock(m);
    if (rc == EBUSY) return TN_EAGAIN;
    if (rc != 0) abort();
    return TN_OK;
  }
  if (pthread_mutex_lock(m) != 0) abort();
  return TN_OK;
}

/* ---- bounded spinning ---------------------------------------------------- */

static long cpus_online = -1;

long tn_cpu_count(void) {
  /* A benign race: every thread computes the same value. */
  long n = __atomic_load_n(&cpus_online, __ATOMIC_RELAXED);
  if (n < 0) {
    n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1) n = 1;
    __atomic_store_n(&cpus_online, n, __ATOMIC_RELAXED);
  }
  return n;
}

/*
** Threads spinning right now, process-wide. With more waiting threads than
** CPUs, a spinner beyond one per CPU can only delay the thread it waits
** for, so those sleep at once. (One per *other* CPU was tried: then the
** two sides of a ping-pong often find the slot taken by each other for an
** instant, and sleep; round trips got several times slower.)
*/
static atomic_int spinners;

static bool spin_begin(void) {
#ifdef TN_MEMCHECK
  return false; /* valgrind runs one thread at a time */
#endif
  long slots = tn_cpu_count();
  if (slots < 2) return false;
  if (atomic_load_explicit(&spinners, memory_order_relaxed) >= slots)
    return false; /* the cheap test first: no write to a shared line */
  if (atomic_fetch_add_explicit(&spinners, 1, memory_order_relaxed) >= slots) {
    atomic_fetch_sub_explicit(&spinners, 1, memory_order_relaxed);
    return false;
  }
  return true;
}

static long long now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* The clock is read every 64 turns, so the spin stays within about `ns`
** whatever PAUSE costs on this CPU. */
void tn_spin_until(bool (*done)(void *arg), void *arg, long ns) {
  if (!spin_begin()) return;
  long long until = 0;
  for (unsigned i = 0; !done(arg); i++) {
    if ((i & 63) == 0) {
      long long now = now_ns();
      if (until == 0)
        until = now + ns;
      else if (now >= until)
        break;
    }
    tn_cpu_relax();
  }
  atomic_fetch_sub_explicit(&spinners, 1, memory_order_relaxed);
}

/* ---- the callback lock and its gate ------------------------------------- */

/*
** The callback locks this thread holds, innermost last: a lock call on one
** of them would wait for itself (TN_EDEADLK instead), and the gate lets
** the holder's own operations through. Callbacks nest rarely and shallowly.
*/
#define HELD_MAX 64
typedef struct held_lock {
  const tn_object_t *o;
  int mode; /* 1 read, 2 write */
} held_lock_t;
static _Thread_local held_lock_t held[HELD_MAX];
static _Thread_local int nheld;

int tn_object_lock_held(const tn_object_t *o) {
  for (int i = nheld - 1; i >= 0; i--)
    if (held[i].o == o) return held[i].mode;
  return 0;
}

static void held_push(const tn_object_t *o, int mode) {
  held[nheld].o = o;
  held[nheld].mode = mode;
  nheld++;
}

/* Unlocks may come in any order (C callers): remove this object's entry. */
static void held_pop(const tn_object_t *o) {
  for (int i = nheld - 1; i >= 0; i--) {
    if (held[i].o == o) {
      for (int j = i; j + 1 < nheld; j++) held[j] = held[j + 1];
      nheld--;
      return;
    }
  }
}

/*
** Before taking a callback lock that this thread may hold already: TN_OK
** to lock as usual, NESTED for a read inside this thread's own read (it
** joins its readers at once: waiting behind a queued writer, who waits for
** this very reader, would never end), or what waiting for oneself gives:
** TN_EAGAIN for TN_TRY (an Async twin returns nil, as in the original),
** TN_EDEADLK otherwise (instead of waiting forever).
*/
#define NESTED 1
static int held_check(const tn_object_t *o, int mode, double timeout) {
  if (nheld >= HELD_MAX) return TN_ENOMEM;
  int holds = tn_object_lock_held(o);
  if (holds == 0) return TN_OK;
  if (holds == 1 && mode == 1) return NESTED;
  return timeout < 0 ? TN_EAGAIN : TN_EDEADLK;
}

static void callback_lock_init(tn_rwlock_t *l) {
  tn_mutex_init(&l->mutex);
  tn_cond_init(&l->readers_cv);
  tn_cond_init(&l->writers_cv);
  tn_cond_init(&l->gate_cv);
  l->readers = 0;
  l->writers_waiting = 0;
  l->writer = false;
}

static void callback_lock_destroy(tn_rwlock_t *l) {
  pthread_cond_destroy(&l->readers_cv);
  pthread_cond_destroy(&l->writers_cv);
  pthread_cond_destroy(&l->gate_cv);
  pthread_mutex_destroy(&l->mutex);
}

/*
** Move the gate, under the lock's mutex: every change of the gate happens
** there, in the order of the lock's own changes (a last reader's opening
** cannot overtake the next writer's closing). quiesce takes the
** structure's mutexes inside this one; no one takes them in the other
** order (an operation drops its structure mutex before tn_gate_wait).
*/
static void gate_move(tn_object_t *o, int gate) {
  atomic_store(&o->gate, gate);
  if (o->quiesce != NULL) o->quiesce(o, gate);
  if (gate == TN_GATE_OPEN) pthread_cond_broadcast(&o->callback_lock.gate_cv);
}

int tn_gate_check(tn_object_t *o, bool modifies, double timeout) {
  int mode = tn_object_lock_held(o);
  if (mode == 2 || (mode == 1 && !modifies)) return TN_OK;
  if (mode == 1) return timeout < 0 ? TN_EAGAIN : TN_EDEADLK;
  return TN_EBUSY_GATE;
}

static bool gate_shut(tn_object_t *o, bool modifies) {
  int g = atomic_load(&o->gate);
  return g == TN_GATE_WRITE || (g == TN_GATE_READ && modifies);
}

/* Each wait re-checks the gate under the lock's mutex, where every opening
** happens and is broadcast: no wake-up is lost. */
int tn_gate_wait(tn_object_t *o, bool modifies, double timeout,
                 tn_deadline_t *dl, bool *dl_set) {
  if (timeout < 0) return TN_EAGAIN; /* TN_TRY: the gate was seen shut */
  if (!*dl_set) {
    *dl = tn_deadline_in(timeout);
    *dl_set = true;
  }
  tn_rwlock_t *l = &o->callback_lock;
  int rc = TN_OK;
  pthread_mutex_lock(&l->mutex);
  while (gate_shut(o, modifies)) {
    int w = tn_cond_wait_until(&l->gate_cv, &l->mutex, dl);
    if (w != TN_OK && gate_shut(o, modifies)) {
      rc = w;
      break;
    }
  }
  pthread_mutex_unlock(&l->mutex);
  return rc;
}

/*
** Readers wait while a writer holds the lock or is queued for it, so a
** stream of readers cannot starve a writer. Each wait re-checks under the
** mutex; a timed-out wait leaves the counts as they were. The first reader
** in shuts the gate to modifications, the last one out opens it.
*/
static int callback_rdlock(tn_object_t *o, double timeout) {
  tn_rwlock_t *l = &o->callback_lock;
  int rc = tn_mutex_acquire(&l->mutex, timeout);
  if (rc != TN_OK) return rc;
  if (l->writer || l->writers_waiting > 0) {
    if (timeout < 0) {
      pthread_mutex_unlock(&l->mutex);
      return TN_EAGAIN;
    }
    tn_deadline_t d = tn_deadline_in(timeout);
    while (l->writer || l->writers_waiting > 0) {
      int w = tn_cond_wait_until(&l->readers_cv, &l->mutex, &d);
      if (w != TN_OK && (l->writer || l->writers_waiting > 0)) {
        pthread_mutex_unlock(&l->mutex);
        return w;
      }
    }
  }
  if (l->readers++ == 0) gate_move(o, TN_GATE_READ);
  pthread_mutex_unlock(&l->mutex);
  return TN_OK;
}

static void callback_rdunlock(tn_object_t *o) {
  tn_rwlock_t *l = &o->callback_lock;
  pthread_mutex_lock(&l->mutex);
  if (--l->readers == 0) {
    gate_move(o, TN_GATE_OPEN);
    if (l->writers_waiting > 0) pthread_cond_signal(&l->writers_cv);
  }
  pthread_mutex_unlock(&l->mutex);
}

static int callback_wrlock(tn_object_t *o, double timeout) {
  tn_rwlock_t *l = &o->callback_lock;
  int rc = tn_mutex_acquire(&l->mutex, timeout);
  if (rc != TN_OK) return rc;
  if (l->writer || l->readers > 0) {
    if (timeout < 0) {
      pthread_mutex_unlock(&l->mutex);
      return TN_EAGAIN;
    }
    tn_deadline_t d = tn_deadline_in(timeout);
    l->writers_waiting++;
    while (l->writer || l->readers > 0) {
      int w = tn_cond_wait_until(&l->writers_cv, &l->mutex, &d);
      if (w != TN_OK && (l->writer || l->readers > 0)) {
        /* Giving up: readers held off for our sake may go on. */
        if (--l->writers_waiting == 0) pthread_cond_broadcast(&l->readers_cv);
        pthread_mutex_unlock(&l->mutex);
        return w;
      }
    }
    l->writers_waiting--;
  }
  l->writer = true;
  gate_move(o, TN_GATE_WRITE);
  pthread_mutex_unlock(&l->mutex);
  return TN_OK;
}

static void callback_wrunlock(tn_object_t *o) {
  tn_rwlock_t *l = &o->callback_lock;
  pthread_mutex_lock(&l->mutex);
  l->writer = false;
  gate_move(o, TN_GATE_OPEN);
  if (l->writers_waiting > 0)
    pthread_cond_signal(&l->writers_cv);
  else
    pthread_cond_broadcast(&l->readers_cv);
  pthread_mutex_unlock(&l->mutex);
}

/* ---- shared objects ----------------------------------------------------- */

void tn_object_init(tn_object_t *o, tn_type_t type,
                    void (*destroy)(tn_object_t *o)) {
  atomic_init(&o->refs, 1);
  o->type = type;
  o->destroy = destroy;
  o->backend = NULL;
  o->quiesce = NULL;
  atomic_init(&o->gate, TN_GATE_OPEN);
  callback_lock_init(&o->callback_lock);
  o->dead_next = NULL;
  o->gc = NULL;
  o->gc_next = o->gc_prev = NULL;
  o->gc_index = 0;
  o->gc_epoch = 0;
  atomic_init(&o->gc_touched, false);
}

void tn_object_init_remote(tn_object_t *o, tn_type_t type,
                           void (*destroy)(tn_object_t *o),
                           const tn_backend_t *backend) {
  tn_object_init(o, type, destroy);
  o->backend = backend;
}

int tn_object_is_remote(const tn_object_t *o) { return o->backend != NULL; }

void tn_object_fini(tn_object_t *o) { callback_lock_destroy(&o->callback_lock); }

/* seq_cst, and the check of tn_gc_running after it, pair with the
** collector's reads of the counts (collect.c); on x86 the add is the same
** instruction as a relaxed one. */
tn_object_t *tn_object_retain(tn_object_t *o) {
  atomic_fetch_add_explicit(&o->refs, 1, memory_order_seq_cst);
  if (__builtin_expect(atomic_load(&tn_gc_running) != 0, 0))
    atomic_store(&o->gc_touched, true);
  return o;
}

/*
** Destroying is iterative. An object's destroy releases its blobs, whose
** release may drop the last reference of other objects: done recursively,
** a chain of 10^5 shared tables each holding the next took 10^5 nested
** destroys and overflowed the C stack. So an object whose count reaches
** zero joins this thread's list of objects to destroy, and the outermost
** release of the thread (the one not already draining) destroys them one
** after the other: the stack stays flat, and everything is freed before
** that outermost release returns, as before. The list is linked through
** the objects (dead_next): no allocation, so a release cannot fail.
*/
static _Thread_local tn_object_t *dead_list;
static _Thread_local bool draining;

static __attribute__((noinline)) void object_dead(tn_object_t *o) {
  o->dead_next = dead_list;
  dead_list = o;
  if (draining) return; /* an outer release of this thread destroys it */
  draining = true;
  while ((o = dead_list) != NULL) {
    dead_list = o->dead_next;
    if (o->gc != NULL) tn_gc_unregister(o);
    o->destroy(o); /* may add to dead_list */
  }
  draining = false;
}

/* The acquire/release pair makes every write by any former holder visible
** to the thread that destroys the object. The count that does not reach
** zero costs what it always did: one atomic and a branch. */
void tn_object_release(tn_object_t *o) {
  if (o == NULL) return;
  /* acq_rel, not release + fence: ThreadSanitizer does not model fences. */
  if (atomic_fetch_sub_explicit(&o->refs, 1, memory_order_acq_rel) == 1)
    object_dead(o);
}

tn_type_t tn_object_type(const tn_object_t *o) { return o->type; }

/* A nested read of a lock this thread reads already. */
static void callback_rdnest(tn_object_t *o) {
  tn_rwlock_t *l = &o->callback_lock;
  pthread_mutex_lock(&l->mutex);
  l->readers++;
  pthread_mutex_unlock(&l->mutex);
}

/* The held-lock check comes first, for remote objects too: a cluster lock
** taken twice by one thread would wait for its own lease. A cluster read
** lock nests in the process only (one lease, released by the outermost). */
int tn_object_read_lock(tn_object_t *o, double timeout) {
  int rc = held_check(o, 1, timeout);
  if (rc == NESTED) {
    if (!TN_REMOTE(o)) callback_rdnest(o);
    held_push(o, 1);
    return TN_OK;
  }
  if (rc != TN_OK) return rc;
  rc = TN_REMOTE(o) ? o->backend->read_lock(o, timeout)
                    : callback_rdlock(o, timeout);
  if (rc == TN_OK) held_push(o, 1);
  return rc;
}

void tn_object_read_unlock(tn_object_t *o) {
  held_pop(o);
  if (!TN_REMOTE(o))
    callback_rdunlock(o);
  else if (tn_object_lock_held(o) == 0) /* the outermost read */
    o->backend->read_unlock(o);
}

int tn_object_write_lock(tn_object_t *o, double timeout) {
  int rc = held_check(o, 2, timeout);
  if (rc != TN_OK) return rc;
  rc = TN_REMOTE(o) ? o->backend->write_lock(o, timeout)
                    : callback_wrlock(o, timeout);
  if (rc == TN_OK) held_push(o, 2);
  return rc;
}

void tn_object_write_unlock(tn_object_t *o) {
  held_pop(o);
  if (TN_REMOTE(o))
    o->backend->write_unlock(o);
  else
    callback_wrunlock(o);
}
