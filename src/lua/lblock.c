/* lblock.c - placeholder until the class lands. */
#include "ltunnel.h"

void tn_l_open_block(lua_State *L) { (void)L; }
