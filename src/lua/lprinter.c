/*
** lprinter.c - tunnel.Printer: output that never interleaves across
** threads, the binding of the core printer (tn_printer_*).
**
** print and write build their whole output in one luaL_Buffer first and
** hand it to the core in one tn_printer_write, so a line is written whole
** (the printer's lock is held for the write only, never while Lua code
** such as a __tostring runs). access holds the printer around a callback;
** the printer's lock is recursive for its holder, so the callback may
** print through it.
**
** Caveat: printAsync formats its arguments (running any __tostring) before
** it finds the printer busy.
*/
#include "ltunnel.h"

#define PRINTER "tunnel.Printer"
#define M(name) PRINTER ":" name

static tn_printer_t *check_printer(lua_State *L, const char *method) {
  return (tn_printer_t *)tn_l_checkobject(L, 1, method);
}

/* tunnel.Printer() -> a printer on stdout. */
static int l_printer_new(lua_State *L) {
  tn_printer_t *p;
  int rc = tn_printer_new(NULL, &p);
  if (rc != TN_OK) return tn_l_coreerror(L, PRINTER, rc);
  tn_l_pushnew(L, TN_OBJECT(p));
  return 1;
}

/* Write the string on top of the stack whole -> true, or nil if busy. */
static int printer_flush(lua_State *L, tn_printer_t *p, const char *method,
                         double timeout) {
  size_t len;
  const char *s = lua_tolstring(L, -1, &len);
  int rc = tn_printer_write(p, s, len, timeout);
  if (tn_l_waited(rc)) {
    lua_pushnil(L);
    return 1;
  }
  if (rc != TN_OK) return tn_l_coreerror(L, method, rc);
  lua_pushboolean(L, 1);
  return 1;
}

/* print(...) / printer(...): like print, tostring of each argument joined
** by tabs, then a newline. */
static int printer_print(lua_State *L, const char *method, double timeout) {
  tn_printer_t *p = check_printer(L, method);
  int n = lua_gettop(L);
  luaL_Buffer buf;
  luaL_buffinit(L, &buf);
  for (int i = 2; i <= n; i++) {
    if (i > 2) luaL_addchar(&buf, '\t');
    tn_tolstring(L, i, NULL);
    luaL_addvalue(&buf);
  }
  luaL_addchar(&buf, '\n');
  luaL_pushresult(&buf);
  return printer_flush(L, p, method, timeout);
}

static int l_printer_print(lua_State *L) {
  return printer_print(L, M("print"), TN_FOREVER);
}

static int l_printer_printasync(lua_State *L) {
  return printer_print(L, M("printAsync"), TN_TRY);
}

/* write(...): like io.write, strings and numbers only. */
static int printer_write(lua_State *L, const char *method, double timeout) {
  tn_printer_t *p = check_printer(L, method);
  int n = lua_gettop(L);
  for (int i = 2; i <= n; i++) { /* check all before writing anything */
    int t = lua_type(L, i);
    if (t != LUA_TSTRING && t != LUA_TNUMBER)
      return tn_l_error(L, method,
                        "argument #%d must be a string or a number (got %s)",
                        i - 1, luaL_typename(L, i));
  }
  luaL_Buffer buf;
  luaL_buffinit(L, &buf);
  for (int i = 2; i <= n; i++) {
    if (lua_type(L, i) == LUA_TNUMBER) {
      char num[TN_NUMBUF];
      luaL_addlstring(&buf, num, (size_t)tn_numbertostring(L, i, num));
    } else {
      size_t len;
      const char *s = lua_tolstring(L, i, &len);
      luaL_addlstring(&buf, s, len);
    }
  }
  luaL_pushresult(&buf);
  return printer_flush(L, p, method, timeout);
}

static int l_printer_write(lua_State *L) {
  return printer_write(L, M("write"), TN_FOREVER);
}

static int l_printer_writeasync(lua_State *L) {
  return printer_write(L, M("writeAsync"), TN_TRY);
}

/* access(callback) -> the callback's results, holding the printer. An
** error in the callback releases it and is re-raised. */
static int printer_access(lua_State *L, const char *method, double timeout) {
  tn_printer_t *p = check_printer(L, method);
  if (lua_type(L, 2) != LUA_TFUNCTION)
    return tn_l_error(L, method, "callback must be a function (got %s)",
                      luaL_typename(L, 2));
  lua_settop(L, 2);
  int rc = tn_printer_lock(p, timeout);
  if (tn_l_waited(rc)) {
    lua_pushnil(L);
    return 1;
  }
  if (rc != TN_OK) return tn_l_coreerror(L, method, rc);
  lua_pushvalue(L, 2);
  int status = lua_pcall(L, 0, LUA_MULTRET, 0);
  tn_printer_unlock(p);
  if (status != 0) return lua_error(L);
  return lua_gettop(L) - 2;
}

static int l_printer_access(lua_State *L) {
  return printer_access(L, M("access"), TN_FOREVER);
}

static int l_printer_accessasync(lua_State *L) {
  return printer_access(L, M("accessAsync"), TN_TRY);
}

static const luaL_Reg printer_methods[] = {
    {"print", l_printer_print},
    {"printAsync", l_printer_printasync},
    {"write", l_printer_write},
    {"writeAsync", l_printer_writeasync},
    {"access", l_printer_access},
    {"accessAsync", l_printer_accessasync},
    {NULL, NULL}};

static const luaL_Reg printer_meta[] = {{"__call", l_printer_print},
                                        {NULL, NULL}};

static const tn_l_class_t printer_class = {
    TN_TYPE_PRINTER, PRINTER, printer_methods, printer_meta};

void tn_l_open_printer(lua_State *L) {
  tn_l_newclass(L, &printer_class);
  lua_pushcfunction(L, l_printer_new);
  lua_setfield(L, -2, "Printer");
}
