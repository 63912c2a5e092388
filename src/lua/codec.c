/*
** codec.c - the value codec: Lua values to blobs and back (tn_l_encode,
** tn_l_decode, tn_l_decode_bytes).
**
** Format. A blob holds its values one after another; each is a tag byte and
** a payload:
**   NIL FALSE TRUE           nothing
**   INT                      zigzag varint (lua_Integer)
**   FLOAT                    8 bytes, little-endian IEEE double
**   STRING                   varint length, raw bytes
**   TABLE, TABLE_R           varint n, varint m, n values (t[1..n]; NIL is
**                            a hole), then m key/value pairs
**   FUNC, FUNC_R             flavour byte, varint length, lua_dump bytes,
**                            varint nups, then each upvalue as a value
**   REF                      varint i: the i-th table or Lua function of
**                            the blob (1-based, in order of appearance),
**                            for cycles and sharing
**   UPJOIN                   (as an upvalue only) varint f, varint n: the
**                            upvalue is shared with upvalue n of function
**                            REF f (5.2+ and LuaJIT)
**   GLOBALS                  the receiver's globals table
**   MODULE                   varint length, name: package.loaded[name]
**   CFIELD                   module name, field name (two strings): a C
**                            function found in a module, e.g. _G.print
**   OBJECT                   varint i: tn_blob_ref(blob, i)
**   CLASS                    varint length, name, then a TABLE or TABLE_R
**                            (tag and payload): the table, with the
**                            metatable registered under that name in the
**                            receiver (tunnel.register)
** The _R tags mark the tables and functions that a REF or UPJOIN names
** (the encoder patches the tag when it writes the reference), so a decoder
** keeps a back-reference table only for those, and only when there are
** any. A function's length is a 5-byte varint (patched after lua_dump), so
** offsets never move. Varints are LEB128, at most 10 bytes, not always
** minimal. Blobs carry no header: they live in one process;
** tunnel.Serializer adds a version and a flavour. CLASS was added to
** format 1 without a new version: every older string still decodes the
** same; a string holding a class instance reads as "corrupt value
** (unknown tag)" in a tunnel older than CLASS. A blob may start with
** TN_CODEC_DATA_ONLY (codec.h), which is not a tag: decode the rest as
** data only.
**
** Classes. tunnel.register(name, mt) records, per Lua state, name -> mt
** and mt -> name (one table in the registry; names are strings and
** metatables tables, so the two directions never collide). A table whose
** metatable is registered is sent as CLASS name + the table's contents
** (raw: no metamethod runs); the receiver sets the metatable that *it*
** registered under that name, so the class's methods are the receiver's
** own code, never sent. Registering is idempotent for the same (name,
** mt); a name bound to another metatable, or a metatable bound to another
** name, raises (one name per class and one class per name, so what a
** receiver gets never depends on the order of registrations). There is
** no unregistering. A table with an unregistered metatable is refused at
** the send; a name the receiver has not registered is refused at the
** receive, naming the class.
**
** Caveats.
** - Numbers on 5.1/LuaJIT are doubles and travel as FLOAT.
** - Module tables and C functions cross by name, using a per-state cache of
**   package.loaded (value -> name): the module tables at the first send of
**   a table, their C functions too at the first send of a C function, all
**   rebuilt once when a C function is missing from it. A
**   module loaded after the cache was built is still recognised for its C
**   functions (they trigger the rebuild), but its table is copied like any
**   table until something else rebuilds the cache.
** - Globals resolve in the receiver: the sender's globals table becomes
**   the receiver's wherever it is met, and the _ENV upvalue of a 5.2+
**   function always becomes the receiver's globals, whatever it held (as on
**   5.1/LuaJIT, where a function's environment never travels and a loaded
**   function gets the receiver's globals). So a function from a sandbox
**   (busted runs specs with a proxy _ENV) sends and runs on real globals.
** - Upvalues shared by two closures of one value stay shared on 5.2+ and
**   LuaJIT; on plain 5.1 each closure gets its own copy.
** - Nesting (tables and functions) is limited to TN_CODEC_MAXDEPTH levels.
** - The metatable of a class instance is not looked at beyond its identity:
**   __pairs, __index, __gc, ... are not consulted when encoding, and a
**   registered metatable that is itself sent as a value (not as the
**   metatable of a table) is copied like any table.
**
** Speed and errors. Lua errors longjmp out of this code, so nothing is
** allocated here outside Lua's reach: the encoder works in a per-state
** buffer (a userdata freed by __gc) reused from one encode to the next:
** the bytes, the object pointers (borrowed; tn_blob_new retains them) and
** the set of tables and functions met (by address, in C). So an encode
** creates no Lua object at all, and a single scalar not even that buffer.
** The decoder allocates nothing but the values it pushes, plus a
** back-reference table only when the blob has a REF or UPJOIN; it never
** writes to the blob, so several threads may decode one blob at once.
*/
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"

#define TN_CODEC_MAXDEPTH 200

/* The flavour as the one byte the format has room for. */
#define FLAVOUR (TN_LUA_FLAVOUR & 0xff)

enum {
  TAG_NIL = 0,
  TAG_FALSE,
  TAG_TRUE,
  TAG_INT,
  TAG_FLOAT,
  TAG_STRING,
  TAG_TABLE,
  TAG_TABLE_R, /* TAG_TABLE + 1 */
  TAG_REF,
  TAG_FUNC,
  TAG_FUNC_R, /* TAG_FUNC + 1 */
  TAG_UPJOIN,
  TAG_GLOBALS,
  TAG_MODULE,
  TAG_CFIELD,
  TAG_OBJECT,
  TAG_CLASS
};

/* Registry key of the per-state class table (tunnel.register). */
static const char classes_key = 'c';

/* Registry key of the per-state name cache (its address is unique). */
static const char names_key = 'n';

/* ---- the encode buffer ------------------------------------------------ */

/*
** Each state keeps one buffer (a userdata in the registry, freed by __gc),
** reused by every encode. `active` marks it in use: a __gc metamethod run by
** the collector in the middle of an encode may encode too, and then gets a
** scratch buffer of its own. Errors raised here clear `active` first; an
** error raised by Lua itself (out of memory) leaves it set, and later
** encodes in that state merely use scratch buffers.
*/
/*
** The tables and Lua functions met so far (for REF), and upvalues (for
** UPJOIN), by address: an open-addressing hash with a generation number,
** so a new encode empties it in O(1). The values stay alive (they are
** reachable from the value being encoded) and Lua never moves objects.
*/
typedef struct seen_slot {
  const void *p;
  uint32_t gen; /* the slot is used if gen == buf.gen */
  uint32_t up;  /* 0: a table or function; else the upvalue number */
  size_t item;  /* REF number (of the upvalue's function) */
  size_t off;   /* offset of its tag byte (to patch) */
} seen_slot_t;

