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
** request's notify has a count hook set on the thread's state, by that
** thread, from a signal handler (below), as lua.c does for SIGINT; the
** hook raises "cancelled" if the job is still the one asked. JIT-compiled
** LuaJIT code does not run hooks: a compiled loop that calls no tunnel
** function is not interrupted; nor is a coroutine the job resumed (the
** hook is on the thread's main Lua thread) until it yields or returns.
*/
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>

#include "ltunnel.h"

#define SIGNAL_MASK (LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT)
#define SENTINEL_KEY "tunnel.control"

/* Set when a main state's wait was interrupted (the process got Ctrl-C). */
static atomic_int interrupted;

/* The token this binding made for this OS thread (a main state's), the
** main Lua thread its poll watches, and the hook that thread had when the
** current call began to wait: a hook that was there before (a program's
** own debug hook) is not an interrupt. */
static _Thread_local tn_cancel_t *main_token;
static _Thread_local lua_State *main_state;
static _Thread_local lua_Hook hook_before;

/* Whether a block thread is inside a job's own code (run_job), and
** whether the job's cancel was raised already: one request raises once
** through the hook or a wait, so a job that catches it with pcall can
** clean up (its later waits still raise: the token stays requested). */
static _Thread_local int in_job, delivered;

int tn_l_interrupted(void) { return atomic_load(&interrupted); }


/* The hook the interpreters' SIGINT handlers set is pending on `L`: one
** of their shape (calls, returns, every instruction) that was not there
** when the call began. */
static int signal_hook_pending(lua_State *L) {
  lua_Hook hook = lua_gethook(L);
  return hook != NULL && hook != hook_before &&
         (lua_gethookmask(L) & SIGNAL_MASK) == SIGNAL_MASK &&
         lua_gethookcount(L) == 1;
}

void tn_l_wait_begins(void) {
  if (main_state != NULL) hook_before = lua_gethook(main_state);
}

static int main_poll(void *arg) { return signal_hook_pending(arg); }

int tn_l_raise_interrupted(lua_State *L) {
  atomic_store(&interrupted, 1);
  lua_State *M = main_state;
  lua_Debug ar;
  memset(&ar, 0, sizeof ar);
  if (M != NULL && signal_hook_pending(M)) {
    lua_Hook hook = lua_gethook(M);
    if (L == M && lua_getstack(L, 0, &ar)) {
      ar.event = LUA_HOOKCOUNT;
      hook(L, &ar); /* lua.c's raises "interrupted!" */
    } else {
      /* A coroutine waited: it gets the interrupt, and the hook goes, as
      ** the interpreter's removes itself (it would raise again in the
      ** main thread, after the coroutine caught it). */
      lua_sethook(M, NULL, 0, 0);
    }
  }
  lua_pushliteral(L, "interrupted!");
  return lua_error(L);
}

/* __gc of the registry sentinel: the state goes, its poll with it. */
static int l_control_gc(lua_State *L) {
  lua_State **main = lua_touserdata(L, 1);
  tn_cancel_t *t = tn_cancel_current();
  if (t != NULL && t == main_token && main != NULL && *main == main_state) {
    tn_cancel_set_poll(t, NULL, NULL);
    main_state = NULL;
  }
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
  main_state = M;
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

/*
** The hook must be set by the thread that runs the state: Lua 5.4's
** lua_sethook walks the state's call frames, which that thread changes
** (and frees) meanwhile, so a cancel from another thread crashed there.
** The request sends the block thread CANCEL_SIGNAL and the handler sets
** the hook in that thread, as lua.c's SIGINT handler does: safe by Lua's
** design. SIGURG, as Go's runtime uses it to preempt goroutines: ignored
** by default and rarely used. It is installed once, only if the program
** has no handler of its own for it (SA_RESTART: system calls go on).
** Without it, 5.1 and LuaJIT (whose lua_sethook only sets fields) are
** hooked from the requesting thread; 5.4 is then cancelled in its waits
** only.
*/
#define CANCEL_SIGNAL SIGURG

typedef struct thread_ctx {
  pthread_t thread;
  lua_State *state; /* NULL once the thread closes it */
} thread_ctx_t;

static _Thread_local thread_ctx_t self;
static pthread_once_t signal_once = PTHREAD_ONCE_INIT;
static atomic_int signal_ours;

static void on_cancel_signal(int sig) {
  (void)sig;
  int saved = errno;
  if (self.state != NULL && in_job)
    lua_sethook(self.state, cancel_hook, SIGNAL_MASK, 1);
  errno = saved;
}

static void install_cancel_signal(void) {
  struct sigaction old, sa;
  if (sigaction(CANCEL_SIGNAL, NULL, &old) != 0) return;
  if ((old.sa_flags & SA_SIGINFO) ||
      (old.sa_handler != SIG_DFL && old.sa_handler != SIG_IGN))
    return; /* the program's own */
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_cancel_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  if (sigaction(CANCEL_SIGNAL, &sa, NULL) == 0) atomic_store(&signal_ours, 1);
}

/* The token's notify: runs in the requesting thread (see above). */
static void notify_thread(void *arg) {
  thread_ctx_t *ctx = arg;
  if (atomic_load(&signal_ours)) {
    pthread_kill(ctx->thread, CANCEL_SIGNAL);
    return;
  }
#if LUA_VERSION_NUM < 504
  lua_sethook(ctx->state, cancel_hook, SIGNAL_MASK, 1);
#endif
}

void tn_l_thread_cancellable(lua_State *T, int on) {
  tn_cancel_t *t = tn_cancel_current();
  if (t == NULL) return;
  if (on) {
    pthread_once(&signal_once, install_cancel_signal);
    self.thread = pthread_self();
    self.state = T;
    tn_cancel_set_notify(t, notify_thread, &self);
  } else {
    /* Under the token's mutex: no request notifies after this. */
    tn_cancel_set_notify(t, NULL, NULL);
    self.state = NULL;
  }
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
