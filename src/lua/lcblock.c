/*
** lcblock.c - cluster:Block(name, size [, init] [, options]): a Block whose
** slots are served by `tunnel worker` processes (src/redis/jobs.c does the
** protocol; docs/workers.md says how it behaves).
**
** The Lua side is the in-process Block's (lblock.c): add, run, getResult,
** synchronize, terminate, cancel, #block, block.size; result and status
** are plain tables per run, filled as slots finish, which while some slot
** is pending carry a metatable whose __index asks the server for a missing
** slot (so status[i] turns from nil to true/false when slot i is done), and
** whose __pairs/__ipairs go over every slot. A run's tables lose that
** metatable once every slot is filled. The block keeps the records of its
** last `keep` runs (the server keeps their results as long, and `ttl`
** seconds after their last status): getResult of a run pushed out returns
** nil, nil and a message, of a run whose results expired nil, nil and
** another.
**
** Statuses beyond the in-process ones: a job whose worker died is false
** with result[i][1] = "worker lost: ..."; one refused by the workers
** (signature, Lua flavour) false with "refused: ..."; a cancelled queued
** job false with "cancelled". Nothing is re-run.
**
** Errors are never silent: at terminate and collection, the failed jobs
** (raised, lost, refused) of the kept runs whose status the user's tables
** never showed are written to stderr, as lblock.c does.
**
** Caveats:
** - Run ids are the block's on the server, shared by every client of the
**   block: a client's runs need not be 1, 2, 3. getResult() and
**   synchronize() are about this client's last run (and every earlier job,
**   whoever queued it: a slot runs its jobs in order).
** - Terminate and collection mark the block terminated on the server, for
**   every client of it; cluster:Block(name, ...) afterwards starts it
**   afresh.
*/
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ljobs.h"

#define CBLOCK_MT "tunnel.ClusterBlock"
#define UNREAD_MAX 100
#define CLOSE_TICK 0.25
#define CLOSE_GRACE 2.0
#define CLOSE_CHECK 1.0
#define CLOSE_UNSERVED 5

typedef struct l_cblock {
  tn_cblock_t *h; /* NULL once collected */
  char *name;
  int size;
  long keep;
  double ttl;
  int report;
  int terminated;     /* by this client */
  int args_ref;       /* registry: the added values */
  int runs_ref;       /* registry: run id -> record */
  int ring_ref;       /* registry: the ids of the kept runs, a ring */
  int ref_ref;        /* registry: the cb_ref_t the records name */
  lua_Integer nruns;  /* this client's runs */
  unsigned long last; /* the id of its last run (0: none) */
} l_cblock_t;

/* What a run's tables reach their block through: cleared when the block
** is collected (the tables may outlive it). Not the block's userdata
** itself: records are reachable from the block's registry references, and
** that cycle would never be collected. */
typedef struct cb_ref {
  l_cblock_t *b;
} cb_ref_t;

/* A run record (a table in runs[id]). */
enum {
  RUN_SIZE = 1, /* the block's size */
  RUN_RTAB,     /* the result table the user sees, made at the first read */
  RUN_STAB,     /* the status table */
  RUN_FILLED,   /* how many slots of the tables are filled */
  RUN_ID,       /* the run's id */
  RUN_BOX       /* the block's cb_ref_t (for __index) */
};

static l_cblock_t *check_cblock(lua_State *L, const char *method) {
  l_cblock_t *b = lua_touserdata(L, 1);
  if (b != NULL && lua_getmetatable(L, 1)) {
    luaL_getmetatable(L, CBLOCK_MT);
    int same = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    if (same) return b;
  }
  tn_l_error(L, method, "self is a %s, not a tunnel.Block (call it with ':')",
             luaL_typename(L, 1));
  return NULL;
}

static l_cblock_t *check_live(lua_State *L, const char *method) {
  l_cblock_t *b = check_cblock(L, method);
  if (b->h == NULL) tn_l_error(L, method, "block is terminated");
  return b;
}

/* ---- statuses into tables ------------------------------------------------ */

/* Protected: push the first value of blob (light userdata 1; NULL: nil),
** decoded; method in light userdata 2. */
static int l_decode_first(lua_State *L) {
  tn_l_decode(L, lua_touserdata(L, 1), lua_touserdata(L, 2));
  return 1;
}

