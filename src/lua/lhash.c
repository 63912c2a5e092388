/*
** lhash.c - tunnel.Hash: a hash table shared by threads, the binding of the
** core map (tn_map_*).
**
** Keys are strings, numbers or booleans, stored under the canonical bytes
** of lkey.c (1 and 1.0 are one key, as in a Lua table; NaN is refused).
**
** Every method `foo` has an Async twin `fooAsync` sharing its
** implementation with a timeout parameter (TN_TRY for the twin, which
** returns a nil status instead of waiting for a shard's lock or the
** callback lock). get and set are one core call each and create no table.
**
** read/write run the user's callback under the object's callback lock
** (reader / writer), never under a shard's mutex, inside lua_pcall: an
** error releases the lock and is re-raised with the same value.
**
** Caveats:
** - `h[key]` with a key equal to a method name ("get", "size", ...) reads
**   the method, not the stored value: use h:get(key) for such keys.
**   `h[key] = value` and h:set/h:get always mean the stored value.
** - pairs(h) works where Lua honours __pairs (5.2+); LuaJIT and 5.1
**   without 5.2 compatibility ignore it: use h:iterator() there.
** - Results follow the original (tunnel/hash.lua of the Torch prototype):
**   h:set(key) deletes like h:set(key, nil); iterator() returns the
**   iterator and `true`, a busy iteratorAsync an iterator that yields
**   nothing and nil.
** - set does not take the callback lock (it stays one core call), so a
**   set racing a write callback on the same key may be overwritten by the
**   callback's result; writes among themselves never lose an update.
** - A get takes no lock and, for a small value (or one object this state
**   has a box for), no reference: the value is copied out of the map and
**   decoded from the copy (tn_l_pushmapvalue), so readers on several
**   threads write nothing they share. A larger value is decoded from a
**   reference under a protected call, which drops it if decoding raises.
*/
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ltunnel.h"

#define HASH "tunnel.Hash"
#define M(name) HASH ":" name

/* ---- arguments ------------------------------------------------------------ */

static tn_map_t *check_hash(lua_State *L, const char *method) {
  return (tn_map_t *)tn_l_checkobject(L, 1, method);
}

/* ---- constructor ---------------------------------------------------------- */

/* tunnel.Hash() */
static int l_hash_new(lua_State *L) {
  tn_map_t *m;
  int rc = tn_map_new(TN_TYPE_HASH, &m);
  if (rc != TN_OK) return tn_l_coreerror(L, HASH, rc);
  tn_l_pushnew(L, TN_OBJECT(m));
  return 1;
}

/* ---- get and set: the hot paths ------------------------------------------- */

/* Push the value under the key at slot 2 (nil when absent); returns the
** core's code, pushing nothing unless TN_OK. */
static int hash_getvalue(lua_State *L, tn_map_t *m, const char *method,
                         double timeout) {
  tn_l_key_t k;
  tn_l_checkkey(L, 2, &k, method, 1);
  return tn_l_pushmapvalue(L, m, &k, timeout, method);
}

/* get(key) -> value, true (nil, true when absent: the get happened, and an
** absent key is the same as a nil value); nil, nil when Async would wait. */
static int hash_get(lua_State *L, const char *method, double timeout) {
  tn_map_t *m = check_hash(L, method);
  int rc = hash_getvalue(L, m, method, timeout);
  if (rc == TN_OK) {
    lua_pushboolean(L, 1);
    return 2;
  }
  if (tn_l_waited(rc)) return tn_l_pushnils(L, 2);
  return tn_l_coreerror(L, method, rc);
}

static int l_hash_get(lua_State *L) { return hash_get(L, M("get"), TN_FOREVER); }

static int l_hash_getasync(lua_State *L) {
  return hash_get(L, M("getAsync"), TN_TRY);
}

