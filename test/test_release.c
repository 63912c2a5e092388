/*
** test_release.c - releasing a long chain of objects (each holding the next
** through a blob) does not recurse once per link: the chain goes on a
** thread with a small stack (where the recursive release overflowed after
** a few thousand links), for every kind of object that holds blobs, and
** with counters and printers hanging off the links.
**
** TN_RELEASE_CHAIN sets the links per chain (default 100000, a tenth with
** TN_TEST_SLOW; 1000000 takes ~1 GB for the maps).
*/
#include <stdlib.h>

#include "test.h"

#define SMALL_STACK (256 * 1024)

static size_t chain_length(size_t dflt) {
  const char *e = getenv("TN_RELEASE_CHAIN");
  long n = e != NULL ? atol(e) : 0;
  if (n > 0) return (size_t)n;
  /* Under valgrind (TN_TEST_SLOW): 10^4 links still need far more than
  ** the small stack when the release recurses. */
  return getenv("TN_TEST_SLOW") != NULL ? dflt / 10 : dflt;
}

typedef enum { K_DEQUE, K_PLURAL, K_HASH, K_TABLE, K_SHARE, K_ATOMIC,
               K_MIXED } kind_t;

/* A new object of `kind` holding `b` (taken), or the blob released on
** failure. `mixed` cycles through the kinds by link. */
static tn_object_t *make(kind_t kind, size_t i, tn_blob_t *b) {
  if (kind == K_MIXED) kind = (kind_t)(i % K_MIXED);
  switch (kind) {
  case K_DEQUE:
  case K_PLURAL: {
    tn_deque_t *d;
    if (tn_deque_new_as(kind == K_DEQUE ? TN_TYPE_DEQUE : TN_TYPE_PLURAL,
                        TN_UNBOUNDED, &d) != TN_OK)
      break;
    if (b != NULL && tn_deque_push_back(d, b, TN_FOREVER) != TN_OK) break;
    return TN_OBJECT(d);
  }
  case K_HASH:
  case K_TABLE: {
    tn_map_t *m;
    if (tn_map_new(kind == K_HASH ? TN_TYPE_HASH : TN_TYPE_TABLE, &m) != TN_OK)
      break;
    if (b != NULL && tn_map_set(m, "next", 4, b, NULL, TN_FOREVER) != TN_OK)
      break;
    return TN_OBJECT(m);
  }
  default: {
    tn_cell_t *c;
    if (tn_cell_new(kind == K_SHARE ? TN_TYPE_SHARE : TN_TYPE_ATOMIC, b, &c) !=
        TN_OK)
      break;
    return TN_OBJECT(c);
  }
  }
  abort(); /* out of memory: nothing to test */
}

typedef struct chain {
  kind_t kind;
  size_t n;
  tn_object_t *head;
} chain_t;

/*
** Link i holds a blob referring to link i-1 (and to a counter and a
** printer every 1000 links, which go with it). The head is the last made.
*/
static void build(chain_t *c) {
  tn_object_t *prev = NULL;
  for (size_t i = 0; i < c->n; i++) {
    tn_blob_t *b = NULL;
    if (prev != NULL) {
      tn_object_t *refs[3] = {prev, NULL, NULL};
      size_t nrefs = 1;
      tn_counter_t *k = NULL;
      tn_printer_t *p = NULL;
      if (i % 1000 == 0 && tn_counter_new(1, &k) == TN_OK &&
          tn_printer_new(NULL, &p) == TN_OK) {
        refs[1] = TN_OBJECT(k);
        refs[2] = TN_OBJECT(p);
        nrefs = 3;
      }
      b = tn_blob_new("next", 4, refs, nrefs);
      if (b == NULL) abort();
      tn_object_release(prev); /* the blob holds it now */
      tn_object_release(TN_OBJECT(k));
      tn_object_release(TN_OBJECT(p));
    }
    prev = make(c->kind, i, b);
  }
  c->head = prev;
}

static void *release_head(void *arg) {
  chain_t *c = arg;
  tn_object_release(c->head);
  return NULL;
}

/* Build on this thread, release on one with a small stack. */
static void chain_goes(kind_t kind, size_t n) {
  chain_t c = {kind, n, NULL};
  build(&c);
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, SMALL_STACK);
  pthread_t t;
  CHECK_INT(pthread_create(&t, &attr, release_head, &c), 0);
  pthread_join(t, NULL);
  pthread_attr_destroy(&attr);
}

TEST(release_chain_deque,
     "a chain of deques each holding the next is freed on a small stack") {
  chain_goes(K_DEQUE, chain_length(100000));
}

TEST(release_chain_plural, "the same for Plurals") {
  chain_goes(K_PLURAL, chain_length(100000));
}

TEST(release_chain_hash, "the same for Hashes (maps)") {
  chain_goes(K_HASH, chain_length(100000) / 4);
}

TEST(release_chain_table, "the same for shared tables (maps)") {
  chain_goes(K_TABLE, chain_length(100000) / 4);
}

TEST(release_chain_share, "the same for Shares (cells)") {
  chain_goes(K_SHARE, chain_length(100000));
}

TEST(release_chain_atomic, "the same for Atomics (cells)") {
  chain_goes(K_ATOMIC, chain_length(100000));
}

TEST(release_chain_mixed,
     "a chain through every kind in turn, counters and printers on it") {
  chain_goes(K_MIXED, chain_length(100000));
}

/* A blob holding the chain's head: its release starts the chain too. */
static void *release_blob(void *arg) {
  tn_blob_release(arg);
  return NULL;
}

TEST(release_chain_from_blob,
     "the last blob holding a chain's head frees it on a small stack too") {
  chain_t c = {K_DEQUE, chain_length(100000), NULL};
  build(&c);
  tn_blob_t *b = tn_blob_new("h", 1, &c.head, 1);
  tn_object_release(c.head);
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, SMALL_STACK);
  pthread_t t;
  CHECK_INT(pthread_create(&t, &attr, release_blob, b), 0);
  pthread_join(t, NULL);
  pthread_attr_destroy(&attr);
}
