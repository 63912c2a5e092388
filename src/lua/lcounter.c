/*
** lcounter.c - tunnel.Counter: an atomic integer shared by threads, the
** binding of the core counter (tn_counter_*).
**
** read/write take the object's callback lock, which also gates the other
** operations (tunnel.h): while a write callback runs, increase, get and
** set of other threads wait and their Async twins return nil; while a read
** callback runs, only get goes on. Otherwise increase/decrease/get/set are
** one lock-free atomic operation.
**
** Caveat: an in-process counter holds 63-bit integers (TN_COUNTER_MIN ..
** MAX, wrapping within them), a cluster one 64-bit. Lua 5.4 sees them
** exactly; on LuaJIT and 5.1 numbers are doubles, exact up to 2^53.
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
  if (rc == TN_ERANGE)
    return tn_l_error(L, COUNTER, "value out of range (63-bit integers)");
  if (rc != TN_OK) return tn_l_coreerror(L, COUNTER, rc);
  tn_l_pushnew(L, TN_OBJECT(c));
  return 1;
}

/* ---- one implementation serves both twins --------------------------------- */

/* A counter operation's outcome: the value, or nil when an Async twin
** would have waited for a callback; other failures raise. */
static int push_result(lua_State *L, const char *method, int rc, int64_t v) {
  if (tn_l_waited(rc)) {
    lua_pushnil(L);
    return 1;
  }
  if (rc != TN_OK) return tn_l_coreerror(L, method, rc);
  push_int64(L, v);
  return 1;
}

/* increase([step = 1]) / decrease([step = 1]) -> the new value. */
static int counter_add(lua_State *L, const char *method, int sign,
                       double timeout) {
  tn_counter_t *c = check_counter(L, method);
  int64_t step = 1;
  if (!lua_isnoneornil(L, 2))
    step = (int64_t)tn_l_checkinteger(L, 2, method, "step");
  /* Negate in uint64_t: -INT64_MIN would be undefined; the core wraps. */
  uint64_t delta = sign > 0 ? (uint64_t)step : (uint64_t)0 - (uint64_t)step;
  int64_t v = 0;
  int rc = tn_counter_add_timed(c, (int64_t)delta, timeout, &v);
  return push_result(L, method, rc, v);
}

static int l_counter_increase(lua_State *L) {
  return counter_add(L, M("increase"), 1, TN_FOREVER);
}

static int l_counter_increaseasync(lua_State *L) {
  return counter_add(L, M("increaseAsync"), 1, TN_TRY);
}

static int l_counter_decrease(lua_State *L) {
  return counter_add(L, M("decrease"), -1, TN_FOREVER);
}

static int l_counter_decreaseasync(lua_State *L) {
  return counter_add(L, M("decreaseAsync"), -1, TN_TRY);
}

static int counter_get(lua_State *L, const char *method, double timeout) {
  int64_t v = 0;
  int rc = tn_counter_get_timed(check_counter(L, method), timeout, &v);
  return push_result(L, method, rc, v);
}

static int l_counter_get(lua_State *L) {
  return counter_get(L, M("get"), TN_FOREVER);
}

static int l_counter_getasync(lua_State *L) {
  return counter_get(L, M("getAsync"), TN_TRY);
}

