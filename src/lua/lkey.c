/*
** lkey.c - what tunnel.Hash and shared tables share: the canonical bytes
** under which a map stores a Lua key, and snapshots of a map as plain Lua
** tables.
**
** Keys are strings, numbers or booleans, turned into byte strings that
** compare equal exactly when Lua's table keys do:
**   - a string whose first byte is above TN_KEY_MAX is its own bytes (no
**     copy: the common case on the hot path); any other string, the empty
**     one aside, is TN_KEY_STRING followed by its bytes;
**   - false / true are the single bytes TN_KEY_FALSE / TN_KEY_TRUE;
**   - a number with an integral value in the 64-bit range (1, 1.0, -0.0,
**     2^53 on every Lua) is TN_KEY_INT + 8 bytes; any other number is
**     TN_KEY_FLOAT + 8 bytes; NaN is refused, as Lua tables refuse it.
** A key decodes back to a Lua value (integers as integers on 5.3+).
*/
#include <math.h>
#include <string.h>

#include "codec.h"
#include "ltunnel.h"

void tn_l_intkey(tn_l_key_t *k, int64_t i) {
  k->buf[0] = TN_KEY_INT;
  memcpy(k->buf + 1, &i, sizeof i);
  k->data = k->buf;
  k->len = 1 + sizeof i;
}

int tn_l_checkkey(lua_State *L, int idx, tn_l_key_t *k, const char *method,
                  int strict) {
  switch (lua_type(L, idx)) {
  case LUA_TSTRING: {
    size_t len;
    const char *s = lua_tolstring(L, idx, &len);
    if (len == 0 || (unsigned char)s[0] > TN_KEY_MAX) {
      k->data = s;
      k->len = len;
      return 1;
    }
    unsigned char *p = k->buf;
    if (len >= sizeof k->buf) {
      p = tn_newuserdata(L, len + 1);
      lua_replace(L, idx); /* the copy keeps p alive; s is no longer used */
    }
    p[0] = TN_KEY_STRING;
    memcpy(p + 1, s, len);
    k->data = p;
    k->len = len + 1;
    return 1;
  }
  case LUA_TBOOLEAN:
    k->buf[0] = lua_toboolean(L, idx) ? TN_KEY_TRUE : TN_KEY_FALSE;
    k->data = k->buf;
    k->len = 1;
    return 1;
  case LUA_TNUMBER: {
#if TN_HAS_INTEGERS
    if (lua_isinteger(L, idx)) {
      tn_l_intkey(k, (int64_t)lua_tointeger(L, idx));
      return 1;
    }
#endif
    double n = (double)lua_tonumber(L, idx);
    if (isnan(n)) {
      if (!strict) return 0;
      return tn_l_error(L, method, "key must not be NaN");
    }
    /* Integral values in [-2^63, 2^63) are the integer's key, so that 1
    ** and 1.0 (and -0.0 and 0) are one key, as in a Lua table. */
    if (n == floor(n) && n >= -9223372036854775808.0 &&
        n < 9223372036854775808.0) {
      tn_l_intkey(k, (int64_t)n);
      return 1;
    }
    k->buf[0] = TN_KEY_FLOAT;
    memcpy(k->buf + 1, &n, sizeof n);
    k->data = k->buf;
    k->len = 1 + sizeof n;
    return 1;
  }
  case LUA_TNIL:
    if (!strict) return 0;
    /* FALLTHROUGH */
  default:
    return tn_l_error(L, method,
                      "key must be a string, number or boolean (got %s)",
                      luaL_typename(L, idx));
  }
}

void tn_l_pushkey(lua_State *L, const void *data, size_t len) {
  const unsigned char *p = data;
  if (len == 0 || p[0] > TN_KEY_MAX) {
    lua_pushlstring(L, (const char *)p, len);
    return;
  }
  switch (p[0]) {
  case TN_KEY_STRING: lua_pushlstring(L, (const char *)p + 1, len - 1); return;
  case TN_KEY_FALSE: lua_pushboolean(L, 0); return;
  case TN_KEY_TRUE: lua_pushboolean(L, 1); return;
  case TN_KEY_INT: {
    int64_t i = 0;
    if (len == 1 + sizeof i) memcpy(&i, p + 1, sizeof i);
#if TN_HAS_INTEGERS
    lua_pushinteger(L, (lua_Integer)i);
#else
    lua_pushnumber(L, (lua_Number)i);
#endif
    return;
  }
  default: { /* TN_KEY_FLOAT */
    double n = 0;
    if (len == 1 + sizeof n) memcpy(&n, p + 1, sizeof n);
    lua_pushnumber(L, (lua_Number)n);
    return;
  }
  }
}

/* Values up to this size are copied out of the map (a C stack buffer). */
#define READ_COPY_MAX 256

