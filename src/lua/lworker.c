/*
** lworker.c - the Lua side of `tunnel worker` (src/cli/worker.c): the
** state of one slot of a cluster block, and the running of its jobs.
**
** A slot state is made exactly as a block thread's (tn_l_state_setup):
** `tunnel` loaded, __threadid = the slot, __blocksize = the block's size,
** then the block's init. It lives as long as its worker thread holds the
** slot, so a slot's globals persist across its jobs. A job runs as in a
** block thread: decoded in the state, called under a message handler
** that adds the traceback, its results packed as {n = ..., ...}, all
** under the thread's cancel token (tunnel.cancelled(), cancellable waits,
** the count hook of lcontrol.c).
**
** What goes back must reach another process: a result (or an error value)
** that holds an in-process tunnel object makes the job fail with an error
** naming it, as sending one does.
**
** Caveat: tunnel.compat is not loaded in slot states (the client's choice
** does not travel); a job that wants it requires it.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "ljobs.h"

const char *tn_l_runtime(void) {
#define TN_XSTR_(x) #x
#define TN_XSTR(x) TN_XSTR_(x)
  if (tn_is_luajit()) return "LuaJIT 2.1, codec " TN_XSTR(TN_CODEC_VERSION);
  return LUA_VERSION ", codec " TN_XSTR(TN_CODEC_VERSION);
}

static const char *class_name(tn_type_t t) {
  switch (t) {
  case TN_TYPE_DEQUE: return "tunnel.Vector";
  case TN_TYPE_COUNTER: return "tunnel.Counter";
  case TN_TYPE_PRINTER: return "tunnel.Printer";
  case TN_TYPE_HASH: return "tunnel.Hash";
  case TN_TYPE_TABLE: return "shared table";
  case TN_TYPE_SHARE: return "tunnel.Share";
  case TN_TYPE_ATOMIC: return "tunnel.Atomic";
  case TN_TYPE_PLURAL: return "tunnel.Plural";
  case TN_TYPE_PQUEUE: return "tunnel.PriorityQueue";
  case TN_TYPE_BARRIER: return "tunnel.Barrier";
  case TN_TYPE_SEMAPHORE: return "tunnel.Semaphore";
  case TN_TYPE_ARRAY: return "tunnel.Array";
  }
  return "tunnel object";
}

const char *tn_l_local_object(const tn_blob_t *b) {
  size_t n = b != NULL ? tn_blob_nrefs(b) : 0;
  for (size_t i = 0; i < n; i++)
    if (!tn_object_is_remote(tn_blob_ref(b, i)))
      return class_name(tn_object_type(tn_blob_ref(b, i)));
  return NULL;
}

/* Error handler: {message, traceback = "..."} (as lblock.c's). */
static int l_msgh(lua_State *T) {
  lua_newtable(T);
  lua_pushvalue(T, 1);
  lua_rawseti(T, -2, 1);
  tn_traceback(T, T, lua_tostring(T, 1), 1);
  lua_setfield(T, -2, "traceback");
  return 1;
}

/* Protected: the state's setup, then init. Stack: slot, size, init. */
static int l_slot_setup(lua_State *T) {
  int slot = (int)lua_tointeger(T, 1), size = (int)lua_tointeger(T, 2);
  const tn_blob_t *init = lua_touserdata(T, 3);
  tn_l_state_setup(T, NULL, NULL, slot, size, 0);
  if (init != NULL) {
    int n = tn_l_decode(T, init, "tunnel.Block (init)");
    lua_call(T, n - 1, 0);
  }
  return 0;
}

/* "<prefix><message>" of the error (a handler's table, or a string) on
** top, malloc'd. */
static char *describe(lua_State *T, const char *prefix) {
  if (lua_istable(T, -1)) lua_rawgeti(T, -1, 1);
  else lua_pushvalue(T, -1);
  const char *msg = lua_type(T, -1) == LUA_TSTRING ||
                            lua_type(T, -1) == LUA_TNUMBER
                        ? lua_tostring(T, -1)
                        : "(error object is not a string)";
  size_t n = strlen(prefix) + strlen(msg) + 1;
  char *s = malloc(n);
  if (s != NULL) snprintf(s, n, "%s%s", prefix, msg);
  lua_pop(T, 1);
  return s;
}

