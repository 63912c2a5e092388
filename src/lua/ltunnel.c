/*
** ltunnel.c - the module's entry point (luaopen_tunnel_core) and what every
** class shares: boxes for shared objects, class metatables, argument checks
** and errors that name the method.
**
** Registry layout (per Lua state):
**   registry["tunnel.boxes"]  weak-valued: lightuserdata(object) -> box
**   registry["tunnel.types"]  type number -> metatable (until the class is
**                             first used: its tn_l_class_t, a lightuserdata)
*/
#include <dlfcn.h>
#include <pthread.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "../core/testing.h" /* tunnel._fault_alloc */
#include "codec.h"
#include "ltunnel.h"

#define BOXES_KEY "tunnel.boxes"
#define TYPES_KEY "tunnel.types"

/* ---- errors and arguments ----------------------------------------------- */

int tn_l_error(lua_State *L, const char *method, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  lua_pushstring(L, method);
  lua_pushliteral(L, ": ");
  lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  lua_concat(L, 3);
  return lua_error(L);
}

/* Remote failures (cluster objects) carry their details: which server,
** which operation, why. */
int tn_l_coreerror(lua_State *L, const char *method, int err) {
  if (err == TN_EINTR) return tn_l_raise_interrupted(L);
  if (err == TN_ECANCELED) return tn_l_raise_cancelled(L, method);
  if ((err == TN_EIO || err == TN_EPROTO || err == TN_ELOCAL) &&
      tn_last_error()[0] != '\0')
    return tn_l_error(L, method, "%s", tn_last_error());
  return tn_l_error(L, method, "%s", tn_strerror(err));
}

void tn_l_checkpending(lua_State *L, const char *method) {
  int err = tn_error_take();
  if (err != TN_OK) tn_l_coreerror(L, method, err);
}

double tn_l_opttimeout(lua_State *L, int idx, const char *method) {
  tn_l_wait_begins();
  if (lua_isnoneornil(L, idx)) return TN_FOREVER;
  if (lua_type(L, idx) != LUA_TNUMBER)
    tn_l_error(L, method, "timeout must be a number of seconds (got %s)",
               luaL_typename(L, idx));
  double t = (double)lua_tonumber(L, idx);
  if (!(t >= 0)) /* also NaN */
    tn_l_error(L, method, "timeout must be >= 0 (got %f)", t);
  return isinf(t) ? TN_FOREVER : t;
}

lua_Integer tn_l_checkinteger(lua_State *L, int idx, const char *method,
                              const char *what) {
  if (lua_type(L, idx) == LUA_TNUMBER) {
#if TN_HAS_INTEGERS
    if (lua_isinteger(L, idx)) return lua_tointeger(L, idx);
#endif
    lua_Number n = lua_tonumber(L, idx);
    /* Exact integers only, within the range a lua_Integer holds. */
    if (n == floor(n) && n >= -9007199254740992.0 && n <= 9007199254740992.0)
      return (lua_Integer)n;
    return tn_l_error(L, method, "%s must be an integer (got %s)", what,
                      lua_tostring(L, idx));
  }
  return tn_l_error(L, method, "%s must be an integer (got %s)", what,
                    luaL_typename(L, idx));
}

void tn_l_checkvalue(lua_State *L, int idx, const char *method) {
  if (lua_gettop(L) < idx) tn_l_error(L, method, "value expected");
}

void tn_l_checkcallback(lua_State *L, int idx, const char *method) {
  if (lua_type(L, idx) != LUA_TFUNCTION)
    tn_l_error(L, method, "callback must be a function (got %s)",
               luaL_typename(L, idx));
}

void tn_l_pushblob(lua_State *L, tn_blob_t *b, const char *method) {
  if (b == NULL) {
    lua_pushnil(L);
    return;
  }
  /* Protected, so that a value this state cannot decode still drops the
  ** reference before the error goes on. */
  if (tn_l_takeblob(L, b, method) != 0) {
    tn_blob_release(b);
    lua_error(L);
  }
}

/* Scalars up to this size skip the protected call (a copy on the C stack). */
#define TAKE_COPY_MAX 256

