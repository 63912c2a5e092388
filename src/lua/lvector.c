/*
** lvector.c - tunnel.Vector: an array, queue and stack shared by threads,
** the binding of the core deque (tn_deque_*).
**
** Indexes are 1-based here and 0-based in the core. Every method `foo` has
** an Async twin `fooAsync`: both share one implementation that takes the
** timeout (TN_TRY for the twin, which returns a nil status instead of
** waiting). Values are encoded with tn_l_encode in the calling thread and
** decoded with tn_l_decode in the receiving one.
**
** read/write/sort run user code while holding the object's callback lock
** (tn_object_read_lock / tn_object_write_lock), never the deque's mutex;
** that code runs under lua_pcall so an error releases the lock and is then
** re-raised with the same error value.
**
** Caveats:
** - pairs(v) works where the Lua honours __pairs (5.2+); ipairs(v) on 5.4
**   walks v[1], v[2], ... and stops at the first nil value. LuaJIT and 5.1
**   (without 5.2 compatibility) honour neither: use v:iterator().
** - Results follow the original (tunnel/vector.lua of the Torch prototype):
**   get past the end is `nil, true`; a missing value (v:pushBack(),
**   v:set(i)) is nil; iterator() returns the iterator and `true`, and a
**   busy iteratorAsync an iterator that yields nothing and `false`.
** - The value a pop/remove takes is decoded after the core call under a
**   protected call: a value this state cannot decode goes back where it
**   was (push_taken) and the error is raised. A get decodes a new
**   reference, so nothing is taken.
** - sort hands nil values to `compare` as the original did; without a
**   compare it uses < and puts nils last. It is a stable merge sort that
**   takes any comparator, as the original's qsort did (see merge_sort).
** - v[i] needs __index to be a function, so every `v:method()` lookup is a
**   C call too (about a third of a push+pop pair); a hot loop can cache the
**   method: `local push = v.pushBack; push(v, x)`.
*/
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ltunnel.h"

#define VECTOR "tunnel.Vector"
#define M(name) VECTOR ":" name

/* ---- arguments ------------------------------------------------------------ */

static tn_deque_t *check_vector(lua_State *L, const char *method) {
  return (tn_deque_t *)tn_l_checkobject(L, 1, method);
}

/* The 0-based core index of the 1-based positive integer at `idx`. */
static size_t check_index(lua_State *L, int idx, const char *method) {
#if TN_HAS_INTEGERS
  if (lua_isinteger(L, idx)) {
    lua_Integer i = lua_tointeger(L, idx);
    if (i >= 1) return (size_t)(i - 1);
  } else
#endif
  if (lua_type(L, idx) == LUA_TNUMBER) {
    lua_Number n = lua_tonumber(L, idx);
    if (n >= 1 && n == floor(n) && n <= 9007199254740992.0)
      return (size_t)n - 1;
  }
  if (lua_type(L, idx) == LUA_TNUMBER)
    return (size_t)tn_l_error(L, method,
                              "index must be a positive integer (got %s)",
                              lua_tostring(L, idx));
  return (size_t)tn_l_error(L, method,
                            "index must be a positive integer (got %s)",
                            luaL_typename(L, idx));
}

/* ---- results -------------------------------------------------------------- */

static int closed_error(lua_State *L, const char *method) {
  return tn_l_error(L, method, "vector is closed");
}

/* ---- constructor ---------------------------------------------------------- */

/* tunnel.Vector([size_hint]): nil or math.huge for an unbounded vector. */
static int l_vector_new(lua_State *L) {
  size_t hint = TN_UNBOUNDED;
  if (!lua_isnoneornil(L, 1)) {
    int t = lua_type(L, 1);
    lua_Number n = t == LUA_TNUMBER ? lua_tonumber(L, 1) : 0;
    if (t == LUA_TNUMBER && isinf(n) && n > 0) {
      hint = TN_UNBOUNDED;
    } else if (t == LUA_TNUMBER && n >= 1 && n == floor(n)) {
      hint = (size_t)tn_l_checkinteger(L, 1, VECTOR, "size_hint");
    } else {
      return tn_l_error(L, VECTOR,
                        "size_hint must be an integer >= 1 or math.huge "
                        "(got %s)",
                        t == LUA_TNUMBER ? lua_tostring(L, 1)
                                         : luaL_typename(L, 1));
    }
  }
  tn_deque_t *d;
  int rc = tn_deque_new(hint, &d);
  if (rc != TN_OK) return tn_l_coreerror(L, VECTOR, rc);
  tn_l_pushnew(L, TN_OBJECT(d));
  return 1;
}

/* ---- queue and stack ------------------------------------------------------ */

/* The hot path: check self, encode, one core call. A missing value is nil
** (v:pushBack() pushes nil, as in the original). */
static int vector_push(lua_State *L, const char *method, int front,
                       double timeout) {
  tn_deque_t *d = check_vector(L, method);
  if (lua_gettop(L) < 2) lua_settop(L, 2);
  tn_blob_t *b = tn_l_encode(L, 2, 1, method);
  int rc = front ? tn_deque_push_front(d, b, timeout)
                 : tn_deque_push_back(d, b, timeout);
  if (rc == TN_OK) {
    lua_pushboolean(L, 1);
    return 1;
  }
  tn_blob_release(b); /* not taken: still ours */
  if (tn_l_waited(rc)) return tn_l_pushnils(L, 1);
  if (rc == TN_ECLOSED) return closed_error(L, method);
  return tn_l_coreerror(L, method, rc);
}

static int l_vector_pushback(lua_State *L) {
  return vector_push(L, M("pushBack"), 0,
                     tn_l_opttimeout(L, 3, M("pushBack")));
}

static int l_vector_pushbackasync(lua_State *L) {
  return vector_push(L, M("pushBackAsync"), 0, TN_TRY);
}

static int l_vector_pushfront(lua_State *L) {
  return vector_push(L, M("pushFront"), 1,
                     tn_l_opttimeout(L, 3, M("pushFront")));
}

static int l_vector_pushfrontasync(lua_State *L) {
  return vector_push(L, M("pushFrontAsync"), 1, TN_TRY);
}

