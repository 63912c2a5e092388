/*
** lblock.c - tunnel.Block: a group of threads, each with its own Lua state,
** running the same job.
**
** A thread's state is fresh: the standard libraries, the creating state's
** package.path and package.cpath, `tunnel` loaded (also as a global), the
** original's module names (require('tunnel.vector') and so on) preloaded,
** the globals __threadid (1..size) and __blocksize, tunnel.compat if the
** creating state had loaded it, then init() if one was given.
**
** A run encodes the callback and the block's arguments once; every thread
** decodes that one blob. Results travel back through two core vectors per
** run (result, status): status[i] stays nil until thread i is done, and is
** stored after result[i]. The user sees them as two plain Lua tables
** (getResult, synchronize, terminate), so the original's
** `for i, s in ipairs(status) do ... unpack(result[i]) end` works on every
** Lua (ipairs of a userdata fails on 5.1 and LuaJIT). The tables are made at
** the first read of a run and filled from the vectors with every slot that
** is done at each read; while some thread is busy they carry a metatable
** whose __index reads a missing slot from the vectors, so `status[i]` of a
** pending run turns from nil to true/false when thread i finishes (the
** original's status was a live tunnel.Vector), and whose __pairs/__ipairs
** go over every slot, nils included, as the original's did (where the Lua
** honours them). Once every slot is filled
** the metatable goes and the vectors are dropped: a finished run's
** result and status are plain tables.
**
** Bounded memory: the block keeps the records of its last `keep` runs
** (option of tunnel.Block, default BLOCK_KEEP) in a ring, runs[(id - 1) %
** keep + 1]: a run pushes out the record of run id - keep, so a block that
** runs forever holds at most `keep` records. getResult of a run pushed out
** returns nil, nil and a message saying so. Tables already handed out stay
** valid: a pending run's tables hold its record through their metatable.
*/
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ltunnel.h"

#define BLOCK_MT "tunnel.Block"
#define BLOCK_KEEP 100 /* runs whose results a block keeps, by default */

/*
** Errors are never silent: a job that fails (not with its cancel) leaves a
** note here. A run whose result tables were handed to the user (getResult,
** synchronize, terminate) was read: its notes are dropped when the block
** looks (settle_notes: when the ring forgets the run, and when the block
** is terminated or collected); the notes of a run nobody read are then
** written to stderr. They are kept in C because at lua_close the run
** records' vector boxes are finalized before the block (the records'
** plain tables, which settle_notes reads, are still there). Past
** UNREAD_MAX notes a run's further failures are only counted, in one note
** of that run (index 0), so memory stays bounded.
*/
#define UNREAD_MAX 100
typedef struct unread {
  struct unread *next;
  lua_Integer run;
  int index;   /* the thread; 0: a count of failures not kept */
  int count;
  char text[]; /* the traceback (which starts with the message) */
} unread_t;

/* What a thread needs to build its state; lives as long as the block. */
typedef struct block_setup {
  char *path;
  char *cpath;
  tn_blob_t *init;
  int size;   /* the block's size, for __blocksize */
  int compat; /* require('tunnel.compat') in each thread (see l_block_new) */
  pthread_mutex_t lock;
  char *error; /* the first start failure, malloc'd */
  int report;  /* keep unread notes (the block's `report` option) */
  unread_t *unread; /* under `lock` */
  int unread_count; /* notes with a text */
  /* The block's owner + one per thread_start call not yet returned: when
  ** an init fails, the creator raises at once and threads still in their
  ** init go on with it, detached (see block.c), reading this setup. */
  atomic_int refs;
} block_setup_t;

typedef struct l_block {
  tn_block_t *block;
  block_setup_t *setup;
  int size;
  int args_ref;      /* registry ref: the table of added values */
  int runs_ref;      /* registry ref: the ring of run records (RUN_*) */
  lua_Integer nruns;
  lua_Integer keep;  /* the ring's size: runs kept */
} l_block_t;

/* One run, shared by every thread of the block. */
typedef struct block_run {
  block_setup_t *setup; /* a reference: the unread notes */
  lua_Integer id;
  tn_blob_t *job; /* callback, then the arguments */
  tn_deque_t *result;
  tn_deque_t *status;
} block_run_t;

static void setup_free(block_setup_t *s) {
  if (s == NULL) return;
  if (atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1)
    return; /* a thread still runs its init: the last one frees it */
  free(s->path);
  free(s->cpath);
  free(s->error);
  while (s->unread != NULL) {
    unread_t *u = s->unread;
    s->unread = u->next;
    free(u);
  }
  tn_blob_release(s->init);
  pthread_mutex_destroy(&s->lock);
  free(s);
}

static char *dup_string(const char *s) {
  if (s == NULL) return NULL;
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d != NULL) memcpy(d, s, n);
  return d;
}

/* ---- inside a block thread ---------------------------------------------- */

/* Error handler: {message, traceback = "..."}. */
static int l_job_msgh(lua_State *T) {
  lua_newtable(T);
  lua_pushvalue(T, 1);
  lua_rawseti(T, -2, 1);
  const char *msg = lua_tostring(T, 1);
  tn_traceback(T, T, msg, 1);
  lua_setfield(T, -2, "traceback");
  return 1;
}

/*
** package.preload loader of the original's module names in a block thread:
** require('tunnel.vector') returns tunnel.Vector, and so on. The main state
** reads lua/tunnel/vector.lua and the like (one line each); a thread gets
** them from here, without a path search per thread. require passes the
** module's name as the first argument.
*/
static const char *const class_modules[][2] = {
    {"tunnel.array", "Array"},
    {"tunnel.atomic", "Atomic"},   {"tunnel.block", "Block"},
    {"tunnel.counter", "Counter"}, {"tunnel.hash", "Hash"},
    {"tunnel.plural", "Plural"},   {"tunnel.printer", "Printer"},
    {"tunnel.priorityqueue", "PriorityQueue"},
    {"tunnel.barrier", "Barrier"}, {"tunnel.semaphore", "Semaphore"},
    {"tunnel.serializer", "Serializer"}, {"tunnel.share", "Share"},
    {"tunnel.vector", "Vector"},   {NULL, NULL}};

