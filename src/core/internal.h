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

/* Every core allocation goes through these, so tn_fault_alloc can fail one. */
void *tn_malloc(size_t size);
void *tn_realloc(void *p, size_t size);
void tn_free(void *p);

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
** or TN_ETIMEDOUT; either way `m` is held again and the caller must
** re-check its condition.
*/
int tn_cond_wait_until(pthread_cond_t *c, pthread_mutex_t *m,
                       const tn_deadline_t *d);

/* ---- reader-writer lock (for user callbacks) --------------------------- */

typedef struct tn_rwlock {
  pthread_mutex_t mutex;
  pthread_cond_t readers_cv;
  pthread_cond_t writers_cv;
  int readers;         /* readers holding it */
  int writers_waiting; /* writers queued: new readers wait behind them */
  bool writer;         /* a writer holds it */
} tn_rwlock_t;

void tn_rwlock_init(tn_rwlock_t *l);
void tn_rwlock_destroy(tn_rwlock_t *l);
int tn_rwlock_rdlock(tn_rwlock_t *l, double timeout);
void tn_rwlock_rdunlock(tn_rwlock_t *l);
int tn_rwlock_wrlock(tn_rwlock_t *l, double timeout);
void tn_rwlock_wrunlock(tn_rwlock_t *l);

/* ---- shared objects ----------------------------------------------------- */

struct tn_object {
  atomic_long refs;
  tn_type_t type;
  void (*destroy)(tn_object_t *o); /* frees the whole structure */
  tn_rwlock_t callback_lock;
};

/* Initialise the header of a new structure with one reference. */
void tn_object_init(tn_object_t *o, tn_type_t type,
                    void (*destroy)(tn_object_t *o));
/* Tear the header down (the structure's destroy calls this). */
void tn_object_fini(tn_object_t *o);

/* ---- spinning ----------------------------------------------------------- */

/* A CPU hint for busy-wait loops. */
static inline void tn_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

/* True when spinning can help: more than one CPU is online. */
bool tn_spin_worthwhile(void);

#endif
