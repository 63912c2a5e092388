/*
** block.c - a group of threads, each with its own FIFO job queue.
**
** A run queues the same job on every thread. Its record (function,
** argument, release hook, count of threads still to finish it) and the
** queue nodes for all threads are one allocation, freed by the thread that
** finishes the run last, right after it calls release(arg).
**
** One mutex guards every queue and the block's state: a run is queued on
** all threads under one lock, and the critical sections are a few pointer
** moves. Each thread sleeps on its own condition variable and is signalled
** only when it sleeps. A block-wide count of unfinished jobs, with its own
** condition variable, serves tn_block_synchronize.
**
** Waiting. A wake-up from sleep costs ~20 us in a VM, as much as a short
** job, so every wait first spins briefly (tn_spin_until) on an atomic copy
** of what it waits for: a thread that finished a job, for the next one or
** terminate; synchronize, for the last job to finish; tn_block_new, for the
** threads' start when they and the caller have a CPU each. The condition
** is then re-checked under the mutex, and the thread sleeps if it must.
**
** A failed start is reported at once. tn_block_new returns TN_EINIT as
** soon as one start hook has failed, without waiting for the others (a
** hook may block forever, e.g. a Lua init popping an empty vector). The
** threads that already reported are joined there (they stop at once); the
** others are detached ("abandoned"): each, when its hook returns, runs
** thread_stop if it succeeded and exits, and the last of them (or the
** creator, whichever is later) frees the block. So the hooks' userdata must
** stay valid until each of the `size` threads' thread_start has returned
** nonzero or its thread_stop has run. (TN_ETHREAD, a thread that could not
** be created, still waits for every created thread's hook: then the caller
** could not tell how many hook calls are outstanding.)
**
** Caveats: a job must not call tn_block_terminate, tn_block_free or
** tn_block_synchronize on its own block (it would wait for itself).
*/
#include <signal.h>
#include <stdlib.h>

#include "internal.h"

/* Spins before sleeping (nanoseconds): a job or synchronize, about one
** wake-up; a start, the time to build a Lua state in a new thread. */
#define BLOCK_SPIN_NS 20000L
#define BLOCK_START_SPIN_NS 200000L

typedef struct block_run block_run_t;

/* One run's place in one thread's queue. */
typedef struct block_job {
  struct block_job *next;
  block_run_t *run;
} block_job_t;

struct block_run {
  tn_job_fn fn;
  void *arg;
  void (*release)(void *arg);
  unsigned long id;      /* 1, 2, ...: the block's runs in queue order */
  bool cancelled;        /* tn_block_cancel reached it (block mutex) */
  atomic_int remaining;  /* threads that have not finished it yet */
  block_job_t jobs[];    /* one node per thread */
};

typedef struct block_worker {
  tn_block_t *block;
  int index;             /* 1..size */
  pthread_t thread;
  pthread_cond_t wake;   /* a job arrived, or terminate */
  block_job_t *head, *tail;
  unsigned long current; /* the id of the run of the job it runs, 0: none
                            (block mutex; an id, not the run: the last
                            thread to finish a run frees it before it
                            takes the mutex to say it is done) */
  tn_cancel_t *cancel;   /* its token: tn_block_cancel requests it */
  atomic_long posted;    /* bumped (under the mutex) by a run and by
                            terminate: what an idle thread spins on */
  bool sleeping;         /* waiting on `wake` (under the block mutex) */
  bool started;          /* its start hook succeeded */
  bool reported;         /* its start hook returned (under the mutex) */
  bool detached;         /* the creator gave up before it reported, or
                            abandoned the block: it stops by itself and
                            nobody joins it (under the mutex) */
  void *ctx;
} block_worker_t;

struct tn_block {
  int size;
  tn_block_hooks_t hooks;
  void *userdata;
  pthread_mutex_t mutex;
  pthread_cond_t ready;   /* a thread reported its start */
  pthread_cond_t idle;    /* pending dropped to 0 */
  pthread_cond_t joined;  /* a terminate finished joining */
  atomic_int reported;    /* threads that ran their start hook (changed
                             under the mutex, spun on without it) */
  atomic_int start_failures; /* ... and how many of them failed */
  atomic_long pending;    /* jobs queued or running, all threads (changed
                             under the mutex, spun on without it) */
  int sync_waiters;       /* threads asleep on `idle` */
  bool terminating;       /* no more runs; threads drain and stop */
  bool joining;           /* a terminate is joining the threads */
  bool done;              /* the threads are joined */
  bool abandoned;         /* creation failed: late starters exit alone */
  atomic_int refs;        /* the creator + abandoned threads (see top) */
  unsigned long runs;     /* runs queued so far (the last id) */
  block_worker_t *workers;
};

