/*
** tunnel.h - the C API of tunnel: synchronized data structures shared by
** threads, over byte strings.
**
** Values are "blobs": immutable, reference-counted byte strings plus a list
** of the shared objects they refer to. A structure never looks inside the
** bytes; the Lua binding puts its encoded values there, a C program whatever
** it likes. A NULL blob is a legal value ("nil"): the deque stores it like
** any other.
**
** Every structure is a reference-counted shared object (tn_object_t is its
** first member, so TN_OBJECT() converts). It lives while any reference to it
** exists (a creator, a blob, a thread) and is freed when the last goes.
**
** Waiting. Every operation that can wait takes a timeout in seconds:
**   TN_FOREVER      wait as long as it takes;
**   t >= 0          wait at most t seconds (0: take the structure's lock,
**                   act if it can, never wait for room or items);
**   TN_TRY          never wait at all, not even for the structure's lock.
** A wait that runs out returns TN_ETIMEDOUT; a TN_TRY that would have had to
** wait returns TN_EAGAIN. Neither changes anything.
**
** Errors are negative TN_E* codes; tn_strerror() names them. A function
** that fails leaves its structure as it was, and ownership of its arguments
** with the caller.
*/
#ifndef TUNNEL_H
#define TUNNEL_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The version: the one place it is written (the Makefile, tunnel.pc, the
** Lua module and the release rockspec follow it). tn_version() is the
** version of the library a program runs with. */
#define TN_VERSION "0.1.0"
const char *tn_version(void);

enum {
  TN_OK = 0,
  TN_ENOMEM = -1,      /* out of memory */
  TN_ETIMEDOUT = -2,   /* the timeout ran out first */
  TN_EAGAIN = -3,      /* TN_TRY: the call would have had to wait */
  TN_ECLOSED = -4,     /* the deque is closed */
  TN_EINVAL = -5,      /* an argument is out of its domain */
  TN_ERANGE = -6,      /* an index is out of range */
  TN_ETERMINATED = -7, /* the block is terminated */
  TN_ETHREAD = -8,     /* a thread could not be created */
  TN_ECONFLICT = -9,   /* the structure changed since the snapshot */
  TN_EINIT = -10,      /* a block thread's start hook failed */
  TN_EIO = -11,        /* remote: the server failed or could not be reached */
  TN_EPROTO = -12,     /* remote: a reply or stored value cannot be decoded */
  TN_ELOCAL = -13,     /* remote: an in-process object in a remote value */
  TN_EDEADLK = -14,    /* the calling thread holds the lock it would wait for */
  TN_ECANCELED = -15,  /* the calling thread's job was asked to stop */
  TN_EINTR = -16,      /* the wait was interrupted (a signal, see tn_cancel) */
  TN_EBROKEN = -17     /* the barrier's round was broken (a timeout, a reset) */
};

/* A static, human-readable message for an error code. */
const char *tn_strerror(int err);

/*
** Remote objects (tunnel.Cluster) fail in ways in-process ones cannot:
** TN_EIO, TN_EPROTO, TN_ELOCAL. The calling thread's last such failure is
** described by tn_last_error() ("redis 127.0.0.1:6379: LPUSH tunnel:jobs:
** connection refused"; "" when there was none). Operations that return no
** code (tn_counter_*, tn_deque_size, tn_deque_close, tn_deque_is_closed,
** tn_map_size) return 0 on such a failure and record the code:
** tn_error_take() returns it and clears it (TN_OK when nothing failed).
** In-process objects record only TN_EDEADLK (a counter operation from a
** read callback of the same counter, see the callback lock).
*/
const char *tn_last_error(void);
int tn_error_take(void);

#define TN_FOREVER HUGE_VAL
#define TN_TRY (-1.0)

/* Sleep the calling thread for `seconds` (negative or NaN: not at all).
** TN_OK, or TN_ECANCELED / TN_EINTR when the thread's cancel token ends it
** early (below). */
int tn_sleep(double seconds);

/* Seconds on a monotonic clock (for measuring intervals). */
double tn_clock(void);

/* ---------------------------------------------------------------------- */
/* Cancellation                                                           */
/* ---------------------------------------------------------------------- */

/*
** A cancel token asks the thread it belongs to to stop waiting. Every
** blocking wait of the core (deque, map and counter gates, callback locks,
** printers, block synchronize, tn_sleep, and the Redis backend's waits,
** within a fraction of a second) looks at the calling thread's current
** token: once it is requested, the wait (and every later one, until the
** token is cleared) returns TN_ECANCELED at once, leaving its structure as
** it was. Block threads have one each, requested by tn_block_cancel.
**
** A token may also have a poll function: while the thread waits, the wait
** wakes every TN_CANCEL_POLL seconds and calls poll(arg); nonzero ends the
** wait with TN_EINTR. The Lua binding uses it in the main state to notice
** the interpreter's Ctrl-C.
*/
typedef struct tn_cancel tn_cancel_t;
#define TN_CANCEL_POLL 0.1

/* A new token, not requested. TN_OK or TN_ENOMEM. */
int tn_cancel_new(tn_cancel_t **out);
/* Free a token no thread has as its current one any more. */
void tn_cancel_free(tn_cancel_t *t);
/* Make `t` (or NULL: none) the calling thread's token; returns the
** previous one. */
tn_cancel_t *tn_cancel_enter(tn_cancel_t *t);
/* The calling thread's token, or NULL. */
tn_cancel_t *tn_cancel_current(void);
/* Ask the token's thread to stop: sets the flag, wakes the wait it is in,
** and calls the token's notify function (below). Any thread. */
void tn_cancel_request(tn_cancel_t *t);
/* Forget a request (the owner, between jobs). */
void tn_cancel_clear(tn_cancel_t *t);
/* 1 if `t` is requested. */
int tn_cancel_requested(const tn_cancel_t *t);
/* 1 if the calling thread's token is requested (0 without a token). */
int tn_cancelled(void);
/* The wait's poll function (NULL: none), see above. Only the owner thread
** calls this, while it waits in nothing. */
void tn_cancel_set_poll(tn_cancel_t *t, int (*poll)(void *arg), void *arg);
/* A function tn_cancel_request calls, in the requesting thread, right after
** it set the flag (the Lua binding sets a hook there that raises in
** running Lua code). It must not block. */
void tn_cancel_set_notify(tn_cancel_t *t, void (*notify)(void *arg),
                          void *arg);
/* TN_OK, TN_ECANCELED or TN_EINTR (the poll said so) for the calling
** thread: what a wait loop that does not sleep in the core (the Redis
** backend's) checks between its slices. */
int tn_cancel_check(void);

/* ---------------------------------------------------------------------- */
/* Shared objects                                                         */
/* ---------------------------------------------------------------------- */

typedef struct tn_object tn_object_t;

typedef enum tn_type {
  TN_TYPE_DEQUE = 1,   /* tunnel.Vector */
  TN_TYPE_COUNTER = 2, /* tunnel.Counter */
  TN_TYPE_PRINTER = 3, /* tunnel.Printer */
  TN_TYPE_HASH = 4,    /* a map shown as tunnel.Hash */
  TN_TYPE_TABLE = 5,   /* a map shown as a shared table */
  TN_TYPE_SHARE = 6,   /* a cell shown as tunnel.Share */
  TN_TYPE_ATOMIC = 7,  /* a cell shown as tunnel.Atomic */
  TN_TYPE_PLURAL = 8,  /* a deque shown as tunnel.Plural */
  TN_TYPE_PQUEUE = 9,  /* tunnel.PriorityQueue */
  TN_TYPE_BARRIER = 10, /* tunnel.Barrier */
  TN_TYPE_SEMAPHORE = 11, /* tunnel.Semaphore */
  TN_TYPE_ARRAY = 12   /* tunnel.Array (and its views) */
} tn_type_t;

