/*
** redis.c - the Redis backend's base: clusters (URL, interning), one
** connection per thread per cluster, commands and scripts with readable
** errors, the stored-value format, the interned remote objects, and the
** backend table the core dispatches to.
**
** Connections. A hiredis context is not thread-safe, so each thread keeps
** its own, one per cluster, in a thread-local list freed when the thread
** exits. A connection that failed (I/O error, timeout) is dropped at once
** and the next call on that thread connects again: a server that went away
** and came back is used again without any action by the caller.
**
** Caveats:
** - Clusters are interned and never freed (a process uses a handful); the
**   connections to them are per thread and die with the thread.
** - URL: redis://[[user]:password@]host[:port][/db]; no TLS, no Unix
**   sockets, no IPv6 literals; a user name is ignored (AUTH password).
** - Scripts are loaded with SCRIPT LOAD on first use and again after a
**   NOSCRIPT reply (a restarted server).
*/
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "redis.h"

/* ---- deadlines ------------------------------------------------------------ */

double rd_left(double deadline) {
  if (isinf(deadline)) return INFINITY;
  double left = deadline - tn_clock();
  return left > 0 ? left : 0;
}

double rd_slice(double deadline) {
  double left = rd_left(deadline);
  if (left > RD_BLOCK_SLICE) left = RD_BLOCK_SLICE;
  return left < 0.01 ? 0.01 : left;
}

static struct timeval to_timeval(double s) {
  struct timeval tv;
  tv.tv_sec = (time_t)s;
  tv.tv_usec = (suseconds_t)((s - (double)tv.tv_sec) * 1e6);
  return tv;
}

/* ---- clusters --------------------------------------------------------------- */

static pthread_mutex_t registry_mutex = PTHREAD_MUTEX_INITIALIZER;
static tn_cluster_t *clusters;  /* interned, immortal */
static rd_object_t *objects;    /* interned while alive */

static char *dup_range(const char *s, size_t n) {
  char *p = malloc(n + 1);
  if (p == NULL) return NULL;
  memcpy(p, s, n);
  p[n] = '\0';
  return p;
}

static void cluster_free(tn_cluster_t *c) {
  if (c == NULL) return;
  free(c->url);
  free(c->host);
  free(c->password);
  free(c->prefix);
  free(c);
}

/* Parse `url` into a new cluster (not interned). TN_EINVAL, TN_ENOMEM. */
static int cluster_parse(const char *url, const char *prefix, double timeout,
                         tn_cluster_t **out) {
  const char *scheme = "redis://";
  if (strncmp(url, scheme, strlen(scheme)) != 0)
    return tn_error_set(TN_EINVAL, "%s: the URL must start with redis://",
                        url);
  tn_cluster_t *c = calloc(1, sizeof *c);
  if (c == NULL) return TN_ENOMEM;
  const char *p = url + strlen(scheme);
  const char *at = strrchr(p, '@');
  if (at != NULL) {
    const char *colon = memchr(p, ':', (size_t)(at - p));
    const char *pw = colon != NULL ? colon + 1 : p;
    c->password = dup_range(pw, (size_t)(at - pw));
    if (c->password == NULL) goto nomem;
    p = at + 1;
  }
  size_t hl = strcspn(p, ":/");
  c->host = dup_range(p, hl);
  if (c->host == NULL) goto nomem;
  if (hl == 0) {
    free(c->host);
    c->host = dup_range("127.0.0.1", 9);
    if (c->host == NULL) goto nomem;
  }
  p += hl;
  c->port = 6379;
  if (*p == ':') {
    char *end;
    long port = strtol(p + 1, &end, 10);
    if (end == p + 1 || port <= 0 || port > 65535) goto bad;
    c->port = (int)port;
    p = end;
  }
  if (*p == '/') {
    if (p[1] != '\0') {
      char *end;
      long db = strtol(p + 1, &end, 10);
      if (end == p + 1 || *end != '\0' || db < 0 || db > 1000000) goto bad;
      c->db = (int)db;
    }
  } else if (*p != '\0') {
    goto bad;
  }
  c->url = strdup(url);
  c->prefix = strdup(prefix != NULL ? prefix : "tunnel:");
  if (c->url == NULL || c->prefix == NULL) goto nomem;
  c->timeout = timeout > 0 && timeout < 1e9 ? timeout : 0;
  *out = c;
  return TN_OK;
bad:
  cluster_free(c);
  return tn_error_set(TN_EINVAL,
                      "%s: not a redis://[:password@]host[:port][/db] URL",
                      url);
nomem:
  cluster_free(c);
  return TN_ENOMEM;
}