static int l_preload_class(lua_State *T) {
  const char *name = lua_tostring(T, 1);
  for (int i = 0; name != NULL && class_modules[i][0] != NULL; i++) {
    if (strcmp(name, class_modules[i][0]) != 0) continue;
    lua_getfield(T, LUA_REGISTRYINDEX, "_LOADED");
    lua_getfield(T, -1, "tunnel");
    lua_getfield(T, -1, class_modules[i][1]);
    return 1;
  }
  return luaL_error(T, "tunnel: no class module '%s'",
                    name != NULL ? name : "?");
}

void tn_l_state_setup(lua_State *T, const char *path, const char *cpath,
                      int index, int size, int compat) {
  luaL_openlibs(T);
  lua_getglobal(T, "package");
  if (path != NULL) {
    lua_pushstring(T, path);
    lua_setfield(T, -2, "path");
  }
  if (cpath != NULL) {
    lua_pushstring(T, cpath);
    lua_setfield(T, -2, "cpath");
  }
  /* The C module is this very library: no need to search cpath for it
  ** and dlopen it again in every thread. And it is the whole of `tunnel`
  ** (lua/tunnel/init.lua only returns it): bind that name too, rather
  ** than search package.path and parse the file in every thread. */
  lua_getfield(T, -1, "preload");
  lua_pushcfunction(T, luaopen_tunnel_core);
  lua_setfield(T, -2, "tunnel.core");
  lua_pushcfunction(T, l_preload_class);
  for (int i = 0; class_modules[i][0] != NULL; i++) {
    lua_pushvalue(T, -1);
    lua_setfield(T, -3, class_modules[i][0]);
  }
  lua_pop(T, 3); /* the loader, preload, package */
  lua_getglobal(T, "require");
  lua_pushliteral(T, "tunnel.core");
  lua_call(T, 1, 1);
  lua_getfield(T, LUA_REGISTRYINDEX, "_LOADED");
  lua_pushvalue(T, -2);
  lua_setfield(T, -2, "tunnel"); /* package.loaded.tunnel */
  lua_pop(T, 1);
  lua_setglobal(T, "tunnel");
  lua_pushinteger(T, index);
  lua_setglobal(T, "__threadid");
  lua_pushinteger(T, size);
  lua_setglobal(T, "__blocksize");
  if (compat) {
    lua_getglobal(T, "require");
    lua_pushliteral(T, "tunnel.compat");
    lua_call(T, 1, 0);
  }
}

/* Build the thread's state (protected: runs under lua_pcall). */
static int l_thread_setup(lua_State *T) {
  block_setup_t *s = lua_touserdata(T, 1);
  tn_l_state_setup(T, s->path, s->cpath, (int)lua_tointeger(T, 2), s->size,
                   s->compat);
  if (s->init != NULL) {
    int n = tn_l_decode(T, s->init, "tunnel.Block");
    lua_call(T, n - 1, 0);
  }
  return 0;
}

/*
** The thread's Lua state. LuaJIT's own allocator maps fresh memory for
** every state and unmaps it at lua_close, and each unmap of a threaded
** process flushes the other CPUs' TLBs: a short-lived block spent a fifth
** of its life there. malloc keeps freed memory for the next thread. (A
** LuaJIT built without GC64 refuses custom allocators on 64-bit systems:
** then its own it is.) A 5.1-ABI module tells LuaJIT from lua5.1 at run
** time (compat.h).
*/
#if LUA_VERSION_NUM == 501
static void *thread_alloc(void *ud, void *p, size_t osize, size_t nsize) {
  (void)ud;
  (void)osize;
  if (nsize == 0) {
    free(p);
    return NULL;
  }
  return realloc(p, nsize);
}

static int thread_panic(lua_State *T) {
  fprintf(stderr, "tunnel: PANIC in a block thread: %s\n",
          lua_tostring(T, -1) != NULL ? lua_tostring(T, -1) : "?");
  return 0; /* then LuaJIT aborts */
}

static lua_State *thread_newstate(void) {
  if (!tn_is_luajit()) return luaL_newstate();
  lua_State *T = lua_newstate(thread_alloc, NULL);
  if (T == NULL) return luaL_newstate();
  lua_atpanic(T, thread_panic);
  return T;
}
#else
static lua_State *thread_newstate(void) { return luaL_newstate(); }
#endif

static int thread_start(void *userdata, int index, void **ctx) {
  block_setup_t *s = userdata;
  lua_State *T = thread_newstate();
  const char *why = "cannot create a Lua state (out of memory)";
  if (T != NULL) {
    lua_pushcfunction(T, l_job_msgh);
    lua_pushcfunction(T, l_thread_setup);
    lua_pushlightuserdata(T, s);
    lua_pushinteger(T, index);
    if (lua_pcall(T, 2, 0, 1) == 0) {
      lua_settop(T, 0);
      tn_l_thread_cancellable(T, 1);
      *ctx = T;
      setup_free(s); /* this call's reference */
      return 0;
    }
    lua_rawgeti(T, -1, 1);
    why = lua_tostring(T, -1);
    if (why == NULL) why = "error object is not a string";
  }
  pthread_mutex_lock(&s->lock);
  if (s->error == NULL) {
    size_t n = strlen(why) + 64;
    s->error = malloc(n);
    if (s->error != NULL)
      snprintf(s->error, n, "init failed in thread %d: %s", index, why);
  }
  pthread_mutex_unlock(&s->lock);
  if (T != NULL) lua_close(T);
  setup_free(s); /* this call's reference */
  return 1;
}