#define TN_OBJECT(p) ((tn_object_t *)(p))

/* Add a reference to `o`; returns `o`. Any thread, any time it holds one. */
tn_object_t *tn_object_retain(tn_object_t *o);

/* Drop a reference; the last one frees the object. NULL is ignored. */
void tn_object_release(tn_object_t *o);

/* The object's type. */
tn_type_t tn_object_type(const tn_object_t *o);

/* 1 for an object that lives on a server (a cluster object), else 0. */
int tn_object_is_remote(const tn_object_t *o);

/*
** Free the in-process structures that only reference cycles keep alive
** (a deque holding a blob that refers to the deque itself; two maps
** holding each other; any cycle through deques, maps and cells). Counting
** frees everything else; a program that makes cycles calls this now and
** then. An object is freed only when every reference to it comes from the
** garbage itself: one that a thread, a Lua box or a blob outside the cycle
** holds is never touched, nor is anything it reaches. Safe from any thread
** while others work; one collection runs at a time. It looks at every
** live structure, under that structure's own mutexes for a moment (time
** proportional to the objects, blobs and references there are; making or
** freeing a structure waits meanwhile), then empties the garbage and
** releases it. `*freed` (if not NULL) receives the number of objects
** freed (counters, printers and remote objects freed along with them are
** not counted). TN_OK; TN_EAGAIN when objects stayed locked or references
** moved during each of its attempts (nothing freed: call again); TN_ENOMEM.
** It takes no callback lock: a callback may call it.
*/
int tn_collect(size_t *freed);

/*
** The callback lock of an object: a reader-writer lock that user-level
** read/write callbacks take (the Lua `read`/`write` methods). Many readers
** or one writer; a waiting writer holds off new readers.
**
** It is also a gate on the structure's operations (deque, map, counter):
** while a writer holds it, every operation of another thread on the
** structure waits (TN_TRY: TN_EAGAIN, a timeout: TN_ETIMEDOUT); while
** readers hold it, operations that modify the structure wait and the others
** go ahead. So a write callback is a true read-modify-write. The holding
** thread's own operations pass: a writer's all, a reader's reads; a
** reader's modification returns TN_EDEADLK instead of waiting for itself.
**
** Not recursive: locking an object whose lock the calling thread holds
** already returns TN_EDEADLK at once (it would wait forever). Lock calls
** return TN_OK, TN_ETIMEDOUT, TN_EAGAIN or TN_EDEADLK (and TN_ENOMEM past
** 64 locks held by one thread at once). On a cluster object the lock is
** a leased lock on the server that orders callbacks (and Counter's set)
** among all processes; the server's operations are not gated by it.
*/
int tn_object_read_lock(tn_object_t *o, double timeout);
void tn_object_read_unlock(tn_object_t *o);
int tn_object_write_lock(tn_object_t *o, double timeout);
void tn_object_write_unlock(tn_object_t *o);

/* What the calling thread holds of `o`'s callback lock: 0 nothing,
** 1 a read lock, 2 the write lock. */
int tn_object_lock_held(const tn_object_t *o);

/* ---------------------------------------------------------------------- */
/* Blobs                                                                  */
/* ---------------------------------------------------------------------- */

typedef struct tn_blob tn_blob_t;

/*
** A new blob holding a copy of `len` bytes of `data` and a reference to
** each of the `nrefs` objects in `refs` (retained here). Its reference
** count starts at 1. NULL when out of memory (nothing retained).
*/
tn_blob_t *tn_blob_new(const void *data, size_t len, tn_object_t *const *refs,
                       size_t nrefs);

/* Add a reference to `b` (NULL allowed); returns `b`. */
tn_blob_t *tn_blob_retain(tn_blob_t *b);

/* Drop a reference; the last one releases the objects and frees. NULL ok. */
void tn_blob_release(tn_blob_t *b);

const void *tn_blob_data(const tn_blob_t *b);
size_t tn_blob_size(const tn_blob_t *b);
size_t tn_blob_nrefs(const tn_blob_t *b);
tn_object_t *tn_blob_ref(const tn_blob_t *b, size_t i); /* borrowed */

/* ---------------------------------------------------------------------- */
/* Deque: array, queue and stack (behind tunnel.Vector)                   */
/* ---------------------------------------------------------------------- */

typedef struct tn_deque tn_deque_t;

#define TN_UNBOUNDED SIZE_MAX
#define TN_END SIZE_MAX /* tn_deque_insert: at the end */

/*
** A new, empty deque. Pushes wait while size >= size_hint (>= 1, or
** TN_UNBOUNDED). Returns TN_OK, TN_EINVAL or TN_ENOMEM.
*/
int tn_deque_new(size_t size_hint, tn_deque_t **out);

/* The same, for a deque the binding shows as another class: `type` is
** TN_TYPE_DEQUE or TN_TYPE_PLURAL (else TN_EINVAL). */
int tn_deque_new_as(tn_type_t type, size_t size_hint, tn_deque_t **out);

/*
** Add `b` at the back / front, waiting while the deque is full. On TN_OK
** the deque owns the caller's reference to `b`; otherwise the caller keeps
** it. TN_ECLOSED once the deque is closed (also for a waiting push).
*/
int tn_deque_push_back(tn_deque_t *d, tn_blob_t *b, double timeout);
int tn_deque_push_front(tn_deque_t *d, tn_blob_t *b, double timeout);

/*
** Take the front / back value, waiting while the deque is empty. On TN_OK
** `*out` receives the deque's reference. A closed deque still yields its
** remaining values, then TN_ECLOSED at once.
*/
int tn_deque_pop_front(tn_deque_t *d, tn_blob_t **out, double timeout);
int tn_deque_pop_back(tn_deque_t *d, tn_blob_t **out, double timeout);

/*
** Array operations; indexes are 0-based. None waits for room or items: the
** timeout only bounds the wait for the lock (TN_TRY: do not wait for it).
** insert: 0 <= index <= size, else TN_ERANGE; TN_END appends whatever the
**         size is then; TN_ECLOSED when closed.
** remove: index < size, else TN_ERANGE; `*out` receives the value.
** get:    index < size, else TN_ERANGE; `*out` receives a new reference.
** set:    stores `b` (owned on TN_OK); grows the deque with NULLs when
**         index >= size (TN_ECLOSED when that is needed on a closed deque);
**         `*old` (if not NULL) receives the previous value, else it is
**         released.
*/
int tn_deque_insert(tn_deque_t *d, size_t index, tn_blob_t *b, double timeout);
int tn_deque_remove(tn_deque_t *d, size_t index, tn_blob_t **out,
                    double timeout);
int tn_deque_get(tn_deque_t *d, size_t index, tn_blob_t **out, double timeout);
int tn_deque_set(tn_deque_t *d, size_t index, tn_blob_t *b, tn_blob_t **old,
                 double timeout);

