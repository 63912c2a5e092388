/*
** test_redis.c - the Redis backend (src/redis) through the public C API:
** cluster objects answer the same tn_deque_*, tn_map_*, tn_counter_*,
** tn_cell_* and lock calls as in-process ones.
**
** Needs a server: TUNNEL_REDIS_URL (scripts/with-redis.sh starts a
** private one). Without it every test is reported skipped (`# SKIP`).
** Each test uses names of its own (pid and a counter), so runs never see
** each other's keys.
*/
#include <hiredis/hiredis.h>
#include <math.h>
#include <stdlib.h>
#include <unistd.h>

#include "test.h"

TEST(redis_url_errors, "a malformed URL or a refused connection is a clear "
                       "error naming the server") {
  tn_cluster_t *c;
  CHECK_RC(tn_cluster_open("http://x", NULL, 1, &c), TN_EINVAL);
  CHECK(strstr(tn_last_error(), "redis://") != NULL);
  CHECK_RC(tn_cluster_open("redis://127.0.0.1:1/0", NULL, 1, &c), TN_EIO);
  CHECK(strstr(tn_last_error(), "127.0.0.1:1") != NULL);
}

TEST(redis_deque_fifo, "a cluster deque is a FIFO queue, a stack and an "
                       "array") {
  tn_cluster_t *c = test_cluster("tunnel-ctest:");
  if (c == NULL) return;
  tn_deque_t *d;
  CHECK_RC(tn_cluster_deque(c, test_fresh("fifo"), TN_UNBOUNDED, &d), TN_OK);
  CHECK(tn_object_is_remote(TN_OBJECT(d)));
  CHECK_INT(tn_object_type(TN_OBJECT(d)), TN_TYPE_DEQUE);
  for (long i = 1; i <= 5; i++)
    CHECK_RC(tn_deque_push_back(d, blob_long(i), TN_FOREVER), TN_OK);
  CHECK_INT(tn_deque_size(d), 5);
  tn_blob_t *b;
  CHECK_RC(tn_deque_pop_front(d, &b, 0), TN_OK);
  CHECK_INT(long_of(b), 1);
  tn_blob_release(b);
  CHECK_RC(tn_deque_pop_back(d, &b, 0), TN_OK);
  CHECK_INT(long_of(b), 5);
  tn_blob_release(b);
  CHECK_RC(tn_deque_get(d, 1, &b, 0), TN_OK);
  CHECK_INT(long_of(b), 3);
  tn_blob_release(b);
  CHECK_RC(tn_deque_get(d, 3, &b, 0), TN_ERANGE);
  CHECK_RC(tn_deque_insert(d, 1, blob_long(10), 0), TN_OK);
  CHECK_RC(tn_deque_remove(d, 2, &b, 0), TN_OK);
  CHECK_INT(long_of(b), 3);
  tn_blob_release(b);
  tn_blob_t **items;
  size_t n;
  uint64_t ver;
  CHECK_RC(tn_deque_snapshot(d, &items, &n, &ver, 0), TN_OK);
  CHECK_INT(n, 3);
  if (n == 3) {
    CHECK_INT(long_of(items[0]), 2);
    CHECK_INT(long_of(items[1]), 10);
    CHECK_INT(long_of(items[2]), 4);
  }
  tn_blob_array_free(items, n);
  CHECK_INT(tn_error_take(), TN_OK);
  tn_object_release(TN_OBJECT(d));
}

TEST(redis_deque_wait, "a pop waits for a push from another thread, a "
                       "timed pop times out, close wakes it") {
  tn_cluster_t *c = test_cluster("tunnel-ctest:");
  if (c == NULL) return;
  tn_deque_t *d;
  CHECK_RC(tn_cluster_deque(c, test_fresh("wait"), TN_UNBOUNDED, &d), TN_OK);
  tn_blob_t *b;
  double t0 = test_now();
  CHECK_RC(tn_deque_pop_front(d, &b, 0.2), TN_ETIMEDOUT);
  CHECK(test_now() - t0 >= 0.19 && test_now() - t0 < 2);
  CHECK_RC(tn_deque_pop_front(d, &b, TN_TRY), TN_EAGAIN);
  tn_deque_close(d);
  CHECK(tn_deque_is_closed(d));
  CHECK_RC(tn_deque_pop_front(d, &b, TN_FOREVER), TN_ECLOSED);
  b = blob_long(1);
  CHECK_RC(tn_deque_push_back(d, b, 0), TN_ECLOSED);
  tn_blob_release(b);
  tn_object_release(TN_OBJECT(d));
}

typedef struct hand {
  tn_deque_t *d;
  long n;
  long long sum;
} hand_t;

static void *consumer(void *arg) {
  hand_t *h = arg;
  tn_blob_t *b;
  while (tn_deque_pop_front(h->d, &b, 10) == TN_OK) {
    h->sum += long_of(b);
    h->n++;
    tn_blob_release(b);
  }
  return NULL;
}