/*
** Push the value `b` just taken from `d` at core index `at` (0: the front,
** TN_END: the back). If this state cannot decode it (a module it cannot
** require, an unregistered class) the value goes back where it was and
** the decoding error is raised: a failed call leaves the vector as it was,
** apart from the order among values other threads moved meanwhile. A
** position past the end by then means the end. Only a vector closed in
** that window refuses the value back, which is then dropped (the error
** says so).
*/
static void push_taken(lua_State *L, tn_deque_t *d, tn_blob_t *b, size_t at,
                       const char *method) {
  if (tn_l_takeblob(L, b, method) == 0) return;
  int rc = tn_deque_insert(d, at, b, TN_FOREVER);
  if (rc == TN_ERANGE) rc = tn_deque_insert(d, TN_END, b, TN_FOREVER);
  if (rc != TN_OK) {
    tn_blob_release(b);
    lua_pushliteral(L, " (the vector was closed meanwhile: value dropped)");
    lua_concat(L, 2);
  }
  lua_error(L);
}

/* -> value, true; nil, nil (timeout / would wait); nil, false (closed and
** drained). */
static int vector_pop(lua_State *L, const char *method, int front,
                      double timeout) {
  tn_deque_t *d = check_vector(L, method);
  tn_blob_t *b;
  int rc = front ? tn_deque_pop_front(d, &b, timeout)
                 : tn_deque_pop_back(d, &b, timeout);
  if (rc == TN_OK) {
    push_taken(L, d, b, front ? 0 : TN_END, method);
    lua_pushboolean(L, 1);
    return 2;
  }
  if (tn_l_waited(rc)) return tn_l_pushnils(L, 2);
  if (rc == TN_ECLOSED) {
    lua_pushnil(L);
    lua_pushboolean(L, 0);
    return 2;
  }
  return tn_l_coreerror(L, method, rc);
}

static int l_vector_popfront(lua_State *L) {
  return vector_pop(L, M("popFront"), 1, tn_l_opttimeout(L, 2, M("popFront")));
}

static int l_vector_popfrontasync(lua_State *L) {
  return vector_pop(L, M("popFrontAsync"), 1, TN_TRY);
}

static int l_vector_popback(lua_State *L) {
  return vector_pop(L, M("popBack"), 0, tn_l_opttimeout(L, 2, M("popBack")));
}

static int l_vector_popbackasync(lua_State *L) {
  return vector_pop(L, M("popBackAsync"), 0, TN_TRY);
}

/* ---- batches and select --------------------------------------------------- */

/* The count of the table `what` at `idx`: t.n if it is set (an integer
** >= 0), else #t (without __len: a plain table's border). */
static size_t batch_count(lua_State *L, int idx, const char *method,
                          const char *what) {
  if (lua_type(L, idx) != LUA_TTABLE)
    tn_l_error(L, method, "%s must be a table (got %s)", what,
               luaL_typename(L, idx));
  lua_getfield(L, idx, "n");
  size_t n;
  if (lua_isnil(L, -1)) {
    n = (size_t)tn_rawlen(L, idx);
  } else {
    lua_pushfstring(L, "%s.n", what);
    lua_Integer k = tn_l_checkinteger(L, -2, method, lua_tostring(L, -1));
    if (k < 0) tn_l_error(L, method, "%s.n must be >= 0", what);
    lua_pop(L, 1);
    n = (size_t)k;
  }
  lua_pop(L, 1);
  return n;
}

/* What the protected encoding of a batch works on: blobs[0..done) are
** encoded (owned here until the core takes them). */
typedef struct batch_ctx {
  const char *method;
  tn_blob_t **blobs;
  size_t n, done;
} batch_ctx_t;

/* Protected: (ctx, t) -> nothing; encodes t[1..n] into ctx->blobs. */
static int batch_encode_body(lua_State *L) {
  batch_ctx_t *ctx = lua_touserdata(L, 1);
  for (size_t i = 0; i < ctx->n; i++) {
    lua_rawgeti(L, 2, (int)(i + 1));
    ctx->blobs[i] = tn_l_encode(L, -1, 1, ctx->method);
    ctx->done = i + 1;
    lua_pop(L, 1);
  }
  return 0;
}

/* Raise the error on top, naming the item: "<method>: item <i>: <why>". */
static int item_error(lua_State *L, const char *method, size_t i) {
  size_t len, mlen = strlen(method);
  const char *msg = lua_tolstring(L, -1, &len);
  if (msg != NULL && len > mlen + 2 && memcmp(msg, method, mlen) == 0 &&
      msg[mlen] == ':')
    msg += mlen + 2;
  return tn_l_error(L, method, "item %d: %s", (int)i, msg ? msg : "?");
}

/*
** pushMany(t [, timeout]) -> true: t[1..t.n or #t] at the back, in order,
** as one operation, waiting until all of them fit (a batch larger than the
** size hint: until the vector is empty); nil when the timeout ran out
** (Async: when they do not fit now or the vector is busy), nothing pushed.
*/
static int vector_pushmany(lua_State *L, const char *method, double timeout) {
  tn_deque_t *d = check_vector(L, method);
  size_t n = batch_count(L, 2, method, "values");
  if (n > (size_t)INT32_MAX)
    return tn_l_error(L, method, "too many values (%d at most)", INT32_MAX);
  batch_ctx_t ctx = {method, NULL, n, 0};
  if (n > 0) {
    /* A userdata: an error anywhere below frees it. */
    ctx.blobs = tn_newuserdata(L, n * sizeof *ctx.blobs);
    lua_pushcfunction(L, batch_encode_body);
    lua_pushlightuserdata(L, &ctx);
    lua_pushvalue(L, 2);
    if (lua_pcall(L, 2, 0, 0) != 0) {
      size_t failed = ctx.done + 1;
      for (size_t i = 0; i < ctx.done; i++) tn_blob_release(ctx.blobs[i]);
      return item_error(L, method, failed);
    }
  }
  int rc = tn_deque_push_many(d, ctx.blobs, n, timeout);
  if (rc == TN_OK) {
    lua_pushboolean(L, 1);
    return 1;
  }
  for (size_t i = 0; i < n; i++) tn_blob_release(ctx.blobs[i]);
  if (tn_l_waited(rc)) return tn_l_pushnils(L, 1);
  if (rc == TN_ECLOSED) return closed_error(L, method);
  return tn_l_coreerror(L, method, rc);
}

