/*
** codec.h - what the codec offers the binding beyond ltunnel.h: decoding
** bytes that did not come from an in-process blob (tunnel.Serializer),
** how far such bytes are trusted, and the class registry
** (tunnel.register).
*/
#ifndef TN_CODEC_H
#define TN_CODEC_H

#include "ltunnel.h"

/*
** The version of the blob format (the tags of codec.c). Values that leave
** the process with their bytes as they are (distributed blocks' jobs and
** results) name it, with the Lua flavour: bump it when a tag changes
** meaning, so that a worker built before refuses what it cannot read.
*/
#define TN_CODEC_VERSION 1

/* How far the decoder trusts the bytes it decodes. */
enum {
  /* trusted = false: plain data only. No function of any kind (bytecode or
  ** a C function by name), no module table, not the globals table: the
  ** bytes cannot hand the receiver anything it could call. Tables of a
  ** registered class and tunnel objects are still received. */
  TN_DECODE_DATA = 0,
  /* Bytes from outside this process (a Serializer string whose check does
  ** not match): no bytecode (malformed bytecode can crash the VM); modules
  ** and their C functions only from package.loaded, never required. */
  TN_DECODE_FOREIGN = 1,
  /* Bytes this process made (in-process blobs, a Serializer string whose
  ** keyed check matches): everything, modules required if needed. */
  TN_DECODE_OWN = 2
};

/*
** A blob whose first byte is this is decoded (from the next byte on) as
** TN_DECODE_DATA by tn_l_decode. The Redis backend puts it in front of
** every value a Cluster with trusted = false reads (src/redis/redis.h,
** RD_DATA_ONLY, must be the same byte), so every structure of such a
** cluster decodes data only without knowing where its blobs came from.
** No tag of the codec has this value.
*/
#define TN_CODEC_DATA_ONLY 0xfe

/*
** Push the values encoded in `len` bytes at `data` and return how many
** (0 for no bytes). Object indexes refer to the references of `refs`
** (NULL: the bytes may hold no object). `trust` is a TN_DECODE_* level.
** Raises "<method>: corrupt value (<why>)" for bytes that are not a valid
** encoding, and "<method>: cannot receive ..." for a value the trust level
** refuses or a class not registered here; never reads outside the bytes
** and leaves nothing allocated.
*/
int tn_l_decode_bytes(lua_State *L, const void *data, size_t len,
                      const tn_blob_t *refs, int trust, const char *method);

/*
** Whether the `len` bytes at `data` are one scalar (nil, a boolean, a
** number or a string) and nothing else: decoding them raises nothing but
** a memory error.
*/
int tn_l_isscalar(const void *data, size_t len);

/* Whether the bytes are the value "the blob's first object" and nothing
** else (a shared table, a Vector, ... stored as a value). */
int tn_l_isobjectref(const void *data, size_t len);

/* Push the scalar of such bytes (tn_l_isscalar must have said so). */
void tn_l_decode_scalar(lua_State *L, const void *data, size_t len,
                        const char *method);

/* Forget the state's cache of module names (the module was loaded again). */
void tn_l_codec_reset(lua_State *L);

/* tunnel.register(name, mt) -> mt (see codec.c, "Classes"). */
int tn_l_register(lua_State *L);

#endif