typedef struct buf {
  unsigned char *bytes;
  size_t len, cap;
  tn_object_t **objs; /* borrowed: the values being encoded hold them */
  size_t nobjs, objcap;
  seen_slot_t *slots;
  size_t nslots, used; /* nslots: 0 or a power of 2 */
  uint32_t gen;
  int active;
} buf_t;

static const char buf_key = 'b';

static int l_buf_gc(lua_State *L) {
  buf_t *t = lua_touserdata(L, 1);
  free(t->bytes);
  free(t->objs);
  free(t->slots);
  memset(t, 0, sizeof *t);
  return 0;
}

/* Push a new, empty buffer. */
static buf_t *push_buf(lua_State *L) {
  buf_t *t = tn_newuserdata(L, sizeof(buf_t));
  memset(t, 0, sizeof *t);
  if (luaL_newmetatable(L, "tunnel.codec.buffer")) {
    lua_pushcfunction(L, l_buf_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  return t;
}

/* The state's buffer, or (nested encode) a scratch one left on the stack. */
static buf_t *get_buf(lua_State *L) {
  lua_pushlightuserdata(L, (void *)&buf_key);
  lua_rawget(L, LUA_REGISTRYINDEX);
  buf_t *t = lua_touserdata(L, -1);
  lua_pop(L, 1); /* the registry keeps it */
  if (t != NULL && !t->active) return t;
  if (t != NULL) return push_buf(L); /* scratch, on the stack */
  t = push_buf(L);
  lua_pushlightuserdata(L, (void *)&buf_key);
  lua_pushvalue(L, -2);
  lua_rawset(L, LUA_REGISTRYINDEX);
  lua_pop(L, 1);
  return t;
}

/* Past this, a buffer is dropped after use, not kept for the next send. */
#define BUF_KEEP (256 * 1024)

/* ---- encoding ----------------------------------------------------------- */

enum { PE_KEY, PE_INDEX, PE_UPVAL, PE_KEYOF };

typedef struct path_elem {
  int kind;
  int idx;          /* PE_KEY, PE_KEYOF: stack index of the key */
  lua_Integer n;    /* PE_INDEX */
  const char *name; /* PE_UPVAL */
} path_elem_t;

typedef struct enc {
  lua_State *L;
  buf_t *t;
  const char *method;
  int count;    /* values in this encode (names the root in errors) */
  int arg;      /* which of them is being encoded (1-based) */
  size_t nitems;         /* tables and Lua functions written so far */
  const void *globals;   /* the globals table; NULL until a table is met */
  int names;    /* stack slot of the name cache (nil until needed) */
  int have_names; /* 0: not yet; 1: module tables; 2: and C functions */
  int rebuilt;  /* the name cache was rebuilt during this encode */
  int depth;
  path_elem_t path[TN_CODEC_MAXDEPTH + 2];
} enc_t;

/* Every error of the encoder: free the buffer for the next encode, raise. */
static int enc_fail(enc_t *e, const char *why) {
  e->t->active = 0;
  return tn_l_error(e->L, e->method, "%s", why);
}

static void enc_checkstack(enc_t *e, int n) {
  if (!lua_checkstack(e->L, n)) enc_fail(e, "value too deep (Lua stack full)");
}

static void grow(enc_t *e, size_t n) {
  buf_t *t = e->t;
  size_t cap = t->cap < 256 ? 256 : t->cap;
  while (cap - t->len < n) {
    if (cap > SIZE_MAX / 2) enc_fail(e, "value too large");
    cap *= 2;
  }
  unsigned char *p = realloc(t->bytes, cap);
  if (p == NULL) enc_fail(e, tn_strerror(TN_ENOMEM));
  t->bytes = p;
  t->cap = cap;
}

static inline unsigned char *reserve(enc_t *e, size_t n) {
  if (e->t->cap - e->t->len < n) grow(e, n);
  return e->t->bytes + e->t->len;
}

static inline void put_byte(enc_t *e, int c) {
  *reserve(e, 1) = (unsigned char)c;
  e->t->len++;
}

static inline size_t write_varint(unsigned char *p, uint64_t v) {
  size_t n = 0;
  while (v >= 0x80) {
    p[n++] = (unsigned char)(v | 0x80);
    v >>= 7;
  }
  p[n++] = (unsigned char)v;
  return n;
}

static inline void put_varint(enc_t *e, uint64_t v) {
  unsigned char *p = reserve(e, 10);
  e->t->len += write_varint(p, v);
}

static inline size_t write_float(unsigned char *p, lua_Number x) {
  double d = (double)x;
  uint64_t u;
  memcpy(&u, &d, sizeof u);
  p[0] = TAG_FLOAT;
  for (int i = 0; i < 8; i++) p[1 + i] = (unsigned char)(u >> (8 * i));
  return 9;
}

static inline uint64_t zigzag(lua_Integer i) {
  uint64_t u = (uint64_t)i;
  return (u << 1) ^ (0 - (u >> 63));
}

/* Scalars into `p` (room for 11 bytes); the length written. */
static inline size_t write_number(lua_State *L, int idx, unsigned char *p) {
#if TN_HAS_INTEGERS
  if (lua_isinteger(L, idx)) {
    p[0] = TAG_INT;
    return 1 + write_varint(p + 1, zigzag(lua_tointeger(L, idx)));
  }
#endif
  return write_float(p, lua_tonumber(L, idx));
}

static inline void put_bytes(enc_t *e, const void *s, size_t len) {
  memcpy(reserve(e, len), s, len);
  e->t->len += len;
}

static void put_string(enc_t *e, int idx) {
  size_t len;
  const char *s = lua_tolstring(e->L, idx, &len);
  unsigned char *p = reserve(e, 11 + len);
  p[0] = TAG_STRING;
  size_t n = 1 + write_varint(p + 1, len);
  memcpy(p + n, s, len);
  e->t->len += n + len;
}

/* Is `s` a Lua identifier (so a path can say .name)? */
static int is_identifier(const char *s, size_t len) {
  if (len == 0 || len > 64) return 0;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    int alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    if (!alpha && !(i > 0 && c >= '0' && c <= '9')) return 0;
  }
  return 1;
}

/* Push how a key reads in a path: .name, [3], ["x y"], [true], [table]. */
static void push_key(lua_State *L, int idx) {
  switch (lua_type(L, idx)) {
  case LUA_TSTRING: {
    size_t len;
    const char *s = lua_tolstring(L, idx, &len);
    if (is_identifier(s, len)) {
      lua_pushfstring(L, ".%s", s);
    } else {
      char buf[48];
      size_t n = len < 40 ? len : 40;
      for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        buf[i] = (c < 32 || c > 126 || c == '"' || c == '\\') ? '?' : (char)c;
      }
      buf[n] = '\0';
      lua_pushfstring(L, "[\"%s%s\"]", buf, len > n ? "..." : "");
    }
    break;
  }
  case LUA_TNUMBER: {
    lua_pushvalue(L, idx); /* tostring would change a lua_next key */
    lua_pushfstring(L, "[%s]", lua_tostring(L, -1));
    lua_remove(L, -2);
    break;
  }
  case LUA_TBOOLEAN:
    lua_pushstring(L, lua_toboolean(L, idx) ? "[true]" : "[false]");
    break;
  default:
    lua_pushfstring(L, "[%s]", luaL_typename(L, idx));
  }
}