static int l_vector_pushmany(lua_State *L) {
  return vector_pushmany(L, M("pushMany"),
                         tn_l_opttimeout(L, 3, M("pushMany")));
}

static int l_vector_pushmanyasync(lua_State *L) {
  return vector_pushmany(L, M("pushManyAsync"), TN_TRY);
}

/* What the protected decoding of popped values works on. */
typedef struct taken_ctx {
  const char *method;
  tn_blob_t **items;
  size_t n;
} taken_ctx_t;

/* Protected: (ctx) -> {values..., n = count}. */
static int taken_body(lua_State *L) {
  taken_ctx_t *ctx = lua_touserdata(L, 1);
  lua_createtable(L, (int)ctx->n, 1);
  for (size_t i = 0; i < ctx->n; i++) {
    int k = tn_l_decode(L, ctx->items[i], ctx->method);
    if (k != 1) lua_settop(L, lua_gettop(L) - k + 1);
    lua_rawseti(L, -2, (int)(i + 1));
  }
  lua_pushinteger(L, (lua_Integer)ctx->n);
  lua_setfield(L, -2, "n");
  return 1;
}

/*
** popMany(max [, timeout]) -> {values..., n = count}, true: up to max
** values from the front, waiting for at least one; {n = 0}, nil when the
** timeout ran out (Async: empty or busy); {n = 0}, false when closed and
** drained. A value this state cannot decode puts them all back at the
** front, in order, and raises.
*/
static int vector_popmany(lua_State *L, const char *method, double timeout) {
  tn_deque_t *d = check_vector(L, method);
  lua_Integer max = tn_l_checkinteger(L, 2, method, "max");
  if (max < 1) return tn_l_error(L, method, "max must be >= 1");
  tn_blob_t **items = NULL;
  size_t n = 0;
  int rc = tn_deque_pop_many(d, (size_t)max, &items, &n, timeout);
  if (rc != TN_OK) {
    if (!tn_l_waited(rc) && rc != TN_ECLOSED)
      return tn_l_coreerror(L, method, rc);
    lua_createtable(L, 0, 1);
    lua_pushinteger(L, 0);
    lua_setfield(L, -2, "n");
    if (rc == TN_ECLOSED)
      lua_pushboolean(L, 0);
    else
      lua_pushnil(L);
    return 2;
  }
  taken_ctx_t ctx = {method, items, n};
  luaL_checkstack(L, 4, method);
  lua_pushcfunction(L, taken_body);
  lua_pushlightuserdata(L, &ctx);
  if (lua_pcall(L, 1, 1, 0) != 0) {
    /* Back at the front, in their order (see push_taken). */
    size_t dropped = 0;
    for (size_t i = 0; i < n; i++) {
      int r = tn_deque_insert(d, i, items[i], TN_FOREVER);
      if (r == TN_ERANGE) r = tn_deque_insert(d, TN_END, items[i], TN_FOREVER);
      if (r != TN_OK) {
        tn_blob_release(items[i]);
        dropped++;
      }
      items[i] = NULL; /* the vector's (or gone) */
    }
    tn_blob_array_free(items, n);
    if (dropped > 0) {
      lua_pushliteral(L, " (the vector was closed meanwhile: values dropped)");
      lua_concat(L, 2);
    }
    return lua_error(L);
  }
  tn_blob_array_free(items, n);
  lua_pushboolean(L, 1);
  return 2;
}

static int l_vector_popmany(lua_State *L) {
  return vector_popmany(L, M("popMany"), tn_l_opttimeout(L, 3, M("popMany")));
}

static int l_vector_popmanyasync(lua_State *L) {
  return vector_popmany(L, M("popManyAsync"), TN_TRY);
}

/*
** tunnel.select(vectors [, timeout]) -> index, value, true: pops the front
** of the first of vectors[1..vectors.n or #vectors] that has a value,
** waiting on all of them at once, fairly (tn_deque_select); nil, nil, nil
** when the timeout ran out; nil, nil, false when every one is closed and
** drained. All in process or all of one cluster.
*/
#define SELECT "tunnel.select"
static int l_select(lua_State *L) {
  size_t n = batch_count(L, 1, SELECT, "vectors");
  double timeout = tn_l_opttimeout(L, 2, SELECT);
  if (n == 0)
    return tn_l_error(L, SELECT, "vectors must hold at least one "
                                 VECTOR);
  if (n > 1u << 20)
    return tn_l_error(L, SELECT, "too many vectors (%d at most)", 1 << 20);
  /* The common few on the C stack; more in a userdata (freed by the GC
  ** whatever raises below). */
  tn_deque_t *few[16];
  tn_deque_t **ds = n <= 16 ? few : tn_newuserdata(L, n * sizeof *ds);
  /* A Vector is a box whose metatable is the class's (nil: no Vector was
  ** ever made in this state, so none can be in the list). */
  luaL_getmetatable(L, VECTOR);
  int mt = lua_gettop(L);
  int remote = 0;
  for (size_t i = 0; i < n; i++) {
    lua_rawgeti(L, 1, (int)(i + 1));
    tn_box_t *box = lua_touserdata(L, -1);
    int is_vector = box != NULL && lua_getmetatable(L, -1);
    if (is_vector) {
      is_vector = lua_rawequal(L, -1, mt) && box->object != NULL;
      lua_pop(L, 1);
    }
    if (!is_vector)
      return tn_l_error(L, SELECT, "vectors[%d] must be a " VECTOR
                        " (got %s)", (int)(i + 1), luaL_typename(L, -1));
    tn_object_t *o = box->object;
    lua_pop(L, 1);
    int r = tn_object_is_remote(o);
    if (i == 0)
      remote = r;
    else if (r != remote)
      return tn_l_error(L, SELECT,
                        "vectors must be all in process or all of one "
                        "cluster (vectors[1] is %s, vectors[%d] %s)",
                        remote ? "a cluster vector" : "in process",
                        (int)(i + 1), r ? "a cluster vector" : "in process");
    ds[i] = (tn_deque_t *)o;
  }
  size_t index = 0;
  tn_blob_t *b = NULL;
  int rc = tn_deque_select(ds, n, &index, &b, timeout);
  if (rc == TN_OK) {
    lua_pushinteger(L, (lua_Integer)index + 1);
    push_taken(L, ds[index], b, 0, SELECT);
    lua_pushboolean(L, 1);
    return 3;
  }
  if (tn_l_waited(rc)) return tn_l_pushnils(L, 3);
  if (rc == TN_ECLOSED) {
    tn_l_pushnils(L, 2);
    lua_pushboolean(L, 0);
    return 3;
  }
  if (rc == TN_EINVAL && tn_last_error()[0] != '\0')
    return tn_l_error(L, SELECT, "%s", tn_last_error());
  return tn_l_coreerror(L, SELECT, rc);
}