static void thread_stop(void *userdata, int index, void *ctx) {
  (void)userdata;
  (void)index;
  tn_l_thread_cancellable(ctx, 0);
  lua_close(ctx);
}

static const tn_block_hooks_t block_hooks = {thread_start, thread_stop};

static void store(lua_State *T, tn_deque_t *d, lua_Integer index, int idx,
                  const char *what);

/* Decode and call the job, then store its packed results as result[i]
** (protected). Stack: run, index. */
static int l_job_body(lua_State *T) {
  block_run_t *run = lua_touserdata(T, 1);
  lua_Integer index = lua_tointeger(T, 2);
  if (tn_cancelled()) { /* its run was cancelled before it started */
    lua_pushliteral(T, "cancelled");
    return lua_error(T);
  }
  int base = lua_gettop(T);
  int n = tn_l_decode(T, run->job, "tunnel.Block:run");
  lua_call(T, n - 1, LUA_MULTRET);
  int nres = lua_gettop(T) - base;
  lua_createtable(T, nres, 1);
  lua_insert(T, base + 1);
  for (int i = nres; i >= 1; i--) lua_rawseti(T, base + 1, i);
  lua_pushinteger(T, nres);
  lua_setfield(T, base + 1, "n");
  store(T, run->result, index, base + 1, "tunnel.Block:run (result)");
  return 0;
}

/* Encode the value at `idx` into slot `index` of `d` (protected). */
static void store(lua_State *T, tn_deque_t *d, lua_Integer index, int idx,
                  const char *what) {
  tn_blob_t *b = tn_l_encode(T, idx, 1, what);
  if (tn_deque_set(d, (size_t)index - 1, b, NULL, TN_FOREVER) != TN_OK)
    tn_blob_release(b);
}

static int l_store_error(lua_State *T) {
  block_run_t *run = lua_touserdata(T, 1);
  store(T, run->result, lua_tointeger(T, 2), 3, "tunnel.Block:run (error)");
  return 0;
}

/*
** Record a job's outcome (protected). Stack: run, index, ok, error. On
** failure result[i] is {message, traceback = ...}; an error value that
** cannot cross is replaced by its string form. status[i] is set last: it
** is what tells a reader the thread is done.
*/
static int l_job_outcome(lua_State *T) {
  block_run_t *run = lua_touserdata(T, 1);
  lua_Integer index = lua_tointeger(T, 2);
  if (!lua_toboolean(T, 3)) {
    if (!lua_istable(T, 4)) { /* the handler itself failed */
      lua_newtable(T);
      lua_pushvalue(T, 4);
      lua_rawseti(T, -2, 1);
      lua_replace(T, 4);
    }
    lua_pushcfunction(T, l_store_error);
    lua_pushvalue(T, 1);
    lua_pushvalue(T, 2);
    lua_pushvalue(T, 4);
    if (lua_pcall(T, 3, 0, 0) != 0) {
      lua_pop(T, 1);
      lua_newtable(T);
      lua_getglobal(T, "tostring");
      lua_rawgeti(T, 4, 1);
      lua_call(T, 1, 1);
      lua_rawseti(T, -2, 1);
      lua_getfield(T, 4, "traceback");
      lua_setfield(T, -2, "traceback");
      store(T, run->result, index, lua_gettop(T), "tunnel.Block:run (error)");
    }
  }
  lua_pushboolean(T, lua_toboolean(T, 3));
  store(T, run->status, index, lua_gettop(T), "tunnel.Block:run");
  return 0;
}

/* Leave a note of the failure at stack index 2 (see unread_t). */
static void note_unread(lua_State *T, block_run_t *run, int index) {
  block_setup_t *s = run->setup;
  if (!s->report) return;
  char what[64];
  const char *msg = what, *tb = "";
  int top = lua_gettop(T);
  snprintf(what, sizeof what, "(error object is a %s value)",
           lua_istable(T, 2) ? "table" : luaL_typename(T, 2));
  if (lua_istable(T, 2)) {
    lua_rawgeti(T, 2, 1);
    lua_getfield(T, 2, "traceback");
    if (lua_type(T, -2) == LUA_TSTRING || lua_type(T, -2) == LUA_TNUMBER)
      msg = lua_tostring(T, -2);
    else
      snprintf(what, sizeof what, "(error object is a %s value)",
               luaL_typename(T, -2));
    if (lua_type(T, -1) == LUA_TSTRING) tb = lua_tostring(T, -1);
  }
  /* A traceback starts with its message when the message is a string. */
  size_t nm = strlen(msg);
  int has_msg = strncmp(tb, msg, nm) == 0;
  size_t n = (has_msg ? 0 : nm + 1) + strlen(tb) + 1;
  pthread_mutex_lock(&s->lock);
  unread_t *u = NULL;
  if (s->unread_count < UNREAD_MAX) {
    u = malloc(sizeof *u + n);
    if (u != NULL) {
      u->run = run->id;
      u->index = index;
      u->count = 1;
      snprintf(u->text, n, "%s%s%s", has_msg ? "" : msg,
               has_msg || tb[0] == '\0' ? "" : "\n", tb);
      u->next = s->unread;
      s->unread = u;
      s->unread_count++;
    }
  }
  if (u == NULL) { /* over the cap (or no memory): count it in its run */
    for (u = s->unread; u != NULL; u = u->next)
      if (u->run == run->id && u->index == 0) break;
    if (u == NULL && (u = malloc(sizeof *u + 1)) != NULL) {
      u->run = run->id;
      u->index = 0;
      u->count = 0;
      u->text[0] = '\0';
      u->next = s->unread;
      s->unread = u;
    }
    if (u != NULL) u->count++;
  }
  pthread_mutex_unlock(&s->lock);
  lua_settop(T, top);
}

