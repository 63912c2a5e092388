/*
** lcluster.c - tunnel.Cluster: the structures of a Redis server, shared by
** every process that names them (src/redis does the work).
**
** A cluster object is a normal box: cluster:Vector(name) returns a
** tunnel.Vector whose core object happens to live on the server, so every
** method, metamethod and error of the in-process class applies unchanged.
** The Cluster value itself is a plain userdata holding the interned
** tn_cluster_t (clusters live until the process exits).
**
** Caveats:
** - A cluster Atomic's data is a copy: each callback gets it decoded from
**   the server, and write stores it back (plain tables travel by value).
** - The Cluster value cannot be sent to other threads; send the objects
**   (or the URL with its credentials: cluster.url has none) instead.
** - trusted = false makes a distinct cluster (and distinct objects: not ==
**   to those of a trusted Cluster of the same URL and prefix) whose every
**   value decodes as data only (src/lua/codec.h, TN_DECODE_DATA); objects
**   named inside its values are data-only too.
*/
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ljobs.h"
#include "ltunnel.h"
/* rd_cluster_open and tn_cluster.data_only (trusted = false); not in
** tunnel.h: the C API has no codec, so "data only" means nothing there. */
#include "../redis/redis.h"

#define CLUSTER "tunnel.Cluster"
#define M(name) CLUSTER ":" name

/* The secret (option or TUNNEL_SECRET) that cluster:Block signs with:
** kept in the box, not the interned cluster, so two Clusters of one server
** may sign differently. */
#define SECRET_MAX 256

typedef struct cluster_box {
  tn_cluster_t *cluster;
  size_t secret_len; /* 0: none */
  char secret[SECRET_MAX];
} cluster_box_t;

static cluster_box_t *check_box(lua_State *L, const char *method) {
  cluster_box_t *box = lua_touserdata(L, 1);
  int ok = 0;
  if (box != NULL && lua_getmetatable(L, 1)) {
    luaL_getmetatable(L, CLUSTER);
    ok = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
  }
  if (!ok)
    tn_l_error(L, method, "self is a %s, not a " CLUSTER " (call it with ':')",
               luaL_typename(L, 1));
  return box;
}

static tn_cluster_t *check_cluster(lua_State *L, const char *method) {
  return check_box(L, method)->cluster;
}

static const char *check_name(lua_State *L, const char *method) {
  if (lua_type(L, 2) != LUA_TSTRING || tn_rawlen(L, 2) == 0)
    tn_l_error(L, method, "name must be a non-empty string (got %s)",
               luaL_typename(L, 2));
  const char *name = lua_tostring(L, 2);
  if (strlen(name) != tn_rawlen(L, 2))
    tn_l_error(L, method, "name must not contain NUL bytes");
  return name;
}

/* Push the new object's box and drop the constructor's reference. */
static int push_new(lua_State *L, tn_object_t *o) {
  tn_l_pushnew(L, o);
  return 1;
}

/* tunnel.Cluster(url [, {prefix = 'tunnel:', timeout = seconds,
** trusted = true, secret = s}]); secret: TUNNEL_SECRET by default, signs
** the jobs of cluster:Block (lcblock.c) */
static void push_cluster_mt(lua_State *L);

