/*
** lshare.c - shared tables, tunnel.Share and tunnel.Atomic: Lua tables that
** every thread reads and writes through, the binding of the core map
** (TN_TYPE_TABLE) and cell (TN_TYPE_SHARE, TN_TYPE_ATOMIC).
**
** A shared table is a map shown with the metatable "tunnel.SharedTable":
** t[k], t[k] = v (nil deletes), #t, pairs(t) (where __pairs exists) and
** tunnel.snapshot(t). It has no methods at all: every string key is data,
** so `t.size` is whatever was stored under "size". Each single read or
** write is atomic; nothing more (t.n = t.n + 1 is two accesses: use
** tunnel.Atomic for that).
**
** Storing a plain table (no metatable) converts it, recursively, into a new
** shared table: nested plain tables become shared tables too, and a table
** met twice in one assigned value (a cycle, a shared sub-table) becomes one
** shared table. Tunnel objects (shared tables included) are stored by
** reference; every other value is copied by the codec.
**
** Share and Atomic are cells: their value is fixed at creation (converted
** as above). `x.data` decodes it each time; for a shared table that is the
** same shared object (and, in one Lua state, the same userdata) every time.
**
** Caveats:
** - Reference counting cannot free cycles: a shared table that contains
**   itself, directly or through other shared tables, is freed only by
**   tunnel.collect() (src/core/collect.c).
** - #t is a border (t[n] ~= nil and t[n + 1] == nil) found by probing, as
**   Lua does for the hash part of a table: O(log n) reads, each atomic, not
**   the whole. While other threads write, it is a border of some mix of the
**   states seen.
** - pairs(t) and tunnel.snapshot(t) walk a snapshot, taken with the whole
**   map stopped for a moment (an O(n) copy). LuaJIT and 5.1 honour no
**   __pairs: use `pairs(tunnel.snapshot(t))` there.
** - Reads (t[k], #t, x.data) take no lock and no reference: a small value
**   is copied out of the map and decoded from the copy, a nested shared
**   table is the box this state already has (tn_l_pushmapvalue), so
**   threads that read one table at once write nothing they share. A
**   value overwritten or deleted is released a little later (map.c).
** - Atomic's lock is not recursive: a write callback that calls read or
**   write on the same Atomic deadlocks. A read inside a read is fine, unless
**   a writer is queued meanwhile (writers are preferred, so the inner read
**   waits behind the writer, which waits for the outer read: deadlock).
** - Atomic(5).data is 5 forever: the data is fixed, a scalar cannot change.
**   To share a changing scalar, wrap it: Atomic({n = 5}), then data.n.
*/
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "ltunnel.h"

#define TABLE "tunnel.SharedTable"
#define SHARE "tunnel.Share"
#define ATOMIC "tunnel.Atomic"

/* Deepest nesting of plain tables converted in one assignment. */
#define TN_SHARE_MAXDEPTH 200

/* ---- converting plain tables ---------------------------------------------- */

static int is_plain_table(lua_State *L, int idx) {
  if (lua_type(L, idx) != LUA_TTABLE) return 0;
  if (!lua_getmetatable(L, idx)) return 1;
  lua_pop(L, 1);
  return 0; /* the codec refuses it with a clear error */
}

