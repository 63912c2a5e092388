/*
** larray.c - tunnel.Array: a typed numeric buffer shared by threads, the
** binding of the core array (tn_array_*), and the cluster Array's methods.
**
** An Array is a box like every shared object: it crosses threads, Vectors,
** Hashes, Share/Atomic and Block arguments by reference (the codec knows
** nothing special about it). a[i] and a[i] = x go through __index and
** __newindex with bounds and type checks (on LuaJIT through Lua functions
** over the FFI, which the JIT compiles: "LuaJIT's fast path" below); the
** kernels are single C calls over the whole array or a view.
**
** tunnel.Array is a callable table (tunnel.Array(n), tunnel.Array.frombytes),
** entered in package.loaded as 'tunnel.array' so that the codec sends it by
** name, as it sends module tables, when a job function holds it.
**
** A cluster Array (cluster:Array) is the same class on a remote object: a
** parameter-server buffer. get/set/[]/#/type, atomicAdd, fetch, store, add,
** version, read and write work on it (each a round trip or a server-side
** script); the kernels that work in place (fill, mul, scale, dot, sum, min,
** max), view and pointer raise: fetch a copy first.
**
** Caveats:
** - Element reads and writes are unlocked and race between threads (that is
**   Hogwild's choice); read/write callbacks exclude each other (a view's
**   callbacks take its base's lock), not plain accesses or kernels.
** - int64/uint64 elements are exact on Lua 5.4; on 5.1 and LuaJIT, whose
**   numbers are doubles, up to 2^53. A uint64 above 2^63 - 1 reads as a
**   float on 5.4.
** - a[i] out of range raises (it does not return nil): ipairs does not
**   apply; use for i = 1, #a.
** - pointer() is a light userdata: it does not keep the array alive.
** - a[i] and a[i] = x read the core struct directly (src/core/array.h)
**   and take self as the box it must be (their metatable is locked; only
**   the debug library could give them another userdata).
*/
#include <math.h>
#include <stddef.h>
#include <string.h>

#include "ltunnel.h"
/* The array's layout, for a[i] and a[i] = x inline (see there). */
#include "../core/array.h"

#define ARRAY "tunnel.Array"
#define M(name) ARRAY ":" name

/* A number for a message: lua_pushfstring has no 64-bit format on 5.1. */
typedef struct numtext {
  char s[32];
} numtext_t;
static numtext_t num(long long v) {
  numtext_t t;
  snprintf(t.s, sizeof t.s, "%lld", v);
  return t;
}
#define N(v) (num((long long)(v)).s)

/* ---- arguments ----------------------------------------------------------- */

static tn_array_t *check_array(lua_State *L, const char *method) {
  return (tn_array_t *)tn_l_checkobject(L, 1, method);
}

static int is_remote(tn_array_t *a) {
  return tn_object_is_remote(TN_OBJECT(a));
}

static void shape_of(lua_State *L, tn_array_t *a, const char *method,
                     tn_dtype_t *type, size_t *n) {
  int rc = tn_array_shape(a, type, n);
  if (rc != TN_OK) tn_l_coreerror(L, method, rc);
}

static size_t size_of(lua_State *L, tn_array_t *a, const char *method) {
  tn_dtype_t t;
  size_t n;
  shape_of(L, a, method, &t, &n);
  return n;
}

static tn_dtype_t type_of(lua_State *L, tn_array_t *a, const char *method) {
  tn_dtype_t t;
  size_t n;
  shape_of(L, a, method, &t, &n);
  return t;
}

/* The element type named at `idx` (nil or none: double). */
static tn_dtype_t check_dtype(lua_State *L, int idx, const char *method) {
  if (lua_isnoneornil(L, idx)) return TN_DOUBLE;
  tn_dtype_t t;
  const char *name = lua_type(L, idx) == LUA_TSTRING ? lua_tostring(L, idx)
                                                     : NULL;
  if (name == NULL || tn_dtype_from_name(name, &t) != TN_OK)
    tn_l_error(L, method,
               "type must be 'double', 'float', 'int8', 'int16', 'int32', "
               "'int64', 'uint8', 'uint16', 'uint32' or 'uint64' (got %s)",
               name != NULL ? name : luaL_typename(L, idx));
  return t;
}

static int is_float(tn_dtype_t t) { return t == TN_DOUBLE || t == TN_FLOAT; }
static int is_signed(tn_dtype_t t) {
  return t == TN_INT8 || t == TN_INT16 || t == TN_INT32 || t == TN_INT64;
}

/* The range of an integer type, as text for messages. */
static const char *range_text(tn_dtype_t t) {
  switch (t) {
  case TN_INT8: return "-128..127";
  case TN_INT16: return "-32768..32767";
  case TN_INT32: return "-2147483648..2147483647";
  case TN_INT64: return "-2^63..2^63-1";
  case TN_UINT8: return "0..255";
  case TN_UINT16: return "0..65535";
  case TN_UINT32: return "0..4294967295";
  default: return "0..2^64-1";
  }
}

/*
** The integer at `idx` as 64 bits: signed (`*u` unused) or, when it is
** only representable unsigned (a float >= 2^63), `*big` set and `*u` the
** value. 0 when it is not an integer (a fraction, NaN, inf) or out of
** both ranges.
*/
static int to_int64(lua_State *L, int idx, int64_t *i, uint64_t *u,
                    int *big) {
  *big = 0;
#if TN_HAS_INTEGERS
  if (lua_isinteger(L, idx)) {
    *i = (int64_t)lua_tointeger(L, idx);
    return 1;
  }
#endif
  lua_Number x = lua_tonumber(L, idx);
  if (!(x == floor(x))) return 0; /* also NaN and inf */
  if (x >= -9223372036854775808.0 && x < 9223372036854775808.0) {
    *i = (int64_t)x;
    return 1;
  }
  if (x >= 0 && x < 18446744073709551616.0) {
    *u = (uint64_t)x;
    *big = 1;
    return 1;
  }
  return 0;
}