/* set(key, value) -> true, old value (nil deletes; so does a missing value,
** as in the original); nil when Async would wait. The key is checked before
** the value is encoded: nothing to free if it is bad. */
static int hash_set(lua_State *L, const char *method, double timeout) {
  tn_map_t *m = check_hash(L, method);
  tn_l_key_t k;
  tn_l_checkkey(L, 2, &k, method, 1);
  lua_settop(L, 3);
  tn_blob_t *b = tn_l_encode(L, 3, 1, method), *old;
  int rc = tn_map_set(m, k.data, k.len, b, &old, timeout);
  if (rc == TN_OK) {
    lua_pushboolean(L, 1);
    tn_l_pushblob(L, old, method);
    return 2;
  }
  tn_blob_release(b); /* not taken: still ours */
  if (tn_l_waited(rc)) return tn_l_pushnils(L, 1);
  return tn_l_coreerror(L, method, rc);
}

static int l_hash_set(lua_State *L) { return hash_set(L, M("set"), TN_FOREVER); }

static int l_hash_setasync(lua_State *L) {
  return hash_set(L, M("setAsync"), TN_TRY);
}

/* size() never waits: the core keeps it in an atomic. */
static int l_hash_size(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)tn_map_size(check_hash(L, M("size"))));
  tn_l_checkpending(L, M("size")); /* a cluster hash's failure */
  return 1;
}

static int l_hash_sizeasync(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)tn_map_size(check_hash(L, M("sizeAsync"))));
  tn_l_checkpending(L, M("sizeAsync"));
  return 1;
}

/* ---- callbacks ------------------------------------------------------------ */

static int hash_slot_get(const tn_l_slot_t *s, tn_blob_t **out,
                         double timeout) {
  return tn_map_get(s->self, s->key, s->len, out, timeout);
}

static int hash_slot_set(const tn_l_slot_t *s, tn_blob_t *b) {
  return tn_map_set(s->self, s->key, s->len, b, NULL, TN_FOREVER);
}

/*
** read(key, callback) -> callback(value)'s results, as a reader of the
** callback lock; write(key, callback) -> true, new value, as its writer,
** storing the callback's first result under key (nil deletes). Async: nil
** when the callback lock or the key's shard is busy; the callback has not
** run then.
*/
static int hash_callback(lua_State *L, const char *method, int write,
                         double timeout) {
  tn_map_t *m = check_hash(L, method);
  tn_l_key_t k;
  tn_l_checkkey(L, 2, &k, method, 1);
  tn_l_checkcallback(L, 3, method);
  lua_settop(L, 3);
  tn_l_slot_t slot = {hash_slot_get, hash_slot_set, m, k.data, k.len};
  int n;
  int rc = tn_l_callback(L, TN_OBJECT(m), &slot, write, timeout, method, &n);
  if (tn_l_waited(rc)) /* status, new value */
    return tn_l_pushnils(L, write ? 2 : 1);
  if (rc != TN_OK) return tn_l_coreerror(L, method, rc);
  if (!write) return n;
  lua_pushboolean(L, 1);
  lua_insert(L, -2); /* true, new value */
  return 2;
}

static int l_hash_read(lua_State *L) {
  return hash_callback(L, M("read"), 0, TN_FOREVER);
}

static int l_hash_readasync(lua_State *L) {
  return hash_callback(L, M("readAsync"), 0, TN_TRY);
}

static int l_hash_write(lua_State *L) {
  return hash_callback(L, M("write"), 1, TN_FOREVER);
}

static int l_hash_writeasync(lua_State *L) {
  return hash_callback(L, M("writeAsync"), 1, TN_TRY);
}

/* ---- snapshots: iterator, toString ---------------------------------------- */

/* A snapshot being turned into Lua values for toString, which needs the
** entries in its own order; freed by the caller of the protected body,
** whether it returned or raised. */
typedef struct snapshot_ctx {
  const char *method;
  tn_map_entry_t *entries;
  size_t n;
} snapshot_ctx_t;

/* Protected: (ctx) -> {k1, v1, k2, v2, ...}. */
static int pairs_body(lua_State *L) {
  snapshot_ctx_t *ctx = lua_touserdata(L, 1);
  int n = ctx->n > (size_t)INT32_MAX / 2 ? 0 : (int)ctx->n;
  lua_createtable(L, 2 * n, 0);
  for (size_t i = 0; i < ctx->n; i++) {
    tn_l_pushkey(L, ctx->entries[i].key, ctx->entries[i].len);
    lua_rawseti(L, -2, (int)(2 * i + 1));
    int c = tn_l_decode(L, ctx->entries[i].value, ctx->method);
    if (c != 1) lua_settop(L, lua_gettop(L) - c + 1);
    lua_rawseti(L, -2, (int)(2 * i + 2));
  }
  return 1;
}