/* The interned cluster equal to (url, prefix, data_only) and, if
** `match_timeout`, the timeout; NULL if none. Registry mutex held. */
static tn_cluster_t *cluster_find(const char *url, const char *prefix,
                                  double timeout, bool match_timeout,
                                  bool data_only) {
  for (tn_cluster_t *c = clusters; c != NULL; c = c->next)
    if (strcmp(c->url, url) == 0 && strcmp(c->prefix, prefix) == 0 &&
        (!match_timeout || c->timeout == timeout) &&
        c->data_only == data_only)
      return c;
  return NULL;
}

/* Intern without checking the server. */
static int cluster_intern(const char *url, const char *prefix, double timeout,
                          bool match_timeout, bool data_only,
                          tn_cluster_t **out) {
  if (prefix == NULL) prefix = "tunnel:";
  double t = timeout > 0 && timeout < 1e9 ? timeout : 0;
  pthread_mutex_lock(&registry_mutex);
  tn_cluster_t *c = cluster_find(url, prefix, t, match_timeout, data_only);
  pthread_mutex_unlock(&registry_mutex);
  if (c != NULL) {
    *out = c;
    return TN_OK;
  }
  int rc = cluster_parse(url, prefix, t, &c);
  if (rc != TN_OK) return rc;
  c->data_only = data_only;
  pthread_mutex_lock(&registry_mutex);
  tn_cluster_t *other = cluster_find(url, prefix, t, match_timeout, data_only);
  if (other == NULL) {
    c->next = clusters;
    clusters = c;
  }
  pthread_mutex_unlock(&registry_mutex);
  if (other != NULL) {
    cluster_free(c);
    c = other;
  }
  *out = c;
  return TN_OK;
}

/*
** Intern, then PING through this thread's connection, so that a wrong
** host, password or database fails here, with its message, rather than
** at the first operation.
*/
int tn_cluster_open(const char *url, const char *prefix, double timeout,
                    tn_cluster_t **out) {
  return rd_cluster_open(url, prefix, timeout, false, out);
}

int rd_cluster_open(const char *url, const char *prefix, double timeout,
                    bool data_only, tn_cluster_t **out) {
  tn_cluster_t *c;
  int rc = cluster_intern(url, prefix, timeout, true, data_only, &c);
  if (rc != TN_OK) return rc;
  const char *argv[] = {"PING"};
  redisReply *r;
  rc = rd_command(c, 0, &r, 1, argv, NULL);
  if (rc != TN_OK) return rc;
  freeReplyObject(r);
  *out = c;
  return TN_OK;
}

const char *tn_cluster_url(const tn_cluster_t *c) { return c->url; }
const char *tn_cluster_prefix(const tn_cluster_t *c) { return c->prefix; }
double tn_cluster_timeout(const tn_cluster_t *c) {
  return c->timeout > 0 ? c->timeout : TN_FOREVER;
}

/* ---- connections ------------------------------------------------------------- */

typedef struct rd_conn {
  tn_cluster_t *cluster;
  redisContext *ctx; /* NULL: connect on the next call */
  double rtimeout;   /* the read timeout set on ctx (0: none) */
  struct rd_conn *next;
} rd_conn_t;

typedef struct rd_thread {
  rd_conn_t *conns;
} rd_thread_t;

static pthread_key_t thread_key;
static pthread_once_t thread_once = PTHREAD_ONCE_INIT;
static _Thread_local rd_thread_t *thread_state;

static void thread_exit(void *p) {
  rd_thread_t *t = p;
  for (rd_conn_t *k = t->conns, *next; k != NULL; k = next) {
    next = k->next;
    if (k->ctx != NULL) redisFree(k->ctx);
    free(k);
  }
  free(t);
  thread_state = NULL;
}

