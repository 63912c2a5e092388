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
** threads that already reported are waited for there (they stop at once;
** `ended`, below); the others are detached ("abandoned"): each, when its
** hook returns, runs thread_stop if it succeeded and goes back to the
** pool, and the last of them (or the creator, whichever is later) frees
** the block. So the hooks' userdata must
** stay valid until each of the `size` threads' thread_start has returned
** nonzero or its thread_stop has run. (TN_ETHREAD, a thread that could not
** be created, still waits for every created thread's hook: then the caller
** could not tell how many hook calls are outstanding.)
**
** Threads are pooled. When a block's thread is done with it (its stop
** hook returned, or its start failed), it parks in a process-wide pool
** (a few idle threads at most) instead of exiting, and tn_block_new takes
** a parked thread before it creates one; a thread parked for POOL_IDLE_S
** seconds exits, so a program that stops making blocks ends up with none.
** So tn_block_terminate no longer joins: it waits until every thread has
** said that it ended (`ended`, after thread_stop), which is what the join
** told it. A thread goes on the idle list before it says so, so a
** tn_block_new right after a terminate finds it. A parked thread starts a
** block as a new one would: the block's own fresh cancel token is entered,
** its signal mask is set to what a thread created by that tn_block_new
** would inherit, and the core's thread-locals (tn_last_error) are reset;
** the binding resets its own in its hooks. Process exit joins the parked
** threads (an atexit handler; the Lua module is pinned, never unloaded
** under them: ltunnel.c); a forked child starts with an empty pool (pthread_atfork): the parent's
** parked threads do not exist there.
**
** Caveats: a job must not call tn_block_terminate, tn_block_free or
** tn_block_synchronize on its own block (it would wait for itself).
*/
#include <signal.h>
#include <stdlib.h>

#include "internal.h"
#include "testing.h"

/* Spins before sleeping (nanoseconds): a job or synchronize, about one
** wake-up; a start, the time to build a Lua state in a new thread. */
#define BLOCK_SPIN_NS 20000L
#define BLOCK_START_SPIN_NS 200000L
/* The pool: idle threads kept (at least; or one per CPU), how long one
** stays parked, and how long a thread that just parked spins for a next
** block before it sleeps (a program that makes blocks in a loop; longer
** spins lost on a loaded machine: see docs/performance.md). */
#define POOL_MAX_MIN 4
#define POOL_IDLE_S 2.0
#define POOL_PARK_SPIN_NS BLOCK_SPIN_NS

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
                            nobody waits for its end (under the mutex) */
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
  pthread_cond_t ended_cv; /* a thread ended (see `ended`) */
  atomic_int ended;       /* threads done with the block: stop hook
                             returned, or start failed (changed under the
                             mutex, spun on without it); not the detached */
  sigset_t sigmask;       /* what a new thread of this block inherited */
  atomic_int reported;    /* threads that ran their start hook (changed
                             under the mutex, spun on without it) */
  atomic_int start_failures; /* ... and how many of them failed */
  atomic_long pending;    /* jobs queued or running, all threads (changed
                             under the mutex, spun on without it) */
  int sync_waiters;       /* threads asleep on `idle` */
  bool terminating;       /* no more runs; threads drain and stop */
  bool joining;           /* a terminate is joining the threads */
  bool done;              /* the threads have ended */
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

static void pool_enlist(void);

/* A thread that was not detached is done with the block: the last touch
** of `b` (a terminate may free it as soon as the mutex is dropped). Mutex
** held; released here. */
static void worker_ended(tn_block_t *b) {
  atomic_fetch_add_explicit(&b->ended, 1, memory_order_relaxed);
  pthread_cond_broadcast(&b->ended_cv);
  pthread_mutex_unlock(&b->mutex);
}

/* The life of thread w in its block, from the start hook to the stop
** hook; returns when the thread no longer touches the block. */
static void worker_run(block_worker_t *w) {
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
    return;
  }
  if (rc != 0) {
    tn_cancel_enter(NULL); /* the token goes with the block */
    pool_enlist();
    worker_ended(b);
    return;
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
  bool alone = w->detached; /* tn_block_abandon: nobody waits for us */
  pthread_mutex_unlock(&b->mutex);
  if (b->hooks.thread_stop != NULL)
    b->hooks.thread_stop(b->userdata, w->index, ctx);
  tn_cancel_enter(NULL);
  if (alone) {
    block_unref(b);
    return;
  }
  /* Parked before the terminate hears of it: a tn_block_new right after
  ** the terminate finds this thread. */
  pool_enlist();
  pthread_mutex_lock(&b->mutex);
  worker_ended(b);
}