/*
** The number at `idx` as an element of `t` (`what` names it in errors):
** any number for a float type; for an integer type an integer within the
** type's range. Raises otherwise.
*/
static tn_elem_t check_elem(lua_State *L, int idx, tn_dtype_t t,
                            const char *method, const char *what) {
  tn_elem_t e;
  if (lua_type(L, idx) != LUA_TNUMBER)
    tn_l_error(L, method, "%s must be a number (got %s)", what,
               luaL_typename(L, idx));
  if (is_float(t)) {
    e.f = (double)lua_tonumber(L, idx);
    return e;
  }
  int64_t i = 0;
  uint64_t u = 0;
  int big;
  if (!to_int64(L, idx, &i, &u, &big))
    tn_l_error(L, method, "%s must be an integer (the array holds %s; got %s)",
               what, tn_dtype_name(t), lua_tostring(L, idx));
  int ok;
  switch (t) {
  case TN_INT8: ok = !big && i >= INT8_MIN && i <= INT8_MAX; break;
  case TN_INT16: ok = !big && i >= INT16_MIN && i <= INT16_MAX; break;
  case TN_INT32: ok = !big && i >= INT32_MIN && i <= INT32_MAX; break;
  case TN_INT64: ok = !big; break;
  case TN_UINT8: ok = !big && i >= 0 && i <= UINT8_MAX; break;
  case TN_UINT16: ok = !big && i >= 0 && i <= UINT16_MAX; break;
  case TN_UINT32: ok = !big && i >= 0 && i <= (int64_t)UINT32_MAX; break;
  default: ok = big || i >= 0; break;
  }
  if (!ok)
    tn_l_error(L, method, "%s %s is out of range for %s (%s)", what,
               lua_tostring(L, idx), tn_dtype_name(t), range_text(t));
  if (big)
    e.u = u;
  else if (is_signed(t))
    e.i = i;
  else
    e.u = (uint64_t)i;
  return e;
}

/* A factor (scale, add's): any number for a float type; for an integer
** type any 64-bit integer, applied modulo 2^bits. */
static tn_elem_t check_factor(lua_State *L, int idx, tn_dtype_t t,
                              const char *method, const char *what) {
  tn_elem_t e;
  if (lua_type(L, idx) != LUA_TNUMBER)
    tn_l_error(L, method, "%s must be a number (got %s)", what,
               luaL_typename(L, idx));
  if (is_float(t)) {
    e.f = (double)lua_tonumber(L, idx);
    return e;
  }
  int64_t i = 0;
  uint64_t u = 0;
  int big;
  if (!to_int64(L, idx, &i, &u, &big))
    tn_l_error(L, method, "%s must be an integer (the array holds %s; got %s)",
               what, tn_dtype_name(t), lua_tostring(L, idx));
  e.u = big ? u : (uint64_t)i;
  return e;
}

static inline void push_elem(lua_State *L, tn_dtype_t t, tn_elem_t e) {
  if (is_float(t))
    lua_pushnumber(L, (lua_Number)e.f);
  else if (is_signed(t))
    lua_pushinteger(L, (lua_Integer)e.i);
  else if (e.u <= (uint64_t)INT64_MAX)
    lua_pushinteger(L, (lua_Integer)e.u);
  else
    lua_pushnumber(L, (lua_Number)e.u);
}

/* The index at `idx` (1-based) as a 0-based one; out of 1..n raises. */
static size_t check_index(lua_State *L, int idx, size_t n,
                          const char *method) {
  lua_Integer i = tn_l_checkinteger(L, idx, method, "index");
  if (i < 1 || (uint64_t)i > (uint64_t)n)
    tn_l_error(L, method, "index %s out of range (1..%s)", N(i),
               N(n));
  return (size_t)(i - 1);
}

/* An Array argument other than self. */
static tn_array_t *check_other(lua_State *L, int idx, const char *method,
                               const char *what) {
  tn_object_t *o = tn_l_toobject(L, idx);
  if (o == NULL || tn_object_type(o) != TN_TYPE_ARRAY)
    tn_l_error(L, method, "%s must be a " ARRAY " (got %s)", what,
               luaL_typename(L, idx));
  return (tn_array_t *)o;
}

/* b must be of a's type and size. */
static void check_same(lua_State *L, tn_array_t *a, tn_array_t *b,
                       const char *method) {
  tn_dtype_t ta, tb;
  size_t na, nb;
  shape_of(L, a, method, &ta, &na);
  shape_of(L, b, method, &tb, &nb);
  if (ta != tb || na != nb)
    tn_l_error(L, method,
               "the arrays differ: this one holds %s %s, the argument %s %s",
               N(na), tn_dtype_name(ta), N(nb),
               tn_dtype_name(tb));
}

/* The in-place kernels and views need the memory here. */
static void check_local(lua_State *L, tn_array_t *a, const char *method) {
  if (is_remote(a))
    tn_l_error(L, method, "not available on a cluster Array (fetch() an "
                          "in-process copy first)");
}

/* Raise for a failed core call; TN_EINVAL and TN_ERANGE were checked
** before, so what is left is a remote failure or no memory. */
static void check_rc(lua_State *L, int rc, const char *method) {
  if (rc != TN_OK) tn_l_coreerror(L, method, rc);
}