/* Push result[i], status[i] of one status (its value released after). */
static void push_status(lua_State *L, tn_job_status_t *st,
                        const char *method) {
  if (st->state == TN_JOB_OK || st->state == TN_JOB_FAILED) {
    lua_pushcfunction(L, l_decode_first);
    lua_pushlightuserdata(L, st->value);
    lua_pushlightuserdata(L, (void *)method);
    int rc = lua_pcall(L, 2, 1, 0);
    if (rc != 0) {
      tn_job_status_clear(st, 1);
      lua_error(L);
    }
    lua_pushboolean(L, st->state == TN_JOB_OK);
    return;
  }
  lua_createtable(L, 1, 0);
  lua_pushstring(L, st->message != NULL ? st->message : "?");
  lua_rawseti(L, -2, 1);
  lua_pushboolean(L, 0);
}

/* Fill slots first..first+n-1 of the record at `rec` that are done and not
** filled yet, from the server. Returns whether the server had nothing of
** the run (expired). When the last slot fills, the tables become plain. */
static int fill(lua_State *L, l_cblock_t *b, int rec, int first, int n,
                const char *method) {
  lua_rawgeti(L, rec, RUN_STAB);
  int stab = lua_gettop(L);
  lua_rawgeti(L, rec, RUN_RTAB);
  int rtab = lua_gettop(L);
  lua_rawgeti(L, rec, RUN_ID);
  unsigned long id = (unsigned long)lua_tointeger(L, -1);
  lua_pop(L, 1);
  lua_rawgeti(L, rec, RUN_FILLED);
  lua_Integer filled = lua_tointeger(L, -1);
  lua_pop(L, 1);
  if (filled >= b->size || b->h == NULL) {
    lua_settop(L, stab - 1);
    return 0;
  }
  tn_job_status_t stack[16], *st = stack;
  if (n > 16 && (st = malloc((size_t)n * sizeof *st)) == NULL)
    tn_l_error(L, method, "out of memory");
  int expired = 0;
  int rc = tn_cblock_status(b->h, id, first, n, st, &expired);
  if (rc != TN_OK) {
    if (st != stack) free(st);
    tn_l_coreerror(L, method, rc);
  }
  for (int k = 0; k < n; k++) {
    lua_rawgeti(L, stab, first + k);
    int seen = !lua_isnil(L, -1);
    lua_pop(L, 1);
    if (seen || st[k].state == TN_JOB_PENDING) continue;
    /* st[k] is released on the way out of push_status if it raises; the
    ** rest are then lost with st (a decode error is the user's to fix). */
    push_status(L, &st[k], method);
    lua_rawseti(L, stab, first + k);
    lua_rawseti(L, rtab, first + k);
    filled++;
  }
  tn_job_status_clear(st, n);
  if (st != stack) free(st);
  lua_pushinteger(L, filled);
  lua_rawseti(L, rec, RUN_FILLED);
  if (filled >= b->size) { /* complete: plain tables from now on */
    lua_pushnil(L);
    lua_setmetatable(L, stab);
    lua_pushnil(L);
    lua_setmetatable(L, rtab);
  }
  lua_settop(L, stab - 1);
  return expired;
}

/* __index of a pending run's tables (upvalue 1: the record). */
static int l_results_index(lua_State *L) {
  lua_Number k = lua_tonumber(L, 2);
  lua_pushvalue(L, lua_upvalueindex(1));
  int rec = lua_gettop(L);
  lua_rawgeti(L, rec, RUN_SIZE);
  lua_Number size = lua_tonumber(L, -1);
  lua_pop(L, 1);
  if (lua_type(L, 2) != LUA_TNUMBER || k < 1 || k > size || k != floor(k))
    return 0;
  lua_rawgeti(L, rec, RUN_BOX);
  cb_ref_t *ref = lua_touserdata(L, -1);
  l_cblock_t *b = ref != NULL ? ref->b : NULL;
  lua_pop(L, 1);
  if (b != NULL && b->h != NULL)
    fill(L, b, rec, (int)k, 1, "tunnel.Block (result)");
  lua_pushvalue(L, 2);
  lua_rawget(L, 1);
  return 1;
}

/* Push the record of run `id`, or nil. */
static void push_record(lua_State *L, l_cblock_t *b, lua_Integer id) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, b->runs_ref);
  lua_rawgeti(L, -1, (int)id);
  lua_remove(L, -2);
}