/* ---- the pool of parked threads ----------------------------------------- */

/*
** A pool thread ("carrier") runs one block's worker after the other. It
** is idle while it is on pool.idle; tn_block_new takes it off the list and
** hands it its next worker (`job`) under pool.mutex. A carrier that
** leaves by itself (idle timeout, pool full, process exit begun) cannot
** be joined by anyone waiting for it: it puts its id in pool.exited and
** joins the one that was there, and a drain joins the last. So every
** thread is joined, and at most one has exited unjoined.
*/
typedef struct carrier {
  struct carrier *next;
  pthread_t thread;         /* set by the thread itself */
  pthread_cond_t wake;      /* a job or quit (pool.mutex) */
  _Atomic(block_worker_t *) job; /* its next worker (set under pool.mutex) */
  bool sleeping;            /* waiting on `wake` (pool.mutex) */
  bool quit;                /* a drain took it: exit, the drain joins it */
  bool enlisted;            /* it put itself on pool.idle (its own) */
  bool leaving;             /* it put itself in pool.exited (its own) */
  bool join_other;          /* ... and must join `other`, which was there */
  pthread_t other;
} carrier_t;

static struct {
  pthread_mutex_t mutex;
  carrier_t *idle;    /* parked, most recent first */
  int nidle;
  bool shutdown;      /* the process exits: nobody parks any more */
  bool have_exited;   /* `exited` is a thread to join */
  pthread_t exited;
  carrier_t *orphans; /* a forked child's copy of the parent's idle list */
  int max;            /* idle threads kept (tests may change it) */
} pool = {.mutex = PTHREAD_MUTEX_INITIALIZER, .max = -1};

static pthread_once_t pool_once = PTHREAD_ONCE_INIT;
static _Thread_local carrier_t *self_carrier;

static void pool_drain(bool final);
static void pool_at_exit(void) { pool_drain(true); }

/* fork: hold the pool's mutex across it, so the child's copy is whole. */
static void pool_fork_prepare(void) { pthread_mutex_lock(&pool.mutex); }
static void pool_fork_parent(void) { pthread_mutex_unlock(&pool.mutex); }
static void pool_fork_child(void) {
  /* The parked threads are not in the child. Their records stay
  ** reachable as orphans, freed by the child's drain;
  ** the thread to join does not exist either. */
  carrier_t **tail = &pool.orphans;
  while (*tail != NULL) tail = &(*tail)->next;
  *tail = pool.idle;
  pool.idle = NULL;
  pool.nidle = 0;
  pool.have_exited = false;
  pthread_mutex_unlock(&pool.mutex); /* locked by the forking thread: us */
}

static void pool_init(void) {
  long cpus = tn_cpu_count();
  pthread_mutex_lock(&pool.mutex);
  if (pool.max < 0) pool.max = cpus > POOL_MAX_MIN ? (int)cpus : POOL_MAX_MIN;
  pthread_mutex_unlock(&pool.mutex);
  pthread_atfork(pool_fork_prepare, pool_fork_parent, pool_fork_child);
  /* Registered at the first block, so it runs before the exit handlers
  ** registered earlier (a sanitizer's leak and thread-leak checks). */
  atexit(pool_at_exit);
}

static bool job_assigned(void *p) {
  carrier_t *c = p;
  return atomic_load_explicit(&c->job, memory_order_relaxed) != NULL;
}

/* The carrier will exit: it takes the place of the thread to join (a
** drain from now on joins it) and joins that one itself. pool.mutex
** held. */
static void leave_locked(carrier_t *c) {
  c->leaving = true;
  c->join_other = pool.have_exited;
  c->other = pool.exited;
  pool.exited = c->thread;
  pool.have_exited = true;
}

/* Put the calling carrier on pool.idle, if there is room (`enlisted`),
** else make it leave: either way before it says it ended, so that a
** drain right after a terminate sees it. Lock order: a block's mutex
** (may be held), then pool.mutex. */
static void pool_enlist(void) {
  carrier_t *c = self_carrier;
  pthread_mutex_lock(&pool.mutex);
  c->enlisted = !pool.shutdown && pool.nidle < pool.max;
  if (c->enlisted) {
    atomic_store_explicit(&c->job, NULL, memory_order_relaxed);
    c->next = pool.idle;
    pool.idle = c;
    pool.nidle++;
  } else {
    leave_locked(c);
  }
  pthread_mutex_unlock(&pool.mutex);
}

