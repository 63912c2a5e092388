/* version.c - the version of the library a program runs with. */
#include "tunnel.h"

const char *tn_version(void) { return TN_VERSION; }