/*
** Push a new shared table holding the content of the plain table at
** (absolute) `idx`, converting nested plain tables too. `seen` (absolute)
** is a Lua table: plain table -> its shared table, so a table met twice in
** one conversion (a cycle, a shared sub-table) gives one shared table. On
** an error, what was built is garbage, collected with its boxes, and
** nothing the caller had is changed.
*/
static void push_converted(lua_State *L, int idx, int seen, const char *method,
                           int depth) {
  lua_pushvalue(L, idx);
  lua_rawget(L, seen);
  if (!lua_isnil(L, -1)) return; /* met before: the same shared table */
  lua_pop(L, 1);
  if (depth > TN_SHARE_MAXDEPTH)
    tn_l_error(L, method, "tables nested too deeply (more than %d levels)",
               TN_SHARE_MAXDEPTH);
  luaL_checkstack(L, 8, "tables nested too deeply");
  tn_map_t *m;
  int rc = tn_map_new(TN_TYPE_TABLE, &m);
  if (rc != TN_OK) tn_l_coreerror(L, method, rc);
  tn_l_pushnew(L, TN_OBJECT(m));
  int box = lua_gettop(L);
  lua_pushvalue(L, idx);
  lua_pushvalue(L, box);
  lua_rawset(L, seen); /* seen[plain] = shared, before recursing */
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    int k = lua_gettop(L) - 1, v = k + 1;
    tn_l_key_t key;
    lua_pushvalue(L, k); /* encode a copy: lua_next needs the slot as is */
    tn_l_checkkey(L, lua_gettop(L), &key, method, 1);
    tn_blob_t *b;
    if (is_plain_table(L, v)) {
      push_converted(L, v, seen, method, depth + 1);
      b = tn_l_encode(L, -1, 1, method);
    } else {
      b = tn_l_encode(L, v, 1, method);
    }
    rc = tn_map_set(m, key.data, key.len, b, NULL, TN_FOREVER);
    if (rc != TN_OK) {
      tn_blob_release(b);
      tn_l_coreerror(L, method, rc);
    }
    lua_settop(L, k); /* keep the key for lua_next */
  }
}

/*
** The blob to store for the value at (absolute) `idx`: a plain table is
** converted into a new shared table and stored by reference; anything
** else goes through the codec (tunnel objects by reference, the rest
** copied). NULL for nil.
*/
static tn_blob_t *encode_data(lua_State *L, int idx, const char *method) {
  if (!is_plain_table(L, idx)) return tn_l_encode(L, idx, 1, method);
  /* Try the whole value through the codec first: a value that cannot
  ** cross is reported with its full path (value.a.b), before anything is
  ** built. */
  tn_blob_release(tn_l_encode(L, idx, 1, method));
  int top = lua_gettop(L);
  lua_newtable(L); /* seen */
  push_converted(L, idx, top + 1, method, 0);
  tn_blob_t *b = tn_l_encode(L, -1, 1, method);
  lua_settop(L, top);
  return b;
}

/* ---- shared tables --------------------------------------------------------- */

static tn_map_t *check_table(lua_State *L, const char *method) {
  return (tn_map_t *)tn_l_checkobject(L, 1, method);
}

/* t[k]: nil for a key that is absent (or nil, or NaN, as in Lua). */
static int l_table_index(lua_State *L) {
  const char *method = TABLE ":__index";
  tn_map_t *m = check_table(L, method);
  tn_l_key_t key;
  if (!tn_l_checkkey(L, 2, &key, method, 0)) {
    lua_pushnil(L);
    return 1;
  }
  int rc = tn_l_pushmapvalue(L, m, &key, TN_FOREVER, method);
  if (rc != TN_OK) return tn_l_coreerror(L, method, rc);
  return 1;
}

/* t[k] = v: nil deletes; a plain table is converted (see encode_data). */
static int l_table_newindex(lua_State *L) {
  const char *method = TABLE ":__newindex";
  tn_map_t *m = check_table(L, method);
  lua_settop(L, 3);
  tn_l_key_t key;
  tn_l_checkkey(L, 2, &key, method, 1);
  tn_blob_t *b = encode_data(L, 3, method);
  int rc = tn_map_set(m, key.data, key.len, b, NULL, TN_FOREVER);
  if (rc != TN_OK) {
    tn_blob_release(b);
    return tn_l_coreerror(L, method, rc);
  }
  return 0;
}

/* Is t[i] non-nil? A stored value is never nil: storing nil deletes. */
static int table_has(lua_State *L, tn_map_t *m, uint64_t i,
                     const char *method) {
  tn_l_key_t key;
  tn_l_intkey(&key, (int64_t)i);
  tn_peek_t p = {0}; /* no copy, no reference: only whether it is there */
  int rc = tn_map_peek(m, key.data, key.len, &p, TN_FOREVER);
  if (rc != TN_OK) return tn_l_coreerror(L, method, rc);
  return p.found;
}

