/*
** ljobs.h - what the binding's two sides of distributed blocks share:
** cluster:Block on the client (lcblock.c) and the slot states of `tunnel
** worker` (lworker.c, used by src/cli/worker.c).
*/
#ifndef TN_LJOBS_H
#define TN_LJOBS_H

#include "ltunnel.h"

/*
** What this build's jobs need to run, e.g. "Lua 5.4, codec 1" or
** "LuaJIT 2.1, codec 1": the flavour (bytecode crosses only between equal
** ones) and the blob format (codec.h, TN_CODEC_VERSION).
*/
const char *tn_l_runtime(void);

/* The class name ("tunnel.Vector") of the first in-process object the
** blob refers to, or NULL when every one is a cluster object (nothing
** else can reach other processes). */
const char *tn_l_local_object(const tn_blob_t *b);

/* cluster:Block(name, size [, init] [, options]) with the arguments from 3
** (lcblock.c; called by lcluster.c). `secret` (NULL: none) signs. */
int tn_l_cluster_block(lua_State *L, tn_cluster_t *c, const char *name,
                       const void *secret, size_t secret_len,
                       const char *method);

/* ---- a worker's slot states (lworker.c) --------------------------------- */

/*
** A new state for slot `slot` of `size`, made as a block thread's, then
** init() if given. When init (or the state's setup) fails, the state is
** returned all the same and `*error` is set (malloc'd "init failed: ..."
** with its traceback): the slot's jobs then fail with it. NULL only when
** no state can be made (out of memory; `*error` says so too).
*/
lua_State *tn_l_slot_open(int slot, int size, const tn_blob_t *init,
                          char **error);

/*
** Run `job` (the callback, then its arguments) in T as a block thread
** runs a job. Returns 1 when it returned (`*out`: a blob of the table of
** its results, with n), 0 when it raised (`*out`: a blob of {message,
** traceback = ...}). `*out` is NULL only when out of memory.
*/
int tn_l_slot_run(lua_State *T, const tn_blob_t *job, tn_blob_t **out);

/* A blob of {message, traceback = traceback} made in T (NULL on failure). */
tn_blob_t *tn_l_slot_error(lua_State *T, const char *message,
                           const char *traceback);

/* Close the state (NULL is ignored). */
void tn_l_slot_close(lua_State *T);

#endif