/* Take the notes of run `run` (0: every run) out of the list, oldest
** first. */
static unread_t *take_notes(block_setup_t *s, lua_Integer run) {
  unread_t *taken = NULL;
  pthread_mutex_lock(&s->lock);
  for (unread_t **p = &s->unread; *p != NULL;) {
    unread_t *u = *p;
    if (run != 0 && u->run != run) {
      p = &u->next;
      continue;
    }
    *p = u->next;
    if (u->index != 0) s->unread_count--;
    u->next = taken; /* the list is newest first: this reverses it */
    taken = u;
  }
  pthread_mutex_unlock(&s->lock);
  return taken;
}

/* Write the notes of run `run` (0: all) to stderr and drop them. */
static void report_unread(block_setup_t *s, lua_Integer run) {
  unread_t *list = take_notes(s, run);
  if (list == NULL) return;
  while (list != NULL) {
    unread_t *u = list;
    list = u->next;
    if (u->index != 0)
      fprintf(stderr,
              "tunnel.Block: run %ld failed in thread %d, and nobody read "
              "its status: %s\n",
              (long)u->run, u->index, u->text);
    else
      fprintf(stderr,
              "tunnel.Block: run %ld: %d more failed jobs nobody read "
              "(their messages were not kept)\n",
              (long)u->run, u->count);
    free(u);
  }
  fflush(stderr);
}

/* The job's error at stack index 2 is its cancel ("...cancelled"). */
static int is_cancel_error(lua_State *T) {
  if (!lua_istable(T, 2)) return 0;
  lua_rawgeti(T, 2, 1);
  size_t n = 0;
  const char *m = lua_type(T, -1) == LUA_TSTRING ? lua_tolstring(T, -1, &n)
                                                  : NULL;
  int yes = m != NULL && n >= 9 && strcmp(m + n - 9, "cancelled") == 0;
  lua_pop(T, 1);
  return yes;
}

static void run_job(void *ctx, int index, void *arg) {
  lua_State *T = ctx;
  lua_settop(T, 0);
  lua_pushcfunction(T, l_job_msgh);
  lua_pushcfunction(T, l_job_body);
  lua_pushlightuserdata(T, arg);
  lua_pushinteger(T, index);
  tn_l_job_enter(1);
  int ok = lua_pcall(T, 2, 0, 1) == 0;
  tn_l_job_enter(0);
  /* A job that ended with its cancel is not reported as unread (it did
  ** what it was asked); one that caught it and failed otherwise is. */
  if (!ok && tn_cancelled() && is_cancel_error(T)) {
    lua_pushboolean(T, 1);
    lua_setfield(T, 2, "cancelled");
  } else if (!ok) {
    note_unread(T, arg, index);
  }
  /* Stack: handler [, error]. Only running out of memory makes the outcome
  ** call fail; then status[i] stays nil. */
  lua_pushcfunction(T, l_job_outcome);
  lua_pushlightuserdata(T, arg);
  lua_pushinteger(T, index);
  lua_pushboolean(T, ok);
  if (ok)
    lua_pushnil(T);
  else
    lua_pushvalue(T, 2);
  lua_pcall(T, 4, 0, 0);
  lua_settop(T, 0);
}

static void run_release(void *arg) {
  block_run_t *run = arg;
  setup_free(run->setup);
  tn_blob_release(run->job);
  tn_object_release(TN_OBJECT(run->result));
  tn_object_release(TN_OBJECT(run->status));
  free(run);
}

/* ---- the Lua class (main side) ------------------------------------------ */

/* A run record, runs[id] (a table in the block's registry table). */
enum {
  RUN_RVEC = 1, /* the result vector's box; nil once every slot is filled */
  RUN_SVEC,     /* the status vector's box; likewise */
  RUN_SIZE,     /* the block's size */
  RUN_RTAB,     /* the result table the user sees, made at the first read */
  RUN_STAB,     /* the status table */
  RUN_FILLED,   /* how many slots of the tables are filled */
  RUN_ID        /* the run's id */
};

static l_block_t *check_block(lua_State *L, const char *method) {
  l_block_t *b = lua_touserdata(L, 1);
  if (b != NULL && lua_getmetatable(L, 1)) {
    int same = lua_rawequal(L, -1, lua_upvalueindex(1));
    lua_pop(L, 1);
    if (same) return b;
  }
  tn_l_error(L, method, "self is a %s, not a tunnel.Block (call it with ':')",
             luaL_typename(L, 1));
  return NULL;
}

static void push_block_mt(lua_State *L);

