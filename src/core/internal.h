/*
** internal.h - what the core's files share and users never see: the
** allocator hook, the shared-object header, and the lock helpers with
** deadlines that every waiting operation is built on.
*/
#ifndef TN_INTERNAL_H
#define TN_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <time.h>

#include "tunnel.h"

/*
** TN_MEMCHECK (defined by the valgrind build): every blob comes from malloc,
** so memcheck sees each one's life, and nothing spins (no bounded spin,
** plain mutexes): valgrind runs one thread at a time, so a spinning thread
** only delays the one it waits for, by orders of magnitude.
*/

/* Every core allocation goes through these, so tn_fault_alloc can fail one. */
void *tn_malloc(size_t size);
void *tn_realloc(void *p, size_t size);
/* Aligned to `align` (a power of two, a multiple of sizeof(void *)); freed
** with tn_free. */
void *tn_malloc_aligned(size_t align, size_t size);
void tn_free(void *p);

/* Forget this thread's tn_last_error and pending error (a pooled block
** thread, between blocks: block.c). */
void tn_error_reset(void);

/* True when tn_fault_alloc says this allocation must fail (for allocators
** that do not go through tn_malloc, like the blob pool). */
bool tn_fault_check(void);

/* ---- locks and deadlines ------------------------------------------------ */

/* A point in time on CLOCK_MONOTONIC; `forever` for TN_FOREVER. */
typedef struct tn_deadline {
  struct timespec at;
  bool forever;
} tn_deadline_t;

/* The deadline `timeout` seconds from now (timeout >= 0 or TN_FOREVER). */
tn_deadline_t tn_deadline_in(double timeout);
bool tn_deadline_passed(const tn_deadline_t *d);

/* Mutex and condition helpers: abort on the impossible (EINVAL, EDEADLK). */
void tn_mutex_init(pthread_mutex_t *m);
void tn_cond_init(pthread_cond_t *c); /* uses CLOCK_MONOTONIC */

/*
** Lock `m` for an operation with `timeout`: TN_TRY tries once (TN_EAGAIN if
** busy); any other timeout locks (internal locks are held only briefly, so
** the wait for them is not bounded by the timeout).
*/
int tn_mutex_acquire(pthread_mutex_t *m, double timeout);

/*
** Wait on `c` (with `m` held) until signalled or `d` passes. Returns TN_OK
** or TN_ETIMEDOUT, or TN_ECANCELED / TN_EINTR when the calling thread's
** cancel token ends the wait (cancel.c); whatever it returns, `m` is held
** again and the caller must re-check its condition (TN_OK may be a
** spurious wake-up). Every wait a user can be blocked in goes through it.
*/
int tn_cond_wait_until(pthread_cond_t *c, pthread_mutex_t *m,
                       const tn_deadline_t *d);

/* The calling thread has a cancel token (its waits are cancellable). */
bool tn_cancel_active(void);

/* A block thread's token starts (running = true) or ends a job: counted
** for tn_jobs_progress. The owner only. */
void tn_cancel_job(tn_cancel_t *t, bool running);

/* Requests that cannot reach a later job: read the token's generation
** while the job is known to run (block.c: under the block's mutex), then
** request with it, holding no other lock; a tn_cancel_clear in between
** (the job ended) makes the request a no-op (false). */
unsigned long tn_cancel_generation(tn_cancel_t *t);
bool tn_cancel_request_if(tn_cancel_t *t, unsigned long gen);

/* ---- reader-writer lock (for user callbacks) --------------------------- */

typedef struct tn_rwlock {
  pthread_mutex_t mutex;
  pthread_cond_t readers_cv;
  pthread_cond_t writers_cv;
  pthread_cond_t gate_cv; /* operations waiting for the object's gate */
  int readers;         /* readers holding it */
  int writers_waiting; /* writers queued: new readers wait behind them */
  bool writer;         /* a writer holds it */
} tn_rwlock_t;


/* ---- shared objects ----------------------------------------------------- */

