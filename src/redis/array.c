/*
** array.c - tunnel.Array on Redis: a parameter-server buffer, one string
** of raw little-endian elements plus a hash of what it is.
**
** Keys (K = prefix .. name):
**   K        the elements' bytes (n * size, little-endian)
**   K:meta   hash: type (its name), n, v (the version: every store, add,
**            element write and atomic add moves it by one)
**   K:lock:* the callback lock (atomic.c): read/write callbacks
**
** Every operation is one script that checks what it reads before its
** first write (K:meta must hold a known type, a size and a version, K a
** string of exactly n elements; anything else is TUNNEL-CORRUPT and
** nothing changes) and carries the caller's deadline (RD_PROLOGUE). The
** client also passes the shape it knows (cached in the object from the
** first reply): an Array deleted and made again with another shape is an
** error, not a silent reinterpretation of its bytes.
**
** add(src, s) runs on the server: the script reads K and the caller's
** bytes in chunks with the struct library, adds, packs and stores, so
** concurrent adds from many processes all count (each script is atomic).
** store and add from inside a write callback are fenced: they apply only
** while this thread's write lease is still the server's (atomic.c).
**
** Caveats:
** - Server-side arithmetic (add, atomicAdd) is done in Lua numbers
**   (doubles) and rounded once to the element type: float adds can differ
**   from in-process ones in the last bit; integers are exact up to 2^53
**   and then wrap modulo 2^bits.
** - Redis strings hold at most 512 MB: so does an Array.
** - A script blocks the server while it runs: an add of 10^6 elements
**   takes a noticeable fraction of a second there (bench/, PERF notes).
*/
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "redis.h"

#define MAX_BYTES ((size_t)512 * 1024 * 1024)

/*
** Every script's start: the deadline, then the stored state checked
** (st, sn, sv: the stored type, size and version; exists), then the
** caller's shape (ARGV[1] type, ARGV[2] n) compared, for every script but
** create. `fail(why)` is the error reply of a script that changed nothing.
*/
#define CHECK                                                                \
  RD_PROLOGUE                                                                \
  "local sizes = {double = 8, float = 4, int8 = 1, int16 = 2, int32 = 4, "   \
  "int64 = 8, uint8 = 1, uint16 = 2, uint32 = 4, uint64 = 8}\n"              \
  "local function fail(why) return redis.error_reply(why .. ': nothing was changed') end\n" \
  "local function corrupt(why) return fail('TUNNEL-CORRUPT ' .. why) end\n"  \
  "local tk = redis.call('TYPE', KEYS[1])['ok']\n"                           \
  "local tm = redis.call('TYPE', KEYS[2])['ok']\n"                           \
  "local exists = tm ~= 'none'\n"                                            \
  "local st, sn, sv\n"                                                       \
  "if exists then\n"                                                         \
  "  if tm ~= 'hash' then return corrupt(KEYS[2] .. ' is a ' .. tm .. ', not a hash') end\n" \
  "  local m = redis.call('HMGET', KEYS[2], 'type', 'n', 'v')\n"             \
  "  st, sn, sv = m[1], m[2], m[3]\n"                                        \
  "  local function digits(x) return type(x) == 'string' and #x <= 15 and string.match(x, '^%d+$') ~= nil end\n" \
  "  if not sizes[st] or not digits(sn) or not digits(sv) then\n"            \
  "    return corrupt(KEYS[2] .. ' holds a type, n or v field tunnel did not write') end\n" \
  "  sn, sv = tonumber(sn), tonumber(sv)\n"                                  \
  "  if tk ~= 'string' then return corrupt(KEYS[1] .. ' is a ' .. tk .. ', not a string') end\n" \
  "  local len = redis.call('STRLEN', KEYS[1])\n"                            \
  "  if len ~= sn * sizes[st] then return corrupt(KEYS[1] .. ' holds ' .. len .. ' bytes, not ' .. sn .. ' ' .. st .. ' elements') end\n" \
  "elseif tk ~= 'none' then\n"                                               \
  "  return corrupt(KEYS[1] .. ' exists without ' .. KEYS[2])\n"             \
  "end\n"

