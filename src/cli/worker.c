/*
** worker.c - `tunnel-worker-<lua> URL` (what `tunnel worker` runs): a
** process that runs the jobs of cluster blocks (cluster:Block) with the
** Lua it was built for (the Makefile's LUA; one program per Lua, installed
** side by side).
**
** Threads. Each of --threads N threads claims one slot of a block at a
** time (tn_worker_claim), makes the slot's Lua state (as a block thread's:
** lworker.c), and runs the slot's jobs in order; the state, and so its
** globals, lives while the thread holds the slot. A slot goes back when
** its block is terminated, when no job came for --idle seconds (so a
** fleet serves more slots than it has threads), when its lease was lost,
** or when a job was refused (another runtime, another secret: a worker
** that can run it takes the slot). The library's heartbeat thread renews
** the leases and hands cancel requests to the running jobs.
**
** Signals. Every thread but the main one blocks them; the main thread
** waits for them (sigtimedwait). The first SIGTERM or SIGINT stops the
** claims and the takes, lets running jobs finish for up to --grace
** seconds, gives the slots back and unregisters; a second one, or the
** grace running out, gives the running jobs up ("worker lost: ... stopped")
** and exits at once with status 1.
*/
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../lua/ljobs.h"
#include "cli.h"

/* The Makefile's LUA this program is built for (lua5.4, luajit, ...). */
#ifndef TN_WORKER_LUA
#define TN_WORKER_LUA "lua"
#endif

static const char worker_help[] =
    "usage: tunnel worker [--lua LUA] [OPTIONS] URL\n"
    "       tunnel-worker-LUA [OPTIONS] URL\n"
    "\n" TN_CLI_WORKER_ABOUT
    "\n"
    "This worker runs jobs with " TN_WORKER_LUA ".\n"
    "\n" TN_CLI_WORKER_OPTIONS
    "  -V, --version        print the version and the Lua, and exit\n"
    "  -h, --help           print this help and exit\n"
    "\n" TN_CLI_WORKER_ENV URL_FORMS;

static tn_worker_t *worker;
static atomic_int stopping;
static atomic_int running_threads;
static int verbose;
static double idle_s = 10;

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...) {
  char buf[1200];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  fprintf(stderr, "tunnel worker %s: %s\n",
          worker != NULL ? tn_worker_id(worker) : "-", buf);
}

static void nap(double s) {
  struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
  while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
  }
}

/* Serve the jobs of slot `s` until it goes back (see the top). */
static void serve(tn_wslot_t *s, tn_cancel_t *token) {
  lua_State *T = NULL;
  double idle_since = tn_clock();
  const char *block = tn_wslot_block(s);
  int index = tn_wslot_index(s);
  if (verbose) say("took slot %d of block '%s'", index, block);
  while (!atomic_load(&stopping)) {
    tn_wjob_t job;
    int rc = tn_wslot_take(s, 1.0, &job);
    if (rc == TN_ETIMEDOUT) {
      if (tn_clock() - idle_since >= idle_s) break;
      continue;
    }
    if (rc == TN_ECLOSED) break;
    if (rc == TN_ECANCELED || rc == TN_EINTR) { /* a stale request */
      tn_cancel_clear(token);
      continue;
    }
    if (rc != TN_OK) {
      say("block '%s' slot %d: %s", block, index,
          tn_last_error()[0] ? tn_last_error() : tn_strerror(rc));
      nap(1);
      break;
    }
    char *init_error = NULL;
    if (T == NULL)
      T = tn_l_slot_open(index, tn_wslot_size(s), tn_wslot_init(s),
                         &init_error);
    tn_blob_t *out = NULL;
    int ok = 0;
    if (init_error != NULL) {
      /* The job fails with init's error; the next one tries init again. */
      if (T != NULL) out = tn_l_slot_error(T, init_error, NULL);
      free(init_error);
      tn_l_slot_close(T);
      T = NULL;
    } else {
      ok = tn_l_slot_run(T, job.job, &out);
    }
    tn_blob_release(job.job);
    rc = tn_wslot_finish(s, &job, ok, out);
    tn_blob_release(out);
    if (rc == TN_ECLOSED) {
      say("lost the lease of block '%s' slot %d: the result of run %lu "
          "was discarded (its status says 'worker lost')",
          block, index, job.run);
      break;
    }
    if (rc != TN_OK)
      say("block '%s' slot %d run %lu: the result could not be stored: %s",
          block, index, job.run,
          tn_last_error()[0] ? tn_last_error() : tn_strerror(rc));
    idle_since = tn_clock();
  }
  tn_l_slot_close(T);
  if (verbose) say("gave back slot %d of block '%s'", index, block);
}

