/*
** lsemaphore.c - tunnel.Semaphore: a bounded number of permits shared by
** threads (and, on a cluster, by processes), the binding of the core
** semaphore (tn_semaphore_*).
**
** acquire([n = 1] [, timeout]) -> true, or nil when the timeout ran out;
** acquireAsync([n = 1]) -> true, or nil at once; release([n = 1]) -> true;
** available() -> the permits free now; permits() -> the total.
**
** Caveats: not fair (a taker of many permits may be overtaken by takers of
** few). In process any thread may release what another took; a cluster
** semaphore's permits are leases of the process that took them, so only a
** thread of that process can release them.
*/
#include <stdio.h>

#include "ltunnel.h"

#define SEMAPHORE "tunnel.Semaphore"
#define M(name) SEMAPHORE ":" name

static tn_semaphore_t *check_semaphore(lua_State *L, const char *method) {
  return (tn_semaphore_t *)tn_l_checkobject(L, 1, method);
}

/* tunnel.Semaphore(permits) */
static int l_semaphore_new(lua_State *L) {
  lua_Integer permits = tn_l_checkinteger(L, 1, SEMAPHORE, "permits");
  if (permits < 1)
    return tn_l_error(L, SEMAPHORE, "permits must be an integer >= 1");
  tn_semaphore_t *s;
  int rc = tn_semaphore_new((int64_t)permits, &s);
  if (rc != TN_OK) return tn_l_coreerror(L, SEMAPHORE, rc);
  tn_l_pushnew(L, TN_OBJECT(s));
  return 1;
}

/* The optional count at `idx`: nil -> 1, else an integer >= 1. */
static int64_t opt_count(lua_State *L, int idx, const char *method) {
  if (lua_isnoneornil(L, idx)) return 1;
  lua_Integer n = tn_l_checkinteger(L, idx, method, "n");
  if (n < 1) tn_l_error(L, method, "n must be an integer >= 1");
  return (int64_t)n;
}

static int semaphore_acquire(lua_State *L, const char *method, int async) {
  tn_semaphore_t *s = check_semaphore(L, method);
  int64_t n = opt_count(L, 2, method);
  double timeout = async ? TN_TRY : tn_l_opttimeout(L, 3, method);
  int rc = tn_semaphore_acquire(s, n, timeout);
  if (tn_l_waited(rc)) {
    lua_pushnil(L);
    return 1;
  }
  if (rc == TN_EINVAL) {
    int64_t permits = 0;
    tn_semaphore_available(s, NULL, &permits);
    char msg[96]; /* %I is not in 5.1's lua_pushfstring */
    snprintf(msg, sizeof msg, "n (%lld) is more than the semaphore's %lld permits",
             (long long)n, (long long)permits);
    return tn_l_error(L, method, "%s", msg);
  }
  if (rc != TN_OK) return tn_l_coreerror(L, method, rc);
  lua_pushboolean(L, 1);
  return 1;
}

static int l_semaphore_acquire(lua_State *L) {
  return semaphore_acquire(L, M("acquire"), 0);
}

static int l_semaphore_acquireasync(lua_State *L) {
  return semaphore_acquire(L, M("acquireAsync"), 1);
}

static int l_semaphore_release(lua_State *L) {
  const char *method = M("release");
  tn_semaphore_t *s = check_semaphore(L, method);
  int64_t n = opt_count(L, 2, method);
  int rc = tn_semaphore_release(s, n);
  if (rc == TN_ERANGE)
    return tn_l_error(L, method, "%s",
                      tn_object_is_remote(TN_OBJECT(s))
                          ? "more permits released than this process holds"
                          : "more permits released than are taken");
  if (rc != TN_OK) return tn_l_coreerror(L, method, rc);
  lua_pushboolean(L, 1);
  return 1;
}

static int push_count(lua_State *L, const char *method, int total) {
  int64_t avail = 0, permits = 0;
  int rc = tn_semaphore_available(check_semaphore(L, method), &avail, &permits);
  if (rc != TN_OK) return tn_l_coreerror(L, method, rc);
  lua_pushinteger(L, (lua_Integer)(total ? permits : avail));
  return 1;
}

static int l_semaphore_available(lua_State *L) {
  return push_count(L, M("available"), 0);
}

static int l_semaphore_permits(lua_State *L) {
  return push_count(L, M("permits"), 1);
}

static const luaL_Reg semaphore_methods[] = {
    {"acquire", l_semaphore_acquire},
    {"acquireAsync", l_semaphore_acquireasync},
    {"release", l_semaphore_release},
    {"available", l_semaphore_available},
    {"permits", l_semaphore_permits},
    {NULL, NULL}};

static const tn_l_class_t semaphore_class = {TN_TYPE_SEMAPHORE, SEMAPHORE,
                                             semaphore_methods, NULL};

void tn_l_open_semaphore(lua_State *L) {
  tn_l_newclass(L, &semaphore_class);
  lua_pushcfunction(L, l_semaphore_new);
  lua_setfield(L, -2, "Semaphore");
}