static int l_cluster_new(lua_State *L) {
  if (lua_type(L, 1) != LUA_TSTRING)
    return tn_l_error(L, CLUSTER, "url must be a string (got %s)",
                      luaL_typename(L, 1));
  const char *url = lua_tostring(L, 1);
  const char *prefix = NULL;
  double timeout = TN_FOREVER; /* the backend's default (5 s) */
  bool data_only = false;
  if (!lua_isnoneornil(L, 2)) {
    if (lua_type(L, 2) != LUA_TTABLE)
      return tn_l_error(L, CLUSTER, "options must be a table (got %s)",
                        luaL_typename(L, 2));
    lua_getfield(L, 2, "prefix");
    if (!lua_isnil(L, -1)) {
      if (lua_type(L, -1) != LUA_TSTRING)
        return tn_l_error(L, CLUSTER, "prefix must be a string (got %s)",
                          luaL_typename(L, -1));
      prefix = lua_tostring(L, -1); /* anchored by the options table */
    }
    lua_getfield(L, 2, "timeout");
    timeout = tn_l_opttimeout(L, -1, CLUSTER);
    /* A finite bound on every reply: a stalled server is an error, not a
    ** hang (0 or math.huge would mean none). */
    if (!lua_isnil(L, -1) && !(timeout > 0 && timeout < 1e9))
      return tn_l_error(L, CLUSTER,
                        "timeout must be a number of seconds > 0 and "
                        "finite (got %s)",
                        lua_tostring(L, -1));
    lua_getfield(L, 2, "trusted"); /* false: values decode as data only */
    if (lua_type(L, -1) == LUA_TBOOLEAN)
      data_only = !lua_toboolean(L, -1);
    else if (!lua_isnil(L, -1))
      return tn_l_error(L, CLUSTER, "trusted must be a boolean (got %s)",
                        luaL_typename(L, -1));
    lua_pop(L, 3);
  }
  /* secret: the option, else TUNNEL_SECRET; at least 16 bytes. */
  const char *secret = getenv("TUNNEL_SECRET"), *from = " (TUNNEL_SECRET)";
  size_t secret_len = secret != NULL ? strlen(secret) : 0;
  if (lua_type(L, 2) == LUA_TTABLE) {
    lua_getfield(L, 2, "secret");
    if (lua_type(L, -1) == LUA_TSTRING) {
      secret = lua_tolstring(L, -1, &secret_len); /* anchored by options */
      from = "";
    } else if (!lua_isnil(L, -1)) {
      return tn_l_error(L, CLUSTER, "secret must be a string (got %s)",
                        luaL_typename(L, -1));
    }
    lua_pop(L, 1);
  }
  if (secret != NULL && secret_len == 0) secret = NULL; /* TUNNEL_SECRET= */
  if (secret != NULL && (secret_len < 16 || secret_len > SECRET_MAX))
    return tn_l_error(L, CLUSTER,
                      "secret must be 16 to %d bytes (got %d)%s", SECRET_MAX,
                      (int)secret_len, from);
  tn_cluster_t *c;
  int rc = rd_cluster_open(url, prefix, timeout, data_only, &c);
  if (rc == TN_EINVAL) return tn_l_error(L, CLUSTER, "%s", tn_last_error());
  if (rc != TN_OK) return tn_l_coreerror(L, CLUSTER, rc);
  cluster_box_t *box = tn_newuserdata(L, sizeof *box);
  box->cluster = c;
  box->secret_len = secret != NULL ? secret_len : 0;
  if (secret != NULL) memcpy(box->secret, secret, secret_len);
  push_cluster_mt(L);
  lua_setmetatable(L, -2);
  return 1;
}

/* cluster:Vector(name [, size_hint]) */
static int l_cluster_vector(lua_State *L) {
  tn_cluster_t *c = check_cluster(L, M("Vector"));
  const char *name = check_name(L, M("Vector"));
  size_t hint = TN_UNBOUNDED;
  if (!lua_isnoneornil(L, 3)) {
    lua_Number n = lua_type(L, 3) == LUA_TNUMBER ? lua_tonumber(L, 3) : 0;
    if (!(isinf(n) && n > 0)) {
      lua_Integer i = tn_l_checkinteger(L, 3, M("Vector"), "size_hint");
      if (i < 1)
        return tn_l_error(L, M("Vector"),
                          "size_hint must be an integer >= 1 or math.huge");
      hint = (size_t)i;
    }
  }
  tn_deque_t *d;
  int rc = tn_cluster_deque(c, name, hint, &d);
  if (rc != TN_OK) return tn_l_coreerror(L, M("Vector"), rc);
  return push_new(L, TN_OBJECT(d));
}