static void *thread_main(void *arg) {
  (void)arg;
  tn_cancel_t *token = NULL;
  if (tn_cancel_new(&token) == TN_OK) tn_cancel_enter(token);
  while (!atomic_load(&stopping)) {
    tn_wslot_t *s;
    int rc = tn_worker_claim(worker, 1.0, &s);
    if (rc == TN_ETIMEDOUT || rc == TN_ECLOSED) continue; /* or stopping */
    if (rc == TN_ECANCELED || rc == TN_EINTR) {
      tn_cancel_clear(token);
      continue;
    }
    if (rc != TN_OK) {
      say("%s", tn_last_error()[0] ? tn_last_error() : tn_strerror(rc));
      nap(1);
      continue;
    }
    serve(s, token);
    tn_wslot_release(s);
  }
  tn_cancel_enter(NULL);
  tn_cancel_free(token);
  atomic_fetch_sub(&running_threads, 1);
  return NULL;
}

static double number(const char *opt, const char *arg, double lo, double hi) {
  char *end;
  double v = strtod(arg, &end);
  if (end == arg || *end != '\0' || !(v >= lo && v <= hi)) {
    char msg[128];
    snprintf(msg, sizeof msg, "%s must be a number from %g to %g (got '%%s')",
             opt, lo, hi);
    tn_cli_usage_error("worker", msg, arg);
  }
  return v;
}