static int l_block_new(lua_State *L) {
  const char *method = "tunnel.Block";
  /* Block() and Block(nil, init) are one thread, as in the original. */
  lua_Integer size =
      lua_isnoneornil(L, 1) ? 1 : tn_l_checkinteger(L, 1, method, "size");
  if (size < 1 || size > 4096)
    return tn_l_error(L, method, "size must be between 1 and 4096 (got %d)",
                      (int)size);
  /* Block(size, init, options) or Block(size, options). */
  int opts = 3;
  if (lua_type(L, 2) == LUA_TTABLE && lua_isnoneornil(L, 3)) {
    lua_pushnil(L);
    lua_insert(L, 2);
  }
  if (!lua_isnoneornil(L, 2) && lua_type(L, 2) != LUA_TFUNCTION)
    return tn_l_error(L, method, "init must be a function (got %s)",
                      luaL_typename(L, 2));
  lua_Integer keep = BLOCK_KEEP;
  int report = 1;
  if (!lua_isnoneornil(L, opts)) {
    if (lua_type(L, opts) != LUA_TTABLE)
      return tn_l_error(L, method, "options must be a table (got %s)",
                        luaL_typename(L, opts));
    lua_getfield(L, opts, "keep");
    if (!lua_isnil(L, -1)) {
      lua_Number k = lua_tonumber(L, -1);
      if (lua_type(L, -1) != LUA_TNUMBER || k != floor(k) || k < 1 ||
          k > 2147483647.0)
        return tn_l_error(L, method,
                          "keep must be an integer from 1 to 2^31-1 (got %s)",
                          lua_type(L, -1) == LUA_TNUMBER
                              ? lua_tostring(L, -1)
                              : luaL_typename(L, -1));
      keep = (lua_Integer)k;
    }
    lua_pop(L, 1);
    lua_getfield(L, opts, "report");
    if (!lua_isnil(L, -1)) {
      if (lua_type(L, -1) != LUA_TBOOLEAN)
        return tn_l_error(L, method, "report must be a boolean (got %s)",
                          luaL_typename(L, -1));
      report = lua_toboolean(L, -1);
    }
    lua_pop(L, 1);
  }
  lua_settop(L, 2);
  l_block_t *b = tn_newuserdata(L, sizeof(l_block_t));
  memset(b, 0, sizeof *b);
  b->args_ref = b->runs_ref = LUA_NOREF;
  b->size = (int)size;
  b->keep = keep;

  push_block_mt(L);
  lua_setmetatable(L, -2); /* from here on __gc cleans up */

  block_setup_t *s = calloc(1, sizeof *s);
  if (s == NULL) return tn_l_error(L, method, "out of memory");
  pthread_mutex_init(&s->lock, NULL);
  atomic_init(&s->refs, 1); /* the block's */
  b->setup = s;
  s->size = b->size;
  s->report = report;
  /* A program that opted into tunnel.compat (pairs/ipairs honouring
  ** __pairs/__ipairs) gets it in its jobs too: the original's LuaJIT had
  ** those semantics in every thread. */
  lua_getfield(L, LUA_REGISTRYINDEX, "_LOADED");
  if (lua_istable(L, -1)) {
    lua_getfield(L, -1, "tunnel.compat");
    s->compat = lua_toboolean(L, -1);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  lua_getglobal(L, "package");
  if (lua_istable(L, -1)) {
    lua_getfield(L, -1, "path");
    s->path = dup_string(lua_tostring(L, -1));
    lua_getfield(L, -2, "cpath");
    s->cpath = dup_string(lua_tostring(L, -1));
    lua_pop(L, 2);
  }
  lua_pop(L, 1);
  if (!lua_isnil(L, 2)) s->init = tn_l_encode(L, 2, 1, method);

  /* Each thread's start hook holds a reference until it returns. */
  atomic_store(&s->refs, 1 + b->size);
  tn_l_wait_begins();
  int err = tn_block_new(b->size, &block_hooks, s, &b->block);
  if (err != TN_OK) {
    b->block = NULL;
    /* On TN_EINIT the threads still in their init keep their references
    ** (they free the setup when the last one is done); on any other error
    ** no hook runs any more, whatever was started, so they go now. */
    if (err != TN_EINIT && err != TN_ECANCELED && err != TN_EINTR)
      atomic_store(&s->refs, 1);
    if (err == TN_EINIT && s->error != NULL)
      return tn_l_error(L, method, "%s", s->error);
    return tn_l_coreerror(L, method, err);
  }
  atomic_store(&s->refs, 1); /* every start hook has returned */
  lua_newtable(L);
  b->args_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_newtable(L);
  b->runs_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return 1;
}

/*
** The most arguments add collects. run puts them all on a Lua stack (here
** to encode, in the thread to call the job), and a C function's stack ends
** near 8000 slots on 5.1 (LUAI_MAXCSTACK), 65500 on LuaJIT: past this
** bound add raises at once rather than run with "stack overflow".
*/
#define BLOCK_MAX_ARGS 4000

static int l_block_add(lua_State *L) {
  l_block_t *b = check_block(L, "tunnel.Block:add");
  int n = lua_gettop(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, b->args_ref);
  int len = (int)tn_rawlen(L, -1);
  if (n - 1 > BLOCK_MAX_ARGS - len)
    return tn_l_error(L, "tunnel.Block:add",
                      "too many arguments (at most %d; %d added before)",
                      BLOCK_MAX_ARGS, len);
  for (int i = 2; i <= n; i++) {
    lua_pushvalue(L, i);
    lua_rawseti(L, -2, ++len);
  }
  lua_pushvalue(L, 1);
  return 1;
}

/* A vector of `size` nils; on failure `job` is released and an error
** raised. */
static tn_deque_t *new_result_vector(lua_State *L, int size, tn_blob_t *job) {
  tn_deque_t *d = NULL;
  int err = tn_deque_new(TN_UNBOUNDED, &d);
  if (err == TN_OK) {
    err = tn_deque_set(d, (size_t)size - 1, NULL, NULL, TN_FOREVER);
    if (err != TN_OK) tn_object_release(TN_OBJECT(d));
  }
  if (err != TN_OK) {
    tn_blob_release(job);
    tn_l_coreerror(L, "tunnel.Block:run", err);
  }
  return d;
}

/* The record at `rec` was handed to the user: drop its run's notes. */
static void settle_notes(lua_State *L, block_setup_t *s, int rec) {
  if (!lua_istable(L, rec)) return;
  lua_rawgeti(L, rec, RUN_STAB);
  int read = lua_istable(L, -1);
  lua_rawgeti(L, rec, RUN_ID);
  lua_Integer id = lua_tointeger(L, -1);
  lua_pop(L, 2);
  if (!read) return;
  unread_t *list = take_notes(s, id);
  while (list != NULL) {
    unread_t *u = list;
    list = u->next;
    free(u);
  }
}

/* The block is done with: settle every kept run, report the rest. */
static void report_block(lua_State *L, l_block_t *b) {
  if (b->setup == NULL) return;
  if (b->runs_ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, b->runs_ref);
    int ring = lua_gettop(L);
    for (lua_Integer i = 1; i <= b->keep && i <= b->nruns; i++) {
      lua_rawgeti(L, ring, (int)i);
      settle_notes(L, b->setup, lua_gettop(L));
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
  }
  report_unread(b->setup, 0);
}

static int l_block_run(lua_State *L) {
  const char *method = "tunnel.Block:run";
  l_block_t *b = check_block(L, method);
  if (b->block == NULL || tn_block_is_terminated(b->block))
    return tn_l_error(L, method, "block is terminated");
  if (lua_type(L, 2) != LUA_TFUNCTION)
    return tn_l_error(L, method, "callback must be a function (got %s)",
                      luaL_typename(L, 2));
  lua_settop(L, 2);
  lua_rawgeti(L, LUA_REGISTRYINDEX, b->args_ref);
  int nargs = (int)tn_rawlen(L, 3);
  luaL_checkstack(L, nargs + 8, method);
  lua_pushvalue(L, 2);
  for (int i = 1; i <= nargs; i++) lua_rawgeti(L, 3, i);
  tn_blob_t *job = tn_l_encode(L, 4, nargs + 1, method);
  lua_settop(L, 3);

  /* The result vectors go into boxes first, so an error below frees them
  ** with the boxes; the run record takes references of its own. */
  lua_createtable(L, RUN_ID, 0);
  for (int i = RUN_RVEC; i <= RUN_SVEC; i++) {
    tn_deque_t *d = new_result_vector(L, b->size, job);
    tn_l_pushnew(L, TN_OBJECT(d));
    lua_rawseti(L, -2, i);
  }
  lua_pushinteger(L, b->size);
  lua_rawseti(L, -2, RUN_SIZE);
  lua_pushinteger(L, b->nruns + 1);
  lua_rawseti(L, -2, RUN_ID);
  block_run_t *run = malloc(sizeof *run);
  if (run == NULL) {
    tn_blob_release(job);
    return tn_l_error(L, method, "out of memory");
  }
  run->job = job;
  run->id = b->nruns + 1;
  run->setup = b->setup;
  atomic_fetch_add(&b->setup->refs, 1); /* the run's; run_release drops it */
  lua_rawgeti(L, -1, RUN_RVEC);
  run->result = (tn_deque_t *)tn_object_retain(tn_l_toobject(L, -1));
  lua_rawgeti(L, -2, RUN_SVEC);
  run->status = (tn_deque_t *)tn_object_retain(tn_l_toobject(L, -1));
  lua_pop(L, 2);
  int err = tn_block_run(b->block, run_job, run, run_release);
  if (err != TN_OK) return tn_l_coreerror(L, method, err);
  b->nruns++;
  lua_rawgeti(L, LUA_REGISTRYINDEX, b->runs_ref);
  int slot = (int)((b->nruns - 1) % b->keep + 1);
  lua_rawgeti(L, -1, slot); /* the record it pushes out, if any */
  if (lua_istable(L, -1)) {
    settle_notes(L, b->setup, lua_gettop(L));
    lua_rawgeti(L, -1, RUN_ID);
    report_unread(b->setup, lua_tointeger(L, -1)); /* forgotten unread */
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  lua_pushvalue(L, -2);
  /* Into the ring: replaces (frees) the record of run nruns - keep. */
  lua_rawseti(L, -2, slot);
  lua_pushinteger(L, b->nruns);
  return 1;
}

/* Protected: decode the blob (light userdata 1, may be NULL) and return
** its first value; the method's name is light userdata 2. */
static int l_decode_first(lua_State *L) {
  const tn_blob_t *blob = lua_touserdata(L, 1);
  tn_l_decode(L, blob, lua_touserdata(L, 2));
  return 1; /* lua_pcall keeps only the first */
}

/* Push the first value of `blob` and release it, also when decoding raises
** (a result holding a module the main state cannot load, ...). */
static void push_owned(lua_State *L, tn_blob_t *blob, const char *method) {
  lua_pushcfunction(L, l_decode_first);
  lua_pushlightuserdata(L, blob);
  lua_pushlightuserdata(L, (void *)method);
  int rc = lua_pcall(L, 2, 1, 0);
  tn_blob_release(blob);
  if (rc != 0) lua_error(L);
}

/* The core vector in slot `field` of the record at `rec`, or NULL. */
static tn_deque_t *record_vector(lua_State *L, int rec, int field) {
  lua_rawgeti(L, rec, field);
  tn_deque_t *d = (tn_deque_t *)tn_l_toobject(L, -1);
  lua_pop(L, 1);
  return d;
}

/*
** Copy slot `i` (1-based) of the run whose record is at `rec` (absolute)
** from its vectors into its tables if thread i is done and the slot is
** not filled yet. status[i] is stored after result[i], so once status[i]
** is set both are final. When the last slot fills, the tables lose their
** metatable and the record its vectors.
*/
static void fill_slot(lua_State *L, int rec, lua_Integer i,
                      const char *method) {
  lua_rawgeti(L, rec, RUN_STAB);
  int stab = lua_gettop(L);
  lua_rawgeti(L, stab, (int)i);
  int filled = !lua_isnil(L, -1);
  lua_pop(L, 1);
  tn_deque_t *sd = record_vector(L, rec, RUN_SVEC);
  tn_deque_t *rd = record_vector(L, rec, RUN_RVEC);
  tn_blob_t *blob = NULL;
  if (filled || sd == NULL || rd == NULL ||
      tn_deque_get(sd, (size_t)i - 1, &blob, TN_FOREVER) != TN_OK ||
      blob == NULL) {
    lua_settop(L, stab - 1);
    return;
  }
  push_owned(L, blob, method); /* the status */
  blob = NULL;
  if (tn_deque_get(rd, (size_t)i - 1, &blob, TN_FOREVER) != TN_OK)
    blob = NULL;
  push_owned(L, blob, method); /* the result */
  lua_rawgeti(L, rec, RUN_RTAB);
  lua_insert(L, -2);
  lua_rawseti(L, -2, (int)i); /* result[i] */
  lua_pop(L, 1);
  lua_rawseti(L, stab, (int)i); /* status[i] */
  lua_rawgeti(L, rec, RUN_FILLED);
  lua_Integer n = lua_tointeger(L, -1) + 1;
  lua_pop(L, 1);
  lua_pushinteger(L, n);
  lua_rawseti(L, rec, RUN_FILLED);
  lua_rawgeti(L, rec, RUN_SIZE);
  lua_Integer size = lua_tointeger(L, -1);
  lua_pop(L, 1);
  if (n >= size) { /* complete: plain tables from now on */
    lua_pushnil(L);
    lua_setmetatable(L, stab);
    lua_rawgeti(L, rec, RUN_RTAB);
    lua_pushnil(L);
    lua_setmetatable(L, -2);
    lua_pop(L, 1);
    lua_pushnil(L);
    lua_rawseti(L, rec, RUN_RVEC);
    lua_pushnil(L);
    lua_rawseti(L, rec, RUN_SVEC);
  }
  lua_settop(L, stab - 1);
}

/* __index of a pending run's tables (upvalue 1: the record): slot k from
** the vectors if its thread is done, else nil. */
static int l_results_index(lua_State *L) {
  lua_Number k = lua_tonumber(L, 2);
  lua_pushvalue(L, lua_upvalueindex(1));
  int rec = lua_gettop(L);
  lua_rawgeti(L, rec, RUN_SIZE);
  lua_Number size = lua_tonumber(L, -1);
  lua_pop(L, 1);
  if (lua_type(L, 2) != LUA_TNUMBER || k < 1 || k > size || k != floor(k))
    return 0;
  fill_slot(L, rec, (lua_Integer)k, "tunnel.Block (result)");
  lua_pushvalue(L, 2);
  lua_rawget(L, 1);
  return 1;
}

/* Push result, status of run `id` (nil, nil if unknown; nil, nil and a
** message if the ring has dropped it), with every slot that is done
** filled in. */
static int push_result(lua_State *L, l_block_t *b, lua_Integer id,
                       const char *method) {
  if (id < 1 || id > b->nruns || b->runs_ref == LUA_NOREF) {
    lua_pushnil(L);
    lua_pushnil(L);
    return 2;
  }
  if (id <= b->nruns - b->keep) {
    lua_pushnil(L);
    lua_pushnil(L);
    lua_pushfstring(L,
                    "%s: run %d is forgotten (the block keeps its last %d "
                    "runs: tunnel.Block(size, init, {keep = n}))",
                    method, (int)id, (int)b->keep);
    return 3;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, b->runs_ref);
  lua_rawgeti(L, -1, (int)((id - 1) % b->keep + 1));
  int rec = lua_gettop(L);
  lua_rawgeti(L, rec, RUN_SIZE);
  int size = (int)lua_tointeger(L, -1);
  lua_pop(L, 1);
  lua_rawgeti(L, rec, RUN_STAB);
  int fresh = lua_isnil(L, -1);
  lua_pop(L, 1);
  if (fresh) { /* the first read of this run: make its tables */
    tn_l_run_tables(L, rec, size, RUN_RTAB, l_results_index);
    lua_pushinteger(L, 0);
    lua_rawseti(L, rec, RUN_FILLED);
  }
  if (record_vector(L, rec, RUN_SVEC) != NULL)
    for (int i = 1; i <= size; i++) fill_slot(L, rec, i, method);
  lua_rawgeti(L, rec, RUN_RTAB);
  lua_rawgeti(L, rec, RUN_STAB);
  return 2;
}

static int l_block_getresult(lua_State *L) {
  const char *method = "tunnel.Block:getResult";
  l_block_t *b = check_block(L, method);
  lua_Integer id = lua_isnoneornil(L, 2)
                       ? b->nruns
                       : tn_l_checkinteger(L, 2, method, "run id");
  return push_result(L, b, id, method);
}

/* synchronize([timeout]): the last run's result and status once every
** queued job has finished, or when the timeout runs out (then some
** status[i] are nil). */
static int l_block_synchronize(lua_State *L) {
  const char *method = "tunnel.Block:synchronize";
  l_block_t *b = check_block(L, method);
  double timeout = tn_l_opttimeout(L, 2, method);
  if (b->block != NULL) {
    int rc = tn_block_synchronize(b->block, timeout);
    if (rc == TN_EINTR || rc == TN_ECANCELED)
      return tn_l_coreerror(L, method, rc);
  }
  return push_result(L, b, b->nruns, method);
}

static int l_block_terminate(lua_State *L) {
  const char *method = "tunnel.Block:terminate";
  l_block_t *b = check_block(L, method);
  if (b->block != NULL) {
    /* Wait where Ctrl-C and a cancel reach (tn_block_terminate's join
    ** does not), then stop the idle threads. */
    tn_l_wait_begins();
    int rc = tn_block_synchronize(b->block, TN_FOREVER);
    if (rc != TN_OK) return tn_l_coreerror(L, method, rc);
    tn_block_terminate(b->block);
  }
  int n = push_result(L, b, b->nruns, method);
  report_block(L, b);
  return n;
}

/* cancel([id]): the jobs of run id (default: every run) stop; returns how
** many jobs were reached. */
static int l_block_cancel(lua_State *L) {
  const char *method = "tunnel.Block:cancel";
  l_block_t *b = check_block(L, method);
  lua_Integer id = 0;
  if (!lua_isnoneornil(L, 2)) {
    id = tn_l_checkinteger(L, 2, method, "run id");
    if (id < 1)
      return tn_l_error(L, method, "run id must be >= 1 (got %d)", (int)id);
  }
  int reached = 0;
  if (b->block != NULL && id <= b->nruns)
    reached = tn_block_cancel(b->block, (unsigned long)id);
  lua_pushinteger(L, reached);
  return 1;
}

/*
** Seconds between the close's looks at its jobs, and how long cancelled
** jobs get to end before the close gives their threads up.
*/
#define CLOSE_TICK 0.25
#define CLOSE_GRACE 2.0

/*
** The close of a block (__gc: collected, or its state closes): queued
** jobs finish, then the threads stop. That is what lets a main chunk end
** while jobs run. But the close cancels the jobs instead when waiting
** could never end or was interrupted:
** - after a Ctrl-C (a wait of this process was interrupted, now or
**   before, even if the program caught it: graceful-shutdown code that
**   cancels and waits a while must still end): the user wants out;
** - when every job of every block in the process sleeps without a
**   deadline in an in-process wait, twice in a row with no wake-up in
**   between: nothing but this closing program could have woken them (a
**   consumer waiting for a producer that died with the main chunk's
**   error). A C thread outside any block that would still feed them is
**   not seen: such a program terminates its blocks itself.
** Jobs that do not end within CLOSE_GRACE of the cancel (a JIT-compiled
** loop that never calls tunnel) are left to the process's exit.
*/
static void block_close(l_block_t *b) {
  tn_l_wait_begins();
  int stuck_before = 0;
  unsigned long progress_before = 0;
  while (!tn_l_interrupted()) {
    int rc = tn_block_synchronize(b->block, CLOSE_TICK);
    if (rc == TN_OK) {
      tn_block_free(b->block);
      return;
    }
    if (rc == TN_EINTR || rc == TN_ECANCELED) break;
    int stuck;
    unsigned long progress = tn_jobs_progress(&stuck);
    if (stuck && stuck_before && progress == progress_before) break;
    stuck_before = stuck;
    progress_before = progress;
  }
  tn_block_cancel(b->block, 0);
  double end = tn_clock() + CLOSE_GRACE;
  int rc;
  do {
    rc = tn_block_synchronize(b->block, CLOSE_TICK);
  } while (rc != TN_OK && tn_clock() < end);
  if (rc == TN_OK) {
    tn_block_free(b->block);
    return;
  }
  fprintf(stderr,
          "tunnel.Block: %d thread(s) did not stop within %.0f s of a "
          "cancel; left to the process's exit\n",
          b->size, CLOSE_GRACE);
  tn_block_abandon(b->block);
}

static int l_block_gc(lua_State *L) {
  l_block_t *b = lua_touserdata(L, 1);
  if (b->block != NULL) block_close(b);
  b->block = NULL;
  report_block(L, b);
  setup_free(b->setup);
  b->setup = NULL;
  luaL_unref(L, LUA_REGISTRYINDEX, b->args_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, b->runs_ref);
  b->args_ref = b->runs_ref = LUA_NOREF;
  return 0;
}

static int l_block_len(lua_State *L) {
  l_block_t *b = check_block(L, "tunnel.Block:__len");
  lua_pushinteger(L, b->size);
  return 1;
}

/* `block.size`, then the methods (upvalue 2). */
static int l_block_index(lua_State *L) {
  l_block_t *b = check_block(L, "tunnel.Block:__index");
  const char *key = lua_tostring(L, 2);
  if (key != NULL && strcmp(key, "size") == 0) {
    lua_pushinteger(L, b->size);
    return 1;
  }
  lua_pushvalue(L, 2);
  lua_rawget(L, lua_upvalueindex(2));
  return 1;
}

static int l_block_tostring(lua_State *L) {
  l_block_t *b = check_block(L, "tunnel.Block:__tostring");
  lua_pushfstring(L, "tunnel.Block: %p (%d threads%s)", (void *)b, b->size,
                  b->block == NULL || tn_block_is_terminated(b->block)
                      ? ", terminated"
                      : "");
  return 1;
}

static const luaL_Reg block_methods[] = {
    {"add", l_block_add},
    {"run", l_block_run},
    {"getResult", l_block_getresult},
    {"synchronize", l_block_synchronize},
    {"terminate", l_block_terminate},
    {"cancel", l_block_cancel},
    {NULL, NULL}};

static const luaL_Reg block_meta[] = {{"__gc", l_block_gc},
                                      {"__len", l_block_len},
                                      {"__index", l_block_index},
                                      {"__tostring", l_block_tostring},
                                      {NULL, NULL}};

/* Every function gets the metatable and the methods table as upvalues. */
static void set_block_closures(lua_State *L, const luaL_Reg *l, int mt,
                               int methods) {
  for (; l->name != NULL; l++) {
    lua_pushvalue(L, mt);
    lua_pushvalue(L, methods);
    lua_pushcclosure(L, l->func, 2);
    lua_setfield(L, -2, l->name);
  }
}

/* Built on a state's first Block, not when the module loads: every block
** thread loads the module, and most never make a block of their own. */
static void push_block_mt(lua_State *L) {
  lua_getfield(L, LUA_REGISTRYINDEX, BLOCK_MT);
  if (!lua_isnil(L, -1)) return;
  lua_pop(L, 1);
  luaL_newmetatable(L, BLOCK_MT);
  int mt = lua_gettop(L);
  lua_newtable(L);
  int methods = lua_gettop(L);
  set_block_closures(L, block_methods, mt, methods);
  lua_pushvalue(L, mt);
  set_block_closures(L, block_meta, mt, methods);
  lua_pushliteral(L, "locked");
  lua_setfield(L, -2, "__metatable");
  lua_pop(L, 2); /* the metatable copy, the methods */
}

void tn_l_open_block(lua_State *L) {
  lua_pushcfunction(L, l_block_new);
  lua_setfield(L, -2, "Block");
}
