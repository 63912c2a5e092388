/*
** cancel.c - cancel tokens: how a thread blocked in a core wait is asked
** to stop (tunnel.h, "Cancellation").
**
** Every core wait sleeps in tn_cond_wait_until on a condition variable
** `cv` with its structure's mutex `m` held. While it sleeps, the wait is
** registered in the calling thread's token (m, cv), under the token's own
** mutex. tn_cancel_request sets the flag, then, holding the token's mutex,
** takes `m` and broadcasts `cv`. No wake-up is lost: the waiter reads the
** flag under the token's mutex after it registered and before it sleeps,
** and it holds `m` from there until pthread_cond_wait releases it; so the
** requester either finds no registration yet (and the waiter will see the
** flag) or takes `m` only once the waiter sleeps on `cv`.
**
** Lock order. The waiter holds `m` when it takes the token's mutex; the
** requester holds the token's mutex when it wants `m`: the opposite order.
** So the requester only *tries* `m`, and when it is busy, drops the token's
** mutex and tries again (the holder of `m` is either about to sleep, which
** releases it, or finishing a short operation).
**
** A registered (m, cv) stays valid while registered: the waiter is inside
** an operation on that structure, which holds a reference to it, and it
** unregisters before the operation returns.
**
** Stuck jobs. The block's close (Lua's __gc of a Block) must tell jobs
** that wait for an event only a closed program could cause from jobs
** that are busy. The tokens of block threads count, process-wide, the jobs
** running and those asleep in a wait without a deadline; every wake-up
** moves a progress counter (tn_jobs_progress).
*/
#include <errno.h>
#include <sched.h>
#include <stdlib.h>

#include "internal.h"

struct tn_cancel {
  pthread_mutex_t mutex;    /* guards wait_m, wait_cv, notify */
  atomic_int requested;
  unsigned long generation;  /* moved by every clear (under `mutex`) */
  pthread_mutex_t *wait_m;  /* the wait the owner sleeps in, or NULL */
  pthread_cond_t *wait_cv;
  pthread_mutex_t sleep_m;  /* tn_sleep sleeps on these */
  pthread_cond_t sleep_cv;
  int (*poll)(void *arg);   /* the owner's only */
  void *poll_arg;
  void (*notify)(void *arg);
  void *notify_arg;
  bool in_job;              /* counted in jobs_running (the owner's) */
};

static _Thread_local tn_cancel_t *current;

static atomic_long jobs_running;  /* block threads running a job */
static atomic_long jobs_stuck;    /* ... of them asleep without a deadline */
static atomic_ulong jobs_woken;   /* wake-ups of such sleeps */

int tn_cancel_new(tn_cancel_t **out) {
  tn_cancel_t *t = tn_malloc(sizeof *t);
  if (t == NULL) return TN_ENOMEM;
  tn_mutex_init(&t->mutex);
  tn_mutex_init(&t->sleep_m);
  tn_cond_init(&t->sleep_cv);
  atomic_init(&t->requested, 0);
  t->generation = 0;
  t->wait_m = NULL;
  t->wait_cv = NULL;
  t->poll = NULL;
  t->poll_arg = NULL;
  t->notify = NULL;
  t->notify_arg = NULL;
  t->in_job = false;
  *out = t;
  return TN_OK;
}

void tn_cancel_free(tn_cancel_t *t) {
  if (t == NULL) return;
  pthread_cond_destroy(&t->sleep_cv);
  pthread_mutex_destroy(&t->sleep_m);
  pthread_mutex_destroy(&t->mutex);
  tn_free(t);
}

tn_cancel_t *tn_cancel_enter(tn_cancel_t *t) {
  tn_cancel_t *old = current;
  current = t;
  return old;
}

tn_cancel_t *tn_cancel_current(void) { return current; }

/* Request, with the token's mutex held; `gen`: only if no clear came
** since the caller read the generation (tn_cancel_request_if). */
static bool request_locked(tn_cancel_t *t, const unsigned long *gen) {
  if (gen != NULL && *gen != t->generation) return false;
  atomic_store(&t->requested, 1);
  if (t->notify != NULL) t->notify(t->notify_arg);
  for (;;) {
    pthread_mutex_t *m = t->wait_m;
    if (m == NULL) break; /* not asleep: it sees the flag before it sleeps */
    if (pthread_mutex_trylock(m) == 0) {
      pthread_cond_broadcast(t->wait_cv);
      pthread_mutex_unlock(m);
      break;
    }
    /* Busy: the waiter is on its way into (or out of) the sleep. */
    pthread_mutex_unlock(&t->mutex);
    sched_yield();
    pthread_mutex_lock(&t->mutex);
  }
  return true;
}

void tn_cancel_request(tn_cancel_t *t) {
  pthread_mutex_lock(&t->mutex);
  request_locked(t, NULL);
  pthread_mutex_unlock(&t->mutex);
}

unsigned long tn_cancel_generation(tn_cancel_t *t) {
  pthread_mutex_lock(&t->mutex);
  unsigned long gen = t->generation;
  pthread_mutex_unlock(&t->mutex);
  return gen;
}

bool tn_cancel_request_if(tn_cancel_t *t, unsigned long gen) {
  pthread_mutex_lock(&t->mutex);
  bool done = request_locked(t, &gen);
  pthread_mutex_unlock(&t->mutex);
  return done;
}

