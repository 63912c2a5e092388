/*
** logs.c - `tunnel logs URL NAME [--prefix P] [--from-start]`: follow the
** capped stream a cluster Printer called NAME writes to, and copy every
** line to stdout as it arrives (XREAD BLOCK), so the output of every
** process of a job can be watched in one place. By default it starts with
** the writes made from now on; --from-start first prints what the stream
** still holds (about the last 1000 writes). A lost connection is retried
** every second; the position in the stream is kept, so no line that the
** server kept is skipped or repeated.
*/
#include <getopt.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

const char tn_cli_logs_help[] =
    "usage: tunnel logs [--prefix PREFIX] [--from-start] URL NAME\n"
    "\n"
    "Follow the output of the cluster Printer NAME on the Redis server at\n"
    "URL: every line any process prints with it is copied to stdout as it\n"
    "arrives, until the command is stopped. A lost connection is retried\n"
    "every second without skipping or repeating a line the server kept.\n"
    "\n"
    "Options:\n"
    "  -p, --prefix PREFIX  the cluster's key prefix (default tunnel:)\n"
    "  -f, --from-start     first print what the stream still holds (about\n"
    "                       the last 1000 writes), not only new ones\n"
    "  -h, --help           print this help and exit\n"
    "\n" URL_FORMS;

/* ---- tunnel logs ----------------------------------------------------------- */

/* How long one XREAD blocks on the server (ms), and how long its reply may
** take on top before the connection counts as dead. */
#define LOGS_BLOCK_MS "5000"
#define LOGS_REPLY_SLACK 10

static struct timeval seconds(long s) {
  struct timeval tv = {s, 0};
  return tv;
}

/* "host:port" or the socket's path, for messages. */
static void where(const tn_url_t *u, char *buf, size_t size) {
  if (u->path != NULL)
    snprintf(buf, size, "%s", u->path);
  else
    snprintf(buf, size, strchr(u->host, ':') ? "[%s]:%d" : "%s:%d", u->host,
             u->port);
}

/* Connect, AUTH ([user] password) and SELECT as the parsed URL says; NULL
** (with a message on stderr) on failure. */
static redisContext *connect_url(const tn_url_t *u) {
  char at[300];
  where(u, at, sizeof at);
  redisContext *c = u->path != NULL
                        ? redisConnectUnixWithTimeout(u->path, seconds(5))
                        : redisConnectWithTimeout(u->host, u->port, seconds(5));
  if (c == NULL || c->err) {
    fprintf(stderr, "tunnel logs: redis %s: %s\n", at,
            c != NULL ? c->errstr : "out of memory");
    if (c != NULL) redisFree(c);
    return NULL;
  }
  redisSetTimeout(c, seconds(5));
  char db[16];
  snprintf(db, sizeof db, "%d", u->db);
  const char *auth[] = {"AUTH", u->user != NULL ? u->user : u->password,
                        u->password};
  const char *sel[] = {"SELECT", db};
  for (int step = 0; step < 2; step++) {
    if (step == 0 && u->password == NULL) continue;
    if (step == 1 && u->db == 0) continue;
    int argc = step == 1 ? 2 : u->user != NULL ? 3 : 2;
    redisReply *r = redisCommandArgv(c, argc, step == 0 ? auth : sel, NULL);
    if (r == NULL || r->type == REDIS_REPLY_ERROR) {
      fprintf(stderr, "tunnel logs: redis %s: %s: %s\n", at,
              step == 0 ? "AUTH" : "SELECT", r != NULL ? r->str : c->errstr);
      if (r != NULL) freeReplyObject(r);
      redisFree(c);
      return NULL;
    }
    freeReplyObject(r);
  }
  redisSetTimeout(c, seconds(5 + LOGS_REPLY_SLACK));
  return c;
}

/* Copy the lines of an XREAD reply to stdout; `last` becomes the id of
** the last entry. [[key, [[id, [field, value, ...]], ...]]] */
static void print_entries(const redisReply *r, char *last, size_t size) {
  if (r->type != REDIS_REPLY_ARRAY || r->elements == 0 ||
      r->element[0]->type != REDIS_REPLY_ARRAY ||
      r->element[0]->elements != 2)
    return;
  const redisReply *entries = r->element[0]->element[1];
  for (size_t i = 0; i < entries->elements; i++) {
    const redisReply *e = entries->element[i];
    if (e->type != REDIS_REPLY_ARRAY || e->elements != 2) continue;
    snprintf(last, size, "%s", e->element[0]->str);
    const redisReply *f = e->element[1];
    for (size_t j = 0; j + 1 < f->elements; j += 2)
      if (f->element[j]->str != NULL && strcmp(f->element[j]->str, "line") == 0)
        fwrite(f->element[j + 1]->str, 1, f->element[j + 1]->len, stdout);
  }
  fflush(stdout);
}