/* Push result, status of run `id` (see the top for nil, nil [, why]). */
static int push_result(lua_State *L, l_cblock_t *b, lua_Integer id,
                       const char *method) {
  if (id < 1 || b->runs_ref == LUA_NOREF) return tn_l_pushnils(L, 2);
  push_record(L, b, id);
  int rec = lua_gettop(L);
  if (lua_isnil(L, rec)) {
    lua_pop(L, 1);
    if (id > (lua_Integer)b->last) return tn_l_pushnils(L, 2);
    lua_pushnil(L);
    lua_pushnil(L);
    lua_pushfstring(L,
                    "%s: run %d is forgotten or not this client's (the block "
                    "keeps its last %d runs: cluster:Block(name, size, init, "
                    "{keep = n}))",
                    method, (int)id, (int)b->keep);
    return 3;
  }
  lua_rawgeti(L, rec, RUN_STAB);
  int fresh = lua_isnil(L, -1);
  lua_pop(L, 1);
  if (fresh) { /* the first read of this run: make its tables */
    tn_l_run_tables(L, rec, b->size, RUN_RTAB, l_results_index);
    lua_pushinteger(L, 0);
    lua_rawseti(L, rec, RUN_FILLED);
  }
  int expired = fill(L, b, rec, 1, b->size, method);
  lua_rawgeti(L, rec, RUN_RTAB);
  lua_rawgeti(L, rec, RUN_STAB);
  lua_rawgeti(L, rec, RUN_FILLED);
  int complete = lua_tointeger(L, -1) >= b->size;
  lua_pop(L, 1);
  if (expired && !complete) {
    lua_pushfstring(L,
                    "%s: the results of run %d expired on the server (they "
                    "are kept %d s after the run's last status: "
                    "cluster:Block(name, size, init, {ttl = s}))",
                    method, (int)id, (int)b->ttl);
    return 3;
  }
  return 2;
}

/* ---- unread errors ----------------------------------------------------------- */

/* Write the failed jobs of kept runs whose status no table showed. */
static void report_unread(lua_State *L, l_cblock_t *b) {
  if (!b->report || b->h == NULL || b->ring_ref == LUA_NOREF) return;
  int printed = 0, more = 0;
  lua_rawgeti(L, LUA_REGISTRYINDEX, b->ring_ref);
  int ring = lua_gettop(L);
  lua_Integer first = b->nruns > b->keep ? b->nruns - b->keep + 1 : 1;
  tn_job_status_t *st = malloc((size_t)b->size * sizeof *st);
  for (lua_Integer k = first; st != NULL && k <= b->nruns; k++) {
    lua_rawgeti(L, ring, (int)((k - 1) % b->keep + 1));
    lua_Integer id = lua_tointeger(L, -1);
    lua_pop(L, 1);
    push_record(L, b, id);
    int rec = lua_gettop(L);
    if (!lua_istable(L, rec)) {
      lua_pop(L, 1);
      continue;
    }
    lua_rawgeti(L, rec, RUN_FILLED);
    int all_seen = lua_tointeger(L, -1) >= b->size;
    lua_pop(L, 1);
    if (all_seen) { /* the user's tables show every slot */
      lua_pop(L, 1);
      continue;
    }
    lua_rawgeti(L, rec, RUN_STAB);
    int stab = lua_gettop(L);
    if (tn_cblock_status(b->h, (unsigned long)id, 1, b->size, st, NULL) !=
        TN_OK) {
      lua_settop(L, rec - 1);
      break;
    }
    for (int i = 0; i < b->size; i++) {
      int seen = 0;
      if (lua_istable(L, stab)) {
        lua_rawgeti(L, stab, i + 1);
        seen = !lua_isnil(L, -1);
        lua_pop(L, 1);
      }
      int state = st[i].state;
      if (seen || (state != TN_JOB_FAILED && state != TN_JOB_LOST &&
                   state != TN_JOB_REFUSED))
        continue;
      if (printed >= UNREAD_MAX) {
        more++;
        continue;
      }
      const char *text = st[i].message;
      if (state == TN_JOB_FAILED) { /* its traceback, else its message */
        lua_pushcfunction(L, l_decode_first);
        lua_pushlightuserdata(L, st[i].value);
        lua_pushlightuserdata(L, (void *)"tunnel.Block");
        if (lua_pcall(L, 2, 1, 0) == 0 && lua_istable(L, -1)) {
          lua_getfield(L, -1, "traceback");
          lua_rawgeti(L, -2, 1);
          text = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2)
                                                : lua_tostring(L, -1);
        }
      }
      fprintf(stderr,
              "tunnel.Block: run %ld failed in slot %d of cluster block "
              "'%s', and nobody read its status: %s\n",
              (long)id, i + 1, b->name, text != NULL ? text : "?");
      printed++;
      lua_settop(L, stab);
    }
    tn_job_status_clear(st, b->size);
    lua_settop(L, rec - 1);
  }
  free(st);
  lua_settop(L, ring - 1);
  if (more > 0)
    fprintf(stderr, "tunnel.Block: %d more failed jobs nobody read\n", more);
  fflush(stderr);
}

