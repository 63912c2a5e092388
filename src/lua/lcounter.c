/*
** lcounter.c - tunnel.Counter: an atomic integer shared by threads, the
** binding of the core counter (tn_counter_*).
**
** increase/decrease/get are lock-free and never wait, so their Async twins
** always succeed. set/read/write take the object's callback lock (set and
** write as its writer, read as a reader) so that set never races a write
** callback; their Async twins return nil when that lock is busy.
**
** Caveat: the counter is a 64-bit integer. Lua 5.4 sees it exactly; on
** LuaJIT and 5.1 numbers are doubles, exact up to 2^53.
*/
#include "ltunnel.h"

#define COUNTER "tunnel.Counter"
#define M(name) COUNTER ":" name

static tn_counter_t *check_counter(lua_State *L, const char *method) {
  return (tn_counter_t *)tn_l_checkobject(L, 1, method);
}

static void push_int64(lua_State *L, int64_t v) {
  lua_pushinteger(L, (lua_Integer)v);
}

/* tunnel.Counter([value = 0]) */
static int l_counter_new(lua_State *L) {
  int64_t value = 0;
  if (!lua_isnoneornil(L, 1))
    value = (int64_t)tn_l_checkinteger(L, 1, COUNTER, "value");
  tn_counter_t *c;
  int rc = tn_counter_new(value, &c);
  if (rc != TN_OK) return tn_l_coreerror(L, COUNTER, rc);
  tn_l_pushnew(L, TN_OBJECT(c));
  return 1;
}

/* ---- lock-free: one implementation serves both twins ---------------------- */

/* increase([step = 1]) / decrease([step = 1]) -> the new value. */
static int counter_add(lua_State *L, const char *method, int sign) {
  tn_counter_t *c = check_counter(L, method);
  int64_t step = 1;
  if (!lua_isnoneornil(L, 2))
    step = (int64_t)tn_l_checkinteger(L, 2, method, "step");
  /* Negate in uint64_t: -INT64_MIN would be undefined; the core wraps. */
  uint64_t delta = sign > 0 ? (uint64_t)step : (uint64_t)0 - (uint64_t)step;
  push_int64(L, tn_counter_add(c, (int64_t)delta));
  tn_l_checkpending(L, method); /* a cluster counter's failure */
  return 1;
}

static int l_counter_increase(lua_State *L) {
  return counter_add(L, M("increase"), 1);
}

static int l_counter_increaseasync(lua_State *L) {
  return counter_add(L, M("increaseAsync"), 1);
}

static int l_counter_decrease(lua_State *L) {
  return counter_add(L, M("decrease"), -1);
}

static int l_counter_decreaseasync(lua_State *L) {
  return counter_add(L, M("decreaseAsync"), -1);
}

static int counter_get(lua_State *L, const char *method) {
  push_int64(L, tn_counter_get(check_counter(L, method)));
  tn_l_checkpending(L, method);
  return 1;
}

static int l_counter_get(lua_State *L) { return counter_get(L, M("get")); }

static int l_counter_getasync(lua_State *L) {
  return counter_get(L, M("getAsync"));
}

/* ---- under the callback lock ---------------------------------------------- */

/* set(v) -> the old value; as the callback lock's writer, so it never lands
** in the middle of a write callback (whose result would overwrite it). */
static int counter_set(lua_State *L, const char *method, double timeout) {
  tn_counter_t *c = check_counter(L, method);
  int64_t value = (int64_t)tn_l_checkinteger(L, 2, method, "value");
  int rc = tn_object_write_lock(TN_OBJECT(c), timeout);
  if (tn_l_waited(rc)) {
    lua_pushnil(L);
    return 1;
  }
  if (rc != TN_OK) return tn_l_coreerror(L, method, rc);
  int64_t old = tn_counter_set(c, value);
  tn_object_write_unlock(TN_OBJECT(c));
  tn_l_checkpending(L, method);
  push_int64(L, old);
  return 1;
}

static int l_counter_set(lua_State *L) {
  return counter_set(L, M("set"), TN_FOREVER);
}

static int l_counter_setasync(lua_State *L) {
  return counter_set(L, M("setAsync"), TN_TRY);
}

