/*
** lruns.c - the result and status tables of a Block's run, shared by the
** in-process Block (lblock.c) and cluster:Block (lcblock.c): plain tables
** that carry, while some slot is pending, a metatable whose __index fills
** a slot done since, and whose __len, __pairs and __ipairs go over every
** slot (the block's size), a pending one as nil, as the original's
** Vectors iterated (where Lua honours them: __len and __pairs from 5.2,
** tunnel.compat for both).
*/
#include "ltunnel.h"

/* __len (upvalue 1: the size). */
static int l_run_len(lua_State *L) {
  lua_pushvalue(L, lua_upvalueindex(1));
  return 1;
}

/* The iterator of __pairs/__ipairs: (t, i) -> i + 1, t[i + 1] up to the
** size (upvalue 1), nils included; through __index, so a slot done since
** shows. */
static int l_run_next(lua_State *L) {
  lua_Integer i = lua_tointeger(L, 2) + 1;
  if (i > lua_tointeger(L, lua_upvalueindex(1))) return 0;
  lua_pushinteger(L, i);
  lua_pushinteger(L, i);
  lua_gettable(L, 1);
  return 2;
}

static int l_run_pairs(lua_State *L) {
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_pushcclosure(L, l_run_next, 1);
  lua_pushvalue(L, 1);
  lua_pushinteger(L, 0);
  return 3;
}

void tn_l_run_tables(lua_State *L, int rec, int size, int rtab,
                     lua_CFunction index) {
  lua_createtable(L, 0, 4); /* their metatable */
  lua_pushvalue(L, rec);
  lua_pushcclosure(L, index, 1);
  lua_setfield(L, -2, "__index");
  lua_pushinteger(L, size);
  lua_pushcclosure(L, l_run_len, 1);
  lua_setfield(L, -2, "__len");
  lua_pushinteger(L, size);
  lua_pushcclosure(L, l_run_pairs, 1);
  lua_pushvalue(L, -1);
  lua_setfield(L, -3, "__ipairs");
  lua_setfield(L, -2, "__pairs");
  for (int field = rtab; field <= rtab + 1; field++) {
    lua_createtable(L, size, 0);
    lua_pushvalue(L, -2);
    lua_setmetatable(L, -2);
    lua_rawseti(L, rec, field);
  }
  lua_pop(L, 1);
}