/* ---- the class ------------------------------------------------------------------ */

/* Options of cluster:Block: keep, ttl, lease (positive numbers), report. */
static void read_options(lua_State *L, int idx, const char *method,
                         tn_cblock_options_t *o, int *report) {
  if (lua_isnoneornil(L, idx)) return;
  if (lua_type(L, idx) != LUA_TTABLE)
    tn_l_error(L, method, "options must be a table (got %s)",
               luaL_typename(L, idx));
  lua_getfield(L, idx, "keep");
  if (!lua_isnil(L, -1)) {
    lua_Number k = lua_tonumber(L, -1);
    if (lua_type(L, -1) != LUA_TNUMBER || k != floor(k) || k < 1 ||
        k > 1e9)
      tn_l_error(L, method, "keep must be an integer from 1 to 10^9 (got %s)",
                 lua_type(L, -1) == LUA_TNUMBER ? lua_tostring(L, -1)
                                                : luaL_typename(L, -1));
    o->keep = (long)k;
  }
  lua_pop(L, 1);
  static const char *const secs[] = {"ttl", "lease"};
  for (int i = 0; i < 2; i++) {
    lua_getfield(L, idx, secs[i]);
    if (!lua_isnil(L, -1)) {
      lua_Number v = lua_tonumber(L, -1);
      double lo = i == 0 ? 1 : 1, hi = i == 0 ? 1e9 : 1e6;
      if (lua_type(L, -1) != LUA_TNUMBER || !(v >= lo && v <= hi))
        tn_l_error(L, method,
                   "%s must be a number of seconds from %g to %g (got %s)",
                   secs[i], lo, hi,
                   lua_type(L, -1) == LUA_TNUMBER ? lua_tostring(L, -1)
                                                  : luaL_typename(L, -1));
      if (i == 0)
        o->ttl = v;
      else
        o->lease = v;
    }
    lua_pop(L, 1);
  }
  lua_getfield(L, idx, "report");
  if (!lua_isnil(L, -1)) {
    if (lua_type(L, -1) != LUA_TBOOLEAN)
      tn_l_error(L, method, "report must be a boolean (got %s)",
                 luaL_typename(L, -1));
    *report = lua_toboolean(L, -1);
  }
  lua_pop(L, 1);
}

static void open_cblock(lua_State *L);