/*
** set(v) -> the old value. In process the gate keeps it out of a write
** callback. A cluster counter's server does not gate it, so it takes the
** callback lock as a writer (unless this thread holds it: inside its own
** write callback), so it never lands under another process's callback,
** whose result would overwrite it.
*/
static int counter_set(lua_State *L, const char *method, double timeout) {
  tn_counter_t *c = check_counter(L, method);
  int64_t value = (int64_t)tn_l_checkinteger(L, 2, method, "value");
  tn_object_t *o = TN_OBJECT(c);
  int held = tn_object_lock_held(o);
  int lock = tn_object_is_remote(o) && held == 0;
  int rc = lock ? tn_object_write_lock(o, timeout) : TN_OK;
  if (tn_object_is_remote(o) && held == 1) /* its own reader: as in process */
    rc = timeout < 0 ? TN_EAGAIN : TN_EDEADLK;
  int64_t old = 0;
  if (rc == TN_OK) {
    rc = tn_counter_set_timed(c, value, timeout, &old);
    if (lock) tn_object_write_unlock(o);
  }
  if (rc == TN_ERANGE)
    return tn_l_error(L, method, "value out of range (%d-bit integers)",
                      tn_object_is_remote(o) ? 64 : 63);
  return push_result(L, method, rc, old);
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
  int64_t v = 0;
  if ((rc = tn_counter_get_timed(c, timeout, &v)) != TN_OK) {
    tn_object_read_unlock(TN_OBJECT(c)); /* a cluster counter's failure */
    return tn_l_coreerror(L, method, rc);
  }
  push_int64(L, v);
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
** v = get(), nv = callback(v), then store nv: in process nothing else
** changed the counter meanwhile (the gate). A cluster counter adds nv - v
** instead, so that increases made meanwhile by other processes (which the
** server does not hold off) are never lost.
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
  int64_t v = 0;
  if ((rc = tn_counter_get_timed(c, timeout, &v)) != TN_OK) {
    tn_object_write_unlock(TN_OBJECT(c)); /* a cluster counter's failure */
    return tn_l_coreerror(L, method, rc);
  }
  lua_pushcfunction(L, write_body);
  lua_pushlightuserdata(L, (void *)method);
  lua_pushvalue(L, 2);
  push_int64(L, v);
  int status = lua_pcall(L, 3, 1, 0);
  int64_t nv = 0, result = 0;
  if (status == 0) {
    nv = (int64_t)lua_tointeger(L, -1);
    if (tn_object_is_remote(TN_OBJECT(c))) {
      rc = tn_counter_add_timed(c, (int64_t)((uint64_t)nv - (uint64_t)v),
                                TN_FOREVER, &result);
    } else {
      rc = tn_counter_set_timed(c, nv, TN_FOREVER, NULL);
      result = nv;
    }
  }
  tn_object_write_unlock(TN_OBJECT(c));
  if (status != 0) return lua_error(L);
  if (rc == TN_ERANGE)
    return tn_l_error(L, method, "the callback's result is out of range "
                      "(63-bit integers)");
  if (rc != TN_OK) return tn_l_coreerror(L, method, rc);
  push_int64(L, result);
  return 1;
}

static int l_counter_write(lua_State *L) {
  return counter_write(L, M("write"), TN_FOREVER);
}

static int l_counter_writeasync(lua_State *L) {
  return counter_write(L, M("writeAsync"), TN_TRY);
}

/*
** waitFor(value [, timeout]) -> value, true once the counter reaches
** `value` (from below: >= value; from above: <= value; the side is the one
** it is on when the call starts), with the value that reached it; the
** value last seen and nil when the timeout runs out. waitForAsync(value)
** only looks.
*/
static int counter_waitfor(lua_State *L, const char *method, int async) {
  tn_counter_t *c = check_counter(L, method);
  int64_t target = (int64_t)tn_l_checkinteger(L, 2, method, "value");
  double timeout = async ? TN_TRY : tn_l_opttimeout(L, 3, method);
  int64_t v = 0;
  int rc = tn_counter_wait(c, target, timeout, &v);
  if (rc != TN_OK && !tn_l_waited(rc)) return tn_l_coreerror(L, method, rc);
  push_int64(L, v);
  if (rc == TN_OK)
    lua_pushboolean(L, 1);
  else
    lua_pushnil(L);
  return 2;
}

static int l_counter_waitfor(lua_State *L) {
  return counter_waitfor(L, M("waitFor"), 0);
}

static int l_counter_waitforasync(lua_State *L) {
  return counter_waitfor(L, M("waitForAsync"), 1);
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
    {"waitFor", l_counter_waitfor},
    {"waitForAsync", l_counter_waitforasync},
    {NULL, NULL}};

static const tn_l_class_t counter_class = {
    TN_TYPE_COUNTER, COUNTER, counter_methods, NULL};

void tn_l_open_counter(lua_State *L) {
  tn_l_newclass(L, &counter_class);
  lua_pushcfunction(L, l_counter_new);
  lua_setfield(L, -2, "Counter");
}