/* ---- array ---------------------------------------------------------------- */

/*
** insert([index,] value) -> true; nil if index > size + 1 (or Async would
** wait). Unlike a push it does not wait for room (as in the original): the
** size hint bounds pushes only.
*/
static int vector_insert(lua_State *L, const char *method, double timeout) {
  tn_deque_t *d = check_vector(L, method);
  int append = lua_gettop(L) == 2; /* insert(value) */
  size_t index = 0;
  if (!append) {
    if (lua_gettop(L) < 2) return tn_l_error(L, method, "value expected");
    index = check_index(L, 2, method);
  }
  tn_blob_t *b = tn_l_encode(L, append ? 2 : 3, 1, method);
  int rc = tn_deque_insert(d, append ? TN_END : index, b, timeout);
  if (rc == TN_OK) {
    lua_pushboolean(L, 1);
    return 1;
  }
  tn_blob_release(b);
  if (rc == TN_ERANGE || tn_l_waited(rc)) return tn_l_pushnils(L, 1);
  if (rc == TN_ECLOSED) return closed_error(L, method);
  return tn_l_coreerror(L, method, rc);
}

static int l_vector_insert(lua_State *L) {
  return vector_insert(L, M("insert"), TN_FOREVER);
}

static int l_vector_insertasync(lua_State *L) {
  return vector_insert(L, M("insertAsync"), TN_TRY);
}

/* remove([index]) -> value, true; nil, nil when out of range or empty. */
static int vector_remove(lua_State *L, const char *method, double timeout) {
  tn_deque_t *d = check_vector(L, method);
  tn_blob_t *b;
  int rc;
  size_t at = TN_END;
  if (lua_isnoneornil(L, 2)) /* the end; timeout 0 never waits for items */
    rc = tn_deque_pop_back(d, &b, timeout == TN_TRY ? TN_TRY : 0);
  else
    rc = tn_deque_remove(d, at = check_index(L, 2, method), &b, timeout);
  if (rc == TN_OK) {
    push_taken(L, d, b, at, method);
    lua_pushboolean(L, 1);
    return 2;
  }
  if (rc == TN_ERANGE || rc == TN_ECLOSED || tn_l_waited(rc))
    return tn_l_pushnils(L, 2);
  return tn_l_coreerror(L, method, rc);
}

static int l_vector_remove(lua_State *L) {
  return vector_remove(L, M("remove"), TN_FOREVER);
}

static int l_vector_removeasync(lua_State *L) {
  return vector_remove(L, M("removeAsync"), TN_TRY);
}

/* Push the value at the index at stack slot 2; returns TN_OK or the core's
** code (TN_ERANGE: index > size), pushing nothing then. */
static int vector_getvalue(lua_State *L, tn_deque_t *d, const char *method,
                           double timeout) {
  tn_blob_t *b;
  int rc = tn_deque_get(d, check_index(L, 2, method), &b, timeout);
  if (rc == TN_OK) tn_l_pushblob(L, b, method);
  return rc;
}

/* get(index) -> value, true; nil, true when index > size (the original's
** result: the get happened and found nothing); nil, nil when Async would
** wait. */
static int vector_get(lua_State *L, const char *method, double timeout) {
  tn_deque_t *d = check_vector(L, method);
  int rc = vector_getvalue(L, d, method, timeout);
  if (rc == TN_OK || rc == TN_ERANGE) {
    if (rc == TN_ERANGE) lua_pushnil(L);
    lua_pushboolean(L, 1);
    return 2;
  }
  if (tn_l_waited(rc)) return tn_l_pushnils(L, 2);
  return tn_l_coreerror(L, method, rc);
}

static int l_vector_get(lua_State *L) {
  return vector_get(L, M("get"), TN_FOREVER);
}

static int l_vector_getasync(lua_State *L) {
  return vector_get(L, M("getAsync"), TN_TRY);
}

/*
** set(index, value) -> true, old value; grows with nils past the end; a
** missing value is nil (v:set(i) stores nil, as in the original). nil, nil
** when Async would wait. On a closed vector only an in-place set works:
** growing raises, like a push.
*/
static int vector_set(lua_State *L, const char *method, double timeout) {
  tn_deque_t *d = check_vector(L, method);
  size_t index = check_index(L, 2, method);
  lua_settop(L, 3);
  tn_blob_t *b = tn_l_encode(L, 3, 1, method), *old;
  int rc = tn_deque_set(d, index, b, &old, timeout);
  if (rc == TN_OK) {
    lua_pushboolean(L, 1);
    tn_l_pushblob(L, old, method);
    return 2;
  }
  tn_blob_release(b);
  if (tn_l_waited(rc)) return tn_l_pushnils(L, 2);
  if (rc == TN_ECLOSED) return closed_error(L, method);
  return tn_l_coreerror(L, method, rc);
}

static int l_vector_set(lua_State *L) {
  return vector_set(L, M("set"), TN_FOREVER);
}

static int l_vector_setasync(lua_State *L) {
  return vector_set(L, M("setAsync"), TN_TRY);
}

/* size() never waits: the core reads it without the lock. */
static int l_vector_size(lua_State *L) {
  tn_deque_t *d = check_vector(L, M("size"));
  lua_pushinteger(L, (lua_Integer)tn_deque_size(d));
  tn_l_checkpending(L, M("size")); /* a cluster vector's failure */
  return 1;
}

