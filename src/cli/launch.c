/*
** launch.c - `tunnel worker [--lua LUA] ...`: runs the worker program
** built for that Lua, `tunnel-worker-LUA` (worker.c), in this process
** (exec), with the other arguments. This command runs no Lua itself, so
** one `tunnel` serves every Lua installed: the workers are found next to
** it, as installed (BINDIR/tunnel-worker-lua5.4) or as built
** (B/lua5.4/tunnel-worker beside B/tunnel). Without --lua: the Lua this
** command was built with if its worker is there, else the only one there.
*/
#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

#ifndef TN_CLI_LUA
#define TN_CLI_LUA "lua5.4"
#endif

const char tn_cli_worker_help[] =
    "usage: tunnel worker [--lua LUA] [OPTIONS] URL\n"
    "\n" TN_CLI_WORKER_ABOUT
    "\n" TN_CLI_WORKER_OPTIONS
    "  -h, --help           print this help and exit\n"
    "\n" TN_CLI_WORKER_ENV URL_FORMS;

/* The folder of this program (with a trailing '/'), or "" */
static void self_dir(char *buf, size_t size) {
  char path[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", path, sizeof path - 1);
  buf[0] = '\0';
  if (n <= 0) return;
  path[n] = '\0';
  char *slash = strrchr(path, '/');
  if (slash == NULL) return;
  slash[1] = '\0';
  snprintf(buf, size, "%s", path);
}

static int executable(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISREG(st.st_mode) &&
         access(path, X_OK) == 0;
}

/* The worker program of `lua` next to this one, into buf: 1 if found. */
static int worker_path(const char *lua, char *buf, size_t size) {
  char dir[PATH_MAX];
  self_dir(dir, sizeof dir);
  snprintf(buf, size, "%stunnel-worker-%s", dir, lua);
  if (executable(buf)) return 1;
  snprintf(buf, size, "%s%s/tunnel-worker", dir, lua);
  return executable(buf);
}

/* The Luas that have a worker next to this program, as "a b c" into buf;
** returns how many. */
static int workers(char *buf, size_t size) {
  char dir[PATH_MAX], path[PATH_MAX + 300];
  self_dir(dir, sizeof dir);
  buf[0] = '\0';
  int n = 0;
  DIR *d = opendir(dir[0] ? dir : ".");
  if (d == NULL) return 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    const char *lua = NULL;
    if (strncmp(e->d_name, "tunnel-worker-", 14) == 0) {
      snprintf(path, sizeof path, "%s%s", dir, e->d_name);
      if (executable(path)) lua = e->d_name + 14;
    } else if (e->d_name[0] != '.') {
      snprintf(path, sizeof path, "%s%s/tunnel-worker", dir, e->d_name);
      if (executable(path)) lua = e->d_name;
    }
    if (lua == NULL) continue;
    size_t len = strlen(buf);
    snprintf(buf + len, size - len, "%s%s", n ? " " : "", lua);
    n++;
  }
  closedir(d);
  return n;
}

void tn_cli_print_workers(void) {
  char list[1024];
  if (workers(list, sizeof list) > 0)
    printf("Workers installed beside this tunnel, for: %s\n", list);
  else
    printf("No worker is installed beside this tunnel (tunnel-worker-LUA:\n"
           "make install LUA=...).\n");
}

int tn_cli_worker(int argc, char **argv) {
  /* Take --lua out (it picks the program); the rest goes to it. */
  const char *lua = NULL;
  char **args = calloc((size_t)argc + 1, sizeof *args);
  if (args == NULL) return 1;
  int n = 0;
  args[n++] = argv[0];
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--") == 0) {
      for (; i < argc; i++) args[n++] = argv[i];
      break;
    }
    if ((strcmp(argv[i], "--lua") == 0 || strcmp(argv[i], "-l") == 0) &&
        i + 1 < argc) {
      lua = argv[++i];
    } else if (strncmp(argv[i], "--lua=", 6) == 0) {
      lua = argv[i] + 6;
    } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      fputs(tn_cli_worker_help, stdout);
      printf("\n");
      tn_cli_print_workers();
      free(args);
      return 0;
    } else {
      args[n++] = argv[i];
    }
  }
  char path[PATH_MAX + 64], list[1024];
  int count = workers(list, sizeof list);
  if (lua == NULL) {
    if (worker_path(TN_CLI_LUA, path, sizeof path))
      lua = TN_CLI_LUA;
    else if (count == 1)
      lua = list;
    else if (count == 0)
      tn_cli_usage_error("worker", "%s",
                         "no worker program beside this tunnel "
                         "(tunnel-worker-LUA: make install LUA=...)");
    else
      tn_cli_usage_error("worker", "workers for several Luas (%s): choose "
                         "one with --lua", list);
  }
  if (!worker_path(lua, path, sizeof path)) {
    fprintf(stderr, "tunnel worker: no worker for '%s' beside this tunnel "
            "(there are: %s)\n", lua, count > 0 ? list : "none");
    free(args);
    return 2;
  }
  args[0] = path;
  execv(path, args);
  perror("tunnel worker: exec");
  free(args);
  return 1;
}