/* Raise "<method>: cannot send value at <path>: <why>". */
static int enc_error(enc_t *e, const char *why) {
  lua_State *L = e->L;
  e->t->active = 0;
  luaL_checkstack(L, e->depth + 4, NULL);
  int top = lua_gettop(L);
  if (e->count == 1)
    lua_pushliteral(L, "value");
  else
    lua_pushfstring(L, "argument %d", e->arg);
  for (int i = 1; i <= e->depth; i++) {
    /* A deep path keeps its first and last few steps. */
    if (e->depth > 12 && i > 6 && i <= e->depth - 4) {
      if (i == 7) lua_pushliteral(L, "...");
      continue;
    }
    const path_elem_t *pe = &e->path[i];
    switch (pe->kind) {
    case PE_KEY: push_key(L, pe->idx); break;
    case PE_INDEX: lua_pushfstring(L, "[%d]", (int)pe->n); break;
    case PE_UPVAL: lua_pushfstring(L, "<upvalue %s>", pe->name); break;
    /* Inside a key that is itself a table (or a bad key): "<key table>"
    ** reads as "in the table used as a key", like "<upvalue x>". */
    default: lua_pushfstring(L, "<key %s>", luaL_typename(L, pe->idx)); break;
    }
  }
  lua_concat(L, lua_gettop(L) - top);
  return tn_l_error(L, e->method, "cannot send value at %s: %s",
                    lua_tostring(L, -1), why);
}

/* ---- the name cache ----------------------------------------------------- */

/*
** Record names[v] = `code` (the encoded MODULE or CFIELD bytes) unless v
** already has a code as short (short names first: "tunnel.sleep" rather
** than "tunnel.core.sleep"). v is at `v`, the cache at `names`.
*/
static void name_set(lua_State *L, int names, int v, const char *code,
                     size_t len) {
  lua_pushvalue(L, v);
  lua_rawget(L, names);
  int keep = lua_isstring(L, -1) && tn_rawlen(L, -1) <= len;
  lua_pop(L, 1);
  if (keep) return;
  lua_pushvalue(L, v);
  lua_pushlstring(L, code, len);
  lua_rawset(L, names);
}

/*
** Build a new cache from package.loaded and leave it on the stack: the
** module tables, and with `functions` also the C functions in them. A
** fresh state (a block thread) sends tables long before it sends a C
** function, and the tables alone are a tenth of the work; cache[true]
** records whether the functions are in.
*/
static void build_names(lua_State *L, int functions) {
  luaL_checkstack(L, 8, NULL);
  lua_newtable(L);
  int names = lua_gettop(L);
  lua_newtable(L); /* weak keys: a cache never keeps a module alive */
  lua_pushliteral(L, "k");
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, names);
  lua_getfield(L, LUA_REGISTRYINDEX, "_LOADED");
  int loaded = lua_gettop(L);
  if (lua_istable(L, loaded)) {
    unsigned char code[2 * (255 + 10) + 1];
    lua_pushnil(L);
    while (lua_next(L, loaded)) { /* push name, module */
      size_t mlen;
      if (lua_type(L, -2) != LUA_TSTRING || !lua_istable(L, -1)) {
        lua_pop(L, 1);
        continue;
      }
      const char *mod = lua_tolstring(L, -2, &mlen);
      if (mlen > 255) {
        lua_pop(L, 1);
        continue;
      }
      int m = lua_gettop(L);
      code[0] = TAG_MODULE;
      size_t head = 1 + write_varint(code + 1, mlen);
      memcpy(code + head, mod, mlen);
      name_set(L, names, m, (const char *)code, head + mlen);
      code[0] = TAG_CFIELD;
      lua_pushnil(L);
      while (functions && lua_next(L, m)) { /* push field name, value */
        size_t flen;
        if (lua_type(L, -2) == LUA_TSTRING && lua_iscfunction(L, -1)) {
          const char *f = lua_tolstring(L, -2, &flen);
          if (flen <= 255) {
            size_t n = head + mlen;
            n += write_varint(code + n, flen);
            memcpy(code + n, f, flen);
            name_set(L, names, lua_gettop(L), (const char *)code, n + flen);
          }
        }
        lua_pop(L, 1);
      }
      lua_settop(L, m - 1); /* pop module (and the unused nil key) */
    }
  }
  lua_pop(L, 1); /* pop package.loaded */
  lua_pushboolean(L, 1);
  lua_pushboolean(L, functions);
  lua_rawset(L, names); /* names[true] = functions */
  lua_pushlightuserdata(L, (void *)&names_key);
  lua_pushvalue(L, names);
  lua_rawset(L, LUA_REGISTRYINDEX);
}

void tn_l_codec_reset(lua_State *L) {
  lua_pushlightuserdata(L, (void *)&names_key);
  lua_pushnil(L);
  lua_rawset(L, LUA_REGISTRYINDEX);
}

/* Put the name cache on the stack (building it once per state), with the
** C functions in it if `functions`. */
static void need_names(enc_t *e, int functions) {
  if (e->have_names == 2 || (e->have_names == 1 && !functions)) return;
  lua_State *L = e->L;
  lua_pushlightuserdata(L, (void *)&names_key);
  lua_rawget(L, LUA_REGISTRYINDEX);
  int full = 0;
  if (lua_istable(L, -1)) {
    lua_pushboolean(L, 1);
    lua_rawget(L, -2);
    full = lua_toboolean(L, -1);
    lua_pop(L, 1);
  }
  if (!lua_istable(L, -1) || (functions && !full)) {
    lua_pop(L, 1);
    build_names(L, functions);
    full = functions;
  }
  lua_replace(L, e->names);
  e->have_names = full ? 2 : 1;
}

