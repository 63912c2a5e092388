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

/*
** The pool of parked block threads (block.c): join every parked thread
** now (the pool stays usable); how many are parked; set how many may park
** (max >= 0; < 0 only reads), returning the previous bound.
*/
void tn_block_pool_drain(void);
int tn_block_pool_idle(void);
int tn_block_pool_limit(int max);

#endif