TEST(redis_deque_bounded, "pushes respect the size hint and wait for "
                          "room; every item arrives once") {
  tn_cluster_t *c = test_cluster("tunnel-ctest:");
  if (c == NULL) return;
  tn_deque_t *d;
  CHECK_RC(tn_cluster_deque(c, test_fresh("bounded"), 2, &d), TN_OK);
  CHECK_INT(tn_deque_size_hint(d), 2);
  CHECK_RC(tn_deque_push_back(d, blob_long(0), 0), TN_OK);
  CHECK_RC(tn_deque_push_back(d, blob_long(0), 0), TN_OK);
  tn_blob_t *b = blob_long(0);
  CHECK_RC(tn_deque_push_back(d, b, 0.1), TN_ETIMEDOUT);
  CHECK_RC(tn_deque_push_back(d, b, TN_TRY), TN_EAGAIN);
  tn_blob_release(b);
  hand_t h[2] = {{d, 0, 0}, {d, 0, 0}};
  pthread_t t[2] = {test_spawn(consumer, &h[0]), test_spawn(consumer, &h[1])};
  long long want = 0;
  for (long i = 1; i <= 200; i++) {
    CHECK_RC(tn_deque_push_back(d, blob_long(i), 10), TN_OK);
    want += i;
  }
  tn_deque_close(d);
  test_join(t[0]);
  test_join(t[1]);
  CHECK_INT(h[0].n + h[1].n, 202);
  CHECK_INT(h[0].sum + h[1].sum, want);
  tn_object_release(TN_OBJECT(d));
}

TEST(redis_map_counter, "a cluster map and counter keep values on the "
                        "server") {
  tn_cluster_t *c = test_cluster("tunnel-ctest:");
  if (c == NULL) return;
  tn_map_t *m;
  CHECK_RC(tn_cluster_map(c, test_fresh("map"), &m), TN_OK);
  tn_blob_t *b, *old;
  CHECK_RC(tn_map_set(m, "k\0x", 3, blob_long(7), &old, 0), TN_OK);
  CHECK(old == NULL);
  CHECK_RC(tn_map_get(m, "k\0x", 3, &b, 0), TN_OK);
  CHECK(b != NULL && long_of(b) == 7);
  tn_blob_release(b);
  CHECK_INT(tn_map_size(m), 1);
  CHECK_RC(tn_map_set(m, "k\0x", 3, NULL, &old, 0), TN_OK);
  CHECK(old != NULL && long_of(old) == 7);
  tn_blob_release(old);
  CHECK_INT(tn_map_size(m), 0);
  tn_object_release(TN_OBJECT(m));

  tn_counter_t *k;
  int64_t init = 40;
  const char *name = test_fresh("counter");
  CHECK_RC(tn_cluster_counter(c, name, &init, &k), TN_OK);
  CHECK_INT(tn_counter_add(k, 2), 42);
  tn_counter_t *k2;
  init = 0; /* only sets if absent */
  CHECK_RC(tn_cluster_counter(c, name, &init, &k2), TN_OK);
  CHECK(k2 == k); /* interned: the same object */
  CHECK_INT(tn_counter_get(k2), 42);
  CHECK_INT(tn_counter_set(k, 5), 42);
  CHECK_INT(tn_error_take(), TN_OK);
  tn_object_release(TN_OBJECT(k));
  tn_object_release(TN_OBJECT(k2));
}

TEST(redis_values_refs, "values refer to cluster objects by descriptor; an "
                        "in-process object is refused") {
  tn_cluster_t *c = test_cluster("tunnel-ctest:");
  if (c == NULL) return;
  tn_deque_t *d;
  tn_counter_t *k;
  CHECK_RC(tn_cluster_deque(c, test_fresh("refs"), TN_UNBOUNDED, &d), TN_OK);
  CHECK_RC(tn_cluster_counter(c, test_fresh("refk"), NULL, &k), TN_OK);
  tn_object_t *ref = TN_OBJECT(k);
  tn_blob_t *b = tn_blob_new("x", 1, &ref, 1);
  CHECK_RC(tn_deque_push_back(d, b, 0), TN_OK);
  CHECK_RC(tn_deque_pop_front(d, &b, 0), TN_OK);
  CHECK_INT(tn_blob_nrefs(b), 1);
  CHECK(tn_blob_ref(b, 0) == TN_OBJECT(k));
  tn_blob_release(b);
  tn_counter_t *local;
  CHECK_RC(tn_counter_new(0, &local), TN_OK);
  ref = TN_OBJECT(local);
  b = tn_blob_new("x", 1, &ref, 1);
  CHECK_RC(tn_deque_push_back(d, b, 0), TN_ELOCAL);
  CHECK(strstr(tn_last_error(), "in-process") != NULL);
  tn_blob_release(b);
  tn_object_release(ref);
  tn_object_release(TN_OBJECT(k));
  tn_object_release(TN_OBJECT(d));
}

typedef struct locker {
  tn_cell_t *cell;
  int rounds;
} locker_t;

