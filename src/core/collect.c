/*
** collect.c - the cycle collector: tn_collect frees the shared objects that
** only reference cycles keep alive (a Vector holding itself, two Hashes
** holding each other, a shared table cycle). Reference counting frees
** everything else; this is for a long-running program that makes cycles.
**
** What it sees. Every in-process structure that holds blobs (deque, map,
** cell) joins a registry when it is made and leaves it when it is destroyed;
** its type's tn_gc_ops_t (internal.h) can lock it without waiting, list the
** blobs it holds (children) and empty it (clear). Counters, printers and
** remote objects hold no blobs, so no cycle passes through them; they are
** freed by counting once the cycle that held them goes.
**
** The graph: nodes are the registered objects and the blobs they hold;
** edges go from an object to each blob it holds and from a blob to each
** registered object in its reference list. A node's count (refs) minus the
** edges into it is its *external* count: references from outside the
** graph -- Lua boxes, a thread holding a blob it popped, a blob not stored
** anywhere, a block's job. Trial deletion (Bacon and Rajan's synchronous
** cycle collection, over the whole registry as CPython's collector does):
** every node with an external count is a root, everything reachable from a
** root is live, the rest is garbage: nothing outside the graph can reach it.
**
** Concurrency. Other threads run meanwhile, hold references and may be in
** the middle of operations. A collection:
**  1. takes the collector's mutex (one collection at a time), sets
**     tn_gc_running, and holds the registry's mutex to the end (a structure
**     being made or destroyed meanwhile waits for it: no node is freed
**     under us);
**  2. lists the edges: one object at a time, under its structure mutexes
**     (trylock with a bounded spin: a thread that holds one while it waits
**     for the registry must not deadlock with us; if one stays busy the
**     attempt starts over, a few times, then TN_EAGAIN), its blobs and a
**     version of its content; each blob met is pinned (retained) so it stays
**     valid whatever happens to the object. Nothing else is stopped: at
**     most one structure (16 mutexes for a map) is held at a time. An
**     object whose count is 0 is being destroyed (its destroy waits for the
**     registry): not a node, so what it holds counts as held from outside;
**  3. round one: for each node clears its `touched` mark, then reads its
**     count; computes the garbage as above (our pins taken off);
**  4. round two: re-reads the count and then the mark of every garbage
**     node, which must be exactly as in round one and unmarked, and checks
**     under its mutexes that each garbage object's version has not moved;
**     else the attempt frees nothing;
**  5. retains every garbage object, drops the registry, unpins, empties
**     each garbage object (its blobs are released, which drops the cycle's
**     references) and releases it: its count reaches 0.
** Why that is enough. To get a reference to a garbage node a thread must
** hold one to a node that reaches it: every node that reaches a garbage
** node is garbage (an edge from a live node would have made it live; an
** edge added after that node's listing is a reference its count shows and
** no edge explains: a root). So if no garbage node has a reference from
** outside at the moment round one ends, none ever gets one, and nothing
** but its own cycle reaches it. If one has, that reference was taken after
** the node's round-one read (else the read would have counted it), hence
** while tn_gc_running was set: a retain is seq_cst and checks
** tn_gc_running after its add, so it marks the node. Round two reads the
** count, then the mark: either the reference is still there (the count is
** too high) or it was released after the mark was set (the mark is seen).
** A reference that changes hands without a retain (a push or a pop moves
** the caller's to the structure or back) changes the structure's content,
** which for a garbage object its version shows. Either way the collection
** gives up rather than free a node someone holds. The counts that round
** one subtracts are fixed meanwhile: a pinned blob's references never
** change, and a garbage object's blobs are the ones listed (its version).
**
** Costs. A retain checks tn_gc_running (one load and a branch; the add is
** seq_cst, on x86 the same instruction). A map set and a cell set bump a
** version. Making or destroying a structure takes the registry mutex, and
** waits while a collection runs. A collection takes each structure's
** mutexes once or twice, briefly, and time and memory proportional to
** the live structures, the blobs they hold and those blobs' references
** (TN_ENOMEM if its arrays cannot be allocated: nothing is freed then).
*/
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>

#include "internal.h"

atomic_int tn_gc_running;

static pthread_mutex_t registry_mutex = PTHREAD_MUTEX_INITIALIZER;
static tn_object_t *registry;
static size_t registry_count;