/* The shape check of every script but create. */
#define SHAPE                                                                \
  CHECK                                                                      \
  "if not exists then return fail(KEYS[1] .. ': no such Array (it was deleted)') end\n" \
  "if st ~= ARGV[1] or sn ~= tonumber(ARGV[2]) then\n"                       \
  "  return fail(KEYS[1] .. ' now holds ' .. sn .. ' ' .. st .. ' elements, not ' .. ARGV[2] .. ' ' .. ARGV[1]) end\n" \
  "local size = sizes[st]\n"

/* The struct format of one element, and the wrap of an integer result
** (Lua numbers are doubles: exact to 2^53). */
#define ELEM                                                                 \
  "local fmts = {double = 'd', float = 'f', int8 = 'b', int16 = 'h', "       \
  "int32 = 'i4', int64 = 'i8', uint8 = 'B', uint16 = 'H', uint32 = 'I4', "   \
  "uint64 = 'I8'}\n"                                                         \
  "local f = fmts[st]\n"                                                     \
  "local wrap = function(x) return x end\n"                                  \
  "if st ~= 'double' and st ~= 'float' then\n"                               \
  "  local m = 2 ^ (8 * size)\n"                                             \
  "  local signed = string.sub(st, 1, 1) == 'i'\n"                           \
  "  wrap = function(x)\n"                                                   \
  "    x = x % m\n"                                                          \
  "    if signed and x >= m / 2 then x = x - m end\n"                        \
  "    return x\n"                                                           \
  "  end\n"                                                                  \
  "end\n"

/* The write fence: ARGV[k] is this thread's write token ('' none). */
#define FENCE(k)                                                             \
  "if ARGV[" #k "] ~= '' and redis.call('GET', KEYS[3]) ~= ARGV[" #k "] then\n" \
  "  return fail(KEYS[1] .. ': the write lock\\'s lease expired (the holder stalled)') end\n"

/* ARGV type ('' attach), n -> {type, n} stored (created if absent), or {}
** when absent and attaching. */
static rd_script_t create_script = {
    "array.create",
    CHECK "if not exists then\n"
          "  if ARGV[1] == '' then return {} end\n"
          "  local bytes = tonumber(ARGV[2]) * sizes[ARGV[1]]\n"
          "  if bytes > 0 then redis.call('SETRANGE', KEYS[1], bytes - 1, '\\0')\n"
          "  else redis.call('SET', KEYS[1], '') end\n"
          "  redis.call('HSET', KEYS[2], 'type', ARGV[1], 'n', ARGV[2], 'v', '0')\n"
          "  return {ARGV[1], ARGV[2]}\n"
          "end\n"
          "return {st, tostring(sn)}\n",
    "", 0};

/* ARGV type, n -> {version, bytes} */
static rd_script_t fetch_script = {
    "array.fetch",
    SHAPE "return {tostring(sv), redis.call('GET', KEYS[1])}\n", "", 0};

/* ARGV type, n -> version */
static rd_script_t version_script = {
    "array.version", SHAPE "return tostring(sv)\n", "", 0};

/* ARGV type, n, index -> the element's bytes */
static rd_script_t get_script = {
    "array.get",
    SHAPE "local i = tonumber(ARGV[3])\n"
          "if i >= sn then return fail(KEYS[1] .. ': index out of range') end\n"
          "return redis.call('GETRANGE', KEYS[1], i * size, i * size + size - 1)\n",
    "", 0};

/* ARGV type, n, index, bytes -> version */
static rd_script_t set_script = {
    "array.set",
    SHAPE "local i = tonumber(ARGV[3])\n"
          "if i >= sn or #ARGV[4] ~= size then return fail(KEYS[1] .. ': index out of range') end\n"
          "redis.call('SETRANGE', KEYS[1], i * size, ARGV[4])\n"
          "return redis.call('HINCRBY', KEYS[2], 'v', 1)\n",
    "", 0};

