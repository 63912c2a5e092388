/*
** lbarrier.c - tunnel.Barrier: lock-step rounds of `parties` threads, the
** binding of the core barrier (tn_barrier_*), in process or on a cluster.
**
** wait([timeout]) -> index, true when the round completed (index: the
** arrival order, 1 .. parties); nil, false when the round was broken: this
** call's timeout ran out (which breaks it for everyone in it), another
** waiter's did, or reset was called. A broken barrier answers nil, false
** at once until reset.
**
** Caveat: there is no waitAsync. An Async twin returns at once without
** acting; a barrier wait that does not wait can only break the round
** (wait(0) does exactly that, unless it completes the round).
*/
#include <limits.h>

#include "ltunnel.h"

#define BARRIER "tunnel.Barrier"
#define M(name) BARRIER ":" name

static tn_barrier_t *check_barrier(lua_State *L, const char *method) {
  return (tn_barrier_t *)tn_l_checkobject(L, 1, method);
}

/* tunnel.Barrier(parties) */
static int l_barrier_new(lua_State *L) {
  lua_Integer parties = tn_l_checkinteger(L, 1, BARRIER, "parties");
  if (parties < 1 || parties > INT_MAX)
    return tn_l_error(L, BARRIER, "parties must be an integer >= 1");
  tn_barrier_t *b;
  int rc = tn_barrier_new((int)parties, &b);
  if (rc != TN_OK) return tn_l_coreerror(L, BARRIER, rc);
  tn_l_pushnew(L, TN_OBJECT(b));
  return 1;
}

/* wait([timeout]) -> index, true | nil, false */
static int l_barrier_wait(lua_State *L) {
  tn_barrier_t *b = check_barrier(L, M("wait"));
  double timeout = tn_l_opttimeout(L, 2, M("wait"));
  int index = 0;
  int rc = tn_barrier_wait(b, timeout, &index);
  if (rc == TN_ETIMEDOUT || rc == TN_EBROKEN) {
    lua_pushnil(L);
    lua_pushboolean(L, 0);
    return 2;
  }
  if (rc != TN_OK) return tn_l_coreerror(L, M("wait"), rc);
  lua_pushinteger(L, index);
  lua_pushboolean(L, 1);
  return 2;
}

/* reset(): breaks the round in progress (its waiters get nil, false). */
static int l_barrier_reset(lua_State *L) {
  int rc = tn_barrier_reset(check_barrier(L, M("reset")));
  if (rc != TN_OK) return tn_l_coreerror(L, M("reset"), rc);
  return 0;
}

static int push_state(lua_State *L, const char *method, int which) {
  int v[3] = {0, 0, 0};
  int rc = tn_barrier_state(check_barrier(L, method), &v[0], &v[1], &v[2]);
  if (rc != TN_OK) return tn_l_coreerror(L, method, rc);
  if (which == 2)
    lua_pushboolean(L, v[2]);
  else
    lua_pushinteger(L, v[which]);
  return 1;
}

static int l_barrier_parties(lua_State *L) {
  return push_state(L, M("parties"), 0);
}

static int l_barrier_waiting(lua_State *L) {
  return push_state(L, M("waiting"), 1);
}

static int l_barrier_isbroken(lua_State *L) {
  return push_state(L, M("isBroken"), 2);
}

static const luaL_Reg barrier_methods[] = {
    {"wait", l_barrier_wait},         {"reset", l_barrier_reset},
    {"parties", l_barrier_parties},   {"waiting", l_barrier_waiting},
    {"isBroken", l_barrier_isbroken}, {NULL, NULL}};

static const tn_l_class_t barrier_class = {TN_TYPE_BARRIER, BARRIER,
                                           barrier_methods, NULL};

void tn_l_open_barrier(lua_State *L) {
  tn_l_newclass(L, &barrier_class);
  lua_pushcfunction(L, l_barrier_new);
  lua_setfield(L, -2, "Barrier");
}
