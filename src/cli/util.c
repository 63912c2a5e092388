/*
** util.c - what every binary of the `tunnel` command shares (cli.h).
*/
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"

void tn_cli_usage_error(const char *command, const char *fmt,
                        const char *arg) {
  fprintf(stderr, "tunnel%s%s: ", command ? " " : "", command ? command : "");
  fprintf(stderr, fmt, arg);
  fprintf(stderr, "\nTry 'tunnel %s%s--help'.\n", command ? command : "",
          command ? " " : "");
  exit(2);
}

void tn_cli_usage_hint(const char *command) {
  fprintf(stderr, "Try 'tunnel %s%s--help'.\n", command ? command : "",
          command ? " " : "");
  exit(2);
}