/* Run one job outside the mutex; the last thread releases the run. */
static void job_finish(block_run_t *run) {
  if (atomic_fetch_sub_explicit(&run->remaining, 1, memory_order_acq_rel) ==
      1) {
    if (run->release != NULL) run->release(run->arg);
    tn_free(run);
  }
}

/* Spin predicates. */
typedef struct posted_since {
  block_worker_t *w;
  long seen;
} posted_since_t;

static bool posted_changed(void *p) {
  posted_since_t *s = p;
  return atomic_load_explicit(&s->w->posted, memory_order_relaxed) != s->seen;
}

static bool no_pending(void *p) {
  tn_block_t *b = p;
  return atomic_load_explicit(&b->pending, memory_order_relaxed) == 0;
}

typedef struct reported_all {
  tn_block_t *b;
  int want;
} reported_all_t;

/* Every thread reported, or one failed (no need to wait for the rest). */
static bool all_reported(void *p) {
  reported_all_t *r = p;
  return atomic_load_explicit(&r->b->reported, memory_order_relaxed) >=
             r->want ||
         atomic_load_explicit(&r->b->start_failures, memory_order_relaxed) >
             0;
}

static void block_destroy(tn_block_t *b);

/* Drop a reference of a block whose creation failed; the last frees it. */
static void block_unref(tn_block_t *b) {
  if (atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) == 1)
    block_destroy(b);
}

static void *worker_main(void *p) {
  block_worker_t *w = p;
  tn_block_t *b = w->block;
  int rc = 0;
  void *ctx = NULL;
  tn_cancel_enter(w->cancel);
  if (b->hooks.thread_start != NULL)
    rc = b->hooks.thread_start(b->userdata, w->index, &ctx);

  pthread_mutex_lock(&b->mutex);
  w->ctx = ctx;
  w->started = rc == 0;
  w->reported = true;
  atomic_fetch_add_explicit(&b->reported, 1, memory_order_relaxed);
  if (rc != 0)
    atomic_fetch_add_explicit(&b->start_failures, 1, memory_order_relaxed);
  pthread_cond_signal(&b->ready);
  if (b->abandoned) {
    /* The creator gave up on the block while our hook ran, and detached
    ** us: stop by ourselves. */
    pthread_mutex_unlock(&b->mutex);
    if (rc == 0 && b->hooks.thread_stop != NULL)
      b->hooks.thread_stop(b->userdata, w->index, ctx);
    tn_cancel_enter(NULL);
    block_unref(b);
    return NULL;
  }
  if (rc != 0) {
    pthread_mutex_unlock(&b->mutex);
    tn_cancel_enter(NULL);
    return NULL;
  }
  for (;;) {
    if (w->head == NULL && !b->terminating) {
      posted_since_t since = {w, atomic_load_explicit(&w->posted,
                                                      memory_order_relaxed)};
      pthread_mutex_unlock(&b->mutex);
      tn_spin_until(posted_changed, &since, BLOCK_SPIN_NS);
      pthread_mutex_lock(&b->mutex);
    }
    /* Re-check under the mutex: wake-ups may be spurious, and terminate
    ** wakes us with jobs possibly still queued (they run first). */
    while (w->head == NULL && !b->terminating) {
      w->sleeping = true;
      pthread_cond_wait(&w->wake, &b->mutex);
      w->sleeping = false;
    }
    block_job_t *job = w->head;
    if (job == NULL) break; /* terminating and drained */
    w->head = job->next;
    if (w->head == NULL) w->tail = NULL;
    block_run_t *run = job->run;
    /* A job of a cancelled run starts cancelled (tn_block_cancel). */
    w->current = run->id;
    bool cancelled = run->cancelled;
    pthread_mutex_unlock(&b->mutex);
    if (cancelled) tn_cancel_request(w->cancel);

    tn_cancel_job(w->cancel, true);
    run->fn(ctx, w->index, run->arg);
    tn_cancel_job(w->cancel, false);
    job_finish(run);

    pthread_mutex_lock(&b->mutex);
    /* A request for this job is made under the mutex while `current` is
    ** its run: forgetting both here, under it, keeps it from the next. */
    w->current = 0;
    tn_cancel_clear(w->cancel);
    /* Counted down after release ran, so synchronize covers it too. */
    if (atomic_fetch_sub_explicit(&b->pending, 1, memory_order_release) == 1 &&
        b->sync_waiters > 0)
      pthread_cond_broadcast(&b->idle);
  }
  bool alone = w->detached; /* tn_block_abandon: nobody joins us */
  pthread_mutex_unlock(&b->mutex);
  if (b->hooks.thread_stop != NULL)
    b->hooks.thread_stop(b->userdata, w->index, ctx);
  tn_cancel_enter(NULL);
  if (alone) block_unref(b);
  return NULL;
}