static pthread_mutex_t collect_mutex = PTHREAD_MUTEX_INITIALIZER;
static unsigned collect_epoch;

void tn_gc_register(tn_object_t *o, const tn_gc_ops_t *ops) {
  o->gc = ops;
  pthread_mutex_lock(&registry_mutex);
  o->gc_prev = NULL;
  o->gc_next = registry;
  if (registry != NULL) registry->gc_prev = o;
  registry = o;
  registry_count++;
  pthread_mutex_unlock(&registry_mutex);
}

void tn_gc_unregister(tn_object_t *o) {
  pthread_mutex_lock(&registry_mutex);
  if (o->gc_prev != NULL)
    o->gc_prev->gc_next = o->gc_next;
  else
    registry = o->gc_next;
  if (o->gc_next != NULL) o->gc_next->gc_prev = o->gc_prev;
  registry_count--;
  pthread_mutex_unlock(&registry_mutex);
  o->gc = NULL;
}

size_t tn_gc_registered(void) {
  pthread_mutex_lock(&registry_mutex);
  size_t n = registry_count;
  pthread_mutex_unlock(&registry_mutex);
  return n;
}

/* ---- one collection ------------------------------------------------------ */

typedef struct gc_obj {
  tn_object_t *o;
  long refs;        /* round one's count */
  long ext;         /* refs minus the edges into it */
  size_t first, n;  /* its blobs: edges[first .. first + n) */
  uint64_t version; /* its content's, when its blobs were listed */
  bool live;
} gc_obj_t;

typedef struct gc_blob {
  tn_blob_t *b;     /* pinned: one reference of ours while we look */
  long refs;        /* round one's count */
  long ext;
  long holders;     /* edges into it */
  bool live;
} gc_blob_t;

typedef struct gc {
  gc_obj_t *objs;
  size_t nobjs;
  gc_blob_t *blobs;
  size_t nblobs, capblobs;
  size_t *table;    /* open addressing: blob index + 1, 0 empty */
  size_t captable;  /* a power of two, > 2 * nblobs */
  size_t *edges;    /* blob indexes */
  size_t nedges, capedges;
  bool nomem;
  unsigned epoch;
} gc_t;

static size_t hash_ptr(const void *p) {
  uint64_t h = (uint64_t)(uintptr_t)p;
  h ^= h >> 33;
  h *= UINT64_C(0xff51afd7ed558ccd);
  h ^= h >> 33;
  return (size_t)h;
}

static bool grow(void **p, size_t *cap, size_t need, size_t size) {
  if (need <= *cap) return true;
  size_t c = *cap ? *cap : 64;
  while (c < need) c *= 2;
  void *q = tn_realloc(*p, c * size);
  if (q == NULL) return false;
  *p = q;
  *cap = c;
  return true;
}

/* The slot of `b` in the table (its index + 1, or the empty slot). */
static size_t *table_slot(gc_t *g, tn_blob_t *b) {
  size_t mask = g->captable - 1;
  for (size_t i = hash_ptr(b) & mask;; i = (i + 1) & mask)
    if (g->table[i] == 0 || g->blobs[g->table[i] - 1].b == b)
      return &g->table[i];
}

static bool table_grow(gc_t *g) {
  if (g->captable > 2 * (g->nblobs + 1)) return true;
  size_t cap = g->captable ? g->captable * 2 : 256;
  size_t *t = tn_malloc(cap * sizeof *t);
  if (t == NULL) return false;
  for (size_t i = 0; i < cap; i++) t[i] = 0;
  tn_free(g->table);
  g->table = t;
  g->captable = cap;
  for (size_t i = 0; i < g->nblobs; i++) *table_slot(g, g->blobs[i].b) = i + 1;
  return true;
}

/* The registered object `o` is a node of this collection. */
static bool in_graph(const gc_t *g, const tn_object_t *o) {
  return o->gc != NULL && o->gc_epoch == g->epoch &&
         o->gc_index < g->nobjs && g->objs[o->gc_index].o == o;
}