/*
** The operations of a structure that lives elsewhere (a Redis server): one
** function per public operation, with the public function's contract.
** An object whose `backend` is not NULL is a *remote* object: its header
** is a normal tn_object_t (type, references, destroy), but every public
** tn_deque_*, tn_map_*, tn_counter_*, tn_cell_*, tn_printer_* and callback
** lock call is forwarded here by one predictable branch at its top. Remote
** operations may also fail with TN_EIO, TN_EPROTO or TN_ELOCAL, with the
** details in tn_last_error(); those that return no code (counter, size,
** close) record the code for tn_error_take() and return 0.
*/
typedef struct tn_backend {
  const char *name; /* "redis" */
  int (*deque_push)(tn_deque_t *d, tn_blob_t *b, double timeout, bool front);
  int (*deque_pop)(tn_deque_t *d, tn_blob_t **out, double timeout, bool front);
  int (*deque_insert)(tn_deque_t *d, size_t index, tn_blob_t *b,
                      double timeout);
  int (*deque_remove)(tn_deque_t *d, size_t index, tn_blob_t **out,
                      double timeout);
  int (*deque_get)(tn_deque_t *d, size_t index, tn_blob_t **out,
                   double timeout);
  int (*deque_set)(tn_deque_t *d, size_t index, tn_blob_t *b, tn_blob_t **old,
                   double timeout);
  size_t (*deque_size)(tn_deque_t *d);
  size_t (*deque_size_hint)(const tn_deque_t *d);
  void (*deque_close)(tn_deque_t *d);
  int (*deque_is_closed)(tn_deque_t *d);
  int (*deque_snapshot)(tn_deque_t *d, tn_blob_t ***items, size_t *n,
                        uint64_t *version, double timeout);
  int (*deque_replace)(tn_deque_t *d, tn_blob_t **items, size_t n,
                       uint64_t version, double timeout);
  int (*map_get)(tn_map_t *m, const void *key, size_t len, tn_blob_t **out,
                 double timeout);
  int (*map_set)(tn_map_t *m, const void *key, size_t len, tn_blob_t *b,
                 tn_blob_t **old, double timeout);
  size_t (*map_size)(tn_map_t *m);
  int (*map_snapshot)(tn_map_t *m, tn_map_entry_t **entries, size_t *n,
                      double timeout);
  int64_t (*counter_add)(tn_counter_t *c, int64_t delta);
  int64_t (*counter_get)(tn_counter_t *c);
  int64_t (*counter_set)(tn_counter_t *c, int64_t value);
  int (*counter_wait)(tn_counter_t *c, int64_t target, double timeout,
                      int64_t *value);
  int (*barrier_wait)(tn_barrier_t *b, double timeout, int *index);
  int (*barrier_reset)(tn_barrier_t *b);
  int (*barrier_state)(tn_barrier_t *b, int *parties, int *waiting,
                       int *broken);
  int (*semaphore_acquire)(tn_semaphore_t *s, int64_t n, double timeout);
  int (*semaphore_release)(tn_semaphore_t *s, int64_t n);
  int (*semaphore_available)(tn_semaphore_t *s, int64_t *available,
                             int64_t *permits);
  int (*cell_get)(tn_cell_t *c, tn_blob_t **out, double timeout);
  int (*cell_set)(tn_cell_t *c, tn_blob_t *b, double timeout);
  int (*printer_lock)(tn_printer_t *p, double timeout);
  void (*printer_unlock)(tn_printer_t *p);
  int (*printer_write)(tn_printer_t *p, const void *data, size_t len,
                       double timeout);
  /* Arrays (src/redis/array.c): fetch gives a new in-process copy; store
  ** and add take an in-process source of the array's shape. */
  int (*array_shape)(tn_array_t *a, tn_dtype_t *type, size_t *n);
  int (*array_get)(tn_array_t *a, size_t i, tn_elem_t *out);
  int (*array_set)(tn_array_t *a, size_t i, tn_elem_t v);
  int (*array_atomic_add)(tn_array_t *a, size_t i, tn_elem_t delta,
                          tn_elem_t *old);
  int (*array_fetch)(tn_array_t *a, tn_array_t **copy, uint64_t *version);
  int (*array_store)(tn_array_t *a, const tn_array_t *src);
  int (*array_add)(tn_array_t *a, const tn_array_t *src, tn_elem_t s);
  int (*array_version)(tn_array_t *a, uint64_t *version);
  int (*read_lock)(tn_object_t *o, double timeout);
  void (*read_unlock)(tn_object_t *o);
  int (*write_lock)(tn_object_t *o, double timeout);
  void (*write_unlock)(tn_object_t *o);
  /* The priority queue. */
  int (*pqueue_push)(tn_pqueue_t *q, double priority, tn_blob_t *b,
                     double timeout);
  int (*pqueue_pop)(tn_pqueue_t *q, tn_blob_t **out, double *priority,
                    double timeout);
  int (*pqueue_unpop)(tn_pqueue_t *q, double priority, tn_blob_t *b);
  size_t (*pqueue_size)(tn_pqueue_t *q);
  size_t (*pqueue_size_hint)(const tn_pqueue_t *q);
  int (*pqueue_close)(tn_pqueue_t *q);
  int (*pqueue_is_closed)(tn_pqueue_t *q);
  /* Vector batches, and select (the deques all of this backend). */
  int (*deque_push_many)(tn_deque_t *d, tn_blob_t *const *items, size_t n,
                         double timeout);
  int (*deque_pop_many)(tn_deque_t *d, size_t max, tn_blob_t ***items,
                        size_t *n, double timeout);
  int (*deque_select)(tn_deque_t *const *ds, size_t n, size_t *index,
                      tn_blob_t **out, double timeout);
} tn_backend_t;

