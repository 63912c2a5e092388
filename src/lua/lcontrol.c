/*
** lcontrol.c - Ctrl-C and cancellation in Lua (docs/shutdown.md).
**
** Interrupts. lua.c and luajit.c turn SIGINT into a hook: their handler
** sets, on the main Lua thread, a hook for calls, returns and every
** instruction (count 1) that raises "interrupted!". Running Lua code meets
** it at once; a thread asleep in a core wait would not until the wait
** ended. So the main state's thread has a cancel token whose poll looks
** for that hook every TN_CANCEL_POLL seconds while the thread waits; when
** it appears the wait ends with TN_EINTR and the binding runs the hook
** itself, here, as the interpreter would at its next instruction: lua.c's
** raises "interrupted!", and a program's own handler that works the same
** way (luaposix's signal) runs as it would have. A hook that returns
** still ends the call with "interrupted!" (as EINTR ends a system call).
** Nothing here installs a signal handler.
**
** Cancellation. A block thread's token is requested by tunnel.Block:cancel
** (block.c). Its waits then end with TN_ECANCELED, which raises
** "<method>: cancelled". For Lua code that runs without waiting, the
** request's notify sets a count hook on the thread's state, from the
** requesting thread, as lua.c's handler sets its hook asynchronously
** (Lanes cancels the same way); the hook raises "cancelled" if the job is
** still the one asked. JIT-compiled LuaJIT code does not run hooks: a
** compiled loop that calls no tunnel function is not interrupted.
*/
#include <stdatomic.h>
#include <string.h>

#include "ltunnel.h"

#define SIGNAL_MASK (LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT)
#define SENTINEL_KEY "tunnel.control"

/* Set when a main state's wait was interrupted (the process got Ctrl-C). */
static atomic_int interrupted;

/* The token this binding made for this OS thread (a main state's). */
static _Thread_local tn_cancel_t *main_token;

/* Whether a block thread is inside a job's own code (run_job), and
** whether the job's cancel was raised already: one request raises once
** through the hook or a wait, so a job that catches it with pcall can
** clean up (its later waits still raise: the token stays requested). */
static _Thread_local int in_job, delivered;

int tn_l_interrupted(void) { return atomic_load(&interrupted); }

/* A program that manages its blocks after an interrupt caught it: later
** closes wait for jobs again, as before it. */
void tn_l_interrupt_handled(void) {
  if (atomic_load_explicit(&interrupted, memory_order_relaxed))
    atomic_store(&interrupted, 0);
}

/* The hook the interpreters' SIGINT handlers set is pending on `L`. */
static int signal_hook_pending(lua_State *L) {
  return lua_gethook(L) != NULL &&
         (lua_gethookmask(L) & SIGNAL_MASK) == SIGNAL_MASK &&
         lua_gethookcount(L) == 1;
}

static int main_poll(void *arg) { return signal_hook_pending(arg); }

int tn_l_raise_interrupted(lua_State *L) {
  atomic_store(&interrupted, 1);
  lua_Hook hook = lua_gethook(L);
  lua_Debug ar;
  memset(&ar, 0, sizeof ar);
  if (hook != NULL && signal_hook_pending(L) && lua_getstack(L, 0, &ar)) {
    ar.event = LUA_HOOKCOUNT;
    hook(L, &ar); /* lua.c's raises "interrupted!" */
  }
  lua_pushliteral(L, "interrupted!");
  return lua_error(L);
}

/* __gc of the registry sentinel: the state goes, its poll with it. */
static int l_control_gc(lua_State *L) {
  lua_State **main = lua_touserdata(L, 1);
  tn_cancel_t *t = tn_cancel_current();
  if (t != NULL && t == main_token && main != NULL)
    tn_cancel_set_poll(t, NULL, NULL);
  return 0;
}

/* The main Lua thread of L's state, or NULL (5.1: L when it is main). */
static lua_State *main_thread(lua_State *L) {
#if LUA_VERSION_NUM >= 502
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
  lua_State *M = lua_tothread(L, -1);
  lua_pop(L, 1);
  return M;
#else
  int is_main = lua_pushthread(L);
  lua_pop(L, 1);
  return is_main ? L : NULL;
#endif
}

void tn_l_open_control(lua_State *L) {
  /* A block thread's own token was entered by block.c: leave it. */
  if (tn_cancel_current() == NULL) {
    tn_cancel_t *t;
    if (tn_cancel_new(&t) != TN_OK) return; /* then waits are plain */
    tn_cancel_enter(t);
    main_token = t; /* lives as long as the thread: states come and go */
  }
  if (tn_cancel_current() != main_token) return;
  lua_State *M = main_thread(L);
  if (M == NULL) return;
  tn_cancel_set_poll(main_token, main_poll, M);
  lua_getfield(L, LUA_REGISTRYINDEX, SENTINEL_KEY);
  int have = !lua_isnil(L, -1);
  lua_pop(L, 1);
  if (have) return;
  lua_State **box = tn_newuserdata(L, sizeof *box);
  *box = M;
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, l_control_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  lua_setfield(L, LUA_REGISTRYINDEX, SENTINEL_KEY);
}

/* ---- block threads --------------------------------------------------------- */

static void cancel_hook(lua_State *T, lua_Debug *ar) {
  (void)ar;
  lua_sethook(T, NULL, 0, 0);
  if (in_job && tn_cancelled() && !delivered) {
    delivered = 1;
    lua_pushliteral(T, "cancelled");
    lua_error(T);
  }
}

/* The token's notify: runs in the cancelling thread (see the top). */
static void notify_thread(void *arg) {
  lua_sethook(arg, cancel_hook, SIGNAL_MASK, 1);
}

void tn_l_thread_cancellable(lua_State *T, int on) {
  tn_cancel_t *t = tn_cancel_current();
  if (t != NULL) tn_cancel_set_notify(t, on ? notify_thread : NULL, T);
}

void tn_l_job_enter(int entering) {
  in_job = entering;
  delivered = 0;
}

int tn_l_raise_cancelled(lua_State *L, const char *method) {
  delivered = 1;
  return tn_l_error(L, method, "cancelled");
}

static int l_cancelled(lua_State *L) {
  lua_pushboolean(L, tn_cancelled());
  return 1;
}

void tn_l_push_cancelled(lua_State *L) { lua_pushcfunction(L, l_cancelled); }