/* If the value at `idx` has a name, put it and return 1. */
static int put_name(enc_t *e, int idx) {
  lua_State *L = e->L;
  need_names(e, lua_iscfunction(L, idx));
  lua_pushvalue(L, idx);
  lua_rawget(L, e->names);
  if (lua_type(L, -1) == LUA_TSTRING) {
    size_t len;
    const char *s = lua_tolstring(L, -1, &len);
    put_bytes(e, s, len);
    lua_pop(L, 1);
    return 1;
  }
  lua_pop(L, 1);
  return 0;
}

/* ---- tables and functions ----------------------------------------------- */

static inline size_t slot_of(const void *p, size_t nslots) {
  uint64_t h = (uint64_t)(uintptr_t)p * 0x9e3779b97f4a7c15u;
  return (size_t)(h >> 32) & (nslots - 1);
}

/* The slot of `p`: its own if seen, else the free one it would take. */
static seen_slot_t *seen_find(buf_t *t, const void *p) {
  if (t->nslots == 0) return NULL;
  for (size_t i = slot_of(p, t->nslots);; i = (i + 1) & (t->nslots - 1)) {
    seen_slot_t *s = &t->slots[i];
    if (s->gen != t->gen || s->p == p) return s;
  }
}

/* Remember `p`; keeps the table at most half full. */
static void seen_add(enc_t *e, const void *p, size_t item, uint32_t up,
                     size_t off) {
  buf_t *t = e->t;
  if ((t->used + 1) * 2 > t->nslots) {
    size_t n = t->nslots < 64 ? 64 : t->nslots * 2;
    seen_slot_t *a = calloc(n, sizeof *a);
    if (a == NULL) enc_fail(e, tn_strerror(TN_ENOMEM));
    for (size_t i = 0; i < t->nslots; i++) {
      seen_slot_t *s = &t->slots[i];
      if (s->gen != t->gen) continue;
      size_t k = slot_of(s->p, n);
      while (a[k].gen == t->gen) k = (k + 1) & (n - 1);
      a[k] = *s;
    }
    free(t->slots);
    t->slots = a;
    t->nslots = n;
  }
  seen_slot_t *s = seen_find(t, p);
  s->p = p;
  s->gen = t->gen;
  s->up = up;
  s->item = item;
  s->off = off;
  t->used++;
}

/* The slot of the table or function at `idx` if it was met before. */
static seen_slot_t *seen_get(enc_t *e, const void *p) {
  seen_slot_t *s = seen_find(e->t, p);
  return s != NULL && s->gen == e->t->gen ? s : NULL;
}

/* Mark the item whose tag is at `off` as referenced (TABLE -> TABLE_R). */
static inline void mark_referenced(enc_t *e, size_t off) {
  unsigned char *tag = &e->t->bytes[off];
  if (*tag == TAG_TABLE || *tag == TAG_FUNC) (*tag)++;
}

/* A REF to the item of slot `s`. */
static void put_ref(enc_t *e, const seen_slot_t *s) {
  mark_referenced(e, s->off);
  unsigned char *p = reserve(e, 11);
  p[0] = TAG_REF;
  e->t->len += 1 + write_varint(p + 1, s->item);
}

static void encode_value(enc_t *e, int idx);

/* Push the state's class table, or nil if nothing was registered. */
static void push_classes(lua_State *L) {
  lua_pushlightuserdata(L, (void *)&classes_key);
  lua_rawget(L, LUA_REGISTRYINDEX);
}

/*
** The metatable of a table being sent is on top: write CLASS and the name
** it is registered under (the table follows), and pop it; refuse it if it
** is not registered.
*/
static void put_class(enc_t *e) {
  lua_State *L = e->L;
  enc_checkstack(e, 2);
  push_classes(L);
  if (lua_istable(L, -1)) {
    lua_pushvalue(L, -2);
    lua_rawget(L, -2); /* classes[mt] */
    if (lua_type(L, -1) == LUA_TSTRING) {
      size_t len;
      const char *name = lua_tolstring(L, -1, &len);
      unsigned char *p = reserve(e, 11 + len);
      p[0] = TAG_CLASS;
      size_t n = 1 + write_varint(p + 1, len);
      memcpy(p + n, name, len);
      e->t->len += n + len;
      lua_pop(L, 3);
      return;
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 2);
  enc_error(e, "table with an unregistered metatable "
               "(tunnel.register(name, mt) in both threads)");
}

static void enter(enc_t *e) {
  if (e->depth >= TN_CODEC_MAXDEPTH)
    enc_error(e, "nesting too deep (more than 200 levels)");
  e->depth++;
  enc_checkstack(e, 8);
}

/* Is the key at `k` one of t[1..n] (sent as the array part)? */
static inline int in_array(lua_State *L, int k, size_t n) {
  if (n == 0 || lua_type(L, k) != LUA_TNUMBER) return 0;
#if TN_HAS_INTEGERS
  if (!lua_isinteger(L, k)) return 0;
  lua_Integer i = lua_tointeger(L, k);
  return i >= 1 && (lua_Unsigned)i <= n;
#else
  lua_Number x = lua_tonumber(L, k);
  return x >= 1 && x <= (lua_Number)n && x == (lua_Number)(size_t)x;
#endif
}

static void encode_table(enc_t *e, int idx) {
  lua_State *L = e->L;
  const void *p = lua_topointer(L, idx);
  if (e->globals == NULL) {
    tn_pushglobals(L);
    e->globals = lua_topointer(L, -1);
    lua_pop(L, 1);
  }
  if (p == e->globals) {
    put_byte(e, TAG_GLOBALS);
    return;
  }
  seen_slot_t *s = seen_get(e, p);
  if (s != NULL) {
    put_ref(e, s);
    return;
  }
  if (put_name(e, idx)) return;
  if (lua_getmetatable(L, idx)) put_class(e);
  enter(e);
  seen_add(e, p, ++e->nitems, 0, e->t->len);
  size_t n = tn_rawlen(L, idx), m = 0;
  lua_pushnil(L); /* count the pairs, so the receiver sizes the table once */
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    if (!in_array(L, -1, n)) m++;
  }
  unsigned char *b = reserve(e, 21);
  b[0] = TAG_TABLE;
  size_t len = 1 + write_varint(b + 1, n);
  e->t->len += len + write_varint(b + len, m);
  path_elem_t *pe = &e->path[e->depth];
  pe->kind = PE_INDEX;
  for (size_t i = 1; i <= n; i++) {
    lua_rawgeti(L, idx, (lua_Integer)i);
    pe->n = (lua_Integer)i;
    encode_value(e, lua_gettop(L));
    lua_pop(L, 1);
  }
  lua_pushnil(L);
  while (lua_next(L, idx)) { /* push key, value */
    int v = lua_gettop(L);
    if (in_array(L, v - 1, n)) {
      lua_pop(L, 1);
      continue;
    }
    pe->kind = PE_KEYOF;
    pe->idx = v - 1;
    encode_value(e, v - 1);
    pe->kind = PE_KEY;
    encode_value(e, v);
    lua_pop(L, 1);
  }
  e->depth--;
}

