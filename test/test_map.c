/*
** test_map.c - the sharded map: set/get/delete, growth, binary keys,
** snapshots, the try form, threads on disjoint and shared keys with exact
** results, and allocation failures that leave the map as it was.
*/
#include <stdatomic.h>
#include <stdlib.h>

#include "internal.h"
#include "test.h"

static tn_map_t *new_map(void) {
  tn_map_t *m = NULL;
  if (tn_map_new(TN_TYPE_HASH, &m) != TN_OK) abort();
  return m;
}

static void free_map(tn_map_t *m) { tn_object_release(TN_OBJECT(m)); }

static long refs_of(tn_object_t *o) { return atomic_load(&o->refs); }

/* Store the long `v` under the string key `k`. */
static int set_long(tn_map_t *m, const char *k, long v) {
  tn_blob_t *b = blob_long(v);
  int rc = tn_map_set(m, k, strlen(k), b, NULL, TN_FOREVER);
  if (rc != TN_OK) tn_blob_release(b);
  return rc;
}

/* The long under `k`: -1 when absent, -999999 when the get failed. */
static long get_long(tn_map_t *m, const void *k, size_t len) {
  tn_blob_t *b = NULL;
  if (tn_map_get(m, k, len, &b, TN_FOREVER) != TN_OK) return -999999;
  long v = b != NULL ? long_of(b) : -1;
  tn_blob_release(b);
  return v;
}

static long get_str(tn_map_t *m, const char *k) {
  return get_long(m, k, strlen(k));
}

static int del(tn_map_t *m, const char *k) {
  return tn_map_set(m, k, strlen(k), NULL, NULL, TN_FOREVER);
}

TEST(map_new_validates, "a map is a Hash or a shared table, and starts empty") {
  tn_map_t *m = NULL;
  CHECK_RC(tn_map_new(TN_TYPE_DEQUE, &m), TN_EINVAL);
  CHECK_RC(tn_map_new(TN_TYPE_SHARE, &m), TN_EINVAL);
  CHECK_RC(tn_map_new(TN_TYPE_HASH, &m), TN_OK);
  CHECK_INT(tn_object_type(TN_OBJECT(m)), TN_TYPE_HASH);
  CHECK_INT(tn_map_size(m), 0);
  CHECK_INT(get_str(m, "nothing"), -1);
  free_map(m);
  CHECK_RC(tn_map_new(TN_TYPE_TABLE, &m), TN_OK);
  CHECK_INT(tn_object_type(TN_OBJECT(m)), TN_TYPE_TABLE);
  free_map(m);
}

TEST(map_set_get_delete,
     "set stores, get reads, set overwrites returning the old value, and a "
     "NULL value deletes") {
  tn_map_t *m = new_map();
  CHECK_RC(set_long(m, "a", 1), TN_OK);
  CHECK_RC(set_long(m, "b", 2), TN_OK);
  CHECK_INT(tn_map_size(m), 2);
  CHECK_INT(get_str(m, "a"), 1);
  CHECK_INT(get_str(m, "b"), 2);
  CHECK_INT(get_str(m, "c"), -1);

  tn_blob_t *old = (tn_blob_t *)1; /* must become NULL: absent before */
  CHECK_RC(tn_map_set(m, "c", 1, blob_long(3), &old, TN_FOREVER), TN_OK);
  CHECK(old == NULL);
  CHECK_RC(tn_map_set(m, "a", 1, blob_long(10), &old, TN_FOREVER), TN_OK);
  CHECK(old != NULL && long_of(old) == 1);
  tn_blob_release(old);
  CHECK_INT(tn_map_size(m), 3);
  CHECK_INT(get_str(m, "a"), 10);

  CHECK_RC(tn_map_set(m, "b", 1, NULL, &old, TN_FOREVER), TN_OK);
  CHECK(old != NULL && long_of(old) == 2);
  tn_blob_release(old);
  CHECK_INT(tn_map_size(m), 2);
  CHECK_INT(get_str(m, "b"), -1);
  /* Deleting an absent key is a no-op that reports no old value. */
  old = (tn_blob_t *)1;
  CHECK_RC(tn_map_set(m, "zz", 2, NULL, &old, TN_FOREVER), TN_OK);
  CHECK(old == NULL);
  CHECK_INT(tn_map_size(m), 2);
  /* And a deleted key can come back. */
  CHECK_RC(set_long(m, "b", 20), TN_OK);
  CHECK_INT(get_str(m, "b"), 20);
  CHECK_INT(tn_map_size(m), 3);
  free_map(m);
}