lua_State *tn_l_slot_open(int slot, int size, const tn_blob_t *init,
                          char **error) {
  *error = NULL;
  lua_State *T = luaL_newstate();
  if (T == NULL) {
    *error = strdup("init failed: cannot create a Lua state (out of memory)");
    return NULL;
  }
  lua_pushcfunction(T, l_msgh);
  lua_pushcfunction(T, l_slot_setup);
  lua_pushinteger(T, slot);
  lua_pushinteger(T, size);
  lua_pushlightuserdata(T, (void *)init);
  if (lua_pcall(T, 3, 0, 1) != 0) {
    *error = describe(T, "init failed: ");
    if (*error == NULL) *error = strdup("init failed");
  }
  lua_settop(T, 0);
  tn_l_thread_cancellable(T, 1);
  return T;
}

void tn_l_slot_close(lua_State *T) {
  if (T == NULL) return;
  tn_l_thread_cancellable(T, 0);
  lua_close(T);
}

/* Encode the value at `idx` for another process (raises). */
static tn_blob_t *encode_remote(lua_State *T, int idx, const char *what) {
  tn_blob_t *b = tn_l_encode(T, idx, 1, "tunnel.Block:run");
  const char *local = tn_l_local_object(b);
  if (local != NULL) {
    tn_blob_release(b);
    tn_l_error(T, "tunnel.Block:run",
               "%s holds an in-process %s, which cannot reach the client "
               "(return cluster objects or plain values)",
               what, local);
  }
  return b;
}

/* Protected. Stack: job (light userdata), out (light userdata). */
static int l_job_body(lua_State *T) {
  const tn_blob_t *job = lua_touserdata(T, 1);
  tn_blob_t **out = lua_touserdata(T, 2);
  if (tn_cancelled()) { /* cancelled between its take and its start */
    lua_pushliteral(T, "cancelled");
    return lua_error(T);
  }
  int base = lua_gettop(T);
  int n = tn_l_decode(T, job, "tunnel.Block:run");
  lua_call(T, n - 1, LUA_MULTRET);
  int nres = lua_gettop(T) - base;
  lua_createtable(T, nres, 1);
  lua_insert(T, base + 1);
  for (int i = nres; i >= 1; i--) lua_rawseti(T, base + 1, i);
  lua_pushinteger(T, nres);
  lua_setfield(T, base + 1, "n");
  *out = encode_remote(T, base + 1, "the job's result");
  return 0;
}

/* Protected. Stack: error table, out. */
static int l_job_error(lua_State *T) {
  tn_blob_t **out = lua_touserdata(T, 2);
  *out = encode_remote(T, 1, "the job's error");
  return 0;
}

tn_blob_t *tn_l_slot_error(lua_State *T, const char *message,
                           const char *traceback) {
  int top = lua_gettop(T);
  tn_blob_t *b = NULL;
  lua_pushcfunction(T, l_job_error);
  lua_createtable(T, 1, 1);
  lua_pushstring(T, message);
  lua_rawseti(T, -2, 1);
  if (traceback != NULL) {
    lua_pushstring(T, traceback);
    lua_setfield(T, -2, "traceback");
  }
  lua_pushlightuserdata(T, &b);
  if (lua_pcall(T, 2, 0, 0) != 0) b = NULL;
  lua_settop(T, top);
  return b;
}

int tn_l_slot_run(lua_State *T, const tn_blob_t *job, tn_blob_t **out) {
  *out = NULL;
  lua_settop(T, 0);
  lua_pushcfunction(T, l_msgh);
  lua_pushcfunction(T, l_job_body);
  lua_pushlightuserdata(T, (void *)job);
  lua_pushlightuserdata(T, out);
  tn_l_job_enter(1);
  int ok = lua_pcall(T, 2, 0, 1) == 0;
  tn_l_job_enter(0);
  if (ok) {
    lua_settop(T, 0);
    return 1;
  }
  /* Stack: handler, error. The handler itself may have failed (no
  ** memory): then the error is not a table. */
  if (!lua_istable(T, 2)) {
    lua_newtable(T);
    lua_pushvalue(T, 2);
    lua_rawseti(T, -2, 1);
    lua_replace(T, 2);
  }
  lua_pushcfunction(T, l_job_error);
  lua_pushvalue(T, 2);
  lua_pushlightuserdata(T, out);
  if (lua_pcall(T, 2, 0, 0) != 0) {
    /* The error value cannot cross: its string form, and the traceback. */
    lua_pop(T, 1);
    lua_getglobal(T, "tostring");
    lua_rawgeti(T, 2, 1);
    lua_call(T, 1, 1);
    lua_getfield(T, 2, "traceback");
    *out = tn_l_slot_error(T, lua_tostring(T, -2), lua_tostring(T, -1));
  }
  lua_settop(T, 0);
  return 0;
}