/* Tell every sleeping thread to look at its queue and the flags. Mutex held. */
static void wake_all(tn_block_t *b) {
  for (int i = 0; i < b->size; i++) {
    atomic_fetch_add_explicit(&b->workers[i].posted, 1, memory_order_relaxed);
    if (b->workers[i].sleeping) pthread_cond_signal(&b->workers[i].wake);
  }
}

static void block_destroy(tn_block_t *b) {
  for (int i = 0; i < b->size; i++) {
    pthread_cond_destroy(&b->workers[i].wake);
    tn_cancel_free(b->workers[i].cancel);
  }
  pthread_cond_destroy(&b->ready);
  pthread_cond_destroy(&b->idle);
  pthread_cond_destroy(&b->joined);
  pthread_mutex_destroy(&b->mutex);
  tn_free(b->workers);
  tn_free(b);
}

/*
** Start the threads and wait until each has run its start hook. On any
** failure the threads already started are told to stop (thread_stop runs
** where the start succeeded), joined, and everything is freed.
*/
int tn_block_new(int size, const tn_block_hooks_t *hooks, void *userdata,
                 tn_block_t **out) {
  if (size < 1) return TN_EINVAL;
  tn_block_t *b = tn_malloc(sizeof *b);
  if (b == NULL) return TN_ENOMEM;
  b->workers = tn_malloc((size_t)size * sizeof *b->workers);
  if (b->workers == NULL) {
    tn_free(b);
    return TN_ENOMEM;
  }
  b->size = size;
  if (hooks != NULL) {
    b->hooks = *hooks;
  } else {
    b->hooks.thread_start = NULL;
    b->hooks.thread_stop = NULL;
  }
  b->userdata = userdata;
  tn_mutex_init(&b->mutex);
  tn_cond_init(&b->ready);
  tn_cond_init(&b->idle);
  tn_cond_init(&b->joined);
  atomic_init(&b->reported, 0);
  atomic_init(&b->start_failures, 0);
  atomic_init(&b->pending, 0);
  b->sync_waiters = 0;
  b->terminating = false;
  b->joining = false;
  b->done = false;
  b->abandoned = false;
  atomic_init(&b->refs, 1);
  b->runs = 0;
  bool tokens = true;
  for (int i = 0; i < size; i++) {
    block_worker_t *w = &b->workers[i];
    w->block = b;
    w->index = i + 1;
    tn_cond_init(&w->wake);
    w->cancel = NULL;
    if (tn_cancel_new(&w->cancel) != TN_OK) tokens = false;
    w->current = 0;
    w->head = w->tail = NULL;
    atomic_init(&w->posted, 0);
    w->sleeping = false;
    w->started = false;
    w->reported = false;
    w->detached = false;
    w->ctx = NULL;
  }
  if (!tokens) {
    block_destroy(b);
    return TN_ENOMEM;
  }

  /* The threads inherit a mask that blocks the signals meant for the
  ** process (Ctrl-C and the like): the main thread gets them, where the
  ** interpreter's handler and tn_cancel's poll expect them. */
  sigset_t mask, old;
  sigemptyset(&mask);
  int process_signals[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1,
                           SIGUSR2, SIGALRM};
  for (size_t i = 0; i < sizeof process_signals / sizeof *process_signals;
       i++)
    sigaddset(&mask, process_signals[i]);
  pthread_sigmask(SIG_BLOCK, &mask, &old);
  int created = 0, rc = TN_OK;
  for (; created < size; created++) {
    if (pthread_create(&b->workers[created].thread, NULL, worker_main,
                       &b->workers[created]) != 0) {
      rc = TN_ETHREAD;
      break;
    }
  }
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  /* Spin only if the threads and this one have a CPU each: otherwise the
  ** spin takes the CPU a thread needs to start. */
  if (created < tn_cpu_count()) {
    reported_all_t all = {b, created};
    tn_spin_until(all_reported, &all, BLOCK_START_SPIN_NS);
  }
  pthread_mutex_lock(&b->mutex);
  /* Re-check under the mutex: several threads may report per wake-up. A
  ** failed start ends the wait when every thread was created (see top). */
  /* A cancel or an interrupt of the creator ends the wait as a failed
  ** start does: a start hook may wait for ever (a Lua init popping an
  ** empty vector). */
  tn_deadline_t forever = {.forever = true};
  while (atomic_load_explicit(&b->reported, memory_order_relaxed) < created &&
         !(rc == TN_OK && atomic_load_explicit(&b->start_failures,
                                               memory_order_relaxed) > 0)) {
    int w = tn_cond_wait_until(&b->ready, &b->mutex, &forever);
    if (w != TN_OK &&
        atomic_load_explicit(&b->reported, memory_order_relaxed) < created) {
      if (rc == TN_OK) rc = w;
      break;
    }
  }
  if (rc == TN_OK &&
      atomic_load_explicit(&b->start_failures, memory_order_relaxed) > 0)
    rc = TN_EINIT;
  if (rc != TN_OK) {
    b->terminating = true;
    b->abandoned = true;
    for (int i = 0; i < created; i++) {
      if (b->workers[i].reported) continue;
      b->workers[i].detached = true;
      pthread_detach(b->workers[i].thread); /* it frees itself (refs) */
      atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
    }
    wake_all(b);
  }
  pthread_mutex_unlock(&b->mutex);
  if (rc != TN_OK) {
    /* Not `reported`: a detached thread may set it meanwhile (and must
    ** not be joined); `detached` was decided under the mutex above. */
    for (int i = 0; i < created; i++)
      if (!b->workers[i].detached) pthread_join(b->workers[i].thread, NULL);
    block_unref(b);
    return rc;
  }
  *out = b;
  return TN_OK;
}

