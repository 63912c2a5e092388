/*
** url.c - the one parser of cluster URLs: tn_cluster_open, the
** descriptors by which stored values name cluster objects, and the
** `tunnel` command all read a URL here.
**
**   redis://[[user]:password@]host[:port][/db]    TCP (port 6379, db 0)
**   redis://[[user]:password@][v6-address]:port/db an IPv6 literal
**   unix://[[user]:password@]/path/redis.sock[?db=N]  a Unix socket
**
** With a user the connection logs in with AUTH user password (a Redis 6+
** ACL user), without one with AUTH password (the default user). The
** userinfo and the socket path are percent-decoded (RFC 3986: %40 for @,
** %3A for :, %2F for /, %3F for ?). The parsed form carries the URL
** rebuilt without the credentials, which is all tunnel ever shows or
** stores.
**
** Caveats:
** - No TLS (rediss://), no Sentinel or Redis Cluster URLs.
** - redis://secret@host (no colon) reads `secret` as a password, as
**   tunnel always did; write redis://user:password@host for a user.
** - The only query parameter is db, and only for unix://.
*/
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "redis.h"

static int hex_digit(int ch) {
  if (ch >= '0' && ch <= '9') return ch - '0';
  if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
  if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
  return -1;
}

/* The percent-decoded s[0..n): a new string; NULL for a bad escape or
** %00 (*bad set) or no memory. */
static char *pct_decode(const char *s, size_t n, bool *bad) {
  char *out = malloc(n + 1), *q = out;
  if (out == NULL) return NULL;
  for (size_t i = 0; i < n; i++) {
    if (s[i] != '%') {
      *q++ = s[i];
      continue;
    }
    int hi = i + 1 < n ? hex_digit((unsigned char)s[i + 1]) : -1;
    int lo = i + 2 < n ? hex_digit((unsigned char)s[i + 2]) : -1;
    if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
      free(out);
      *bad = true;
      return NULL;
    }
    *q++ = (char)(hi * 16 + lo);
    i += 2;
  }
  *q = '\0';
  return out;
}

/* Where the userinfo of `rest` (the URL after "scheme://") ends: at the
** '@' in front of it, or `rest` itself when there is none. A unix URL's
** userinfo ends at its first "@/" (the path starts with '/'); a redis
** URL's at its last '@' (a raw '@' in a password has always worked). */
static const char *userinfo_end(const char *rest, bool unix_socket) {
  if (unix_socket) {
    if (rest[0] == '/') return rest;
    const char *at = strstr(rest, "@/");
    return at != NULL ? at : rest;
  }
  const char *at = strrchr(rest, '@');
  return at != NULL ? at : rest;
}

/* `url` for messages: its credentials shown as "***", and a query other
** than db=... as "?..." (someone may try ?password=). */
static void redact(const char *url, char *buf, size_t size) {
  const char *sep = strstr(url, "://");
  const char *rest = sep != NULL ? sep + 3 : url;
  const char *end = userinfo_end(rest, strncmp(url, "unix://", 7) == 0);
  const char *q = strchr(*end == '@' ? end : rest, '?');
  int tail = q == NULL || (strncmp(q, "?db=", 4) == 0 &&
                           strspn(q + 4, "0123456789abcdefx-") ==
                               strlen(q + 4))
                 ? 200
                 : (int)(q - (*end == '@' ? end : rest));
  const char *more = tail == 200 ? "" : "?...";
  if (end == rest && *end != '@')
    snprintf(buf, size, "%.*s%.*s%s", (int)(rest - url), url, tail, rest,
             more);
  else
    snprintf(buf, size, "%.*s***%.*s%s", (int)(rest - url), url, tail, end,
             more);
}

/* `s` with '%', '?', '#' and bytes outside printable ASCII escaped, for
** the path of a rebuilt unix:// URL (so that it parses back to `s`). */
static char *pct_encode_path(const char *s) {
  size_t n = strlen(s);
  char *out = malloc(3 * n + 1), *q = out;
  if (out == NULL) return NULL;
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (*p <= 0x20 || *p >= 0x7f || *p == '%' || *p == '?' || *p == '#') {
      static const char hex[] = "0123456789ABCDEF";
      *q++ = '%';
      *q++ = hex[*p >> 4];
      *q++ = hex[*p & 15];
    } else {
      *q++ = (char)*p;
    }
  }
  *q = '\0';
  return out;
}

/* A decimal in [lo, hi] filling s[0..n) exactly; -1 if not. */
static long number(const char *s, size_t n, long lo, long hi) {
  if (n == 0 || n > 9) return -1;
  long v = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9') return -1;
    v = v * 10 + (s[i] - '0');
  }
  return v >= lo && v <= hi ? v : -1;
}

void tn_url_free(tn_url_t *u) {
  if (u == NULL) return;
  free(u->host);
  free(u->path);
  free(u->user);
  free(u->password);
  free(u->url);
  memset(u, 0, sizeof *u);
}

