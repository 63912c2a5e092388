/*
** printer.c - a lock around a stdio stream, so that whole writes from
** several threads never interleave.
**
** The lock is recursive (a thread may hold it while it calls code that
** writes), built from a mutex, a condition variable, the owner and a depth.
** The stream is not owned: freeing the printer neither closes nor flushes
** it beyond what each write already flushed.
**
** Caveat: a failed fwrite/fflush is not reported (there is no error code
** for I/O); the bytes that could be written were.
*/
#include "internal.h"

struct tn_printer {
  tn_object_t object;
  FILE *stream;
  pthread_mutex_t mutex;
  pthread_cond_t released; /* waiters for the lock sleep here */
  pthread_t owner;         /* meaningful while depth > 0 */
  int depth;               /* 0: free; else how many locks the owner holds */
  int waiters;             /* threads asleep on `released` */
};

static void printer_destroy(tn_object_t *o) {
  tn_printer_t *p = (tn_printer_t *)o;
  pthread_cond_destroy(&p->released);
  pthread_mutex_destroy(&p->mutex);
  tn_object_fini(&p->object);
  tn_free(p);
}

/* A printer on `stream` (NULL: stdout), one reference. TN_OK or TN_ENOMEM. */
int tn_printer_new(FILE *stream, tn_printer_t **out) {
  tn_printer_t *p = tn_malloc(sizeof *p);
  if (p == NULL) return TN_ENOMEM;
  tn_object_init(&p->object, TN_TYPE_PRINTER, printer_destroy);
  p->stream = stream;
  tn_mutex_init(&p->mutex);
  tn_cond_init(&p->released);
  p->depth = 0;
  p->waiters = 0;
  *out = p;
  return TN_OK;
}

/*
** Take the printer for the calling thread (again, if it holds it already).
** TN_TRY: TN_EAGAIN when another thread holds it; a timeout that runs out:
** TN_ETIMEDOUT.
*/
int tn_printer_lock(tn_printer_t *p, double timeout) {
  if (TN_REMOTE(p)) return TN_BACKEND(p)->printer_lock(p, timeout);
  int rc = tn_mutex_acquire(&p->mutex, timeout);
  if (rc != TN_OK) return rc;
  pthread_t self = pthread_self();
  if (p->depth > 0 && !pthread_equal(p->owner, self)) {
    if (timeout <= 0) {
      pthread_mutex_unlock(&p->mutex);
      return timeout < 0 ? TN_EAGAIN : TN_ETIMEDOUT;
    }
    tn_deadline_t dl = tn_deadline_in(timeout);
    p->waiters++;
    /* Re-check under the mutex: another waiter may have taken the printer
    ** first, and wake-ups may be spurious. */
    while (p->depth > 0) {
      int w = tn_cond_wait_until(&p->released, &p->mutex, &dl);
      if (w != TN_OK && p->depth > 0) {
        p->waiters--;
        pthread_mutex_unlock(&p->mutex);
        return w;
      }
    }
    p->waiters--;
  }
  p->owner = self;
  p->depth++;
  pthread_mutex_unlock(&p->mutex);
  return TN_OK;
}

/* Drop one level of the calling thread's hold; the last wakes a waiter. */
void tn_printer_unlock(tn_printer_t *p) {
  if (TN_REMOTE(p)) {
    TN_BACKEND(p)->printer_unlock(p);
    return;
  }
  pthread_mutex_lock(&p->mutex);
  if (p->depth > 0 && --p->depth == 0 && p->waiters > 0)
    pthread_cond_signal(&p->released);
  pthread_mutex_unlock(&p->mutex);
}

int tn_printer_write(tn_printer_t *p, const void *data, size_t len,
                     double timeout) {
  if (TN_REMOTE(p)) return TN_BACKEND(p)->printer_write(p, data, len, timeout);
  int rc = tn_printer_lock(p, timeout);
  if (rc != TN_OK) return rc;
  FILE *f = p->stream != NULL ? p->stream : stdout;
  if (len > 0) fwrite(data, 1, len, f);
  fflush(f);
  tn_printer_unlock(p);
  return TN_OK;
}