int tn_block_size(const tn_block_t *b) { return b->size; }

/*
** Queue fn on every thread: one allocation, one lock. On failure release
** runs here, at once, as no thread will see the run.
*/
int tn_block_run(tn_block_t *b, tn_job_fn fn, void *arg,
                 void (*release)(void *arg)) {
  if (fn == NULL) {
    if (release != NULL) release(arg);
    return TN_EINVAL;
  }
  block_run_t *run =
      tn_malloc(sizeof *run + (size_t)b->size * sizeof(block_job_t));
  if (run == NULL) {
    if (release != NULL) release(arg);
    return TN_ENOMEM;
  }
  run->fn = fn;
  run->arg = arg;
  run->release = release;
  atomic_init(&run->remaining, b->size);

  pthread_mutex_lock(&b->mutex);
  if (b->terminating) {
    pthread_mutex_unlock(&b->mutex);
    tn_free(run);
    if (release != NULL) release(arg);
    return TN_ETERMINATED;
  }
  run->id = ++b->runs;
  run->cancelled = false;
  for (int i = 0; i < b->size; i++) {
    block_worker_t *w = &b->workers[i];
    block_job_t *job = &run->jobs[i];
    job->run = run;
    job->next = NULL;
    if (w->tail != NULL)
      w->tail->next = job;
    else
      w->head = job;
    w->tail = job;
    atomic_fetch_add_explicit(&w->posted, 1, memory_order_relaxed);
    if (w->sleeping) pthread_cond_signal(&w->wake);
  }
  atomic_fetch_add_explicit(&b->pending, b->size, memory_order_relaxed);
  pthread_mutex_unlock(&b->mutex);
  return TN_OK;
}

/* Wait until no job is queued or running. TN_OK, TN_ETIMEDOUT, TN_EAGAIN. */
int tn_block_synchronize(tn_block_t *b, double timeout) {
  /* Nothing queued or running: done, without the mutex, which an idle
  ** thread takes now and then (so TN_TRY does not fail on it). The acquire
  ** pairs with the release of the decrement that made it zero: the jobs'
  ** effects are visible to the caller. */
  if (atomic_load_explicit(&b->pending, memory_order_acquire) == 0)
    return TN_OK;
  if (timeout > 0) tn_spin_until(no_pending, b, BLOCK_SPIN_NS);
  int rc = tn_mutex_acquire(&b->mutex, timeout);
  if (rc != TN_OK) return rc;
  if (atomic_load_explicit(&b->pending, memory_order_relaxed) > 0) {
    if (timeout <= 0) {
      pthread_mutex_unlock(&b->mutex);
      return timeout < 0 ? TN_EAGAIN : TN_ETIMEDOUT;
    }
    tn_deadline_t dl = tn_deadline_in(timeout);
    b->sync_waiters++;
    /* Re-check under the mutex: new runs may have been queued since the
    ** broadcast, and wake-ups may be spurious. */
    while (atomic_load_explicit(&b->pending, memory_order_relaxed) > 0) {
      int w = tn_cond_wait_until(&b->idle, &b->mutex, &dl);
      if (w != TN_OK &&
          atomic_load_explicit(&b->pending, memory_order_relaxed) > 0) {
        rc = w;
        break;
      }
    }
    b->sync_waiters--;
  }
  pthread_mutex_unlock(&b->mutex);
  return rc;
}