TEST(map_many_keys, "tens of thousands of keys survive growth and deletion") {
  enum { N = 30000 };
  tn_map_t *m = new_map();
  char k[32];
  for (long i = 0; i < N; i++) {
    snprintf(k, sizeof k, "key-%ld", i);
    CHECK_RC(set_long(m, k, i), TN_OK);
  }
  CHECK_INT(tn_map_size(m), N);
  int bad = 0;
  for (long i = 0; i < N; i++) {
    snprintf(k, sizeof k, "key-%ld", i);
    bad += get_str(m, k) != i;
  }
  CHECK_INT(bad, 0);
  for (long i = 0; i < N; i += 2) {
    snprintf(k, sizeof k, "key-%ld", i);
    CHECK_RC(del(m, k), TN_OK);
  }
  CHECK_INT(tn_map_size(m), N / 2);
  bad = 0;
  for (long i = 0; i < N; i++) {
    snprintf(k, sizeof k, "key-%ld", i);
    bad += get_str(m, k) != (i % 2 ? i : -1);
  }
  CHECK_INT(bad, 0);
  free_map(m);
}

TEST(map_binary_keys,
     "keys are byte strings: embedded NULs, prefixes and the empty key are "
     "all distinct") {
  tn_map_t *m = new_map();
  static const struct {
    const char *k;
    size_t len;
  } keys[] = {{"", 0},        {"a", 1},           {"a\0", 2},
              {"a\0b", 3},    {"\0", 1},          {"\0\0", 2},
              {"abcdefgh", 8}, {"abcdefgh\0", 9}, {"abcdefghi", 9}};
  size_t n = sizeof keys / sizeof keys[0];
  for (size_t i = 0; i < n; i++)
    CHECK_RC(tn_map_set(m, keys[i].k, keys[i].len, blob_long((long)i), NULL,
                        TN_FOREVER),
             TN_OK);
  CHECK_INT(tn_map_size(m), n);
  for (size_t i = 0; i < n; i++)
    CHECK_INT(get_long(m, keys[i].k, keys[i].len), (long)i);
  /* The empty key may come with a NULL pointer. */
  CHECK_INT(get_long(m, NULL, 0), 0);
  free_map(m);
}

TEST(map_values_are_references,
     "the map owns one reference per value and drops it on delete and free") {
  tn_counter_t *c;
  tn_counter_new(0, &c);
  tn_object_t *refs[1] = {TN_OBJECT(c)};
  tn_map_t *m = new_map();
  tn_blob_t *b = tn_blob_new("x", 1, refs, 1);
  CHECK_INT(refs_of(TN_OBJECT(c)), 2);
  CHECK_RC(tn_map_set(m, "k", 1, b, NULL, TN_FOREVER), TN_OK);
  CHECK_RC(tn_map_set(m, "k2", 2, tn_blob_retain(b), NULL, TN_FOREVER), TN_OK);
  CHECK_RC(del(m, "k2"), TN_OK); /* one blob reference left, in the map */
  CHECK_INT(refs_of(TN_OBJECT(c)), 2);
  free_map(m);
  CHECK_INT(refs_of(TN_OBJECT(c)), 1);
  tn_object_release(TN_OBJECT(c));
}