static int l_vector_sizeasync(lua_State *L) {
  tn_deque_t *d = check_vector(L, M("sizeAsync"));
  lua_pushinteger(L, (lua_Integer)tn_deque_size(d));
  tn_l_checkpending(L, M("sizeAsync"));
  return 1;
}

/* close() -> true; it waits while another thread's callback holds the
** vector, closeAsync() gives nil then. isClosed() never waits. */
static int vector_close(lua_State *L, const char *method, double timeout) {
  int rc = tn_deque_close_timed(check_vector(L, method), timeout);
  if (tn_l_waited(rc)) {
    lua_pushnil(L);
    return 1;
  }
  if (rc != TN_OK) return tn_l_coreerror(L, method, rc);
  lua_pushboolean(L, 1);
  return 1;
}

static int l_vector_close(lua_State *L) {
  return vector_close(L, M("close"), TN_FOREVER);
}

static int l_vector_closeasync(lua_State *L) {
  return vector_close(L, M("closeAsync"), TN_TRY);
}

static int vector_isclosed(lua_State *L, const char *method) {
  lua_pushboolean(L, tn_deque_is_closed(check_vector(L, method)));
  tn_l_checkpending(L, method);
  return 1;
}

static int l_vector_isclosed(lua_State *L) {
  return vector_isclosed(L, M("isClosed"));
}

static int l_vector_isclosedasync(lua_State *L) {
  return vector_isclosed(L, M("isClosedAsync"));
}

/* ---- callbacks ------------------------------------------------------------ */

/* An index past the end holds nil, for a read and for a write's callback. */
static int vector_slot_get(const tn_l_slot_t *s, tn_blob_t **out,
                           double timeout) {
  int rc = tn_deque_get(s->self, s->len, out, timeout);
  if (rc == TN_ERANGE) {
    *out = NULL;
    rc = TN_OK;
  }
  return rc;
}

static int vector_slot_set(const tn_l_slot_t *s, tn_blob_t *b) {
  return tn_deque_set(s->self, s->len, b, NULL, TN_FOREVER);
}

/*
** read(index, callback) -> callback(value)'s results, as a reader of the
** callback lock; write(index, callback) -> true, new value, as the writer,
** storing the callback's first result at index (growing past the end). An
** index past the end hands the callback nil. Async: nil when the lock (or
** the deque's mutex) is busy, and then the callback does not run.
*/
static int vector_callback(lua_State *L, const char *method, int write,
                           double timeout) {
  tn_deque_t *d = check_vector(L, method);
  size_t index = check_index(L, 2, method);
  tn_l_checkcallback(L, 3, method);
  lua_settop(L, 3);
  /* The slot's key is unused; its `len` carries the 0-based index. */
  tn_l_slot_t slot = {vector_slot_get, vector_slot_set, d, NULL, index};
  int n;
  int rc = tn_l_callback(L, TN_OBJECT(d), &slot, write, timeout, method, &n);
  if (tn_l_waited(rc)) /* status, new value */
    return tn_l_pushnils(L, write ? 2 : 1);
  if (rc == TN_ECLOSED) return closed_error(L, method);
  if (rc != TN_OK) return tn_l_coreerror(L, method, rc);
  if (!write) return n;
  lua_pushboolean(L, 1);
  lua_insert(L, -2); /* true, new value */
  return 2;
}

static int l_vector_read(lua_State *L) {
  return vector_callback(L, M("read"), 0, TN_FOREVER);
}

static int l_vector_readasync(lua_State *L) {
  return vector_callback(L, M("readAsync"), 0, TN_TRY);
}

static int l_vector_write(lua_State *L) {
  return vector_callback(L, M("write"), 1, TN_FOREVER);
}

static int l_vector_writeasync(lua_State *L) {
  return vector_callback(L, M("writeAsync"), 1, TN_TRY);
}

/* ---- snapshots: sort, iterator, toString ---------------------------------- */

/* A snapshot and what is built from it; whatever is left in here when a
** protected body returns or raises is freed by its caller. */
typedef struct snapshot_ctx {
  const char *method;
  tn_deque_t *d;
  double timeout;
  int rc;            /* the core's result, when not TN_OK */
  tn_blob_t **items; /* the snapshot (owned) */
  size_t n;
  uint64_t version;
  tn_blob_t **sorted; /* sort: the values in their new order (owned) */
  size_t nsorted;     /* how many of them are in it so far */
} snapshot_ctx_t;

static void snapshot_free(snapshot_ctx_t *ctx) {
  tn_blob_array_free(ctx->items, ctx->n);
  ctx->items = NULL;
  ctx->n = 0;
  for (size_t i = 0; i < ctx->nsorted; i++) tn_blob_release(ctx->sorted[i]);
  free(ctx->sorted);
  ctx->sorted = NULL;
  ctx->nsorted = 0;
}

/* Push a table of the snapshot's values, 1..n (nil values leave holes). */
static void push_items(lua_State *L, snapshot_ctx_t *ctx) {
  lua_createtable(L, ctx->n > (size_t)INT32_MAX ? 0 : (int)ctx->n, 0);
  for (size_t i = 0; i < ctx->n; i++) {
    int k = tn_l_decode(L, ctx->items[i], ctx->method);
    if (k != 1) lua_settop(L, lua_gettop(L) - k + 1);
    lua_rawseti(L, -2, (int)(i + 1));
  }
}

/* Protected: (ctx) -> table of the snapshot's values. */
static int items_body(lua_State *L) {
  snapshot_ctx_t *ctx = lua_touserdata(L, 1);
  push_items(L, ctx);
  return 1;
}

/*
** Push a table with the values of a snapshot and return their number, or
** return -1 (pushing nothing) when the snapshot would have had to wait.
*/
static lua_Integer push_snapshot(lua_State *L, tn_deque_t *d,
                                 const char *method, double timeout) {
  snapshot_ctx_t ctx = {method, d, timeout, TN_OK, NULL, 0, 0, NULL, 0};
  int rc = tn_deque_snapshot(d, &ctx.items, &ctx.n, &ctx.version, timeout);
  if (tn_l_waited(rc)) return -1;
  if (rc != TN_OK) return tn_l_coreerror(L, method, rc);
  lua_pushcfunction(L, items_body);
  lua_pushlightuserdata(L, &ctx);
  int status = lua_pcall(L, 1, 1, 0);
  size_t n = ctx.n;
  snapshot_free(&ctx);
  if (status != 0) return lua_error(L);
  return (lua_Integer)n;
}

