/*
** redis.h - what the files of the Redis backend share: clusters, one
** connection per thread per cluster, commands and scripts that report
** failures as TN_E* codes with a readable message, the stored-value format,
** and the remote object every cluster structure is.
**
** Pure C on hiredis; nothing here knows Lua. The core forwards every
** public operation on an object whose header carries `rd_backend` here.
*/
#ifndef TN_REDIS_H
#define TN_REDIS_H

#include <hiredis/hiredis.h>

#include "../core/internal.h"

/* How long a callback-lock lease lasts without renewal (milliseconds), and
** how often the renewal thread renews what this process holds. */
#define RD_LEASE_MS 10000
#define RD_RENEW_MS 3000

/*
** The longest single block (seconds) of a wait. A wait longer than this
** re-checks its condition and blocks again: a safety net for a wake-up
** token lost with a client that crashed holding it; it is not polling.
*/
#define RD_BLOCK_SLICE 5.0

/* The reply timeout of a cluster opened without one (seconds). */
#define RD_DEFAULT_TIMEOUT 5.0

/*
** Passed as a script's deadline: the script has none (unlocks and lease
** renewals, which are right whenever they run). Its reply is still waited
** for at most the cluster's timeout.
*/
#define RD_NO_EXPIRY (-1.0)

struct tn_cluster {
  char *url;    /* redis://host:port/db or unix:///path?db=N: never the
                ** credentials */
  char *host;   /* parsed from the URL (tn_url_parse); NULL: a socket */
  int port;
  char *path;   /* a Unix socket's path; NULL: TCP */
  char *where;  /* "host:port" or the socket's path, for messages */
  char *user;     /* NULL: AUTH password (the default user) */
  char *password; /* NULL: no AUTH; percent-decoded */
  int db;
  char *prefix;
  double timeout; /* > 0, finite: each command's reply bound */
  /* trusted = false: every value read gets RD_DATA_ONLY in front. Part of
  ** the intern key, and inherited by the objects a value names, so bytes
  ** read through such a cluster never decode into code. */
  bool data_only;
  struct tn_cluster *next; /* the intern list */
};

/*
** The byte put in front of the blob of every value a data-only cluster
** reads: the Lua codec (src/lua/codec.h, TN_CODEC_DATA_ONLY: the same
** byte) then decodes it as plain data only. When such a blob goes back
** to the server as it is (sort reorders the blobs it read), the mark is
** left out again (rd_value_encode_read).
*/
#define RD_DATA_ONLY 0xfe

/* tn_cluster_open, and whether its values decode as data only (the Lua
** option trusted = false; tn_cluster_open is data_only = false). */
int rd_cluster_open(const char *url, const char *prefix, double timeout,
                    bool data_only, tn_cluster_t **out);

/* A structure on a server: the core header plus where it lives. */
typedef struct rd_object {
  tn_object_t object;
  tn_cluster_t *cluster; /* immortal */
  char *name;            /* as the user gave it */
  char *key;             /* prefix .. name: the main key */
  size_t keylen;
  tn_printer_t *local;   /* printer: the local output */
  _Atomic uint64_t array_shape; /* array: type << 56 | n; 0: not known yet */
  struct rd_object *next; /* the intern list */
} rd_object_t;

#define RD(o) ((rd_object_t *)(o))

extern const tn_backend_t rd_backend;

/* The remote object (cluster, type, name), interned: the same triple gives
** the same object while it lives. A new reference; TN_ENOMEM. */
int rd_object_get(tn_cluster_t *c, tn_type_t type, const char *name,
                  tn_object_t **out);

/* The main key with a suffix ("tunnel:jobs" + ":meta"), in `buf`. */
const char *rd_subkey(const rd_object_t *o, const char *suffix, char *buf,
                      size_t size);

/* ---- commands ------------------------------------------------------------ */