static int cmp_entries(const void *a, const void *b) {
  const tn_map_entry_t *x = a, *y = b;
  size_t n = x->len < y->len ? x->len : y->len;
  int c = memcmp(x->key, y->key, n);
  return c != 0 ? c : (x->len > y->len) - (x->len < y->len);
}

TEST(map_snapshot,
     "a snapshot copies every key and retains every value, and outlives "
     "later changes") {
  tn_map_t *m = new_map();
  tn_map_entry_t *e = (tn_map_entry_t *)1;
  size_t n = 99;
  CHECK_RC(tn_map_snapshot(m, &e, &n, TN_FOREVER), TN_OK);
  CHECK(e == NULL);
  CHECK_INT(n, 0);
  tn_map_entries_free(e, n);

  char k[32];
  for (long i = 0; i < 100; i++) {
    snprintf(k, sizeof k, "%03ld", i);
    set_long(m, k, i * 7);
  }
  CHECK_RC(tn_map_set(m, "", 0, blob_long(-7), NULL, TN_FOREVER), TN_OK);
  CHECK_RC(tn_map_snapshot(m, &e, &n, TN_FOREVER), TN_OK);
  CHECK_INT(n, 101);
  /* Change the map: the snapshot must not see it. */
  for (long i = 0; i < 100; i++) {
    snprintf(k, sizeof k, "%03ld", i);
    del(m, k);
  }
  CHECK_INT(tn_map_size(m), 1);
  qsort(e, n, sizeof *e, cmp_entries);
  CHECK_INT(e[0].len, 0);
  CHECK(e[0].key != NULL);
  CHECK_INT(long_of(e[0].value), -7);
  for (long i = 0; i < 100; i++) {
    snprintf(k, sizeof k, "%03ld", i);
    CHECK_INT(e[i + 1].len, 3);
    CHECK(memcmp(e[i + 1].key, k, 3) == 0);
    CHECK_INT(long_of(e[i + 1].value), i * 7);
  }
  tn_map_entries_free(e, n);
  free_map(m);
}

/* A thread that holds a mutex until told to let go. */
TEST(map_try_on_held_shard,
     "with a key's shard held by another thread, TN_TRY sets and snapshots "
     "return TN_EAGAIN and change nothing; gets still answer (they take no "
     "lock), and so does every other shard") {
  tn_map_t *m = new_map();
  set_long(m, "busy", 1);
  /* A key in another shard. */
  pthread_mutex_t *busy = tn_map_shard_mutex(m, "busy", 4);
  char other[16];
  for (int i = 0;; i++) {
    snprintf(other, sizeof other, "other%d", i);
    if (tn_map_shard_mutex(m, other, strlen(other)) != busy) break;
  }
  set_long(m, other, 2);

  test_holder_t h = {busy, 0, 0};
  pthread_t t = test_spawn(test_hold_mutex, &h);
  while (!atomic_load(&h.held)) tn_sleep(0.001);

  tn_blob_t *b = NULL;
  CHECK_RC(tn_map_get(m, "busy", 4, &b, TN_TRY), TN_OK);
  CHECK(b != NULL && long_of(b) == 1);
  tn_blob_release(b);
  tn_blob_t *v = blob_long(5);
  CHECK_RC(tn_map_set(m, "busy", 4, v, NULL, TN_TRY), TN_EAGAIN);
  CHECK_RC(tn_map_set(m, "busy", 4, NULL, NULL, TN_TRY), TN_EAGAIN);
  tn_map_entry_t *e = NULL;
  size_t n = 0;
  CHECK_RC(tn_map_snapshot(m, &e, &n, TN_TRY), TN_EAGAIN);
  CHECK(e == NULL);
  /* The other shard is free. */
  CHECK_RC(tn_map_get(m, other, strlen(other), &b, TN_TRY), TN_OK);
  CHECK(b != NULL && long_of(b) == 2);
  tn_blob_release(b);
  CHECK_RC(tn_map_set(m, other, strlen(other), v, NULL, TN_TRY), TN_OK);

  atomic_store(&h.release, 1);
  test_join(t);
  CHECK_INT(get_str(m, "busy"), 1);
  CHECK_INT(get_str(m, other), 5);
  CHECK_INT(tn_map_size(m), 2);
  free_map(m);
}