/*
** #t: a border, as luaH_getn finds one in a hash part. The common case (an
** array 1..n and nothing else) is answered by the size hint in two reads;
** otherwise double j until t[j] is nil, then binary search between the
** last non-nil i and j. Keys are sparse in general, so no read of every
** key; and no lock held across the reads (each is atomic on its own).
*/
static int l_table_len(lua_State *L) {
  const char *method = TABLE ":__len";
  tn_map_t *m = check_table(L, method);
  uint64_t n = (uint64_t)tn_map_size(m);
  if (n > 0 && table_has(L, m, n, method) && !table_has(L, m, n + 1, method)) {
    lua_pushinteger(L, (lua_Integer)n);
    return 1;
  }
  uint64_t i = 0, j = 1;
  while (table_has(L, m, j, method)) {
    i = j;
    if (j > (uint64_t)INT64_MAX / 2) { /* absurdly many: walk linearly */
      while (table_has(L, m, i + 1, method)) i++;
      lua_pushinteger(L, (lua_Integer)i);
      return 1;
    }
    j *= 2;
  }
  while (j - i > 1) { /* t[i] ~= nil (or i == 0), t[j] == nil */
    uint64_t mid = i + (j - i) / 2;
    if (table_has(L, m, mid, method))
      i = mid;
    else
      j = mid;
  }
  lua_pushinteger(L, (lua_Integer)i);
  return 1;
}

/* pairs(t) on 5.2+: an iterator over a snapshot. */
static int l_table_pairs(lua_State *L) {
  const char *method = TABLE ":__pairs";
  tn_l_pushmap(L, check_table(L, method), TN_FOREVER, method);
  tn_l_pushmapiterator(L);
  return 1;
}

/* tunnel.snapshot(t) -> a plain table with t's keys and values at one
** moment (shallow: nested shared tables stay shared). */
static int l_snapshot(lua_State *L) {
  const char *method = "tunnel.snapshot";
  tn_object_t *o = tn_l_toobject(L, 1);
  if (o == NULL || tn_object_type(o) != TN_TYPE_TABLE)
    return tn_l_error(L, method, "argument must be a shared table (got %s)",
                      luaL_typename(L, 1));
  tn_l_pushmap(L, (tn_map_t *)o, TN_FOREVER, method);
  return 1;
}

static const luaL_Reg table_meta[] = {{"__index", l_table_index},
                                      {"__newindex", l_table_newindex},
                                      {"__len", l_table_len},
                                      {"__pairs", l_table_pairs},
                                      {NULL, NULL}};

/* ---- Share and Atomic: cells ---------------------------------------------- */

/* tunnel.Share(data) / tunnel.Atomic(data): a cell holding data, a plain
** table converted into a shared table. */
static int cell_new(lua_State *L, tn_type_t type, const char *method) {
  lua_settop(L, 1);
  tn_blob_t *b = encode_data(L, 1, method);
  tn_cell_t *c;
  int rc = tn_cell_new(type, b, &c);
  if (rc != TN_OK) {
    tn_blob_release(b);
    return tn_l_coreerror(L, method, rc);
  }
  tn_l_pushnew(L, TN_OBJECT(c));
  return 1;
}

static int l_share_new(lua_State *L) {
  return cell_new(L, TN_TYPE_SHARE, SHARE);
}

static int l_atomic_new(lua_State *L) {
  return cell_new(L, TN_TYPE_ATOMIC, ATOMIC);
}

static int peek_cell(tn_peek_t *p, void *c) {
  return tn_cell_peek(c, p, TN_FOREVER);
}

/* Push the cell's data. In process it is a shared table (or a scalar)
** that synchronizes itself; a cluster Atomic's data is a copy, fetched
** from the server. Usually it is a shared table this state has a box for:
** no reference taken, so threads reading x.data at once write nothing
** they share. */
static void push_data(lua_State *L, tn_cell_t *c, const char *method) {
  unsigned char buf[64];
  tn_object_t *objs[1];
  tn_peek_t p = {buf, sizeof buf, objs, 1, 1, 0, 0, 0, NULL};
  int rc = peek_cell(&p, c);
  if (rc == TN_OK) rc = tn_l_pushpeek(L, &p, peek_cell, c, method);
  if (rc != TN_OK) tn_l_coreerror(L, method, rc);
}

