/*
** fuzz_decode.c - libFuzzer target for the parsers of outside bytes: the
** codec's decoder (tn_l_decode_bytes) and Serializer:load's header.
**
** Input: a raw payload, i.e. what follows the Serializer header (the codec
** bytes of one or more values). The header ends in a SipHash check keyed
** with a random per-process key, which no fuzzer can forge; a string whose
** check fails is decoded as foreign bytes (TN_DECODE_FOREIGN: bytecode
** refused, modules looked up in package.loaded only), which this target
** does with every input; it decodes each input as data only too
** (TN_DECODE_DATA, what trusted = false does: no function, module or
** globals). fuzz/corpus holds such payloads, made by fuzz/make_corpus.lua
** from Serializer:save with the 15-byte header cut off.
**
** Each input is also handed whole to Serializer:load, which covers the
** header checks (magic, version, flavour, flags, token) before decoding.
**
** The state is made once: the standard libraries (so MODULE and CFIELD tags
** find string, table, ...), the tunnel module (so OBJECT tags make boxes),
** a class registered as "P" (so CLASS tags find one; see make_corpus.lua),
** and a blob with two object references (a deque and a counter) that the
** OBJECT indexes 0 and 1 refer to. After each input the stack is emptied
** and, every 64 inputs, the garbage collector runs in full: everything the
** decoder allocates belongs to the state, so LeakSanitizer (libFuzzer's
** -detect_leaks) and the final lua_close would show any C-side leak.
**
** Linking. The harness links only Lua; the module is the very core.so
** that `make module` builds (with -fsanitize=fuzzer-no-link,address,
** undefined), loaded with dlopen(RTLD_GLOBAL) before fuzzing starts, so
** libFuzzer counts its coverage and the harness never has to follow the
** module's link line. TN_FUZZ_MODULE is its path (set by mk/check.mk).
**
** Expected failures are Lua errors ("corrupt value (...)"), caught by
** lua_pcall; a crash, an out-of-bounds read (ASan), undefined behaviour
** (UBSan, no recovery), a leak or a timeout (-timeout) is a finding.
*/
#include <dlfcn.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "codec.h"

#ifndef TN_FUZZ_MODULE
#define TN_FUZZ_MODULE "build-fuzz/lua5.4/tunnel/core.so"
#endif

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static lua_State *L;
static tn_blob_t *refs; /* two objects for OBJECT tags */
static unsigned long runs;

/* The module's functions, found with dlsym. */
static int (*decode_bytes)(lua_State *, const void *, size_t,
                           const tn_blob_t *, int, const char *);
static void (*blob_release)(tn_blob_t *);

static void *need(void *lib, const char *name) {
  void *f = dlsym(lib, name);
  if (f == NULL) {
    fprintf(stderr, "fuzz_decode: %s not in %s\n", name, TN_FUZZ_MODULE);
    abort();
  }
  return f;
}

/* decode(lightuserdata data, integer size, integer trust): the values,
** or an error. */
static int l_decode(lua_State *S) {
  const void *p = lua_touserdata(S, 1);
  size_t n = (size_t)lua_tointeger(S, 2);
  int trust = (int)lua_tointeger(S, 3);
  lua_settop(S, 0);
  return decode_bytes(S, p, n, refs, trust, "fuzz");
}

static void cleanup(void) {
  if (L != NULL) lua_close(L);
  L = NULL;
  blob_release(refs);
  refs = NULL;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  const char *path = getenv("TN_FUZZ_MODULE");
  if (path == NULL) path = TN_FUZZ_MODULE;
  void *lib = dlopen(path, RTLD_NOW | RTLD_GLOBAL);
  if (lib == NULL) {
    fprintf(stderr, "fuzz_decode: %s\n", dlerror());
    abort();
  }
  *(void **)&decode_bytes = need(lib, "tn_l_decode_bytes");
  *(void **)&blob_release = need(lib, "tn_blob_release");
  lua_CFunction open_core;
  *(void **)&open_core = need(lib, "luaopen_tunnel_core");
  int (*deque_new)(size_t, tn_deque_t **);
  int (*counter_new)(int64_t, tn_counter_t **);
  tn_blob_t *(*blob_new)(const void *, size_t, tn_object_t *const *, size_t);
  void (*object_release)(tn_object_t *);
  *(void **)&deque_new = need(lib, "tn_deque_new");
  *(void **)&counter_new = need(lib, "tn_counter_new");
  *(void **)&blob_new = need(lib, "tn_blob_new");
  *(void **)&object_release = need(lib, "tn_object_release");

  L = luaL_newstate();
  if (L == NULL) abort();
  luaL_openlibs(L);
  /* require('tunnel.core') without a search: the objects are linked in. */
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "preload");
  lua_pushcfunction(L, open_core);
  lua_setfield(L, -2, "tunnel.core");
  lua_pop(L, 2);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "tunnel.core");
  lua_call(L, 1, 1);
  lua_setglobal(L, "tunnel");

  tn_deque_t *d;
  tn_counter_t *c;
  if (deque_new(TN_UNBOUNDED, &d) != TN_OK || counter_new(7, &c) != TN_OK)
    abort();
  tn_object_t *objs[2] = {TN_OBJECT(d), TN_OBJECT(c)};
  refs = blob_new("", 0, objs, 2);
  if (refs == NULL) abort();
  object_release(objs[0]); /* the blob holds them now */
  object_release(objs[1]);

  /* load(s): tunnel.Serializer():load(s), errors caught by the caller. */
  if (luaL_dostring(L, "local s = tunnel.Serializer()\n"
                       "function fuzz_load(b) return s:load(b) end\n"
                       "tunnel.register('P', {__index = {}})") != 0)
    abort();
  atexit(cleanup);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const int trusts[] = {TN_DECODE_FOREIGN, TN_DECODE_DATA};
  for (int i = 0; i < 2; i++) {
    lua_pushcfunction(L, l_decode);
    lua_pushlightuserdata(L, (void *)data);
    lua_pushinteger(L, (lua_Integer)size);
    lua_pushinteger(L, trusts[i]);
    (void)lua_pcall(L, 3, LUA_MULTRET, 0);
    lua_settop(L, 0);
  }

  lua_getglobal(L, "fuzz_load");
  lua_pushlstring(L, (const char *)data, size);
  (void)lua_pcall(L, 1, 1, 0);
  lua_settop(L, 0);

  if (++runs % 64 == 0) lua_gc(L, LUA_GCCOLLECT, 0);
  return 0;
}