/* Push the value a peek copied out (found, no reference taken): 1, or 0
** with nothing pushed when it refers to an object this state holds no box
** for (the caller then reads it again, taking a reference). */
static int push_peeked(lua_State *L, const tn_peek_t *p, const char *method) {
  const unsigned char *buf = p->buf;
  if (p->nobjs > 0) /* a nested shared table, a Vector, ...: one object */
    return tn_l_isobjectref(buf, p->size) &&
           tn_l_pushcachedobject(L, p->objs[0]);
  /* The copy is ours: nothing to drop if decoding raises. */
  int n;
  if (p->size > 0 && buf[0] == TN_CODEC_DATA_ONLY) /* as tn_l_decode */
    n = tn_l_decode_bytes(L, buf + 1, p->size - 1, NULL, TN_DECODE_DATA,
                          method);
  else
    n = tn_l_decode_bytes(L, buf, p->size, NULL, TN_DECODE_OWN, method);
  if (n == 0) /* the first value only, nil if none (as tn_l_pushblob) */
    lua_pushnil(L);
  else if (n > 1)
    lua_pop(L, n - 1);
  return 1;
}

int tn_l_pushpeek(lua_State *L, tn_peek_t *p,
                  int (*again)(tn_peek_t *p, void *arg), void *arg,
                  const char *method) {
  if (p->blob != NULL) {
    tn_l_pushblob(L, p->blob, method);
    return TN_OK;
  }
  if (!p->found) {
    lua_pushnil(L);
    return TN_OK;
  }
  if (push_peeked(L, p, method)) return TN_OK;
  tn_peek_t q = {.take = 1};
  int rc = again(&q, arg);
  if (rc != TN_OK) return rc;
  tn_l_pushblob(L, q.blob, method); /* NULL (gone meanwhile): nil */
  return TN_OK;
}

typedef struct map_read {
  tn_map_t *m;
  const tn_l_key_t *k;
  double timeout;
} map_read_t;

static int peek_map(tn_peek_t *p, void *arg) {
  map_read_t *r = arg;
  return tn_map_peek(r->m, r->k->data, r->k->len, p, r->timeout);
}

int tn_l_pushmapvalue(lua_State *L, tn_map_t *m, const tn_l_key_t *k,
                      double timeout, const char *method) {
  unsigned char buf[READ_COPY_MAX];
  tn_object_t *objs[1];
  tn_peek_t p = {buf, sizeof buf, objs, 1, 1, 0, 0, 0, NULL};
  map_read_t r = {m, k, timeout};
  int rc = peek_map(&p, &r);
  if (rc != TN_OK) return rc;
  return tn_l_pushpeek(L, &p, peek_map, &r, method);
}

/* A snapshot being turned into a Lua table; freed by tn_l_pushmap whether
** the protected body returned or raised. */
typedef struct map_snapshot {
  const char *method;
  tn_map_entry_t *entries;
  size_t n;
} map_snapshot_t;

/* Protected: (snapshot) -> a plain table of its keys and values. */
static int map_snapshot_body(lua_State *L) {
  map_snapshot_t *ms = lua_touserdata(L, 1);
  lua_createtable(L, 0, ms->n > (size_t)INT32_MAX ? 0 : (int)ms->n);
  for (size_t i = 0; i < ms->n; i++) {
    tn_l_pushkey(L, ms->entries[i].key, ms->entries[i].len);
    tn_l_pushblob(L, tn_blob_retain(ms->entries[i].value), ms->method);
    lua_rawset(L, -3);
  }
  return 1;
}

int tn_l_pushmap(lua_State *L, tn_map_t *m, double timeout,
                 const char *method) {
  map_snapshot_t ms = {method, NULL, 0};
  int rc = tn_map_snapshot(m, &ms.entries, &ms.n, timeout);
  if (tn_l_waited(rc)) return rc;
  if (rc != TN_OK) return tn_l_coreerror(L, method, rc);
  lua_pushcfunction(L, map_snapshot_body);
  lua_pushlightuserdata(L, &ms);
  int status = lua_pcall(L, 1, 1, 0);
  tn_map_entries_free(ms.entries, ms.n);
  if (status != 0) lua_error(L);
  return TN_OK;
}

/* The iterator over a tn_l_pushmap table: upvalue 1 the table, 2 the last
** key given. Uses lua_next, not the global `next` (which a program may
** have replaced). */
static int map_next(lua_State *L) {
  lua_pushvalue(L, lua_upvalueindex(2));
  if (!lua_next(L, lua_upvalueindex(1))) return 0;
  lua_pushvalue(L, -2);
  lua_replace(L, lua_upvalueindex(2));
  return 2;
}

void tn_l_pushmapiterator(lua_State *L) {
  lua_pushnil(L);
  lua_pushcclosure(L, map_next, 2);
}
