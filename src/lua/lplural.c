/*
** lplural.c - tunnel.Plural: a fixed number of tunnel objects of one kind,
** made in one call, passed around as one object; and the shortcuts
** tunnel.Vectors, tunnel.Hashes, tunnel.Counters.
**
** A Plural is a core deque of type TN_TYPE_PLURAL (tn_deque_new_as) whose
** values are references to the objects: a Plural crosses threads by
** reference like any tunnel object, so a Block's threads can each take
** plural[__threadid] and all see the same structures.
**
** As permissive as the original (a Lua table `data` behind get/set) where
** that was no bug:
** - The size may be 0.
** - get(i) of an integer i outside 1..#plural returns nil (plural[i] too).
** - set(i, object) past the end grows the plural to i; slots in between
**   are empty (nil), and set(i, nil) empties a slot. Unlike a table's
**   border, #plural is always the highest slot ever set (or the size).
** - Elements may be of different kinds (a Vector and a Counter): the
**   original never checked, and nothing here depends on the kind.
** Choices:
** - Elements are tunnel objects (or nil: an empty slot): a plain value
**   would be copied at every plural[i], which is never what "many
**   structures of one kind" means. Shared tables count as tunnel objects.
** - Indexes must be integers (get(1.5), get('x') raise; the original gave
**   nil) and set's must be >= 1 (the original stored data[0] where no
**   method ever saw it again); slots are limited to 2^31 - 1.
** - A Plural holds its objects by reference and is itself shared: a job
**   sees a later set (the original sent a copy to each thread).
** - No Async twins: no method here waits for anything but the deque's
**   mutex, held for an instant.
** - A Plural holding itself (p:set(1, p)), directly or through other
**   objects, is a reference cycle and is never freed.
** - doAll calls the callback in the calling thread, in order 1..#plural,
**   skipping empty slots, keeping each call's first result; an error
**   propagates as it is.
*/
#include <math.h>

#include "ltunnel.h"

#define PLURAL "tunnel.Plural"
#define M(name) PLURAL ":" name

static tn_deque_t *check_plural(lua_State *L, const char *method) {
  return (tn_deque_t *)tn_l_checkobject(L, 1, method);
}

#define MAX_SLOTS 2147483647.0 /* 2^31 - 1: doAll's table and lua_rawseti */

/* The integer index at `idx` (any integer; get treats those outside
** 1..#plural as empty). */
static lua_Number check_index(lua_State *L, int idx, const char *method) {
  if (lua_type(L, idx) == LUA_TNUMBER) {
    lua_Number x = lua_tonumber(L, idx);
    if (x == floor(x)) return x;
    return (lua_Number)tn_l_error(L, method,
                                  "index must be an integer (got %s)",
                                  lua_tostring(L, idx));
  }
  return (lua_Number)tn_l_error(L, method, "index must be an integer (got %s)",
                                luaL_typename(L, idx));
}

/* An element must be a tunnel object (see the file header); `empty_ok`:
** or nil. */
static void check_element(lua_State *L, int idx, const char *method,
                          const char *what, int empty_ok) {
  if (empty_ok && lua_isnil(L, idx)) return;
  if (tn_l_toobject(L, idx) == NULL)
    tn_l_error(L, method, "%s must be a tunnel object%s (got %s)", what,
               empty_ok ? " or nil" : "", luaL_typename(L, idx));
}

/* Push the element at 0-based `i` (nil for an empty slot or one past the
** end). */
static void push_element(lua_State *L, tn_deque_t *d, size_t i,
                         const char *method) {
  tn_blob_t *b;
  int rc = tn_deque_get(d, i, &b, TN_FOREVER);
  if (rc == TN_ERANGE) {
    lua_pushnil(L);
    return;
  }
  if (rc != TN_OK) tn_l_coreerror(L, method, rc);
  /* An element is one reference: decoding it cannot raise, so the blob
  ** cannot leak. */
  int n = tn_l_decode(L, b, method);
  if (n != 1) lua_settop(L, lua_gettop(L) - n + 1);
  tn_blob_release(b);
}

/* ---- constructors ------------------------------------------------------------ */

static int is_callable(lua_State *L, int idx) {
  if (lua_type(L, idx) == LUA_TFUNCTION) return 1;
  if (!luaL_getmetafield(L, idx, "__call")) return 0;
  lua_pop(L, 1);
  return 1;
}

