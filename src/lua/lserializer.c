/*
** lserializer.c - tunnel.Serializer: values to binary strings and back, with
** the codec of codec.c.
**
** A string is a header then the encoded value:
**   4  magic "\x1bTNS"
**   1  format version (1)
**   1  Lua flavour (TN_LUA_FLAVOUR & 0xff)
**   1  flags: bit 0 = a token follows
**   8  check: SipHash-2-4 of the payload, little-endian, keyed with this
**      process's random key tweaked by the token and the three bytes above
**   8  token (only with bit 0)
**   ..  payload: tn_l_encode's bytes for one value (nil: one NIL tag)
**
** Tunnel objects cannot travel inside bytes: their references stay in the
** process. When a value holds objects, save parks its blob (which holds the
** references) in a process-wide table under a fresh 64-bit token written
** into the string: the string's reference, as the original's save added
** one to each object's count.
**
** load hands that reference over to the value it returns, once (a second
** load raises); retain makes new references, as often as asked. As in the
** original, a string stays retainable after its load, for as long as what
** load returned lives: the original's unit test saves, loads, then retains
** the same string in other threads. So load does not take the blob out; it
** marks it loaded and ties it to the loaded value with a keeper (a userdata
** in a weak-keyed registry table, under the value) whose __gc takes the
** blob out and releases it when the value is collected (or its Lua state
** closes). A retain after that raises, where the original's would have
** used freed memory. A string whose objects are never loaded keeps them
** alive until the process exits.
**
** Caveats (by design).
** - Malformed Lua bytecode can crash the VM, so bytecode is loaded only from
**   strings whose check matches, i.e. saved by this very process (the key
**   is drawn from the kernel at the first save or load, and never leaves
**   the process). A string with functions therefore loads only in the
**   process that saved it; one with plain data (and module references,
**   looked up in package.loaded without require) loads in any process of
**   the same Lua flavour. Tokens, too, mean something only in their process.
** - The check authenticates; it does not hide anything.
** - load(s, {trusted = false}) (and retain) decodes data only, whatever
**   the check says: no function, module or globals (codec.h,
**   TN_DECODE_DATA), for strings that come from someone you do not trust.
*/
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "codec.h"

#define CLASS "tunnel.Serializer"
#define HOLDER "tunnel.Serializer.holder"
#define MAGIC "\x1bTNS"
#define VERSION 1
#define FLAVOUR (TN_LUA_FLAVOUR & 0xff)
#define FLAG_TOKEN 1
#define HEAD 15 /* without the token */

/* ---- the keyed check ----------------------------------------------------- */

static uint64_t key[2];
static pthread_once_t key_once = PTHREAD_ONCE_INIT;