enum { MT_THREADS = 4, MT_KEYS = 5000 };

typedef struct mt_arg {
  tn_map_t *m;
  int id;
  atomic_long *absent; /* shared: how many sets / deletes found no old value */
  atomic_long *present;
} mt_arg_t;

/* Disjoint keys: insert t:i for all i, delete the odd ones, overwrite the
** even ones with i * 10 + t. */
static void *disjoint_worker(void *p) {
  mt_arg_t *a = p;
  char k[32];
  for (long i = 0; i < MT_KEYS; i++) {
    snprintf(k, sizeof k, "%d:%ld", a->id, i);
    if (set_long(a->m, k, i) != TN_OK) test_fail(__FILE__, __LINE__, "set");
  }
  for (long i = 0; i < MT_KEYS; i++) {
    snprintf(k, sizeof k, "%d:%ld", a->id, i);
    if (i % 2)
      del(a->m, k);
    else
      set_long(a->m, k, i * 10 + a->id);
  }
  return NULL;
}

TEST(map_threads_disjoint_keys,
     "four threads on disjoint keys leave exactly the expected contents") {
  tn_map_t *m = new_map();
  pthread_t t[MT_THREADS];
  mt_arg_t a[MT_THREADS];
  for (int i = 0; i < MT_THREADS; i++) {
    a[i] = (mt_arg_t){m, i, NULL, NULL};
    t[i] = test_spawn(disjoint_worker, &a[i]);
  }
  for (int i = 0; i < MT_THREADS; i++) test_join(t[i]);
  CHECK_INT(tn_map_size(m), MT_THREADS * MT_KEYS / 2);
  int bad = 0;
  char k[32];
  for (int id = 0; id < MT_THREADS; id++)
    for (long i = 0; i < MT_KEYS; i++) {
      snprintf(k, sizeof k, "%d:%ld", id, i);
      bad += get_str(m, k) != (i % 2 ? -1 : i * 10 + id);
    }
  CHECK_INT(bad, 0);
  free_map(m);
}

/* Shared keys: every thread sets every key (counting the sets that found
** it absent), then every thread deletes every key (counting the deletes
** that found a value). Each key is created once and deleted once. */
static void *overlap_worker(void *p) {
  mt_arg_t *a = p;
  char k[32];
  for (long i = 0; i < MT_KEYS; i++) {
    long j = (i * 7 + a->id * 1237) % MT_KEYS; /* a different order each */
    snprintf(k, sizeof k, "k%ld", j);
    tn_blob_t *old = NULL;
    tn_blob_t *b = blob_long(a->id);
    if (tn_map_set(a->m, k, strlen(k), b, &old, TN_FOREVER) != TN_OK)
      test_fail(__FILE__, __LINE__, "set");
    if (old == NULL) atomic_fetch_add(a->absent, 1);
    tn_blob_release(old);
  }
  return NULL;
}

static void *overlap_deleter(void *p) {
  mt_arg_t *a = p;
  char k[32];
  for (long i = 0; i < MT_KEYS; i++) {
    long j = (i * 3 + a->id * 911) % MT_KEYS;
    snprintf(k, sizeof k, "k%ld", j);
    tn_blob_t *old = NULL;
    tn_map_set(a->m, k, strlen(k), NULL, &old, TN_FOREVER);
    if (old != NULL) atomic_fetch_add(a->present, 1);
    tn_blob_release(old);
  }
  return NULL;
}