/*
** The gate: what a holder of the callback lock lets the structure's own
** operations do (see tn_object_read_lock in tunnel.h). It is changed only
** under the callback lock's mutex, then made visible to every operation
** by the type's `quiesce` (below); an operation reads it under the
** structure's own mutex (deque, map) or finds it in the counter's word.
*/
enum {
  TN_GATE_OPEN = 0,  /* no callback holds the object */
  TN_GATE_READ = 1,  /* read callbacks: modifications wait */
  TN_GATE_WRITE = 2  /* a write callback: every operation waits */
};

/*
** The cycle collector's view of a structure that holds blobs (collect.c):
** every in-process deque, map and cell registers itself with one of these
** (counters, printers and remote objects hold no blobs: no cycle can pass
** through them). The collector calls trylock, then children and version,
** then unlock; clear only on an object it proved unreachable.
*/
typedef void (*tn_visit_fn)(tn_blob_t *b, void *arg);
typedef struct tn_gc_ops {
  /* Take every structure mutex without waiting: true with all of them
  ** held, false with none. */
  bool (*trylock)(tn_object_t *o);
  void (*unlock)(tn_object_t *o);
  /* visit(b) for every non-NULL blob held, once per slot (mutexes held). */
  void (*children)(tn_object_t *o, tn_visit_fn visit, void *arg);
  /* A number that changes with every change of the content (mutexes
  ** held). */
  uint64_t (*version)(tn_object_t *o);
  /* Empty the structure, releasing every blob it held (no mutex held by
  ** the caller; the object is unreachable, the collector holds it). */
  void (*clear)(tn_object_t *o);
} tn_gc_ops_t;

struct tn_object {
  atomic_long refs;
  tn_type_t type;
  void (*destroy)(tn_object_t *o); /* frees the whole structure */
  const tn_backend_t *backend;     /* NULL: in-process */
  /*
  ** After the gate closed: make every operation that starts from now on
  ** see it, and wait for those under way (take and drop the structure's
  ** mutexes; the counter sets its gate bit). NULL: the type's operations
  ** are not gated (cells, printers: only callbacks take their lock).
  ** Called with the gate's new value, also when it opens.
  */
  void (*quiesce)(tn_object_t *o, int gate);
  atomic_int gate;                 /* TN_GATE_*, in-process objects only */
  tn_rwlock_t callback_lock;       /* in-process objects only */
  /* Release and collection (object.c, collect.c). */
  tn_object_t *dead_next;          /* this thread's objects to destroy */
  const tn_gc_ops_t *gc;           /* NULL: not registered (no blobs) */
  tn_object_t *gc_next, *gc_prev;  /* the registry (under its mutex) */
  size_t gc_index;                 /* during a collection: its node */
  unsigned gc_epoch;               /* == the collection's: gc_index valid */
  atomic_bool gc_touched;          /* retained while a collection runs */
};