/* Take a snapshot into `ctx`; returns the core's code (TN_EAGAIN for an
** Async that would wait). Raises for other failures. */
static int take_snapshot(lua_State *L, tn_map_t *m, snapshot_ctx_t *ctx,
                         double timeout) {
  int rc = tn_map_snapshot(m, &ctx->entries, &ctx->n, timeout);
  if (rc != TN_OK && !tn_l_waited(rc))
    return tn_l_coreerror(L, ctx->method, rc);
  return rc;
}

/* Run `body` on the snapshot in `ctx` under a pcall, free the snapshot,
** re-raise any error. Leaves the body's one result on the stack. */
static void run_snapshot_body(lua_State *L, lua_CFunction body,
                              snapshot_ctx_t *ctx) {
  lua_pushcfunction(L, body);
  lua_pushlightuserdata(L, ctx);
  int status = lua_pcall(L, 1, 1, 0);
  tn_map_entries_free(ctx->entries, ctx->n);
  ctx->entries = NULL;
  ctx->n = 0;
  if (status != 0) lua_error(L);
}

/* The iterator of a busy iteratorAsync: it yields nothing. */
static int hash_nothing(lua_State *L) {
  (void)L;
  return 0;
}

/*
** iterator() -> a function yielding key, value over a snapshot (in no
** particular order), and true. iteratorAsync when a lock is busy -> a
** function that yields nothing, and nil (the original returned nil in
** both places; an empty iterator keeps `for k, v in h:iteratorAsync()`
** from calling nil).
*/
static int hash_iterator(lua_State *L, const char *method, double timeout) {
  tn_map_t *m = check_hash(L, method);
  if (tn_l_pushmap(L, m, timeout, method) != TN_OK) {
    lua_pushcfunction(L, hash_nothing);
    lua_pushnil(L);
    return 2;
  }
  tn_l_pushmapiterator(L);
  lua_pushboolean(L, 1);
  return 2;
}

static int l_hash_iterator(lua_State *L) {
  return hash_iterator(L, M("iterator"), TN_FOREVER);
}

static int l_hash_iteratorasync(lua_State *L) {
  return hash_iterator(L, M("iteratorAsync"), TN_TRY);
}

/* __pairs: iterator()'s results (the iterator ignores the state and
** control values the generic for passes it). */
static int l_hash_pairs(lua_State *L) {
  return hash_iterator(L, M("iterator"), TN_FOREVER);
}

/* The order of keys in toString: booleans (false first), then numbers
** (numerically), then strings (bytewise). */
static int key_class(const unsigned char *p, size_t len) {
  if (len == 0 || p[0] > TN_KEY_MAX || p[0] == TN_KEY_STRING) return 2;
  return p[0] == TN_KEY_FALSE || p[0] == TN_KEY_TRUE ? 0 : 1;
}

static double key_number(const unsigned char *p) {
  if (p[0] == TN_KEY_INT) {
    int64_t i;
    memcpy(&i, p + 1, sizeof i);
    return (double)i;
  }
  double n;
  memcpy(&n, p + 1, sizeof n);
  return n;
}

