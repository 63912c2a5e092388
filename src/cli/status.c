/*
** status.c - `tunnel status URL [--prefix P] [--json]`: the workers, the
** cluster blocks and the recent failures of a cluster, as aligned tables a
** person reads at a glance, or as one JSON object for scripts. Reading the
** status also reports the jobs of lost workers (the reaper runs in the same
** script, tn_jobs_status).
*/
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

const char tn_cli_status_help[] =
    "usage: tunnel status [--prefix PREFIX] [--json] URL\n"
    "\n"
    "Print the state of the cluster blocks (cluster:Block) on the Redis\n"
    "server at URL:\n"
    "  workers   id, host, pid, threads, Lua, time since the last heartbeat,\n"
    "            the slots it holds ('gone': stopped heartbeating)\n"
    "  blocks    size, runs so far, jobs queued per slot, jobs running with\n"
    "            their age and worker\n"
    "  failures  the last jobs lost with their worker or refused\n"
    "Reading the status also reports the jobs of workers that died as\n"
    "'worker lost'.\n"
    "\n"
    "Options:\n"
    "  -p, --prefix PREFIX  the cluster's key prefix (default tunnel:)\n"
    "  -j, --json           one JSON object instead of tables\n"
    "  -h, --help           print this help and exit\n"
    "\n" URL_FORMS;

/* ---- tables ------------------------------------------------------------- */

#define COLS 8

typedef struct table {
  size_t ncols, nrows, cap;
  char **cells; /* row-major, ncols per row; row 0 is the header */
} table_t;

static void add_row(table_t *t, const char *const *cells) {
  if (t->nrows == t->cap) {
    size_t cap = t->cap ? t->cap * 2 : 8;
    char **p = realloc(t->cells, cap * t->ncols * sizeof *p);
    if (p == NULL) return;
    t->cells = p;
    t->cap = cap;
  }
  for (size_t c = 0; c < t->ncols; c++)
    t->cells[t->nrows * t->ncols + c] = strdup(cells[c] ? cells[c] : "");
  t->nrows++;
}

/* Print with every column as wide as its widest cell (the last one
** ragged), two spaces between. */
static void print_table(const char *title, table_t *t) {
  printf("%s\n", title);
  size_t w[COLS] = {0};
  for (size_t r = 0; r < t->nrows; r++)
    for (size_t c = 0; c < t->ncols; c++) {
      size_t n = strlen(t->cells[r * t->ncols + c]);
      if (n > w[c]) w[c] = n;
    }
  for (size_t r = 0; r < t->nrows; r++) {
    printf("  ");
    for (size_t c = 0; c < t->ncols; c++) {
      const char *s = t->cells[r * t->ncols + c];
      if (c + 1 < t->ncols)
        printf("%-*s  ", (int)w[c], s);
      else
        printf("%s", s);
    }
    printf("\n");
  }
  if (t->nrows == 1) printf("  (none)\n");
  for (size_t i = 0; i < t->nrows * t->ncols; i++) free(t->cells[i]);
  free(t->cells);
}

/* "0.4s", "12s", "3m20s", "2h05m" */
static const char *age(double s, char *buf, size_t size) {
  if (s < 10)
    snprintf(buf, size, "%.1fs", s);
  else if (s < 120)
    snprintf(buf, size, "%.0fs", s);
  else if (s < 7200)
    snprintf(buf, size, "%dm%02ds", (int)(s / 60), (int)s % 60);
  else
    snprintf(buf, size, "%dh%02dm", (int)(s / 3600), (int)s / 60 % 60);
  return buf;
}

/* Append to a growing string. */
typedef struct str {
  char *p;
  size_t len, cap;
} str_t;