/* read(callback) -> callback(value)'s results, as a reader. */
static int counter_read(lua_State *L, const char *method, double timeout) {
  tn_counter_t *c = check_counter(L, method);
  tn_l_checkcallback(L, 2, method);
  lua_settop(L, 2);
  int rc = tn_object_read_lock(TN_OBJECT(c), timeout);
  if (tn_l_waited(rc)) {
    lua_pushnil(L);
    return 1;
  }
  if (rc != TN_OK) return tn_l_coreerror(L, method, rc);
  lua_pushvalue(L, 2);
  push_int64(L, tn_counter_get(c));
  if ((rc = tn_error_take()) != TN_OK) { /* a cluster counter's failure */
    tn_object_read_unlock(TN_OBJECT(c));
    return tn_l_coreerror(L, method, rc);
  }
  int status = lua_pcall(L, 1, LUA_MULTRET, 0);
  tn_object_read_unlock(TN_OBJECT(c));
  if (status != 0) return lua_error(L); /* re-raise, the lock released */
  return lua_gettop(L) - 2;
}

static int l_counter_read(lua_State *L) {
  return counter_read(L, M("read"), TN_FOREVER);
}

static int l_counter_readasync(lua_State *L) {
  return counter_read(L, M("readAsync"), TN_TRY);
}

/* Protected: (method, callback, value) -> callback(value), checked to be an
** integer (a check that raises must still release the lock). */
static int write_body(lua_State *L) {
  const char *method = lua_touserdata(L, 1);
  lua_call(L, 1, 1);
  lua_Integer nv = 0;
  if (lua_type(L, -1) == LUA_TNUMBER)
    nv = tn_l_checkinteger(L, -1, method, "the callback's result");
  else
    tn_l_error(L, method, "the callback must return an integer (got %s)",
               luaL_typename(L, -1));
  lua_pushinteger(L, nv);
  return 1;
}

/*
** write(callback) -> the new value. As the callback lock's writer:
** v = get(), nv = callback(v), then add nv - v rather than store nv, so
** that increases made meanwhile by other threads (lock-free, not held off
** by the callback lock) are never lost.
*/
static int counter_write(lua_State *L, const char *method, double timeout) {
  tn_counter_t *c = check_counter(L, method);
  tn_l_checkcallback(L, 2, method);
  lua_settop(L, 2);
  int rc = tn_object_write_lock(TN_OBJECT(c), timeout);
  if (tn_l_waited(rc)) {
    lua_pushnil(L);
    return 1;
  }
  if (rc != TN_OK) return tn_l_coreerror(L, method, rc);
  int64_t v = tn_counter_get(c);
  if ((rc = tn_error_take()) != TN_OK) { /* a cluster counter's failure */
    tn_object_write_unlock(TN_OBJECT(c));
    return tn_l_coreerror(L, method, rc);
  }
  lua_pushcfunction(L, write_body);
  lua_pushlightuserdata(L, (void *)method);
  lua_pushvalue(L, 2);
  push_int64(L, v);
  int status = lua_pcall(L, 3, 1, 0);
  int64_t result = 0;
  if (status == 0) {
    int64_t nv = (int64_t)lua_tointeger(L, -1);
    result = tn_counter_add(c, (int64_t)((uint64_t)nv - (uint64_t)v));
  }
  tn_object_write_unlock(TN_OBJECT(c));
  if (status != 0) return lua_error(L);
  tn_l_checkpending(L, method);
  push_int64(L, result);
  return 1;
}

static int l_counter_write(lua_State *L) {
  return counter_write(L, M("write"), TN_FOREVER);
}

static int l_counter_writeasync(lua_State *L) {
  return counter_write(L, M("writeAsync"), TN_TRY);
}

static const luaL_Reg counter_methods[] = {
    {"increase", l_counter_increase},
    {"increaseAsync", l_counter_increaseasync},
    {"decrease", l_counter_decrease},
    {"decreaseAsync", l_counter_decreaseasync},
    {"get", l_counter_get},
    {"getAsync", l_counter_getasync},
    {"set", l_counter_set},
    {"setAsync", l_counter_setasync},
    {"read", l_counter_read},
    {"readAsync", l_counter_readasync},
    {"write", l_counter_write},
    {"writeAsync", l_counter_writeasync},
    {NULL, NULL}};

static const tn_l_class_t counter_class = {
    TN_TYPE_COUNTER, COUNTER, counter_methods, NULL};

void tn_l_open_counter(lua_State *L) {
  tn_l_newclass(L, &counter_class);
  lua_pushcfunction(L, l_counter_new);
  lua_setfield(L, -2, "Counter");
}
