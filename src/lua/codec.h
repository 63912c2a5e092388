/*
** codec.h - what the codec offers the binding beyond ltunnel.h: decoding
** bytes that did not come from an in-process blob (tunnel.Serializer).
*/
#ifndef TN_CODEC_H
#define TN_CODEC_H

#include "ltunnel.h"

/*
** Push the values encoded in `len` bytes at `data` and return how many
** (0 for no bytes). Object indexes refer to the references of `refs`
** (NULL: the bytes may hold no object). Unless `trusted`, function
** bytecode is refused (malformed bytecode can crash the VM) and modules are
** only looked up in package.loaded, never required. Raises
** "<method>: corrupt value (<why>)" for bytes that are not a valid
** encoding; never reads outside the bytes and leaves nothing allocated.
*/
int tn_l_decode_bytes(lua_State *L, const void *data, size_t len,
                      const tn_blob_t *refs, int trusted, const char *method);

/* Forget the state's cache of module names (the module was loaded again). */
void tn_l_codec_reset(lua_State *L);

#endif