/*
** After a block: wait for the next worker (returned), or NULL when the
** thread must exit (and, unless a drain took it, it has put itself in
** pool.exited). The wait is bounded (POOL_IDLE_S) and ends at a drain's
** quit; the job and quit are re-checked under pool.mutex after every
** wake-up (spurious ones; and the signal may come before we sleep: it is
** sent, under the mutex, only to a carrier marked sleeping).
*/
static block_worker_t *pool_park(carrier_t *c) {
  if (!c->enlisted && !c->leaving) pool_enlist(); /* a detached worker */
  if (c->leaving) goto leave;
  tn_spin_until(job_assigned, c, POOL_PARK_SPIN_NS);
  pthread_mutex_lock(&pool.mutex);
  tn_deadline_t dl = tn_deadline_in(POOL_IDLE_S);
  for (;;) {
    block_worker_t *w = atomic_load_explicit(&c->job, memory_order_relaxed);
    if (w != NULL) {
      pthread_mutex_unlock(&pool.mutex);
      return w;
    }
    if (c->quit) {
      pthread_mutex_unlock(&pool.mutex);
      return NULL; /* the drain joins us and frees c */
    }
    if (tn_deadline_passed(&dl)) break;
    c->sleeping = true;
    /* No cancel token here (the block's went with it): a plain wait,
    ** bounded by the idle deadline. */
    tn_cond_wait_until(&c->wake, &pool.mutex, &dl);
    c->sleeping = false;
  }
  /* Timed out, still on the list: nobody took us (job and quit were seen
  ** unset above, under this same hold of the mutex). */
  for (carrier_t **p = &pool.idle; *p != NULL; p = &(*p)->next)
    if (*p == c) {
      *p = c->next;
      pool.nidle--;
      break;
    }
  leave_locked(c);
  pthread_mutex_unlock(&pool.mutex);
leave:
  if (c->join_other) pthread_join(c->other, NULL); /* past its last lock */
  pthread_cond_destroy(&c->wake);
  tn_free(c);
  return NULL;
}

static void *carrier_main(void *p) {
  carrier_t *c = p;
  c->thread = pthread_self();
  self_carrier = c;
  block_worker_t *w = atomic_load_explicit(&c->job, memory_order_relaxed);
  while (w != NULL) {
    /* As a thread created by this block's tn_block_new would be. */
    pthread_sigmask(SIG_SETMASK, &w->block->sigmask, NULL);
    tn_error_reset();
    c->enlisted = false;
    c->leaving = false;
    worker_run(w);
    w = pool_park(c);
  }
  return NULL;
}

/* Run worker w on a parked thread, else on a new one. TN_OK, TN_ENOMEM,
** TN_ETHREAD. */
static int pool_start(block_worker_t *w) {
  pthread_once(&pool_once, pool_init);
  pthread_mutex_lock(&pool.mutex);
  carrier_t *c = pool.idle; /* the latest: its stack is warm in cache */
  if (c != NULL) {
    pool.idle = c->next;
    pool.nidle--;
    atomic_store_explicit(&c->job, w, memory_order_relaxed);
    if (c->sleeping) pthread_cond_signal(&c->wake);
    pthread_mutex_unlock(&pool.mutex);
    return TN_OK;
  }
  pthread_mutex_unlock(&pool.mutex);
  c = tn_malloc(sizeof *c);
  if (c == NULL) return TN_ENOMEM;
  c->next = NULL;
  tn_cond_init(&c->wake);
  atomic_init(&c->job, w);
  c->sleeping = false;
  c->quit = false;
  c->enlisted = false;
  c->leaving = false;
  c->join_other = false;
  pthread_t t;
  if (pthread_create(&t, NULL, carrier_main, c) != 0) {
    pthread_cond_destroy(&c->wake);
    tn_free(c);
    return TN_ETHREAD;
  }
  return TN_OK;
}

