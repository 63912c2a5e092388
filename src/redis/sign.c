/*
** sign.c - HMAC-SHA256 signatures of distributed blocks' jobs and results
** (docs/workers.md, "Signing"), on OpenSSL's libcrypto: no home-made hash.
**
** A secret shared by the clients and workers of one trust domain is
** turned into two keys, one for what a client sends (job envelopes, a
** block's init) and one for what a worker sends back (results), plus a
** key id. Each signed message is a domain word and length-framed pieces
** (block key, run, slot, runtime, payload), so no signature made for one
** place verifies in another: a signed job moved to another block or run,
** or a result presented as a job, fails the check. Checks compare in
** constant time (CRYPTO_memcmp) and come before any decoding or loading.
**
** Caveat: signatures give integrity, not confidentiality (the server and
** anyone who reads it see the jobs), and no freshness beyond what the
** framing binds: see docs/workers.md.
*/
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jobs.h"

/* HMAC-SHA256 of one buffer. */
static void hmac(const void *key, size_t keylen, const void *data, size_t n,
                 unsigned char out[RD_MAC_LEN]) {
  unsigned int len = RD_MAC_LEN;
  if (HMAC(EVP_sha256(), key, (int)keylen, data, n, out, &len) == NULL ||
      len != RD_MAC_LEN)
    abort(); /* libcrypto fails only without memory for its context */
}

int rd_keys_init(rd_keys_t *keys, const void *secret, size_t len) {
  memset(keys, 0, sizeof *keys);
  if (secret == NULL) return TN_OK;
  if (len < RD_SECRET_MIN)
    return tn_error_set(TN_EINVAL,
                        "the secret must be at least %d bytes (got %zu)",
                        RD_SECRET_MIN, len);
  static const char job[] = "tunnel job key v1";
  static const char result[] = "tunnel result key v1";
  static const char kid[] = "tunnel key id v1";
  unsigned char id[RD_MAC_LEN];
  hmac(secret, len, job, sizeof job - 1, keys->job);
  hmac(secret, len, result, sizeof result - 1, keys->result);
  hmac(secret, len, kid, sizeof kid - 1, id);
  for (int i = 0; i < RD_KID_LEN / 2; i++)
    snprintf(keys->kid + 2 * i, 3, "%02x", id[i]);
  keys->set = true;
  return TN_OK;
}

/* The signed bytes: "tunnel " domain NUL, then each piece as an 8-byte
** big-endian length and its bytes. */
static unsigned char *message(const char *domain, const rd_piece_t *pieces,
                              int n, size_t *len) {
  size_t dl = strlen(domain), total = 7 + dl + 1;
  for (int i = 0; i < n; i++) total += 8 + pieces[i].len;
  unsigned char *m = malloc(total), *p = m;
  if (m == NULL) return NULL;
  memcpy(p, "tunnel ", 7);
  memcpy(p + 7, domain, dl + 1);
  p += 7 + dl + 1;
  for (int i = 0; i < n; i++) {
    uint64_t l = pieces[i].len;
    for (int k = 7; k >= 0; k--) *p++ = (unsigned char)(l >> (8 * k));
    if (pieces[i].len > 0) memcpy(p, pieces[i].data, pieces[i].len);
    p += pieces[i].len;
  }
  *len = total;
  return m;
}

void rd_mac(const unsigned char key[RD_MAC_LEN], const char *domain,
            const rd_piece_t *pieces, int n, unsigned char mac[RD_MAC_LEN]) {
  size_t len;
  unsigned char *m = message(domain, pieces, n, &len);
  if (m == NULL) abort(); /* as libcrypto's own allocation failures */
  hmac(key, RD_MAC_LEN, m, len, mac);
  free(m);
}

bool rd_mac_check(const unsigned char key[RD_MAC_LEN], const char *domain,
                  const rd_piece_t *pieces, int n, const void *mac,
                  size_t len) {
  if (len != RD_MAC_LEN) return false;
  unsigned char want[RD_MAC_LEN];
  rd_mac(key, domain, pieces, n, want);
  return CRYPTO_memcmp(want, mac, RD_MAC_LEN) == 0;
}