int tn_l_takeblob(lua_State *L, tn_blob_t *b, const char *method) {
  if (b == NULL) { /* nil */
    lua_pushnil(L);
    return 0;
  }
  const unsigned char *p = tn_blob_data(b);
  size_t len = tn_blob_size(b);
  if (len > 0 && p[0] == TN_CODEC_DATA_ONLY) p++, len--; /* data anyway */
  /* One scalar cannot fail to decode but for want of memory, and then
  ** nothing leaks: it is copied out and the reference dropped first (the
  ** value is lost). A pcall costs as much as the rest of a get. */
  if (len <= TAKE_COPY_MAX && tn_l_isscalar(p, len)) {
    unsigned char copy[TAKE_COPY_MAX];
    memcpy(copy, p, len);
    tn_blob_release(b);
    tn_l_decode_scalar(L, copy, len, method);
    return 0;
  }
  int status = tn_l_trydecode(L, b, method);
  if (status == 0) tn_blob_release(b);
  return status;
}

/* What the protected body of tn_l_trydecode works on. */
typedef struct trydecode_ctx {
  tn_blob_t *b;
  const char *method;
} trydecode_ctx_t;

static int trydecode_body(lua_State *L) {
  trydecode_ctx_t *ctx = lua_touserdata(L, 1);
  int n = tn_l_decode(L, ctx->b, ctx->method);
  lua_settop(L, lua_gettop(L) - n + 1); /* the first value only */
  return 1;
}

int tn_l_trydecode(lua_State *L, tn_blob_t *b, const char *method) {
  trydecode_ctx_t ctx = {b, method};
  luaL_checkstack(L, 3, method);
  lua_pushcfunction(L, trydecode_body);
  lua_pushlightuserdata(L, &ctx);
  return lua_pcall(L, 1, 1, 0);
}

int tn_l_pushnils(lua_State *L, int count) {
  for (int i = 0; i < count; i++) lua_pushnil(L);
  return count;
}

/* What the protected body of a callback works on. */
typedef struct callback_ctx {
  const char *method;
  tn_blob_t *in;  /* the value handed to the callback (borrowed) */
  tn_blob_t *out; /* write: the callback's first result, encoded */
  int write;
} callback_ctx_t;

/* Protected: (ctx, callback) -> callback(value)'s results. Decoding and
** encoding may raise too, so they happen in here, under the pcall. */
static int callback_body(lua_State *L) {
  callback_ctx_t *ctx = lua_touserdata(L, 1);
  lua_remove(L, 1); /* the callback is on 1 now */
  int n = tn_l_decode(L, ctx->in, ctx->method);
  if (!ctx->write) {
    lua_call(L, n, LUA_MULTRET);
    return lua_gettop(L);
  }
  lua_call(L, n, 1);
  ctx->out = tn_l_encode(L, 1, 1, ctx->method);
  return 1;
}

int tn_l_callback(lua_State *L, tn_object_t *o, const tn_l_slot_t *slot,
                  int write, double timeout, const char *method, int *nres) {
  int top = lua_gettop(L);
  tn_l_wait_begins();
  int rc = write ? tn_object_write_lock(o, timeout)
                 : tn_object_read_lock(o, timeout);
  if (rc != TN_OK) return rc;
  callback_ctx_t ctx = {method, NULL, NULL, write};
  int status = 0;
  rc = slot->get(slot, &ctx.in, timeout);
  if (rc == TN_OK) {
    lua_pushcfunction(L, callback_body);
    lua_pushlightuserdata(L, &ctx);
    lua_pushvalue(L, top);
    status = lua_pcall(L, 2, write ? 1 : LUA_MULTRET, 0);
    tn_blob_release(ctx.in);
    if (status == 0 && write) {
      /* The callback has run: its result is stored even by an Async twin
      ** (`set` waits for the structure's mutex, which is held briefly). */
      rc = slot->set(slot, ctx.out);
      if (rc != TN_OK) {
        tn_blob_release(ctx.out);
        lua_settop(L, top);
      }
    }
  }
  if (write)
    tn_object_write_unlock(o);
  else
    tn_object_read_unlock(o);
  if (status != 0) return lua_error(L); /* the callback's own error */
  *nres = rc == TN_OK ? lua_gettop(L) - top : 0;
  return rc;
}

void tn_l_addquoted(luaL_Buffer *buf, const char *s, size_t len) {
  luaL_addchar(buf, '"');
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    /* A decimal escape followed by a digit needs all three digits. */
    int next_digit = i + 1 < len && s[i + 1] >= '0' && s[i + 1] <= '9';
    if (c == '"' || c == '\\' || c == '\n') {
      luaL_addchar(buf, '\\');
      luaL_addchar(buf, (char)c);
    } else if (c == '\r') {
      luaL_addstring(buf, "\\r");
    } else if (c == '\0') {
      luaL_addstring(buf, next_digit ? "\\000" : "\\0");
    } else if (c < 0x20 || c == 0x7f) {
      char esc[8];
      snprintf(esc, sizeof esc, next_digit ? "\\%03d" : "\\%d", (int)c);
      luaL_addstring(buf, esc);
    } else {
      luaL_addchar(buf, (char)c);
    }
  }
  luaL_addchar(buf, '"');
}

