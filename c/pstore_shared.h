/* pstore_shared.h -- memory shared with another process, and atomic words in
 * it: the agent's side of the lending table (c/pstore_lend.h), for
 * src/memory (bun:ffi), since JavaScript's Atomics are not guaranteed across
 * processes on memory Bun did not allocate. */
#ifndef PSTORE_SHARED_H
#define PSTORE_SHARED_H

#include <stdint.h>

/* Maps `bytes` of the open file fd from `offset` (a multiple of the page
 * size), read-write and shared; NULL with err on failure. */
void *pstore_shared_map(int fd, double offset, uint32_t bytes, char *err);
int pstore_shared_unmap(void *p, uint32_t bytes, char *err);

/* The 32-bit word at p + byte_offset (4-aligned), sequentially consistent:
 * cas returns the value found (== expected when it swapped). */
uint32_t pstore_shared_load32(void *p, uint32_t byte_offset);
void pstore_shared_store32(void *p, uint32_t byte_offset, uint32_t value);
uint32_t pstore_shared_cas32(void *p, uint32_t byte_offset, uint32_t expected, uint32_t desired);
/* Stores value (a whole number of at most 2^53) as one 64-bit word (8-aligned). */
void pstore_shared_store64(void *p, uint32_t byte_offset, double value);

/* CLOCK_MONOTONIC in milliseconds: the clock every process of the host shares. */
double pstore_monotonic_ms(void);

#endif