/*
** Nonzero while a collection runs: every retain then marks what it
** retained (gc_touched), so the collector sees a reference that moved
** while it counted (collect.c explains why that is enough).
*/
extern atomic_int tn_gc_running;

/* Join / leave the registry of structures that hold blobs (collect.c).
** Register a structure once it is fully built (the collector may look at
** it at once); unregister happens in the release, before destroy. */
void tn_gc_register(tn_object_t *o, const tn_gc_ops_t *ops);
void tn_gc_unregister(tn_object_t *o);
/* How many structures are registered (for the tests). */
size_t tn_gc_registered(void);

/* Fill a peek (tunnel.h) from the value `v` (NULL: absent or nil): copy
** it if it fits, else take a reference if asked to (blob.c). */
void tn_peek_value(tn_blob_t *v, tn_peek_t *p);

/* What the collector reads of a blob (blob.c keeps the struct private). */
long tn_blob_refs_now(tn_blob_t *b);      /* seq_cst load */
void tn_blob_touch_clear(tn_blob_t *b);
bool tn_blob_touched(tn_blob_t *b);

/*
** Under the structure's mutex (or with the counter's word): TN_OK when an
** operation may go on. The fast path is one relaxed load: the gate changed
** before the quiesce that took this mutex, so the mutex orders it.
** Otherwise tn_gate_check decides: TN_OK for the holding thread itself (a
** writer's operations, a reader's reads); for a reader's own modification
** what waiting for oneself gives (TN_EAGAIN for TN_TRY, else TN_EDEADLK);
** TN_EBUSY_GATE when the caller must drop its mutex and tn_gate_wait.
*/
#define TN_EBUSY_GATE 1 /* not an error code: wait for the gate */
int tn_gate_check(tn_object_t *o, bool modifies, double timeout);
static inline int tn_gate_enter(tn_object_t *o, bool modifies,
                                double timeout) {
  int g = atomic_load_explicit(&o->gate, memory_order_relaxed);
  if (__builtin_expect(g == TN_GATE_OPEN, 1) ||
      (g == TN_GATE_READ && !modifies))
    return TN_OK;
  return tn_gate_check(o, modifies, timeout);
}

/*
** Wait, holding no structure mutex, until the gate would let the operation
** in (then retry it from the top). `*dl` is the operation's deadline,
** made from `timeout` on first use (`*dl_set`). TN_OK, TN_EAGAIN for
** TN_TRY, TN_ETIMEDOUT.
*/
int tn_gate_wait(tn_object_t *o, bool modifies, double timeout,
                 tn_deadline_t *dl, bool *dl_set);

/* The one branch at the top of every public operation. */
#define TN_REMOTE(o) __builtin_expect(((const tn_object_t *)(o))->backend != NULL, 0)
#define TN_BACKEND(o) (((const tn_object_t *)(o))->backend)

/* Initialise the header of a remote object (no callback lock: the backend
** provides it); one reference. */
void tn_object_init_remote(tn_object_t *o, tn_type_t type,
                           void (*destroy)(tn_object_t *o),
                           const tn_backend_t *backend);