/*
** Run one command on the calling thread's connection to `c` (connecting,
** or reconnecting after a failure, first). `block` is how long the
** command may block on the server (0 for ordinary commands), `deadline`
** the calling operation's own (a tn_clock() value; INFINITY: none). The
** reply is waited for at most the cluster's timeout, and not much past a
** finite deadline (rd_expiry). On TN_OK `*reply` is the reply
** (freeReplyObject it); an error reply is TN_EIO too. Every failure sets
** tn_last_error: "redis HOST:PORT: CMD KEY: why".
*/
int rd_command(tn_cluster_t *c, double block, double deadline,
               redisReply **reply, int argc, const char **argv,
               const size_t *lens);

/*
** Deadlines of one command sent now, for an operation whose own deadline
** is `deadline` (INFINITY: none). A script must not act after
** rd_expiry() (it gets that instant in server time); the client waits
** for the reply a margin after it, so a script that
** starts after the client gave up always finds itself late.
**   no deadline:  expiry = now + timeout - margin, reply by now + timeout
**   a deadline:   expiry = the deadline, kept within [now + margin,
**                 now + timeout - margin]; reply by expiry + margin
** margin = min(0.5 s, timeout / 2).
*/
double rd_expiry(const tn_cluster_t *c, double deadline, double now);
double rd_margin(const tn_cluster_t *c);

/* A server-side script: its source and, once loaded, its SHA1. */
typedef struct rd_script {
  const char *name; /* for errors: "vector.push" */
  const char *source;
  char sha[41];
  int loaded;
} rd_script_t;

/*
** EVALSHA `script` with `nkeys` keys and `nargs` arguments (loading it
** first, and again after NOSCRIPT when the server restarted), plus one
** more argument: the script's expiry in server milliseconds
** (rd_expiry of `deadline`; RD_NO_EXPIRY: none), which RD_PROLOGUE takes
** off ARGV. A script that starts later changes nothing and replies
** "TUNNEL-LATE": TN_ETIMEDOUT when `deadline` has passed, else TN_EIO
** ("... not applied"). As rd_command otherwise.
*/
int rd_eval(tn_cluster_t *c, rd_script_t *script, double deadline,
            redisReply **reply, int nkeys, const char **keys, int nargs,
            const char **args, const size_t *arglens);

/*
** The start of every script: takes the expiry off ARGV, reads the server
** clock into `now` (milliseconds; TIME before writes needs effects
** replication, the default since Redis 5 and the only mode in 7), and
** returns the TUNNEL-LATE error, before any write, if it is past the
** expiry. Scripts validate what they read before their first write and
** answer bad stored state with a TUNNEL-CORRUPT error reply, so a failed
** script has changed nothing (Redis keeps the writes a script made before
** it failed).
*/
#define RD_PROLOGUE                                                         \
  "local expiry = tonumber(table.remove(ARGV))\n"                           \
  "if redis.replicate_commands then redis.replicate_commands() end\n"       \
  "local now_t = redis.call('TIME')\n"                                      \
  "local now = tonumber(now_t[1]) * 1000 + math.floor(tonumber(now_t[2]) / 1000)\n" \
  "if expiry >= 0 and now > expiry then return redis.error_reply("          \
  "'TUNNEL-LATE the server ran the command after its deadline: nothing "   \
  "was changed') end\n"

/* TN_EPROTO with the message "redis HOST:PORT: WHAT: unexpected reply". */
int rd_bad_reply(tn_cluster_t *c, const char *what, const redisReply *r);

/* ---- stored values ---------------------------------------------------------- */

/*
** Encode blob `b` (NULL: nil) as the bytes stored in Redis: a header
** ("TN", format 1, flags), the descriptors of the objects it refers to
** (cluster objects only: TN_ELOCAL otherwise), then its bytes. `*out` is
** malloc'd (free it). TN_OK, TN_ELOCAL, TN_ENOMEM.
*/
int rd_value_encode(const tn_blob_t *b, char **out, size_t *len);