static int dump_writer(lua_State *L, const void *p, size_t sz, void *ud) {
  buf_t *t = ud;
  (void)L;
  if (t->cap - t->len < sz) {
    size_t cap = t->cap < 256 ? 256 : t->cap;
    while (cap - t->len < sz) {
      if (cap > SIZE_MAX / 2) return 1;
      cap *= 2;
    }
    unsigned char *b = realloc(t->bytes, cap);
    if (b == NULL) return 1;
    t->bytes = b;
    t->cap = cap;
  }
  memcpy(t->bytes + t->len, p, sz);
  t->len += sz;
  return 0;
}

static void encode_function(enc_t *e, int idx) {
  lua_State *L = e->L;
  if (lua_iscfunction(L, idx)) {
    if (put_name(e, idx)) return;
    if (!e->rebuilt) { /* a module may have been loaded since */
      e->rebuilt = 1;
      build_names(L, 1);
      lua_replace(L, e->names);
      e->have_names = 2;
      if (put_name(e, idx)) return;
    }
    enc_error(e, "C function");
  }
  const void *fp = lua_topointer(L, idx);
  seen_slot_t *s = seen_get(e, fp);
  if (s != NULL) {
    put_ref(e, s);
    return;
  }
  enter(e);
  size_t self = ++e->nitems, off = e->t->len;
  seen_add(e, fp, self, 0, off); /* before the upvalues: recursion works */
  unsigned char *p = reserve(e, 7);
  p[0] = TAG_FUNC;
  p[1] = FLAVOUR;
  e->t->len += 7; /* p[2..6]: the length, a 5-byte varint, patched below */
  size_t start = e->t->len;
  lua_pushvalue(L, idx);
  if (tn_dump(L, dump_writer, e->t) != 0)
    enc_fail(e, tn_strerror(TN_ENOMEM));
  lua_pop(L, 1);
  size_t len = e->t->len - start;
  if (len >= ((size_t)1 << 35)) enc_fail(e, "function too large");
  p = e->t->bytes + start - 5;
  for (int i = 0; i < 4; i++) p[i] = (unsigned char)(((len >> (7 * i)) & 0x7f) | 0x80);
  p[4] = (unsigned char)(len >> 28);
  lua_Debug ar;
  lua_pushvalue(L, idx);
  lua_getinfo(L, ">u", &ar); /* pops the function */
  put_varint(e, ar.nups);
  path_elem_t *pe = &e->path[e->depth];
  pe->kind = PE_UPVAL;
  for (int i = 1; i <= (int)ar.nups; i++) {
    if (tn_has_upvaluejoin()) {
      /* An upvalue met before (shared by two closures) is joined, not
      ** copied. */
      const void *id = lua_upvalueid(L, idx, i);
      s = seen_get(e, id);
      if (s != NULL) {
        mark_referenced(e, s->off);
        put_byte(e, TAG_UPJOIN);
        put_varint(e, s->item);
        put_varint(e, s->up);
        continue;
      }
      seen_add(e, id, self, (uint32_t)i, off);
    }
    pe->name = lua_getupvalue(L, idx, i); /* push value */
    if (pe->name == NULL || pe->name[0] == '\0') pe->name = "?";
#if LUA_VERSION_NUM >= 502
    if (strcmp(pe->name, "_ENV") == 0) { /* globals resolve in the receiver */
      lua_pop(L, 1);
      put_byte(e, TAG_GLOBALS);
      continue;
    }
#endif
    encode_value(e, lua_gettop(L));
    lua_pop(L, 1);
  }
  e->depth--;
}

static void encode_value(enc_t *e, int idx) {
  lua_State *L = e->L;
  switch (lua_type(L, idx)) {
  case LUA_TNIL: put_byte(e, TAG_NIL); break;
  case LUA_TBOOLEAN:
    put_byte(e, lua_toboolean(L, idx) ? TAG_TRUE : TAG_FALSE);
    break;
  case LUA_TNUMBER: {
    unsigned char *p = reserve(e, 11);
    e->t->len += write_number(L, idx, p);
    break;
  }
  case LUA_TSTRING: put_string(e, idx); break;
  case LUA_TTABLE: encode_table(e, idx); break;
  case LUA_TFUNCTION: encode_function(e, idx); break;
  case LUA_TUSERDATA: {
    tn_object_t *o = tn_l_toobject(L, idx);
    if (o == NULL) enc_error(e, "userdata");
    buf_t *t = e->t;
    size_t i = 0;
    if (t->nobjs <= 64) /* the same object twice: one reference */
      while (i < t->nobjs && t->objs[i] != o) i++;
    else
      i = t->nobjs;
    if (i == t->nobjs) {
      if (t->nobjs == t->objcap) {
        size_t cap = t->objcap < 8 ? 8 : t->objcap * 2;
        tn_object_t **a = realloc(t->objs, cap * sizeof *a);
        if (a == NULL) enc_fail(e, tn_strerror(TN_ENOMEM));
        t->objs = a;
        t->objcap = cap;
      }
      t->objs[t->nobjs++] = o;
    }
    put_byte(e, TAG_OBJECT);
    put_varint(e, i);
    break;
  }
  case LUA_TLIGHTUSERDATA: enc_error(e, "light userdata"); break;
  case LUA_TTHREAD: enc_error(e, "coroutine"); break;
  default: enc_error(e, luaL_typename(L, idx)); break;
  }
}

static tn_blob_t *new_blob(lua_State *L, const void *p, size_t len,
                           tn_object_t *const *objs, size_t nobjs,
                           const char *method) {
  tn_blob_t *b = tn_blob_new(p, len, objs, nobjs);
  if (b == NULL) tn_l_coreerror(L, method, TN_ENOMEM);
  return b;
}

