/*
** lpqueue.c - tunnel.PriorityQueue: values taken lowest priority first,
** first in first out among equals, shared by threads; the binding of the
** core priority queue (tn_pqueue_*), in process or on a cluster.
**
** A value goes into the queue encoded together with its priority (one blob
** of two values), so pop gives the priority back exactly as it was pushed
** (an integer stays an integer on 5.3+); the core orders by the priority
** as a double. push and pop have Async twins (TN_TRY: a nil status instead
** of waiting); size, close and isClosed never wait for room or values, so
** they have none.
**
** Caveats:
** - Priorities are numbers, compared as doubles: integers beyond 2^53 in
**   magnitude may compare equal to their neighbours (then the first pushed
**   goes first). NaN raises.
** - A value this state cannot decode goes back into the queue (ahead of
**   its equals, where it was) and pop raises, as Vector's pops do.
*/
#include <math.h>

#include "ltunnel.h"

#define PQUEUE "tunnel.PriorityQueue"
#define M(name) PQUEUE ":" name

static tn_pqueue_t *check_pqueue(lua_State *L, const char *method) {
  return (tn_pqueue_t *)tn_l_checkobject(L, 1, method);
}

/* The priority at `idx`: a number, not NaN. */
static double check_priority(lua_State *L, int idx, const char *method) {
  if (lua_type(L, idx) != LUA_TNUMBER)
    tn_l_error(L, method, "priority must be a number (got %s)",
               luaL_typename(L, idx));
  double p = (double)lua_tonumber(L, idx);
  if (isnan(p)) tn_l_error(L, method, "priority must not be NaN");
  return p;
}

/* tunnel.PriorityQueue([size_hint]): nil or math.huge for no bound. */
static int l_pqueue_new(lua_State *L) {
  size_t hint = TN_UNBOUNDED;
  if (!lua_isnoneornil(L, 1)) {
    int t = lua_type(L, 1);
    lua_Number n = t == LUA_TNUMBER ? lua_tonumber(L, 1) : 0;
    if (t == LUA_TNUMBER && isinf(n) && n > 0) {
      hint = TN_UNBOUNDED;
    } else if (t == LUA_TNUMBER && n >= 1 && n == floor(n)) {
      hint = (size_t)tn_l_checkinteger(L, 1, PQUEUE, "size_hint");
    } else {
      return tn_l_error(L, PQUEUE,
                        "size_hint must be an integer >= 1 or math.huge "
                        "(got %s)",
                        t == LUA_TNUMBER ? lua_tostring(L, 1)
                                         : luaL_typename(L, 1));
    }
  }
  tn_pqueue_t *q;
  int rc = tn_pqueue_new(hint, &q);
  if (rc != TN_OK) return tn_l_coreerror(L, PQUEUE, rc);
  tn_l_pushnew(L, TN_OBJECT(q));
  return 1;
}

/* push(priority, value) -> true; nil when the timeout ran out (Async: when
** full or busy). The value must be there, even if nil. */
static int pqueue_push(lua_State *L, const char *method, double timeout) {
  tn_pqueue_t *q = check_pqueue(L, method);
  double p = check_priority(L, 2, method);
  tn_l_checkvalue(L, 3, method);
  tn_blob_t *b = tn_l_encode(L, 2, 2, method); /* priority, value */
  int rc = tn_pqueue_push(q, p, b, timeout);
  if (rc == TN_OK) {
    lua_pushboolean(L, 1);
    return 1;
  }
  tn_blob_release(b); /* not taken: still ours */
  if (tn_l_waited(rc)) return tn_l_pushnils(L, 1);
  if (rc == TN_ECLOSED) return tn_l_error(L, method, "queue is closed");
  return tn_l_coreerror(L, method, rc);
}

static int l_pqueue_push(lua_State *L) {
  return pqueue_push(L, M("push"), tn_l_opttimeout(L, 4, M("push")));
}

static int l_pqueue_pushasync(lua_State *L) {
  return pqueue_push(L, M("pushAsync"), TN_TRY);
}

/* What the protected decode of a popped value works on. */
typedef struct pop_ctx {
  tn_blob_t *b;
  double priority;
  const char *method;
} pop_ctx_t;