TEST(map_threads_shared_keys,
     "four threads on the same keys: each key is created once, holds one "
     "thread's value, and is deleted once") {
  tn_map_t *m = new_map();
  atomic_long absent = 0, present = 0;
  pthread_t t[MT_THREADS];
  mt_arg_t a[MT_THREADS];
  for (int i = 0; i < MT_THREADS; i++) {
    a[i] = (mt_arg_t){m, i, &absent, &present};
    t[i] = test_spawn(overlap_worker, &a[i]);
  }
  for (int i = 0; i < MT_THREADS; i++) test_join(t[i]);
  CHECK_INT(atomic_load(&absent), MT_KEYS);
  CHECK_INT(tn_map_size(m), MT_KEYS);
  int bad = 0;
  char k[32];
  for (long i = 0; i < MT_KEYS; i++) {
    snprintf(k, sizeof k, "k%ld", i);
    long v = get_str(m, k);
    bad += v < 0 || v >= MT_THREADS;
  }
  CHECK_INT(bad, 0);
  for (int i = 0; i < MT_THREADS; i++) t[i] = test_spawn(overlap_deleter, &a[i]);
  for (int i = 0; i < MT_THREADS; i++) test_join(t[i]);
  CHECK_INT(atomic_load(&present), MT_KEYS);
  CHECK_INT(tn_map_size(m), 0);
  free_map(m);
}

/* ---- gets without the lock, beside writers --------------------------------- */

enum { RACE_STABLE = 64, RACE_ROUNDS = 12, RACE_KEYS = 12000 };

typedef struct race_arg {
  _Atomic(tn_map_t *) *map; /* this round's map */
  atomic_int *phase;        /* 2r - 1: round r reads; 2r: it stops; -1 */
  atomic_int *acks;         /* readers done with this round's map */
  long reads, missed, wrong;
  int copy; /* read with tn_map_peek into a buffer, else tn_map_get */
} race_arg_t;

/* The stable keys are always there: a get must never miss one, nor read
** another key's value, whatever the writer does meanwhile. */
static void *race_reader(void *p) {
  race_arg_t *a = p;
  char k[32];
  for (int done = 0;;) {
    int ph = atomic_load(a->phase);
    if (ph < 0) return NULL;
    int rd = (ph + 1) / 2;
    if (rd == done) {
      tn_cpu_relax();
      continue;
    }
    tn_map_t *m = atomic_load(a->map);
    /* At least one pass per round, however late the thread gets to run
    ** (a loaded machine may run the whole round's writes first). */
    do {
      for (long i = 0; i < RACE_STABLE; i++) {
        snprintf(k, sizeof k, "stable%ld", i);
        long got = -1;
        if (a->copy) {
          unsigned char buf[64];
          tn_peek_t pk = {.buf = buf, .cap = sizeof buf, .take = 1};
          if (tn_map_peek(m, k, strlen(k), &pk, TN_FOREVER) != TN_OK)
            test_fail(__FILE__, __LINE__, "tn_map_peek failed");
          if (pk.blob != NULL) { /* blob_long values fit: never retained */
            a->wrong++;
            tn_blob_release(pk.blob);
          } else if (pk.found && pk.size == sizeof got) {
            memcpy(&got, buf, sizeof got);
          }
        } else {
          got = get_long(m, k, strlen(k));
        }
        a->reads++;
        if (got == -1)
          a->missed++;
        else if (got % 1000 != i)
          a->wrong++;
      }
    } while (atomic_load(a->phase) == 2 * rd - 1);
    done = rd;
    atomic_fetch_add(a->acks, 1);
  }
}