/* The number of values, read without the lock (never waits). */
size_t tn_deque_size(tn_deque_t *d);
size_t tn_deque_size_hint(const tn_deque_t *d);

/* Close: pushes and inserts fail with TN_ECLOSED from now on, pops drain
** what is left, and every waiter wakes. Idempotent. It waits while another
** thread's callback holds the deque: tn_deque_close_timed returns TN_OK,
** TN_EAGAIN (TN_TRY), TN_ETIMEDOUT or TN_EDEADLK (from the deque's own
** read callback); tn_deque_close waits as long as it takes and keeps a
** failure for tn_error_take(). */
int tn_deque_close_timed(tn_deque_t *d, double timeout);
void tn_deque_close(tn_deque_t *d);
int tn_deque_is_closed(tn_deque_t *d);

/*
** A snapshot: `*items` receives a malloc'd array of `*n` new references
** (free with tn_blob_array_free) and `*version` the deque's version, which
** changes with every modification.
*/
int tn_deque_snapshot(tn_deque_t *d, tn_blob_t ***items, size_t *n,
                      uint64_t *version, double timeout);

/*
** Replace the whole content with `items` if the deque has not changed since
** `version` was read; otherwise TN_ECONFLICT. On TN_OK the deque owns the
** references in `items` (the array itself stays the caller's).
*/
int tn_deque_replace(tn_deque_t *d, tn_blob_t **items, size_t n,
                     uint64_t version, double timeout);

/* Release each blob of a snapshot array and free the array. */
void tn_blob_array_free(tn_blob_t **items, size_t n);

/*
** Batches: one lock round trip in process, one script on a server.
** push_many adds the `n` blobs of `items` at the back, in order, as one
** operation: it waits until all of them fit (size + n <= size_hint), and a
** batch larger than the size hint until the deque is empty (that batch is
** the only push that takes the deque past its hint). All or nothing: on
** TN_OK the deque owns every reference (the array stays the caller's),
** on any failure none was pushed. n = 0 is TN_OK at once (TN_ECLOSED on a
** closed deque).
** pop_many takes up to `max` (>= 1, else TN_EINVAL) values from the
** front, waiting for at least one: `*items` receives a malloc'd array of
** `*n` >= 1 references (free with tn_blob_array_free). A closed deque
** gives what is left, then TN_ECLOSED.
*/
int tn_deque_push_many(tn_deque_t *d, tn_blob_t *const *items, size_t n,
                       double timeout);
int tn_deque_pop_many(tn_deque_t *d, size_t max, tn_blob_t ***items,
                      size_t *n, double timeout);

/*
** Pop the front value of the first of the `n` deques `ds` that has one,
** waiting on all of them at once. Fair: the deque tried first rotates from
** call to call, so a busy deque does not starve the others. A deque that
** is closed and drained is skipped; when all are, TN_ECLOSED. On TN_OK
** `*index` is the deque's position in `ds` and `*out` its value.
** The deques are all in-process, or all of one cluster (one BLPOP over
** their wake-up lists): anything else is TN_EINVAL, as is n = 0.
*/
int tn_deque_select(tn_deque_t *const *ds, size_t n, size_t *index,
                    tn_blob_t **out, double timeout);

/* ---------------------------------------------------------------------- */
/* Priority queue (behind tunnel.PriorityQueue)                           */
/* ---------------------------------------------------------------------- */

typedef struct tn_pqueue tn_pqueue_t;

/*
** A new, empty priority queue: pops take the value of the lowest priority
** first, and among equal priorities the one pushed first. Pushes wait while
** size >= size_hint (>= 1, or TN_UNBOUNDED). TN_OK, TN_EINVAL, TN_ENOMEM.
*/
int tn_pqueue_new(size_t size_hint, tn_pqueue_t **out);

/*
** Add `b` with `priority` (any double but NaN: TN_EINVAL), waiting while
** the queue is full. On TN_OK the queue owns the caller's reference;
** otherwise the caller keeps it. TN_ECLOSED once the queue is closed.
** (A cluster queue orders by the same double: Redis sorted-set scores.)
*/
int tn_pqueue_push(tn_pqueue_t *q, double priority, tn_blob_t *b,
                   double timeout);

/*
** Take the value of the lowest priority (the first pushed among equals),
** waiting while the queue is empty: `*out` receives the queue's reference
** and `*priority` (if not NULL) its priority. A closed queue still yields
** its values, then TN_ECLOSED at once.
*/
int tn_pqueue_pop(tn_pqueue_t *q, tn_blob_t **out, double *priority,
                  double timeout);

/*
** Put back a value the caller just popped and cannot use (a receiver that
** cannot decode it): it goes ahead of every value of equal priority, where
** it was, past the size hint and the close. TN_OK (the queue owns `b`),
** TN_ENOMEM or a remote failure (the caller keeps it).
*/
int tn_pqueue_unpop(tn_pqueue_t *q, double priority, tn_blob_t *b);

/* The number of values, read without the lock (never waits). */
size_t tn_pqueue_size(tn_pqueue_t *q);
size_t tn_pqueue_size_hint(const tn_pqueue_t *q);

/* Close: pushes fail with TN_ECLOSED from now on, pops drain what is left,
** every waiter wakes. Idempotent. TN_OK or a remote failure. */
int tn_pqueue_close(tn_pqueue_t *q);
/* 1 once closed (0 and a failure kept for tn_error_take on a remote one). */
int tn_pqueue_is_closed(tn_pqueue_t *q);

/* ---------------------------------------------------------------------- */
/* Counter: an atomic 64-bit integer                                      */
/* ---------------------------------------------------------------------- */

typedef struct tn_counter tn_counter_t;

/*
** In process a counter holds a 63-bit signed integer (TN_COUNTER_MIN ..
** TN_COUNTER_MAX; arithmetic wraps within that range): the word's last bit
** is the gate of the callback lock, so that an add is one compare-and-swap
** that also sees a write callback in progress. A cluster counter holds
** Redis's 64-bit range. A value out of range: TN_ERANGE.
*/
#define TN_COUNTER_MAX (INT64_MAX / 2)
#define TN_COUNTER_MIN (INT64_MIN / 2)
int tn_counter_new(int64_t value, tn_counter_t **out);

/*
** Add `delta` (wrapping); `*result` (if not NULL) receives the new value.
** Get the value; set it (`*old` receives the previous one). These wait
** while another thread's callback holds the counter (see the callback
** lock), up to `timeout`: TN_OK, TN_EAGAIN, TN_ETIMEDOUT, TN_EDEADLK,
** TN_ERANGE (set), or a remote failure.
*/
int tn_counter_add_timed(tn_counter_t *c, int64_t delta, double timeout,
                         int64_t *result);
int tn_counter_get_timed(tn_counter_t *c, double timeout, int64_t *value);
int tn_counter_set_timed(tn_counter_t *c, int64_t value, double timeout,
                         int64_t *old);

/* The same with TN_FOREVER, returning the value (new, current, old); a
** failure returns 0 and is kept for tn_error_take(). */
int64_t tn_counter_add(tn_counter_t *c, int64_t delta);
int64_t tn_counter_get(tn_counter_t *c);
int64_t tn_counter_set(tn_counter_t *c, int64_t value);