/* ---- constructors ------------------------------------------------------- */

static tn_array_t *push_new_array(lua_State *L, tn_dtype_t t, size_t n,
                                  const char *method) {
  tn_array_t *a;
  int rc = tn_array_new(t, n, &a);
  if (rc == TN_ENOMEM)
    tn_l_error(L, method, "out of memory (%s elements of %s)",
               N(n), tn_dtype_name(t));
  check_rc(L, rc, method);
  tn_l_pushnew(L, TN_OBJECT(a));
  return a;
}

/* tunnel.Array(n [, type]) / tunnel.Array(table [, type]): called as the
** table's __call, so the arguments start at 2. */
static int l_array_new(lua_State *L) {
  tn_dtype_t t = check_dtype(L, 3, ARRAY);
  if (lua_type(L, 2) == LUA_TTABLE) {
    size_t n = tn_rawlen(L, 2);
    /* The box first: an element that raises leaves garbage, not a leak. */
    tn_array_t *a = push_new_array(L, t, n, ARRAY);
    char what[48];
    for (size_t i = 0; i < n; i++) {
      lua_rawgeti(L, 2, (lua_Integer)(i + 1));
      snprintf(what, sizeof what, "element %zu", i + 1);
      tn_elem_t e = check_elem(L, -1, t, ARRAY, what);
      tn_array_set(a, i, e);
      lua_pop(L, 1);
    }
    return 1;
  }
  if (lua_type(L, 2) != LUA_TNUMBER)
    return tn_l_error(L, ARRAY, "size must be an integer or a table of "
                      "numbers (got %s)", luaL_typename(L, 2));
  lua_Integer n = tn_l_checkinteger(L, 2, ARRAY, "size");
  if (n < 0)
    return tn_l_error(L, ARRAY, "size must be >= 0 (got %s)", N(n));
  push_new_array(L, t, (size_t)n, ARRAY);
  return 1;
}

/* tunnel.Array.frombytes(s [, type]): the bytes of a:bytes(), as a new
** array (their length must be a whole number of elements). */
static int l_array_frombytes(lua_State *L) {
  const char *method = ARRAY ".frombytes";
  if (lua_type(L, 1) != LUA_TSTRING)
    return tn_l_error(L, method, "bytes must be a string (got %s)",
                      luaL_typename(L, 1));
  size_t len;
  const char *s = lua_tolstring(L, 1, &len);
  tn_dtype_t t = check_dtype(L, 2, method);
  size_t size = tn_dtype_size(t);
  if (len % size != 0)
    return tn_l_error(L, method,
                      "%s bytes are not a whole number of %s elements (%s "
                      "bytes each)",
                      N(len), tn_dtype_name(t), N(size));
  tn_array_t *a = push_new_array(L, t, len / size, method);
  if (len > 0) memcpy(tn_array_data(a), s, len);
  return 1;
}

/* ---- elements ------------------------------------------------------------ */

static int array_get(lua_State *L, tn_array_t *a, const char *method) {
  tn_dtype_t t;
  size_t n;
  shape_of(L, a, method, &t, &n);
  size_t i = check_index(L, 2, n, method);
  tn_elem_t e;
  int rc = tn_array_get(a, i, &e);
  if (rc == TN_ERANGE) /* a cluster Array re-created smaller meanwhile */
    return tn_l_error(L, method, "index %s out of range",
                      N(i + 1));
  check_rc(L, rc, method);
  push_elem(L, t, e);
  return 1;
}

static void array_set(lua_State *L, tn_array_t *a, const char *method) {
  tn_dtype_t t;
  size_t n;
  shape_of(L, a, method, &t, &n);
  size_t i = check_index(L, 2, n, method);
  tn_l_checkvalue(L, 3, method);
  tn_elem_t e = check_elem(L, 3, t, method, "value");
  int rc = tn_array_set(a, i, e);
  if (rc == TN_ERANGE)
    tn_l_error(L, method, "index %s out of range", N(i + 1));
  check_rc(L, rc, method);
}

/* a:get(i) -> a[i] */
static int l_array_get(lua_State *L) {
  return array_get(L, check_array(L, M("get")), M("get"));
}

/* a:set(i, x) */
static int l_array_set(lua_State *L) {
  array_set(L, check_array(L, M("set")), M("set"));
  return 0;
}

/*
** The fast path of a[i] and a[i] = x: an in-process array and an index in
** range, read straight from the struct (array.h). Self is taken as the box
** it must be: these are metamethods of the class's locked metatable, which
** only the debug library can hand to another userdata. Anything else
** (errors, cluster arrays) goes the checked way.
*/
static inline tn_array_t *fast_array(lua_State *L, lua_Integer *i) {
  tn_box_t *box = lua_touserdata(L, 1);
  tn_array_t *a = box != NULL ? (tn_array_t *)box->object : NULL;
  if (a == NULL || TN_REMOTE(a)) return NULL;
#if TN_HAS_INTEGERS
  int isnum;
  *i = lua_tointegerx(L, 2, &isnum);
  if (!isnum) return NULL;
#else
  lua_Number x = lua_tonumber(L, 2);
  if (!(x >= 1 && x <= 9007199254740992.0)) return NULL;
  *i = (lua_Integer)x;
  if ((lua_Number)*i != x) return NULL;
#endif
  if (*i < 1 || (uint64_t)*i > (uint64_t)a->n) return NULL;
  return a;
}

