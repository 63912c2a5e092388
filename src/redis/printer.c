/*
** printer.c - tunnel.Printer on a cluster: each write goes whole to the
** local output (through an in-process printer, so lines of this process's
** threads never interleave) and is then appended to a capped Redis stream
** (XADD K MAXLEN ~ 1000 * line <bytes>), which `tunnel logs URL NAME`
** follows.
**
** Caveat: the stream keeps about the last 1000 writes; a write that
** reached the local output but not the server reports TN_EIO.
*/
#include "redis.h"

int rd_printer_lock(tn_printer_t *p, double timeout) {
  return tn_printer_lock(RD(p)->local, timeout);
}

void rd_printer_unlock(tn_printer_t *p) { tn_printer_unlock(RD(p)->local); }

int rd_printer_write(tn_printer_t *p, const void *data, size_t len,
                     double timeout) {
  rd_object_t *o = RD(p);
  int rc = tn_printer_write(o->local, data, len, timeout);
  if (rc != TN_OK) return rc;
  const char *argv[] = {"XADD", o->key, "MAXLEN", "~", "1000", "*", "line",
                        data};
  size_t lens[] = {4, o->keylen, 6, 1, 4, 1, 4, len};
  redisReply *r;
  rc = rd_command(o->cluster, 0, &r, 8, argv, lens);
  if (rc == TN_OK) freeReplyObject(r);
  return rc;
}