/* children() of an object: one edge to `b`; a blob met for the first time
** gets its node and is pinned (retained), so that it stays valid after the
** object's mutexes are dropped, whatever happens to the object. */
static void visit(tn_blob_t *b, void *arg) {
  gc_t *g = arg;
  if (g->nomem) return;
  if (!table_grow(g) ||
      !grow((void **)&g->edges, &g->capedges, g->nedges + 1, sizeof(size_t))) {
    g->nomem = true;
    return;
  }
  size_t *s = table_slot(g, b);
  if (*s == 0) {
    if (!grow((void **)&g->blobs, &g->capblobs, g->nblobs + 1,
              sizeof(gc_blob_t))) {
      g->nomem = true;
      return;
    }
    g->blobs[g->nblobs++] = (gc_blob_t){tn_blob_retain(b), 0, 0, 0, false};
    *s = g->nblobs;
  }
  g->blobs[*s - 1].holders++;
  g->edges[g->nedges++] = *s - 1;
}

/* Lock without waiting, spinning a little: structure mutexes are held for
** a few instructions at a time. */
static bool spin_trylock(tn_object_t *o) {
  for (int i = 0; i < 2000; i++) {
    if (o->gc->trylock(o)) return true;
    if (i >= 100) sched_yield(); else tn_cpu_relax();
  }
  return false;
}

/* Mark everything reachable from the roots (a work list: no recursion).
** The stack holds object indexes, blob indexes + nobjs. */
static bool mark(gc_t *g) {
  size_t cap = g->nobjs + g->nblobs, top = 0;
  size_t *stack = tn_malloc((cap ? cap : 1) * sizeof *stack);
  if (stack == NULL) return false;
  for (size_t i = 0; i < g->nobjs; i++)
    if (g->objs[i].ext != 0 || g->objs[i].refs == 0) {
      g->objs[i].live = true;
      stack[top++] = i;
    }
  for (size_t i = 0; i < g->nblobs; i++)
    if (g->blobs[i].ext != 0) {
      g->blobs[i].live = true;
      stack[top++] = g->nobjs + i;
    }
  while (top > 0) {
    size_t k = stack[--top];
    if (k < g->nobjs) {
      gc_obj_t *o = &g->objs[k];
      for (size_t e = o->first; e < o->first + o->n; e++) {
        gc_blob_t *b = &g->blobs[g->edges[e]];
        if (!b->live) {
          b->live = true;
          stack[top++] = g->nobjs + g->edges[e];
        }
      }
    } else {
      tn_blob_t *b = g->blobs[k - g->nobjs].b;
      for (size_t i = 0; i < tn_blob_nrefs(b); i++) {
        tn_object_t *r = tn_blob_ref(b, i);
        if (in_graph(g, r) && !g->objs[r->gc_index].live) {
          g->objs[r->gc_index].live = true;
          stack[top++] = r->gc_index;
        }
      }
    }
  }
  tn_free(stack);
  return true;
}

/* Round two: every garbage node is still exactly as counted, unmarked. */
static bool verify(gc_t *g) {
  for (size_t i = 0; i < g->nobjs; i++) {
    gc_obj_t *o = &g->objs[i];
    if (o->live) continue;
    if (atomic_load(&o->o->refs) != o->refs || atomic_load(&o->o->gc_touched))
      return false;
  }
  for (size_t i = 0; i < g->nblobs; i++) {
    gc_blob_t *b = &g->blobs[i];
    if (b->live) continue;
    if (tn_blob_refs_now(b->b) != b->refs || tn_blob_touched(b->b))
      return false;
  }
  return true;
}

#define BUSY 1 /* an object stayed locked, or a reference moved: retry */

/* Release the pins of the last attempt (no mutex of ours held: a release
** may destroy objects, which takes the registry's mutex). */
static void unpin(gc_t *g) {
  for (size_t i = 0; i < g->nblobs; i++) tn_blob_release(g->blobs[i].b);
  g->nblobs = 0;
}