/* a[i] (a number), or a method (a string). */
static int l_array_index(lua_State *L) {
  if (lua_type(L, 2) == LUA_TNUMBER) {
    lua_Integer i;
    tn_array_t *a = fast_array(L, &i);
    if (a != NULL) {
      push_elem(L, a->type,
                tn_array_load(a->type, a->data + (size_t)(i - 1) * a->size));
      return 1;
    }
    return array_get(L, check_array(L, ARRAY), ARRAY);
  }
  lua_pushvalue(L, 2);
  lua_rawget(L, lua_upvalueindex(2));
  return 1;
}

/* a[i] = x; any other key raises. */
static int l_array_newindex(lua_State *L) {
  if (lua_type(L, 2) == LUA_TNUMBER && lua_type(L, 3) == LUA_TNUMBER) {
    lua_Integer i;
    tn_array_t *a = fast_array(L, &i);
    if (a != NULL && (a->type == TN_DOUBLE || a->type == TN_FLOAT)) {
      tn_elem_t e;
      e.f = (double)lua_tonumber(L, 3);
      tn_array_store_elem(a->type, a->data + (size_t)(i - 1) * a->size, e);
      return 0;
    }
    int64_t v;
    uint64_t u;
    int big;
    if (a != NULL && to_int64(L, 3, &v, &u, &big) && !big &&
        (is_signed(a->type) || v >= 0)) {
      tn_elem_t e;
      e.i = v; /* the same bits as e.u = (uint64_t)v */
      if (tn_array_fits(a->type, e)) {
        tn_array_store_elem(a->type, a->data + (size_t)(i - 1) * a->size, e);
        return 0;
      }
    }
  }
  tn_array_t *a = check_array(L, ARRAY);
  if (lua_type(L, 2) != LUA_TNUMBER)
    return tn_l_error(L, ARRAY, "cannot set field %s (an Array holds "
                      "elements 1..#a only)",
                      lua_type(L, 2) == LUA_TSTRING
                          ? lua_tostring(L, 2)
                          : luaL_typename(L, 2));
  array_set(L, a, ARRAY);
  return 0;
}

static int l_array_len(lua_State *L) {
  tn_array_t *a = check_array(L, M("size"));
  lua_pushinteger(L, (lua_Integer)size_of(L, a, M("size")));
  return 1;
}

static int l_array_type(lua_State *L) {
  tn_array_t *a = check_array(L, M("type"));
  lua_pushstring(L, tn_dtype_name(type_of(L, a, M("type"))));
  return 1;
}

/* a:atomicAdd(i, x) -> the new value: one atomic add (a float's rounded
** like a[i] + x; an integer's wraps modulo 2^bits). */
static int l_array_atomicadd(lua_State *L) {
  const char *method = M("atomicAdd");
  tn_array_t *a = check_array(L, method);
  tn_dtype_t t;
  size_t n;
  shape_of(L, a, method, &t, &n);
  size_t i = check_index(L, 2, n, method);
  tn_elem_t d = check_factor(L, 3, t, method, "value"), old;
  int rc = tn_array_atomic_add(a, i, d, &old);
  if (rc == TN_ERANGE)
    return tn_l_error(L, method, "index %s out of range",
                      N(i + 1));
  check_rc(L, rc, method);
  tn_elem_t v;
  switch (t) {
  case TN_DOUBLE: v.f = old.f + d.f; break;
  case TN_FLOAT: v.f = (double)(float)(old.f + (double)(float)d.f); break;
  case TN_INT8: v.i = (int8_t)(uint8_t)(old.u + d.u); break;
  case TN_INT16: v.i = (int16_t)(uint16_t)(old.u + d.u); break;
  case TN_INT32: v.i = (int32_t)(uint32_t)(old.u + d.u); break;
  case TN_INT64: v.i = (int64_t)(old.u + d.u); break;
  case TN_UINT8: v.u = (uint8_t)(old.u + d.u); break;
  case TN_UINT16: v.u = (uint16_t)(old.u + d.u); break;
  case TN_UINT32: v.u = (uint32_t)(old.u + d.u); break;
  default: v.u = old.u + d.u; break;
  }
  push_elem(L, t, v);
  return 1;
}

/* ---- whole arrays ------------------------------------------------------- */

/* The in-process array to read all of: `a`, or a fetched copy of a
** cluster Array (pushed, so that it is collected). */
static tn_array_t *readable(lua_State *L, tn_array_t *a, const char *method) {
  if (!is_remote(a)) return a;
  tn_array_t *c;
  check_rc(L, tn_array_fetch(a, &c, NULL), method);
  tn_l_pushnew(L, TN_OBJECT(c));
  return c;
}

/* a:totable() -> a plain table of the elements. */
static int l_array_totable(lua_State *L) {
  tn_array_t *a = readable(L, check_array(L, M("totable")), M("totable"));
  tn_dtype_t t;
  size_t n;
  shape_of(L, a, M("totable"), &t, &n);
  if (n > (size_t)0x7fffffff)
    return tn_l_error(L, M("totable"), "too many elements for a table");
  lua_createtable(L, (int)n, 0);
  for (size_t i = 0; i < n; i++) {
    tn_elem_t e;
    tn_array_get(a, i, &e);
    push_elem(L, t, e);
    lua_rawseti(L, -2, (lua_Integer)(i + 1));
  }
  return 1;
}

/* a:bytes() -> the elements' memory as a string (native byte order). */
static int l_array_bytes(lua_State *L) {
  tn_array_t *a = readable(L, check_array(L, M("bytes")), M("bytes"));
  tn_dtype_t t;
  size_t n;
  shape_of(L, a, M("bytes"), &t, &n);
  lua_pushlstring(L, tn_array_data(a), n * tn_dtype_size(t));
  return 1;
}