/* ARGV type, n, index, delta -> the element's bytes before */
static rd_script_t atomic_add_script = {
    "array.atomicAdd",
    SHAPE ELEM
    "local i = tonumber(ARGV[3])\n"
    "local d = tonumber(ARGV[4])\n"
    "if i >= sn or not d then return fail(KEYS[1] .. ': index out of range') end\n"
    "local old = redis.call('GETRANGE', KEYS[1], i * size, i * size + size - 1)\n"
    "local x = struct.unpack('<' .. f, old)\n"
    "redis.call('SETRANGE', KEYS[1], i * size, struct.pack('<' .. f, wrap(x + d)))\n"
    "redis.call('HINCRBY', KEYS[2], 'v', 1)\n"
    "return old\n",
    "", 0};

/* KEYS K meta lock:w; ARGV type, n, bytes, token -> version */
static rd_script_t store_script = {
    "array.store",
    SHAPE "if #ARGV[3] ~= sn * size then return fail(KEYS[1] .. ': the source has another size') end\n"
    FENCE(4)
    "redis.call('SET', KEYS[1], ARGV[3])\n"
    "return redis.call('HINCRBY', KEYS[2], 'v', 1)\n",
    "", 0};

/* KEYS K meta lock:w; ARGV type, n, bytes, scale, token -> version. In
** chunks of 1000 elements: struct returns its values on the C stack. */
static rd_script_t add_script = {
    "array.add",
    SHAPE ELEM
    "local s = tonumber(ARGV[4])\n"
    "if #ARGV[3] ~= sn * size or not s then return fail(KEYS[1] .. ': the source has another size') end\n"
    FENCE(5)
    "local cur = redis.call('GET', KEYS[1])\n"
    "local inc = ARGV[3]\n"
    "local out = {}\n"
    "local CH = 1000\n"
    "local full = '<' .. string.rep(f, CH)\n"
    "local i = 0\n"
    "while i < sn do\n"
    "  local c = math.min(CH, sn - i)\n"
    "  local fm = c == CH and full or '<' .. string.rep(f, c)\n"
    "  local a = {struct.unpack(fm, cur, i * size + 1)}\n"
    "  local b = {struct.unpack(fm, inc, i * size + 1)}\n"
    "  for j = 1, c do a[j] = wrap(a[j] + s * b[j]) end\n"
    "  out[#out + 1] = struct.pack(fm, unpack(a, 1, c))\n"
    "  i = i + c\n"
    "end\n"
    "redis.call('SET', KEYS[1], table.concat(out))\n"
    "return redis.call('HINCRBY', KEYS[2], 'v', 1)\n",
    "", 0};

/* ---- the shape, cached in the object ------------------------------------ */

static uint64_t pack_shape(tn_dtype_t t, size_t n) {
  return ((uint64_t)t << 56) | (uint64_t)n;
}

static void unpack_shape(uint64_t s, tn_dtype_t *t, size_t *n) {
  *t = (tn_dtype_t)(s >> 56);
  *n = (size_t)(s & ((UINT64_C(1) << 56) - 1));
}

/* KEYS of every script: K, K:meta, K:lock:w. */
typedef struct akeys {
  char meta[512], lockw[512];
  const char *keys[3];
} akeys_t;

static void akeys_init(akeys_t *k, rd_object_t *o) {
  k->keys[0] = o->key;
  k->keys[1] = rd_subkey(o, ":meta", k->meta, sizeof k->meta);
  k->keys[2] = rd_subkey(o, ":lock:w", k->lockw, sizeof k->lockw);
}

