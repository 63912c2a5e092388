/*
** cli.h - what the files of the `tunnel` command share (src/cli: main.c,
** util.c, one file per subcommand; worker.c is the `tunnel-worker-<lua>`
** program, which `tunnel worker` runs: launch.c).
**
** Conventions: options by getopt_long (anywhere after the command, `--`
** ends them); --help prints on stdout and exits 0; a usage error prints a
** line and a hint on stderr and exits 2; a failure exits 1. URLs are read
** by the library's parser (tn_url_parse), so every command takes exactly
** the URLs tunnel.Cluster takes.
*/
#ifndef TN_CLI_H
#define TN_CLI_H

#include "tunnel.h"

#define URL_FORMS                                                          \
  "URL is redis://[[user]:password@]host[:port][/db] or\n"                 \
  "unix://[[user]:password@]/path/to/redis.sock[?db=N]; with a user it\n"  \
  "logs in as that ACL user (Redis 6+). Percent-escape '@', ':' and '/'\n" \
  "in the user and password (%40, %3A, %2F).\n"

/* The help of `tunnel worker` (launch.c) and `tunnel-worker-LUA`
** (worker.c), in pieces. */
#define TN_CLI_WORKER_ABOUT                                                  \
  "Run the jobs of the cluster blocks (cluster:Block) on the Redis server\n" \
  "at URL. Each thread serves one slot of a block at a time, with its own\n" \
  "Lua state (globals persist across the slot's jobs while this worker\n"   \
  "holds the slot), and gives it back when the block is terminated or no\n" \
  "job came for the idle time. Every job ends with one status; a job\n"     \
  "running when its worker dies is reported 'worker lost' within the\n"    \
  "block's lease (10 s by default). SIGTERM or SIGINT: finish the running\n" \
  "jobs (up to the grace time), take no new ones, give the slots back and\n" \
  "exit; a second signal: exit at once.\n"
#define TN_CLI_WORKER_OPTIONS                                                \
  "Options:\n"                                                               \
  "  -l, --lua LUA        the Lua to run jobs with: lua5.4, luajit, ...\n"   \
  "                       (one worker program per Lua: tunnel worker\n"     \
  "                       --help lists them)\n"                              \
  "  -p, --prefix PREFIX  the cluster's key prefix (default tunnel:)\n"      \
  "  -t, --threads N      slots served at once (default: the CPUs)\n"        \
  "  -b, --block NAME     serve only this block (repeat for several)\n"      \
  "  -g, --grace SECONDS  how long SIGTERM waits for running jobs\n"         \
  "                       (default 25)\n"                                    \
  "  -i, --idle SECONDS   give a slot back after this long without a job\n"  \
  "                       (default 10)\n"                                    \
  "  -v, --verbose        log every slot taken and given back\n"
#define TN_CLI_WORKER_ENV                                                    \
  "Environment:\n"                                                           \
  "  TUNNEL_SECRET        run only jobs signed with this secret (at least\n" \
  "                       16 bytes); without it, signed jobs are refused\n"  \
  "\n"

/* A usage error: one line naming the problem, a hint, exit status 2. */
void tn_cli_usage_error(const char *command, const char *fmt, const char *arg)
    __attribute__((noreturn));
/* After getopt's own message about a bad option: the hint, exit 2. */
void tn_cli_usage_hint(const char *command) __attribute__((noreturn));

/* launch.c: print the Luas that workers are installed for. */
void tn_cli_print_workers(void);

/* The subcommands: each takes its own argv (argv[0] "tunnel NAME"). */
int tn_cli_logs(int argc, char **argv);
int tn_cli_worker(int argc, char **argv);
int tn_cli_status(int argc, char **argv);
extern const char tn_cli_logs_help[];
extern const char tn_cli_worker_help[]; /* launch.c: its own options */
extern const char tn_cli_status_help[];

#endif