/*
** The stack holds size, constructor, args... (from 1). Push a new Plural
** of `size` elements, element i = constructor(args...), called here in
** order. If a call raises, the error propagates and the half-built Plural
** is garbage (its box is collected, dropping its elements).
*/
static int plural_new(lua_State *L, const char *method) {
  int t = lua_type(L, 1);
  lua_Number x = t == LUA_TNUMBER ? lua_tonumber(L, 1) : -1;
  if (!(t == LUA_TNUMBER && x >= 0 && x == floor(x) && x <= MAX_SLOTS))
    return tn_l_error(L, method,
                      "size must be a non-negative integer (got %s)",
                      t == LUA_TNUMBER ? lua_tostring(L, 1)
                                       : luaL_typename(L, 1));
  lua_Integer size = tn_l_checkinteger(L, 1, method, "size");
  if (!is_callable(L, 2))
    return tn_l_error(L, method, "constructor must be callable (got %s)",
                      luaL_typename(L, 2));
  int nargs = lua_gettop(L) - 2;
  tn_deque_t *d;
  int rc = tn_deque_new_as(TN_TYPE_PLURAL, TN_UNBOUNDED, &d);
  if (rc != TN_OK) return tn_l_coreerror(L, method, rc);
  tn_l_pushnew(L, TN_OBJECT(d));
  int box = lua_gettop(L);
  luaL_checkstack(L, nargs + 2, "too many constructor arguments");
  for (lua_Integer i = 1; i <= size; i++) {
    lua_pushvalue(L, 2);
    for (int a = 1; a <= nargs; a++) lua_pushvalue(L, 2 + a);
    lua_call(L, nargs, 1);
    check_element(L, -1, method, "the constructor's result", 0);
    tn_blob_t *b = tn_l_encode(L, -1, 1, method);
    rc = tn_deque_push_back(d, b, TN_FOREVER);
    if (rc != TN_OK) {
      tn_blob_release(b);
      return tn_l_coreerror(L, method, rc);
    }
    lua_settop(L, box);
  }
  return 1;
}

/* tunnel.Plural(size, constructor, ...) */
static int l_plural_new(lua_State *L) { return plural_new(L, PLURAL); }

/*
** tunnel.Vectors(n, ...) and the like: Plural(n, tunnel.<Class>, ...).
** Upvalues: 1 the class constructor as it was when the module opened (nil
** if it did not exist yet), 2 the module table, 3 the class name, 4 the
** shortcut's name: a class added after this file opened (Hash, while it is
** being written) is looked up at call time.
*/
static int l_plural_shortcut(lua_State *L) {
  const char *method = lua_tostring(L, lua_upvalueindex(4));
  lua_pushvalue(L, lua_upvalueindex(1));
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    lua_pushvalue(L, lua_upvalueindex(3));
    lua_rawget(L, lua_upvalueindex(2));
    if (lua_isnil(L, -1))
      return tn_l_error(L, method, "tunnel.%s is not available",
                        lua_tostring(L, lua_upvalueindex(3)));
  }
  if (lua_gettop(L) < 2) { /* Vectors(): keep the size's slot */
    lua_pushnil(L);
    lua_insert(L, 1);
  }
  lua_insert(L, 2); /* size, constructor, args... */
  return plural_new(L, method);
}

/* ---- methods ----------------------------------------------------------------- */

/* get(i) -> the i-th object; nil for an empty slot or i outside
** 1..#plural. */
static int l_plural_get(lua_State *L) {
  tn_deque_t *d = check_plural(L, M("get"));
  lua_Number i = check_index(L, 2, M("get"));
  if (i < 1 || i > MAX_SLOTS) {
    lua_pushnil(L);
    return 1;
  }
  push_element(L, d, (size_t)i - 1, M("get"));
  return 1;
}