/* a:view(first [, n]) -> an Array sharing elements first..first+n-1
** (n: to the end). */
static int l_array_view(lua_State *L) {
  const char *method = M("view");
  tn_array_t *a = check_array(L, method);
  check_local(L, a, method);
  size_t size = size_of(L, a, method);
  lua_Integer first = tn_l_checkinteger(L, 2, method, "first");
  if (first < 1 || (uint64_t)first > (uint64_t)size + 1)
    return tn_l_error(L, method, "first %s out of range (1..%s)",
                      N(first), N(size + 1));
  lua_Integer n = (lua_Integer)(size - (size_t)(first - 1));
  if (!lua_isnoneornil(L, 3)) {
    lua_Integer want = tn_l_checkinteger(L, 3, method, "n");
    if (want < 0 || want > n)
      return tn_l_error(L, method,
                        "n %s out of range (0..%s from element %s)",
                        N(want), N(n),
                        N(first));
    n = want;
  }
  tn_array_t *v;
  check_rc(L, tn_array_view(a, (size_t)(first - 1), (size_t)n, &v), method);
  tn_l_pushnew(L, TN_OBJECT(v));
  return 1;
}

/* a:pointer() -> the first element's address, a light userdata (for
** ffi.cast and C code; it does not keep the array alive). */
static int l_array_pointer(lua_State *L) {
  tn_array_t *a = check_array(L, M("pointer"));
  check_local(L, a, M("pointer"));
  lua_pushlightuserdata(L, tn_array_data(a));
  return 1;
}

/* ---- kernels ------------------------------------------------------------- */

/* a:fill(x) -> a */
static int l_array_fill(lua_State *L) {
  const char *method = M("fill");
  tn_array_t *a = check_array(L, method);
  check_local(L, a, method);
  tn_elem_t x = check_elem(L, 2, type_of(L, a, method), method, "value");
  check_rc(L, tn_array_fill(a, x), method);
  lua_settop(L, 1);
  return 1;
}

/* a:copy(b) -> a: a[i] = b[i]. Into a cluster Array it stores b; from one,
** it fetches it. */
static int l_array_copy(lua_State *L) {
  const char *method = M("copy");
  tn_array_t *a = check_array(L, method);
  tn_array_t *b = check_other(L, 2, method, "source");
  check_same(L, a, b, method);
  if (is_remote(a) && is_remote(b))
    return tn_l_error(L, method, "both arrays are cluster Arrays (fetch() "
                      "the source first)");
  check_rc(L, tn_array_copy(a, b), method);
  lua_settop(L, 1);
  return 1;
}

/* a:store(b) -> a: the same as copy (named for a cluster Array). */
static int l_array_store(lua_State *L) {
  const char *method = M("store");
  tn_array_t *a = check_array(L, method);
  tn_array_t *b = check_other(L, 2, method, "source");
  check_same(L, a, b, method);
  if (is_remote(b))
    return tn_l_error(L, method, "the source must be an in-process Array "
                      "(fetch() it first)");
  check_rc(L, tn_array_copy(a, b), method);
  lua_settop(L, 1);
  return 1;
}

/* a:add(b [, scale = 1]) -> a: a[i] += scale * b[i]. Into a cluster Array
** it is one script on the server: concurrent adds all count. */
static int l_array_add(lua_State *L) {
  const char *method = M("add");
  tn_array_t *a = check_array(L, method);
  tn_array_t *b = check_other(L, 2, method, "source");
  check_same(L, a, b, method);
  if (is_remote(a) && is_remote(b))
    return tn_l_error(L, method, "both arrays are cluster Arrays (fetch() "
                      "the source first)");
  tn_dtype_t t = type_of(L, a, method);
  tn_elem_t s;
  if (lua_isnoneornil(L, 3)) {
    if (is_float(t))
      s.f = 1;
    else
      s.u = 1;
  } else {
    s = check_factor(L, 3, t, method, "scale");
  }
  check_rc(L, tn_array_add(a, b, s), method);
  lua_settop(L, 1);
  return 1;
}

/* a:mul(b) -> a: a[i] *= b[i] */
static int l_array_mul(lua_State *L) {
  const char *method = M("mul");
  tn_array_t *a = check_array(L, method);
  tn_array_t *b = check_other(L, 2, method, "other");
  check_local(L, a, method);
  check_local(L, b, method);
  check_same(L, a, b, method);
  check_rc(L, tn_array_mul(a, b), method);
  lua_settop(L, 1);
  return 1;
}

/* a:scale(x) -> a: a[i] *= x */
static int l_array_scale(lua_State *L) {
  const char *method = M("scale");
  tn_array_t *a = check_array(L, method);
  check_local(L, a, method);
  tn_elem_t x = check_factor(L, 2, type_of(L, a, method), method, "factor");
  check_rc(L, tn_array_scale(a, x), method);
  lua_settop(L, 1);
  return 1;
}

/* a:dot(b) -> the sum of a[i] * b[i] (a float for float types, else an
** integer, wrapping in 64 bits) */
static int l_array_dot(lua_State *L) {
  const char *method = M("dot");
  tn_array_t *a = check_array(L, method);
  tn_array_t *b = check_other(L, 2, method, "other");
  check_local(L, a, method);
  check_local(L, b, method);
  check_same(L, a, b, method);
  tn_elem_t r;
  check_rc(L, tn_array_dot(a, b, &r), method);
  tn_dtype_t t = type_of(L, a, method);
  push_elem(L, t == TN_FLOAT ? TN_DOUBLE : t, r);
  return 1;
}