static void thread_init_key(void) {
  if (pthread_key_create(&thread_key, thread_exit) != 0) abort();
}

/* This thread's connection record for `c` (the context may be NULL). */
static rd_conn_t *conn_of(tn_cluster_t *c) {
  rd_thread_t *t = thread_state;
  if (__builtin_expect(t == NULL, 0)) {
    pthread_once(&thread_once, thread_init_key);
    t = calloc(1, sizeof *t);
    if (t == NULL) return NULL;
    pthread_setspecific(thread_key, t);
    thread_state = t;
  }
  for (rd_conn_t *k = t->conns; k != NULL; k = k->next)
    if (k->cluster == c) return k;
  rd_conn_t *k = calloc(1, sizeof *k);
  if (k == NULL) return NULL;
  k->cluster = c;
  k->next = t->conns;
  t->conns = k;
  return k;
}

static void conn_drop(rd_conn_t *k) {
  if (k->ctx != NULL) redisFree(k->ctx);
  k->ctx = NULL;
}

/* "LPUSH tunnel:jobs": the command and its first argument, for messages. */
static void describe(char *buf, size_t size, int argc, const char **argv,
                     const size_t *lens) {
  size_t l1 = argc > 1 ? (lens != NULL ? lens[1] : strlen(argv[1])) : 0;
  if (l1 > 80) l1 = 80;
  snprintf(buf, size, "%s%s%.*s", argv[0], argc > 1 ? " " : "", (int)l1,
           argc > 1 ? argv[1] : "");
  for (char *p = buf; *p; p++)
    if ((unsigned char)*p < 0x20) *p = '?';
}

/* Run a command on a connected context; NULL reply: I/O failure. */
static redisReply *conn_run(rd_conn_t *k, int argc, const char **argv,
                            const size_t *lens) {
  return redisCommandArgv(k->ctx, argc, argv, lens);
}

/* Connect `k`, then AUTH and SELECT. On failure the context is dropped. */
static int conn_open(tn_cluster_t *c, rd_conn_t *k, const char *what) {
  struct timeval tv = to_timeval(c->timeout);
  k->ctx = c->timeout > 0 ? redisConnectWithTimeout(c->host, c->port, tv)
                          : redisConnect(c->host, c->port);
  if (k->ctx == NULL) return TN_ENOMEM;
  if (k->ctx->err) {
    int rc = tn_error_set(TN_EIO, "redis %s:%d: %s: %s", c->host, c->port,
                          what, k->ctx->errstr);
    conn_drop(k);
    return rc;
  }
  k->rtimeout = 0;
  if (c->timeout > 0) {
    redisSetTimeout(k->ctx, tv);
    k->rtimeout = c->timeout;
  }
  redisEnableKeepAlive(k->ctx);
  char dbs[16];
  snprintf(dbs, sizeof dbs, "%d", c->db);
  const char *auth[] = {"AUTH", c->password};
  const char *sel[] = {"SELECT", dbs};
  for (int step = 0; step < 2; step++) {
    if (step == 0 && c->password == NULL) continue;
    if (step == 1 && c->db == 0) continue;
    redisReply *r = conn_run(k, 2, step == 0 ? auth : sel, NULL);
    if (r == NULL || r->type == REDIS_REPLY_ERROR) {
      int rc = tn_error_set(TN_EIO, "redis %s:%d: %s: %s", c->host, c->port,
                            step == 0 ? "AUTH" : "SELECT",
                            r != NULL ? r->str : k->ctx->errstr);
      if (r != NULL) freeReplyObject(r);
      conn_drop(k);
      return rc;
    }
    freeReplyObject(r);
  }
  return TN_OK;
}

/*
** An idle connection has nothing to read: if its socket is readable or
** hung up, the server closed it (it restarted, or dropped an idle client).
** Nothing was sent on it, so connecting again is safe, and the caller
** never sees the stale connection. One poll() per command.
*/
static bool conn_stale(rd_conn_t *k) {
  struct pollfd p = {k->ctx->fd, POLLIN, 0};
  return poll(&p, 1, 0) != 0;
}