int tn_l_cluster_block(lua_State *L, tn_cluster_t *c, const char *name,
                       const void *secret, size_t secret_len,
                       const char *method) {
  open_cblock(L);
  lua_Integer size = tn_l_checkinteger(L, 3, method, "size");
  if (size < 1 || size > 4096)
    return tn_l_error(L, method, "size must be between 1 and 4096 (got %d)",
                      (int)size);
  /* (name, size, init, options) or (name, size, options). */
  if (lua_type(L, 4) == LUA_TTABLE && lua_isnoneornil(L, 5)) {
    lua_pushnil(L);
    lua_insert(L, 4);
  }
  if (!lua_isnoneornil(L, 4) && lua_type(L, 4) != LUA_TFUNCTION)
    return tn_l_error(L, method, "init must be a function (got %s)",
                      luaL_typename(L, 4));
  tn_cblock_options_t o;
  memset(&o, 0, sizeof o);
  o.runtime = tn_l_runtime();
  o.secret = secret;
  o.secret_len = secret_len;
  int report = 1;
  read_options(L, 5, method, &o, &report);
  lua_settop(L, 4);
  l_cblock_t *b = tn_newuserdata(L, sizeof *b);
  memset(b, 0, sizeof *b);
  b->args_ref = b->runs_ref = b->ring_ref = b->ref_ref = LUA_NOREF;
  b->report = report;
  luaL_getmetatable(L, CBLOCK_MT);
  lua_setmetatable(L, -2); /* from here on __gc cleans up */
  b->name = malloc(strlen(name) + 1);
  if (b->name == NULL) return tn_l_error(L, method, "out of memory");
  strcpy(b->name, name);
  tn_blob_t *init = NULL;
  if (!lua_isnil(L, 4)) {
    init = tn_l_encode(L, 4, 1, method);
    const char *local = tn_l_local_object(init);
    if (local != NULL) {
      tn_blob_release(init);
      return tn_l_error(L, method,
                        "init holds an in-process %s: a cluster block's "
                        "jobs run in other processes (use a cluster object)",
                        local);
    }
  }
  o.init = init;
  int rc = tn_cblock_open(c, name, (int)size, &o, &b->h);
  tn_blob_release(init);
  if (rc == TN_EINVAL || rc == TN_ECONFLICT)
    return tn_l_error(L, method, "%s", tn_last_error());
  if (rc != TN_OK) return tn_l_coreerror(L, method, rc);
  b->size = tn_cblock_size(b->h);
  b->keep = tn_cblock_keep(b->h);
  b->ttl = tn_cblock_ttl(b->h);
  lua_newtable(L);
  b->args_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_newtable(L);
  b->runs_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_newtable(L);
  b->ring_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  cb_ref_t *ref = tn_newuserdata(L, sizeof *ref);
  ref->b = b;
  b->ref_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return 1;
}

#define BLOCK_MAX_ARGS 4000 /* as lblock.c's */

static int l_cblock_add(lua_State *L) {
  const char *method = "tunnel.Block:add";
  l_cblock_t *b = check_live(L, method);
  int n = lua_gettop(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, b->args_ref);
  int len = (int)tn_rawlen(L, -1);
  if (n - 1 > BLOCK_MAX_ARGS - len)
    return tn_l_error(L, method,
                      "too many arguments (at most %d; %d added before)",
                      BLOCK_MAX_ARGS, len);
  /* Each value must reach other processes: checked now, not at run. */
  for (int i = 2; i <= n; i++) {
    tn_blob_t *v = tn_l_encode(L, i, 1, method);
    const char *local = tn_l_local_object(v);
    tn_blob_release(v);
    if (local != NULL)
      return tn_l_error(L, method,
                        "argument %d holds an in-process %s: a cluster "
                        "block's jobs run in other processes (use a "
                        "cluster object)",
                        i - 1, local);
  }
  for (int i = 2; i <= n; i++) {
    lua_pushvalue(L, i);
    lua_rawseti(L, n + 1, ++len);
  }
  lua_pushvalue(L, 1);
  return 1;
}

static int l_cblock_run(lua_State *L) {
  const char *method = "tunnel.Block:run";
  l_cblock_t *b = check_live(L, method);
  if (b->terminated) return tn_l_error(L, method, "block is terminated");
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
  const char *local = tn_l_local_object(job);
  if (local != NULL) {
    tn_blob_release(job);
    return tn_l_error(L, method,
                      "the callback holds an in-process %s (an upvalue): a "
                      "cluster block's jobs run in other processes (use a "
                      "cluster object)",
                      local);
  }
  unsigned long id;
  int rc = tn_cblock_run(b->h, job, &id);
  tn_blob_release(job);
  if (rc == TN_ETERMINATED) {
    b->terminated = 1;
    return tn_l_error(L, method, "block is terminated");
  }
  if (rc != TN_OK) return tn_l_coreerror(L, method, rc);
  b->nruns++;
  b->last = id;
  /* The record, and the ring that forgets the run `keep` back. */
  lua_createtable(L, RUN_BOX, 0);
  lua_pushinteger(L, b->size);
  lua_rawseti(L, -2, RUN_SIZE);
  lua_pushinteger(L, (lua_Integer)id);
  lua_rawseti(L, -2, RUN_ID);
  lua_rawgeti(L, LUA_REGISTRYINDEX, b->ref_ref);
  lua_rawseti(L, -2, RUN_BOX);
  int rec = lua_gettop(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, b->ring_ref);
  int ring = lua_gettop(L);
  int slot = (int)((b->nruns - 1) % b->keep + 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, b->runs_ref);
  int runs = lua_gettop(L);
  lua_rawgeti(L, ring, slot);
  if (!lua_isnil(L, -1)) { /* pushed out */
    lua_pushnil(L);
    lua_rawset(L, runs);
  } else {
    lua_pop(L, 1);
  }
  lua_pushinteger(L, (lua_Integer)id);
  lua_rawseti(L, ring, slot);
  lua_pushvalue(L, rec);
  lua_rawseti(L, runs, (int)id);
  lua_pushinteger(L, (lua_Integer)id);
  return 1;
}

