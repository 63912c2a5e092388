/* lprinter.c - placeholder until the class lands. */
#include "ltunnel.h"

void tn_l_open_printer(lua_State *L) { (void)L; }
