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

#endif
