/*
** main.c - the `tunnel` command: tools around tunnel.Cluster.
**
**   tunnel [--help] [--version] COMMAND [ARGS...]
**   tunnel help [COMMAND]
**
** Commands (one file each): logs (logs.c), status (status.c), worker
** (launch.c: it runs `tunnel-worker-<lua>`, worker.c, the worker built for
** one Lua; this command itself runs no Lua).
*/
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char main_help[] =
    "usage: tunnel [--help] [--version] COMMAND [ARGS...]\n"
    "\n"
    "Tools for programs that share tunnel structures through Redis\n"
    "(tunnel.Cluster).\n"
    "\n"
    "Commands:\n"
    "  worker URL      run the jobs of cluster blocks (cluster:Block)\n"
    "  status URL      the workers, blocks, queued jobs and failures\n"
    "  logs URL NAME   follow what the cluster Printer NAME prints\n"
    "  help [COMMAND]  this help, or the help of COMMAND\n"
    "\n"
    "Options:\n"
    "  -h, --help      print this help and exit\n"
    "  -V, --version   print the version of tunnel and exit\n"
    "\n" URL_FORMS
    "\n"
    "'tunnel COMMAND --help' describes a command.\n";

typedef struct command {
  const char *name;
  int (*run)(int argc, char **argv);
  const char *help;
} command_t;

static const command_t commands[] = {
    {"worker", tn_cli_worker, tn_cli_worker_help},
    {"status", tn_cli_status, tn_cli_status_help},
    {"logs", tn_cli_logs, tn_cli_logs_help},
    {NULL, NULL, NULL}};

static const command_t *find(const char *name) {
  for (const command_t *c = commands; c->name != NULL; c++)
    if (strcmp(c->name, name) == 0) return c;
  return NULL;
}

int main(int argc, char **argv) {
  static const struct option options[] = {
      {"help", no_argument, NULL, 'h'},
      {"version", no_argument, NULL, 'V'},
      {NULL, 0, NULL, 0}};
  static char self[] = "tunnel"; /* getopt's messages name it so */
  int opt;
  argv[0] = self;
  /* '+': stop at the command; its options are its own. */
  while ((opt = getopt_long(argc, argv, "+hV", options, NULL)) != -1) {
    switch (opt) {
    case 'h': fputs(main_help, stdout); return 0;
    case 'V':
      printf("tunnel %s\n", TN_VERSION);
      return 0;
    default: tn_cli_usage_hint(NULL);
    }
  }
  if (optind >= argc) tn_cli_usage_error(NULL, "%s", "missing COMMAND");
  const char *name = argv[optind];
  if (strcmp(name, "help") == 0) {
    if (optind + 1 >= argc) {
      fputs(main_help, stdout);
      return 0;
    }
    const command_t *c = find(argv[optind + 1]);
    if (c == NULL)
      tn_cli_usage_error(NULL, "unknown command '%s'", argv[optind + 1]);
    fputs(c->help, stdout);
    return 0;
  }
  const command_t *c = find(name);
  if (c == NULL) tn_cli_usage_error(NULL, "unknown command '%s'", name);
  /* The command's own argv, named "tunnel logs" in getopt's messages. */
  int n = argc - optind;
  char **sub = calloc((size_t)n + 1, sizeof *sub);
  if (sub == NULL) return 1;
  char prog[64];
  snprintf(prog, sizeof prog, "tunnel %s", name);
  sub[0] = prog;
  for (int i = 1; i < n; i++) sub[i] = argv[optind + i];
  int rc = c->run(n, sub);
  free(sub);
  return rc;
}