/*
** Wait until the counter reaches `target`: the direction is fixed by the
** value at the call (below the target: until value >= target; above it:
** until value <= target; equal: at once). `*value` (if not NULL) receives
** the value that reached it on TN_OK, the value last seen otherwise.
** TN_OK, TN_ETIMEDOUT, TN_EAGAIN (TN_TRY: not reached yet), TN_ECANCELED,
** TN_EINTR, or a remote failure. In process no thread polls: an add or set
** wakes the waiters whose target it reaches (an add pays one load more
** than before when nobody waits; while someone waits, the adds that reach
** a target take the counter's wait mutex).
*/
int tn_counter_wait(tn_counter_t *c, int64_t target, double timeout,
                    int64_t *value);

/* ---------------------------------------------------------------------- */
/* Barrier: lock-step rounds of `parties` threads (behind tunnel.Barrier) */
/* ---------------------------------------------------------------------- */

typedef struct tn_barrier tn_barrier_t;

/* A new barrier for `parties` (>= 1) threads. TN_OK, TN_EINVAL, TN_ENOMEM. */
int tn_barrier_new(int parties, tn_barrier_t **out);

/*
** Arrive and wait until `parties` threads have arrived in this round; then
** all go on and the next round starts (cyclic). On TN_OK `*index` (if not
** NULL) receives the arrival index in the round, 1 .. parties (the last
** to arrive gets `parties`).
** A waiter whose timeout runs out breaks the round: it gets TN_ETIMEDOUT,
** every other waiter of the round TN_EBROKEN, and so does every later
** arrival until tn_barrier_reset (as Java's CyclicBarrier). A cancelled
** or interrupted waiter (TN_ECANCELED, TN_EINTR) leaves the round as if it
** had not arrived. TN_TRY: TN_EAGAIN if the barrier's mutex is busy, else
** as a timeout of 0 (arrive; break the round unless it completes it).
*/
int tn_barrier_wait(tn_barrier_t *b, double timeout, int *index);

/* Break the current round (its waiters get TN_EBROKEN) and start a new,
** unbroken one. TN_OK or a remote failure. */
int tn_barrier_reset(tn_barrier_t *b);

/* The parties, how many wait in the current round, and whether it is
** broken (each pointer may be NULL). TN_OK or a remote failure. */
int tn_barrier_state(tn_barrier_t *b, int *parties, int *waiting,
                     int *broken);

/* ---------------------------------------------------------------------- */
/* Semaphore: a bounded number of permits (behind tunnel.Semaphore)       */
/* ---------------------------------------------------------------------- */

typedef struct tn_semaphore tn_semaphore_t;

/* A new semaphore with `permits` (>= 1) permits, all available. TN_OK,
** TN_EINVAL, TN_ENOMEM. */
int tn_semaphore_new(int64_t permits, tn_semaphore_t **out);

/*
** Take `n` permits (1 <= n <= the semaphore's permits, else TN_EINVAL),
** all at once, waiting while fewer are available. Not fair: a waiter for
** many permits may be overtaken by takers of few. TN_OK, TN_ETIMEDOUT,
** TN_EAGAIN (TN_TRY), TN_ECANCELED, TN_EINTR, or a remote failure; nothing
** is taken unless TN_OK.
** A cluster semaphore's permits are leases of the process that took them
** (renewed while it lives): a process that dies gives them back within the
** lease.
*/
int tn_semaphore_acquire(tn_semaphore_t *s, int64_t n, double timeout);

/*
** Give back `n` (>= 1, else TN_EINVAL) permits. TN_ERANGE (nothing given
** back) when fewer than `n` are taken; on a cluster semaphore, fewer than
** `n` taken by this process. A cluster release whose lease ran out (the
** holder stalled longer than the lease) gives back what was still held
** and returns TN_EIO: the server had given the rest back already.
*/
int tn_semaphore_release(tn_semaphore_t *s, int64_t n);

/* The permits available now, and (if not NULL) the semaphore's total.
** TN_OK or a remote failure. */
int tn_semaphore_available(tn_semaphore_t *s, int64_t *available,
                           int64_t *permits);

/* ---------------------------------------------------------------------- */
/* Map: byte-string keys to blobs (behind tunnel.Hash and shared tables)  */
/* ---------------------------------------------------------------------- */

typedef struct tn_map tn_map_t;

/* A new, empty map; `type` is TN_TYPE_HASH or TN_TYPE_TABLE (else
** TN_EINVAL). */
int tn_map_new(tn_type_t type, tn_map_t **out);

/*
** The value under the `len` bytes of `key`: `*out` receives a new
** reference, or NULL when the key is absent (TN_OK either way). The
** timeout only bounds the wait for the lock (TN_TRY: do not wait).
*/
int tn_map_get(tn_map_t *m, const void *key, size_t len, tn_blob_t **out,
               double timeout);

/*
** Reading without writing anything shared (tn_map_peek, tn_cell_peek), so
** that readers on several cores scale: a reference count or a lock is a
** cache line they would pass back and forth. A value that fits (its bytes
** in `cap`, its references in `ocap`) is copied: its bytes into `buf`, the
** addresses of the objects it refers to into `objs`, and no reference is
** taken. Those addresses are NOT references: the objects may be gone by
** the time the call returns; compare them with objects the caller holds,
** never use them otherwise. A value that does not fit gives a new
** reference in `blob` if `take` is set (else only its size).
*/
typedef struct tn_peek {
  void *buf;          /* in: room for a small value's bytes */
  size_t cap;         /* in */
  tn_object_t **objs; /* in: room for its objects' addresses */
  size_t ocap;        /* in */
  int take;           /* in: a reference to a value that does not fit */
  int found;          /* out: 0 for an absent key (or a nil cell) */
  size_t size;        /* out: the value's size in bytes */
  size_t nobjs;       /* out: addresses written to objs */
  tn_blob_t *blob;    /* out: the reference taken, else NULL */
} tn_peek_t;

/* The value under `key`, as tn_map_get, into `*p` (see tn_peek_t). */
int tn_map_peek(tn_map_t *m, const void *key, size_t len, tn_peek_t *p,
                double timeout);

/*
** Store `b` under `key` (owned by the map on TN_OK); a NULL `b` deletes the
** key. `*old` (if not NULL) receives the previous value (NULL if absent),
** else it is released.
*/
int tn_map_set(tn_map_t *m, const void *key, size_t len, tn_blob_t *b,
               tn_blob_t **old, double timeout);

/* The number of keys, read without a lock (never waits). */
size_t tn_map_size(tn_map_t *m);

typedef struct tn_map_entry {
  void *key; /* malloc'd copy */
  size_t len;
  tn_blob_t *value; /* a new reference */
} tn_map_entry_t;

/* A consistent snapshot of every entry, in no particular order; free it
** with tn_map_entries_free. */
int tn_map_snapshot(tn_map_t *m, tn_map_entry_t **entries, size_t *n,
                    double timeout);
void tn_map_entries_free(tn_map_entry_t *entries, size_t n);

/* ---------------------------------------------------------------------- */
/* Cell: one value for an object's whole life (Share, Atomic)             */
/* ---------------------------------------------------------------------- */

typedef struct tn_cell tn_cell_t;

/* A cell holding `b` (taken on TN_OK); `type` is TN_TYPE_SHARE or
** TN_TYPE_ATOMIC (else TN_EINVAL). Atomic's reader-writer protocol is the
** object's callback lock (tn_object_read_lock, tn_object_write_lock). */
int tn_cell_new(tn_type_t type, tn_blob_t *b, tn_cell_t **out);