/*
** Join the parked threads (and the last one that exited). final: the
** process exits, nobody parks from now on. Otherwise (tests) the pool
** stays usable.
*/
static void pool_drain(bool final) {
  pthread_mutex_lock(&pool.mutex);
  if (final) pool.shutdown = true;
  carrier_t *list = pool.idle, *orphans = pool.orphans;
  pool.idle = pool.orphans = NULL;
  pool.nidle = 0;
  for (carrier_t *c = list; c != NULL; c = c->next) {
    c->quit = true;
    if (c->sleeping) pthread_cond_signal(&c->wake);
  }
  bool join = pool.have_exited;
  pthread_t other = pool.exited;
  pool.have_exited = false;
  pthread_mutex_unlock(&pool.mutex);
  while (list != NULL) {
    carrier_t *c = list;
    list = c->next; /* off the list: nobody writes it any more */
    pthread_join(c->thread, NULL);
    pthread_cond_destroy(&c->wake);
    tn_free(c);
  }
  if (join) pthread_join(other, NULL);
  while (orphans != NULL) { /* a forked child: their threads are not here */
    carrier_t *c = orphans;
    orphans = c->next;
    tn_free(c);
  }
}

void tn_block_pool_drain(void) { pool_drain(false); }

int tn_block_pool_idle(void) {
  pthread_mutex_lock(&pool.mutex);
  int n = pool.nidle;
  pthread_mutex_unlock(&pool.mutex);
  return n;
}

int tn_block_pool_limit(int max) {
  pthread_once(&pool_once, pool_init);
  pthread_mutex_lock(&pool.mutex);
  int old = pool.max;
  if (max >= 0) pool.max = max;
  pthread_mutex_unlock(&pool.mutex);
  return old;
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
  pthread_cond_destroy(&b->ended_cv);
  pthread_mutex_destroy(&b->mutex);
  tn_free(b->workers);
  tn_free(b);
}

/*
** Start the threads and wait until each has run its start hook. On any
** failure the threads already started are told to stop (thread_stop runs
** where the start succeeded), waited for, and everything is freed.
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
  tn_cond_init(&b->ended_cv);
  atomic_init(&b->ended, 0);
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

  /* The threads get a mask that blocks the signals meant for the
  ** process (Ctrl-C and the like): the main thread gets them, where the
  ** interpreter's handler and tn_cancel's poll expect them. A new thread
  ** inherits it; a parked one sets b->sigmask, the same (carrier_main). */
  sigset_t mask, old;
  sigemptyset(&mask);
  int process_signals[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1,
                           SIGUSR2, SIGALRM};
  for (size_t i = 0; i < sizeof process_signals / sizeof *process_signals;
       i++)
    sigaddset(&mask, process_signals[i]);
  pthread_sigmask(SIG_BLOCK, &mask, &old);
  b->sigmask = old;
  for (size_t i = 0; i < sizeof process_signals / sizeof *process_signals;
       i++)
    sigaddset(&b->sigmask, process_signals[i]);
  int created = 0, rc = TN_OK;
  for (; created < size; created++) {
    rc = pool_start(&b->workers[created]);
    if (rc != TN_OK) break;
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
    int waited = 0; /* the threads that will say they ended */
    for (int i = 0; i < created; i++) {
      if (b->workers[i].reported) {
        waited++;
        continue;
      }
      b->workers[i].detached = true; /* it frees itself (refs) */
      atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
    }
    wake_all(b);
    /* As the join did: wait until the threads that reported are done
    ** with the block (they stop at once: terminating, nothing queued).
    ** Re-checked under the mutex after every wake-up. */
    while (atomic_load_explicit(&b->ended, memory_order_relaxed) < waited)
      pthread_cond_wait(&b->ended_cv, &b->mutex);
  }
  pthread_mutex_unlock(&b->mutex);
  if (rc != TN_OK) {
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

static bool all_ended(void *p) {
  tn_block_t *b = p;
  return atomic_load_explicit(&b->ended, memory_order_relaxed) >= b->size;
}

/*
** Refuse new runs, let the threads drain their queues and stop, and wait
** until each has run its stop hook and let go of the block (the threads
** go back to the pool: no join, `ended` says what the join did). A second
** caller (even a concurrent one) waits for the first.
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

  /* A stop hook may take about a wake-up (a Lua state's close): spin
  ** that long first, when the threads and this one have a CPU each. */
  if (b->size < tn_cpu_count())
    tn_spin_until(all_ended, b, BLOCK_SPIN_NS);
  pthread_mutex_lock(&b->mutex);
  /* Not cancellable, as the join it replaces was not: it waits only for
  ** the stop hooks, which do not wait for this thread, and for queued
  ** jobs (the binding waits for those first, in a wait that is).
  ** Re-checked under the mutex: threads end one by one, each
  ** broadcasting. */
  while (atomic_load_explicit(&b->ended, memory_order_relaxed) < b->size)
    pthread_cond_wait(&b->ended_cv, &b->mutex);
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