static int l_cblock_getresult(lua_State *L) {
  const char *method = "tunnel.Block:getResult";
  l_cblock_t *b = check_cblock(L, method);
  lua_Integer id = lua_isnoneornil(L, 2)
                       ? (lua_Integer)b->last
                       : tn_l_checkinteger(L, 2, method, "run id");
  return push_result(L, b, id, method);
}

static int l_cblock_synchronize(lua_State *L) {
  const char *method = "tunnel.Block:synchronize";
  l_cblock_t *b = check_cblock(L, method);
  double timeout = tn_l_opttimeout(L, 2, method);
  if (b->h != NULL && b->last > 0) {
    int rc = tn_cblock_wait(b->h, b->last, timeout);
    if (rc != TN_OK && rc != TN_ETIMEDOUT) return tn_l_coreerror(L, method, rc);
  }
  return push_result(L, b, (lua_Integer)b->last, method);
}

static int l_cblock_terminate(lua_State *L) {
  const char *method = "tunnel.Block:terminate";
  l_cblock_t *b = check_cblock(L, method);
  if (b->h != NULL && !b->terminated) {
    if (b->last > 0) {
      int rc = tn_cblock_wait(b->h, b->last, TN_FOREVER);
      if (rc != TN_OK) return tn_l_coreerror(L, method, rc);
    }
    int rc = tn_cblock_terminate(b->h);
    if (rc != TN_OK) return tn_l_coreerror(L, method, rc);
    b->terminated = 1;
  }
  int n = push_result(L, b, (lua_Integer)b->last, method);
  report_unread(L, b);
  b->report = 0; /* reported once */
  return n;
}

static int l_cblock_cancel(lua_State *L) {
  const char *method = "tunnel.Block:cancel";
  l_cblock_t *b = check_cblock(L, method);
  lua_Integer id = 0;
  if (!lua_isnoneornil(L, 2)) {
    id = tn_l_checkinteger(L, 2, method, "run id");
    if (id < 1)
      return tn_l_error(L, method, "run id must be >= 1 (got %d)", (int)id);
  }
  int reached = 0;
  if (b->h != NULL && (lua_Integer)b->last >= id && b->last > 0) {
    int rc = tn_cblock_cancel(b->h, (unsigned long)id, &reached);
    if (rc != TN_OK) return tn_l_coreerror(L, method, rc);
  }
  lua_pushinteger(L, reached);
  return 1;
}

/* Cancel this client's kept runs (the last `keep`), not the other
** clients' of the block: they may still wait for theirs. */
static void cancel_own(lua_State *L, l_cblock_t *b) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, b->ring_ref);
  lua_Integer first = b->nruns > b->keep ? b->nruns - b->keep + 1 : 1;
  for (lua_Integer k = first; k <= b->nruns; k++) {
    lua_rawgeti(L, -1, (int)((k - 1) % b->keep + 1));
    lua_Integer id = lua_tointeger(L, -1);
    lua_pop(L, 1);
    int reached;
    if (id > 0) tn_cblock_cancel(b->h, (unsigned long)id, &reached);
  }
  lua_pop(L, 1);
}