/* The cell's value (borrowed: valid while the cell lives and until its
** next tn_cell_set). In-process cells only (a remote cell: NULL); use
** tn_cell_get where the cell may be remote or may change. */
tn_blob_t *tn_cell_value(const tn_cell_t *c);

/* The cell's value: `*out` receives a new reference (NULL for nil). */
int tn_cell_get(tn_cell_t *c, tn_blob_t **out, double timeout);

/* The cell's value into `*p` (see tn_peek_t; nil: found = 0). */
int tn_cell_peek(tn_cell_t *c, tn_peek_t *p, double timeout);

/*
** Replace the value with `b` (owned by the cell on TN_OK; else the caller
** keeps it). Atomic:write stores its data back with this before it
** unlocks. A remote cell whose write lock this thread holds stores only
** while it still holds the lease (else TN_EIO: the lease expired).
*/
int tn_cell_set(tn_cell_t *c, tn_blob_t *b, double timeout);

/* ---------------------------------------------------------------------- */
/* Printer: whole writes that never interleave                            */
/* ---------------------------------------------------------------------- */

typedef struct tn_printer tn_printer_t;

/* A printer writing to `stream` (NULL: stdout). */
int tn_printer_new(FILE *stream, tn_printer_t **out);

/*
** Hold the printer. Recursive: the holding thread may lock again (and its
** writes go through); each lock needs its unlock.
*/
int tn_printer_lock(tn_printer_t *p, double timeout);
void tn_printer_unlock(tn_printer_t *p);

/* Write `len` bytes whole and flush, under the printer's lock. */
int tn_printer_write(tn_printer_t *p, const void *data, size_t len,
                     double timeout);

/* ---------------------------------------------------------------------- */
/* Array: a typed numeric buffer shared by threads (behind tunnel.Array)  */
/* ---------------------------------------------------------------------- */

/* Element types. The numbers are stored in cluster descriptors: fixed. */
typedef enum tn_dtype {
  TN_DOUBLE = 1,
  TN_FLOAT = 2,
  TN_INT8 = 3,
  TN_INT16 = 4,
  TN_INT32 = 5,
  TN_INT64 = 6,
  TN_UINT8 = 7,
  TN_UINT16 = 8,
  TN_UINT32 = 9,
  TN_UINT64 = 10
} tn_dtype_t;

/* One element's value (or a kernel's scalar): `f` for TN_DOUBLE and
** TN_FLOAT, `i` for the signed integer types, `u` for the unsigned ones. */
typedef union tn_elem {
  double f;
  int64_t i;
  uint64_t u;
} tn_elem_t;

/* The size of one element in bytes; 0 for a number that is no type. */
size_t tn_dtype_size(tn_dtype_t type);
/* "double", "float", "int8" ... "uint64"; NULL for no type. */
const char *tn_dtype_name(tn_dtype_t type);
/* The type called `name`: TN_OK, or TN_EINVAL. */
int tn_dtype_from_name(const char *name, tn_dtype_t *out);

typedef struct tn_array tn_array_t;

/* A base array's memory is aligned to this many bytes. */
#define TN_ARRAY_ALIGN 64

/*
** A new array of `n` elements of `type`, all zero, with one reference.
** TN_EINVAL for an unknown type, TN_ENOMEM (also for an `n` whose bytes
** would not fit a size_t).
*/
int tn_array_new(tn_dtype_t type, size_t n, tn_array_t **out);

/*
** A view: the `n` elements of `a` from index `first` (0-based), sharing
** a's memory (a write through either is seen by both). It keeps the
** memory alive. TN_ERANGE unless first + n <= size; TN_EINVAL for a
** cluster array (fetch it first).
*/
int tn_array_view(tn_array_t *a, size_t first, size_t n, tn_array_t **out);

/* The array whose memory `a` shares (borrowed): `a` itself unless it is a
** view. Its callback lock is the one the Lua read/write callbacks take,
** so that callbacks on a view and on its base exclude each other. */
tn_array_t *tn_array_base(tn_array_t *a);

/* Type and size. In process: never fails. A cluster array: the stored
** ones (asked of the server once, then kept), or a remote failure. */
int tn_array_shape(tn_array_t *a, tn_dtype_t *type, size_t *n);

/* The first element (in-process arrays; NULL for a cluster array). Valid
** while a reference to `a` is held; for C code and LuaJIT's FFI. */
void *tn_array_data(const tn_array_t *a);

/*
** Element `i` (0-based): TN_ERANGE past the end. get reads it, set
** stores `v`: for an integer type TN_EINVAL when `v` is out of its range
** (nothing stored); a double stored into a float array is rounded. These
** are single relaxed atomic loads and stores: nothing locks them, and
** concurrent writers race (Hogwild's choice) without tearing an element.
** atomic_add adds `delta` to element i atomically (integers wrap; floats:
** a compare-and-swap loop), `*old` (if not NULL) gets the value before.
** A cluster array does each on the server, in one script.
*/
int tn_array_get(tn_array_t *a, size_t i, tn_elem_t *out);
int tn_array_set(tn_array_t *a, size_t i, tn_elem_t v);
int tn_array_atomic_add(tn_array_t *a, size_t i, tn_elem_t delta,
                        tn_elem_t *old);

/*
** Kernels, over the whole array (views make slices). Binary ones need
** the same type and size (else TN_EINVAL, nothing changed). Elementwise
** kernels act as if element by element in increasing index order, also
** when `a` and `b` overlap; copy acts as if through a temporary.
** Integer arithmetic wraps modulo 2^bits (scale and the add's factor may
** be any 64-bit integer); a fill value must fit the type (TN_EINVAL).
** Reductions: dot and sum add in 64 bits (double for float types, with 8
** partial sums, combined pairwise: the result does not depend on
** vectorisation); min and max skip NaNs (all NaN: NaN) and give the
** 0-based index of the first extreme (TN_ERANGE for an empty array).
**   fill:  a[i] = x            scale: a[i] *= x
**   copy:  a[i] = b[i]         mul:   a[i] *= b[i]
**   add:   a[i] += s * b[i] (axpy)
** Kernels take no lock: threads may work on one array at once, and races
** between their writes are theirs (see tn_array_get).
** Cluster arrays: copy into one stores (the whole array, atomically on
** the server), add into one adds on the server (one script: concurrent
** adds of several processes all count), and copy or add *from* one
** fetches it first; the other kernels are TN_EINVAL on them.
*/
int tn_array_fill(tn_array_t *a, tn_elem_t x);
int tn_array_copy(tn_array_t *a, tn_array_t *b);
int tn_array_add(tn_array_t *a, tn_array_t *b, tn_elem_t s);
int tn_array_mul(tn_array_t *a, tn_array_t *b);
int tn_array_scale(tn_array_t *a, tn_elem_t x);
int tn_array_dot(tn_array_t *a, tn_array_t *b, tn_elem_t *out);
int tn_array_sum(tn_array_t *a, tn_elem_t *out);
int tn_array_min(tn_array_t *a, tn_elem_t *out, size_t *index);
int tn_array_max(tn_array_t *a, tn_elem_t *out, size_t *index);