void tn_cancel_clear(tn_cancel_t *t) {
  pthread_mutex_lock(&t->mutex);
  atomic_store(&t->requested, 0);
  t->generation++;
  pthread_mutex_unlock(&t->mutex);
}

int tn_cancel_requested(const tn_cancel_t *t) {
  return atomic_load(&((tn_cancel_t *)t)->requested);
}

int tn_cancelled(void) {
  return current != NULL && atomic_load(&current->requested);
}

void tn_cancel_set_poll(tn_cancel_t *t, int (*poll)(void *arg), void *arg) {
  t->poll = poll;
  t->poll_arg = arg;
}

void tn_cancel_set_notify(tn_cancel_t *t, void (*notify)(void *arg),
                          void *arg) {
  pthread_mutex_lock(&t->mutex);
  t->notify = notify;
  t->notify_arg = arg;
  pthread_mutex_unlock(&t->mutex);
}

int tn_cancel_check(void) {
  tn_cancel_t *t = current;
  if (t == NULL) return TN_OK;
  if (atomic_load(&t->requested)) return TN_ECANCELED;
  if (t->poll != NULL && t->poll(t->poll_arg)) return TN_EINTR;
  return TN_OK;
}

bool tn_cancel_active(void) { return current != NULL; }

void tn_cancel_job(tn_cancel_t *t, bool running) {
  t->in_job = running;
  atomic_fetch_add(&jobs_running, running ? 1 : -1);
}

unsigned long tn_jobs_progress(int *stuck) {
  unsigned long e = atomic_load(&jobs_woken);
  long running = atomic_load(&jobs_running);
  *stuck = running > 0 && atomic_load(&jobs_stuck) >= running;
  return e;
}

/* The earlier of `d` and one poll interval from now. */
static tn_deadline_t poll_deadline(const tn_deadline_t *d, bool *sliced) {
  tn_deadline_t p = tn_deadline_in(TN_CANCEL_POLL);
  *sliced = d->forever || p.at.tv_sec < d->at.tv_sec ||
            (p.at.tv_sec == d->at.tv_sec && p.at.tv_nsec < d->at.tv_nsec);
  return *sliced ? p : *d;
}

static int plain_wait(pthread_cond_t *c, pthread_mutex_t *m,
                      const tn_deadline_t *d) {
  if (d->forever) {
    if (pthread_cond_wait(c, m) != 0) abort();
    return TN_OK;
  }
  int rc = pthread_cond_timedwait(c, m, &d->at);
  if (rc == ETIMEDOUT) return TN_ETIMEDOUT;
  if (rc != 0) abort();
  return TN_OK;
}

int tn_cond_wait_until(pthread_cond_t *c, pthread_mutex_t *m,
                       const tn_deadline_t *d) {
  tn_cancel_t *t = current;
  if (t == NULL) return plain_wait(c, m, d);
  /* Register, then read the flag (see the top: no lost wake-up). */
  pthread_mutex_lock(&t->mutex);
  if (atomic_load(&t->requested)) {
    pthread_mutex_unlock(&t->mutex);
    return TN_ECANCELED;
  }
  t->wait_m = m;
  t->wait_cv = c;
  pthread_mutex_unlock(&t->mutex);

  bool sliced = false;
  tn_deadline_t until = t->poll != NULL ? poll_deadline(d, &sliced) : *d;
  bool stuck = t->in_job && until.forever;
  if (stuck) atomic_fetch_add(&jobs_stuck, 1);
  int rc = plain_wait(c, m, &until);
  if (stuck) {
    atomic_fetch_sub(&jobs_stuck, 1);
    atomic_fetch_add(&jobs_woken, 1);
  }

  pthread_mutex_lock(&t->mutex);
  t->wait_m = NULL;
  t->wait_cv = NULL;
  pthread_mutex_unlock(&t->mutex);
  if (atomic_load(&t->requested)) return TN_ECANCELED;
  if (rc == TN_ETIMEDOUT && sliced) {
    /* Only the poll interval ran out: ask, else a spurious wake-up (the
    ** caller re-checks and waits again with its own deadline). */
    return t->poll(t->poll_arg) ? TN_EINTR : TN_OK;
  }
  return rc;
}

int tn_sleep(double seconds) {
  if (!(seconds > 0)) return TN_OK; /* also NaN */
  tn_cancel_t *t = current;
  if (t == NULL) {
    struct timespec ts;
    ts.tv_sec = (time_t)seconds;
    ts.tv_nsec = (long)((seconds - (double)ts.tv_sec) * 1e9);
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
    }
    return TN_OK;
  }
  /* On the token's own condition: a request wakes it like any wait. */
  tn_deadline_t d = tn_deadline_in(seconds);
  int rc;
  pthread_mutex_lock(&t->sleep_m);
  do {
    rc = tn_cond_wait_until(&t->sleep_cv, &t->sleep_m, &d);
  } while (rc == TN_OK && !tn_deadline_passed(&d)); /* nobody signals it */
  pthread_mutex_unlock(&t->sleep_m);
  return rc == TN_ETIMEDOUT ? TN_OK : rc;
}