/* cluster:PriorityQueue(name [, size_hint]), the hint as for Vector. */
static int l_cluster_pqueue(lua_State *L) {
  const char *method = M("PriorityQueue");
  tn_cluster_t *c = check_cluster(L, method);
  const char *name = check_name(L, method);
  size_t hint = TN_UNBOUNDED;
  if (!lua_isnoneornil(L, 3)) {
    lua_Number n = lua_type(L, 3) == LUA_TNUMBER ? lua_tonumber(L, 3) : 0;
    if (!(isinf(n) && n > 0)) {
      lua_Integer i = tn_l_checkinteger(L, 3, method, "size_hint");
      if (i < 1)
        return tn_l_error(L, method,
                          "size_hint must be an integer >= 1 or math.huge");
      hint = (size_t)i;
    }
  }
  tn_pqueue_t *q;
  int rc = tn_cluster_pqueue(c, name, hint, &q);
  if (rc != TN_OK) return tn_l_coreerror(L, method, rc);
  return push_new(L, TN_OBJECT(q));
}

/* cluster:Hash(name) */
static int l_cluster_hash(lua_State *L) {
  tn_cluster_t *c = check_cluster(L, M("Hash"));
  tn_map_t *m;
  int rc = tn_cluster_map(c, check_name(L, M("Hash")), &m);
  if (rc != TN_OK) return tn_l_coreerror(L, M("Hash"), rc);
  return push_new(L, TN_OBJECT(m));
}

/* cluster:Counter(name [, value]): value is stored only if the counter
** does not exist yet. */
static int l_cluster_counter(lua_State *L) {
  tn_cluster_t *c = check_cluster(L, M("Counter"));
  const char *name = check_name(L, M("Counter"));
  int64_t value = 0;
  int has = !lua_isnoneornil(L, 3);
  if (has) value = (int64_t)tn_l_checkinteger(L, 3, M("Counter"), "value");
  tn_counter_t *k;
  int rc = tn_cluster_counter(c, name, has ? &value : NULL, &k);
  if (rc != TN_OK) return tn_l_coreerror(L, M("Counter"), rc);
  return push_new(L, TN_OBJECT(k));
}

/* cluster:Atomic(name [, data]): data (a copy) is stored only if the
** Atomic does not exist yet. */
static int l_cluster_atomic(lua_State *L) {
  tn_cluster_t *c = check_cluster(L, M("Atomic"));
  const char *name = check_name(L, M("Atomic"));
  lua_settop(L, 3);
  tn_blob_t *b = tn_l_encode(L, 3, 1, M("Atomic"));
  tn_cell_t *cell;
  int rc = tn_cluster_cell(c, name, b, &cell);
  tn_blob_release(b);
  if (rc != TN_OK) return tn_l_coreerror(L, M("Atomic"), rc);
  return push_new(L, TN_OBJECT(cell));
}

/* cluster:Printer(name) */
static int l_cluster_printer(lua_State *L) {
  tn_cluster_t *c = check_cluster(L, M("Printer"));
  tn_printer_t *p;
  int rc = tn_cluster_printer(c, check_name(L, M("Printer")), NULL, &p);
  if (rc != TN_OK) return tn_l_coreerror(L, M("Printer"), rc);
  return push_new(L, TN_OBJECT(p));
}

/* cluster:Barrier(name, parties), cluster:Semaphore(name, permits): the
** count is stored by the first creator; later callers get the stored one. */
static int l_cluster_barrier(lua_State *L) {
  tn_cluster_t *c = check_cluster(L, M("Barrier"));
  const char *name = check_name(L, M("Barrier"));
  lua_Integer n = tn_l_checkinteger(L, 3, M("Barrier"), "parties");
  if (n < 1 || n > 1000000000)
    return tn_l_error(L, M("Barrier"), "parties must be an integer >= 1");
  tn_barrier_t *b;
  int rc = tn_cluster_barrier(c, name, (int)n, &b);
  if (rc != TN_OK) return tn_l_coreerror(L, M("Barrier"), rc);
  return push_new(L, TN_OBJECT(b));
}

static int l_cluster_semaphore(lua_State *L) {
  tn_cluster_t *c = check_cluster(L, M("Semaphore"));
  const char *name = check_name(L, M("Semaphore"));
  lua_Integer n = tn_l_checkinteger(L, 3, M("Semaphore"), "permits");
  if (n < 1) return tn_l_error(L, M("Semaphore"), "permits must be an integer >= 1");
  tn_semaphore_t *s;
  int rc = tn_cluster_semaphore(c, name, (int64_t)n, &s);
  if (rc != TN_OK) return tn_l_coreerror(L, M("Semaphore"), rc);
  return push_new(L, TN_OBJECT(s));
}