static void *incrementer(void *arg) {
  locker_t *l = arg;
  for (int i = 0; i < l->rounds; i++) {
    if (tn_object_write_lock(TN_OBJECT(l->cell), 10) != TN_OK) continue;
    tn_blob_t *b;
    if (tn_cell_get(l->cell, &b, 0) == TN_OK) {
      long v = long_of(b) + 1;
      tn_blob_release(b);
      b = blob_long(v);
      if (tn_cell_set(l->cell, b, 0) != TN_OK) tn_blob_release(b);
    }
    tn_object_write_unlock(TN_OBJECT(l->cell));
  }
  return NULL;
}

TEST(redis_cell_lock, "the write lock of a cluster cell loses no update "
                      "between threads") {
  tn_cluster_t *c = test_cluster("tunnel-ctest:");
  if (c == NULL) return;
  tn_blob_t *zero = blob_long(0);
  tn_cell_t *cell;
  CHECK_RC(tn_cluster_cell(c, test_fresh("cell"), zero, &cell), TN_OK);
  tn_blob_release(zero);
  locker_t l = {cell, 50};
  pthread_t t[3] = {test_spawn(incrementer, &l), test_spawn(incrementer, &l),
                    test_spawn(incrementer, &l)};
  for (int i = 0; i < 3; i++) test_join(t[i]);
  tn_blob_t *b;
  CHECK_RC(tn_cell_get(cell, &b, 0), TN_OK);
  CHECK(b != NULL && long_of(b) == 150);
  tn_blob_release(b);
  /* A reader holds off a writer; TN_TRY says so at once. */
  CHECK_RC(tn_object_read_lock(TN_OBJECT(cell), 0), TN_OK);
  CHECK_RC(tn_object_write_lock(TN_OBJECT(cell), TN_TRY), TN_EAGAIN);
  tn_object_read_unlock(TN_OBJECT(cell));
  CHECK_RC(tn_object_write_lock(TN_OBJECT(cell), 0), TN_OK);
  tn_object_write_unlock(TN_OBJECT(cell));
  tn_object_release(TN_OBJECT(cell));
}

/* A raw connection to the test server, for what tunnel would never write. */
static redisContext *raw(void) {
  const char *url = getenv("TUNNEL_REDIS_URL");
  const char *port = strrchr(url, ':');
  redisContext *r = redisConnect("127.0.0.1", port != NULL ? atoi(port + 1)
                                                           : 6379);
  if (r == NULL || r->err) {
    test_fail(__FILE__, __LINE__, "redisConnect failed");
    if (r != NULL) redisFree(r);
    return NULL;
  }
  return r;
}

static void raw_do(redisContext *r, const char *fmt, const char *a,
                   const char *b, const char *c) {
  redisReply *x = redisCommand(r, fmt, a, b, c);
  if (x != NULL) freeReplyObject(x);
}

TEST(redis_corrupt_meta, "a script that finds a corrupt K:meta or a foreign "
                         "item changes nothing (issue 11, 4)") {
  tn_cluster_t *c = test_cluster("tunnel-ctest:");
  if (c == NULL) return;
  redisContext *r = raw();
  if (r == NULL) return;
  char name[128], key[256];
  snprintf(name, sizeof name, "%s", test_fresh("corrupt"));
  snprintf(key, sizeof key, "tunnel-ctest:%s:meta", name);
  tn_deque_t *d;
  CHECK_RC(tn_cluster_deque(c, name, 10, &d), TN_OK);
  for (long i = 1; i <= 3; i++)
    CHECK_RC(tn_deque_push_back(d, blob_long(i), TN_FOREVER), TN_OK);
  raw_do(r, "HSET %s %s %s", key, "v", "garbage");
  tn_blob_t *b = NULL;
  CHECK_RC(tn_deque_pop_front(d, &b, 0), TN_EIO);
  CHECK(strstr(tn_last_error(), "nothing was changed") != NULL);
  b = blob_long(4);
  CHECK_RC(tn_deque_push_back(d, b, 0), TN_EIO);
  tn_blob_release(b);
  CHECK_INT(tn_deque_size(d), 3);
  raw_do(r, "HDEL %s %s%s", key, "v", "");
  snprintf(key, sizeof key, "tunnel-ctest:%s", name);
  raw_do(r, "LPUSH %s %s%s", key, "not-tunnel", "");
  CHECK_RC(tn_deque_pop_front(d, &b, 0), TN_EIO);
  CHECK(strstr(tn_last_error(), "not written by this tunnel") != NULL);
  CHECK_INT(tn_deque_size(d), 4);
  CHECK_RC(tn_deque_pop_back(d, &b, 0), TN_OK);
  CHECK_INT(long_of(b), 3);
  tn_blob_release(b);
  CHECK_INT(tn_error_take(), TN_OK);
  tn_object_release(TN_OBJECT(d));
  redisFree(r);
}

