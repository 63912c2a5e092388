/*
** compat.h - every difference between Lua 5.4, 5.3, 5.2, 5.1 and LuaJIT
** that the binding cares about, in one place. Names are tn_-prefixed: LuaJIT already
** declares some 5.2 functions, so we never define lua_* or luaL_* ourselves.
*/
#ifndef TN_COMPAT_H
#define TN_COMPAT_H

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

/*
** The 5.1 ABI. lua5.1 and LuaJIT 2.1 load the same modules, and a module
** built against either's headers must work in both (Debian's luarocks builds
** against the lua5.1 headers for both; a LuaJIT build used to fail in lua5.1
** with `undefined symbol: luaL_traceback`, a lua5.1 build loaded in LuaJIT
** silently copied shared upvalues). So the LuaJIT extensions the binding
** uses are weak references, bound by the dynamic linker when the host
** interpreter has them and NULL when it does not, and which host it is is
** known at run time: luaJIT_setmode is LuaJIT's alone.
*/
#if LUA_VERSION_NUM == 501
LUA_API int luaJIT_setmode(lua_State *L, int idx, int mode);
LUALIB_API void luaL_traceback(lua_State *L, lua_State *L1, const char *msg,
                               int level);
LUA_API void *lua_upvalueid(lua_State *L, int fidx, int n);
LUA_API void lua_upvaluejoin(lua_State *L, int fidx1, int n1, int fidx2,
                             int n2);
LUA_API int lua_loadx(lua_State *L, lua_Reader reader, void *dt,
                      const char *chunkname, const char *mode);
#pragma weak luaJIT_setmode
#pragma weak luaL_traceback
#pragma weak lua_upvalueid
#pragma weak lua_upvaluejoin
#pragma weak lua_loadx
/* Nonzero when the host interpreter is LuaJIT. */
#define tn_is_luajit() (luaJIT_setmode != NULL)
#else
#define tn_is_luajit() 0
#endif

#if LUA_VERSION_NUM >= 502
#define tn_rawlen(L, i) lua_rawlen((L), (i))
#define tn_setfuncs(L, l) luaL_setfuncs((L), (l), 0)
/* Push the global table of L. */
#define tn_pushglobals(L) lua_rawgeti((L), LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS)
#else
#define tn_rawlen(L, i) lua_objlen((L), (i))
#define tn_pushglobals(L) lua_pushvalue((L), LUA_GLOBALSINDEX)
/* luaL_register with a NULL name sets the functions into the table on top. */
#define tn_setfuncs(L, l) luaL_register((L), NULL, (l))
#endif

#if LUA_VERSION_NUM >= 504
#define tn_newuserdata(L, size) lua_newuserdatauv((L), (size), 0)
#else
#define tn_newuserdata(L, size) lua_newuserdata((L), (size))
#endif

#if LUA_VERSION_NUM >= 503
#define TN_HAS_INTEGERS 1
#define tn_isinteger(L, i) lua_isinteger((L), (i))
#else
#define TN_HAS_INTEGERS 0
#define tn_isinteger(L, i) 0
#endif

/* lua_dump's writer lost its `strip` argument before 5.3. */
#if LUA_VERSION_NUM >= 503
#define tn_dump(L, w, d) lua_dump((L), (w), (d), 0)
#else
#define tn_dump(L, w, d) lua_dump((L), (w), (d))
#endif

/* A short name for the flavour, carried with function bytecode (on the 5.1
** ABI, decided at run time: 0x21 is LuaJIT 2.1 bytecode). */
#if LUA_VERSION_NUM == 501
#define TN_LUA_FLAVOUR (tn_is_luajit() ? 0x21 : LUA_VERSION_NUM)
#else
#define TN_LUA_FLAVOUR LUA_VERSION_NUM
#endif

/*
** tn_tolstring: push tostring(v) for the value at `idx` and return it, like
** print does (5.2+ has luaL_tolstring; 5.1 and LuaJIT call the global
** `tostring`, as their print does).
*/
#if LUA_VERSION_NUM >= 502
#define tn_tolstring(L, idx, len) luaL_tolstring((L), (idx), (len))
#else
static inline const char *tn_tolstring(lua_State *L, int idx, size_t *len) {
  if (idx < 0 && idx > LUA_REGISTRYINDEX) idx = lua_gettop(L) + idx + 1;
  lua_getfield(L, LUA_GLOBALSINDEX, "tostring");
  lua_pushvalue(L, idx);
  lua_call(L, 1, 1);
  const char *s = lua_tolstring(L, -1, len);
  if (s == NULL) luaL_error(L, "'tostring' must return a string");
  return s;
}
#endif

/*
** tn_numbertostring: the text io.write gives the number at `idx`, into
** `buf` (at least TN_NUMBUF bytes); returns its length. 5.3+ writes floats
** with LUA_NUMBER_FMT ("1.0" prints as "1"), integers as integers.
*/
#define TN_NUMBUF 64
static inline int tn_numbertostring(lua_State *L, int idx, char *buf) {
#if TN_HAS_INTEGERS
  if (lua_isinteger(L, idx))
    return snprintf(buf, TN_NUMBUF, LUA_INTEGER_FMT,
                    (LUAI_UACINT)lua_tointeger(L, idx));
#endif
  return snprintf(buf, TN_NUMBUF, LUA_NUMBER_FMT,
                  (LUAI_UACNUMBER)lua_tonumber(L, idx));
}

/* Load a binary chunk only (the codec never compiles source text). Plain 5.1
** has no mode argument: it tells text from bytecode by the first byte. */
#if LUA_VERSION_NUM >= 502
#define tn_loadbinary(L, r, d, n) lua_load((L), (r), (d), (n), "b")
#else
#define tn_loadbinary(L, r, d, n)                                            \
  (lua_loadx != NULL ? lua_loadx((L), (r), (d), (n), "b")                    \
                     : lua_load((L), (r), (d), (n)))
#endif

/* Nonzero when upvalues shared by several closures can be re-joined (5.2+,
** LuaJIT; not plain 5.1). */
#if LUA_VERSION_NUM >= 502
#define tn_has_upvaluejoin() 1
#else
#define tn_has_upvaluejoin() (lua_upvalueid != NULL && lua_upvaluejoin != NULL)
#endif

/* A traceback of L1 with `msg` on top: luaL_traceback where it exists
** (5.2+, LuaJIT), debug.traceback on plain 5.1. Pushes one string. */
#if LUA_VERSION_NUM >= 502
#define tn_traceback(L, L1, msg, level) luaL_traceback((L), (L1), (msg), (level))
#else
static inline void tn_traceback(lua_State *L, lua_State *L1, const char *msg,
                                int level) {
  if (luaL_traceback != NULL) {
    luaL_traceback(L, L1, msg, level);
    return;
  }
  (void)L1; /* always L itself in tunnel */
  lua_getglobal(L, "debug");
  lua_getfield(L, -1, "traceback");
  lua_remove(L, -2);
  if (msg != NULL)
    lua_pushstring(L, msg);
  else
    lua_pushliteral(L, "");
  lua_pushinteger(L, level + 1);
  lua_call(L, 2, 1);
}
#endif

#endif
