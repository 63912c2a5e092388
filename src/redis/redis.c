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
**   connections to them are per thread and die with the thread (a pooled
**   block thread keeps its own while parked, up to 2 s: block.c).
** - URLs (redis://, unix://) are parsed by src/redis/url.c; no TLS.
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
  double most = tn_cancel_current() != NULL ? RD_CANCEL_SLICE : RD_BLOCK_SLICE;
  if (left > most) left = most;
  return left < 0.01 ? 0.01 : left;
}

int rd_wait_token(tn_cluster_t *c, const char *key, double deadline,
                  bool front) {
  int rc = tn_cancel_check();
  if (rc != TN_OK) return rc;
  double block = rd_slice(deadline);
  char secs[32];
  snprintf(secs, sizeof secs, "%.3f", block);
  const char *argv[] = {front ? "BLPOP" : "BRPOP", key, secs};
  redisReply *r;
  rc = rd_command(c, block, deadline, &r, 3, argv, NULL);
  if (rc == TN_OK) freeReplyObject(r);
  return rc;
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
  free(c->path);
  free(c->where);
  free(c->user);
  free(c->password);
  free(c->prefix);
  free(c);
}

static double normal_timeout(double timeout) {
  return timeout > 0 && timeout < 1e9 ? timeout : RD_DEFAULT_TIMEOUT;
}

/*
** Parse `url` (tn_url_parse, src/redis/url.c) into a new cluster (not
** interned). The cluster's url is the one rebuilt without the
** credentials: it is what tostring shows and what a descriptor stores.
** TN_EINVAL, TN_ENOMEM.
*/
static int cluster_parse(const char *url, const char *prefix, double timeout,
                         tn_cluster_t **out) {
  tn_url_t u;
  int rc = tn_url_parse(url, &u);
  if (rc != TN_OK) return rc;
  tn_cluster_t *c = calloc(1, sizeof *c);
  if (c == NULL) {
    tn_url_free(&u);
    return TN_ENOMEM;
  }
  c->url = u.url;
  c->host = u.host;
  c->port = u.port;
  c->path = u.path;
  c->user = u.user;
  c->password = u.password;
  c->db = u.db;
  size_t wl = (c->path != NULL ? strlen(c->path) : strlen(c->host)) + 16;
  c->where = malloc(wl);
  c->prefix = strdup(prefix != NULL ? prefix : "tunnel:");
  if (c->where == NULL || c->prefix == NULL) {
    cluster_free(c);
    return TN_ENOMEM;
  }
  if (c->path != NULL)
    snprintf(c->where, wl, "%s", c->path);
  else
    snprintf(c->where, wl, strchr(c->host, ':') != NULL ? "[%s]:%d" : "%s:%d",
             c->host, c->port);
  c->timeout = normal_timeout(timeout);
  *out = c;
  return TN_OK;
}

static bool same_str(const char *a, const char *b) {
  return a == NULL ? b == NULL : b != NULL && strcmp(a, b) == 0;
}

static bool same_server(const tn_cluster_t *a, const tn_cluster_t *b) {
  return same_str(a->host, b->host) && a->port == b->port &&
         same_str(a->path, b->path);
}

/* The interned cluster equal to `want` (server, database, credentials,
** prefix and, if `match_timeout`, timeout); NULL if none. Registry mutex
** held. */
static tn_cluster_t *cluster_find(const tn_cluster_t *want,
                                  bool match_timeout) {
  for (tn_cluster_t *c = clusters; c != NULL; c = c->next)
    if (same_server(c, want) && c->db == want->db &&
        strcmp(c->prefix, want->prefix) == 0 &&
        same_str(c->user, want->user) &&
        same_str(c->password, want->password) &&
        c->data_only == want->data_only &&
        (!match_timeout || c->timeout == want->timeout))
      return c;
  return NULL;
}

/* Intern `c` (parsed, taken over) without checking the server. */
static tn_cluster_t *cluster_intern(tn_cluster_t *c, bool match_timeout) {
  pthread_mutex_lock(&registry_mutex);
  tn_cluster_t *other = cluster_find(c, match_timeout);
  if (other == NULL) {
    c->next = clusters;
    clusters = c;
  }
  pthread_mutex_unlock(&registry_mutex);
  if (other != NULL) {
    cluster_free(c);
    c = other;
  }
  return c;
}