/*
** Refuse new runs, let the threads drain their queues and stop, and join
** them. A second caller (even a concurrent one) waits for the first.
*/
void tn_block_terminate(tn_block_t *b) {
  pthread_mutex_lock(&b->mutex);
  b->terminating = true;
  if (b->joining) {
    /* Re-check under the mutex: the joiner broadcasts once, when done. */
    while (!b->done) pthread_cond_wait(&b->joined, &b->mutex);
    pthread_mutex_unlock(&b->mutex);
    return;
  }
  b->joining = true;
  wake_all(b);
  pthread_mutex_unlock(&b->mutex);

  for (int i = 0; i < b->size; i++) pthread_join(b->workers[i].thread, NULL);

  pthread_mutex_lock(&b->mutex);
  b->done = true;
  pthread_cond_broadcast(&b->joined);
  pthread_mutex_unlock(&b->mutex);
}

/*
** Mark the queued jobs of run `id` (0: of every run) cancelled, and
** request the tokens of the threads running one. A thread takes a job and
** clears its token under the block mutex (worker_main); the token's
** generation, read here under it, keeps a request made after the mutex is
** dropped from reaching the thread's next job (tn_cancel_request_if). The
** request itself is made without the block mutex: the waiter it wakes may
** be asleep on that very mutex (cancel.c tries the waiter's mutex).
** Threads in chunks, so the generations fit on the stack.
*/
int tn_block_cancel(tn_block_t *b, unsigned long id) {
  enum { CHUNK = 64 };
  int reached = 0;
  for (int first = 0; first < b->size; first += CHUNK) {
    int ask[CHUNK], asked = 0;
    unsigned long gen[CHUNK];
    pthread_mutex_lock(&b->mutex);
    for (int i = first; i < b->size && i < first + CHUNK; i++) {
      block_worker_t *w = &b->workers[i];
      for (block_job_t *job = w->head; job != NULL; job = job->next) {
        if (id != 0 && job->run->id != id) continue;
        job->run->cancelled = true;
        reached++;
      }
      if (w->current != 0 && (id == 0 || w->current == id)) {
        gen[asked] = tn_cancel_generation(w->cancel);
        ask[asked++] = i;
        reached++;
      }
    }
    pthread_mutex_unlock(&b->mutex);
    for (int k = 0; k < asked; k++)
      tn_cancel_request_if(b->workers[ask[k]].cancel, gen[k]);
  }
  return reached;
}

unsigned long tn_block_runs(tn_block_t *b) {
  pthread_mutex_lock(&b->mutex);
  unsigned long n = b->runs;
  pthread_mutex_unlock(&b->mutex);
  return n;
}

/*
** Give the block up without waiting: no more runs; each thread runs what
** is queued (a caller that wants it quick cancels first), stops by itself
** and the last one frees the block.
*/
void tn_block_abandon(tn_block_t *b) {
  pthread_mutex_lock(&b->mutex);
  b->terminating = true;
  if (b->joining) {
    /* A terminate joins (or joined) the threads: it owns them. */
    while (!b->done) pthread_cond_wait(&b->joined, &b->mutex);
    pthread_mutex_unlock(&b->mutex);
    block_destroy(b);
    return;
  }
  b->joining = true;
  for (int i = 0; i < b->size; i++) {
    b->workers[i].detached = true;
    pthread_detach(b->workers[i].thread);
    atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
  }
  wake_all(b);
  pthread_mutex_unlock(&b->mutex);
  block_unref(b);
}

pthread_mutex_t *tn_block_test_mutex(tn_block_t *b) { return &b->mutex; }

int tn_block_is_terminated(const tn_block_t *b) {
  tn_block_t *m = (tn_block_t *)b; /* locking is not a change of state */
  pthread_mutex_lock(&m->mutex);
  int t = m->terminating;
  pthread_mutex_unlock(&m->mutex);
  return t;
}

void tn_block_free(tn_block_t *b) {
  if (b == NULL) return;
  tn_block_terminate(b);
  block_destroy(b);
}
