/*
** counter.c - tunnel.Counter on Redis: one string key holding the integer.
**
** increase/decrease are INCRBY, get is GET, set is SET ... GET: each one
** command, atomic on the server. These calls have no error return in the
** C API: a failure returns 0 and is recorded for tn_error_take (the
** binding raises it).
**
** Caveat: Redis refuses an increment that would overflow 64 bits (an
** error, TN_EIO) where the in-process counter wraps.
*/
#include <stdlib.h>
#include <string.h>

#include "redis.h"

/* Run `argv`; the integer (or integer string) reply, 0 for nil. */
static int64_t counter_command(rd_object_t *o, int argc, const char **argv) {
  redisReply *r;
  int rc = rd_command(o->cluster, 0, &r, argc, argv, NULL);
  if (rc != TN_OK) {
    tn_error_pend(rc);
    return 0;
  }
  int64_t v = 0;
  if (r->type == REDIS_REPLY_INTEGER) {
    v = (int64_t)r->integer;
  } else if (r->type == REDIS_REPLY_STRING) {
    char *end;
    v = (int64_t)strtoll(r->str, &end, 10);
    if (end == r->str || *end != '\0')
      tn_error_pend(TN_EPROTO), tn_error_set(TN_EPROTO, "redis %s:%d: %s %s: not an integer: %.40s",
                   o->cluster->host, o->cluster->port, argv[0], o->key,
                   r->str);
  } else if (r->type != REDIS_REPLY_NIL) {
    tn_error_pend(rd_bad_reply(o->cluster, argv[0], r));
  }
  freeReplyObject(r);
  return v;
}

int rd_counter_create(rd_object_t *o, const int64_t *init) {
  if (init == NULL) return TN_OK;
  char v[32];
  snprintf(v, sizeof v, "%lld", (long long)*init);
  const char *argv[] = {"SET", o->key, v, "NX"};
  redisReply *r;
  int rc = rd_command(o->cluster, 0, &r, 4, argv, NULL);
  if (rc == TN_OK) freeReplyObject(r);
  return rc;
}

int64_t rd_counter_add(tn_counter_t *c, int64_t delta) {
  char d[32];
  snprintf(d, sizeof d, "%lld", (long long)delta);
  const char *argv[] = {"INCRBY", RD(c)->key, d};
  return counter_command(RD(c), 3, argv);
}

int64_t rd_counter_get(tn_counter_t *c) {
  const char *argv[] = {"GET", RD(c)->key};
  return counter_command(RD(c), 2, argv);
}

int64_t rd_counter_set(tn_counter_t *c, int64_t value) {
  char v[32];
  snprintf(v, sizeof v, "%lld", (long long)value);
  const char *argv[] = {"SET", RD(c)->key, v, "GET"};
  return counter_command(RD(c), 4, argv);
}