TEST(redis_url_credentials, "the cluster's URL holds no credentials, they "
                            "are percent-decoded, and the timeout is finite "
                            "by default (issue 11, 9 and 12)") {
  tn_cluster_t *c = test_cluster("tunnel-ctest:");
  if (c == NULL) return;
  redisContext *r = raw();
  if (r == NULL) return;
  char user[128];
  snprintf(user, sizeof user, "%s", test_fresh("user"));
  raw_do(r, "ACL SETUSER %s on >p@ss:w%s ~* &* +@all%s", user, "", "");
  const char *url = getenv("TUNNEL_REDIS_URL"); /* redis://host:port/db */
  char secret[512];
  snprintf(secret, sizeof secret, "redis://%s:p%%40ss%%3Aw@%s", user,
           url + strlen("redis://"));
  tn_cluster_t *s;
  CHECK_RC(tn_cluster_open(secret, "tunnel-ctest:", TN_FOREVER, &s), TN_OK);
  CHECK(strstr(tn_cluster_url(s), "ss") == NULL);
  CHECK(strstr(tn_cluster_url(s), user) == NULL);
  CHECK(strcmp(tn_cluster_url(s), url) == 0);
  CHECK(tn_cluster_timeout(s) == 5);
  /* A bad escape is refused; the message does not echo the password. */
  CHECK_RC(tn_cluster_open("redis://u:hunter2%zz@127.0.0.1:1/0", NULL, 1, &s),
           TN_EINVAL);
  CHECK(strstr(tn_last_error(), "hunter2") == NULL);
  CHECK(strstr(tn_last_error(), "percent") != NULL);
  raw_do(r, "ACL DELUSER %s%s%s", user, "", "");
  redisFree(r);
}

/* ---- URLs (no server needed) -------------------------------------------- */

/* Parse `url`: TN_OK expected, with these fields (NULL: absent). */
static void check_url(int line, const char *url, const char *host, int port,
                      const char *path, const char *user,
                      const char *password, int db, const char *shown) {
  tn_url_t u;
  int rc = tn_url_parse(url, &u);
  if (rc != TN_OK) {
    test_fail(__FILE__, line, "tn_url_parse(%s): %s", url, tn_last_error());
    return;
  }
#define SAME(a, b) ((a) == NULL ? (b) == NULL : (b) != NULL && !strcmp(a, b))
  if (!SAME(host, u.host) || port != u.port || !SAME(path, u.path) ||
      !SAME(user, u.user) || !SAME(password, u.password) || db != u.db ||
      !SAME(shown, u.url))
    test_fail(__FILE__, line,
              "tn_url_parse(%s): host %s port %d path %s user %s password "
              "%s db %d url %s",
              url, u.host ? u.host : "-", u.port, u.path ? u.path : "-",
              u.user ? u.user : "-", u.password ? u.password : "-", u.db,
              u.url ? u.url : "-");
#undef SAME
  tn_url_free(&u);
}

TEST(redis_url_parse, "the URL parser reads redis:// and unix:// URLs, "
                      "ACL users and percent-escapes") {
  check_url(__LINE__, "redis://", "127.0.0.1", 6379, NULL, NULL, NULL, 0,
            "redis://127.0.0.1:6379/0");
  check_url(__LINE__, "redis://db.example:6390/3", "db.example", 6390, NULL,
            NULL, NULL, 3, "redis://db.example:6390/3");
  check_url(__LINE__, "redis://h/", "h", 6379, NULL, NULL, NULL, 0,
            "redis://h:6379/0");
  check_url(__LINE__, "redis://:secret@h:1", "h", 1, NULL, NULL, "secret", 0,
            "redis://h:1/0");
  /* As before: no colon, a password. */
  check_url(__LINE__, "redis://secret@h", "h", 6379, NULL, NULL, "secret", 0,
            "redis://h:6379/0");
  check_url(__LINE__, "redis://tunneluser:pw@h:7/2", "h", 7, NULL,
            "tunneluser", "pw", 2, "redis://h:7/2");
  check_url(__LINE__, "redis://u%40x:p%3Aa%2Fs%25s@h", "h", 6379, NULL,
            "u@x", "p:a/s%s", 0, "redis://h:6379/0");
  /* A raw '@' in a password still works (the last '@' ends it). */
  check_url(__LINE__, "redis://:p@ss@h", "h", 6379, NULL, NULL, "p@ss", 0,
            "redis://h:6379/0");
  check_url(__LINE__, "redis://[::1]:6380/1", "::1", 6380, NULL, NULL, NULL,
            1, "redis://[::1]:6380/1");
  check_url(__LINE__, "unix:///run/redis.sock", NULL, 0, "/run/redis.sock",
            NULL, NULL, 0, "unix:///run/redis.sock?db=0");
  check_url(__LINE__, "unix:///run/redis.sock?db=4", NULL, 0,
            "/run/redis.sock", NULL, NULL, 4, "unix:///run/redis.sock?db=4");
  check_url(__LINE__, "unix://:pw@/run/redis.sock?db=1", NULL, 0,
            "/run/redis.sock", NULL, "pw", 1, "unix:///run/redis.sock?db=1");
  check_url(__LINE__, "unix://tunneluser:p%2F@/r/a@b.sock", NULL, 0,
            "/r/a@b.sock", "tunneluser", "p/", 0, "unix:///r/a@b.sock?db=0");
  /* A path with a space or '?': decoded, and escaped again in the URL
  ** shown, so that it parses back to the same path. */
  check_url(__LINE__, "unix:///tmp/my%20dir/r%3F.sock", NULL, 0,
            "/tmp/my dir/r?.sock", NULL, NULL, 0,
            "unix:///tmp/my%20dir/r%3F.sock?db=0");
  check_url(__LINE__, "unix:///tmp/my%20dir/r%3F.sock?db=0", NULL, 0,
            "/tmp/my dir/r?.sock", NULL, NULL, 0,
            "unix:///tmp/my%20dir/r%3F.sock?db=0");
}

