/*
** ltunnel.h - what the binding's files share: boxes (the userdata that
** stand for shared objects in a Lua state), class registration, argument
** checks with errors that name the method, and the value codec.
**
** Method names in errors are the full Lua name, e.g. "tunnel.Vector:set".
*/
#ifndef TN_LTUNNEL_H
#define TN_LTUNNEL_H

#include "compat.h"
#include "tunnel.h"

/*
** A box: the userdata for a shared object. It holds one reference, dropped
** by __gc. One box per object per state (a weak cache), so `==` and table
** keys work as users expect.
*/
typedef struct tn_box {
  tn_object_t *object;
} tn_box_t;

/*
** A class of boxed objects: the metatable `name` ("tunnel.Vector") for
** objects of `type`, with the metamethods `meta` and the methods `methods`.
** Every one of those functions gets two upvalues: 1 the metatable (what
** tn_l_checkobject compares with), 2 the methods table (for a custom
** __index). __index is the methods table unless `meta` has its own. __gc,
** __eq and a __tostring ("tunnel.Vector: 0x...") are added where `meta` has
** none. The metatable's __name is `name`. A `meta` entry "__init" is not a
** metamethod: it is called once the metatable is built (its upvalues give
** it the metatable and the methods table), then removed; the Array's
** installs LuaJIT's fast path there (src/lua/larray.c).
*/
typedef struct tn_l_class {
  tn_type_t type;
  const char *name;
  const luaL_Reg *methods;
  const luaL_Reg *meta;
} tn_l_class_t;

/* Register class `c` (static: the state keeps the pointer). Its metatable
** is built the first time an object of its type is pushed. */
void tn_l_newclass(lua_State *L, const tn_l_class_t *c);

/* Push the box of `o` (creating it, with a new reference, if the state has
** none). */
void tn_l_pushobject(lua_State *L, tn_object_t *o);

/* Push the box of a new object, handing it the creator's reference (a
** constructor's last step). */
void tn_l_pushnew(lua_State *L, tn_object_t *o);

/* The object boxed at `idx`, or NULL if that is not a tunnel object. */
tn_object_t *tn_l_toobject(lua_State *L, int idx);

/*
** The object at `idx` (the self of `method`), checked against the
** metatable in upvalue 1: so only functions registered by tn_l_newclass
** may call this. Else an error: "tunnel.Vector:pushBack: self is a number,
** not a tunnel.Vector (call with ':')".
*/
tn_object_t *tn_l_checkobject(lua_State *L, int idx, const char *method);

/* Raise "<method>: <formatted message>". Never returns. */
int tn_l_error(lua_State *L, const char *method, const char *fmt, ...);

/* Raise the error for a failed core call: "<method>: <tn_strerror(err)>". */
int tn_l_coreerror(lua_State *L, const char *method, int err);

/* After a core call that returns no code (counter, size, close): raise the
** failure a cluster object recorded (tn_error_take), if any. */
void tn_l_checkpending(lua_State *L, const char *method);

/*
** The optional timeout argument at `idx`: nil -> TN_FOREVER, a number >= 0
** (math.huge waits forever), else an error naming `method`.
*/
double tn_l_opttimeout(lua_State *L, int idx, const char *method);

/*
** An integer argument: a Lua integer, or a float with an exact integer
** value. Errors name `method` and `what` ("index must be an integer").
*/
lua_Integer tn_l_checkinteger(lua_State *L, int idx, const char *method,
                              const char *what);

/* ---- pieces every class uses ------------------------------------------- */

/* A value argument must be there, even if nil: `v:set(i)` is more likely a
** mistake than a store of nil. */
void tn_l_checkvalue(lua_State *L, int idx, const char *method);

void tn_l_checkcallback(lua_State *L, int idx, const char *method);

/* Push the one value of `b` (NULL: nil) and drop the reference, also
** when decoding raises (the error then goes on). */
void tn_l_pushblob(lua_State *L, tn_blob_t *b, const char *method);

/* Decode the one value of `b` under a protected call, keeping the
** reference: 0 with the value pushed, or a Lua status with the error
** pushed. For calls that took `b` out of a structure and must put it back
** when the receiver cannot decode it (see docs/guarantees.md). */
int tn_l_trydecode(lua_State *L, tn_blob_t *b, const char *method);

/*
** Push the one value of `b` (NULL: nil) and drop the reference: 0. Or,
** when this state cannot decode it, keep the reference and push the error:
** a Lua status (the caller puts `b` back or releases it, then raises).
** One scalar (nil, a boolean, a number, a short string) needs no
** protected call: it can only fail for want of memory, and is copied out
** first, so that even then the reference is dropped (and the value lost).
*/
int tn_l_takeblob(lua_State *L, tn_blob_t *b, const char *method);