TEST(map_reads_beside_writers,
     "gets without the lock, on two threads, never miss a key that stays and "
     "never read a wrong value while a writer grows the map from empty, "
     "deletes keys and overwrites the ones being read") {
  _Atomic(tn_map_t *) map = NULL;
  atomic_int phase = 0, acks = 0;
  race_arg_t r[2] = {{&map, &phase, &acks, 0, 0, 0, 0},
                     {&map, &phase, &acks, 0, 0, 0, 1}};
  pthread_t t[2];
  for (int i = 0; i < 2; i++) t[i] = test_spawn(race_reader, &r[i]);
  char k[32];
  for (int rd = 1; rd <= RACE_ROUNDS; rd++) {
    tn_map_t *m = new_map(); /* a fresh map grows all the way each round */
    for (long i = 0; i < RACE_STABLE; i++) {
      snprintf(k, sizeof k, "stable%ld", i);
      set_long(m, k, i);
    }
    atomic_store(&map, m);
    atomic_store(&acks, 0);
    atomic_store(&phase, 2 * rd - 1);
    for (long i = 0; i < RACE_KEYS; i++) {
      snprintf(k, sizeof k, "r%ld", i);
      set_long(m, k, i);
      if (i % 16 == 0) { /* overwrite what the readers read */
        snprintf(k, sizeof k, "stable%ld", (i / 16) % RACE_STABLE);
        set_long(m, k, rd * 1000 + (i / 16) % RACE_STABLE);
      }
    }
    for (long i = 0; i < RACE_KEYS; i += 2) {
      snprintf(k, sizeof k, "r%ld", i);
      del(m, k);
    }
    CHECK_INT(tn_map_size(m), RACE_STABLE + RACE_KEYS / 2);
    atomic_store(&phase, 2 * rd);
    while (atomic_load(&acks) < 2) tn_cpu_relax();
    free_map(m);
  }
  atomic_store(&phase, -1);
  for (int i = 0; i < 2; i++) test_join(t[i]);
  for (int i = 0; i < 2; i++) {
    CHECK(r[i].reads > 0);
    CHECK_INT(r[i].missed, 0);
    CHECK_INT(r[i].wrong, 0);
  }
}

TEST(map_peek_copies_or_retains,
     "tn_map_peek copies a value that fits, with the addresses of its "
     "objects and no reference, hands out a reference otherwise, and says "
     "not found for an absent key") {
  tn_map_t *m = new_map();
  set_long(m, "n", 42);
  tn_counter_t *c;
  tn_counter_new(0, &c);
  tn_object_t *refs[1] = {TN_OBJECT(c)};
  CHECK_RC(tn_map_set(m, "o", 1, tn_blob_new("x", 1, refs, 1), NULL,
                      TN_FOREVER), TN_OK);
  unsigned char buf[16];
  tn_object_t *objs[2];
  tn_peek_t p = {buf, sizeof buf, objs, 2, 1, 0, 0, 0, NULL};
  CHECK_RC(tn_map_peek(m, "n", 1, &p, TN_FOREVER), TN_OK);
  long v = 0;
  memcpy(&v, buf, sizeof v);
  CHECK(p.found && p.blob == NULL && p.size == sizeof v && v == 42);
  CHECK_INT(p.nobjs, 0);
  p.cap = 4; /* too small */
  CHECK_RC(tn_map_peek(m, "n", 1, &p, TN_FOREVER), TN_OK);
  CHECK(p.found && p.blob != NULL && long_of(p.blob) == 42);
  tn_blob_release(p.blob);
  p.cap = sizeof buf;
  CHECK_RC(tn_map_peek(m, "o", 1, &p, TN_FOREVER), TN_OK);
  CHECK(p.found && p.blob == NULL && p.size == 1 && buf[0] == 'x');
  CHECK(p.nobjs == 1 && objs[0] == TN_OBJECT(c));
  CHECK_INT(refs_of(TN_OBJECT(c)), 2); /* the map's: none taken */
  p.ocap = 0; /* no room for the object: a reference */
  CHECK_RC(tn_map_peek(m, "o", 1, &p, TN_FOREVER), TN_OK);
  CHECK(p.blob != NULL && tn_blob_ref(p.blob, 0) == TN_OBJECT(c));
  tn_blob_release(p.blob);
  tn_peek_t q = {0}; /* whether it is there, nothing else */
  CHECK_RC(tn_map_peek(m, "o", 1, &q, TN_FOREVER), TN_OK);
  CHECK(q.found && q.size == 1 && q.blob == NULL);
  CHECK_RC(tn_map_peek(m, "none", 4, &p, TN_FOREVER), TN_OK);
  CHECK(!p.found && p.blob == NULL);
  free_map(m);
  tn_object_release(TN_OBJECT(c));
}