/* Run create_script with (type or '', n); record the stored shape. TN_OK,
** TN_EINVAL (attaching to nothing), TN_ECONFLICT (another shape), or a
** remote failure. */
static int create(rd_object_t *o, tn_dtype_t type, size_t n) {
  akeys_t k;
  akeys_init(&k, o);
  char ns[32];
  snprintf(ns, sizeof ns, "%zu", n);
  const char *args[] = {type != 0 ? tn_dtype_name(type) : "", ns};
  redisReply *r;
  int rc = rd_eval(o->cluster, &create_script, INFINITY, &r, 2, k.keys, 2,
                   args, NULL);
  if (rc != TN_OK) return rc;
  tn_dtype_t st = 0;
  size_t sn = 0;
  if (r->type == REDIS_REPLY_ARRAY && r->elements == 0) {
    freeReplyObject(r);
    return tn_error_set(TN_EINVAL,
                        "%s: %s: no such Array (give a size to create it)",
                        tn_cluster_url(o->cluster), o->key);
  }
  if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
      r->element[0]->type != REDIS_REPLY_STRING ||
      r->element[1]->type != REDIS_REPLY_STRING ||
      tn_dtype_from_name(r->element[0]->str, &st) != TN_OK) {
    rc = rd_bad_reply(o->cluster, "array.create", r);
    freeReplyObject(r);
    return rc;
  }
  sn = (size_t)strtoull(r->element[1]->str, NULL, 10);
  freeReplyObject(r);
  if (type != 0 && (st != type || sn != n))
    return tn_error_set(TN_ECONFLICT,
                        "%s: %s holds %zu %s elements, not %zu %s",
                        tn_cluster_url(o->cluster), o->key, sn,
                        tn_dtype_name(st), n, tn_dtype_name(type));
  atomic_store(&o->array_shape, pack_shape(st, sn));
  return TN_OK;
}

int rd_array_shape(tn_array_t *a, tn_dtype_t *type, size_t *n) {
  rd_object_t *o = RD(a);
  uint64_t s = atomic_load(&o->array_shape);
  if (s == 0) { /* named in a value: ask the server once */
    int rc = create(o, 0, 0);
    if (rc != TN_OK) return rc;
    s = atomic_load(&o->array_shape);
  }
  unpack_shape(s, type, n);
  return TN_OK;
}

/* ---- elements: little-endian bytes ------------------------------------- */

/* Copy `n` elements of `size` bytes between host and little-endian
** order (a copy on little-endian hosts, every element reversed on
** big-endian ones). */
static void le_copy(void *to, const void *from, size_t n, size_t size) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  const unsigned char *f = from;
  unsigned char *t = to;
  for (size_t i = 0; i < n; i++)
    for (size_t b = 0; b < size; b++)
      t[i * size + b] = f[i * size + size - 1 - b];
#else
  memcpy(to, from, n * size);
#endif
}

/* An element's bytes to the tn_elem_t of its type, and back. */
static tn_elem_t elem_decode(tn_dtype_t t, const void *le) {
  unsigned char buf[8];
  size_t size = tn_dtype_size(t);
  le_copy(buf, le, 1, size);
  tn_elem_t e;
  switch (t) {
  case TN_DOUBLE: memcpy(&e.f, buf, 8); break;
  case TN_FLOAT: {
    float x;
    memcpy(&x, buf, 4);
    e.f = x;
    break;
  }
  case TN_INT8: e.i = (int8_t)buf[0]; break;
  case TN_INT16: {
    int16_t x;
    memcpy(&x, buf, 2);
    e.i = x;
    break;
  }
  case TN_INT32: {
    int32_t x;
    memcpy(&x, buf, 4);
    e.i = x;
    break;
  }
  case TN_INT64: memcpy(&e.i, buf, 8); break;
  case TN_UINT8: e.u = buf[0]; break;
  case TN_UINT16: {
    uint16_t x;
    memcpy(&x, buf, 2);
    e.u = x;
    break;
  }
  case TN_UINT32: {
    uint32_t x;
    memcpy(&x, buf, 4);
    e.u = x;
    break;
  }
  default: memcpy(&e.u, buf, 8); break;
  }
  return e;
}