/*
** One attempt. TN_OK with the garbage objects retained in `*dead`, BUSY,
** or TN_ENOMEM; the blobs stay pinned (the caller unpins). Called with the
** collector's mutex, tn_gc_running set.
*/
static int attempt(gc_t *g, tn_object_t ***dead, size_t *ndead) {
  *dead = NULL;
  *ndead = 0;
  /* Held throughout: no registered object is freed (its destroy waits at
  ** the unregister) nor made meanwhile. */
  pthread_mutex_lock(&registry_mutex);
  g->epoch = ++collect_epoch;
  g->nobjs = g->nblobs = g->nedges = 0;
  g->nomem = false;
  g->objs = tn_malloc((registry_count ? registry_count : 1) * sizeof *g->objs);
  if (g->objs == NULL) {
    pthread_mutex_unlock(&registry_mutex);
    return TN_ENOMEM;
  }
  for (size_t i = 0; i < g->captable; i++) g->table[i] = 0;
  int rc = TN_OK;
  /* The edges: each object's blobs and content version, under its
  ** mutexes, one object at a time. A count of 0 is an object being
  ** destroyed (it waits for the registry): not a node, so what it holds
  ** counts as referenced from outside. */
  for (tn_object_t *o = registry; o != NULL && rc == TN_OK; o = o->gc_next) {
    if (atomic_load(&o->refs) == 0) continue;
    if (!spin_trylock(o)) {
      rc = BUSY;
      break;
    }
    gc_obj_t *n = &g->objs[g->nobjs];
    *n = (gc_obj_t){o, 0, 0, g->nedges, 0, 0, false};
    o->gc->children(o, visit, g);
    n->n = g->nedges - n->first;
    n->version = o->gc->version(o);
    o->gc->unlock(o);
    o->gc_epoch = g->epoch;
    o->gc_index = g->nobjs++;
    if (g->nomem) rc = TN_ENOMEM;
  }
  if (rc != TN_OK) goto done;
  /* Round one: each node's mark cleared, then its count read. */
  for (size_t i = 0; i < g->nobjs; i++) {
    tn_object_t *o = g->objs[i].o;
    atomic_store(&o->gc_touched, false);
    g->objs[i].refs = g->objs[i].ext = atomic_load(&o->refs);
  }
  for (size_t i = 0; i < g->nblobs; i++) {
    gc_blob_t *n = &g->blobs[i];
    tn_blob_touch_clear(n->b);
    n->refs = tn_blob_refs_now(n->b);
    n->ext = n->refs - 1 - n->holders; /* 1: our pin */
    for (size_t k = 0; k < tn_blob_nrefs(n->b); k++) {
      tn_object_t *r = tn_blob_ref(n->b, k);
      if (in_graph(g, r)) g->objs[r->gc_index].ext--;
    }
  }
  if (!mark(g)) {
    rc = TN_ENOMEM;
    goto done;
  }
  size_t n = 0;
  for (size_t i = 0; i < g->nobjs; i++) n += !g->objs[i].live;
  if (n == 0) goto done;
  if (!verify(g)) {
    rc = BUSY;
    goto done;
  }
  /* The garbage's content is what it was when its blobs were listed. */
  for (size_t i = 0; i < g->nobjs && rc == TN_OK; i++) {
    gc_obj_t *o = &g->objs[i];
    if (o->live) continue;
    if (!spin_trylock(o->o)) {
      rc = BUSY;
      break;
    }
    if (o->o->gc->version(o->o) != o->version) rc = BUSY;
    o->o->gc->unlock(o->o);
  }
  if (rc != TN_OK) goto done;
  if ((*dead = tn_malloc(n * sizeof **dead)) == NULL) {
    rc = TN_ENOMEM;
    goto done;
  }
  for (size_t i = 0; i < g->nobjs; i++)
    if (!g->objs[i].live) (*dead)[(*ndead)++] = tn_object_retain(g->objs[i].o);
done:
  pthread_mutex_unlock(&registry_mutex);
  tn_free(g->objs);
  g->objs = NULL;
  return rc;
}

int tn_collect(size_t *freed) {
  if (freed != NULL) *freed = 0;
  gc_t g = {0};
  tn_object_t **dead = NULL;
  size_t ndead = 0;
  pthread_mutex_lock(&collect_mutex);
  atomic_store(&tn_gc_running, 1);
  int rc = BUSY;
  for (int tries = 0; tries < 20 && rc == BUSY; tries++) {
    if (tries > 0) tn_sleep(0.001 * tries);
    rc = attempt(&g, &dead, &ndead);
    unpin(&g);
  }
  atomic_store(&tn_gc_running, 0);
  tn_free(g.blobs);
  tn_free(g.table);
  tn_free(g.edges);
  /* Unreachable now: empty each (its blobs go, and with them the cycle's
  ** references), then drop ours: each count reaches 0. */
  for (size_t i = 0; i < ndead; i++) dead[i]->gc->clear(dead[i]);
  for (size_t i = 0; i < ndead; i++) tn_object_release(dead[i]);
  tn_free(dead);
  pthread_mutex_unlock(&collect_mutex);
  if (rc == BUSY) return TN_EAGAIN;
  if (freed != NULL) *freed = ndead;
  return rc;
}