/* ---- boxes -------------------------------------------------------------- */

/* __gc (and the end of a state): drop the box's reference. */
static int l_box_gc(lua_State *L) {
  tn_box_t *box = lua_touserdata(L, 1);
  if (box != NULL && box->object != NULL) {
    tn_object_release(box->object);
    box->object = NULL;
  }
  return 0;
}

static int l_box_eq(lua_State *L) {
  tn_box_t *a = lua_touserdata(L, 1), *b = lua_touserdata(L, 2);
  lua_pushboolean(L, a != NULL && b != NULL && a->object == b->object);
  return 1;
}

static int l_box_tostring(lua_State *L) {
  tn_box_t *box = lua_touserdata(L, 1);
  lua_getfield(L, lua_upvalueindex(1), "__name");
  lua_pushfstring(L, "%s: %p", lua_tostring(L, -1),
                  box != NULL ? (void *)box->object : NULL);
  return 1;
}

static void push_class(lua_State *L, tn_type_t type);

void tn_l_pushobject(lua_State *L, tn_object_t *o) {
  lua_getfield(L, LUA_REGISTRYINDEX, BOXES_KEY); /* push cache */
  lua_pushlightuserdata(L, o);
  lua_rawget(L, -2);
  tn_box_t *box = lua_touserdata(L, -1);
  if (box != NULL && box->object == o) {
    lua_remove(L, -2); /* pop cache */
    return;
  }
  lua_pop(L, 1);
  box = tn_newuserdata(L, sizeof(tn_box_t));
  box->object = NULL;
  push_class(L, tn_object_type(o));
  if (lua_isnil(L, -1))
    luaL_error(L, "tunnel: object of unknown type %d", (int)tn_object_type(o));
  lua_setmetatable(L, -2);
  box->object = tn_object_retain(o);
  lua_pushlightuserdata(L, o);
  lua_pushvalue(L, -2);
  lua_rawset(L, -4); /* cache[o] = box */
  lua_remove(L, -2); /* pop cache */
}

int tn_l_pushcachedobject(lua_State *L, const tn_object_t *o) {
  /* A live box for this address holds a reference, so the object there
  ** now is the one the box was made for: the address cannot be reused
  ** while the box lives. */
  lua_getfield(L, LUA_REGISTRYINDEX, BOXES_KEY);
  lua_pushlightuserdata(L, (void *)o);
  lua_rawget(L, -2);
  tn_box_t *box = lua_touserdata(L, -1);
  if (box != NULL && box->object == o) {
    lua_remove(L, -2); /* pop cache */
    return 1;
  }
  lua_pop(L, 2);
  return 0;
}

void tn_l_pushnew(lua_State *L, tn_object_t *o) {
  tn_l_pushobject(L, o); /* the box takes its own reference */
  tn_object_release(o);
}

tn_object_t *tn_l_toobject(lua_State *L, int idx) {
  tn_box_t *box = lua_touserdata(L, idx);
  if (box == NULL || lua_islightuserdata(L, idx) || !lua_getmetatable(L, idx))
    return NULL;
  lua_getfield(L, -1, "__tunnel_type"); /* push type number */
  int type = (int)lua_tointeger(L, -1);
  tn_object_t *o = NULL;
  if (type > 0) {
    lua_getfield(L, LUA_REGISTRYINDEX, TYPES_KEY);
    lua_rawgeti(L, -1, type);
    if (lua_rawequal(L, -1, -4)) o = box->object;
    lua_pop(L, 2);
  }
  lua_pop(L, 2); /* pop type number and metatable */
  return o;
}

tn_object_t *tn_l_checkobject(lua_State *L, int idx, const char *method) {
  tn_box_t *box = lua_touserdata(L, idx);
  if (box != NULL && lua_getmetatable(L, idx)) {
    int same = lua_rawequal(L, -1, lua_upvalueindex(1));
    lua_pop(L, 1);
    if (same) {
      if (box->object == NULL)
        tn_l_error(L, method, "object has been collected");
      return box->object;
    }
  }
  const char *got = luaL_typename(L, idx); /* before the stack moves */
  lua_getfield(L, lua_upvalueindex(1), "__name");
  tn_l_error(L, method, "self is a %s, not a %s (call it with ':')", got,
             lua_tostring(L, -1));
  return NULL;
}

