/*
** ebr.c - epoch-based reclamation: memory that readers without a lock may
** still be reading is freed only once every such reader has moved on.
**
** The map (map.c) answers gets without its shard mutex, so that readers on
** several cores write nothing they share (a mutex is a written cache line:
** two readers of one shard would pass it back and forth). A reader then
** follows pointers that a writer, holding the mutex, may unlink at the same
** moment; the writer must not free what it unlinked while a reader may
** still hold it. The protocol is Fraser's epochs, as crossbeam-epoch
** implements them:
**
** - a global epoch G, and for each thread that ever read, a record whose
**   `state` is 0 outside a read, and (e << 1) | 1 inside one, where e is
**   the G the reader saw when it entered;
** - enter: e = G; state = (e << 1) | 1 with a full fence (an exchange);
**   leave: state = 0 (release);
** - a writer, after unlinking under its lock, tags what it unlinked with
**   tn_ebr_tag(): a full fence, then G;
** - tn_ebr_advance() moves G to G + 1 when no reader is inside with an
**   epoch other than G (a reader inside with G does not hold it back);
** - memory tagged t may be freed once G >= t + 2 (tn_ebr_expired).
**
** Why t + 2: a reader that can still reach memory X unlinked before the
** writer's fence entered before that fence (fences are totally ordered:
** had it entered after, its loads would see X unlinked). So when the writer
** read G = t, the reader's state was already set, with an epoch <= t. G
** then reaches t + 1 only once that reader has left or re-entered at t, and
** t + 2 only once it has left or re-entered at t + 1, after X was unlinked:
** either way it has let go of X. Advances compare-and-swap G, so G never
** goes back.
**
** Readers never wait for writers and writers never wait for readers: a
** writer frees what has expired and keeps the rest for later (map.c keeps
** it per shard). A reader that stops inside a read (preempted) only delays
** frees. Records are made on a thread's first read (posix_memalign, outside
** tn_malloc's fault injection: a failure only sends that read down the
** locked path), reused after the thread exits, and never freed.
*/
#include <sched.h>
#include <stdalign.h>
#include <stdlib.h>

#include "internal.h"

struct tn_ebr_thread {
  alignas(64) atomic_uint_least64_t state; /* 0, or (epoch << 1) | 1 */
  tn_ebr_thread_t *next; /* the registry: records are never unlinked */
  atomic_bool used;      /* owned by a live thread */
};

/* G: written by advances only, read by every enter, on a line of its own. */
static struct {
  alignas(64) atomic_uint_least64_t epoch;
  char pad[64 - sizeof(atomic_uint_least64_t)];
} global = {2, {0}};
#define global_epoch global.epoch
static _Atomic(tn_ebr_thread_t *) registry;

static _Thread_local tn_ebr_thread_t *self;
#ifdef TN_TSAN
_Thread_local atomic_int tn_fence_word;
#endif
static pthread_key_t exit_key;
static pthread_once_t exit_once = PTHREAD_ONCE_INIT;

/* Thread exit: the record goes back to the registry's free ones. */
static void thread_exit(void *rec) {
  tn_ebr_thread_t *r = rec;
  self = NULL; /* a read in a later destructor registers again */
  atomic_store_explicit(&r->state, 0, memory_order_release);
  atomic_store_explicit(&r->used, false, memory_order_release);
}

static void make_key(void) {
  if (pthread_key_create(&exit_key, thread_exit) != 0) abort();
}

static tn_ebr_thread_t *ebr_register(void) {
  pthread_once(&exit_once, make_key);
  tn_ebr_thread_t *r;
  for (r = atomic_load_explicit(&registry, memory_order_acquire); r != NULL;
       r = r->next) {
    bool idle = false;
    if (!atomic_load_explicit(&r->used, memory_order_relaxed) &&
        atomic_compare_exchange_strong(&r->used, &idle, true))
      break;
  }
  if (r == NULL) {
    void *p = NULL;
    if (posix_memalign(&p, 64, sizeof *r) != 0) return NULL;
    r = p;
    atomic_init(&r->state, 0);
    atomic_init(&r->used, true);
    tn_ebr_thread_t *head = atomic_load(&registry);
    do r->next = head;
    while (!atomic_compare_exchange_weak(&registry, &head, r));
  }
  if (pthread_setspecific(exit_key, r) != 0) {
    atomic_store(&r->used, false);
    return NULL;
  }
  self = r;
  return r;
}

tn_ebr_thread_t *tn_ebr_enter(void) {
  tn_ebr_thread_t *r = self;
  if (__builtin_expect(r == NULL, 0) && (r = ebr_register()) == NULL)
    return NULL;
  uint64_t e = atomic_load_explicit(&global_epoch, memory_order_relaxed);
  /* The exchange is the full fence of the protocol (and a release, so
  ** ThreadSanitizer, which does not model fences, sees an order too). */
  atomic_exchange_explicit(&r->state, (e << 1) | 1, memory_order_seq_cst);
  return r;
}

void tn_ebr_leave(tn_ebr_thread_t *r) {
  atomic_store_explicit(&r->state, 0, memory_order_release);
}

uint64_t tn_ebr_tag(void) {
  TN_FENCE(memory_order_seq_cst);
  return atomic_load_explicit(&global_epoch, memory_order_seq_cst);
}

uint64_t tn_ebr_advance(void) {
  uint64_t g = atomic_load_explicit(&global_epoch, memory_order_seq_cst);
  TN_FENCE(memory_order_seq_cst);
  for (tn_ebr_thread_t *r = atomic_load_explicit(&registry,
                                                 memory_order_acquire);
       r != NULL; r = r->next) {
    uint64_t s = atomic_load_explicit(&r->state, memory_order_seq_cst);
    if ((s & 1) && (s >> 1) != g) return g; /* a reader from before */
  }
  if (atomic_compare_exchange_strong(&global_epoch, &g, g + 1)) return g + 1;
  return g; /* another advance won: g is the newer epoch */
}

bool tn_ebr_expired(uint64_t tag, uint64_t epoch) { return epoch >= tag + 2; }

void tn_ebr_synchronize(uint64_t tag) {
  uint64_t g;
  while (!tn_ebr_expired(tag, g = tn_ebr_advance())) sched_yield();
}