tn_blob_t *tn_l_encode(lua_State *L, int first, int count, const char *method) {
  if (first < 0 && first > LUA_REGISTRYINDEX) first = lua_gettop(L) + first + 1;
  if (count == 1) { /* the fast path: one scalar, no buffer, no table */
    unsigned char small[256 + 11];
    switch (lua_type(L, first)) {
    case LUA_TNIL: return NULL;
    case LUA_TBOOLEAN:
      small[0] = lua_toboolean(L, first) ? TAG_TRUE : TAG_FALSE;
      return new_blob(L, small, 1, NULL, 0, method);
    case LUA_TNUMBER:
      return new_blob(L, small, write_number(L, first, small), NULL, 0,
                      method);
    case LUA_TSTRING: {
      size_t len;
      const char *s = lua_tolstring(L, first, &len);
      if (len <= sizeof small - 11) {
        small[0] = TAG_STRING;
        size_t n = 1 + write_varint(small + 1, len);
        memcpy(small + n, s, len);
        return new_blob(L, small, n + len, NULL, 0, method);
      }
      break;
    }
    default: break;
    }
  }
  int top = lua_gettop(L);
  enc_t e;
  e.L = L;
  e.t = get_buf(L); /* a scratch buffer stays on the stack until the end */
  e.method = method;
  e.count = count;
  e.nitems = 0;
  e.globals = NULL;
  e.have_names = e.rebuilt = e.depth = 0;
  buf_t *t = e.t;
  t->active = 1;
  t->len = 0;
  t->nobjs = 0;
  t->used = 0;
  if (++t->gen == 0) { /* wrapped: old slots could look current */
    if (t->slots != NULL) memset(t->slots, 0, t->nslots * sizeof *t->slots);
    t->gen = 1;
  }
  enc_checkstack(&e, 8);
  lua_pushnil(L); /* the slot of the name cache */
  e.names = lua_gettop(L);
  for (e.arg = 1; e.arg <= count; e.arg++)
    encode_value(&e, first + e.arg - 1);
  t->active = 0;
  tn_blob_t *b = tn_blob_new(t->bytes, t->len, t->objs, t->nobjs);
  if (t->cap > BUF_KEEP) { /* one huge value does not pin memory forever */
    free(t->bytes);
    t->bytes = NULL;
    t->cap = t->len = 0;
  }
  if (t->nslots > BUF_KEEP / sizeof(seen_slot_t)) {
    free(t->slots);
    t->slots = NULL;
    t->nslots = 0;
  }
  lua_settop(L, top); /* pop the name cache (and a scratch buffer) */
  if (b == NULL) tn_l_coreerror(L, method, TN_ENOMEM);
  return b;
}

/* ---- decoding ----------------------------------------------------------- */

typedef struct dec {
  lua_State *L;
  const unsigned char *p, *end;
  const tn_blob_t *refs;
  int trust; /* TN_DECODE_* */
  const char *method;
  int seen;      /* stack slot: REF number -> value (nil until needed) */
  int have_seen;
  size_t nitems; /* tables and functions decoded so far */
  int depth;
} dec_t;

static int corrupt(dec_t *d, const char *why) {
  return tn_l_error(d->L, d->method, "corrupt value (%s)", why);
}

/* Refuse `what` (TN_DECODE_DATA): the bytes may hold data only. */
static int refuse(dec_t *d, const char *what) {
  return tn_l_error(d->L, d->method,
                    "cannot receive %s from untrusted bytes (trusted = false "
                    "allows data only)", what);
}

/* Refuse a named thing ("module 'os'") the same way. */
static int refuse_named(dec_t *d, const char *kind, const char *name,
                        size_t len) {
  lua_pushlstring(d->L, name, len > 64 ? 64 : len);
  lua_pushfstring(d->L, "%s '%s'", kind, lua_tostring(d->L, -1));
  return refuse(d, lua_tostring(d->L, -1));
}

static inline int get_byte(dec_t *d) {
  if (d->p >= d->end) corrupt(d, "truncated");
  return *d->p++;
}

static uint64_t get_varint(dec_t *d) {
  if (d->p < d->end && *d->p < 0x80) return *d->p++; /* most lengths */
  uint64_t v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    int c = get_byte(d);
    if (shift == 63 && c > 1) break;
    v |= (uint64_t)(c & 0x7f) << shift;
    if (c < 0x80) return v;
  }
  return (uint64_t)corrupt(d, "bad varint");
}

/* A length: no more than the bytes left (each counted item takes >= 1). */
static size_t get_length(dec_t *d) {
  uint64_t n = get_varint(d);
  if (n > (uint64_t)(d->end - d->p)) corrupt(d, "length past the end");
  return (size_t)n;
}

static const char *get_string(dec_t *d, size_t *len) {
  *len = get_length(d);
  const char *s = (const char *)d->p;
  d->p += *len;
  return s;
}

static void decode_value(dec_t *d, int tag);

/* A table or function starts: count it, check the depth and the stack. */
static size_t dec_enter(dec_t *d) {
  if (d->depth >= TN_CODEC_MAXDEPTH) corrupt(d, "nesting too deep");
  d->depth++;
  if (!lua_checkstack(d->L, 8)) corrupt(d, "nesting too deep");
  return ++d->nitems;
}

/* Keep the value on top as item `item` for REF and UPJOIN (_R tags). */
static void dec_register(dec_t *d, size_t item) {
  lua_State *L = d->L;
  if (item > 0x7fffffff) corrupt(d, "too many tables");
  if (!d->have_seen) {
    lua_newtable(L);
    lua_replace(L, d->seen);
    d->have_seen = 1;
  }
  lua_pushvalue(L, -1);
  lua_rawseti(L, d->seen, (int)item);
}

/* Push item `i` (a REF or UPJOIN number), which must have been kept. */
static void dec_item(dec_t *d, uint64_t i, const char *why) {
  if (!d->have_seen || i < 1 || i > (uint64_t)d->nitems) corrupt(d, why);
  lua_rawgeti(d->L, d->seen, (int)i);
  if (lua_isnil(d->L, -1)) corrupt(d, why);
}

static void decode_table(dec_t *d, int tag) {
  lua_State *L = d->L;
  size_t item = dec_enter(d);
  size_t n = get_length(d), m = get_length(d);
  if (m > (size_t)(d->end - d->p) / 2) /* a pair takes 2 bytes or more */
    corrupt(d, "length past the end");
  if (n > 0x7fffffff || m > 0x7fffffff) corrupt(d, "table too large");
  lua_createtable(L, (int)n, (int)m);
  int t = lua_gettop(L);
  if (tag == TAG_TABLE_R) dec_register(d, item);
  for (size_t i = 1; i <= n; i++) {
    decode_value(d, get_byte(d));
    if (lua_isnil(L, -1))
      lua_pop(L, 1);
    else
      lua_rawseti(L, t, (int)i);
  }
  for (size_t i = 0; i < m; i++) {
    decode_value(d, get_byte(d));
    if (lua_isnil(L, -1)) corrupt(d, "nil key");
    if (lua_type(L, -1) == LUA_TNUMBER && lua_tonumber(L, -1) != lua_tonumber(L, -1))
      corrupt(d, "NaN key");
    decode_value(d, get_byte(d));
    lua_rawset(L, t);
  }
  d->depth--;
}