/* a:sum() -> the sum of the elements (as dot) */
static int l_array_sum(lua_State *L) {
  const char *method = M("sum");
  tn_array_t *a = check_array(L, method);
  check_local(L, a, method);
  tn_elem_t r;
  check_rc(L, tn_array_sum(a, &r), method);
  tn_dtype_t t = type_of(L, a, method);
  push_elem(L, t == TN_FLOAT ? TN_DOUBLE : t, r);
  return 1;
}

/* a:min() / a:max() -> value, index of the first extreme (NaNs skipped);
** nil for an empty array. */
static int array_extreme(lua_State *L, const char *method, int max) {
  tn_array_t *a = check_array(L, method);
  check_local(L, a, method);
  tn_elem_t r;
  size_t at;
  int rc = max ? tn_array_max(a, &r, &at) : tn_array_min(a, &r, &at);
  if (rc == TN_ERANGE) {
    lua_pushnil(L);
    return 1;
  }
  check_rc(L, rc, method);
  push_elem(L, type_of(L, a, method), r);
  lua_pushinteger(L, (lua_Integer)(at + 1));
  return 2;
}

static int l_array_min(lua_State *L) { return array_extreme(L, M("min"), 0); }
static int l_array_max(lua_State *L) { return array_extreme(L, M("max"), 1); }

/* ---- copies, versions, callbacks ----------------------------------------- */

/* a:fetch() -> an in-process copy [, the version of a cluster Array] */
static int l_array_fetch(lua_State *L) {
  const char *method = M("fetch");
  tn_array_t *a = check_array(L, method);
  tn_array_t *c;
  uint64_t version = 0;
  check_rc(L, tn_array_fetch(a, &c, &version), method);
  tn_l_pushnew(L, TN_OBJECT(c));
  if (!is_remote(a)) return 1;
  lua_pushinteger(L, (lua_Integer)version);
  return 2;
}

/* a:version() -> a cluster Array's version (changes with every write) */
static int l_array_version(lua_State *L) {
  const char *method = M("version");
  tn_array_t *a = check_array(L, method);
  if (!is_remote(a))
    return tn_l_error(L, method, "only a cluster Array has a version");
  uint64_t v = 0;
  check_rc(L, tn_array_version(a, &v), method);
  lua_pushinteger(L, (lua_Integer)v);
  return 1;
}

/*
** read(callback) / write(callback) -> the callback's results. In process
** the callback gets the array itself, under the reader-writer lock of its
** base (many readers or one writer; element accesses and kernels are not
** held off). A cluster Array's callback gets a fetched copy, under the
** cluster lock; write stores it back before unlocking (only while the
** lease holds). Async twins return nil when they would wait.
*/
static int array_callback(lua_State *L, const char *method, int write,
                          double timeout) {
  tn_array_t *a = check_array(L, method);
  tn_l_checkcallback(L, 2, method);
  lua_settop(L, 2);
  tn_object_t *lock = TN_OBJECT(tn_array_base(a));
  int rc = write ? tn_object_write_lock(lock, timeout)
                 : tn_object_read_lock(lock, timeout);
  if (tn_l_waited(rc)) return tn_l_pushnils(L, 1);
  if (rc != TN_OK) return tn_l_coreerror(L, method, rc);
  tn_array_t *copy = NULL;
  int status = 0;
  if (is_remote(a)) {
    rc = tn_array_fetch(a, &copy, NULL);
    if (rc == TN_OK) tn_l_pushnew(L, TN_OBJECT(copy)); /* 3 */
  } else {
    lua_pushvalue(L, 1); /* 3 */
  }
  if (rc == TN_OK) {
    lua_pushvalue(L, 2);
    lua_pushvalue(L, 3);
    status = lua_pcall(L, 1, LUA_MULTRET, 0);
    if (status == 0 && write && copy != NULL) rc = tn_array_copy(a, copy);
  }
  if (write)
    tn_object_write_unlock(lock);
  else
    tn_object_read_unlock(lock);
  if (status != 0) return lua_error(L); /* re-raised, the lock released */
  check_rc(L, rc, method);
  return lua_gettop(L) - 3;
}

static int l_array_read(lua_State *L) {
  return array_callback(L, M("read"), 0, TN_FOREVER);
}
static int l_array_readasync(lua_State *L) {
  return array_callback(L, M("readAsync"), 0, TN_TRY);
}
static int l_array_write(lua_State *L) {
  return array_callback(L, M("write"), 1, TN_FOREVER);
}
static int l_array_writeasync(lua_State *L) {
  return array_callback(L, M("writeAsync"), 1, TN_TRY);
}

/* tunnel.Array: 0x... (10 double); a cluster Array says so, without a
** round trip. */
static int l_array_tostring(lua_State *L) {
  tn_box_t *box = lua_touserdata(L, 1);
  tn_array_t *a = (tn_array_t *)box->object;
  if (a == NULL || is_remote(a)) {
    lua_pushfstring(L, ARRAY ": %p%s", (void *)a,
                    a != NULL ? " (cluster)" : "");
    return 1;
  }
  tn_dtype_t t;
  size_t n;
  tn_array_shape(a, &t, &n);
  lua_pushfstring(L, ARRAY ": %p (%s %s)", (void *)a, N(n),
                  tn_dtype_name(t));
  return 1;
}

/* ---- the cluster constructor --------------------------------------------- */