/* rd_value_encode of a blob read through a cluster, going back as it is:
** with `data_only` (that cluster's), its RD_DATA_ONLY mark is left out.
** (Only for blobs read so: a C caller's own bytes may start with any
** byte.) */
int rd_value_encode_read(const tn_blob_t *b, bool data_only, char **out,
                         size_t *len);

/* Decode stored bytes into a new blob (NULL for nil), materializing the
** objects it refers to. TN_EPROTO for bytes that are not a stored value
** (with a message naming `c` and `what`), TN_ENOMEM. */
int rd_value_decode(tn_cluster_t *c, const char *what, const char *data,
                    size_t len, tn_blob_t **out);

/* The encoding of nil (for padding a list). */
extern const char rd_nil_value[4];

/* ---- deadlines ------------------------------------------------------------ */

/* Seconds left before `deadline` (a tn_clock() value; INFINITY: forever),
** never below 0. */
double rd_left(double deadline);

/* The next block of a wait: min(left, RD_BLOCK_SLICE), at least 10 ms;
** at most RD_CANCEL_SLICE for a thread with a cancel token, so a cancel
** or an interrupt is noticed that soon. */
#define RD_CANCEL_SLICE 0.25
double rd_slice(double deadline);

/*
** One slice of a wait for a wake-up token: BLPOP (BRPOP if !front) on `key`
** for rd_slice(deadline). TN_OK when woken or the slice ended (re-check
** either way); TN_ECANCELED / TN_EINTR from the thread's cancel token
** (checked first); or a connection failure.
*/
int rd_wait_token(tn_cluster_t *c, const char *key, double deadline,
                  bool front);

/* ---- per-structure entry points (the backend table is in redis.c) -------- */

int rd_deque_create(rd_object_t *o, size_t hint);
int rd_deque_push(tn_deque_t *d, tn_blob_t *b, double timeout, bool front);
int rd_deque_pop(tn_deque_t *d, tn_blob_t **out, double timeout, bool front);
int rd_deque_insert(tn_deque_t *d, size_t index, tn_blob_t *b, double timeout);
int rd_deque_remove(tn_deque_t *d, size_t index, tn_blob_t **out,
                    double timeout);
int rd_deque_get(tn_deque_t *d, size_t index, tn_blob_t **out, double timeout);
int rd_deque_set(tn_deque_t *d, size_t index, tn_blob_t *b, tn_blob_t **old,
                 double timeout);
int rd_deque_push_many(tn_deque_t *d, tn_blob_t *const *items, size_t n,
                       double timeout);
int rd_deque_pop_many(tn_deque_t *d, size_t max, tn_blob_t ***items,
                      size_t *n, double timeout);
int rd_deque_select(tn_deque_t *const *ds, size_t n, size_t *index,
                    tn_blob_t **out, double timeout);
size_t rd_deque_size(tn_deque_t *d);
size_t rd_deque_size_hint(const tn_deque_t *d);
void rd_deque_close(tn_deque_t *d);
int rd_deque_is_closed(tn_deque_t *d);
int rd_deque_snapshot(tn_deque_t *d, tn_blob_t ***items, size_t *n,
                      uint64_t *version, double timeout);
int rd_deque_replace(tn_deque_t *d, tn_blob_t **items, size_t n,
                     uint64_t version, double timeout);

int rd_map_get(tn_map_t *m, const void *key, size_t len, tn_blob_t **out,
               double timeout);
int rd_map_set(tn_map_t *m, const void *key, size_t len, tn_blob_t *b,
               tn_blob_t **old, double timeout);
size_t rd_map_size(tn_map_t *m);
int rd_map_snapshot(tn_map_t *m, tn_map_entry_t **entries, size_t *n,
                    double timeout);

int rd_counter_create(rd_object_t *o, const int64_t *init);
int64_t rd_counter_add(tn_counter_t *c, int64_t delta);
int64_t rd_counter_get(tn_counter_t *c);
int64_t rd_counter_set(tn_counter_t *c, int64_t value);
int rd_counter_wait(tn_counter_t *c, int64_t target, double timeout,
                    int64_t *value);