/* Set the read timeout a command that blocks `block` seconds needs. */
static void conn_timeout_for(tn_cluster_t *c, rd_conn_t *k, double block) {
  double want;
  if (block < 0)
    want = 0; /* blocks forever: no read timeout at all */
  else if (block == 0)
    want = c->timeout;
  else
    want = c->timeout > 0 ? block + c->timeout + 1 : 0;
  if (want == k->rtimeout) return;
  /* hiredis has no way to clear a timeout: a very long one instead. */
  redisSetTimeout(k->ctx, to_timeval(want > 0 ? want : 1e8));
  k->rtimeout = want;
}

int rd_command(tn_cluster_t *c, double block, redisReply **reply, int argc,
               const char **argv, const size_t *lens) {
  rd_conn_t *k = conn_of(c);
  if (k == NULL) return TN_ENOMEM;
  char what[128];
  describe(what, sizeof what, argc, argv, lens);
  if (k->ctx != NULL && conn_stale(k)) conn_drop(k);
  if (k->ctx == NULL) {
    int rc = conn_open(c, k, what);
    if (rc != TN_OK) return rc;
  }
  conn_timeout_for(c, k, block);
  redisReply *r = conn_run(k, argc, argv, lens);
  if (r == NULL) {
    const char *why = k->ctx->err == REDIS_ERR_IO && errno == EAGAIN
                          ? "timed out"
                          : k->ctx->errstr;
    if (k->ctx->err == REDIS_ERR_EOF) why = "connection lost";
    int rc = tn_error_set(TN_EIO, "redis %s:%d: %s: %s", c->host, c->port,
                          what, why);
    conn_drop(k);
    return rc;
  }
  if (r->type == REDIS_REPLY_ERROR) {
    int rc = tn_error_set(TN_EIO, "redis %s:%d: %s: %s", c->host, c->port,
                          what, r->str);
    freeReplyObject(r);
    return rc;
  }
  *reply = r;
  return TN_OK;
}

int rd_bad_reply(tn_cluster_t *c, const char *what, const redisReply *r) {
  return tn_error_set(TN_EPROTO, "redis %s:%d: %s: unexpected reply (type %d)",
                      c->host, c->port, what, r != NULL ? r->type : -1);
}

/* ---- scripts ------------------------------------------------------------------ */

static pthread_mutex_t script_mutex = PTHREAD_MUTEX_INITIALIZER;

static int script_load(tn_cluster_t *c, rd_script_t *s) {
  const char *argv[] = {"SCRIPT", "LOAD", s->source};
  redisReply *r;
  int rc = rd_command(c, 0, &r, 3, argv, NULL);
  if (rc != TN_OK) return rc;
  if (r->type != REDIS_REPLY_STRING || r->len != 40) {
    rc = rd_bad_reply(c, "SCRIPT LOAD", r);
    freeReplyObject(r);
    return rc;
  }
  pthread_mutex_lock(&script_mutex);
  memcpy(s->sha, r->str, 40);
  s->sha[40] = '\0';
  s->loaded = 1;
  pthread_mutex_unlock(&script_mutex);
  freeReplyObject(r);
  return TN_OK;
}