int tn_l_cluster_array(lua_State *L, tn_cluster_t *c, const char *name,
                       const char *method) {
  tn_dtype_t t = 0;
  size_t n = 0;
  if (!lua_isnoneornil(L, 3)) {
    lua_Integer size = tn_l_checkinteger(L, 3, method, "size");
    if (size < 0)
      return tn_l_error(L, method, "size must be >= 0 (got %s)",
                        N(size));
    n = (size_t)size;
    t = check_dtype(L, 4, method);
  } else if (!lua_isnoneornil(L, 4)) {
    return tn_l_error(L, method, "a type needs a size");
  }
  tn_array_t *a;
  int rc = tn_cluster_array(c, name, t, n, &a);
  if (rc == TN_ECONFLICT || rc == TN_EINVAL)
    return tn_l_error(L, method, "%s", tn_last_error());
  if (rc != TN_OK) return tn_l_coreerror(L, method, rc);
  tn_l_pushnew(L, TN_OBJECT(a));
  return 1;
}

/* ---- LuaJIT's fast path -------------------------------------------------- */

/*
** On LuaJIT the C metamethods cost ~100 ns an a[i] = a[i] + 1 (a C call
** the JIT does not compile) where a plain table costs ~1 ns. So there,
** with the FFI and the JIT on, __index and __newindex are these Lua
** functions: for an in-process array, an integer index in range and (for
** an integer type) a value the type holds, they read or write through a
** typed FFI pointer, which the JIT compiles to a few guarded loads and a
** move; everything else (methods, errors, cluster arrays, uint64 values
** of 2^63 or more) goes to the C functions, so behaviour and messages are
** the same. The pointer, n and type are taken once per box from the
** core struct (array.h; the offsets are passed in and checked) into a
** weak-keyed cache, which the box's __gc clears: the box holds the
** object, so the pointer is valid while the entry is; a view's object
** holds its base's buffer. The same arithmetic as the C path: floats
** stored with C's conversion, int64 read as the nearest double.
*/
static const char fast_src[] =
    "-- LuaJIT's fast path of a[i] and a[i] = x (larray.c runs this once\n"
    "-- per state, when the class is built). Returns __index, __newindex\n"
    "-- and the cache, or nothing where the FFI or the JIT is absent.\n"
    "local cindex, cnewindex, methods, names, off_backend, off_type, off_n,\n"
    "      off_data, type_size = ...\n"
    "local ok, ffi = pcall(require, 'ffi')\n"
    "if not ok or type(jit) ~= 'table' or not jit.status() or\n"
    "   type_size ~= 4 then\n"
    "  return\n"
    "end\n"
    "local cast, tonumber, type, rawget = ffi.cast, tonumber, type, rawget\n"
    "local fields, at = {}, 0\n"
    "local function field(decl, offset, size)\n"
    "  if offset > at then\n"
    "    fields[#fields + 1] = ('char _%d[%d];'):format(at, offset - at)\n"
    "  end\n"
    "  fields[#fields + 1] = decl\n"
    "  at = offset + size\n"
    "end\n"
    "local psize = ffi.sizeof('void *')\n"
    "field('const void *backend;', off_backend, psize)\n"
    "field('int32_t type;', off_type, 4)\n"
    "field('size_t n;', off_n, ffi.sizeof('size_t'))\n"
    "field('unsigned char *data;', off_data, psize)\n"
    "local array_t = ffi.typeof('struct { ' .. table.concat(fields, ' ') ..\n"
    "                          ' }')\n"
    "if ffi.offsetof(array_t, 'backend') ~= off_backend or\n"
    "   ffi.offsetof(array_t, 'type') ~= off_type or\n"
    "   ffi.offsetof(array_t, 'n') ~= off_n or\n"
    "   ffi.offsetof(array_t, 'data') ~= off_data then\n"
    "  return\n"
    "end\n"
    "local box_t = ffi.typeof('struct { $ *object; } *', array_t)\n"
    "-- Per element type: the C type, and for an integer type the range\n"
    "-- written here (the rest goes to the C function, which raises or,\n"
    "-- for a uint64 of 2^63 or more, writes it).\n"
    "local kinds = {\n"
    "  double = {'double'}, float = {'float'},\n"
    "  int8 = {'int8_t', -128, 128}, int16 = {'int16_t', -32768, 32768},\n"
    "  int32 = {'int32_t', -2147483648, 2147483648},\n"
    "  int64 = {'int64_t', -2^63, 2^63, true},\n"
    "  uint8 = {'uint8_t', 0, 256}, uint16 = {'uint16_t', 0, 65536},\n"
    "  uint32 = {'uint32_t', 0, 4294967296},\n"
    "  uint64 = {'uint64_t', 0, 2^63, true},\n"
    "}\n"
    "local types = {}\n"
    "for code, name in pairs(names) do\n"
    "  local k = kinds[name]\n"
    "  types[code] = {ptr = ffi.typeof(k[1] .. ' *'), lo = k[2], lim = k[3],\n"
    "                 wide = k[4] or false}\n"
    "end\n"
    "-- box -> {p = typed pointer, n = size, ...}, or false: not in\n"
    "-- process (a cluster Array, a collected box). The entry goes with the\n"
    "-- box: __gc removes it (a box resurrected after its __gc must not keep\n"
    "-- the pointer).\n"
    "local cache = setmetatable({}, {__mode = 'k'})\n"
    "local function entry(self)\n"
    "  local o = cast(box_t, self).object\n"
    "  local e = false\n"
    "  if o ~= nil and o.backend == nil and types[o.type] then\n"
    "    local t = types[o.type]\n"
    "    e = {p = cast(t.ptr, o.data), n = tonumber(o.n), lo = t.lo or false,\n"
    "         lim = t.lim or false, wide = t.wide}\n"
    "  end\n"
    "  cache[self] = e\n"
    "  return e\n"
    "end\n"
    "local function index(self, k)\n"
    "  if type(k) ~= 'number' then return rawget(methods, k) end\n"
    "  local e = cache[self]\n"
    "  if e == nil then e = entry(self) end\n"
    "  if e and k >= 1 and k <= e.n and k % 1 == 0 then\n"
    "    if e.wide then return tonumber(e.p[k - 1]) end\n"
    "    return e.p[k - 1]\n"
    "  end\n"
    "  return cindex(self, k)\n"
    "end\n"
    "local function newindex(self, k, v)\n"
    "  local e = cache[self]\n"
    "  if e == nil then e = entry(self) end\n"
    "  if e and type(k) == 'number' and type(v) == 'number' and k >= 1 and\n"
    "     k <= e.n and k % 1 == 0 and\n"
    "     (not e.lo or (v >= e.lo and v < e.lim and v % 1 == 0)) then\n"
    "    e.p[k - 1] = v\n"
    "    return\n"
    "  end\n"
    "  return cnewindex(self, k, v)\n"
    "end\n"
    "return index, newindex, cache\n";