/*
** The close (__gc): this client's jobs finish, then the block is
** terminated. After a Ctrl-C (now or before) it cancels them instead and
** gives them CLOSE_GRACE to end; so it does when nobody can run them: no
** live worker on the cluster and none holding a slot of the block, at
** CLOSE_UNSERVED checks in a row, CLOSE_CHECK apart (a collection, often
** at exit, must not wait for a worker that may never come, yet a worker
** restarting takes a few seconds; a lost worker's jobs end by themselves,
** reported by the waits once its lease runs out). Only this client's runs
** are cancelled. A failure to reach the server is written to stderr (a
** collection cannot raise).
*/
static void cblock_close(lua_State *L, l_cblock_t *b) {
  int rc = TN_OK, unserved = 0, served;
  if (b->last > 0) {
    double check = tn_clock() + CLOSE_CHECK;
    while (!tn_l_interrupted() && unserved < CLOSE_UNSERVED) {
      rc = tn_cblock_wait(b->h, b->last, CLOSE_TICK);
      if (rc != TN_ETIMEDOUT) break;
      if (tn_clock() < check) continue;
      check = tn_clock() + CLOSE_CHECK;
      if (tn_cblock_served(b->h, &served) == TN_OK)
        unserved = served ? 0 : unserved + 1;
    }
    if (unserved == CLOSE_UNSERVED)
      fprintf(stderr, "tunnel.Block: cluster block '%s' at its close: no "
              "worker serves it: its queued jobs are cancelled\n", b->name);
    if (tn_l_interrupted() || unserved == CLOSE_UNSERVED ||
        rc == TN_EINTR || rc == TN_ECANCELED) {
      cancel_own(L, b);
      double end = tn_clock() + CLOSE_GRACE;
      do {
        rc = tn_cblock_wait(b->h, b->last, CLOSE_TICK);
      } while (rc == TN_ETIMEDOUT && tn_clock() < end);
    }
  }
  if (rc == TN_OK) rc = tn_cblock_terminate(b->h);
  if (rc != TN_OK && rc != TN_ETIMEDOUT)
    fprintf(stderr, "tunnel.Block: cluster block '%s' at its close: %s\n",
            b->name,
            tn_last_error()[0] != '\0' ? tn_last_error() : tn_strerror(rc));
}

static int l_cblock_gc(lua_State *L) {
  l_cblock_t *b = lua_touserdata(L, 1);
  if (b->h != NULL) {
    if (!b->terminated) cblock_close(L, b);
    report_unread(L, b);
    tn_cblock_free(b->h);
    b->h = NULL;
  }
  free(b->name);
  b->name = NULL;
  luaL_unref(L, LUA_REGISTRYINDEX, b->args_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, b->runs_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, b->ring_ref);
  if (b->ref_ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, b->ref_ref);
    cb_ref_t *ref = lua_touserdata(L, -1);
    if (ref != NULL) ref->b = NULL;
    lua_pop(L, 1);
    luaL_unref(L, LUA_REGISTRYINDEX, b->ref_ref);
  }
  b->args_ref = b->runs_ref = b->ring_ref = b->ref_ref = LUA_NOREF;
  return 0;
}

static int l_cblock_len(lua_State *L) {
  l_cblock_t *b = check_cblock(L, "tunnel.Block:__len");
  lua_pushinteger(L, b->size);
  return 1;
}

static int l_cblock_index(lua_State *L) {
  l_cblock_t *b = check_cblock(L, "tunnel.Block:__index");
  const char *key = lua_tostring(L, 2);
  if (key != NULL && strcmp(key, "size") == 0) {
    lua_pushinteger(L, b->size);
    return 1;
  }
  if (key != NULL && strcmp(key, "name") == 0) {
    lua_pushstring(L, b->name != NULL ? b->name : "");
    return 1;
  }
  lua_pushvalue(L, 2);
  lua_rawget(L, lua_upvalueindex(1));
  return 1;
}

static int l_cblock_tostring(lua_State *L) {
  l_cblock_t *b = check_cblock(L, "tunnel.Block:__tostring");
  lua_pushfstring(L, "tunnel.Block: %p (cluster block '%s', %d slots%s)",
                  (void *)b, b->name != NULL ? b->name : "?", b->size,
                  b->h == NULL || b->terminated ? ", terminated" : "");
  return 1;
}

static const luaL_Reg cblock_methods[] = {
    {"add", l_cblock_add},
    {"run", l_cblock_run},
    {"getResult", l_cblock_getresult},
    {"synchronize", l_cblock_synchronize},
    {"terminate", l_cblock_terminate},
    {"cancel", l_cblock_cancel},
    {NULL, NULL}};

/* The class's metatable, registered once per state. */
static void open_cblock(lua_State *L) {
  if (luaL_newmetatable(L, CBLOCK_MT)) {
    lua_newtable(L);
    tn_setfuncs(L, cblock_methods);
    lua_pushcclosure(L, l_cblock_index, 1);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_cblock_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, l_cblock_len);
    lua_setfield(L, -2, "__len");
    lua_pushcfunction(L, l_cblock_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushliteral(L, "locked");
    lua_setfield(L, -2, "__metatable");
  }
  lua_pop(L, 1);
}