/*
** The id of the stream's last entry now (0-0 when there is no stream
** yet): where a follow without --from-start starts. XREAD's own "$"
** would be re-read at every XREAD and skip what came in between. 0 (with
** a message) when the connection failed.
*/
static int resume_point(redisContext *c, const char *key, char *last,
                        size_t size) {
  const char *av[] = {"XINFO", "STREAM", key};
  redisReply *r = redisCommandArgv(c, 3, av, NULL);
  if (r == NULL) {
    fprintf(stderr, "tunnel logs: %s; reconnecting\n", c->errstr);
    return 0;
  }
  snprintf(last, size, "0-0"); /* an error reply: no such key */
  if (r->type == REDIS_REPLY_ARRAY)
    for (size_t i = 0; i + 1 < r->elements; i += 2)
      if (r->element[i]->str != NULL &&
          strcmp(r->element[i]->str, "last-generated-id") == 0 &&
          r->element[i + 1]->str != NULL)
        snprintf(last, size, "%s", r->element[i + 1]->str);
  freeReplyObject(r);
  return 1;
}

int tn_cli_logs(int argc, char **argv) {
  static const struct option options[] = {
      {"prefix", required_argument, NULL, 'p'},
      {"from-start", no_argument, NULL, 'f'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  const char *prefix = "tunnel:";
  int from_start = 0, opt;
  optind = 0; /* a fresh scan of this command's arguments (GNU) */
  while ((opt = getopt_long(argc, argv, "p:fh", options, NULL)) != -1) {
    switch (opt) {
    case 'p': prefix = optarg; break;
    case 'f': from_start = 1; break;
    case 'h': fputs(tn_cli_logs_help, stdout); return 0;
    default: tn_cli_usage_hint("logs");
    }
  }
  if (argc - optind < 2)
    tn_cli_usage_error("logs", "%s", argc - optind == 0 ? "missing URL and NAME"
                                                 : "missing NAME");
  if (argc - optind > 2)
    tn_cli_usage_error("logs", "unexpected argument '%s'", argv[optind + 2]);
  const char *url = argv[optind], *name = argv[optind + 1];
  tn_url_t u;
  if (tn_url_parse(url, &u) != TN_OK) {
    fprintf(stderr, "tunnel logs: %s\n", tn_last_error());
    return 2;
  }
  /* Connect once through the library: a wrong host, password or database
  ** is reported at once, in the words tunnel.Cluster uses. */
  tn_cluster_t *cl;
  if (tn_cluster_open(url, prefix, 5, &cl) != TN_OK) {
    fprintf(stderr, "tunnel logs: %s\n", tn_last_error());
    tn_url_free(&u);
    return 1;
  }
  char key[1024], last[64];
  snprintf(key, sizeof key, "%s%s", prefix, name);
  /* Where to read from; "" until the end of the stream is known. */
  snprintf(last, sizeof last, "%s", from_start ? "0-0" : "");
  redisContext *c = NULL;
  for (;;) {
    if (c == NULL && (c = connect_url(&u)) == NULL) {
      sleep(1);
      continue;
    }
    if (!from_start && last[0] == '\0' && !resume_point(c, key, last,
                                                         sizeof last)) {
      redisFree(c);
      c = NULL;
      sleep(1);
      continue;
    }
    const char *av[] = {"XREAD", "BLOCK", LOGS_BLOCK_MS, "STREAMS", key, last};
    redisReply *r = redisCommandArgv(c, 6, av, NULL);
    if (r == NULL) {
      fprintf(stderr, "tunnel logs: %s; reconnecting\n", c->errstr);
      redisFree(c);
      c = NULL;
      sleep(1);
      continue;
    }
    if (r->type == REDIS_REPLY_ERROR) {
      fprintf(stderr, "tunnel logs: XREAD %s: %s\n", key, r->str);
      freeReplyObject(r);
      redisFree(c);
      tn_url_free(&u);
      return 1;
    }
    print_entries(r, last, sizeof last);
    freeReplyObject(r);
  }
}
