/*
** testing.h - hooks for tests only: not part of the public API, not in
** include/tunnel.h, not exported by libtunnel.so. The C tests (test/test.h)
** and the Lua binding's tunnel._fault_alloc include it.
*/
#ifndef TN_TESTING_H
#define TN_TESTING_H

/*
** Make the n-th allocation from now on (1-based) fail, and every later one
** too if `sticky`; n = 0 turns injection off. Returns the number of
** allocations made since the last call. Process-wide, for tests only.
*/
unsigned long tn_fault_alloc(unsigned long n, int sticky);

#endif