/* set(i, object or nil) -> true, the old object (nil if the slot was
** empty). Past the end the plural grows to i, with empty slots between. */
static int l_plural_set(lua_State *L) {
  tn_deque_t *d = check_plural(L, M("set"));
  lua_Number x = check_index(L, 2, M("set"));
  if (x < 1 || x > MAX_SLOTS)
    return tn_l_error(L, M("set"),
                      "index must be a positive integer up to 2^31 - 1 "
                      "(got %s)",
                      lua_tostring(L, 2));
  size_t i = (size_t)x - 1;
  check_element(L, 3, M("set"), "object", 1);
  tn_blob_t *b = tn_l_encode(L, 3, 1, M("set")), *old;
  int rc = tn_deque_set(d, i, b, &old, TN_FOREVER);
  if (rc != TN_OK) {
    tn_blob_release(b);
    return tn_l_coreerror(L, M("set"), rc);
  }
  lua_pushboolean(L, 1);
  int n = tn_l_decode(L, old, M("set"));
  if (n != 1) lua_settop(L, lua_gettop(L) - n + 1);
  tn_blob_release(old);
  return 2;
}

/* doAll(callback) -> {first result of callback(i, plural[i]), ...}, for
** the slots that hold an object. */
static int l_plural_doall(lua_State *L) {
  tn_deque_t *d = check_plural(L, M("doAll"));
  if (lua_type(L, 2) != LUA_TFUNCTION)
    return tn_l_error(L, M("doAll"), "callback must be a function (got %s)",
                      luaL_typename(L, 2));
  lua_settop(L, 2);
  size_t n = tn_deque_size(d);
  lua_createtable(L, n > (size_t)INT32_MAX ? 0 : (int)n, 0);
  for (size_t i = 0; i < n; i++) {
    lua_pushvalue(L, 2);
    lua_pushinteger(L, (lua_Integer)(i + 1));
    push_element(L, d, i, M("doAll"));
    if (lua_isnil(L, -1)) { /* an empty slot */
      lua_pop(L, 3);
      continue;
    }
    lua_call(L, 2, 1);
    lua_rawseti(L, 3, (int)(i + 1));
  }
  return 1;
}

/* ---- metamethods -------------------------------------------------------------- */

static int l_plural_len(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)tn_deque_size(check_plural(L, PLURAL)));
  return 1;
}

/* plural[i]: get(i); plural.name: a method (upvalue 2 is the methods
** table); anything else: nil. */
static int l_plural_index(lua_State *L) {
  if (lua_type(L, 2) == LUA_TNUMBER) return l_plural_get(L);
  if (lua_type(L, 2) != LUA_TSTRING) return 0;
  lua_pushvalue(L, 2);
  lua_rawget(L, lua_upvalueindex(2));
  return 1;
}

/* plural[i] = object: set(i, object); no other field can be set. */
static int l_plural_newindex(lua_State *L) {
  if (lua_type(L, 2) == LUA_TNUMBER) {
    l_plural_set(L);
    return 0;
  }
  check_plural(L, PLURAL);
  tn_tolstring(L, 2, NULL);
  return tn_l_error(L, PLURAL, "cannot set field %s", lua_tostring(L, -1));
}

static const luaL_Reg plural_methods[] = {{"get", l_plural_get},
                                          {"set", l_plural_set},
                                          {"doAll", l_plural_doall},
                                          {NULL, NULL}};

static const luaL_Reg plural_meta[] = {{"__len", l_plural_len},
                                       {"__index", l_plural_index},
                                       {"__newindex", l_plural_newindex},
                                       {NULL, NULL}};

/* module.<name> = a shortcut for Plural(n, module.<class>, ...). */
static void set_shortcut(lua_State *L, const char *name, const char *cls) {
  lua_getfield(L, -1, cls); /* the class as it is now, or nil */
  lua_pushvalue(L, -2);     /* the module */
  lua_pushstring(L, cls);
  lua_pushfstring(L, "tunnel.%s", name);
  lua_pushcclosure(L, l_plural_shortcut, 4);
  lua_setfield(L, -2, name);
}

static const tn_l_class_t plural_class = {
    TN_TYPE_PLURAL, PLURAL, plural_methods, plural_meta};

void tn_l_open_plural(lua_State *L) {
  tn_l_newclass(L, &plural_class);
  lua_pushcfunction(L, l_plural_new);
  lua_setfield(L, -2, "Plural");
  set_shortcut(L, "Vectors", "Vector");
  set_shortcut(L, "Hashes", "Hash");
  set_shortcut(L, "Counters", "Counter");
}