static void put(str_t *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void put(str_t *s, const char *fmt, ...) {
  va_list ap;
  for (;;) {
    size_t room = s->cap - s->len;
    va_start(ap, fmt);
    int n = vsnprintf(s->p ? s->p + s->len : NULL, s->p ? room : 0, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < room) {
      s->len += (size_t)n;
      return;
    }
    size_t cap = (s->cap + (size_t)n + 64) * 2;
    char *p = realloc(s->p, cap);
    if (p == NULL) return;
    s->p = p;
    s->cap = cap;
  }
}

static void print_tables(const tn_jobs_status_t *st) {
  char a[32], b[64];
  table_t w = {7, 0, 0, NULL};
  add_row(&w, (const char *[]){"ID", "HOST", "PID", "THREADS", "LUA",
                               "HEARTBEAT", "SLOTS"});
  for (size_t i = 0; i < st->nworkers; i++) {
    const tn_jobs_worker_t *x = &st->workers[i];
    char pid[24], th[16], beat[48];
    snprintf(pid, sizeof pid, "%ld", x->pid);
    snprintf(th, sizeof th, "%d", x->threads);
    if (x->alive)
      snprintf(beat, sizeof beat, "%s ago", age(x->beat, a, sizeof a));
    else
      snprintf(beat, sizeof beat, "gone (%s ago)", age(x->beat, a, sizeof a));
    add_row(&w, (const char *[]){x->id, x->host, pid, th, x->runtime, beat,
                                 x->slots[0] ? x->slots : "-"});
  }
  print_table("Workers", &w);
  printf("\n");
  table_t t = {5, 0, 0, NULL};
  add_row(&t, (const char *[]){"BLOCK", "SLOTS", "RUNS", "QUEUED (per slot)",
                               "RUNNING"});
  for (size_t i = 0; i < st->nblocks; i++) {
    const tn_jobs_block_t *x = &st->blocks[i];
    str_t q = {0}, r = {0};
    long total = 0;
    for (int j = 0; j < x->size; j++) total += x->queued[j];
    put(&q, "%ld:", total);
    for (int j = 0; j < x->size && j < 16; j++)
      put(&q, " %ld", x->queued[j]);
    if (x->size > 16) put(&q, " ...");
    for (int j = 0; j < x->size; j++)
      if (x->running[j] != 0)
        put(&r, "%sslot %d run %lu %s (%s)", r.len ? ", " : "", j + 1,
            x->running[j], age(x->age[j], a, sizeof a),
            x->owner[j] ? x->owner[j] : "?");
    char size[16], runs[24];
    snprintf(size, sizeof size, "%d%s", x->size, x->terminated ? " (term.)" : "");
    snprintf(runs, sizeof runs, "%lu", x->runs);
    add_row(&t, (const char *[]){x->name, size, runs, q.p ? q.p : "",
                                 r.p ? r.p : "-"});
    free(q.p);
    free(r.p);
  }
  print_table("Blocks", &t);
  printf("\n");
  table_t f = {5, 0, 0, NULL};
  add_row(&f, (const char *[]){"WHEN", "BLOCK", "RUN", "SLOT", "WHAT"});
  for (size_t i = 0; i < st->nfailures; i++) {
    const tn_jobs_failure_t *x = &st->failures[i];
    char run[24], slot[16];
    snprintf(b, sizeof b, "%s ago", age(x->age, a, sizeof a));
    snprintf(run, sizeof run, "%lu", x->run);
    snprintf(slot, sizeof slot, "%d", x->slot);
    add_row(&f, (const char *[]){b, x->block, run, slot, x->message});
  }
  print_table("Recent failures", &f);
}

/* ---- JSON ------------------------------------------------------------------ */

static void json_string(str_t *s, const char *v) {
  put(s, "\"");
  for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
    if (*p == '"' || *p == '\\')
      put(s, "\\%c", *p);
    else if (*p < 0x20)
      put(s, "\\u%04x", *p);
    else
      put(s, "%c", *p);
  }
  put(s, "\"");
}