/*
** Make a Block run's result and status tables (lruns.c) and store them in
** the run's record (at stack index `rec`) at `rtab` and `rtab + 1`: plain
** tables for `size` slots with a metatable, while some slot is pending,
** whose __index is `index` closed over the record (it fills a slot done
** since, then returns it raw), and whose __len, __pairs and __ipairs go
** over slots 1..size.
*/
void tn_l_run_tables(lua_State *L, int rec, int size, int rtab,
                     lua_CFunction index);

/* Push `count` nils (a nil status) and return `count`. */
int tn_l_pushnils(lua_State *L, int count);

/* Whether a core code means the call did not act because it would have had
** to wait (TN_TRY) or its timeout ran out: a nil status, not an error. */
static inline int tn_l_waited(int rc) {
  return rc == TN_EAGAIN || rc == TN_ETIMEDOUT;
}

/*
** One value of a structure, as the read/write callbacks see it: `get`
** gives a new reference to it (NULL: nil), `set` stores a blob there
** (taking it on TN_OK). `self` and `key`/`len` are the callee's.
*/
typedef struct tn_l_slot {
  int (*get)(const struct tn_l_slot *s, tn_blob_t **out, double timeout);
  int (*set)(const struct tn_l_slot *s, tn_blob_t *b);
  void *self;
  const void *key;
  size_t len;
} tn_l_slot_t;

/*
** The read/write protocol of Vector and Hash: with the callback at stack
** index 3 (the top), take `o`'s callback lock (writer if `write`; TN_TRY
** for an Async twin), get the slot's value, call callback(value) under
** lua_pcall, and for a write store its first result in the slot; then
** unlock. The callback runs outside every structure mutex, so it may use
** any tunnel object. An error in it (or in decoding and encoding) releases
** the lock and is raised again with the same value. Returns the core's
** code: TN_OK with the callback's results pushed (a write: its first
** result, `*nres` = 1), or a failure with nothing pushed and the callback
** not run.
*/
int tn_l_callback(lua_State *L, tn_object_t *o, const tn_l_slot_t *slot,
                  int write, double timeout, const char *method, int *nres);

/* Add `s` to `buf` quoted like Lua 5.4's %q, the same on every version
** (for toString renderings). */
void tn_l_addquoted(luaL_Buffer *buf, const char *s, size_t len);

/* ---- maps (lkey.c): keys and snapshots of Hash and shared tables ------- */

/* The first byte of a key that is not a plain string (see lkey.c). */
enum {
  TN_KEY_STRING = 0x00, /* a string whose own first byte is <= TN_KEY_MAX */
  TN_KEY_FALSE = 0x01,
  TN_KEY_TRUE = 0x02,
  TN_KEY_INT = 0x03,
  TN_KEY_FLOAT = 0x04,
  TN_KEY_MAX = 0x04
};

/* A key ready for the core: `data` points into `buf`, or into the Lua
** string (or a userdata copy) held at the key's own stack slot. */
typedef struct tn_l_key {
  const void *data;
  size_t len;
  unsigned char buf[16];
} tn_l_key_t;

/*
** Encode the key at absolute index `idx` into `k` and return 1. A nil or
** NaN key returns 0 unless `strict` (a read finds nothing under it, as in a
** plain table); with `strict`, and for any type other than string, number
** and boolean, an error names `method`. The rare string that needs a prefix
** and does not fit `buf` is copied into a userdata that REPLACES the string
** at `idx` (anchoring it): pass a copy of the key if the slot must stay
** (lua_next).
*/
int tn_l_checkkey(lua_State *L, int idx, tn_l_key_t *k, const char *method,
                  int strict);

/* The key of an integer (what tn_l_checkkey gives for it). */
void tn_l_intkey(tn_l_key_t *k, int64_t i);

/*
** Push the value under key `k` of `m` (nil when absent) and return TN_OK;
** any other core code with nothing pushed. A small value is copied out of
** the map and decoded from the copy, and a value that is one object this
** state already has a box for is that box: no reference is taken, so
** readers on several threads write nothing they share (tn_map_peek).
*/
int tn_l_pushmapvalue(lua_State *L, tn_map_t *m, const tn_l_key_t *k,
                      double timeout, const char *method);

/*
** Push the value of a peek (tn_map_peek, tn_cell_peek with buf, objs and
** take set): the reference it took, or the copy, or, for one object with
** no box here, what again(q, arg) reads a second time with q->take set.
** TN_OK, or again's failure with nothing pushed.
*/
int tn_l_pushpeek(lua_State *L, tn_peek_t *p,
                  int (*again)(tn_peek_t *q, void *arg), void *arg,
                  const char *method);

