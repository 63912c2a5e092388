/*
** hash.c - tunnel.Hash on Redis: one Redis hash. Fields are the binding's
** canonical key bytes (so 1 and 1.0 are one key, as in process), values
** the stored-value format of redis.h.
**
** Caveat: a snapshot is one HGETALL: fine for iteration and printing, not
** for hashes of millions of fields.
*/
#include <stdlib.h>
#include <string.h>

#include "redis.h"

/* -> the old value (or false); sets, or deletes when ARGV[2] is empty. */
static rd_script_t set_script = {
    "hash.set",
    RD_PROLOGUE
    "local old = redis.call('HGET', KEYS[1], ARGV[1])\n"
    "if ARGV[2] == '' then redis.call('HDEL', KEYS[1], ARGV[1])\n"
    "else redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end\n"
    "return old\n",
    "", 0};

static int decode(rd_object_t *o, const char *op, const redisReply *e,
                  tn_blob_t **out) {
  char what[600];
  snprintf(what, sizeof what, "%s %s", op, o->key);
  if (e->type != REDIS_REPLY_STRING) return rd_bad_reply(o->cluster, what, e);
  return rd_value_decode(o->cluster, what, e->str, e->len, out);
}

int rd_map_get(tn_map_t *m, const void *key, size_t len, tn_blob_t **out,
               double timeout) {
  (void)timeout;
  rd_object_t *o = RD(m);
  const char *argv[] = {"HGET", o->key, key};
  size_t lens[] = {4, o->keylen, len};
  redisReply *r;
  int rc = rd_command(o->cluster, 0, INFINITY, &r, 3, argv, lens);
  if (rc != TN_OK) return rc;
  if (r->type == REDIS_REPLY_NIL) {
    *out = NULL;
    rc = TN_OK;
  } else {
    rc = decode(o, "HGET", r, out);
  }
  freeReplyObject(r);
  return rc;
}

/* Storing nil deletes the field, as in process: the script gets "" (no
** stored value is empty) for a delete. */
int rd_map_set(tn_map_t *m, const void *key, size_t len, tn_blob_t *b,
               tn_blob_t **old, double timeout) {
  (void)timeout;
  rd_object_t *o = RD(m);
  char *val = NULL;
  size_t vlen = 0;
  int rc = TN_OK;
  if (b != NULL && (rc = rd_value_encode(b, &val, &vlen)) != TN_OK) return rc;
  const char *args[] = {key, val != NULL ? val : ""};
  size_t lens[] = {len, vlen};
  const char *keys[] = {o->key};
  redisReply *r;
  rc = rd_eval(o->cluster, &set_script, INFINITY, &r, 1, keys, 2, args, lens);
  free(val);
  if (rc != TN_OK) return rc;
  tn_blob_t *prev = NULL;
  if (r->type == REDIS_REPLY_STRING)
    rc = decode(o, "hash.set", r, &prev);
  freeReplyObject(r);
  tn_blob_release(b); /* stored */
  if (rc != TN_OK) prev = NULL; /* an unreadable old value: dropped */
  if (old != NULL)
    *old = prev;
  else
    tn_blob_release(prev);
  return TN_OK;
}

size_t rd_map_size(tn_map_t *m) {
  const char *argv[] = {"HLEN", RD(m)->key};
  redisReply *r;
  int rc = rd_command(RD(m)->cluster, 0, INFINITY, &r, 2, argv, NULL);
  if (rc != TN_OK) {
    tn_error_pend(rc);
    return 0;
  }
  size_t n = r->type == REDIS_REPLY_INTEGER ? (size_t)r->integer : 0;
  freeReplyObject(r);
  return n;
}

int rd_map_snapshot(tn_map_t *m, tn_map_entry_t **entries, size_t *n,
                    double timeout) {
  (void)timeout;
  rd_object_t *o = RD(m);
  const char *argv[] = {"HGETALL", o->key};
  redisReply *r;
  int rc = rd_command(o->cluster, 0, INFINITY, &r, 2, argv, NULL);
  if (rc != TN_OK) return rc;
  if (r->type != REDIS_REPLY_ARRAY || r->elements % 2 != 0) {
    rc = rd_bad_reply(o->cluster, "HGETALL", r);
    freeReplyObject(r);
    return rc;
  }
  size_t count = r->elements / 2, k = 0;
  tn_map_entry_t *e = NULL;
  if (count > 0 && (e = calloc(count, sizeof *e)) == NULL) {
    freeReplyObject(r);
    return TN_ENOMEM;
  }
  for (; k < count; k++) {
    redisReply *f = r->element[2 * k], *v = r->element[2 * k + 1];
    if (f->type != REDIS_REPLY_STRING) {
      rc = rd_bad_reply(o->cluster, "HGETALL", f);
      break;
    }
    if ((rc = decode(o, "HGETALL", v, &e[k].value)) != TN_OK) break;
    e[k].key = malloc(f->len > 0 ? f->len : 1);
    if (e[k].key == NULL) {
      tn_blob_release(e[k].value);
      rc = TN_ENOMEM;
      break;
    }
    memcpy(e[k].key, f->str, f->len);
    e[k].len = f->len;
  }
  freeReplyObject(r);
  if (rc != TN_OK) {
    tn_map_entries_free(e, k);
    return rc;
  }
  *entries = e;
  *n = count;
  return TN_OK;
}