TEST(map_fault_leaves_map,
     "when memory runs out, new, set of a new key and snapshot fail with "
     "TN_ENOMEM and leave the map as it was; overwrites and deletes need "
     "no memory") {
  tn_map_t *m = NULL;
  tn_fault_alloc(1, 0);
  CHECK_RC(tn_map_new(TN_TYPE_HASH, &m), TN_ENOMEM);
  tn_fault_alloc(0, 0);

  m = new_map();
  char k[32];
  for (long i = 0; i < 40; i++) {
    snprintf(k, sizeof k, "k%ld", i);
    set_long(m, k, i);
  }
  /* Every allocation fails: the node of a new key cannot be made. */
  for (unsigned long n = 1; n <= 3; n++) {
    tn_blob_t *b = blob_long(7); /* made before injection */
    tn_fault_alloc(n, 1);
    int ok = 0, nomem = 0;
    for (long i = 100; i < 140; i++) {
      snprintf(k, sizeof k, "new%ld", i);
      int rc = tn_map_set(m, k, strlen(k), b, NULL, TN_FOREVER);
      if (rc == TN_OK) {
        ok++;
        b = NULL;
        break; /* only the first n - 1 allocations succeed */
      }
      nomem += rc == TN_ENOMEM;
    }
    tn_fault_alloc(0, 0);
    CHECK(ok + nomem > 0);
    if (b != NULL) tn_blob_release(b);
  }
  /* Start again from a known state, then fail everything. */
  for (long i = 100; i < 140; i++) {
    snprintf(k, sizeof k, "new%ld", i);
    del(m, k);
  }
  CHECK_INT(tn_map_size(m), 40);
  tn_blob_t *b = blob_long(1000);
  tn_blob_t *b2 = blob_long(2000);
  tn_fault_alloc(1, 1);
  for (long i = 0; i < 20; i++) {
    snprintf(k, sizeof k, "fresh%ld", i);
    CHECK_RC(tn_map_set(m, k, strlen(k), b, NULL, TN_FOREVER), TN_ENOMEM);
  }
  CHECK_INT(tn_map_size(m), 40);
  /* No allocation needed: overwrite and delete succeed. */
  CHECK_RC(tn_map_set(m, "k1", 2, b2, NULL, TN_FOREVER), TN_OK);
  CHECK_RC(del(m, "k2"), TN_OK);
  /* Snapshots fail at each of their allocations, leaking nothing. */
  tn_map_entry_t *e = NULL;
  size_t n = 0;
  CHECK_RC(tn_map_snapshot(m, &e, &n, TN_FOREVER), TN_ENOMEM);
  for (unsigned long at = 2; at <= 40; at += 7) { /* 1 + 39 allocations */
    tn_fault_alloc(at, 1);
    CHECK_RC(tn_map_snapshot(m, &e, &n, TN_FOREVER), TN_ENOMEM);
  }
  tn_fault_alloc(0, 0);
  tn_blob_release(b);
  CHECK_INT(tn_map_size(m), 39);
  CHECK_INT(get_str(m, "k1"), 2000);
  CHECK_INT(get_str(m, "k2"), -1);
  for (long i = 0; i < 20; i++) {
    snprintf(k, sizeof k, "fresh%ld", i);
    CHECK_INT(get_str(m, k), -1);
  }
  int bad = 0;
  for (long i = 3; i < 40; i++) {
    snprintf(k, sizeof k, "k%ld", i);
    bad += get_str(m, k) != i;
  }
  CHECK_INT(bad, 0);
  CHECK_RC(tn_map_snapshot(m, &e, &n, TN_FOREVER), TN_OK);
  CHECK_INT(n, 39);
  tn_map_entries_free(e, n);
  free_map(m);
}