/*
** Whether the value at position x of the snapshot goes before the one at y.
** Upvalue 1 is the table of decoded values (holes for nils), upvalue 2 the
** user's compare or nil. With a compare, nils are handed to it, as the
** original did (its tds.Vec sort decoded every value, nils too); without
** one, < orders the values and nils go last.
*/
static int sort_order(lua_State *L) {
  lua_rawgeti(L, lua_upvalueindex(1), (int)lua_tointeger(L, 1));
  lua_rawgeti(L, lua_upvalueindex(1), (int)lua_tointeger(L, 2));
  if (!lua_isnil(L, lua_upvalueindex(2))) {
    lua_pushvalue(L, lua_upvalueindex(2));
    lua_insert(L, -3);
    lua_call(L, 2, 1);
    return 1;
  }
  if (lua_isnil(L, -1) || lua_isnil(L, -2)) {
    lua_pushboolean(L, lua_isnil(L, -1) && !lua_isnil(L, -2));
    return 1;
  }
#if LUA_VERSION_NUM >= 502
  lua_pushboolean(L, lua_compare(L, -2, -1, LUA_OPLT));
#else
  lua_pushboolean(L, lua_lessthan(L, -2, -1));
#endif
  return 1;
}

/* order(x, y), the function at `order`, as a C truth value. */
static int sort_before(lua_State *L, int order, lua_Integer x, lua_Integer y) {
  lua_pushvalue(L, order);
  lua_pushinteger(L, x);
  lua_pushinteger(L, y);
  lua_call(L, 2, 1);
  int r = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return r;
}

/*
** Sort the positions a[0..n) with `order` by a bottom-up merge sort, using
** tmp[0..n); returns the array that holds the result (a or tmp). Not
** table.sort: the original sorted with C's qsort (a merge sort in glibc),
** which accepts any comparator, while table.sort raises "invalid order
** function" for one that is not a strict order; the original's own unit
** test sorts with one (compare(nil, nil) is true). A merge never reads
** outside its runs, whatever the comparator answers. Stable: a value is
** taken from the right run only when it goes before the left one.
*/
static lua_Integer *merge_sort(lua_State *L, int order, lua_Integer *a,
                               lua_Integer *tmp, size_t n) {
  for (size_t width = 1; width < n; width *= 2) {
    for (size_t lo = 0; lo < n; lo += 2 * width) {
      size_t mid = lo + width < n ? lo + width : n;
      size_t hi = lo + 2 * width < n ? lo + 2 * width : n;
      size_t i = lo, j = mid, k = lo;
      while (i < mid && j < hi)
        tmp[k++] = sort_before(L, order, a[j], a[i]) ? a[j++] : a[i++];
      while (i < mid) tmp[k++] = a[i++];
      while (j < hi) tmp[k++] = a[j++];
    }
    lua_Integer *t = a;
    a = tmp;
    tmp = t;
  }
  return a;
}

/*
** Protected: (ctx, compare) -> nothing. Snapshot, decode, sort the
** positions, store the snapshot's own blobs in the sorted order (nothing is
** encoded again, so what the comparator does to its arguments is not
** stored, as in the original), replace if nothing changed since the
** snapshot, else start over from a new snapshot (a push or pop happened
** meanwhile).
*/
static int sort_body(lua_State *L) {
  snapshot_ctx_t *ctx = lua_touserdata(L, 1);
  int cmp = 2;
  for (;;) {
    int rc = tn_deque_snapshot(ctx->d, &ctx->items, &ctx->n, &ctx->version,
                               ctx->timeout);
    if (rc != TN_OK) {
      ctx->rc = rc;
      return 0;
    }
    size_t n = ctx->n;
    if (n > (size_t)INT32_MAX / 2)
      return tn_l_coreerror(L, ctx->method, TN_ENOMEM);
    push_items(L, ctx); /* the values, holes for nils */
    lua_pushvalue(L, cmp);
    lua_pushcclosure(L, sort_order, 2);
    int order = lua_gettop(L);
    /* The positions and the merge buffer: a userdata, so that an error in
    ** the comparator leaves nothing to free. */
    lua_Integer *pos = tn_newuserdata(L, 2 * (n > 0 ? n : 1) * sizeof *pos);
    for (size_t i = 0; i < n; i++) pos[i] = (lua_Integer)i + 1;
    lua_Integer *sorted = merge_sort(L, order, pos, pos + n, n);
    if (n > 0) {
      ctx->sorted = malloc(n * sizeof *ctx->sorted);
      if (ctx->sorted == NULL) return tn_l_coreerror(L, ctx->method, TN_ENOMEM);
    }
    for (size_t i = 0; i < n; i++) {
      ctx->sorted[i] = tn_blob_retain(ctx->items[sorted[i] - 1]);
      ctx->nsorted = i + 1;
    }
    lua_settop(L, cmp);
    rc = tn_deque_replace(ctx->d, ctx->sorted, ctx->n, ctx->version,
                          ctx->timeout);
    if (rc == TN_OK) ctx->nsorted = 0; /* the deque owns the values now */
    snapshot_free(ctx);
    if (rc != TN_ECONFLICT) {
      ctx->rc = rc;
      return 0;
    }
  }
}