/*
** A new in-process array holding a copy of `a` (`*copy`, one reference).
** A cluster array's copy is the server's bytes at one instant, and
** `*version` (if not NULL) its version then; in process the copy is made
** while other threads may write (no snapshot) and the version is 0.
*/
int tn_array_fetch(tn_array_t *a, tn_array_t **copy, uint64_t *version);

/* A cluster array's version: a number that changes with every store,
** add and element write. TN_EINVAL in process (no version is kept). */
int tn_array_version(tn_array_t *a, uint64_t *version);

typedef struct tn_cluster tn_cluster_t;

/*
** The cluster's Array called `name`, with one new reference. Absent, it
** is created with `n` zero elements of `type`. Present with another type
** or size: TN_ECONFLICT (tn_last_error says what it holds). `type` 0:
** whatever is stored (TN_EINVAL when there is none). Other failures as
** for the other cluster structures (below).
*/
int tn_cluster_array(tn_cluster_t *c, const char *name, tn_dtype_t type,
                     size_t n, tn_array_t **out);

/* ---------------------------------------------------------------------- */
/* Block: a group of threads, one job queue each                          */
/* ---------------------------------------------------------------------- */

typedef struct tn_block tn_block_t;

typedef struct tn_block_hooks {
  /*
  ** Called in thread `index` (1..size) before any job; `*ctx` becomes the
  ** context handed to its jobs. Nonzero fails the block's creation.
  */
  int (*thread_start)(void *userdata, int index, void **ctx);
  /* Called in the thread after its last job (only if start succeeded). */
  void (*thread_stop)(void *userdata, int index, void *ctx);
} tn_block_hooks_t;

/* A job: runs in thread `index` with that thread's context. */
typedef void (*tn_job_fn)(void *ctx, int index, void *arg);

/*
** Start `size` threads (>= 1) and wait until each has run its start hook
** (hooks may be NULL). TN_EINVAL, TN_ENOMEM, TN_ETHREAD (after joining
** every created thread), or TN_EINIT at once when a start hook failed: the
** threads that started are stopped and joined; one still in its start hook
** is detached, runs thread_stop (if its start succeeded) when the hook
** returns, and exits, so `userdata` must stay valid until each of the
** `size` threads' thread_start failed or its thread_stop ran. A cancel
** or an interrupt of the calling thread's wait for the start hooks
** (TN_ECANCELED, TN_EINTR) gives up the same way.
*/
int tn_block_new(int size, const tn_block_hooks_t *hooks, void *userdata,
                 tn_block_t **out);

int tn_block_size(const tn_block_t *b);

/*
** Queue fn(ctx, i, arg) on every thread i; returns at once. Each thread runs
** its jobs in order. `release(arg)`, if given, runs once, after the last
** thread has finished with it (also when the run cannot be queued: then
** the error is returned and no thread runs it). TN_ETERMINATED after
** terminate; TN_ENOMEM.
*/
int tn_block_run(tn_block_t *b, tn_job_fn fn, void *arg,
                 void (*release)(void *arg));

/* How many runs tn_block_run has queued (the id of the last one). */
unsigned long tn_block_runs(tn_block_t *b);

/*
** Ask the jobs of run `run` (runs count from 1 in the order tn_block_run
** queued them; 0: every run queued so far) to stop. A running one has its
** thread's cancel token requested: its waits return TN_ECANCELED from then
** on. One that has not started is still called, with the token already
** requested (tn_cancelled() is 1): it should return at once (the Lua
** binding records it as cancelled without running it). Returns how many
** jobs it reached. The block stays usable: later runs are not cancelled.
*/
int tn_block_cancel(tn_block_t *b, unsigned long run);

/*
** Give the block up without waiting for its jobs: like tn_block_free, but
** the threads finish what they are running (and what is queued: cancel
** first for a quick end) by themselves, then stop, and the last one frees
** the block. `b` is invalid afterwards. For a process that must end while
** a job may never return.
*/
void tn_block_abandon(tn_block_t *b);

/*
** For a close that waits for jobs: `*stuck` = 1 when at least one block
** thread of the process runs a job and every one of them sleeps in an
** in-process wait without a deadline. Returns a counter that every
** wake-up of such a sleep moves: stuck twice, with the same counter, a
** while apart, means no job can move again unless a thread that is not a
** block thread acts.
*/
unsigned long tn_jobs_progress(int *stuck);

/* Wait until every queued job has finished. TN_OK or TN_ETIMEDOUT (or
** TN_ECANCELED / TN_EINTR: the calling thread's token, see tn_cancel). */
int tn_block_synchronize(tn_block_t *b, double timeout);

/* Let queued jobs finish, then stop and join the threads. Idempotent. */
void tn_block_terminate(tn_block_t *b);
int tn_block_is_terminated(const tn_block_t *b);

/* Terminate (if needed) and free. NULL is ignored. */
void tn_block_free(tn_block_t *b);

/*
** Block threads are pooled: a thread done with its block (after its stop
** hook) parks, and the next tn_block_new takes it rather than create a
** thread; a few are kept (at least 4, or one per CPU), each for 2 s at
** most, then it exits; process exit joins them; a forked child has none.
** A parked thread starts its next block as a new one would (the block's
** own cancel token, a new thread's signal mask, tn_last_error empty).
*/

/* ---------------------------------------------------------------------- */
/* Cluster: the same structures on a Redis server (src/redis)             */
/* ---------------------------------------------------------------------- */

/*
** A cluster is a Redis server plus a key prefix. The objects it makes are
** normal tn_objects (the same tn_deque_*, tn_map_* ... calls work on them)
** whose state lives on the server, under `prefix .. name`, shared by every
** process that names them. docs/cluster.md describes keys, waiting,
** leases and delivery semantics.
*/
typedef struct tn_cluster tn_cluster_t;

/*
** The cluster for `url` (the forms of tn_url_parse, below), `prefix`
** (NULL: "tunnel:") and `timeout` (seconds for connecting and for each
** command; <= 0 or TN_FOREVER: the default, 5 s). Clusters are interned
** and live until the process exits: the same arguments give the same
** cluster. Connects once to check the URL, password and database:
** TN_EINVAL for a malformed URL, TN_EIO when the server refuses (see
** tn_last_error), TN_ENOMEM.
*/
int tn_cluster_open(const char *url, const char *prefix, double timeout,
                    tn_cluster_t **out);

/* The URL (without user or password), prefix and timeout the cluster was
** opened with. */
const char *tn_cluster_url(const tn_cluster_t *c);
const char *tn_cluster_prefix(const tn_cluster_t *c);
double tn_cluster_timeout(const tn_cluster_t *c);

/*
** A cluster URL taken apart, by the one parser of the library (the
** `tunnel` command uses it too):
**   redis://[[user]:password@]host[:port][/db]   ([address] for IPv6)
**   unix://[[user]:password@]/path/to/redis.sock[?db=N]
** With a user the connection logs in with AUTH user password (a Redis 6+
** ACL user); with a password alone with AUTH password. The userinfo and
** the socket path are percent-decoded (%40 for @, %3A for :).
*/
typedef struct tn_url {
  char *host;     /* TCP host or address; NULL for a Unix socket */
  int port;       /* TCP port (default 6379); 0 for a Unix socket */
  char *path;     /* the socket's path; NULL for TCP */
  char *user;     /* NULL: none */
  char *password; /* NULL: no AUTH */
  int db;         /* the database to SELECT (default 0) */
  char *url;      /* rebuilt without the credentials: what tunnel shows */
} tn_url_t;