/* barrier.c: the barrier, and the wake-up keys that a waiter blocks on
** (semaphore and counter waits too). rd_wake_key: a new key
** "K:wake:<pid>-<nonce>-<n>" for one wait on `o`. rd_wake_wait: one BLPOP
** slice of `block` seconds on it (checking the cancel token first);
** `*got` says whether a value came (copied into buf). */
void rd_wake_key(const rd_object_t *o, char *buf, size_t size);
int rd_wake_wait(tn_cluster_t *c, const char *key, double block,
                 double deadline, char *buf, size_t size, bool *got);
int rd_barrier_create(rd_object_t *o, int parties);
int rd_barrier_wait(tn_barrier_t *b, double timeout, int *index);
int rd_barrier_reset(tn_barrier_t *b);
int rd_barrier_state(tn_barrier_t *b, int *parties, int *waiting,
                     int *broken);

/* semaphore.c; rd_semaphore_renew extends the leases of every permit this
** process holds (atomic.c's renewal thread calls it; rd_renewer_start
** starts that thread once). */
int rd_semaphore_create(rd_object_t *o, int64_t permits);
int rd_semaphore_acquire(tn_semaphore_t *s, int64_t n, double timeout);
int rd_semaphore_release(tn_semaphore_t *s, int64_t n);
int rd_semaphore_available(tn_semaphore_t *s, int64_t *available,
                           int64_t *permits);
void rd_semaphore_renew(void);
void rd_renewer_start(void);

int rd_cell_create(rd_object_t *o, tn_blob_t *init);
int rd_cell_get(tn_cell_t *c, tn_blob_t **out, double timeout);
int rd_cell_set(tn_cell_t *c, tn_blob_t *b, double timeout);
int rd_read_lock(tn_object_t *o, double timeout);
void rd_read_unlock(tn_object_t *o);
int rd_write_lock(tn_object_t *o, double timeout);
void rd_write_unlock(tn_object_t *o);
/* The token of this thread's write lease on `o`, or NULL. */
const char *rd_write_token(const tn_object_t *o);

int rd_pqueue_create(rd_object_t *o, size_t hint);
int rd_pqueue_push(tn_pqueue_t *q, double priority, tn_blob_t *b,
                   double timeout);
int rd_pqueue_pop(tn_pqueue_t *q, tn_blob_t **out, double *priority,
                  double timeout);
int rd_pqueue_unpop(tn_pqueue_t *q, double priority, tn_blob_t *b);
size_t rd_pqueue_size(tn_pqueue_t *q);
size_t rd_pqueue_size_hint(const tn_pqueue_t *q);
int rd_pqueue_close(tn_pqueue_t *q);
int rd_pqueue_is_closed(tn_pqueue_t *q);

/* array.c: tunnel.Array on a cluster (a parameter-server buffer). */
int rd_array_shape(tn_array_t *a, tn_dtype_t *type, size_t *n);
int rd_array_get(tn_array_t *a, size_t i, tn_elem_t *out);
int rd_array_set(tn_array_t *a, size_t i, tn_elem_t v);
int rd_array_atomic_add(tn_array_t *a, size_t i, tn_elem_t delta,
                        tn_elem_t *old);
int rd_array_fetch(tn_array_t *a, tn_array_t **copy, uint64_t *version);
int rd_array_store(tn_array_t *a, const tn_array_t *src);
int rd_array_add(tn_array_t *a, const tn_array_t *src, tn_elem_t s);
int rd_array_version(tn_array_t *a, uint64_t *version);

int rd_printer_lock(tn_printer_t *p, double timeout);
void rd_printer_unlock(tn_printer_t *p);
int rd_printer_write(tn_printer_t *p, const void *data, size_t len,
                     double timeout);

#endif