static int compare_entries(const void *a, const void *b) {
  const tn_map_entry_t *x = a, *y = b;
  const unsigned char *p = x->key, *q = y->key;
  int cx = key_class(p, x->len), cy = key_class(q, y->len);
  if (cx != cy) return cx < cy ? -1 : 1;
  if (cx == 0) return (p[0] > q[0]) - (p[0] < q[0]);
  if (cx == 1) {
    double u = key_number(p), v = key_number(q);
    if (u != v) return u < v ? -1 : 1;
    if (p[0] != q[0]) return p[0] < q[0] ? -1 : 1; /* int before float */
    if (p[0] == TN_KEY_INT) { /* equal as doubles, maybe not as integers */
      int64_t i, j;
      memcpy(&i, p + 1, sizeof i);
      memcpy(&j, q + 1, sizeof j);
      return (i > j) - (i < j);
    }
    return 0;
  }
  /* Strings: compare the bytes after any TN_KEY_STRING prefix. */
  size_t ox = x->len > 0 && p[0] == TN_KEY_STRING, oy = y->len > 0 && q[0] == TN_KEY_STRING;
  size_t lx = x->len - ox, ly = y->len - oy;
  int c = memcmp(p + ox, q + oy, lx < ly ? lx : ly);
  if (c != 0) return c;
  return (lx > ly) - (lx < ly);
}

