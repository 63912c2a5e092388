/*
** jobs.h - what the files of distributed blocks share (jobs.c: the
** client, worker and status sides of the job protocol; sign.c: the
** HMAC-SHA256 signatures). Pure C; nothing here knows Lua.
*/
#ifndef TN_JOBS_H
#define TN_JOBS_H

#include "redis.h"

/* ---- signatures (sign.c) ------------------------------------------------ */

#define RD_MAC_LEN 32    /* HMAC-SHA256 */
#define RD_KID_LEN 8     /* hex digits of a secret's key id */
#define RD_SECRET_MIN 16 /* bytes: shorter secrets are refused */

/*
** The keys derived from one secret: jobs (envelopes and init) and results
** are signed with different keys, so a signed result can never pass as a
** signed job; the key id names the secret without revealing it (jobs carry
** it, so a worker claims the slots whose jobs it can verify first).
*/
typedef struct rd_keys {
  bool set; /* false: no secret (nothing signed, nothing checked) */
  unsigned char job[RD_MAC_LEN];
  unsigned char result[RD_MAC_LEN];
  char kid[RD_KID_LEN + 1];
} rd_keys_t;

/* Derive the keys of `secret` (len >= RD_SECRET_MIN, else TN_EINVAL with a
** message). NULL: no secret (keys->set = false). */
int rd_keys_init(rd_keys_t *keys, const void *secret, size_t len);

/* One piece of a signed message; every piece is framed with its length, so
** two messages of different pieces never sign the same bytes. */
typedef struct rd_piece {
  const void *data;
  size_t len;
} rd_piece_t;

/* mac = HMAC-SHA256(key, "tunnel " .. domain, pieces...). */
void rd_mac(const unsigned char key[RD_MAC_LEN], const char *domain,
            const rd_piece_t *pieces, int n, unsigned char mac[RD_MAC_LEN]);

/* Whether `mac` (len bytes) is the signature of the pieces, compared in
** constant time. */
bool rd_mac_check(const unsigned char key[RD_MAC_LEN], const char *domain,
                  const rd_piece_t *pieces, int n, const void *mac,
                  size_t len);

#endif