/* Set each function of `l` into the table at the top, with the metatable
** and the methods table (at absolute indexes) as upvalues 1 and 2. */
static void set_closures(lua_State *L, const luaL_Reg *l, int mt, int methods) {
  for (; l != NULL && l->name != NULL; l++) {
    lua_pushvalue(L, mt);
    lua_pushvalue(L, methods);
    lua_pushcclosure(L, l->func, 2);
    lua_setfield(L, -2, l->name);
  }
}

/* Build the metatable of class `c` and file it in the types table. */
static void build_class(lua_State *L, const tn_l_class_t *c) {
  tn_type_t type = c->type;
  const char *name = c->name;
  const luaL_Reg *methods = c->methods, *meta = c->meta;
  luaL_newmetatable(L, name);
  int mt = lua_gettop(L);
  int n = 0; /* sized once */
  while (methods != NULL && methods[n].name != NULL) n++;
  lua_createtable(L, 0, n);
  int mtab = lua_gettop(L);
  lua_pushvalue(L, mtab); /* fill the methods table */
  set_closures(L, methods, mt, mtab);
  lua_pop(L, 1);
  lua_pushvalue(L, mt); /* fill the metatable */
  set_closures(L, meta, mt, mtab);
  static const luaL_Reg defaults[] = {{"__gc", l_box_gc},
                                      {"__eq", l_box_eq},
                                      {"__tostring", l_box_tostring},
                                      {NULL, NULL}};
  for (const luaL_Reg *d = defaults; d->name != NULL; d++) {
    lua_getfield(L, -1, d->name);
    int missing = lua_isnil(L, -1);
    lua_pop(L, 1);
    if (missing) {
      const luaL_Reg one[] = {*d, {NULL, NULL}};
      set_closures(L, one, mt, mtab);
    }
  }
  lua_getfield(L, -1, "__index");
  if (lua_isnil(L, -1)) {
    lua_pushvalue(L, mtab);
    lua_setfield(L, mt, "__index");
  }
  lua_pop(L, 1);
  lua_pushstring(L, name);
  lua_setfield(L, mt, "__name");
  lua_pushinteger(L, (lua_Integer)type);
  lua_setfield(L, mt, "__tunnel_type");
  lua_pushliteral(L, "locked");
  lua_setfield(L, mt, "__metatable"); /* getmetatable cannot tamper */
  lua_pop(L, 1); /* pop the metatable copy */
  /* A class's own last step (see tn_l_class_t), run once and removed. */
  lua_getfield(L, mt, "__init");
  if (lua_isfunction(L, -1)) {
    lua_pushnil(L);
    lua_setfield(L, mt, "__init");
    lua_call(L, 0, 0);
  } else {
    lua_pop(L, 1);
  }
  lua_getfield(L, LUA_REGISTRYINDEX, TYPES_KEY);
  lua_pushvalue(L, mt);
  lua_rawseti(L, -2, (int)type);
  lua_pop(L, 3); /* types, methods, metatable */
}

/*
** Classes are built lazily: every block thread loads the module, and
** building all of them (a few hundred closures) cost a third of a thread's
** start-up, for classes most jobs never see. Until then the types table
** holds the class description, as a light userdata.
*/
void tn_l_newclass(lua_State *L, const tn_l_class_t *c) {
  lua_getfield(L, LUA_REGISTRYINDEX, TYPES_KEY);
  lua_rawgeti(L, -1, (int)c->type);
  if (lua_isnil(L, -1)) { /* a module loaded again keeps what it built */
    lua_pushlightuserdata(L, (void *)c);
    lua_rawseti(L, -3, (int)c->type);
  }
  lua_pop(L, 2);
}

/* Push the metatable of `type` (nil if unknown), building it on first use. */
static void push_class(lua_State *L, tn_type_t type) {
  lua_getfield(L, LUA_REGISTRYINDEX, TYPES_KEY);
  lua_rawgeti(L, -1, (int)type);
  if (lua_islightuserdata(L, -1)) {
    const tn_l_class_t *c = lua_touserdata(L, -1);
    lua_pop(L, 1);
    build_class(L, c);
    lua_rawgeti(L, -1, (int)type);
  }
  lua_remove(L, -2); /* types */
}

/* ---- the module ---------------------------------------------------------- */

static int l_sleep(lua_State *L) {
  if (lua_type(L, 1) != LUA_TNUMBER)
    return tn_l_error(L, "tunnel.sleep", "seconds must be a number (got %s)",
                      luaL_typename(L, 1));
  tn_l_wait_begins();
  int rc = tn_sleep((double)lua_tonumber(L, 1));
  if (rc != TN_OK) return tn_l_coreerror(L, "tunnel.sleep", rc);
  return 0;
}