/* True when `s` can be written `s = ...` in a table constructor. */
static int is_identifier(const char *s, size_t len) {
  static const char *const reserved[] = {
      "and",   "break", "do",     "else", "elseif", "end",  "false",
      "for",   "function", "goto", "if",  "in",     "local", "nil",
      "not",   "or",    "repeat", "return", "then", "true", "until",
      "while", NULL};
  if (len == 0 || !(s[0] == '_' || (s[0] >= 'a' && s[0] <= 'z') ||
                    (s[0] >= 'A' && s[0] <= 'Z')))
    return 0;
  for (size_t i = 1; i < len; i++)
    if (!(s[i] == '_' || (s[i] >= 'a' && s[i] <= 'z') ||
          (s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9')))
      return 0;
  for (const char *const *r = reserved; *r != NULL; r++)
    if (strlen(*r) == len && memcmp(*r, s, len) == 0) return 0;
  return 1;
}

/*
** Add the value at t[i] to the buffer, whose box (if any) is on top of the
** stack. The table anchors strings, so a string can be popped before its
** bytes are added: the buffer needs the stack as it left it. Strings are
** quoted; shared objects print as "tunnel.Hash: 0x..." and never through
** their own __tostring (a hash holding itself would recurse); anything
** else as tostring() shows it.
*/
static void add_value(lua_State *L, luaL_Buffer *buf, int t, int i) {
  lua_rawgeti(L, t, i);
  if (lua_type(L, -1) == LUA_TSTRING) {
    size_t len;
    const char *s = lua_tolstring(L, -1, &len);
    lua_pop(L, 1);
    tn_l_addquoted(buf, s, len);
    return;
  }
  tn_object_t *o = tn_l_toobject(L, -1);
  if (o != NULL) {
    lua_getmetatable(L, -1);
    lua_getfield(L, -1, "__name");
    lua_pushfstring(L, "%s: %p", lua_tostring(L, -1), (void *)o);
    lua_replace(L, -4);
    lua_pop(L, 2);
  } else {
    tn_tolstring(L, -1, NULL);
    lua_remove(L, -2);
  }
  luaL_addvalue(buf);
}

/* Add the key at t[i]: `name = `, `["not a name"] = `, `[2] = `,
** `[true] = `. */
static void add_key(lua_State *L, luaL_Buffer *buf, int t, int i) {
  lua_rawgeti(L, t, i);
  if (lua_type(L, -1) == LUA_TSTRING) {
    size_t len;
    const char *s = lua_tolstring(L, -1, &len);
    lua_pop(L, 1);
    if (is_identifier(s, len)) {
      luaL_addlstring(buf, s, len);
    } else {
      luaL_addchar(buf, '[');
      tn_l_addquoted(buf, s, len);
      luaL_addchar(buf, ']');
    }
  } else {
    int inf = lua_type(L, -1) == LUA_TNUMBER && isinf(lua_tonumber(L, -1));
    lua_Number n = inf ? lua_tonumber(L, -1) : 0;
    lua_pop(L, 1);
    luaL_addchar(buf, '[');
    if (inf) {
      luaL_addstring(buf, n > 0 ? "math.huge" : "-math.huge");
    } else {
      lua_rawgeti(L, t, i);
      tn_tolstring(L, -1, NULL);
      lua_remove(L, -2);
      luaL_addvalue(buf);
    }
    luaL_addchar(buf, ']');
  }
  luaL_addstring(buf, " = ");
}

/* toString() -> 'tunnel.Hash{a = 1, [2] = "x"}' from a snapshot, keys in
** a stable order (booleans, numbers, strings); nil when Async would wait. */
static int hash_tostring(lua_State *L, const char *method, double timeout) {
  tn_map_t *m = check_hash(L, method);
  snapshot_ctx_t ctx = {method, NULL, 0};
  if (take_snapshot(L, m, &ctx, timeout) != TN_OK)
    return tn_l_pushnils(L, 1);
  if (ctx.n > 1) qsort(ctx.entries, ctx.n, sizeof *ctx.entries, compare_entries);
  int n = (int)ctx.n;
  run_snapshot_body(L, pairs_body, &ctx);
  int t = lua_gettop(L);
  luaL_Buffer buf;
  luaL_buffinit(L, &buf);
  luaL_addstring(&buf, HASH "{");
  for (int i = 1; i <= n; i++) {
    if (i > 1) luaL_addstring(&buf, ", ");
    add_key(L, &buf, t, 2 * i - 1);
    add_value(L, &buf, t, 2 * i);
  }
  luaL_addchar(&buf, '}');
  luaL_pushresult(&buf);
  return 1;
}

static int l_hash_tostring(lua_State *L) {
  return hash_tostring(L, M("toString"), TN_FOREVER);
}

static int l_hash_tostringasync(lua_State *L) {
  return hash_tostring(L, M("toStringAsync"), TN_TRY);
}

/* ---- metamethods ---------------------------------------------------------- */

static int l_hash_len(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)tn_map_size(check_hash(L, M("size"))));
  tn_l_checkpending(L, M("size")); /* a cluster hash's failure */
  return 1;
}

/*
** h.name: a method when `name` is one (upvalue 2 is the methods table),
** else h:get(key)'s value. So a key named like a method is read with
** h:get(key), never with h[key] (see the header).
*/
static int l_hash_index(lua_State *L) {
  if (lua_type(L, 2) == LUA_TSTRING) {
    lua_pushvalue(L, 2);
    lua_rawget(L, lua_upvalueindex(2));
    if (!lua_isnil(L, -1)) return 1;
    lua_pop(L, 1);
  }
  tn_map_t *m = check_hash(L, M("get"));
  int rc = hash_getvalue(L, m, M("get"), TN_FOREVER);
  if (rc != TN_OK) return tn_l_coreerror(L, M("get"), rc);
  return 1;
}

/* h[key] = value: set(key, value), for every valid key (method names
** too: h.get = 1 stores under "get"). */
static int l_hash_newindex(lua_State *L) {
  hash_set(L, M("set"), TN_FOREVER);
  return 0;
}

/* ---- registration --------------------------------------------------------- */

static const luaL_Reg hash_methods[] = {
    {"get", l_hash_get},
    {"getAsync", l_hash_getasync},
    {"set", l_hash_set},
    {"setAsync", l_hash_setasync},
    {"read", l_hash_read},
    {"readAsync", l_hash_readasync},
    {"write", l_hash_write},
    {"writeAsync", l_hash_writeasync},
    {"size", l_hash_size},
    {"sizeAsync", l_hash_sizeasync},
    {"iterator", l_hash_iterator},
    {"iteratorAsync", l_hash_iteratorasync},
    {"toString", l_hash_tostring},
    {"toStringAsync", l_hash_tostringasync},
    {NULL, NULL}};

static const luaL_Reg hash_meta[] = {{"__len", l_hash_len},
                                     {"__index", l_hash_index},
                                     {"__newindex", l_hash_newindex},
                                     {"__tostring", l_hash_tostring},
                                     {"__pairs", l_hash_pairs},
                                     {NULL, NULL}};

static const tn_l_class_t hash_class = {
    TN_TYPE_HASH, HASH, hash_methods, hash_meta};

void tn_l_open_hash(lua_State *L) {
  tn_l_newclass(L, &hash_class);
  lua_pushcfunction(L, l_hash_new);
  lua_setfield(L, -2, "Hash");
}