/* sort([compare]) -> true, under the write callback lock. */
static int vector_sort(lua_State *L, const char *method, double timeout) {
  tn_deque_t *d = check_vector(L, method);
  tn_object_t *o = TN_OBJECT(d);
  if (!lua_isnoneornil(L, 2)) tn_l_checkcallback(L, 2, method);
  lua_settop(L, 2);
  int rc = tn_object_write_lock(o, timeout);
  if (tn_l_waited(rc)) return tn_l_pushnils(L, 1);
  if (rc != TN_OK) return tn_l_coreerror(L, method, rc);
  snapshot_ctx_t ctx = {method, d, timeout, TN_OK, NULL, 0, 0, NULL, 0};
  lua_pushcfunction(L, sort_body);
  lua_pushlightuserdata(L, &ctx);
  lua_pushvalue(L, 2);
  int status = lua_pcall(L, 2, 0, 0);
  snapshot_free(&ctx);
  tn_object_write_unlock(o);
  if (status != 0) return lua_error(L);
  if (tn_l_waited(ctx.rc)) return tn_l_pushnils(L, 1);
  if (ctx.rc == TN_ECLOSED) return closed_error(L, method);
  if (ctx.rc != TN_OK) return tn_l_coreerror(L, method, ctx.rc);
  lua_pushboolean(L, 1);
  return 1;
}

static int l_vector_sort(lua_State *L) {
  return vector_sort(L, M("sort"), TN_FOREVER);
}

static int l_vector_sortasync(lua_State *L) {
  return vector_sort(L, M("sortAsync"), TN_TRY);
}

/* The iterator: upvalues are the snapshot table, its size, the last index. */
static int vector_next(lua_State *L) {
  lua_Integer i = lua_tointeger(L, lua_upvalueindex(3)) + 1;
  if (i > lua_tointeger(L, lua_upvalueindex(2))) return 0;
  lua_pushinteger(L, i);
  lua_replace(L, lua_upvalueindex(3));
  lua_pushinteger(L, i);
  lua_rawgeti(L, lua_upvalueindex(1), (int)i);
  return 2;
}

/* The iterator of a busy iteratorAsync: it yields nothing. */
static int vector_nothing(lua_State *L) {
  (void)L;
  return 0;
}

/*
** iterator() -> a function yielding index, value over a snapshot, and
** true. iteratorAsync on a busy vector -> a function that yields nothing,
** and false: the original's results, so `for i, x in v:iteratorAsync()`
** never calls nil, and its `if status == true` idiom works.
*/
static int vector_iterator(lua_State *L, const char *method, double timeout) {
  tn_deque_t *d = check_vector(L, method);
  lua_Integer n = push_snapshot(L, d, method, timeout);
  if (n < 0) {
    lua_pushcfunction(L, vector_nothing);
    lua_pushboolean(L, 0);
    return 2;
  }
  lua_pushinteger(L, n);
  lua_pushinteger(L, 0);
  lua_pushcclosure(L, vector_next, 3);
  lua_pushboolean(L, 1);
  return 2;
}

static int l_vector_iterator(lua_State *L) {
  return vector_iterator(L, M("iterator"), TN_FOREVER);
}

static int l_vector_iteratorasync(lua_State *L) {
  return vector_iterator(L, M("iteratorAsync"), TN_TRY);
}

/* __pairs / __ipairs: iterator()'s results (the iterator ignores the
** state and control values the generic for passes it). */
static int l_vector_pairs(lua_State *L) {
  return vector_iterator(L, M("iterator"), TN_FOREVER);
}

/* toString() -> 'tunnel.Vector{1, "a", nil, true}' (a snapshot). */
static int vector_contents(lua_State *L, const char *method, double timeout) {
  tn_deque_t *d = check_vector(L, method);
  lua_Integer n = push_snapshot(L, d, method, timeout);
  if (n < 0) return tn_l_pushnils(L, 1);
  int t = lua_gettop(L);
  luaL_Buffer buf;
  luaL_buffinit(L, &buf);
  luaL_addstring(&buf, VECTOR "{");
  for (lua_Integer i = 1; i <= n; i++) {
    if (i > 1) luaL_addstring(&buf, ", ");
    lua_rawgeti(L, t, (int)i);
    if (lua_type(L, -1) == LUA_TSTRING) {
      /* The table keeps the string alive once it is off the stack, and
      ** the buffer needs the stack as it left it. */
      size_t len;
      const char *s = lua_tolstring(L, -1, &len);
      lua_pop(L, 1);
      tn_l_addquoted(&buf, s, len);
    } else {
      tn_tolstring(L, -1, NULL);
      lua_remove(L, -2); /* only the string above the buffer */
      luaL_addvalue(&buf);
    }
  }
  luaL_addchar(&buf, '}');
  luaL_pushresult(&buf);
  return 1;
}

/* Protected: (method, timeout, vector) -> vector_contents's result. */
static int tostring_body(lua_State *L) {
  const char *method = lua_touserdata(L, 1);
  double timeout = (double)lua_tonumber(L, 2);
  lua_remove(L, 1);
  lua_remove(L, 1);
  return vector_contents(L, method, timeout);
}

/*
** A vector printing a vector prints that one's contents too, through its
** __tostring: without a guard a vector holding itself (or a chain of a
** thousand) recurses until the C stack ends. The registry table PRINTING
** holds the vectors being printed in this state (and [1], how deep): one
** already there prints as "<cycle: tunnel.Vector: 0x...>", and one more
** than PRINT_DEPTH deep as "...". The body runs under a pcall so that an
** error (a value that does not decode) still clears the marks.
*/
#define PRINTING "tunnel.Vector.printing"
#define PRINT_DEPTH 16

static int vector_tostring(lua_State *L, const char *method, double timeout) {
  tn_deque_t *d = check_vector(L, method);
  lua_settop(L, 1);
  lua_getfield(L, LUA_REGISTRYINDEX, PRINTING);
  if (!lua_istable(L, -1)) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, PRINTING);
  }
  int p = lua_gettop(L);
  lua_pushlightuserdata(L, d);
  lua_rawget(L, p);
  if (!lua_isnil(L, -1)) {
    lua_pushfstring(L, "<cycle: " VECTOR ": %p>", (void *)d);
    return 1;
  }
  lua_pop(L, 1);
  lua_rawgeti(L, p, 1);
  int depth = (int)lua_tointeger(L, -1);
  lua_pop(L, 1);
  if (depth >= PRINT_DEPTH) {
    lua_pushliteral(L, "...");
    return 1;
  }
  lua_pushlightuserdata(L, d);
  lua_pushboolean(L, 1);
  lua_rawset(L, p);
  lua_pushinteger(L, depth + 1);
  lua_rawseti(L, p, 1);
  lua_pushvalue(L, lua_upvalueindex(1)); /* the class, for check_vector */
  lua_pushcclosure(L, tostring_body, 1);
  lua_pushlightuserdata(L, (void *)method);
  lua_pushnumber(L, (lua_Number)timeout);
  lua_pushvalue(L, 1);
  int status = lua_pcall(L, 3, 1, 0);
  lua_pushlightuserdata(L, d);
  lua_pushnil(L);
  lua_rawset(L, p);
  lua_pushinteger(L, depth);
  lua_rawseti(L, p, 1);
  if (status != 0) return lua_error(L);
  return 1;
}