int rd_eval(tn_cluster_t *c, rd_script_t *s, redisReply **reply, int nkeys,
            const char **keys, int nargs, const char **args,
            const size_t *arglens) {
  int argc = 3 + nkeys + nargs;
  const char *stack_argv[24];
  size_t stack_lens[24];
  const char **argv = stack_argv;
  size_t *lens = stack_lens;
  if (argc > 24) {
    argv = malloc((size_t)argc * sizeof *argv);
    lens = malloc((size_t)argc * sizeof *lens);
    if (argv == NULL || lens == NULL) {
      free(argv);
      free(lens);
      return TN_ENOMEM;
    }
  }
  char nk[16], sha[41];
  snprintf(nk, sizeof nk, "%d", nkeys);
  argv[0] = "EVALSHA";
  argv[1] = sha;
  argv[2] = nk;
  lens[0] = 7;
  lens[1] = 40;
  lens[2] = strlen(nk);
  for (int i = 0; i < nkeys; i++) {
    argv[3 + i] = keys[i];
    lens[3 + i] = strlen(keys[i]);
  }
  for (int i = 0; i < nargs; i++) {
    argv[3 + nkeys + i] = args[i];
    lens[3 + nkeys + i] = arglens != NULL ? arglens[i] : strlen(args[i]);
  }
  int rc = TN_OK;
  bool reloaded = false;
  for (;;) {
    pthread_mutex_lock(&script_mutex);
    int loaded = s->loaded;
    memcpy(sha, s->sha, sizeof sha);
    pthread_mutex_unlock(&script_mutex);
    if (!loaded) {
      if ((rc = script_load(c, s)) != TN_OK) break;
      continue;
    }
    redisReply *r;
    rc = rd_command(c, 0, &r, argc, argv, lens);
    if (rc == TN_OK) {
      *reply = r;
      break;
    }
    if (rc == TN_EIO && !reloaded &&
        strstr(tn_last_error(), "NOSCRIPT") != NULL) {
      /* The server restarted (or is another one): load it there. */
      pthread_mutex_lock(&script_mutex);
      s->loaded = 0;
      pthread_mutex_unlock(&script_mutex);
      reloaded = true;
      continue;
    }
    /* "EVALSHA <sha>: why" reads better as "<script> <key>: why". */
    const char *why = strstr(tn_last_error(), "EVALSHA");
    if (why != NULL && (why = strchr(why, ':')) != NULL) {
      char tmp[400];
      snprintf(tmp, sizeof tmp, "%s", why + 2);
      tn_error_set(rc, "redis %s:%d: %s %s: %s", c->host, c->port, s->name,
                   nkeys > 0 ? keys[0] : "", tmp);
    }
    break;
  }
  if (argv != stack_argv) {
    free(argv);
    free(lens);
  }
  return rc;
}

/* ---- stored values ------------------------------------------------------------ */

#define VALUE_MAGIC0 'T'
#define VALUE_MAGIC1 'N'
#define VALUE_FORMAT 1
#define VALUE_NIL 1

const char rd_nil_value[4] = {VALUE_MAGIC0, VALUE_MAGIC1, VALUE_FORMAT,
                              VALUE_NIL};

typedef struct buf {
  char *p;
  size_t len, cap;
} buf_t;

static int buf_put(buf_t *b, const void *data, size_t n) {
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 64;
    while (cap < b->len + n) cap *= 2;
    char *p = realloc(b->p, cap);
    if (p == NULL) return TN_ENOMEM;
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->len, data, n);
  b->len += n;
  return TN_OK;
}

static int buf_varint(buf_t *b, uint64_t v) {
  unsigned char tmp[10];
  int n = 0;
  do {
    tmp[n++] = (unsigned char)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
    v >>= 7;
  } while (v != 0);
  return buf_put(b, tmp, (size_t)n);
}

static int buf_string(buf_t *b, const char *s) {
  size_t n = strlen(s);
  int rc = buf_varint(b, n);
  return rc == TN_OK ? buf_put(b, s, n) : rc;
}

int rd_value_encode(const tn_blob_t *blob, char **out, size_t *len) {
  return rd_value_encode_read(blob, false, out, len);
}