typedef struct chunk {
  const char *p;
  size_t len;
} chunk_t;

static const char *chunk_reader(lua_State *L, void *ud, size_t *size) {
  chunk_t *c = ud;
  (void)L;
  *size = c->len;
  c->len = 0;
  return *size > 0 ? c->p : NULL;
}

static void decode_function(dec_t *d, int tag) {
  lua_State *L = d->L;
  if (d->trust == TN_DECODE_DATA) refuse(d, "a function");
  if (get_byte(d) != FLAVOUR)
    tn_l_error(L, d->method, "cannot receive a function of another Lua flavour");
  if (d->trust != TN_DECODE_OWN)
    tn_l_error(L, d->method, "cannot load function bytecode that was not "
                             "saved by this process");
  size_t item = dec_enter(d);
  chunk_t c;
  c.p = get_string(d, &c.len);
  if (tn_loadbinary(L, chunk_reader, &c, "=tunnel") != 0)
    corrupt(d, lua_tostring(L, -1));
  int f = lua_gettop(L);
  if (tag == TAG_FUNC_R) /* before the upvalues: recursive functions */
    dec_register(d, item);
  lua_Debug ar;
  lua_pushvalue(L, f);
  lua_getinfo(L, ">u", &ar);
  if (get_varint(d) != (uint64_t)ar.nups) corrupt(d, "upvalue count");
  for (int i = 1; i <= (int)ar.nups; i++) {
    int utag = get_byte(d);
    if (utag == TAG_UPJOIN && tn_has_upvaluejoin()) {
      uint64_t g = get_varint(d), n = get_varint(d);
      dec_item(d, g, "bad upvalue join");
      if (n < 1 || n > 255 || !lua_isfunction(L, -1) || lua_iscfunction(L, -1) ||
          lua_getupvalue(L, -1, (int)n) == NULL)
        corrupt(d, "bad upvalue join");
      lua_pop(L, 1); /* pop the upvalue */
      lua_upvaluejoin(L, f, i, lua_gettop(L), (int)n);
      lua_pop(L, 1); /* pop the other function */
      continue;
    }
    decode_value(d, utag);
    if (lua_setupvalue(L, f, i) == NULL) corrupt(d, "bad upvalue");
  }
  d->depth--;
}

/* Push package.loaded[name]; require it if absent (own bytes only). For
** data only, refuse `kind` (module, C function) named by the module and
** then (C function) the field. */
static void push_module(dec_t *d, const char *kind) {
  lua_State *L = d->L;
  size_t len;
  const char *name = get_string(d, &len);
  if (d->trust == TN_DECODE_DATA) {
    if (kind[0] == 'm') refuse_named(d, kind, name, len);
    size_t flen;
    const char *f = get_string(d, &flen);
    lua_pushlstring(L, name, len > 64 ? 64 : len);
    lua_pushliteral(L, ".");
    lua_pushlstring(L, f, flen > 64 ? 64 : flen);
    lua_concat(L, 3);
    refuse_named(d, kind, lua_tostring(L, -1), tn_rawlen(L, -1));
  }
  lua_getfield(L, LUA_REGISTRYINDEX, "_LOADED");
  if (!lua_istable(L, -1)) corrupt(d, "no package.loaded");
  lua_pushlstring(L, name, len);
  lua_rawget(L, -2);
  lua_remove(L, -2); /* pop package.loaded */
  if (lua_isnil(L, -1) && d->trust == TN_DECODE_OWN) {
    lua_pop(L, 1);
    lua_getglobal(L, "require");
    lua_pushlstring(L, name, len);
    /* require's own error does not say which call failed: name it. */
    if (lua_pcall(L, 1, 1, 0) != 0)
      tn_l_error(L, d->method, "cannot receive value: %s",
                 lua_isstring(L, -1) ? lua_tostring(L, -1) : "require failed");
  }
  if (!lua_istable(L, -1))
  {
    lua_pushlstring(L, name, len);
    tn_l_error(L, d->method, "cannot receive module '%s': not loaded",
               lua_tostring(L, -1));
  }
}

/*
** CLASS: the name, then the table; the table gets the metatable registered
** here under that name. The name is looked up first, so an unregistered
** class fails before any of its contents is decoded.
*/
static void decode_class(dec_t *d) {
  lua_State *L = d->L;
  size_t len;
  const char *name = get_string(d, &len);
  if (!lua_checkstack(L, 4)) corrupt(d, "nesting too deep");
  push_classes(L);
  if (lua_istable(L, -1)) {
    lua_pushlstring(L, name, len);
    lua_rawget(L, -2);
    lua_remove(L, -2); /* the class table */
  }
  if (!lua_istable(L, -1)) {
    lua_pushlstring(L, name, len > 64 ? 64 : len);
    const char *n = lua_tostring(L, -1);
    tn_l_error(L, d->method, "cannot receive a table of class '%s': no "
               "metatable is registered under that name in this thread "
               "(tunnel.register('%s', mt))", n, n);
  }
  int mt = lua_gettop(L);
  int tag = get_byte(d);
  if (tag != TAG_TABLE && tag != TAG_TABLE_R) corrupt(d, "class of a non-table");
  decode_table(d, tag);
  lua_pushvalue(L, mt);
  lua_setmetatable(L, -2);
  lua_remove(L, mt);
}

static void decode_value(dec_t *d, int tag) {
  lua_State *L = d->L;
  switch (tag) {
  case TAG_NIL: lua_pushnil(L); break;
  case TAG_FALSE: lua_pushboolean(L, 0); break;
  case TAG_TRUE: lua_pushboolean(L, 1); break;
  case TAG_INT: {
    uint64_t u = get_varint(d);
    int64_t i = (int64_t)((u >> 1) ^ (0 - (u & 1)));
#if TN_HAS_INTEGERS
    lua_pushinteger(L, (lua_Integer)i);
#else
    lua_pushnumber(L, (lua_Number)i);
#endif
    break;
  }
  case TAG_FLOAT: {
    if (d->end - d->p < 8) corrupt(d, "truncated");
    uint64_t u = 0;
    for (int i = 0; i < 8; i++) u |= (uint64_t)d->p[i] << (8 * i);
    d->p += 8;
    double x;
    memcpy(&x, &u, sizeof x);
    lua_pushnumber(L, (lua_Number)x);
    break;
  }
  case TAG_STRING: {
    size_t len;
    const char *s = get_string(d, &len);
    lua_pushlstring(L, s, len);
    break;
  }
  case TAG_TABLE:
  case TAG_TABLE_R: decode_table(d, tag); break;
  case TAG_REF: dec_item(d, get_varint(d), "bad back-reference"); break;
  case TAG_FUNC:
  case TAG_FUNC_R: decode_function(d, tag); break;
  case TAG_GLOBALS:
    if (d->trust == TN_DECODE_DATA) refuse(d, "the globals table");
    tn_pushglobals(L);
    break;
  case TAG_MODULE: push_module(d, "module"); break;
  case TAG_CLASS: decode_class(d); break;
  case TAG_CFIELD: {
    push_module(d, "C function");
    size_t len;
    const char *f = get_string(d, &len);
    lua_pushlstring(L, f, len);
    lua_rawget(L, -2);
    if (!lua_isfunction(L, -1)) {
      lua_pushlstring(L, f, len);
      tn_l_error(L, d->method, "cannot receive C function '%s': not found",
                 lua_tostring(L, -1));
    }
    lua_remove(L, -2); /* pop the module */
    break;
  }
  case TAG_OBJECT: {
    uint64_t i = get_varint(d);
    if (d->refs == NULL || i >= (uint64_t)tn_blob_nrefs(d->refs))
      corrupt(d, "bad object index");
    tn_l_pushobject(L, tn_blob_ref(d->refs, (size_t)i));
    break;
  }
  default: corrupt(d, "unknown tag");
  }
}