/*
** The cluster a descriptor names. Descriptors hold no credentials (the
** URL is redis://host:port/db or unix:///path?db=N), so the receiver
** supplies them: the cluster `near` (the one the value was read from)
** when it is the same server, database and prefix; else an interned
** cluster of this process for the same server and database and prefix;
** else the credentials of any interned cluster of the same server (one
** password per server); else none (the server then answers NOAUTH if it
** needs a password). A descriptor written by an older tunnel may carry a
** password: it is used.
*/
static int cluster_for_descriptor(tn_cluster_t *near, const char *url,
                                  const char *prefix, tn_cluster_t **out) {
  tn_cluster_t *want;
  int rc = cluster_parse(url, prefix, near->timeout, &want);
  if (rc != TN_OK) return rc;
  want->data_only = near->data_only; /* inherited: see redis.h */
  if (want->password == NULL) {
    pthread_mutex_lock(&registry_mutex);
    tn_cluster_t *found = NULL, *server = NULL;
    if (same_server(near, want) && near->db == want->db &&
        strcmp(near->prefix, want->prefix) == 0)
      found = near;
    for (tn_cluster_t *c = clusters; found == NULL && c != NULL; c = c->next)
      if (same_server(c, want) && c->db == want->db &&
          strcmp(c->prefix, want->prefix) == 0 &&
          c->data_only == want->data_only)
        found = c;
    if (same_server(near, want) && near->password != NULL) server = near;
    for (tn_cluster_t *c = clusters; server == NULL && c != NULL; c = c->next)
      if (same_server(c, want) && c->password != NULL) server = c;
    if (found == NULL && server != NULL) {
      want->password = strdup(server->password);
      want->user = server->user != NULL ? strdup(server->user) : NULL;
      if (want->password == NULL || (server->user != NULL && !want->user))
        found = NULL, rc = TN_ENOMEM;
    }
    pthread_mutex_unlock(&registry_mutex);
    if (found != NULL || rc != TN_OK) {
      cluster_free(want);
      if (rc != TN_OK) return rc;
      *out = found;
      return TN_OK;
    }
  }
  *out = cluster_intern(want, false);
  return TN_OK;
}

/*
** Intern, then PING through this thread's connection, so that a wrong
** host, password or database fails here, with its message, rather than
** at the first operation.
*/
int rd_cluster_open(const char *url, const char *prefix, double timeout,
                    bool data_only, tn_cluster_t **out) {
  tn_cluster_t *c;
  int rc = cluster_parse(url, prefix, timeout, &c);
  if (rc != TN_OK) return rc;
  c->data_only = data_only;
  c = cluster_intern(c, true);
  const char *argv[] = {"PING"};
  redisReply *r;
  rc = rd_command(c, 0, INFINITY, &r, 1, argv, NULL);
  if (rc != TN_OK) return rc;
  freeReplyObject(r);
  *out = c;
  return TN_OK;
}

int tn_cluster_open(const char *url, const char *prefix, double timeout,
                    tn_cluster_t **out) {
  return rd_cluster_open(url, prefix, timeout, false, out);
}

const char *tn_cluster_url(const tn_cluster_t *c) { return c->url; }
const char *tn_cluster_prefix(const tn_cluster_t *c) { return c->prefix; }
double tn_cluster_timeout(const tn_cluster_t *c) { return c->timeout; }

/* ---- connections ------------------------------------------------------------- */

/* How often a connection measures the server's clock again (seconds):
** the two clocks drift apart (NTP slews the server's by up to 0.05%). */
#define RD_CLOCK_CHECK 30.0

typedef struct rd_conn {
  tn_cluster_t *cluster;
  redisContext *ctx; /* NULL: connect on the next call */
  double offset;     /* server time (TIME, seconds) - tn_clock() */
  double offset_at;  /* tn_clock() when measured */
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

/* Run a command on a connected context, its reply due by `until` (a
** tn_clock() value); NULL reply: I/O failure or timeout. */
static redisReply *conn_run(rd_conn_t *k, double until, int argc,
                            const char **argv, const size_t *lens) {
  double left = until - tn_clock();
  redisSetTimeout(k->ctx, to_timeval(left > 0.001 ? left : 0.001));
  return redisCommandArgv(k->ctx, argc, argv, lens);
}

/* A failed command's message: "redis HOST:PORT: WHAT: why"; drops the
** connection (its state is unknown). */
static int conn_failed(tn_cluster_t *c, rd_conn_t *k, const char *what) {
  const char *why = k->ctx->err == REDIS_ERR_IO &&
                            (errno == EAGAIN || errno == EWOULDBLOCK)
                        ? "timed out"
                        : k->ctx->errstr;
  if (k->ctx->err == REDIS_ERR_EOF) why = "connection lost";
  int rc = tn_error_set(TN_EIO, "redis %s: %s: %s", c->where,
                        what, why);
  conn_drop(k);
  return rc;
}

/* Learn the server's clock: offset = TIME - the middle of the round
** trip (off by at most half of it, far below the deadlines' margin). */
static int conn_clock(tn_cluster_t *c, rd_conn_t *k, const char *what,
                      double until) {
  const char *argv[] = {"TIME"};
  double t0 = tn_clock();
  redisReply *r = conn_run(k, until, 1, argv, NULL);
  double t1 = tn_clock();
  if (r == NULL) return conn_failed(c, k, what);
  int rc = TN_OK;
  if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
      r->element[0]->type == REDIS_REPLY_STRING &&
      r->element[1]->type == REDIS_REPLY_STRING) {
    double server = strtod(r->element[0]->str, NULL) +
                    strtod(r->element[1]->str, NULL) * 1e-6;
    k->offset = server - (t0 + t1) / 2;
    k->offset_at = t1;
  } else {
    rc = rd_bad_reply(c, "TIME", r);
    conn_drop(k);
  }
  freeReplyObject(r);
  return rc;
}