static int worker_main(int argc, char **argv) {
  static const struct option options[] = {
      {"prefix", required_argument, NULL, 'p'},
      {"threads", required_argument, NULL, 't'},
      {"block", required_argument, NULL, 'b'},
      {"grace", required_argument, NULL, 'g'},
      {"idle", required_argument, NULL, 'i'},
      {"verbose", no_argument, NULL, 'v'},
      {"version", no_argument, NULL, 'V'},
      {"lua", required_argument, NULL, 'l'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  const char *prefix = "tunnel:";
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  int threads = cpus > 0 && cpus < 1024 ? (int)cpus : 1, opt;
  double grace = 25;
  const char **blocks = calloc((size_t)argc + 1, sizeof *blocks);
  size_t nblocks = 0;
  if (blocks == NULL) return 1;
  optind = 0;
  while ((opt = getopt_long(argc, argv, "p:t:b:g:i:vVl:h", options, NULL)) != -1) {
    switch (opt) {
    case 'p': prefix = optarg; break;
    case 't': threads = (int)number("--threads", optarg, 1, 4096); break;
    case 'b': blocks[nblocks++] = optarg; break;
    case 'g': grace = number("--grace", optarg, 0, 1e6); break;
    case 'i': idle_s = number("--idle", optarg, 0.1, 1e6); break;
    case 'v': verbose = 1; break;
    case 'V':
      printf("tunnel-worker-%s %s (jobs run with %s)\n", TN_WORKER_LUA,
             TN_VERSION, tn_l_runtime());
      return 0;
    case 'l': /* `tunnel worker --lua` chose this program */
      if (strcmp(optarg, TN_WORKER_LUA) != 0)
        tn_cli_usage_error("worker", "this worker runs " TN_WORKER_LUA
                           ", not '%s' (tunnel worker --lua picks one)",
                           optarg);
      break;
    case 'h': fputs(worker_help, stdout); return 0;
    default: tn_cli_usage_hint("worker");
    }
  }
  if (argc - optind < 1) tn_cli_usage_error("worker", "%s", "missing URL");
  if (argc - optind > 1)
    tn_cli_usage_error("worker", "unexpected argument '%s'", argv[optind + 1]);
  const char *url = argv[optind];
  const char *secret = getenv("TUNNEL_SECRET");
  if (secret != NULL && secret[0] == '\0') secret = NULL;
  if (secret != NULL && strlen(secret) < 16)
    tn_cli_usage_error("worker", "%s",
                       "TUNNEL_SECRET must be at least 16 bytes");
  tn_cluster_t *c;
  int rc = tn_cluster_open(url, prefix, 5, &c);
  if (rc != TN_OK) {
    fprintf(stderr, "tunnel worker: %s\n", tn_last_error());
    return rc == TN_EINVAL ? 2 : 1;
  }
  /* Signals go to this thread only, which waits for them. */
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGHUP);
  sigaddset(&sigs, SIGQUIT);
  pthread_sigmask(SIG_BLOCK, &sigs, NULL);
  tn_worker_options_t o = {tn_l_runtime(), threads, blocks, nblocks,
                           secret, secret != NULL ? strlen(secret) : 0};
  if ((rc = tn_worker_new(c, &o, &worker)) != TN_OK) {
    fprintf(stderr, "tunnel worker: %s\n",
            tn_last_error()[0] ? tn_last_error() : tn_strerror(rc));
    return 1;
  }
  say("serving %s (prefix %s) with %d thread%s, %s%s", tn_cluster_url(c),
      prefix, threads, threads == 1 ? "" : "s", tn_l_runtime(),
      secret != NULL ? ", signed jobs only" : "");
  atomic_store(&running_threads, threads);
  for (int i = 0; i < threads; i++) {
    pthread_t t;
    if (pthread_create(&t, NULL, thread_main, NULL) != 0) {
      say("cannot create thread %d of %d", i + 1, threads);
      atomic_fetch_sub(&running_threads, threads - i);
      break;
    }
    pthread_detach(t);
  }
  /* Wait for a signal; then for the threads, within the grace. */
  double stop_at = 0;
  int sig = 0;
  for (;;) {
    /* (quick once stopping: the threads end within milliseconds) */
    struct timespec tick = {0, (stop_at > 0 ? 10 : 200) * 1000 * 1000};
    siginfo_t info;
    int got = sigtimedwait(&sigs, &info, &tick);
    if (got > 0 && stop_at > 0) {
      say("second signal (%s): giving up the running jobs", strsignal(got));
      tn_worker_abandon(worker, "was stopped (a second signal)");
      _exit(1);
    }
    if (got > 0) {
      sig = got;
      stop_at = tn_clock() + grace;
      atomic_store(&stopping, 1);
      tn_worker_stop(worker); /* wakes the threads' waits */
      say("%s: finishing the running jobs (at most %g s), taking no new "
          "ones",
          strsignal(sig), grace);
    }
    if (stop_at > 0 && atomic_load(&running_threads) == 0) break;
    if (stop_at > 0 && tn_clock() >= stop_at) {
      say("the grace time ran out: giving up the running jobs");
      tn_worker_abandon(worker, "was stopped (the grace time ran out)");
      _exit(1);
    }
  }
  char id[32];
  snprintf(id, sizeof id, "%s", tn_worker_id(worker));
  tn_worker_free(worker);
  worker = NULL;
  fprintf(stderr, "tunnel worker %s: stopped\n", id);
  free(blocks);
  return 0;
}

int main(int argc, char **argv) {
  static char self[] = "tunnel worker"; /* getopt's messages name it so */
  argv[0] = self;
  return worker_main(argc, argv);
}