static int l_vector_tostring(lua_State *L) {
  return vector_tostring(L, M("toString"), TN_FOREVER);
}

static int l_vector_tostringasync(lua_State *L) {
  return vector_tostring(L, M("toStringAsync"), TN_TRY);
}

/* ---- metamethods ---------------------------------------------------------- */

static int l_vector_len(lua_State *L) {
  tn_deque_t *d = check_vector(L, VECTOR ":size");
  lua_pushinteger(L, (lua_Integer)tn_deque_size(d));
  tn_l_checkpending(L, VECTOR ":size");
  return 1;
}

/* True when the key at `idx` is the string "size_hint". */
static int is_size_hint(lua_State *L, int idx) {
  size_t len;
  const char *k = lua_type(L, idx) == LUA_TSTRING ? lua_tolstring(L, idx, &len)
                                                   : NULL;
  return k != NULL && len == 9 && memcmp(k, "size_hint", 9) == 0;
}

/*
** v.name: a method (upvalue 2 is the methods table); v[i]: get(i);
** v.size_hint: the hint, math.huge when unbounded (the original's field).
** Other names give nil.
*/
static int l_vector_index(lua_State *L) {
  if (lua_type(L, 2) == LUA_TNUMBER) {
    tn_deque_t *d = check_vector(L, M("get"));
    int rc = vector_getvalue(L, d, M("get"), TN_FOREVER);
    if (rc == TN_OK) return 1;
    if (rc == TN_ERANGE) return tn_l_pushnils(L, 1);
    return tn_l_coreerror(L, M("get"), rc);
  }
  lua_pushvalue(L, 2);
  lua_rawget(L, lua_upvalueindex(2));
  if (lua_isnil(L, -1) && is_size_hint(L, 2)) {
    tn_deque_t *d = check_vector(L, VECTOR ".size_hint");
    size_t hint = tn_deque_size_hint(d);
    tn_l_checkpending(L, VECTOR ".size_hint"); /* a cluster vector's */
    if (hint == TN_UNBOUNDED)
      lua_pushnumber(L, HUGE_VAL);
    else
      lua_pushinteger(L, (lua_Integer)hint);
  }
  return 1;
}

/* v[i] = value: set(i, value); no other field can be set (the original let
** a program add Lua fields to its vector table; ours is shared by every
** thread, so a field would be a per-thread illusion). */
static int l_vector_newindex(lua_State *L) {
  if (lua_type(L, 2) == LUA_TNUMBER) {
    vector_set(L, M("set"), TN_FOREVER);
    return 0;
  }
  check_vector(L, VECTOR);
  if (is_size_hint(L, 2))
    return tn_l_error(L, VECTOR, "cannot set field size_hint: the size hint "
                                 "is fixed when the vector is made "
                                 "(tunnel.Vector(size_hint))");
  tn_tolstring(L, 2, NULL);
  return tn_l_error(L, VECTOR, "cannot set field %s (a vector has no "
                               "fields: store values with v[index] = value)",
                    lua_tostring(L, -1));
}

/* ---- registration --------------------------------------------------------- */

static const luaL_Reg vector_methods[] = {
    {"pushBack", l_vector_pushback},
    {"pushBackAsync", l_vector_pushbackasync},
    {"pushFront", l_vector_pushfront},
    {"pushFrontAsync", l_vector_pushfrontasync},
    {"popFront", l_vector_popfront},
    {"popFrontAsync", l_vector_popfrontasync},
    {"popBack", l_vector_popback},
    {"popBackAsync", l_vector_popbackasync},
    {"pushMany", l_vector_pushmany},
    {"pushManyAsync", l_vector_pushmanyasync},
    {"popMany", l_vector_popmany},
    {"popManyAsync", l_vector_popmanyasync},
    {"insert", l_vector_insert},
    {"insertAsync", l_vector_insertasync},
    {"remove", l_vector_remove},
    {"removeAsync", l_vector_removeasync},
    {"get", l_vector_get},
    {"getAsync", l_vector_getasync},
    {"set", l_vector_set},
    {"setAsync", l_vector_setasync},
    {"read", l_vector_read},
    {"readAsync", l_vector_readasync},
    {"write", l_vector_write},
    {"writeAsync", l_vector_writeasync},
    {"size", l_vector_size},
    {"sizeAsync", l_vector_sizeasync},
    {"sort", l_vector_sort},
    {"sortAsync", l_vector_sortasync},
    {"iterator", l_vector_iterator},
    {"iteratorAsync", l_vector_iteratorasync},
    {"toString", l_vector_tostring},
    {"toStringAsync", l_vector_tostringasync},
    {"close", l_vector_close},
    {"closeAsync", l_vector_closeasync},
    {"isClosed", l_vector_isclosed},
    {"isClosedAsync", l_vector_isclosedasync},
    {NULL, NULL}};

static const luaL_Reg vector_meta[] = {{"__len", l_vector_len},
                                       {"__index", l_vector_index},
                                       {"__newindex", l_vector_newindex},
                                       {"__tostring", l_vector_tostring},
                                       {"__pairs", l_vector_pairs},
                                       {"__ipairs", l_vector_pairs},
                                       {NULL, NULL}};

static const tn_l_class_t vector_class = {
    TN_TYPE_DEQUE, VECTOR, vector_methods, vector_meta};

void tn_l_open_vector(lua_State *L) {
  tn_l_newclass(L, &vector_class);
  lua_pushcfunction(L, l_vector_new);
  lua_setfield(L, -2, "Vector");
  lua_pushcfunction(L, l_select);
  lua_setfield(L, -2, "select");
}