TEST(redis_url_invalid, "a URL that is not one of the forms is TN_EINVAL "
                        "with a message that never quotes the password") {
  static const struct {
    const char *url, *says;
  } bad[] = {
      {"http://h", "must start with redis:// or unix://"},
      {"redis:/h", "must start with"},
      {"", "must start with"},
      {"redis://h:0", "not a redis://"},
      {"redis://h:65536", "not a redis://"},
      {"redis://h:port", "not a redis://"},
      {"redis://h:", "not a redis://"},
      {"redis://h/x", "not a redis://"},
      {"redis://h/-1", "not a redis://"},
      {"redis://h/1/2", "not a redis://"},
      {"redis://h/99999999", "not a redis://"},
      {"redis://h?db=1", "not a redis://"},
      {"redis://:hunter2@[::1", "not a redis://"},
      {"redis://:hunter2@[]:1", "not a redis://"},
      {"redis://:hunter2%zz@h", "bad percent-escape in the user or password"},
      {"redis://hunter2%4@h", "bad percent-escape"},
      {"redis://hunter2%00@h", "bad percent-escape"},
      {"unix://", "not a unix://"},
      {"unix://relative.sock", "not a unix://"},
      {"unix:///", "not a unix://"},
      {"unix:///r.sock?db=x", "not a unix://"},
      {"unix:///r.sock?password=hunter2", "not a unix://"},
      {"unix:///r.sock?db=1&x=2", "not a unix://"},
      {"unix://:hunter2@/r%zz.sock", "bad percent-escape in the socket path"},
      {"unix://:hunter2%zz@/r.sock", "bad percent-escape in the user"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    tn_url_t u;
    int rc = tn_url_parse(bad[i].url, &u);
    if (rc != TN_EINVAL) {
      test_fail(__FILE__, __LINE__, "tn_url_parse(%s) returned %d",
                bad[i].url, rc);
      if (rc == TN_OK) tn_url_free(&u);
      continue;
    }
    if (strstr(tn_last_error(), bad[i].says) == NULL)
      test_fail(__FILE__, __LINE__, "tn_url_parse(%s): '%s' does not say '%s'",
                bad[i].url, tn_last_error(), bad[i].says);
    if (strstr(tn_last_error(), "hunter2") != NULL)
      test_fail(__FILE__, __LINE__, "tn_url_parse(%s): '%s' shows the "
                "password", bad[i].url, tn_last_error());
    CHECK(u.host == NULL && u.path == NULL && u.url == NULL);
  }
  /* tn_cluster_open takes the same URLs (and refuses the same). */
  tn_cluster_t *c;
  CHECK_RC(tn_cluster_open("unix:///r.sock?db=x", NULL, 1, &c), TN_EINVAL);
  CHECK_RC(tn_cluster_open("unix:///nonexistent/tunnel.sock", NULL, 1, &c),
           TN_EIO);
  CHECK(strstr(tn_last_error(), "redis /nonexistent/tunnel.sock: PING") !=
        NULL);
}

/* ---- delete, exists, ACL users, Unix sockets (a server) ------------------ */

/* How many of the keys of `name` (every family, see src/redis/admin.c)
** the server holds, read without tunnel. */
static long long raw_keys(redisContext *r, const char *prefix,
                          const char *name) {
  static const char *const sfx[] = {
      "",        ":meta",    ":items", ":space", ":lock:w",
      ":lock:r", ":lock:ww", ":lock:q", ":held", ":leases",
      ":w",      ":wu",      ":wd"};
  long long n = 0;
  for (size_t i = 0; i < sizeof sfx / sizeof sfx[0]; i++) {
    redisReply *x = redisCommand(r, "EXISTS %s%s%s", prefix, name, sfx[i]);
    if (x != NULL && x->type == REDIS_REPLY_INTEGER) n += x->integer;
    if (x != NULL) freeReplyObject(x);
  }
  return n;
}

static int exists(tn_cluster_t *c, const char *name) {
  int e = -1;
  CHECK_RC(tn_cluster_exists(c, name, &e), TN_OK);
  return e;
}

static int delete(tn_cluster_t *c, const char *name) {
  int e = -1;
  CHECK_RC(tn_cluster_delete(c, name, &e), TN_OK);
  return e;
}

TEST(redis_delete_every_class, "delete removes every key of an object of "
                               "any class and says whether it existed") {
  tn_cluster_t *c = test_cluster("tunnel-ctest:");
  if (c == NULL) return;
  redisContext *r = raw();
  if (r == NULL) return;
  char name[5][128];
  for (int i = 0; i < 5; i++) snprintf(name[i], sizeof name[i], "%s",
                                       test_fresh("del"));
  /* A bounded deque with items, closed: list, meta and both tokens. */
  tn_deque_t *d;
  CHECK_RC(tn_cluster_deque(c, name[0], 2, &d), TN_OK);
  CHECK_RC(tn_deque_push_back(d, blob_long(1), 0), TN_OK);
  tn_deque_close(d);
  tn_map_t *m;
  CHECK_RC(tn_cluster_map(c, name[1], &m), TN_OK);
  CHECK_RC(tn_map_set(m, "k", 1, blob_long(2), NULL, 0), TN_OK);
  tn_counter_t *k;
  int64_t init = 3;
  CHECK_RC(tn_cluster_counter(c, name[2], &init, &k), TN_OK);
  /* A cell, with its lock taken and released (the lock keys). */
  tn_cell_t *cell;
  tn_blob_t *four = blob_long(4);
  CHECK_RC(tn_cluster_cell(c, name[3], four, &cell), TN_OK);
  tn_blob_release(four);
  CHECK_RC(tn_object_write_lock(TN_OBJECT(cell), 5), TN_OK);
  tn_object_write_unlock(TN_OBJECT(cell));
  tn_printer_t *p;
  FILE *devnull = fopen("/dev/null", "w");
  CHECK_RC(tn_cluster_printer(c, name[4], devnull, &p), TN_OK);
  CHECK_RC(tn_printer_write(p, "line\n", 5, 1), TN_OK);
  for (int i = 0; i < 5; i++) {
    CHECK(raw_keys(r, "tunnel-ctest:", name[i]) > 0);
    CHECK_INT(exists(c, name[i]), 1);
    CHECK_INT(delete(c, name[i]), 1);
    CHECK_INT(raw_keys(r, "tunnel-ctest:", name[i]), 0);
    CHECK_INT(exists(c, name[i]), 0);
    CHECK_INT(delete(c, name[i]), 0); /* nothing left */
  }
  /* Held objects see fresh, empty ones: the deque open and unbounded. */
  CHECK(!tn_deque_is_closed(d));
  CHECK_INT(tn_deque_size(d), 0);
  for (long i = 0; i < 3; i++)
    CHECK_RC(tn_deque_push_back(d, blob_long(i), 0), TN_OK);
  CHECK_INT(tn_deque_size(d), 3);
  tn_blob_t *b = (tn_blob_t *)1;
  CHECK_RC(tn_map_get(m, "k", 1, &b, 0), TN_OK);
  CHECK(b == NULL);
  CHECK_INT(tn_counter_get(k), 0);
  CHECK_INT(tn_counter_add(k, 1), 1);
  b = (tn_blob_t *)1;
  CHECK_RC(tn_cell_get(cell, &b, 0), TN_OK);
  CHECK(b == NULL);
  CHECK_RC(tn_printer_write(p, "again\n", 6, 1), TN_OK);
  CHECK_INT(tn_error_take(), TN_OK);
  /* Made again, a deque takes the new creator's hint. */
  tn_deque_t *d2;
  CHECK_INT(delete(c, name[0]), 1);
  CHECK_RC(tn_cluster_deque(c, name[0], 1, &d2), TN_OK);
  CHECK(d2 == d);
  CHECK_RC(tn_deque_push_back(d2, blob_long(1), 0), TN_OK);
  b = blob_long(2);
  CHECK_RC(tn_deque_push_back(d2, b, 0), TN_ETIMEDOUT);
  tn_blob_release(b);
  tn_object_release(TN_OBJECT(d2));
  /* An object that never held anything does not exist. */
  tn_deque_t *empty;
  char never[128];
  snprintf(never, sizeof never, "%s", test_fresh("never"));
  CHECK_RC(tn_cluster_deque(c, never, TN_UNBOUNDED, &empty), TN_OK);
  CHECK_INT(exists(c, never), 0);
  CHECK_INT(delete(c, never), 0);
  tn_object_release(TN_OBJECT(empty));
  CHECK_RC(tn_cluster_delete(c, "", NULL), TN_EINVAL);
  CHECK_RC(tn_cluster_exists(c, "", &(int){0}), TN_EINVAL);
  for (int i = 0; i < 5; i++) tn_cluster_delete(c, name[i], NULL);
  tn_object_release(TN_OBJECT(d));
  tn_object_release(TN_OBJECT(m));
  tn_object_release(TN_OBJECT(k));
  tn_object_release(TN_OBJECT(cell));
  tn_object_release(TN_OBJECT(p));
  fclose(devnull);
  redisFree(r);
}

TEST(redis_delete_fences_lock, "a delete ends a write lock held on the "
                               "object: the holder's fenced store fails") {
  tn_cluster_t *c = test_cluster("tunnel-ctest:");
  if (c == NULL) return;
  char name[128];
  snprintf(name, sizeof name, "%s", test_fresh("dellock"));
  tn_cell_t *cell;
  CHECK_RC(tn_cluster_cell(c, name, NULL, &cell), TN_OK);
  CHECK_RC(tn_object_write_lock(TN_OBJECT(cell), 5), TN_OK);
  CHECK_INT(delete(c, name), 1);
  tn_blob_t *b = blob_long(1);
  CHECK_RC(tn_cell_set(cell, b, 0), TN_EIO);
  CHECK(strstr(tn_last_error(), "lease") != NULL);
  tn_blob_release(b);
  tn_object_write_unlock(TN_OBJECT(cell));
  /* Another holder gets the lock at once. */
  CHECK_RC(tn_object_write_lock(TN_OBJECT(cell), TN_TRY), TN_OK);
  tn_object_write_unlock(TN_OBJECT(cell));
  tn_cluster_delete(c, name, NULL);
  tn_object_release(TN_OBJECT(cell));
}

TEST(redis_acl_user, "redis://user:password@ logs in as an ACL user; a "
                     "wrong password is a clear error without it") {
  tn_cluster_t *c = test_cluster("tunnel-ctest:");
  if (c == NULL) return;
  redisContext *r = raw();
  if (r == NULL) return;
  char user[128];
  snprintf(user, sizeof user, "%s", test_fresh("tunneluser"));
  raw_do(r, "ACL SETUSER %s on >pw%s ~* &* +@all%s", user, "", "");
  const char *url = getenv("TUNNEL_REDIS_URL") + strlen("redis://");
  char good[512], wrong[512];
  snprintf(good, sizeof good, "redis://%s:pw@%s", user, url);
  snprintf(wrong, sizeof wrong, "redis://%s:hunter2@%s", user, url);
  tn_cluster_t *s;
  CHECK_RC(tn_cluster_open(good, "tunnel-ctest:", 5, &s), TN_OK);
  tn_counter_t *k;
  char name[128];
  snprintf(name, sizeof name, "%s", test_fresh("acl"));
  CHECK_RC(tn_cluster_counter(s, name, &(int64_t){7}, &k), TN_OK);
  CHECK_INT(tn_counter_get(k), 7);
  /* Logged in as that user: ACL WHOAMI through the cluster's connection
  ** is not in the API, so check that the user's permissions apply. */
  raw_do(r, "ACL SETUSER %s -@all +ping +auth +time%s%s", user, "", "");
  tn_cluster_t *s2;
  CHECK_RC(tn_cluster_open(good, "tunnel-ctest2:", 5, &s2), TN_OK);
  tn_counter_t *k2;
  CHECK_RC(tn_cluster_counter(s2, name, &(int64_t){1}, &k2), TN_EIO);
  CHECK(strstr(tn_last_error(), "NOPERM") != NULL);
  CHECK_RC(tn_cluster_open(wrong, "tunnel-ctest:", 5, &s2), TN_EIO);
  CHECK(strstr(tn_last_error(), "AUTH") != NULL);
  CHECK(strstr(tn_last_error(), "WRONGPASS") != NULL);
  CHECK(strstr(tn_last_error(), "hunter2") == NULL);
  tn_cluster_delete(c, name, NULL);
  tn_object_release(TN_OBJECT(k));
  raw_do(r, "ACL DELUSER %s%s%s", user, "", "");
  redisFree(r);
}

TEST(redis_unix_socket, "unix:///path?db=N reaches the same server and "
                        "database as redis://host:port/N") {
  tn_cluster_t *c = test_cluster("tunnel-ctest:");
  if (c == NULL) return;
  const char *sock = getenv("TUNNEL_REDIS_SOCKET");
  if (sock == NULL || sock[0] == '\0') {
    test_skip("TUNNEL_REDIS_SOCKET is not set (scripts/with-redis.sh)");
    return;
  }
  char uurl[512], turl[512];
  snprintf(uurl, sizeof uurl, "unix://%s?db=3", sock);
  const char *url = getenv("TUNNEL_REDIS_URL");
  const char *slash = strrchr(url, '/');
  snprintf(turl, sizeof turl, "%.*s/3", (int)(slash - url), url);
  tn_cluster_t *u, *t;
  CHECK_RC(tn_cluster_open(uurl, "tunnel-ctest:", 5, &u), TN_OK);
  CHECK_RC(tn_cluster_open(turl, "tunnel-ctest:", 5, &t), TN_OK);
  if (u == NULL || t == NULL) return;
  CHECK(strcmp(tn_cluster_url(u), uurl) == 0);
  char name[128];
  snprintf(name, sizeof name, "%s", test_fresh("unix"));
  tn_counter_t *ku, *kt;
  CHECK_RC(tn_cluster_counter(u, name, &(int64_t){10}, &ku), TN_OK);
  CHECK_RC(tn_cluster_counter(t, name, NULL, &kt), TN_OK);
  CHECK_INT(tn_counter_add(kt, 1), 11);
  CHECK_INT(tn_counter_get(ku), 11);
  CHECK_INT(exists(c, name), 0); /* another database */
  /* A value names its objects by the URL without credentials: a deque
  ** reached over the socket refers to a counter over the socket. */
  tn_deque_t *d;
  CHECK_RC(tn_cluster_deque(u, test_fresh("unixq"), TN_UNBOUNDED, &d), TN_OK);
  tn_object_t *ref = TN_OBJECT(ku);
  tn_blob_t *b = tn_blob_new("x", 1, &ref, 1);
  CHECK_RC(tn_deque_push_back(d, b, 0), TN_OK);
  CHECK_RC(tn_deque_pop_front(d, &b, 0), TN_OK);
  CHECK(b != NULL && tn_blob_nrefs(b) == 1 &&
        tn_blob_ref(b, 0) == TN_OBJECT(ku));
  tn_blob_release(b);
  CHECK_INT(delete(u, name), 1);
  CHECK_INT(tn_counter_get(kt), 0);
  CHECK_INT(tn_error_take(), TN_OK);
  tn_object_release(TN_OBJECT(d));
  tn_object_release(TN_OBJECT(ku));
  tn_object_release(TN_OBJECT(kt));
}

typedef struct waiter {
  tn_barrier_t *barrier;
  tn_semaphore_t *semaphore;
  tn_counter_t *counter;
  atomic_int rc;
  int64_t value;
} waiter_t;

static void *barrier_waiter(void *arg) {
  waiter_t *w = arg;
  atomic_store(&w->rc, tn_barrier_wait(w->barrier, 60, NULL));
  return NULL;
}

static void *semaphore_waiter(void *arg) {
  waiter_t *w = arg;
  atomic_store(&w->rc, tn_semaphore_acquire(w->semaphore, 1, 60));
  return NULL;
}

static void *counter_waiter(void *arg) {
  waiter_t *w = arg;
  atomic_store(&w->rc, tn_counter_wait(w->counter, 10, 60, &w->value));
  return NULL;
}

/* Until `n` waiters are registered in `key` (a list or a sorted set). */
static void await_registered(redisContext *r, const char *key, long n) {
  for (int i = 0; i < 2000; i++) {
    redisReply *x = redisCommand(r, "TYPE %s", key);
    const char *cmd = x != NULL && x->type == REDIS_REPLY_STATUS &&
                              strcmp(x->str, "zset") == 0
                          ? "ZCARD %s"
                          : "LLEN %s";
    if (x != NULL) freeReplyObject(x);
    x = redisCommand(r, cmd, key);
    long long got = x != NULL && x->type == REDIS_REPLY_INTEGER ? x->integer
                                                                : 0;
    if (x != NULL) freeReplyObject(x);
    if (got >= n) return;
    tn_sleep(0.01);
  }
  test_fail(__FILE__, __LINE__, "no waiter registered in %s", key);
}

TEST(redis_delete_wakes_waiters, "a delete wakes the waiters of a barrier "
                                 "(broken), a semaphore (an error) and a "
                                 "counter (it waits on the fresh one)") {
  tn_cluster_t *c = test_cluster("tunnel-ctest:");
  if (c == NULL) return;
  redisContext *r = raw();
  if (r == NULL) return;
  char bname[128], sname[128], kname[128], key[300];
  snprintf(bname, sizeof bname, "%s", test_fresh("delwait-b"));
  snprintf(sname, sizeof sname, "%s", test_fresh("delwait-s"));
  snprintf(kname, sizeof kname, "%s", test_fresh("delwait-k"));
  waiter_t w = {0};
  CHECK_RC(tn_cluster_barrier(c, bname, 2, &w.barrier), TN_OK);
  CHECK_RC(tn_cluster_semaphore(c, sname, 1, &w.semaphore), TN_OK);
  CHECK_RC(tn_cluster_counter(c, kname, &(int64_t){0}, &w.counter), TN_OK);
  if (w.barrier == NULL || w.semaphore == NULL || w.counter == NULL) return;
  CHECK_RC(tn_semaphore_acquire(w.semaphore, 1, 5), TN_OK);

  pthread_t t = test_spawn(barrier_waiter, &w);
  snprintf(key, sizeof key, "tunnel-ctest:%s:w", bname);
  await_registered(r, key, 1);
  CHECK_INT(delete(c, bname), 1);
  test_join(t); /* without the wake-up it would wait its 60 s */
  CHECK_INT(atomic_load(&w.rc), TN_EBROKEN);
  CHECK_RC(tn_barrier_wait(w.barrier, 0, NULL), TN_EIO);
  CHECK(strstr(tn_last_error(), "deleted") != NULL);

  t = test_spawn(semaphore_waiter, &w);
  snprintf(key, sizeof key, "tunnel-ctest:%s:w", sname);
  await_registered(r, key, 1);
  CHECK_INT(delete(c, sname), 1);
  test_join(t);
  CHECK_INT(atomic_load(&w.rc), TN_EIO);

  t = test_spawn(counter_waiter, &w);
  snprintf(key, sizeof key, "tunnel-ctest:%s:wu", kname);
  await_registered(r, key, 1);
  CHECK_INT(delete(c, kname), 1);
  await_registered(r, key, 1); /* woken with 0, it waits again */
  CHECK_INT(tn_counter_add(w.counter, 10), 10);
  test_join(t);
  CHECK_INT(atomic_load(&w.rc), TN_OK);
  CHECK_INT(w.value, 10);

  tn_error_take();
  tn_cluster_delete(c, kname, NULL);
  tn_object_release(TN_OBJECT(w.barrier));
  tn_object_release(TN_OBJECT(w.semaphore));
  tn_object_release(TN_OBJECT(w.counter));
  redisFree(r);
}