int rd_value_encode_read(const tn_blob_t *blob, bool data_only, char **out,
                         size_t *len) {
  buf_t b = {NULL, 0, 0};
  char head[4] = {VALUE_MAGIC0, VALUE_MAGIC1, VALUE_FORMAT,
                  blob == NULL ? VALUE_NIL : 0};
  int rc = buf_put(&b, head, 4);
  size_t nrefs = blob != NULL ? tn_blob_nrefs(blob) : 0;
  if (rc == TN_OK && blob != NULL) rc = buf_varint(&b, nrefs);
  for (size_t i = 0; rc == TN_OK && i < nrefs; i++) {
    tn_object_t *o = tn_blob_ref(blob, i);
    if (o->backend != &rd_backend) {
      rc = tn_error_set(TN_ELOCAL,
                        "cannot put an in-process object into a cluster "
                        "structure (use a cluster object)");
      break;
    }
    rd_object_t *r = RD(o);
    unsigned char type = (unsigned char)o->type;
    rc = buf_put(&b, &type, 1);
    if (rc == TN_OK) rc = buf_string(&b, r->cluster->url);
    if (rc == TN_OK) rc = buf_string(&b, r->cluster->prefix);
    if (rc == TN_OK) rc = buf_string(&b, r->name);
  }
  if (rc == TN_OK && blob != NULL) {
    const unsigned char *data = tn_blob_data(blob);
    size_t size = tn_blob_size(blob);
    if (data_only && size > 0 && data[0] == RD_DATA_ONLY) {
      data++; /* the reader's mark, not part of the value */
      size--;
    }
    rc = buf_put(&b, data, size);
  }
  if (rc != TN_OK) {
    free(b.p);
    return rc;
  }
  *out = b.p;
  *len = b.len;
  return TN_OK;
}

static bool get_varint(const unsigned char **p, const unsigned char *end,
                       uint64_t *v) {
  uint64_t x = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (*p >= end) return false;
    unsigned char c = *(*p)++;
    x |= (uint64_t)(c & 0x7f) << shift;
    if (!(c & 0x80)) {
      *v = x;
      return true;
    }
  }
  return false;
}

static bool get_string(const unsigned char **p, const unsigned char *end,
                       char **s) {
  uint64_t n;
  if (!get_varint(p, end, &n) || n > (uint64_t)(end - *p)) return false;
  *s = dup_range((const char *)*p, (size_t)n);
  *p += n;
  return *s != NULL;
}

int rd_value_decode(tn_cluster_t *c, const char *what, const char *data,
                    size_t len, tn_blob_t **out) {
  const unsigned char *p = (const unsigned char *)data, *end = p + len;
  if (len < 4 || p[0] != VALUE_MAGIC0 || p[1] != VALUE_MAGIC1)
    return tn_error_set(TN_EPROTO,
                        "redis %s:%d: %s: the stored value was not written "
                        "by tunnel",
                        c->host, c->port, what);
  if (p[2] != VALUE_FORMAT)
    return tn_error_set(TN_EPROTO,
                        "redis %s:%d: %s: the stored value has format %d "
                        "(this tunnel reads format %d)",
                        c->host, c->port, what, p[2], VALUE_FORMAT);
  if (p[3] & VALUE_NIL) {
    *out = NULL;
    return TN_OK;
  }
  p += 4;
  uint64_t nrefs;
  if (!get_varint(&p, end, &nrefs) || nrefs > (uint64_t)(end - p))
    goto bad;
  tn_object_t *refs_stack[8] = {NULL}, **refs = refs_stack;
  if (nrefs > 8 && (refs = malloc((size_t)nrefs * sizeof *refs)) == NULL)
    return TN_ENOMEM;
  size_t got = 0;
  int rc = TN_OK;
  for (; got < nrefs; got++) {
    if (p >= end) break;
    int type = *p++;
    char *url = NULL, *prefix = NULL, *name = NULL;
    tn_cluster_t *rc_cluster;
    if (!get_string(&p, end, &url) || !get_string(&p, end, &prefix) ||
        !get_string(&p, end, &name)) {
      free(url);
      free(prefix);
      free(name);
      break;
    }
    rc = cluster_intern(url, prefix, c->timeout, false, c->data_only,
                        &rc_cluster);
    if (rc == TN_OK)
      rc = rd_object_get(rc_cluster, (tn_type_t)type, name, &refs[got]);
    free(url);
    free(prefix);
    free(name);
    if (rc != TN_OK) break;
  }
  tn_blob_t *b = NULL;
  if (rc == TN_OK && got == nrefs && c->data_only) {
    /* The mark in front (RD_DATA_ONLY), then the bytes. */
    size_t n = (size_t)(end - p);
    unsigned char *m = malloc(n + 1);
    if (m != NULL) {
      m[0] = RD_DATA_ONLY;
      memcpy(m + 1, p, n);
      b = tn_blob_new(m, n + 1, refs, got);
      free(m);
    }
    if (b == NULL) rc = TN_ENOMEM;
  } else if (rc == TN_OK && got == nrefs) {
    b = tn_blob_new(p, (size_t)(end - p), refs, got);
    if (b == NULL) rc = TN_ENOMEM;
  } else if (rc == TN_OK) {
    rc = TN_EPROTO;
  }
  for (size_t i = 0; i < got; i++) tn_object_release(refs[i]);
  if (refs != refs_stack) free(refs);
  if (rc == TN_EPROTO) goto bad;
  if (rc != TN_OK) return rc;
  *out = b;
  return TN_OK;
bad:
  return tn_error_set(TN_EPROTO,
                      "redis %s:%d: %s: the stored value is corrupt",
                      c->host, c->port, what);
}

