/*
** compat.h - every difference between Lua 5.4, 5.1 and LuaJIT that the
** binding cares about, in one place. Names are tn_-prefixed: LuaJIT already
** declares some 5.2 functions, so we never define lua_* or luaL_* ourselves.
*/
#ifndef TN_COMPAT_H
#define TN_COMPAT_H

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#if LUA_VERSION_NUM == 501 && defined(__has_include)
#if __has_include(<luajit.h>)
#include <luajit.h>
#endif
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

/* A short name for the flavour, carried with function bytecode. */
#if defined(LUAJIT_VERSION)
#define TN_LUA_FLAVOUR 0x21 /* LuaJIT 2.1 bytecode */
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
#elif defined(LUAJIT_VERSION)
#define tn_loadbinary(L, r, d, n) lua_loadx((L), (r), (d), (n), "b")
#else
#define tn_loadbinary(L, r, d, n) lua_load((L), (r), (d), (n))
#endif

/* Upvalues shared by several closures can be re-joined (5.2+, LuaJIT). */
#if LUA_VERSION_NUM >= 502 || defined(LUAJIT_VERSION)
#define TN_HAS_UPVALUEJOIN 1
#else
#define TN_HAS_UPVALUEJOIN 0
#endif

/* A traceback of L1 with `msg` on top: luaL_traceback where it exists
** (5.2+, LuaJIT), debug.traceback on plain 5.1. Pushes one string. */
#if LUA_VERSION_NUM >= 502 || defined(LUAJIT_VERSION)
#define tn_traceback(L, L1, msg, level) luaL_traceback((L), (L1), (msg), (level))
#else
static inline void tn_traceback(lua_State *L, lua_State *L1, const char *msg,
                                int level) {
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