/* Whether blob `a` holds what `b` holds: the same bytes, the same objects. */
static int same_blob(const tn_blob_t *a, const tn_blob_t *b) {
  if (a == NULL || b == NULL) return a == b;
  size_t n = tn_blob_size(a), k = tn_blob_nrefs(a);
  if (n != tn_blob_size(b) || k != tn_blob_nrefs(b) ||
      memcmp(tn_blob_data(a), tn_blob_data(b), n) != 0)
    return 0;
  for (size_t i = 0; i < k; i++)
    if (tn_blob_ref(a, i) != tn_blob_ref(b, i)) return 0;
  return 1;
}

/* x.data -> the data; x.name -> the method (upvalue 2 is the methods
** table). Shared by Share and Atomic: each class has its own closure. */
static int cell_index(lua_State *L, const char *method) {
  tn_cell_t *c = (tn_cell_t *)tn_l_checkobject(L, 1, method);
  size_t len;
  const char *key = lua_type(L, 2) == LUA_TSTRING ? lua_tolstring(L, 2, &len)
                                                  : NULL;
  if (key != NULL && len == 4 && memcmp(key, "data", 4) == 0) {
    push_data(L, c, method);
    return 1;
  }
  lua_pushvalue(L, 2);
  lua_rawget(L, lua_upvalueindex(2));
  return 1;
}

static int l_share_index(lua_State *L) { return cell_index(L, SHARE); }

static int l_atomic_index(lua_State *L) { return cell_index(L, ATOMIC); }

/* The data is fixed for the cell's life: change what it holds instead. */
static int cell_newindex(lua_State *L, const char *method) {
  tn_l_checkobject(L, 1, method);
  tn_tolstring(L, 2, NULL);
  return tn_l_error(L, method,
                    "cannot set field %s (the data is fixed; change what "
                    "it holds)",
                    lua_tostring(L, -1));
}

static int l_share_newindex(lua_State *L) { return cell_newindex(L, SHARE); }

static int l_atomic_newindex(lua_State *L) {
  return cell_newindex(L, ATOMIC);
}

/*
** share:access(callback) -> callback(share.data)'s results. No lock: a
** Share promises only that each single access of a shared table is atomic
** (Atomic is the one with a lock). An error propagates as it is.
*/
static int l_share_access(lua_State *L) {
  const char *method = SHARE ":access";
  tn_cell_t *c = (tn_cell_t *)tn_l_checkobject(L, 1, method);
  tn_l_checkcallback(L, 2, method);
  lua_settop(L, 2);
  push_data(L, c, method);
  lua_call(L, 1, LUA_MULTRET);
  return lua_gettop(L) - 1;
}

/* What a protected Atomic callback works on. */
typedef struct atomic_ctx {
  tn_cell_t *cell;
  const char *method;
  int write;      /* store the data back after the callback */
  tn_blob_t *out; /* write: the data, encoded after the callback */
} atomic_ctx_t;

/* Protected: (ctx, callback) -> callback(data)'s results. The decoding
** may raise too, so it happens in here, under the lock's pcall. A write
** encodes the data again after the callback: for a cluster Atomic that is
** the changed copy to store; in process it is the same shared table. */
static int atomic_body(lua_State *L) {
  atomic_ctx_t *ctx = lua_touserdata(L, 1);
  lua_remove(L, 1); /* the callback is on 1 now */
  push_data(L, ctx->cell, ctx->method);
  if (ctx->write) {
    lua_pushvalue(L, 2);
    lua_insert(L, 1); /* data, callback, data */
  }
  lua_call(L, 1, LUA_MULTRET);
  if (ctx->write) {
    ctx->out = tn_l_encode(L, 1, 1, ctx->method);
    lua_remove(L, 1);
  }
  return lua_gettop(L);
}