static void key_init(void) {
  if (getrandom(key, sizeof key, 0) != (ssize_t)sizeof key) {
    /* No kernel randomness: still unpredictable enough across processes
    ** that a string from elsewhere will not pass by accident. */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    key[0] = (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15u ^ (uint64_t)getpid();
    key[1] = (uint64_t)ts.tv_sec ^ (uint64_t)(uintptr_t)&ts;
  }
}

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                               \
  do {                                                                         \
    v0 += v1; v1 = ROTL(v1, 13); v1 ^= v0; v0 = ROTL(v0, 32);                  \
    v2 += v3; v3 = ROTL(v3, 16); v3 ^= v2;                                     \
    v0 += v3; v3 = ROTL(v3, 21); v3 ^= v0;                                     \
    v2 += v1; v1 = ROTL(v1, 17); v1 ^= v2; v2 = ROTL(v2, 32);                  \
  } while (0)

static uint64_t load64(const unsigned char *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
  return v;
}

static void store64(unsigned char *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

/* SipHash-2-4 of `len` bytes at `in` under the key (k0, k1). */
static uint64_t siphash(uint64_t k0, uint64_t k1, const unsigned char *in,
                        size_t len) {
  uint64_t v0 = 0x736f6d6570736575u ^ k0, v1 = 0x646f72616e646f6du ^ k1;
  uint64_t v2 = 0x6c7967656e657261u ^ k0, v3 = 0x7465646279746573u ^ k1;
  size_t full = len - len % 8;
  for (size_t i = 0; i < full; i += 8) {
    uint64_t m = load64(in + i);
    v3 ^= m;
    SIPROUND;
    SIPROUND;
    v0 ^= m;
  }
  uint64_t b = (uint64_t)len << 56;
  for (size_t i = 0; i < len % 8; i++) b |= (uint64_t)in[full + i] << (8 * i);
  v3 ^= b;
  SIPROUND;
  SIPROUND;
  v0 ^= b;
  v2 ^= 0xff;
  SIPROUND;
  SIPROUND;
  SIPROUND;
  SIPROUND;
  return v0 ^ v1 ^ v2 ^ v3;
}

/* The check of a string: the header bytes and the token tweak the key. */
static uint64_t check_of(const unsigned char *head, uint64_t token,
                         const unsigned char *payload, size_t len) {
  pthread_once(&key_once, key_init);
  uint64_t tweak = (uint64_t)head[4] | (uint64_t)head[5] << 8 |
                   (uint64_t)head[6] << 16;
  return siphash(key[0] ^ token, key[1] ^ tweak, payload, len);
}

/* ---- parked blobs -------------------------------------------------------- */

typedef struct parked {
  uint64_t token;
  tn_blob_t *blob;
  int loaded; /* a load has claimed it; its keeper takes it out */
  struct parked *next;
} parked_t;

#define NBUCKETS 64
static parked_t *buckets[NBUCKETS];
static uint64_t next_token; /* under park_lock */
static pthread_mutex_t park_lock = PTHREAD_MUTEX_INITIALIZER;

/* A bijective mix: distinct counters give distinct tokens. */
static uint64_t mix64(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdu;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53u;
  x ^= x >> 33;
  return x;
}

static uint64_t new_token(void) {
  pthread_once(&key_once, key_init);
  pthread_mutex_lock(&park_lock);
  uint64_t t = mix64(key[0] + next_token++);
  pthread_mutex_unlock(&park_lock);
  return t;
}

/* Park `b` under `token`; 0 when out of memory (then b is still yours). */
static int park(uint64_t token, tn_blob_t *b) {
  parked_t *p = malloc(sizeof *p);
  if (p == NULL) return 0;
  p->token = token;
  p->blob = b;
  p->loaded = 0;
  pthread_mutex_lock(&park_lock);
  p->next = buckets[token % NBUCKETS];
  buckets[token % NBUCKETS] = p;
  pthread_mutex_unlock(&park_lock);
  return 1;
}

/* The blob parked under `token`: taken out (`take`) or a new reference to
** it; NULL if there is none. */
static tn_blob_t *unpark(uint64_t token, int take) {
  tn_blob_t *b = NULL;
  parked_t *gone = NULL;
  pthread_mutex_lock(&park_lock);
  for (parked_t **pp = &buckets[token % NBUCKETS]; *pp != NULL;
       pp = &(*pp)->next) {
    if ((*pp)->token != token) continue;
    if (take) {
      gone = *pp;
      b = gone->blob;
      *pp = gone->next;
    } else {
      b = tn_blob_retain((*pp)->blob);
    }
    break;
  }
  pthread_mutex_unlock(&park_lock);
  free(gone);
  return b;
}

/* Claim the blob under `token` for a load: 1 done, 0 a load claimed it
** before, -1 there is none (gone). */
static int claim(uint64_t token) {
  int r = -1;
  pthread_mutex_lock(&park_lock);
  for (parked_t *p = buckets[token % NBUCKETS]; p != NULL; p = p->next) {
    if (p->token != token) continue;
    r = p->loaded ? 0 : 1;
    p->loaded = 1;
    break;
  }
  pthread_mutex_unlock(&park_lock);
  return r;
}

/* ---- the class ----------------------------------------------------------- */

/* A holder: a userdata that owns one blob reference until it is taken or
** collected, so an error at any point leaks nothing. */
typedef struct holder {
  tn_blob_t *blob;
} holder_t;

static int l_holder_gc(lua_State *L) {
  holder_t *h = lua_touserdata(L, 1);
  if (h != NULL) {
    tn_blob_release(h->blob);
    h->blob = NULL;
  }
  return 0;
}

static holder_t *push_holder(lua_State *L) {
  holder_t *h = tn_newuserdata(L, sizeof(holder_t));
  h->blob = NULL;
  luaL_getmetatable(L, HOLDER);
  lua_setmetatable(L, -2);
  return h;
}

/* A keeper: once armed, its __gc takes the blob parked under `token` out
** and releases it (see the header). */
#define KEEPER "tunnel.Serializer.keeper"
#define KEPT "tunnel.Serializer.kept" /* registry: value -> {keepers} */

typedef struct keeper {
  uint64_t token;
  int armed;
} keeper_t;

static int l_keeper_gc(lua_State *L) {
  keeper_t *k = lua_touserdata(L, 1);
  if (k != NULL && k->armed) {
    k->armed = 0;
    tn_blob_release(unpark(k->token, 1));
  }
  return 0;
}

static keeper_t *push_keeper(lua_State *L, uint64_t token) {
  keeper_t *k = tn_newuserdata(L, sizeof(keeper_t));
  k->token = token;
  k->armed = 0;
  luaL_getmetatable(L, KEEPER);
  lua_setmetatable(L, -2);
  return k;
}

/*
** Keep the keeper at `kidx` alive as long as the value at `vidx`: in the
** weak-keyed KEPT table, value -> a list of keepers (one value may come from
** several strings). The list holds no reference to the value, so on 5.1
** and LuaJIT too (no ephemerons) the entry goes when the value does. A
** value that cannot be a weak key (never the case: a string with objects
** decodes to a box, a table or a function) leaves the keeper to be
** collected at once. May raise (out of memory): an armed keeper nobody
** holds then drops the blob when collected.
*/
static void keep(lua_State *L, int vidx, int kidx) {
  int t = lua_type(L, vidx);
  if (t != LUA_TTABLE && t != LUA_TUSERDATA && t != LUA_TFUNCTION &&
      t != LUA_TTHREAD)
    return;
  lua_getfield(L, LUA_REGISTRYINDEX, KEPT);
  lua_pushvalue(L, vidx);
  lua_rawget(L, -2);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    lua_createtable(L, 1, 0);
    lua_pushvalue(L, vidx);
    lua_pushvalue(L, -2);
    lua_rawset(L, -4);
  }
  lua_pushvalue(L, kidx);
  lua_rawseti(L, -2, (int)tn_rawlen(L, -2) + 1);
  lua_pop(L, 2);
}

static void check_self(lua_State *L, const char *method) {
  if (lua_type(L, 1) == LUA_TUSERDATA && lua_getmetatable(L, 1)) {
    luaL_getmetatable(L, CLASS);
    int same = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    if (same) return;
  }
  tn_l_error(L, method, "self is a %s, not a " CLASS " (call it with ':')",
             luaL_typename(L, 1));
}

static int l_serializer_save(lua_State *L) {
  const char *method = CLASS ":save";
  check_self(L, method);
  lua_settop(L, 2);
  holder_t *h = push_holder(L); /* before the blob exists: nothing leaks */
  h->blob = tn_l_encode(L, 2, 1, method);
  /* nil is one NIL tag (0), so that a string cut after its header is
  ** caught rather than read as nil */
  static const unsigned char nil_payload[1] = {0};
  const unsigned char *payload = nil_payload;
  size_t len = 1, nrefs = 0;
  if (h->blob != NULL) {
    payload = tn_blob_data(h->blob);
    len = tn_blob_size(h->blob);
    nrefs = tn_blob_nrefs(h->blob);
  }
  unsigned char head[HEAD + 8];
  memcpy(head, MAGIC, 4);
  head[4] = VERSION;
  head[5] = FLAVOUR;
  head[6] = nrefs > 0 ? FLAG_TOKEN : 0;
  uint64_t token = nrefs > 0 ? new_token() : 0;
  store64(head + 7, check_of(head, token, payload, len));
  if (nrefs > 0) store64(head + HEAD, token);
  lua_pushlstring(L, (const char *)head, nrefs > 0 ? HEAD + 8 : HEAD);
  lua_pushlstring(L, (const char *)payload, len);
  lua_concat(L, 2);
  if (nrefs > 0) {
    if (!park(token, h->blob)) tn_l_coreerror(L, method, TN_ENOMEM);
  } else {
    tn_blob_release(h->blob);
  }
  h->blob = NULL;
  return 1;
}

/* The options table at 3 of load and retain: 0 for {trusted = false}. */
static int opt_trusted(lua_State *L, const char *method) {
  if (lua_isnoneornil(L, 3)) return 1;
  if (lua_type(L, 3) != LUA_TTABLE)
    return tn_l_error(L, method, "options must be a table (got %s)",
                      luaL_typename(L, 3));
  lua_getfield(L, 3, "trusted");
  int trusted = 1;
  if (lua_type(L, -1) == LUA_TBOOLEAN)
    trusted = lua_toboolean(L, -1);
  else if (!lua_isnil(L, -1))
    return tn_l_error(L, method, "trusted must be a boolean (got %s)",
                      luaL_typename(L, -1));
  lua_pop(L, 1);
  return trusted;
}

/*
** load and retain: decode the string at 2 (options at 3); `take` hands the
** objects over. The objects are claimed only after the value decoded, so
** a load that fails (untrusted bytes, a class not registered here, ...)
** leaves them unclaimed and the string loads again later.
*/
static int load(lua_State *L, const char *method, int take) {
  check_self(L, method);
  if (lua_type(L, 2) != LUA_TSTRING)
    return tn_l_error(L, method, "expects a string (got %s)",
                      luaL_typename(L, 2));
  int data_only = !opt_trusted(L, method);
  size_t len;
  const unsigned char *s = (const unsigned char *)lua_tolstring(L, 2, &len);
  if (len < HEAD || memcmp(s, MAGIC, 4) != 0)
    return tn_l_error(L, method, "not a string saved by " CLASS);
  if (s[4] != VERSION)
    return tn_l_error(L, method, "string saved by another version of "
                                 "tunnel (format %d, this is %d)",
                      (int)s[4], VERSION);
  if (s[5] != FLAVOUR)
    return tn_l_error(L, method, "string saved by another Lua flavour");
  if ((s[6] & ~FLAG_TOKEN) != 0 || (s[6] && len < HEAD + 8))
    return tn_l_error(L, method, "corrupt value (bad header)");
  size_t head = s[6] ? HEAD + 8 : HEAD;
  uint64_t token = s[6] ? load64(s + HEAD) : 0;
  int trusted = check_of(s, token, s + head, len - head) == load64(s + 7);
  holder_t *h = push_holder(L);
  /* The keeper exists before anything is claimed: making it may raise. */
  keeper_t *k = s[6] && take ? push_keeper(L, token) : NULL;
  int kidx = lua_gettop(L);
  if (s[6]) {
    if (!trusted)
      return tn_l_error(L, method, "corrupt value (the objects of a string "
                                   "live only in the process that saved it)");
    h->blob = unpark(token, 0);
    if (h->blob == NULL)
      return tn_l_error(L, method, "the objects in this string are gone: it "
                                   "was loaded, and the value load returned "
                                   "has been collected");
  }
  int trust = data_only ? TN_DECODE_DATA
              : trusted ? TN_DECODE_OWN : TN_DECODE_FOREIGN;
  int n = tn_l_decode_bytes(L, s + head, len - head, h->blob, trust, method);
  if (n != 1)
    return tn_l_error(L, method, "corrupt value (%d values, not 1)", n);
  tn_blob_release(h->blob); /* the boxes hold their objects now */
  h->blob = NULL;
  if (k != NULL) {
    /* Decoded: now claim the string's reference for this value. A load of
    ** the same string (in any thread) may have claimed it first; then this
    ** one fails as if it had come second (its boxes go with the stack). */
    int c = claim(token);
    if (c == 0)
      return tn_l_error(L, method, "the objects in this string were already "
                                   "loaded (use retain)");
    if (c < 0)
      return tn_l_error(L, method, "the objects in this string are gone: it "
                                   "was loaded, and the value load returned "
                                   "has been collected");
    k->armed = 1;
    keep(L, lua_gettop(L), kidx);
  }
  return 1;
}

static int l_serializer_load(lua_State *L) {
  return load(L, CLASS ":load", 1);
}

static int l_serializer_retain(lua_State *L) {
  return load(L, CLASS ":retain", 0);
}

static int l_serializer_tostring(lua_State *L) {
  lua_pushfstring(L, CLASS ": %p", lua_touserdata(L, 1));
  return 1;
}

/* The metatables and the KEPT table, made with a state's first
** Serializer (every block thread loads the module; few serialize). */
static void serializer_init(lua_State *L) {
  static const luaL_Reg methods[] = {{"save", l_serializer_save},
                                     {"load", l_serializer_load},
                                     {"retain", l_serializer_retain},
                                     {NULL, NULL}};
  luaL_newmetatable(L, HOLDER);
  lua_pushcfunction(L, l_holder_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  luaL_newmetatable(L, KEEPER);
  lua_pushcfunction(L, l_keeper_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  lua_newtable(L); /* KEPT, weak-keyed */
  lua_createtable(L, 0, 1);
  lua_pushliteral(L, "k");
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  lua_setfield(L, LUA_REGISTRYINDEX, KEPT);
  luaL_newmetatable(L, CLASS);
  lua_newtable(L);
  tn_setfuncs(L, methods);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, l_serializer_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pushliteral(L, CLASS);
  lua_setfield(L, -2, "__name");
  lua_pushliteral(L, "locked");
  lua_setfield(L, -2, "__metatable");
  lua_pop(L, 1);
}

static int l_serializer_new(lua_State *L) {
  tn_newuserdata(L, 1);
  lua_getfield(L, LUA_REGISTRYINDEX, CLASS);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    serializer_init(L);
    lua_getfield(L, LUA_REGISTRYINDEX, CLASS);
  }
  lua_setmetatable(L, -2);
  return 1;
}

void tn_l_open_serializer(lua_State *L) {
  lua_pushcfunction(L, l_serializer_new);
  lua_setfield(L, -2, "Serializer");
}