/* Push the box this state has for `o` and return 1, or return 0 (no box
** here). `o` is only compared, never used: it may be a dead address. */
int tn_l_pushcachedobject(lua_State *L, const tn_object_t *o);

/* Push the Lua value of an encoded key. */
void tn_l_pushkey(lua_State *L, const void *data, size_t len);

/*
** Push a plain table with the keys and values of a snapshot of `m`
** (shallow: shared objects inside stay shared) and return TN_OK; for an
** Async that would wait (tn_l_waited), return the code with nothing
** pushed. Other failures raise.
*/
int tn_l_pushmap(lua_State *L, tn_map_t *m, double timeout,
                 const char *method);

/* Replace the table on top with an iterator over it, yielding key, value
** (for `for k, v in it do`). */
void tn_l_pushmapiterator(lua_State *L);

/* ---- the value codec (codec.c) ------------------------------------------ */

/*
** Encode the `count` values at stack indexes first..first+count-1 into one
** blob (cycles and shared tables survive across all of them). A single nil
** encodes as NULL. Raises "<method>: cannot send value at <path>: <why>"
** for a value that cannot cross threads, leaving nothing retained.
*/
tn_blob_t *tn_l_encode(lua_State *L, int first, int count,
                       const char *method);

/*
** Push the values of `b` (NULL: one nil) and return how many. Raises
** "<method>: <why>" for bytes that are not a valid encoding.
*/
int tn_l_decode(lua_State *L, const tn_blob_t *b, const char *method);

/* The module's entry point (ltunnel.c); block threads preload it. */
int luaopen_tunnel_core(lua_State *L);

/*
** Make a fresh state what a block thread's is (lblock.c; a worker's slot
** states too, lworker.c): the standard libraries, package.path and cpath
** (NULL: the state's own), `tunnel` loaded and global, the original's
** module names preloaded, __threadid = index, __blocksize = size, and
** tunnel.compat if `compat`. Raises on failure: call it protected.
*/
void tn_l_state_setup(lua_State *T, const char *path, const char *cpath,
                      int index, int size, int compat);

/*
** Classes: one open function per file, called by luaopen_tunnel_core with
** the module table on top of the stack; each sets its constructors there
** (module.Vector = ...) and registers its metatable.
*/

void tn_l_open_vector(lua_State *L);     /* lvector.c */
void tn_l_open_pqueue(lua_State *L);     /* lpqueue.c */
void tn_l_open_barrier(lua_State *L);    /* lbarrier.c */
void tn_l_open_semaphore(lua_State *L);  /* lsemaphore.c */
void tn_l_open_counter(lua_State *L);    /* lcounter.c */
void tn_l_open_printer(lua_State *L);    /* lprinter.c */
void tn_l_open_block(lua_State *L);      /* lblock.c */
void tn_l_open_serializer(lua_State *L); /* lserializer.c */
void tn_l_open_hash(lua_State *L);       /* lhash.c */
void tn_l_open_share(lua_State *L);      /* lshare.c: shared tables, Share,
                                            Atomic */
void tn_l_open_plural(lua_State *L);     /* lplural.c */
void tn_l_open_cluster(lua_State *L);    /* lcluster.c */
void tn_l_open_array(lua_State *L);      /* larray.c */
/* cluster:Array(name [, n [, type]]) with the arguments from 3 (larray.c). */
int tn_l_cluster_array(lua_State *L, tn_cluster_t *c, const char *name,
                       const char *method);

/* lcontrol.c: interrupts and cancellation. */
void tn_l_open_control(lua_State *L); /* the main state's cancel token */
/* Raise "interrupted!" for a wait that ended with TN_EINTR, running the
** interpreter's pending signal hook first. */
int tn_l_raise_interrupted(lua_State *L);
/* A call of the main state is about to wait (tn_l_opttimeout calls it):
** the debug hook it has now is the program's, not an interrupt. */
void tn_l_wait_begins(void);
/* Raise "<method>: cancelled" for a wait that ended with TN_ECANCELED. */
int tn_l_raise_cancelled(lua_State *L, const char *method);
/* Whether a main state's wait was ever interrupted (Ctrl-C), even if the
** program caught it. */
int tn_l_interrupted(void);
/* In a block thread: let tunnel.Block:cancel interrupt running Lua code
** of state T (on), or stop (off, before T closes). */
void tn_l_thread_cancellable(lua_State *T, int on);
/* In a block thread: the job's own code starts (1) or ends (0). */
void tn_l_job_enter(int entering);
/* Push tunnel.cancelled. */
void tn_l_push_cancelled(lua_State *L);

#endif