/*
** read(callback) / write(callback) -> callback(data)'s results, as a
** reader / the writer of the object's callback lock. The lock's internal
** mutex is held only inside the lock calls, never while the callback runs
** (DESIGN.md invariant 4), so a callback may use any other tunnel object.
** The callback runs under lua_pcall: an error releases the lock, then is
** raised again with the same error value. Async: nil when the lock is busy,
** and then the callback does not run.
*/
static int atomic_call(lua_State *L, const char *method, int write,
                       double timeout) {
  tn_cell_t *c = (tn_cell_t *)tn_l_checkobject(L, 1, method);
  tn_object_t *o = TN_OBJECT(c);
  tn_l_checkcallback(L, 2, method);
  lua_settop(L, 2);
  int rc = write ? tn_object_write_lock(o, timeout)
                 : tn_object_read_lock(o, timeout);
  if (tn_l_waited(rc)) {
    lua_pushnil(L);
    return 1;
  }
  if (rc != TN_OK) return tn_l_coreerror(L, method, rc);
  atomic_ctx_t ctx = {c, method, write, NULL};
  lua_pushcfunction(L, atomic_body);
  lua_pushlightuserdata(L, &ctx);
  lua_pushvalue(L, 2);
  int status = lua_pcall(L, 2, LUA_MULTRET, 0);
  if (status == 0 && write) {
    /* Stored before the lock goes, so no other writer sees the old data.
    ** In process the data is a shared table that changed in place: the
    ** same reference as before, nothing to store (tn_cell_value is NULL
    ** for a cluster Atomic, which always stores its copy). */
    if (same_blob(ctx.out, tn_cell_value(c)) && ctx.out != NULL) {
      tn_blob_release(ctx.out);
    } else {
      rc = tn_cell_set(c, ctx.out, TN_FOREVER);
      if (rc != TN_OK) tn_blob_release(ctx.out);
    }
  }
  if (write)
    tn_object_write_unlock(o);
  else
    tn_object_read_unlock(o);
  if (status != 0) return lua_error(L); /* the callback's own error value */
  if (rc != TN_OK) return tn_l_coreerror(L, method, rc);
  return lua_gettop(L) - 2;
}

static int l_atomic_read(lua_State *L) {
  return atomic_call(L, ATOMIC ":read", 0, TN_FOREVER);
}

static int l_atomic_readasync(lua_State *L) {
  return atomic_call(L, ATOMIC ":readAsync", 0, TN_TRY);
}

static int l_atomic_write(lua_State *L) {
  return atomic_call(L, ATOMIC ":write", 1, TN_FOREVER);
}

static int l_atomic_writeasync(lua_State *L) {
  return atomic_call(L, ATOMIC ":writeAsync", 1, TN_TRY);
}

static const luaL_Reg share_methods[] = {{"access", l_share_access},
                                         {NULL, NULL}};

static const luaL_Reg share_meta[] = {{"__index", l_share_index},
                                      {"__newindex", l_share_newindex},
                                      {NULL, NULL}};

static const luaL_Reg atomic_methods[] = {
    {"read", l_atomic_read},
    {"readAsync", l_atomic_readasync},
    {"write", l_atomic_write},
    {"writeAsync", l_atomic_writeasync},
    {NULL, NULL}};

static const luaL_Reg atomic_meta[] = {{"__index", l_atomic_index},
                                       {"__newindex", l_atomic_newindex},
                                       {NULL, NULL}};

/* ---- registration ---------------------------------------------------------- */

static const tn_l_class_t table_class = {
    TN_TYPE_TABLE, TABLE, NULL, table_meta};
static const tn_l_class_t share_class = {
    TN_TYPE_SHARE, SHARE, share_methods, share_meta};
static const tn_l_class_t atomic_class = {
    TN_TYPE_ATOMIC, ATOMIC, atomic_methods, atomic_meta};

void tn_l_open_share(lua_State *L) {
  tn_l_newclass(L, &table_class);
  tn_l_newclass(L, &share_class);
  tn_l_newclass(L, &atomic_class);
  lua_pushcfunction(L, l_snapshot);
  lua_setfield(L, -2, "snapshot");
  lua_pushcfunction(L, l_share_new);
  lua_setfield(L, -2, "Share");
  lua_pushcfunction(L, l_atomic_new);
  lua_setfield(L, -2, "Atomic");
}