/* __init (tn_l_class_t): install the fast path where it applies. */
static int l_array_init(lua_State *L) {
  if (!tn_is_luajit()) return 0;
  if (luaL_loadbuffer(L, fast_src, sizeof fast_src - 1, "=tunnel.Array") != 0)
    return 0; /* cannot happen but for no memory: the C path stays */
  lua_getfield(L, lua_upvalueindex(1), "__index");
  lua_getfield(L, lua_upvalueindex(1), "__newindex");
  lua_pushvalue(L, lua_upvalueindex(2));
  lua_createtable(L, 0, 10); /* type codes -> names */
  for (int t = TN_DOUBLE; t <= TN_UINT64; t++) {
    lua_pushstring(L, tn_dtype_name((tn_dtype_t)t));
    lua_rawseti(L, -2, t);
  }
  lua_pushinteger(L, (lua_Integer)offsetof(tn_object_t, backend));
  lua_pushinteger(L, (lua_Integer)offsetof(struct tn_array, type));
  lua_pushinteger(L, (lua_Integer)offsetof(struct tn_array, n));
  lua_pushinteger(L, (lua_Integer)offsetof(struct tn_array, data));
  lua_pushinteger(L, (lua_Integer)sizeof(tn_dtype_t));
  if (lua_pcall(L, 9, 3, 0) != 0 || !lua_isfunction(L, -3)) return 0;
  lua_setfield(L, LUA_REGISTRYINDEX, "tunnel.Array.fast"); /* the cache */
  lua_setfield(L, lua_upvalueindex(1), "__newindex");
  lua_setfield(L, lua_upvalueindex(1), "__index");
  return 0;
}

/* __gc: the fast path's cache entry, then the box's reference. */
static int l_array_gc(lua_State *L) {
  tn_box_t *box = lua_touserdata(L, 1);
  if (tn_is_luajit()) {
    lua_getfield(L, LUA_REGISTRYINDEX, "tunnel.Array.fast");
    if (lua_istable(L, -1)) {
      lua_pushvalue(L, 1);
      lua_pushnil(L);
      lua_rawset(L, -3);
    }
    lua_pop(L, 1);
  }
  if (box != NULL && box->object != NULL) {
    tn_object_release(box->object);
    box->object = NULL;
  }
  return 0;
}

/* ---- the class ----------------------------------------------------------- */

static const luaL_Reg array_methods[] = {
    {"get", l_array_get},
    {"set", l_array_set},
    {"size", l_array_len},
    {"type", l_array_type},
    {"atomicAdd", l_array_atomicadd},
    {"totable", l_array_totable},
    {"bytes", l_array_bytes},
    {"view", l_array_view},
    {"pointer", l_array_pointer},
    {"fill", l_array_fill},
    {"copy", l_array_copy},
    {"store", l_array_store},
    {"add", l_array_add},
    {"mul", l_array_mul},
    {"scale", l_array_scale},
    {"dot", l_array_dot},
    {"sum", l_array_sum},
    {"min", l_array_min},
    {"max", l_array_max},
    {"fetch", l_array_fetch},
    {"version", l_array_version},
    {"read", l_array_read},
    {"readAsync", l_array_readasync},
    {"write", l_array_write},
    {"writeAsync", l_array_writeasync},
    {NULL, NULL}};

static const luaL_Reg array_meta[] = {{"__index", l_array_index},
                                      {"__newindex", l_array_newindex},
                                      {"__len", l_array_len},
                                      {"__tostring", l_array_tostring},
                                      {"__gc", l_array_gc},
                                      {"__init", l_array_init},
                                      {NULL, NULL}};

static const tn_l_class_t array_class = {TN_TYPE_ARRAY, ARRAY, array_methods,
                                         array_meta};

void tn_l_open_array(lua_State *L) {
  tn_l_newclass(L, &array_class);
  lua_createtable(L, 0, 1); /* tunnel.Array */
  lua_pushcfunction(L, l_array_frombytes);
  lua_setfield(L, -2, "frombytes");
  lua_createtable(L, 0, 2); /* its metatable */
  lua_pushcfunction(L, l_array_new);
  lua_setfield(L, -2, "__call");
  lua_pushliteral(L, "locked");
  lua_setfield(L, -2, "__metatable");
  lua_setmetatable(L, -2);
  /* package.loaded['tunnel.array']: the codec sends it by name */
  lua_getfield(L, LUA_REGISTRYINDEX, "_LOADED");
  if (lua_istable(L, -1)) {
    lua_pushvalue(L, -2);
    lua_setfield(L, -2, "tunnel.array");
  }
  lua_pop(L, 1);
  lua_setfield(L, -2, "Array");
}
