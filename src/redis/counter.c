/*
** counter.c - tunnel.Counter on Redis: one string key holding the integer.
**
** increase/decrease are INCRBY, set is SET: each in a script that
** carries the caller's deadline (RD_PROLOGUE), so a command the client
** gave up on (a stalled server) is not applied when the server resumes;
** get is GET. These calls have no error return in the C API: a failure
** returns 0 and is recorded for tn_error_take (the binding raises it).
**
** Caveat: Redis refuses an increment that would overflow 64 bits (an
** error, TN_EIO) where the in-process counter wraps.
*/
#include <stdlib.h>
#include <string.h>

#include "redis.h"

/* ARGV: delta -> the new value, as a string: a script's numbers are
** doubles, exact only to 2^53. INCRBY refuses a value that is not an
** integer (or would overflow) before writing anything. */
static rd_script_t add_script = {
    "counter.add",
    RD_PROLOGUE "redis.call('INCRBY', KEYS[1], ARGV[1])\n"
                "return redis.call('GET', KEYS[1])\n",
    "", 0};

/* ARGV: value -> the old value (false: none). A value that is not an
** integer is refused before the write. */
static rd_script_t set_script = {
    "counter.set",
    RD_PROLOGUE
    "local old = redis.call('GET', KEYS[1])\n"
    "if old and (#old > 20 or not string.match(old, '^%-?%d+$')) then\n"
    "  return redis.error_reply('TUNNEL-CORRUPT ' .. KEYS[1] .. ' does not hold an integer: nothing was changed') end\n"
    "redis.call('SET', KEYS[1], ARGV[1])\n"
    "return old\n",
    "", 0};

/* ARGV: value -> 1 (stored only if there is none yet). */
static rd_script_t create_script = {
    "counter.create",
    RD_PROLOGUE "redis.call('SET', KEYS[1], ARGV[1], 'NX')\nreturn 1\n", "",
    0};

/* Run `argv` (a script when `s` is set); the integer (or integer string)
** reply, 0 for nil. */
static int64_t counter_command(rd_object_t *o, rd_script_t *s, int argc,
                               const char **argv) {
  redisReply *r;
  const char *keys[] = {o->key};
  int rc = s != NULL ? rd_eval(o->cluster, s, INFINITY, &r, 1, keys, argc - 2,
                               argv + 2, NULL)
                     : rd_command(o->cluster, 0, INFINITY, &r, argc, argv,
                                  NULL);
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
  const char *keys[] = {o->key};
  const char *args[] = {v};
  redisReply *r;
  int rc = rd_eval(o->cluster, &create_script, INFINITY, &r, 1, keys, 1, args,
                   NULL);
  if (rc == TN_OK) freeReplyObject(r);
  return rc;
}

int64_t rd_counter_add(tn_counter_t *c, int64_t delta) {
  char d[32];
  snprintf(d, sizeof d, "%lld", (long long)delta);
  const char *argv[] = {"INCRBY", RD(c)->key, d};
  return counter_command(RD(c), &add_script, 3, argv);
}

int64_t rd_counter_get(tn_counter_t *c) {
  const char *argv[] = {"GET", RD(c)->key};
  return counter_command(RD(c), NULL, 2, argv);
}

int64_t rd_counter_set(tn_counter_t *c, int64_t value) {
  char v[32];
  snprintf(v, sizeof v, "%lld", (long long)value);
  const char *argv[] = {"SET", RD(c)->key, v};
  return counter_command(RD(c), &set_script, 3, argv);
}