static void elem_encode(tn_dtype_t t, tn_elem_t e, unsigned char *le) {
  unsigned char buf[8];
  switch (t) {
  case TN_DOUBLE: memcpy(buf, &e.f, 8); break;
  case TN_FLOAT: {
    float x = (float)e.f;
    memcpy(buf, &x, 4);
    break;
  }
  case TN_INT8:
  case TN_UINT8: buf[0] = (unsigned char)e.u; break;
  case TN_INT16:
  case TN_UINT16: {
    uint16_t x = (uint16_t)e.u;
    memcpy(buf, &x, 2);
    break;
  }
  case TN_INT32:
  case TN_UINT32: {
    uint32_t x = (uint32_t)e.u;
    memcpy(buf, &x, 4);
    break;
  }
  default: memcpy(buf, &e.u, 8); break;
  }
  le_copy(le, buf, 1, tn_dtype_size(t));
}

/* Whether `v` is a value of integer type `t` (as the core checks). */
static bool fits(tn_dtype_t t, tn_elem_t v) {
  switch (t) {
  case TN_INT8: return v.i >= INT8_MIN && v.i <= INT8_MAX;
  case TN_INT16: return v.i >= INT16_MIN && v.i <= INT16_MAX;
  case TN_INT32: return v.i >= INT32_MIN && v.i <= INT32_MAX;
  case TN_UINT8: return v.u <= UINT8_MAX;
  case TN_UINT16: return v.u <= UINT16_MAX;
  case TN_UINT32: return v.u <= UINT32_MAX;
  default: return true;
  }
}

/* The script arguments every operation starts with: type, n. */
typedef struct shape_args {
  tn_dtype_t type;
  size_t n;
  char ns[32];
} shape_args_t;

static int shape_args(rd_object_t *o, shape_args_t *s) {
  int rc = rd_array_shape((tn_array_t *)o, &s->type, &s->n);
  if (rc == TN_OK) snprintf(s->ns, sizeof s->ns, "%zu", s->n);
  return rc;
}

/* A script's integer reply (or its decimal string), into *v. */
static int reply_u64(tn_cluster_t *c, const char *what, redisReply *r,
                     uint64_t *v) {
  if (r->type == REDIS_REPLY_INTEGER && r->integer >= 0) {
    *v = (uint64_t)r->integer;
    return TN_OK;
  }
  if (r->type == REDIS_REPLY_STRING) {
    char *end;
    *v = strtoull(r->str, &end, 10);
    if (end != r->str && *end == '\0') return TN_OK;
  }
  return rd_bad_reply(c, what, r);
}

int rd_array_get(tn_array_t *a, size_t i, tn_elem_t *out) {
  rd_object_t *o = RD(a);
  shape_args_t s;
  int rc = shape_args(o, &s);
  if (rc != TN_OK) return rc;
  if (i >= s.n) return TN_ERANGE;
  akeys_t k;
  akeys_init(&k, o);
  char is[32];
  snprintf(is, sizeof is, "%zu", i);
  const char *args[] = {tn_dtype_name(s.type), s.ns, is};
  redisReply *r;
  rc = rd_eval(o->cluster, &get_script, INFINITY, &r, 2, k.keys, 3, args,
               NULL);
  if (rc != TN_OK) return rc;
  if (r->type != REDIS_REPLY_STRING || r->len != tn_dtype_size(s.type))
    rc = rd_bad_reply(o->cluster, "array.get", r);
  else
    *out = elem_decode(s.type, r->str);
  freeReplyObject(r);
  return rc;
}