/* ---- remote objects ------------------------------------------------------------ */

const char *rd_subkey(const rd_object_t *o, const char *suffix, char *buf,
                      size_t size) {
  snprintf(buf, size, "%s%s", o->key, suffix);
  return buf;
}

static void object_destroy(tn_object_t *o) {
  rd_object_t *r = RD(o);
  pthread_mutex_lock(&registry_mutex);
  for (rd_object_t **l = &objects; *l != NULL; l = &(*l)->next)
    if (*l == r) {
      *l = r->next;
      break;
    }
  pthread_mutex_unlock(&registry_mutex);
  if (r->local != NULL) tn_object_release(TN_OBJECT(r->local));
  free(r->name);
  free(r->key);
  tn_object_fini(o);
  free(r);
}

/* A reference to `o` unless it is being destroyed (its count reached 0). */
static bool try_retain(tn_object_t *o) {
  long n = atomic_load(&o->refs);
  while (n > 0)
    if (atomic_compare_exchange_weak(&o->refs, &n, n + 1)) return true;
  return false;
}

static bool valid_type(tn_type_t type) {
  return type == TN_TYPE_DEQUE || type == TN_TYPE_HASH ||
         type == TN_TYPE_COUNTER || type == TN_TYPE_ATOMIC ||
         type == TN_TYPE_PRINTER;
}

int rd_object_get(tn_cluster_t *c, tn_type_t type, const char *name,
                  tn_object_t **out) {
  if (!valid_type(type)) return TN_EINVAL;
  pthread_mutex_lock(&registry_mutex);
  for (rd_object_t *r = objects; r != NULL; r = r->next)
    if (r->cluster == c && r->object.type == type &&
        strcmp(r->name, name) == 0 && try_retain(&r->object)) {
      pthread_mutex_unlock(&registry_mutex);
      *out = &r->object;
      return TN_OK;
    }
  rd_object_t *r = calloc(1, sizeof *r);
  size_t pl = strlen(c->prefix), nl = strlen(name);
  if (r != NULL) {
    r->name = strdup(name);
    r->key = malloc(pl + nl + 1);
  }
  if (r == NULL || r->name == NULL || r->key == NULL) {
    pthread_mutex_unlock(&registry_mutex);
    if (r != NULL) {
      free(r->name);
      free(r->key);
      free(r);
    }
    return TN_ENOMEM;
  }
  memcpy(r->key, c->prefix, pl);
  memcpy(r->key + pl, name, nl + 1);
  r->keylen = pl + nl;
  r->cluster = c;
  tn_object_init_remote(&r->object, type, object_destroy, &rd_backend);
  if (type == TN_TYPE_PRINTER && tn_printer_new(NULL, &r->local) != TN_OK) {
    pthread_mutex_unlock(&registry_mutex);
    tn_object_fini(&r->object);
    free(r->name);
    free(r->key);
    free(r);
    return TN_ENOMEM;
  }
  r->next = objects;
  objects = r;
  pthread_mutex_unlock(&registry_mutex);
  *out = &r->object;
  return TN_OK;
}

/* ---- constructors ---------------------------------------------------------------- */

static int check_name(const char *name) {
  if (name == NULL || name[0] == '\0')
    return tn_error_set(TN_EINVAL, "a cluster object needs a non-empty name");
  return TN_OK;
}