/* cluster:Block(name, size [, init] [, options]): see lcblock.c. */
static int l_cluster_block(lua_State *L) {
  cluster_box_t *box = check_box(L, M("Block"));
  const char *name = check_name(L, M("Block"));
  return tn_l_cluster_block(L, box->cluster, name,
                            box->secret_len > 0 ? box->secret : NULL,
                            box->secret_len, M("Block"));
}

/* cluster:Array(name [, n [, type]]): see larray.c. */
static int l_cluster_array(lua_State *L) {
  tn_cluster_t *c = check_cluster(L, M("Array"));
  return tn_l_cluster_array(L, c, check_name(L, M("Array")), M("Array"));
}

/* cluster:exists(name) -> whether the server holds anything of it */
static int l_cluster_exists(lua_State *L) {
  tn_cluster_t *c = check_cluster(L, M("exists"));
  int exists = 0;
  int rc = tn_cluster_exists(c, check_name(L, M("exists")), &exists);
  if (rc != TN_OK) return tn_l_coreerror(L, M("exists"), rc);
  lua_pushboolean(L, exists);
  return 1;
}

/* cluster:delete(name) -> whether it existed: every key of the object,
** whatever its class (docs/cluster.md says what a holder sees next). */
static int l_cluster_delete(lua_State *L) {
  tn_cluster_t *c = check_cluster(L, M("delete"));
  int existed = 0;
  int rc = tn_cluster_delete(c, check_name(L, M("delete")), &existed);
  if (rc != TN_OK) return tn_l_coreerror(L, M("delete"), rc);
  lua_pushboolean(L, existed);
  return 1;
}

static int l_cluster_tostring(lua_State *L) {
  tn_cluster_t *c = check_cluster(L, CLUSTER);
  lua_pushfstring(L, CLUSTER ": %s (prefix %s)", tn_cluster_url(c),
                  tn_cluster_prefix(c));
  return 1;
}

/* cluster.url, cluster.prefix, cluster.timeout, or a method. */
static int l_cluster_index(lua_State *L) {
  tn_cluster_t *c = check_cluster(L, CLUSTER);
  const char *k = lua_tostring(L, 2);
  if (k != NULL && strcmp(k, "url") == 0) {
    lua_pushstring(L, tn_cluster_url(c));
  } else if (k != NULL && strcmp(k, "prefix") == 0) {
    lua_pushstring(L, tn_cluster_prefix(c));
  } else if (k != NULL && strcmp(k, "timeout") == 0) {
    lua_pushnumber(L, (lua_Number)tn_cluster_timeout(c));
  } else if (k != NULL && strcmp(k, "trusted") == 0) {
    lua_pushboolean(L, !c->data_only);
  } else {
    lua_pushvalue(L, 2);
    lua_rawget(L, lua_upvalueindex(1));
  }
  return 1;
}

static const luaL_Reg cluster_methods[] = {
    {"Array", l_cluster_array},     {"Block", l_cluster_block},
    {"Vector", l_cluster_vector},   {"Hash", l_cluster_hash},
    {"Counter", l_cluster_counter}, {"Atomic", l_cluster_atomic},
    {"Printer", l_cluster_printer}, {"PriorityQueue", l_cluster_pqueue},
    {"Barrier", l_cluster_barrier}, {"Semaphore", l_cluster_semaphore},
    {"exists", l_cluster_exists},
    {"delete", l_cluster_delete},   {NULL, NULL}};

/* Built with a state's first Cluster: every block thread loads the
** module, few of them connect. */
static void push_cluster_mt(lua_State *L) {
  if (luaL_newmetatable(L, CLUSTER)) {
    lua_newtable(L);
    tn_setfuncs(L, cluster_methods);
    lua_pushcclosure(L, l_cluster_index, 1);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_cluster_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushliteral(L, "locked");
    lua_setfield(L, -2, "__metatable");
  }
}

void tn_l_open_cluster(lua_State *L) {
  lua_pushcfunction(L, l_cluster_new);
  lua_setfield(L, -2, "Cluster");
}
