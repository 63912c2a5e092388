/*
** lua_host.c - a minimal stand-alone Lua interpreter (`host script args...`)
** for the ThreadSanitizer suite.
**
** Why. A sanitized module needs the sanitizer's runtime in the process from
** its start. Preloading libtsan.so into the Debian lua5.4 works for that
** process, but LD_PRELOAD is inherited by every child: specs that start a
** second interpreter go through popen's /bin/sh, and dash and bash crash at
** once with libtsan preloaded (SIGSEGV before main). This host is linked
** with -fsanitize=thread instead, so it carries the runtime itself and no
** environment variable leaks into /bin/sh. It links the distribution's
** uninstrumented liblua5.4 / libluajit-5.1, so reports can only name our
** code or libc.
**
** What it does, as lua.c does for a script: opens the standard libraries,
** sets `arg` (arg[0] the script, arg[1..] its arguments, arg[-1] this
** program), runs the script with the arguments as `...`, prints an error
** with a traceback on stderr and exits 1. No options, no REPL, no LUA_INIT.
** Ctrl-C while the script runs is lua.c's: the handler sets a hook that
** raises "interrupted!" and restores the default action (a second Ctrl-C
** ends the process); the default again once the script is done.
*/
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

/* The message handler: the error with a traceback. */
static int traceback(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL) msg = lua_pushfstring(L, "(error object is a %s value)",
                                         luaL_typename(L, 1));
  luaL_traceback(L, L, msg, 1);
  return 1;
}

static lua_State *global_L;

static void stop_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  lua_sethook(L, NULL, 0, 0);
  luaL_error(L, "interrupted!");
}

static void on_sigint(int sig) {
  signal(sig, SIG_DFL);
  lua_sethook(global_L, stop_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT,
              1);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s script [args...]\n", argv[0]);
    return 2;
  }
  lua_State *L = luaL_newstate();
  if (L == NULL) return 1;
  luaL_openlibs(L);
  lua_createtable(L, argc, 1); /* arg */
  for (int i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - 1);
  }
  lua_setglobal(L, "arg");
  lua_pushcfunction(L, traceback);
  int status = luaL_loadfile(L, argv[1]);
  if (status == 0) {
    luaL_checkstack(L, argc, "too many arguments");
    for (int i = 2; i < argc; i++) lua_pushstring(L, argv[i]);
    global_L = L;
    signal(SIGINT, on_sigint);
    status = lua_pcall(L, argc - 2, 0, 1);
    signal(SIGINT, SIG_DFL);
  }
  if (status != 0) {
    fprintf(stderr, "%s: %s\n", argv[0], lua_tostring(L, -1));
    fflush(stderr);
  }
  lua_close(L);
  return status == 0 ? 0 : 1;
}
