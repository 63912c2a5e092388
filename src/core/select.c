/*
** select.c - tn_deque_select: pop from the first of several deques that
** has a value, waiting on all of them at once.
**
** A pass tries each deque once, with a pop that never waits for values
** (timeout 0: it takes the deque's lock, and gives up at once when the
** deque is empty or a callback holds it). The first deque a pass tries
** rotates from call to call (a per-thread counter), so a deque that always
** has values does not starve the others: a thread that selects over n
** busy deques takes from each in turn.
**
** Waiting. One waiter (internal.h, tn_waiter_t) is registered on every
** deque (tn_deque_watch), then a pass runs again, then the waiter sleeps
** until a deque notifies it or the deadline passes, and the pass runs
** again. No wake-up is lost: a deque notifies every watcher of a change
** made after the registration (the registration counts as a sleeping
** popper, see deque.c), and the pass after the registration sees every
** change made before it; a notification that comes before the sleep sets
** `woken`, which the sleep checks first. A wake-up is only a hint (another
** thread may take the value first): the pass decides. Before registering,
** a wait spins a few microseconds on the deques' sizes, as a single pop
** does, since a sleep and its wake-up cost tens of microseconds in a VM.
**
** A deque that is closed and drained is skipped; when every one is,
** TN_ECLOSED. A timeout, a cancel or an interrupt ends the sleep; one more
** pass runs, and if it finds nothing the select gives up with that code,
** having taken nothing.
**
** Cluster deques forward to their backend (one BLPOP over their token
** lists); mixing in-process and cluster deques, or deques of two
** backends, is TN_EINVAL.
*/
#include <stdlib.h>

#include "internal.h"

/* The spin before registering (nanoseconds), as a pop's. */
#define SELECT_SPIN_NS 6000L

/* Watch nodes kept on the stack for this many deques (more: malloc). */
#define SELECT_STACK 16

static _Thread_local size_t turn;

void tn_waiter_notify(tn_waiter_t *w) {
  pthread_mutex_lock(&w->mutex);
  w->woken = true;
  pthread_cond_signal(&w->cond);
  pthread_mutex_unlock(&w->mutex);
}

/* What the spin waits for: a value in any deque (closed and drained ones
** never get one: they end no spin). */
typedef struct spin_ctx {
  tn_deque_t *const *ds;
  size_t n;
} spin_ctx_t;

static bool any_value(void *p) {
  spin_ctx_t *c = p;
  for (size_t i = 0; i < c->n; i++)
    if (tn_deque_size(c->ds[i]) > 0) return true;
  return false;
}

/*
** Try each deque once, from `start`, with `timeout` (TN_TRY or 0). TN_OK
** with `*index` and `*out`; TN_ECLOSED when every deque is closed and
** drained; `none` (TN_EAGAIN or TN_ETIMEDOUT) when nothing was there; any
** other failure of a pop (TN_EDEADLK: a read callback of this thread holds
** one of them).
*/
static int pass(tn_deque_t *const *ds, size_t n, size_t start, double timeout,
                size_t *index, tn_blob_t **out) {
  size_t closed = 0;
  for (size_t k = 0; k < n; k++) {
    size_t i = (start + k) % n;
    int rc = tn_deque_pop_front(ds[i], out, timeout);
    if (rc == TN_OK) {
      *index = i;
      return TN_OK;
    }
    if (rc == TN_ECLOSED)
      closed++;
    else if (rc != TN_EAGAIN && rc != TN_ETIMEDOUT)
      return rc;
  }
  if (closed == n) return TN_ECLOSED;
  return timeout < 0 ? TN_EAGAIN : TN_ETIMEDOUT;
}

/* Sleep until notified or the deadline: TN_OK, or the code that ended the
** sleep (timeout, cancel, interrupt) when not notified meanwhile. */
static int sleep_on(tn_waiter_t *w, const tn_deadline_t *dl) {
  int rc = TN_OK;
  pthread_mutex_lock(&w->mutex);
  while (!w->woken) {
    int r = tn_cond_wait_until(&w->cond, &w->mutex, dl);
    if (r != TN_OK && !w->woken) {
      rc = r;
      break;
    }
  }
  w->woken = false;
  pthread_mutex_unlock(&w->mutex);
  return rc;
}

/* The wait, once a first pass found nothing (timeout > 0). */
static int select_wait(tn_deque_t *const *ds, size_t n, size_t start,
                       double timeout, size_t *index, tn_blob_t **out) {
  spin_ctx_t spin = {ds, n};
  tn_spin_until(any_value, &spin, SELECT_SPIN_NS);
  int rc = pass(ds, n, start, 0, index, out);
  if (rc != TN_ETIMEDOUT) return rc;

  tn_watch_t stack[SELECT_STACK], *nodes = stack;
  if (n > SELECT_STACK && (nodes = tn_malloc(n * sizeof *nodes)) == NULL)
    return TN_ENOMEM;
  tn_waiter_t w;
  tn_mutex_init(&w.mutex);
  tn_cond_init(&w.cond);
  w.woken = false;
  for (size_t i = 0; i < n; i++) {
    nodes[i].waiter = &w;
    tn_deque_watch(ds[i], &nodes[i]);
  }
  tn_deadline_t dl = tn_deadline_in(timeout);
  int give_up = TN_OK;
  for (;;) {
    rc = pass(ds, n, start, 0, index, out);
    if (rc != TN_ETIMEDOUT) break;
    if (give_up != TN_OK) { /* re-checked once after the sleep ended */
      rc = give_up;
      break;
    }
    give_up = sleep_on(&w, &dl);
  }
  for (size_t i = 0; i < n; i++) tn_deque_unwatch(ds[i], &nodes[i]);
  pthread_cond_destroy(&w.cond);
  pthread_mutex_destroy(&w.mutex);
  if (nodes != stack) tn_free(nodes);
  return rc;
}

int tn_deque_select(tn_deque_t *const *ds, size_t n, size_t *index,
                    tn_blob_t **out, double timeout) {
  if (ds == NULL || n == 0) return TN_EINVAL;
  for (size_t i = 0; i < n; i++)
    if (ds[i] == NULL) return TN_EINVAL;
  const tn_backend_t *backend = TN_BACKEND(ds[0]);
  for (size_t i = 1; i < n; i++)
    if (TN_BACKEND(ds[i]) != backend)
      return tn_error_set(TN_EINVAL,
                          "the deques must be all in process or all of one "
                          "cluster (deque %zu is not like deque 1)",
                          i + 1);
  if (backend != NULL)
    return backend->deque_select(ds, n, index, out, timeout);
  size_t start = turn++ % n;
  int rc = pass(ds, n, start, timeout < 0 ? TN_TRY : 0, index, out);
  if (rc != TN_ETIMEDOUT || timeout <= 0) return rc;
  return select_wait(ds, n, start, timeout, index, out);
}