int rd_array_set(tn_array_t *a, size_t i, tn_elem_t v) {
  rd_object_t *o = RD(a);
  shape_args_t s;
  int rc = shape_args(o, &s);
  if (rc != TN_OK) return rc;
  if (i >= s.n) return TN_ERANGE;
  if (!fits(s.type, v)) return TN_EINVAL;
  akeys_t k;
  akeys_init(&k, o);
  char is[32];
  unsigned char bytes[8];
  snprintf(is, sizeof is, "%zu", i);
  elem_encode(s.type, v, bytes);
  const char *args[] = {tn_dtype_name(s.type), s.ns, is,
                        (const char *)bytes};
  size_t lens[] = {strlen(args[0]), strlen(s.ns), strlen(is),
                   tn_dtype_size(s.type)};
  redisReply *r;
  rc = rd_eval(o->cluster, &set_script, INFINITY, &r, 2, k.keys, 4, args,
               lens);
  if (rc == TN_OK) freeReplyObject(r);
  return rc;
}

int rd_array_atomic_add(tn_array_t *a, size_t i, tn_elem_t delta,
                        tn_elem_t *old) {
  rd_object_t *o = RD(a);
  shape_args_t s;
  int rc = shape_args(o, &s);
  if (rc != TN_OK) return rc;
  if (i >= s.n) return TN_ERANGE;
  akeys_t k;
  akeys_init(&k, o);
  char is[32], ds[40];
  snprintf(is, sizeof is, "%zu", i);
  if (s.type == TN_DOUBLE || s.type == TN_FLOAT)
    snprintf(ds, sizeof ds, "%.17g", delta.f);
  else if (s.type == TN_UINT64)
    snprintf(ds, sizeof ds, "%llu", (unsigned long long)delta.u);
  else /* a factor's bits: as signed, the script wraps */
    snprintf(ds, sizeof ds, "%lld", (long long)delta.i);
  const char *args[] = {tn_dtype_name(s.type), s.ns, is, ds};
  redisReply *r;
  rc = rd_eval(o->cluster, &atomic_add_script, INFINITY, &r, 2, k.keys, 4,
               args, NULL);
  if (rc != TN_OK) return rc;
  if (r->type != REDIS_REPLY_STRING || r->len != tn_dtype_size(s.type))
    rc = rd_bad_reply(o->cluster, "array.atomicAdd", r);
  else if (old != NULL)
    *old = elem_decode(s.type, r->str);
  freeReplyObject(r);
  return rc;
}

/* ---- whole arrays ------------------------------------------------------- */

int rd_array_fetch(tn_array_t *a, tn_array_t **copy, uint64_t *version) {
  rd_object_t *o = RD(a);
  shape_args_t s;
  int rc = shape_args(o, &s);
  if (rc != TN_OK) return rc;
  akeys_t k;
  akeys_init(&k, o);
  const char *args[] = {tn_dtype_name(s.type), s.ns};
  redisReply *r;
  rc = rd_eval(o->cluster, &fetch_script, INFINITY, &r, 2, k.keys, 2, args,
               NULL);
  if (rc != TN_OK) return rc;
  size_t size = tn_dtype_size(s.type);
  uint64_t v = 0;
  if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
      r->element[1]->type != REDIS_REPLY_STRING ||
      r->element[1]->len != s.n * size ||
      reply_u64(o->cluster, "array.fetch", r->element[0], &v) != TN_OK) {
    rc = rd_bad_reply(o->cluster, "array.fetch", r);
    freeReplyObject(r);
    return rc;
  }
  tn_array_t *c;
  rc = tn_array_new(s.type, s.n, &c);
  if (rc == TN_OK) {
    le_copy(tn_array_data(c), r->element[1]->str, s.n, size);
    if (version != NULL) *version = v;
    *copy = c;
  }
  freeReplyObject(r);
  return rc;
}

/* The source's bytes, little-endian: `src`'s own memory on a little-endian
** host (*owned NULL), else a malloc'd copy. */
static int source_bytes(const tn_array_t *src, size_t n, size_t size,
                        const char **bytes, char **owned) {
  *owned = NULL;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  *owned = malloc(n * size + 1);
  if (*owned == NULL) return TN_ENOMEM;
  le_copy(*owned, tn_array_data(src), n, size);
  *bytes = *owned;
#else
  (void)n;
  (void)size;
  *bytes = tn_array_data(src);
#endif
  return TN_OK;
}

