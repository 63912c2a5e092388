/*
** printer.c - tunnel.Printer on a cluster: each write goes whole to the
** local output (through an in-process printer, so lines of this process's
** threads never interleave) and is then appended to a capped Redis stream
** (XADD K MAXLEN ~ 1000 * line <bytes>, in a script with a deadline), which `tunnel logs URL NAME`
** follows.
**
** Caveat: the stream keeps about the last 1000 writes; a write that
** reached the local output but not the server reports TN_EIO.
*/
#include "redis.h"

/* ARGV: line. A script for its deadline: a line the client gave up on is
** not appended later. */
static rd_script_t write_script = {
    "printer.write",
    RD_PROLOGUE "redis.call('XADD', KEYS[1], 'MAXLEN', '~', '1000', '*', "
                "'line', ARGV[1])\nreturn 1\n",
    "", 0};

int rd_printer_lock(tn_printer_t *p, double timeout) {
  return tn_printer_lock(RD(p)->local, timeout);
}

void rd_printer_unlock(tn_printer_t *p) { tn_printer_unlock(RD(p)->local); }

int rd_printer_write(tn_printer_t *p, const void *data, size_t len,
                     double timeout) {
  rd_object_t *o = RD(p);
  int rc = tn_printer_write(o->local, data, len, timeout);
  if (rc != TN_OK) return rc;
  const char *keys[] = {o->key};
  const char *args[] = {data};
  size_t lens[] = {len};
  redisReply *r;
  rc = rd_eval(o->cluster, &write_script, INFINITY, &r, 1, keys, 1, args,
               lens);
  if (rc == TN_OK) freeReplyObject(r);
  return rc;
}