int tn_cluster_deque(tn_cluster_t *c, const char *name, size_t size_hint,
                     tn_deque_t **out) {
  int rc = check_name(name);
  if (rc != TN_OK) return rc;
  if (size_hint == 0) return TN_EINVAL;
  tn_object_t *o;
  if ((rc = rd_object_get(c, TN_TYPE_DEQUE, name, &o)) != TN_OK) return rc;
  if ((rc = rd_deque_create(RD(o), size_hint)) != TN_OK) {
    tn_object_release(o);
    return rc;
  }
  *out = (tn_deque_t *)o;
  return TN_OK;
}

int tn_cluster_map(tn_cluster_t *c, const char *name, tn_map_t **out) {
  int rc = check_name(name);
  if (rc != TN_OK) return rc;
  tn_object_t *o;
  if ((rc = rd_object_get(c, TN_TYPE_HASH, name, &o)) != TN_OK) return rc;
  *out = (tn_map_t *)o;
  return TN_OK;
}

int tn_cluster_counter(tn_cluster_t *c, const char *name, const int64_t *init,
                       tn_counter_t **out) {
  int rc = check_name(name);
  if (rc != TN_OK) return rc;
  tn_object_t *o;
  if ((rc = rd_object_get(c, TN_TYPE_COUNTER, name, &o)) != TN_OK) return rc;
  if ((rc = rd_counter_create(RD(o), init)) != TN_OK) {
    tn_object_release(o);
    return rc;
  }
  *out = (tn_counter_t *)o;
  return TN_OK;
}

int tn_cluster_cell(tn_cluster_t *c, const char *name, tn_blob_t *init,
                    tn_cell_t **out) {
  int rc = check_name(name);
  if (rc != TN_OK) return rc;
  tn_object_t *o;
  if ((rc = rd_object_get(c, TN_TYPE_ATOMIC, name, &o)) != TN_OK) return rc;
  if ((rc = rd_cell_create(RD(o), init)) != TN_OK) {
    tn_object_release(o);
    return rc;
  }
  *out = (tn_cell_t *)o;
  return TN_OK;
}

int tn_cluster_printer(tn_cluster_t *c, const char *name, FILE *stream,
                       tn_printer_t **out) {
  int rc = check_name(name);
  if (rc != TN_OK) return rc;
  tn_object_t *o;
  if ((rc = rd_object_get(c, TN_TYPE_PRINTER, name, &o)) != TN_OK) return rc;
  if (stream != NULL) {
    /* The stream is the local printer's: a new one for the asked stream. */
    tn_printer_t *p;
    if (tn_printer_new(stream, &p) != TN_OK) {
      tn_object_release(o);
      return TN_ENOMEM;
    }
    tn_printer_t *old = RD(o)->local;
    RD(o)->local = p;
    tn_object_release(TN_OBJECT(old));
  }
  *out = (tn_printer_t *)o;
  return TN_OK;
}

/* ---- the backend table ------------------------------------------------------------- */

const tn_backend_t rd_backend = {
    .name = "redis",
    .deque_push = rd_deque_push,
    .deque_pop = rd_deque_pop,
    .deque_insert = rd_deque_insert,
    .deque_remove = rd_deque_remove,
    .deque_get = rd_deque_get,
    .deque_set = rd_deque_set,
    .deque_size = rd_deque_size,
    .deque_size_hint = rd_deque_size_hint,
    .deque_close = rd_deque_close,
    .deque_is_closed = rd_deque_is_closed,
    .deque_snapshot = rd_deque_snapshot,
    .deque_replace = rd_deque_replace,
    .map_get = rd_map_get,
    .map_set = rd_map_set,
    .map_size = rd_map_size,
    .map_snapshot = rd_map_snapshot,
    .counter_add = rd_counter_add,
    .counter_get = rd_counter_get,
    .counter_set = rd_counter_set,
    .cell_get = rd_cell_get,
    .cell_set = rd_cell_set,
    .printer_lock = rd_printer_lock,
    .printer_unlock = rd_printer_unlock,
    .printer_write = rd_printer_write,
    .read_lock = rd_read_lock,
    .read_unlock = rd_read_unlock,
    .write_lock = rd_write_lock,
    .write_unlock = rd_write_unlock,
};