#define RD_DB_MAX 1000000

int tn_url_parse(const char *url, tn_url_t *u) {
  memset(u, 0, sizeof *u);
  if (url == NULL)
    return tn_error_set(TN_EINVAL, "the URL must be a string");
  char shown[300];
  redact(url, shown, sizeof shown);
  bool unix_socket;
  const char *p;
  if (strncmp(url, "redis://", 8) == 0) {
    unix_socket = false;
    p = url + 8;
  } else if (strncmp(url, "unix://", 7) == 0) {
    unix_socket = true;
    p = url + 7;
  } else {
    return tn_error_set(TN_EINVAL,
                        "%s: the URL must start with redis:// or unix://",
                        shown);
  }
  /* userinfo: user:password, :password, or (as before) password alone */
  const char *end = userinfo_end(p, unix_socket);
  bool bad_escape = false;
  const char *part = "user or password"; /* what a bad escape is in */
  if (*end == '@') {
    const char *colon = memchr(p, ':', (size_t)(end - p));
    const char *pw = colon != NULL ? colon + 1 : p;
    if (colon != NULL && colon > p) {
      u->user = pct_decode(p, (size_t)(colon - p), &bad_escape);
      if (u->user == NULL) goto decode_failed;
    }
    u->password = pct_decode(pw, (size_t)(end - pw), &bad_escape);
    if (u->password == NULL) goto decode_failed;
    p = end + 1;
  }
  if (unix_socket) {
    /* /path/redis.sock[?db=N] */
    size_t pl = strcspn(p, "?#");
    if (pl < 2 || p[0] != '/') goto bad;
    part = "socket path";
    u->path = pct_decode(p, pl, &bad_escape);
    if (u->path == NULL) goto decode_failed;
    p += pl;
    if (*p == '?') {
      p++;
      if (strncmp(p, "db=", 3) != 0) goto bad;
      long db = number(p + 3, strlen(p + 3), 0, RD_DB_MAX);
      if (db < 0) goto bad;
      u->db = (int)db;
    } else if (*p != '\0') {
      goto bad;
    }
    char *enc = pct_encode_path(u->path);
    if (enc == NULL) goto nomem;
    size_t ul = strlen(enc) + 40;
    u->url = malloc(ul);
    if (u->url != NULL) snprintf(u->url, ul, "unix://%s?db=%d", enc, u->db);
    free(enc);
    if (u->url == NULL) goto nomem;
    return TN_OK;
  }
  /* host[:port][/db]; an IPv6 literal in brackets */
  bool v6 = *p == '[';
  size_t hl;
  if (v6) {
    const char *close = strchr(p, ']');
    if (close == NULL || close == p + 1) goto bad;
    hl = (size_t)(close - p - 1);
    u->host = pct_decode(p + 1, hl, &bad_escape);
    if (u->host == NULL) goto host_failed;
    p = close + 1;
    if (*p != '\0' && *p != ':' && *p != '/') goto bad;
  } else {
    hl = strcspn(p, ":/");
    u->host = hl == 0 ? strdup("127.0.0.1") : pct_decode(p, hl, &bad_escape);
    if (u->host == NULL) goto host_failed;
    if (strpbrk(u->host, "@[]?# ") != NULL) goto bad;
    p += hl;
  }
  u->port = 6379;
  if (*p == ':') {
    size_t n = strcspn(p + 1, "/");
    long port = number(p + 1, n, 1, 65535);
    if (port < 0) goto bad;
    u->port = (int)port;
    p += 1 + n;
  }
  if (*p == '/') {
    if (p[1] != '\0') {
      long db = number(p + 1, strlen(p + 1), 0, RD_DB_MAX);
      if (db < 0) goto bad;
      u->db = (int)db;
    }
  } else if (*p != '\0') {
    goto bad;
  }
  size_t ul = strlen(u->host) + 48;
  u->url = malloc(ul);
  if (u->url == NULL) goto nomem;
  snprintf(u->url, ul, v6 ? "redis://[%s]:%d/%d" : "redis://%s:%d/%d",
           u->host, u->port, u->db);
  return TN_OK;
host_failed:
  if (bad_escape) goto bad;
  goto nomem;
decode_failed:
  if (!bad_escape) goto nomem;
  tn_url_free(u);
  return tn_error_set(TN_EINVAL, "%s: a bad percent-escape in the %s", shown,
                      part);
bad:
  tn_url_free(u);
  return tn_error_set(
      TN_EINVAL, "%s: not a %s URL", shown,
      unix_socket ? "unix://[[user]:password@]/path/to/redis.sock[?db=N]"
                  : "redis://[[user]:password@]host[:port][/db]");
nomem:
  tn_url_free(u);
  return TN_ENOMEM;
}