/* Protected: (ctx) -> value, priority. A blob a C program pushed holds the
** value only: its priority is then the core's. */
static int pop_body(lua_State *L) {
  pop_ctx_t *ctx = lua_touserdata(L, 1);
  int n = tn_l_decode(L, ctx->b, ctx->method);
  if (n >= 2) {
    lua_settop(L, 3);  /* ctx, priority, value */
    lua_insert(L, 2);  /* ctx, value, priority */
  } else {
    lua_settop(L, 2);
    lua_pushnumber(L, (lua_Number)ctx->priority);
  }
  return 2;
}

/* -> value, priority, true; nil, nil, nil (timeout / would wait); nil,
** nil, false (closed and drained). */
static int pqueue_pop(lua_State *L, const char *method, double timeout) {
  tn_pqueue_t *q = check_pqueue(L, method);
  pop_ctx_t ctx = {NULL, 0, method};
  int rc = tn_pqueue_pop(q, &ctx.b, &ctx.priority, timeout);
  if (rc == TN_OK) {
    luaL_checkstack(L, 4, method);
    lua_pushcfunction(L, pop_body);
    lua_pushlightuserdata(L, &ctx);
    if (lua_pcall(L, 1, 2, 0) != 0) {
      /* Back where it was, and the decoding error goes on. */
      if (tn_pqueue_unpop(q, ctx.priority, ctx.b) != TN_OK) {
        tn_blob_release(ctx.b);
        lua_pushliteral(L, " (it could not be put back: value dropped)");
        lua_concat(L, 2);
      }
      return lua_error(L);
    }
    tn_blob_release(ctx.b);
    lua_pushboolean(L, 1);
    return 3;
  }
  if (tn_l_waited(rc)) return tn_l_pushnils(L, 3);
  if (rc == TN_ECLOSED) {
    tn_l_pushnils(L, 2);
    lua_pushboolean(L, 0);
    return 3;
  }
  return tn_l_coreerror(L, method, rc);
}

static int l_pqueue_pop(lua_State *L) {
  return pqueue_pop(L, M("pop"), tn_l_opttimeout(L, 2, M("pop")));
}

static int l_pqueue_popasync(lua_State *L) {
  return pqueue_pop(L, M("popAsync"), TN_TRY);
}

static int pqueue_size(lua_State *L, const char *method) {
  tn_pqueue_t *q = check_pqueue(L, method);
  lua_pushinteger(L, (lua_Integer)tn_pqueue_size(q));
  tn_l_checkpending(L, method); /* a cluster queue's failure */
  return 1;
}

static int l_pqueue_size(lua_State *L) { return pqueue_size(L, M("size")); }

static int l_pqueue_len(lua_State *L) { return pqueue_size(L, M("size")); }

/* close() -> true: pushes raise from now on, pops drain what is left. */
static int l_pqueue_close(lua_State *L) {
  int rc = tn_pqueue_close(check_pqueue(L, M("close")));
  if (rc != TN_OK) return tn_l_coreerror(L, M("close"), rc);
  lua_pushboolean(L, 1);
  return 1;
}

static int l_pqueue_isclosed(lua_State *L) {
  lua_pushboolean(L, tn_pqueue_is_closed(check_pqueue(L, M("isClosed"))));
  tn_l_checkpending(L, M("isClosed"));
  return 1;
}

static const luaL_Reg pqueue_methods[] = {
    {"push", l_pqueue_push},       {"pushAsync", l_pqueue_pushasync},
    {"pop", l_pqueue_pop},         {"popAsync", l_pqueue_popasync},
    {"size", l_pqueue_size},       {"close", l_pqueue_close},
    {"isClosed", l_pqueue_isclosed}, {NULL, NULL}};

static const luaL_Reg pqueue_meta[] = {{"__len", l_pqueue_len},
                                       {NULL, NULL}};

static const tn_l_class_t pqueue_class = {TN_TYPE_PQUEUE, PQUEUE,
                                          pqueue_methods, pqueue_meta};

void tn_l_open_pqueue(lua_State *L) {
  tn_l_newclass(L, &pqueue_class);
  lua_pushcfunction(L, l_pqueue_new);
  lua_setfield(L, -2, "PriorityQueue");
}