/* Parse `url` into `*u`, whose strings are malloc'd (tn_url_free them).
** TN_OK; TN_EINVAL for anything else, with a message (tn_last_error)
** that never quotes the credentials; TN_ENOMEM. On failure `*u` holds
** nothing to free. */
int tn_url_parse(const char *url, tn_url_t *u);
/* Free the strings of a parsed URL and zero it (NULL: nothing). */
void tn_url_free(tn_url_t *u);

/*
** Remove the object called `name`, of any class, from the server: every
** key it has (docs/cluster.md, "Keys"), in one script, so no client sees
** it half removed. `*existed` (may be NULL) is set to what
** tn_cluster_exists would have said just before. Objects of any process
** that name it stay valid: their next operation finds a fresh, empty
** object (a deque open and unbounded, a map empty, a counter 0, a cell
** nil), or, for the classes whose size the creator sets (barrier,
** semaphore, array), TN_EIO until it is made again. A callback lock or
** permits held on it are gone as if their lease had expired; waiters of
** a barrier, semaphore or counter are woken (a round breaks). TN_OK,
** TN_EINVAL (an empty name), TN_EIO, TN_ENOMEM.
*/
int tn_cluster_delete(tn_cluster_t *c, const char *name, int *existed);

/*
** `*exists` = 1 if the server holds anything of the object called `name`
** (its data, a deque's hint or close mark, a callback lock, permits
** held), else 0. Registered waiters and wake-up tokens do not count. An
** object that never held anything (an empty unbounded open deque, an
** empty map, a counter created without a value and never changed) does
** not exist. TN_OK, TN_EINVAL, TN_EIO, TN_ENOMEM.
*/
int tn_cluster_exists(tn_cluster_t *c, const char *name, int *exists);

/*
** The cluster's structure called `name` (created on the server on first
** use), with one new reference. Every call may fail with TN_EIO.
** deque:   `size_hint` is stored by the first creator; later callers get
**          the stored one (TN_UNBOUNDED: none).
** counter: `*init` (if not NULL) is stored only if the counter is absent.
** cell:    TN_TYPE_ATOMIC only; `init` (may be NULL = nil) is stored only
**          if absent (and is the caller's still).
** printer: writes go to `stream` (NULL: stdout) and to a capped stream.
*/
int tn_cluster_deque(tn_cluster_t *c, const char *name, size_t size_hint,
                     tn_deque_t **out);
int tn_cluster_map(tn_cluster_t *c, const char *name, tn_map_t **out);
int tn_cluster_counter(tn_cluster_t *c, const char *name, const int64_t *init,
                       tn_counter_t **out);
int tn_cluster_cell(tn_cluster_t *c, const char *name, tn_blob_t *init,
                    tn_cell_t **out);
int tn_cluster_printer(tn_cluster_t *c, const char *name, FILE *stream,
                       tn_printer_t **out);
/* barrier, semaphore: `parties` (>= 1) / `permits` (>= 1) are stored by
** the first creator; later callers get the stored ones. A cluster
** barrier's waiters are woken by tokens (no polling); its semaphore's
** permits are leases (tn_semaphore_acquire). */
int tn_cluster_barrier(tn_cluster_t *c, const char *name, int parties,
                       tn_barrier_t **out);
int tn_cluster_semaphore(tn_cluster_t *c, const char *name, int64_t permits,
                         tn_semaphore_t **out);
/* pqueue: `size_hint` as for a deque (the first creator's is kept). */
int tn_cluster_pqueue(tn_cluster_t *c, const char *name, size_t size_hint,
                      tn_pqueue_t **out);

/* ---------------------------------------------------------------------- */
/* Distributed blocks: jobs on a cluster, run by workers (src/redis/jobs.c) */
/* ---------------------------------------------------------------------- */

/*
** A cluster block is a block whose `size` slots are served by worker
** processes (`tunnel worker`) on any machine. Each slot has its own queue
** of jobs on the server, run in order by the one worker thread that holds
** the slot's lease at the time; every job ends with exactly one status,
** and nothing is run again automatically (docs/workers.md). Jobs are
** blobs whose references are cluster objects (TN_ELOCAL otherwise); the
** `runtime` a job needs is a string of the caller's (the Lua binding's
** "Lua 5.4, codec 1"): a worker that runs another refuses the job. With a
** secret, jobs and results carry an HMAC-SHA256 that is checked before
** anything is decoded.
*/
typedef struct tn_cblock tn_cblock_t;

typedef struct tn_cblock_options {
  const char *runtime;   /* what the jobs need to run (required) */
  const tn_blob_t *init; /* run once per slot state before its jobs; NULL */
  long keep;             /* runs whose results are kept (0: 100) */
  double ttl;            /* seconds a run's results live after its last
                         ** status (0: 86400) */
  double lease;          /* seconds a worker holds a slot without renewing
                         ** (0: 10): the bound on reporting a lost worker */
  const void *secret;    /* NULL: nothing signed */
  size_t secret_len;     /* >= 16 (TN_EINVAL otherwise) */
} tn_cblock_options_t;

/*
** The block called `name` on `c` (its keys are prefix .. "block:" .. name):
** created with `size` slots (1..4096) and the options if there is none or
** it was terminated, else joined (its size must be `size`: TN_ECONFLICT;
** its init, keep, ttl and lease are the creator's). TN_OK, TN_EINVAL,
** TN_ECONFLICT, TN_ENOMEM or a remote failure.
*/
int tn_cblock_open(tn_cluster_t *c, const char *name, int size,
                   const tn_cblock_options_t *o, tn_cblock_t **out);
int tn_cblock_size(const tn_cblock_t *b);
long tn_cblock_keep(const tn_cblock_t *b);
double tn_cblock_ttl(const tn_cblock_t *b);

/*
** Queue `job` (the caller's still) on every slot; `*id` receives the run's
** number (runs count from 1 over the block's whole life on the server).
** TN_ETERMINATED once the block is terminated, TN_ELOCAL for an
** in-process object in the job, or a remote failure (a failure after the
** script ran is possible: the run may then be queued though reported
** failed; see docs/workers.md).
*/
int tn_cblock_run(tn_cblock_t *b, const tn_blob_t *job, unsigned long *id);

/*
** Wait until every job of runs 1..`run` has a status (a slot runs its jobs
** in order). Waits block on the block's completion stream; each wait also
** reports jobs whose worker was lost. TN_OK, TN_ETIMEDOUT, TN_ECANCELED,
** TN_EINTR, or a remote failure.
*/
int tn_cblock_wait(tn_cblock_t *b, unsigned long run, double timeout);

/* A job's status. */
enum {
  TN_JOB_PENDING = 0, /* none yet */
  TN_JOB_OK,          /* returned: `value` holds what it returned */
  TN_JOB_FAILED,      /* raised: `value` holds the error */
  TN_JOB_LOST,        /* its worker died: `message` says which, when */
  TN_JOB_CANCELLED,   /* dropped before it ran: `message` */
  TN_JOB_REFUSED      /* a worker would not run it (or its result does not
                      ** verify): `message` says why */
};