static void print_json(const tn_jobs_status_t *st) {
  str_t s = {0};
  put(&s, "{\"workers\": [");
  for (size_t i = 0; i < st->nworkers; i++) {
    const tn_jobs_worker_t *x = &st->workers[i];
    put(&s, "%s{\"id\": ", i ? ", " : "");
    json_string(&s, x->id);
    put(&s, ", \"host\": ");
    json_string(&s, x->host);
    put(&s, ", \"pid\": %ld, \"threads\": %d, \"lua\": ", x->pid, x->threads);
    json_string(&s, x->runtime);
    put(&s, ", \"version\": ");
    json_string(&s, x->version);
    put(&s, ", \"heartbeat_age\": %.3f, \"alive\": %s, \"slots\": [",
        x->beat, x->alive ? "true" : "false");
    const char *p = x->slots;
    int first = 1;
    while (*p) {
      size_t n = strcspn(p, " ");
      if (n > 0) {
        char *one = strndup(p, n);
        put(&s, "%s", first ? "" : ", ");
        json_string(&s, one != NULL ? one : "");
        free(one);
        first = 0;
      }
      p += n;
      while (*p == ' ') p++;
    }
    put(&s, "]}");
  }
  put(&s, "], \"blocks\": [");
  for (size_t i = 0; i < st->nblocks; i++) {
    const tn_jobs_block_t *x = &st->blocks[i];
    put(&s, "%s{\"name\": ", i ? ", " : "");
    json_string(&s, x->name);
    put(&s, ", \"size\": %d, \"runs\": %lu, \"terminated\": %s, \"slots\": [",
        x->size, x->runs, x->terminated ? "true" : "false");
    for (int j = 0; j < x->size; j++) {
      put(&s, "%s{\"slot\": %d, \"queued\": %ld, \"running\": ", j ? ", " : "",
          j + 1, x->queued[j]);
      if (x->running[j] != 0)
        put(&s, "%lu, \"age\": %.3f", x->running[j], x->age[j]);
      else
        put(&s, "null");
      put(&s, ", \"worker\": ");
      if (x->owner[j] != NULL)
        json_string(&s, x->owner[j]);
      else
        put(&s, "null");
      put(&s, "}");
    }
    put(&s, "]}");
  }
  put(&s, "], \"failures\": [");
  for (size_t i = 0; i < st->nfailures; i++) {
    const tn_jobs_failure_t *x = &st->failures[i];
    put(&s, "%s{\"age\": %.3f, \"block\": ", i ? ", " : "", x->age);
    json_string(&s, x->block);
    put(&s, ", \"run\": %lu, \"slot\": %d, \"message\": ", x->run, x->slot);
    json_string(&s, x->message);
    put(&s, "}");
  }
  put(&s, "]}\n");
  if (s.p != NULL) fputs(s.p, stdout);
  free(s.p);
}

int tn_cli_status(int argc, char **argv) {
  static const struct option options[] = {
      {"prefix", required_argument, NULL, 'p'},
      {"json", no_argument, NULL, 'j'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  const char *prefix = "tunnel:";
  int json = 0, opt;
  optind = 0;
  while ((opt = getopt_long(argc, argv, "p:jh", options, NULL)) != -1) {
    switch (opt) {
    case 'p': prefix = optarg; break;
    case 'j': json = 1; break;
    case 'h': fputs(tn_cli_status_help, stdout); return 0;
    default: tn_cli_usage_hint("status");
    }
  }
  if (argc - optind < 1) tn_cli_usage_error("status", "%s", "missing URL");
  if (argc - optind > 1)
    tn_cli_usage_error("status", "unexpected argument '%s'", argv[optind + 1]);
  tn_cluster_t *c;
  int rc = tn_cluster_open(argv[optind], prefix, 5, &c);
  if (rc != TN_OK) {
    fprintf(stderr, "tunnel status: %s\n", tn_last_error());
    return rc == TN_EINVAL ? 2 : 1;
  }
  tn_jobs_status_t *st;
  if ((rc = tn_jobs_status(c, &st)) != TN_OK) {
    fprintf(stderr, "tunnel status: %s\n",
            tn_last_error()[0] ? tn_last_error() : tn_strerror(rc));
    return 1;
  }
  if (json)
    print_json(st);
  else
    print_tables(st);
  tn_jobs_status_free(st);
  return 0;
}