/* Record the message of a remote failure (printf format) for
** tn_last_error; returns `err` (a TN_E* code). */
int tn_error_set(int err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* A remote operation that returns no code failed with `err`: record it for
** tn_error_take. */
void tn_error_pend(int err);

/* Initialise the header of a new structure with one reference. */
void tn_object_init(tn_object_t *o, tn_type_t type,
                    void (*destroy)(tn_object_t *o));
/* Tear the header down (the structure's destroy calls this). */
void tn_object_fini(tn_object_t *o);

/* ---- waiting on several deques (select.c) ------------------------------ */

/*
** One waiter for several structures: each change that may let the waiter
** go on notifies it (sets `woken` and signals `cond`, under `mutex`); it
** sleeps on `cond` through tn_cond_wait_until, so a cancel ends the sleep.
*/
typedef struct tn_waiter {
  pthread_mutex_t mutex;
  pthread_cond_t cond;
  bool woken; /* under mutex */
} tn_waiter_t;

void tn_waiter_notify(tn_waiter_t *w);

/* The waiter's place in one deque's list (the node is the caller's). */
typedef struct tn_watch {
  tn_waiter_t *waiter;
  struct tn_watch *next, *prev;
} tn_watch_t;

/*
** Register `node` (its waiter set) on `d`: from now until unwatch, every
** push, insert, growing set, replace, close and opening of the callback
** gate notifies it. It counts among the deque's sleeping poppers, so the
** caller looks at the deque only after this (no change is missed then).
*/
void tn_deque_watch(tn_deque_t *d, tn_watch_t *node);
void tn_deque_unwatch(tn_deque_t *d, tn_watch_t *node);

/* ---- test hooks --------------------------------------------------------- */

/* The mutex of the shard that holds `key` (test_map.c holds it from another
** thread to watch TN_TRY give up). */
pthread_mutex_t *tn_map_shard_mutex(tn_map_t *m, const void *key, size_t len);

/* The deque's front or back lock (test_deque.c holds one from another
** thread to watch TN_TRY give up). */
pthread_mutex_t *tn_deque_test_mutex(tn_deque_t *d, bool front);

/* The block's mutex (test_block.c holds it: idle threads take it now and
** then, and synchronize must not fail on it when nothing is pending). */
pthread_mutex_t *tn_block_test_mutex(tn_block_t *b);

/* ---- spinning ----------------------------------------------------------- */

/* A CPU hint for busy-wait loops. */
static inline void tn_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

/* CPUs online (computed once). */
long tn_cpu_count(void);

/*
** Spin for at most `ns` nanoseconds, holding no lock, until done(arg) is
** true: a wait shorter than a wake-up from sleep (~20 us in a VM) is then
** cheaper. Only a hint: the caller re-checks its condition under its mutex
** and sleeps if it still must. Returns at once on one CPU, when as many
** threads as CPUs spin already, and in the TN_MEMCHECK build.
*/
void tn_spin_until(bool (*done)(void *arg), void *arg, long ns);

/* ---- epoch-based reclamation (ebr.c) ------------------------------------ */

/*
** atomic_thread_fence, except under ThreadSanitizer, which does not model
** fences (gcc warns): there a read-modify-write of a thread-private atomic
** stands in. The code that needs a fence orders the accesses TSan checks
** with release/acquire pairs as well, so TSan loses nothing it could see.
*/
#if defined(__SANITIZE_THREAD__)
#define TN_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TN_TSAN 1
#endif
#endif
#ifdef TN_TSAN
extern _Thread_local atomic_int tn_fence_word;
#define TN_FENCE(order) ((void)atomic_fetch_add_explicit(&tn_fence_word, 0, order))
#else
#define TN_FENCE(order) atomic_thread_fence(order)
#endif

/*
** For readers that follow pointers without the lock that guards them
** (map.c's gets): a reader brackets its reads with tn_ebr_enter (NULL:
** no record could be made, take the lock instead) and tn_ebr_leave, and
** does nothing inside that can wait or raise. A writer that unlinks memory
** under the lock tags it with tn_ebr_tag() and frees it only once
** tn_ebr_expired(tag, tn_ebr_advance()) (tn_ebr_synchronize waits for that).
*/
typedef struct tn_ebr_thread tn_ebr_thread_t;
tn_ebr_thread_t *tn_ebr_enter(void);
void tn_ebr_leave(tn_ebr_thread_t *r);
uint64_t tn_ebr_tag(void);
uint64_t tn_ebr_advance(void); /* the epoch now (advanced when it could) */
bool tn_ebr_expired(uint64_t tag, uint64_t epoch);
void tn_ebr_synchronize(uint64_t tag); /* yields until `tag` expired */

#endif