static int l_clock(lua_State *L) {
  lua_pushnumber(L, (lua_Number)tn_clock());
  return 1;
}

/* tunnel.collect() -> the number of shared objects freed: a full Lua
** collection of this state first (a box waiting for its __gc still holds
** its object), then tn_collect (the cycles nothing else reaches). Busy
** objects (TN_EAGAIN) free nothing this time: 0. */
static int l_collect(lua_State *L) {
  lua_gc(L, LUA_GCCOLLECT, 0);
  size_t n = 0;
  int rc = tn_collect(&n);
  if (rc != TN_OK && rc != TN_EAGAIN)
    return tn_l_error(L, "tunnel.collect", "%s", tn_strerror(rc));
  lua_pushinteger(L, (lua_Integer)n);
  return 1;
}

/* tunnel.core._fault_alloc(n [, sticky]) -> allocations since the last
** call: make the core's n-th allocation from now fail (0: off). For the
** fault-injection specs only; not part of the API. */
static int l_fault_alloc(lua_State *L) {
  const char *method = "tunnel.core._fault_alloc";
  lua_Integer n = tn_l_checkinteger(L, 1, method, "n");
  if (n < 0) return tn_l_error(L, method, "n must be >= 0");
  unsigned long made = tn_fault_alloc((unsigned long)n, lua_toboolean(L, 2));
  lua_pushinteger(L, (lua_Integer)made);
  return 1;
}

/*
** lua_close unloads C modules (dlclose), but threads of ours can outlive
** the state that loaded the module: the cluster's lease-renewal thread,
** and block threads of other states. Pin the library so its code is never
** unmapped under them (the handle is kept on purpose).
*/
static void pin_library_once(void) {
  Dl_info info;
  if (dladdr((void *)pin_library_once, &info) != 0 && info.dli_fname != NULL)
    (void)dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
}

/* Once per process: every block thread opens the module, and dlopen takes
** the loader's lock. */
static void pin_library(void) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, pin_library_once);
}

int luaopen_tunnel_core(lua_State *L) {
  pin_library();
  /* A state may load the module again (busted's insulation drops it from
  ** package.loaded): keep the registry tables, so boxes made before stay
  ** valid, and let the codec see the new module tables. */
  lua_getfield(L, LUA_REGISTRYINDEX, BOXES_KEY);
  if (lua_isnil(L, -1)) {
    lua_newtable(L); /* registry["tunnel.boxes"], weak values */
    lua_newtable(L);
    lua_pushliteral(L, "v");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_setfield(L, LUA_REGISTRYINDEX, BOXES_KEY);
    lua_newtable(L);
    lua_setfield(L, LUA_REGISTRYINDEX, TYPES_KEY);
  }
  lua_pop(L, 1);
  tn_l_codec_reset(L);
  tn_l_open_control(L);

  lua_createtable(L, 0, 48); /* the module: sized once, not rehashed */
  /* Test hooks answer through the metatable: reachable by name,
  ** invisible to pairs (they are not the API). */
  lua_createtable(L, 0, 1);
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, l_fault_alloc);
  lua_setfield(L, -2, "_fault_alloc");
  lua_setfield(L, -2, "__index");
  lua_setmetatable(L, -2);
  lua_pushcfunction(L, l_sleep);
  lua_setfield(L, -2, "sleep");
  lua_pushcfunction(L, l_clock);
  lua_setfield(L, -2, "clock");
  lua_pushcfunction(L, l_collect);
  lua_setfield(L, -2, "collect");
  tn_l_push_cancelled(L);
  lua_setfield(L, -2, "cancelled");
  lua_pushcfunction(L, tn_l_register); /* codec.c: classes cross threads */
  lua_setfield(L, -2, "register");
  lua_pushliteral(L, TN_VERSION);
  lua_setfield(L, -2, "version");
  lua_pushliteral(L, "tunnel " TN_VERSION); /* as Lua's own _VERSION */
  lua_setfield(L, -2, "_VERSION");
  tn_l_open_vector(L);
  tn_l_open_counter(L);
  tn_l_open_printer(L);
  tn_l_open_block(L);
  tn_l_open_serializer(L);
  tn_l_open_hash(L);
  tn_l_open_share(L);
  tn_l_open_plural(L);
  tn_l_open_cluster(L);
  tn_l_open_array(L);
  tn_l_open_pqueue(L);
  tn_l_open_barrier(L);
  tn_l_open_semaphore(L);
  return 1;
}