typedef struct tn_job_status {
  int state;        /* TN_JOB_* */
  tn_blob_t *value; /* OK, FAILED: a new reference (NULL: nil) */
  char *message;    /* LOST, CANCELLED, REFUSED: malloc'd */
} tn_job_status_t;

/*
** The statuses of slots first..first+n-1 (1-based) of run `run` into
** out[0..n-1] (tn_job_status_clear them). `*expired` (may be NULL) is set
** when the server holds nothing of the run any more (its results expired
** or were pushed out by later runs: every state is then PENDING). A
** result that does not verify is TN_JOB_REFUSED. TN_OK, TN_EINVAL,
** TN_EPROTO (a stored result is corrupt), TN_ENOMEM, a remote failure.
*/
int tn_cblock_status(tn_cblock_t *b, unsigned long run, int first, int n,
                     tn_job_status_t *out, int *expired);
void tn_job_status_clear(tn_job_status_t *s, int n);

/*
** Cancel the jobs of run `run` (0: every run queued so far): a queued one
** is dropped with the status TN_JOB_CANCELLED ("cancelled"); a running one
** has its worker thread's cancel token requested (its waits return
** TN_ECANCELED). `*reached` = how many jobs it dropped or asked. TN_OK or
** a remote failure.
*/
int tn_cblock_cancel(tn_cblock_t *b, unsigned long run, int *reached);

/* Mark the block terminated: runs are refused from now on, and workers
** give its slots back (queued jobs still run: wait first). */
int tn_cblock_terminate(tn_cblock_t *b);

/* Whether anyone can run the block's jobs: `*served` is set when a worker
** holds one of its slots or a live worker is registered on the cluster
** (one that takes slots as they queue). TN_OK or a remote failure. */
int tn_cblock_served(tn_cblock_t *b, int *served);

/* Free the handle (nothing changes on the server). NULL is ignored. */
void tn_cblock_free(tn_cblock_t *b);

/* ---- the worker side ---------------------------------------------------- */

/*
** A worker: registered on the server with its host, pid, threads and
** runtime, and kept alive by a heartbeat thread of its own (which never
** runs jobs) that renews the leases of the slots its threads hold, hands
** cancel requests to the threads running the jobs, and reports lost
** workers' jobs. Its threads each claim one slot at a time.
*/
typedef struct tn_worker tn_worker_t;

typedef struct tn_worker_options {
  const char *runtime;       /* what this worker runs (required) */
  int threads;               /* shown in `tunnel status` */
  const char *const *blocks; /* serve only these blocks; NULL: all */
  size_t nblocks;
  const void *secret;        /* NULL: refuse signed jobs */
  size_t secret_len;         /* >= 16 */
} tn_worker_options_t;

int tn_worker_new(tn_cluster_t *c, const tn_worker_options_t *o,
                  tn_worker_t **out);
const char *tn_worker_id(const tn_worker_t *w);

/* From now on claims and takes return TN_ECLOSED (no new slot, no new
** job), at once for threads waiting in them: a stopping worker's threads
** finish the jobs they run and give their slots back. */
void tn_worker_stop(tn_worker_t *w);

/* Stop the heartbeat and unregister. Its slots must be released first
** (or given up with tn_worker_abandon). */
void tn_worker_free(tn_worker_t *w);

/*
** Give up every slot a thread still runs a job on, now: each such job gets
** the status TN_JOB_LOST with a message naming the worker and `why`, and
** its late finish will be fenced; the worker is unregistered. For a
** worker that must exit before its jobs end (then exit: `w` is still in
** use by the threads).
*/
void tn_worker_abandon(tn_worker_t *w, const char *why);

/* One slot held by one thread of a worker. */
typedef struct tn_wslot tn_wslot_t;

/*
** Wait up to `timeout` for a slot with queued jobs and no holder, and take
** its lease. TN_OK, TN_ETIMEDOUT, TN_ECLOSED (tn_worker_stop), TN_ECANCELED
** / TN_EINTR, or a remote failure. A slot whose next job needs this worker's runtime and secret is
** taken first; another only after its job waited a moment (so that the
** job is refused by someone, rather than never run).
*/
int tn_worker_claim(tn_worker_t *w, double timeout, tn_wslot_t **out);

const char *tn_wslot_block(const tn_wslot_t *s); /* the block's name */
int tn_wslot_index(const tn_wslot_t *s);         /* 1..size */
int tn_wslot_size(const tn_wslot_t *s);
const tn_blob_t *tn_wslot_init(const tn_wslot_t *s); /* borrowed; NULL */

/* A job taken from a slot. */
typedef struct tn_wjob {
  unsigned long run;
  tn_blob_t *job; /* the caller's (release it) */
} tn_wjob_t;

/*
** The slot's next job, waiting up to `timeout`: TN_OK; TN_ETIMEDOUT (none
** came: the caller may wait again or give the slot back); TN_ECLOSED when
** the slot is no longer this thread's (its lease was lost, the block was
** terminated, or a job was refused and the slot given back for a worker
** that can run it): free it with tn_wslot_release and claim another;
** TN_ECANCELED / TN_EINTR; or a remote failure. Jobs this worker must
** refuse (a bad or missing signature, another runtime) get their status
** here and are not returned. While a taken job runs, a cancel of it
** requests the calling thread's cancel token.
*/
int tn_wslot_take(tn_wslot_t *s, double timeout, tn_wjob_t *job);

/*
** Store the outcome of `job` (ok: `value` is what it returned; else the
** error): TN_OK; TN_ECLOSED when the lease was lost meanwhile (the result
** is discarded: the job's status was given by whoever took the slot
** over); TN_ELOCAL for an in-process object in `value` (nothing stored:
** call again with another value); a remote failure after retrying. The
** caller's cancel token is cleared.
*/
int tn_wslot_finish(tn_wslot_t *s, const tn_wjob_t *job, int ok,
                    const tn_blob_t *value);

/* Give the slot back (if this thread still holds it) and free `s`. */
void tn_wslot_release(tn_wslot_t *s);

/* ---- status ------------------------------------------------------------- */

/* What `tunnel status` shows, read in one script (which also reports lost
** workers' jobs). Times are seconds ago. */
typedef struct tn_jobs_worker {
  char *id, *host, *runtime, *version, *slots; /* slots: "name:i ..." */
  long pid;
  int threads;
  double beat;  /* since the last heartbeat */
  int alive;    /* its registration has not expired */
} tn_jobs_worker_t;

typedef struct tn_jobs_block {
  char *name;
  int size, terminated;
  unsigned long runs;
  long *queued;        /* per slot */
  unsigned long *running; /* per slot: the run in flight, 0: none */
  double *age;         /* per slot: seconds it has run */
  char **owner;        /* per slot: the holder's worker id, or NULL */
} tn_jobs_block_t;

typedef struct tn_jobs_failure {
  double age;
  char *block, *message;
  unsigned long run;
  int slot;
} tn_jobs_failure_t;

typedef struct tn_jobs_status {
  tn_jobs_worker_t *workers;
  size_t nworkers;
  tn_jobs_block_t *blocks;
  size_t nblocks;
  tn_jobs_failure_t *failures; /* most recent first */
  size_t nfailures;
} tn_jobs_status_t;

int tn_jobs_status(tn_cluster_t *c, tn_jobs_status_t **out);
void tn_jobs_status_free(tn_jobs_status_t *s);

#ifdef __cplusplus
}
#endif

#endif