/* Connect `k`, then AUTH, SELECT and TIME, all by `until` (the reply
** deadline of the command that needs the connection). On failure the
** context is dropped. */
static int conn_open(tn_cluster_t *c, rd_conn_t *k, const char *what,
                     double until) {
  double left = until - tn_clock();
  struct timeval tv = to_timeval(left > 0.001 ? left : 0.001);
  k->ctx = c->path != NULL ? redisConnectUnixWithTimeout(c->path, tv)
                           : redisConnectWithTimeout(c->host, c->port, tv);
  if (k->ctx == NULL) return TN_ENOMEM;
  if (k->ctx->err) {
    int rc = tn_error_set(TN_EIO, "redis %s: %s: %s", c->where, what,
                          k->ctx->errstr);
    conn_drop(k);
    return rc;
  }
  /* TCP keepalive notices a peer gone without a word; a Unix socket
  ** needs none (hiredis 0.14 would fail the context on its TCP options). */
  if (c->path == NULL) redisEnableKeepAlive(k->ctx);
  char dbs[16];
  snprintf(dbs, sizeof dbs, "%d", c->db);
  const char *auth[] = {"AUTH", c->user != NULL ? c->user : c->password,
                        c->password};
  const char *sel[] = {"SELECT", dbs};
  for (int step = 0; step < 2; step++) {
    if (step == 0 && c->password == NULL) continue;
    if (step == 1 && c->db == 0) continue;
    int argc = step == 1 ? 2 : c->user != NULL ? 3 : 2;
    redisReply *r = conn_run(k, until, argc, step == 0 ? auth : sel, NULL);
    if (r == NULL) return conn_failed(c, k, step == 0 ? "AUTH" : "SELECT");
    if (r->type == REDIS_REPLY_ERROR) {
      int rc = tn_error_set(TN_EIO, "redis %s: %s: %s", c->where,
                            step == 0 ? "AUTH" : "SELECT", r->str);
      freeReplyObject(r);
      conn_drop(k);
      return rc;
    }
    freeReplyObject(r);
  }
  return conn_clock(c, k, what, until);
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

/* This thread's open connection to `c` (connecting first, by `until`). */
static int conn_ready(tn_cluster_t *c, const char *what, double until,
                      rd_conn_t **out) {
  rd_conn_t *k = conn_of(c);
  if (k == NULL) return TN_ENOMEM;
  if (k->ctx != NULL && conn_stale(k)) conn_drop(k);
  if (k->ctx == NULL) {
    int rc = conn_open(c, k, what, until);
    if (rc != TN_OK) return rc;
  }
  *out = k;
  return TN_OK;
}

double rd_margin(const tn_cluster_t *c) {
  return c->timeout / 2 < 0.5 ? c->timeout / 2 : 0.5;
}

double rd_expiry(const tn_cluster_t *c, double deadline, double now) {
  double m = rd_margin(c), lo = now + m, hi = now + c->timeout - m;
  if (isinf(deadline) || deadline > hi) return hi;
  return deadline < lo ? lo : deadline;
}

/* When the reply of a command sent now is due (see redis.h). A blocking
** command gets its block on top: the server times it out itself, up to
** 1/hz late (0.1 s at the default hz), hence at least 0.25 s. */
static double reply_by(const tn_cluster_t *c, double block, double deadline,
                       double now) {
  if (block > 0) {
    double m = rd_margin(c) < 0.25 ? 0.25 : rd_margin(c);
    return now + block + (isinf(deadline) ? c->timeout : m);
  }
  return rd_expiry(c, deadline, now) + rd_margin(c);
}

/* The reply to `argv` (an error reply is TN_EIO). */
static int command_on(tn_cluster_t *c, rd_conn_t *k, double until,
                      const char *what, redisReply **reply, int argc,
                      const char **argv, const size_t *lens) {
  redisReply *r = conn_run(k, until, argc, argv, lens);
  if (r == NULL) return conn_failed(c, k, what);
  if (r->type == REDIS_REPLY_ERROR) {
    int rc = tn_error_set(TN_EIO, "redis %s: %s: %s", c->where,
                          what, r->str);
    freeReplyObject(r);
    return rc;
  }
  *reply = r;
  return TN_OK;
}

int rd_command(tn_cluster_t *c, double block, double deadline,
               redisReply **reply, int argc, const char **argv,
               const size_t *lens) {
  char what[128];
  describe(what, sizeof what, argc, argv, lens);
  double until = reply_by(c, block, deadline, tn_clock());
  rd_conn_t *k;
  int rc = conn_ready(c, what, until, &k);
  if (rc != TN_OK) return rc;
  if (block > 0) until = reply_by(c, block, deadline, tn_clock());
  return command_on(c, k, until, what, reply, argc, argv, lens);
}

int rd_bad_reply(tn_cluster_t *c, const char *what, const redisReply *r) {
  return tn_error_set(TN_EPROTO, "redis %s: %s: unexpected reply (type %d)",
                      c->where, what, r != NULL ? r->type : -1);
}

/* ---- scripts ------------------------------------------------------------------ */

static pthread_mutex_t script_mutex = PTHREAD_MUTEX_INITIALIZER;

static int script_load(tn_cluster_t *c, rd_script_t *s, double deadline) {
  const char *argv[] = {"SCRIPT", "LOAD", s->source};
  redisReply *r;
  int rc = rd_command(c, 0, deadline == RD_NO_EXPIRY ? INFINITY : deadline,
                      &r, 3, argv, NULL);
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

/* One EVALSHA of `argv` (its last argument, `exp`, is the expiry: written
** here, in server milliseconds, once the connection is up). */
static int eval_once(tn_cluster_t *c, double deadline, char *exp,
                     redisReply **reply, int argc, const char **argv,
                     size_t *lens) {
  /* The deadlines are fixed before connecting: a reconnection (and the
  ** clock check) counts against them. */
  double now = tn_clock();
  double e = deadline == RD_NO_EXPIRY ? 0 : rd_expiry(c, deadline, now);
  double until = deadline == RD_NO_EXPIRY ? now + c->timeout
                                          : e + rd_margin(c);
  rd_conn_t *k;
  int rc = conn_ready(c, "EVALSHA", until, &k);
  if (rc != TN_OK) return rc;
  if (deadline != RD_NO_EXPIRY && tn_clock() - k->offset_at > RD_CLOCK_CHECK &&
      (rc = conn_clock(c, k, "EVALSHA", until)) != TN_OK)
    return rc;
  if (deadline == RD_NO_EXPIRY)
    snprintf(exp, 32, "-1");
  else
    snprintf(exp, 32, "%.0f", floor((e + k->offset) * 1000));
  lens[argc - 1] = strlen(exp);
  return command_on(c, k, until, "EVALSHA", reply, argc, argv, lens);
}

int rd_eval(tn_cluster_t *c, rd_script_t *s, double deadline,
            redisReply **reply, int nkeys, const char **keys, int nargs,
            const char **args, const size_t *arglens) {
  int argc = 3 + nkeys + nargs + 1;
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
  char nk[16], sha[41], exp[32];
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
  argv[argc - 1] = exp;
  int rc = TN_OK;
  bool reloaded = false;
  for (;;) {
    pthread_mutex_lock(&script_mutex);
    int loaded = s->loaded;
    memcpy(sha, s->sha, sizeof sha);
    pthread_mutex_unlock(&script_mutex);
    if (!loaded) {
      if ((rc = script_load(c, s, deadline)) != TN_OK) {
        const char *why = strstr(tn_last_error(), "SCRIPT LOAD: ");
        if (why != NULL) {
          char tmp[400];
          snprintf(tmp, sizeof tmp, "%s", why + 13);
          tn_error_set(rc, "redis %s: %s %.200s: %s (loading the script)",
                       c->where, s->name, nkeys > 0 ? keys[0] : "",
                       tmp);
        }
        break;
      }
      continue;
    }
    redisReply *r;
    rc = eval_once(c, deadline, exp, &r, argc, argv, lens);
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
    const char *key = nkeys > 0 ? keys[0] : "";
    if (rc == TN_EIO && strstr(tn_last_error(), "TUNNEL-LATE") != NULL) {
      /* Late: the script changed nothing. Past the caller's own deadline
      ** that is an ordinary timeout. */
      if (!isinf(deadline) && deadline != RD_NO_EXPIRY &&
          tn_clock() >= deadline)
        rc = tn_error_set(TN_ETIMEDOUT, "redis %s: %s %.200s: timed out",
                          c->where, s->name, key);
      else
        tn_error_set(rc,
                     "redis %s: %s %.200s: timed out (the server ran it "
                     "after its deadline: nothing was changed)",
                     c->where, s->name, key);
      break;
    }
    /* "EVALSHA: why" reads better as "<script> <key>: why"; our own
    ** error replies lose their tag. */
    const char *why = strstr(tn_last_error(), "EVALSHA");
    if (why != NULL && (why = strchr(why, ':')) != NULL) {
      char tmp[400];
      why += 2;
      if (strncmp(why, "TUNNEL-CORRUPT ", 15) == 0) why += 15;
      snprintf(tmp, sizeof tmp, "%s", why);
      tn_error_set(rc, "redis %s: %s %.200s: %s", c->where,
                   s->name, key, tmp);
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
                        "redis %s: %s: the stored value was not written "
                        "by tunnel",
                        c->where, what);
  if (p[2] != VALUE_FORMAT)
    return tn_error_set(TN_EPROTO,
                        "redis %s: %s: the stored value has format %d "
                        "(this tunnel reads format %d)",
                        c->where, what, p[2], VALUE_FORMAT);
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
    rc = cluster_for_descriptor(c, url, prefix, &rc_cluster);
    if (rc == TN_EINVAL) rc = TN_EPROTO; /* not a URL: corrupt */
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
                      "redis %s: %s: the stored value is corrupt",
                      c->where, what);
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
  return type == TN_TYPE_ARRAY ||
         type == TN_TYPE_DEQUE || type == TN_TYPE_HASH ||
         type == TN_TYPE_COUNTER || type == TN_TYPE_ATOMIC ||
         type == TN_TYPE_PRINTER || type == TN_TYPE_PQUEUE ||
         type == TN_TYPE_BARRIER || type == TN_TYPE_SEMAPHORE;
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

int tn_cluster_pqueue(tn_cluster_t *c, const char *name, size_t size_hint,
                      tn_pqueue_t **out) {
  int rc = check_name(name);
  if (rc != TN_OK) return rc;
  if (size_hint == 0) return TN_EINVAL;
  tn_object_t *o;
  if ((rc = rd_object_get(c, TN_TYPE_PQUEUE, name, &o)) != TN_OK) return rc;
  if ((rc = rd_pqueue_create(RD(o), size_hint)) != TN_OK) {
    tn_object_release(o);
    return rc;
  }
  *out = (tn_pqueue_t *)o;
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
    .deque_push_many = rd_deque_push_many,
    .deque_pop_many = rd_deque_pop_many,
    .deque_select = rd_deque_select,
    .map_get = rd_map_get,
    .map_set = rd_map_set,
    .map_size = rd_map_size,
    .map_snapshot = rd_map_snapshot,
    .counter_add = rd_counter_add,
    .counter_get = rd_counter_get,
    .counter_set = rd_counter_set,
    .counter_wait = rd_counter_wait,
    .barrier_wait = rd_barrier_wait,
    .barrier_reset = rd_barrier_reset,
    .barrier_state = rd_barrier_state,
    .semaphore_acquire = rd_semaphore_acquire,
    .semaphore_release = rd_semaphore_release,
    .semaphore_available = rd_semaphore_available,
    .cell_get = rd_cell_get,
    .cell_set = rd_cell_set,
    .printer_lock = rd_printer_lock,
    .printer_unlock = rd_printer_unlock,
    .printer_write = rd_printer_write,
    .array_shape = rd_array_shape,
    .array_get = rd_array_get,
    .array_set = rd_array_set,
    .array_atomic_add = rd_array_atomic_add,
    .array_fetch = rd_array_fetch,
    .array_store = rd_array_store,
    .array_add = rd_array_add,
    .array_version = rd_array_version,
    .read_lock = rd_read_lock,
    .read_unlock = rd_read_unlock,
    .write_lock = rd_write_lock,
    .write_unlock = rd_write_unlock,
    .pqueue_push = rd_pqueue_push,
    .pqueue_pop = rd_pqueue_pop,
    .pqueue_unpop = rd_pqueue_unpop,
    .pqueue_size = rd_pqueue_size,
    .pqueue_size_hint = rd_pqueue_size_hint,
    .pqueue_close = rd_pqueue_close,
    .pqueue_is_closed = rd_pqueue_is_closed,
};