/* store (scale NULL) or add: the whole source in one script. */
static int write_all(tn_array_t *a, const tn_array_t *src,
                     const tn_elem_t *scale) {
  rd_object_t *o = RD(a);
  shape_args_t s;
  int rc = shape_args(o, &s);
  if (rc != TN_OK) return rc;
  tn_dtype_t st;
  size_t sn;
  tn_array_shape((tn_array_t *)src, &st, &sn);
  if (st != s.type || sn != s.n) return TN_EINVAL;
  size_t size = tn_dtype_size(s.type);
  const char *bytes;
  char *owned;
  if ((rc = source_bytes(src, s.n, size, &bytes, &owned)) != TN_OK) return rc;
  akeys_t k;
  akeys_init(&k, o);
  const char *token = rd_write_token(TN_OBJECT(a));
  char ss[40];
  if (scale != NULL) {
    if (s.type == TN_DOUBLE || s.type == TN_FLOAT)
      snprintf(ss, sizeof ss, "%.17g", scale->f);
    else if (s.type == TN_UINT64)
      snprintf(ss, sizeof ss, "%llu", (unsigned long long)scale->u);
    else
      snprintf(ss, sizeof ss, "%lld", (long long)scale->i);
  }
  const char *args[] = {tn_dtype_name(s.type), s.ns, bytes,
                        scale != NULL ? ss : (token != NULL ? token : ""),
                        token != NULL ? token : ""};
  size_t lens[5];
  for (int i = 0; i < 5; i++)
    lens[i] = i == 2 ? s.n * size : strlen(args[i]);
  redisReply *r;
  rc = rd_eval(o->cluster, scale != NULL ? &add_script : &store_script,
               INFINITY, &r, 3, k.keys, scale != NULL ? 5 : 4, args, lens);
  free(owned);
  if (rc == TN_OK) freeReplyObject(r);
  return rc;
}

int rd_array_store(tn_array_t *a, const tn_array_t *src) {
  return write_all(a, src, NULL);
}

int rd_array_add(tn_array_t *a, const tn_array_t *src, tn_elem_t s) {
  return write_all(a, src, &s);
}

int rd_array_version(tn_array_t *a, uint64_t *version) {
  rd_object_t *o = RD(a);
  shape_args_t s;
  int rc = shape_args(o, &s);
  if (rc != TN_OK) return rc;
  akeys_t k;
  akeys_init(&k, o);
  const char *args[] = {tn_dtype_name(s.type), s.ns};
  redisReply *r;
  rc = rd_eval(o->cluster, &version_script, INFINITY, &r, 2, k.keys, 2, args,
               NULL);
  if (rc != TN_OK) return rc;
  rc = reply_u64(o->cluster, "array.version", r, version);
  freeReplyObject(r);
  return rc;
}

/* ---- the constructor ---------------------------------------------------- */

int tn_cluster_array(tn_cluster_t *c, const char *name, tn_dtype_t type,
                     size_t n, tn_array_t **out) {
  if (name == NULL || name[0] == '\0')
    return tn_error_set(TN_EINVAL, "a cluster object needs a non-empty name");
  if (type != 0 && tn_dtype_size(type) == 0)
    return tn_error_set(TN_EINVAL, "not an element type: %d", (int)type);
  if (type != 0 && n > MAX_BYTES / tn_dtype_size(type))
    return tn_error_set(TN_EINVAL,
                        "%zu %s elements do not fit a Redis string (512 MB)",
                        n, tn_dtype_name(type));
  tn_object_t *o;
  int rc = rd_object_get(c, TN_TYPE_ARRAY, name, &o);
  if (rc != TN_OK) return rc;
  if ((rc = create(RD(o), type, n)) != TN_OK) {
    tn_object_release(o);
    return rc;
  }
  *out = (tn_array_t *)o;
  return TN_OK;
}
