/* codec.c - placeholder until the codec lands. */
#include "ltunnel.h"

tn_blob_t *tn_l_encode(lua_State *L, int first, int count, const char *method) {
  (void)L; (void)first; (void)count; (void)method;
  return NULL;
}

int tn_l_decode(lua_State *L, const tn_blob_t *b, const char *method) {
  (void)b; (void)method;
  lua_pushnil(L);
  return 1;
}