/* The varint at *p (before `end`), as get_varint reads it: 0 if bad. */
static int skip_varint(const unsigned char **p, const unsigned char *end,
                       uint64_t *v) {
  if (*p < end && **p < 0x80) {
    *v = *(*p)++;
    return 1;
  }
  *v = 0;
  for (int shift = 0; shift < 64 && *p < end; shift += 7) {
    int c = *(*p)++;
    if (shift == 63 && c > 1) return 0;
    *v |= (uint64_t)(c & 0x7f) << shift;
    if (c < 0x80) return 1;
  }
  return 0;
}

/*
** One scalar and nothing else: nil, a boolean, a number, a string. The
** fast paths decode these without the general machinery (no stack check,
** no back-reference slot), and their callers without a protected call:
** such a value cannot fail to decode, except for want of memory.
*/
int tn_l_isscalar(const void *data, size_t len) {
  const unsigned char *p = data, *end = p + len;
  uint64_t n;
  if (len == 0) return 0;
  switch (*p++) {
  case TAG_NIL:
  case TAG_FALSE:
  case TAG_TRUE: return p == end;
  case TAG_FLOAT: return end - p == 8;
  case TAG_INT: return skip_varint(&p, end, &n) && p == end;
  case TAG_STRING:
    return skip_varint(&p, end, &n) && n == (uint64_t)(end - p);
  default: return 0;
  }
}

void tn_l_decode_scalar(lua_State *L, const void *data, size_t len,
                        const char *method) {
  dec_t d;
  d.L = L;
  d.p = data;
  d.end = d.p + len;
  d.refs = NULL;
  d.trust = TN_DECODE_DATA;
  d.method = method;
  d.seen = 0;
  d.have_seen = d.depth = 0;
  d.nitems = 0;
  decode_value(&d, *d.p++);
}

int tn_l_isobjectref(const void *data, size_t len) {
  const unsigned char *p = data;
  return len == 2 && p[0] == TAG_OBJECT && p[1] == 0;
}

int tn_l_decode_bytes(lua_State *L, const void *data, size_t len,
                      const tn_blob_t *refs, int trust, const char *method) {
  dec_t d;
  d.L = L;
  d.p = data;
  d.end = d.p + len;
  d.refs = refs;
  d.trust = trust;
  d.method = method;
  d.have_seen = d.depth = 0;
  d.nitems = 0;
  int top = lua_gettop(L);
  if (tn_l_isscalar(d.p, len)) { /* the commonest blobs: one scalar */
    decode_value(&d, *d.p++);
    return 1;
  }
  luaL_checkstack(L, 8, NULL);
  lua_pushnil(L); /* the slot of the back-reference table */
  d.seen = top + 1;
  while (d.p < d.end) {
    if (!lua_checkstack(L, 8)) corrupt(&d, "too many values");
    decode_value(&d, get_byte(&d));
  }
  lua_remove(L, d.seen);
  return lua_gettop(L) - top;
}

int tn_l_decode(lua_State *L, const tn_blob_t *b, const char *method) {
  if (b == NULL) {
    lua_pushnil(L);
    return 1;
  }
  const unsigned char *p = tn_blob_data(b);
  size_t len = tn_blob_size(b);
  if (len > 0 && p[0] == TN_CODEC_DATA_ONLY)
    return tn_l_decode_bytes(L, p + 1, len - 1, b, TN_DECODE_DATA, method);
  return tn_l_decode_bytes(L, p, len, b, TN_DECODE_OWN, method);
}

/* ---- classes ------------------------------------------------------------ */

#define REGISTER "tunnel.register"

/* tunnel.register(name, mt) -> mt: see "Classes" at the top. */
int tn_l_register(lua_State *L) {
  if (lua_type(L, 1) != LUA_TSTRING || tn_rawlen(L, 1) == 0)
    return tn_l_error(L, REGISTER, "name must be a non-empty string (got %s)",
                      luaL_typename(L, 1));
  if (tn_rawlen(L, 1) > 255)
    return tn_l_error(L, REGISTER, "name must be at most 255 bytes (got %d)",
                      (int)tn_rawlen(L, 1));
  if (lua_type(L, 2) != LUA_TTABLE)
    return tn_l_error(L, REGISTER, "metatable must be a table (got %s)",
                      luaL_typename(L, 2));
  lua_settop(L, 2);
  push_classes(L);
  if (!lua_istable(L, 3)) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushlightuserdata(L, (void *)&classes_key);
    lua_pushvalue(L, -2);
    lua_rawset(L, LUA_REGISTRYINDEX);
  }
  lua_pushvalue(L, 1);
  lua_rawget(L, 3); /* 4: classes[name] */
  lua_pushvalue(L, 2);
  lua_rawget(L, 3); /* 5: classes[mt] */
  if (!lua_isnil(L, 4) && !lua_rawequal(L, 4, 2))
    return tn_l_error(L, REGISTER, "name '%s' is already registered for "
                      "another metatable", lua_tostring(L, 1));
  if (!lua_isnil(L, 5) && !lua_rawequal(L, 5, 1))
    return tn_l_error(L, REGISTER, "this metatable is already registered "
                      "as '%s' (one name per class)", lua_tostring(L, 5));
  if (lua_isnil(L, 4)) {
    lua_pushvalue(L, 1);
    lua_pushvalue(L, 2);
    lua_rawset(L, 3);
    lua_pushvalue(L, 2);
    lua_pushvalue(L, 1);
    lua_rawset(L, 3);
  }
  lua_settop(L, 2);
  return 1;
}
