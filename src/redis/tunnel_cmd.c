/*
** tunnel_cmd.c - the `tunnel` command. One subcommand so far:
**
** `tunnel logs URL NAME [--prefix P] [--from-start]`: follow the capped
** stream a cluster Printer called NAME writes to, and
** copy every line to stdout as it arrives (XREAD BLOCK), so the output of
** every process of a job can be watched in one place.
**
** By default it starts with the writes made from now on; --from-start
** first prints what the stream still holds (about the last 1000 writes).
** A lost connection is retried every second; the position in the stream
** is kept, so no line that the server kept is skipped or repeated.
*/
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tunnel.h"

static void usage(void) {
  fprintf(stderr,
          "usage: tunnel logs URL NAME [--prefix PREFIX] [--from-start]\n"
          "  follow the output of the cluster Printer NAME on the Redis at\n"
          "  URL (redis://[:password@]host[:port][/db])\n");
  exit(2);
}

/* s[0..n) percent-decoded into buf (the URL was checked already). */
static void decode(char *buf, size_t size, const char *s, size_t n) {
  size_t j = 0;
  for (size_t i = 0; i < n && j + 1 < size; i++) {
    unsigned int ch;
    if (s[i] == '%' && i + 2 < n && sscanf(s + i + 1, "%2x", &ch) == 1) {
      buf[j++] = (char)ch;
      i += 2;
    } else {
      buf[j++] = s[i];
    }
  }
  buf[j] = '\0';
}

/* Connect, AUTH ([user] password, percent-decoded) and SELECT as the URL
** says; NULL (with a message) on failure. The URL was checked by
** tn_cluster_open already. */
static redisContext *connect_url(const char *url) {
  char host[256] = "127.0.0.1", pass[256] = "", user[256] = "";
  int port = 6379, db = 0;
  const char *p = url + strlen("redis://");
  const char *at = strrchr(p, '@');
  if (at != NULL) {
    const char *colon = memchr(p, ':', (size_t)(at - p));
    const char *pw = colon != NULL ? colon + 1 : p;
    if (colon != NULL) decode(user, sizeof user, p, (size_t)(colon - p));
    decode(pass, sizeof pass, pw, (size_t)(at - pw));
    p = at + 1;
  }
  size_t hl = strcspn(p, ":/");
  if (hl > 0) snprintf(host, sizeof host, "%.*s", (int)hl, p);
  p += hl;
  if (*p == ':') port = (int)strtol(p + 1, (char **)&p, 10);
  if (*p == '/' && p[1]) db = (int)strtol(p + 1, NULL, 10);
  redisContext *c = redisConnect(host, port);
  if (c == NULL || c->err) {
    fprintf(stderr, "tunnel logs: redis %s:%d: %s\n", host, port,
            c != NULL ? c->errstr : "out of memory");
    if (c != NULL) redisFree(c);
    return NULL;
  }
  redisReply *r = NULL;
  if (pass[0] &&
      ((r = user[0] ? redisCommand(c, "AUTH %s %s", user, pass)
                    : redisCommand(c, "AUTH %s", pass)) == NULL ||
       r->type == REDIS_REPLY_ERROR))
    goto fail;
  if (r != NULL) freeReplyObject(r);
  r = NULL;
  if (db != 0 && ((r = redisCommand(c, "SELECT %d", db)) == NULL ||
                  r->type == REDIS_REPLY_ERROR))
    goto fail;
  if (r != NULL) freeReplyObject(r);
  return c;
fail:
  fprintf(stderr, "tunnel logs: redis %s:%d: %s\n", host, port,
          r != NULL ? r->str : c->errstr);
  if (r != NULL) freeReplyObject(r);
  redisFree(c);
  return NULL;
}

int main(int argc, char **argv) {
  const char *url = NULL, *name = NULL, *prefix = "tunnel:";
  int from_start = 0;
  if (argc < 2 || strcmp(argv[1], "logs") != 0) usage();
  for (int i = 2; i < argc; i++) {
    if (strcmp(argv[i], "--prefix") == 0 && i + 1 < argc)
      prefix = argv[++i];
    else if (strcmp(argv[i], "--from-start") == 0)
      from_start = 1;
    else if (argv[i][0] == '-')
      usage();
    else if (url == NULL)
      url = argv[i];
    else if (name == NULL)
      name = argv[i];
    else
      usage();
  }
  if (url == NULL || name == NULL) usage();
  tn_cluster_t *cl;
  if (tn_cluster_open(url, prefix, 5, &cl) != TN_OK) {
    fprintf(stderr, "tunnel logs: %s\n", tn_last_error());
    return 1;
  }
  char key[1024], last[64];
  snprintf(key, sizeof key, "%s%s", prefix, name);
  snprintf(last, sizeof last, "%s", from_start ? "0-0" : "$");
  redisContext *c = NULL;
  for (;;) {
    if (c == NULL && (c = connect_url(url)) == NULL) {
      sleep(1);
      continue;
    }
    const char *av[] = {"XREAD", "BLOCK", "0", "STREAMS", key, last};
    redisReply *r = redisCommandArgv(c, 6, av, NULL);
    if (r == NULL) {
      fprintf(stderr, "tunnel logs: %s; reconnecting\n", c->errstr);
      redisFree(c);
      c = NULL;
      sleep(1);
      continue;
    }
    if (r->type == REDIS_REPLY_ERROR) {
      fprintf(stderr, "tunnel logs: %s\n", r->str);
      return 1;
    }
    /* [[key, [[id, [field, value, ...]], ...]]] */
    if (r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
        r->element[0]->elements == 2) {
      redisReply *entries = r->element[0]->element[1];
      for (size_t i = 0; i < entries->elements; i++) {
        redisReply *e = entries->element[i];
        snprintf(last, sizeof last, "%s", e->element[0]->str);
        redisReply *f = e->element[1];
        for (size_t j = 0; j + 1 < f->elements; j += 2)
          if (strcmp(f->element[j]->str, "line") == 0)
            fwrite(f->element[j + 1]->str, 1, f->element[j + 1]->len, stdout);
      }
      fflush(stdout);
    }
    freeReplyObject(r);
  }
}
