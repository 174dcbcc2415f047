/* pstore_large.h -- buffers for large frames outside the JavaScript allocator.
 *
 * A server assembles each large frame (a 64 MiB release, a state transfer) in
 * one buffer. Made by the allocator, such a buffer's pages stay with the
 * process once it is collected (the servers keep freed memory: src/cli/self.ts),
 * so a server's RSS held two or three frames beyond its data. These are
 * mappings of their own: the JavaScript ArrayBuffer over one calls
 * pstore_large_free when it is collected, which keeps one mapping for the
 * next large frame (its pages already faulted in) and unmaps the others. */
#ifndef PSTORE_LARGE_H
#define PSTORE_LARGE_H

#include <stdint.h>

/* A buffer of at least `bytes` (the kept one if it is big enough, else a new
 * mapping); its capacity in *capacity. NULL with err on failure. */
void *pstore_large_alloc(double bytes, double keep_bytes_max, double *capacity, char *err);

/* The deallocator of the ArrayBuffer over a buffer: `context` is its capacity. */
void pstore_large_free(void *bytes, void *context);
void *pstore_large_free_fn(void);

/* Unmaps the buffer kept for the next large frame, if any (an idle server's),
 * and keeps none until the next pstore_large_alloc. */
void pstore_large_release_kept(void);

/* Mappings made and unmapped so far, and the capacity of the one kept (tests, status). */
double pstore_large_mapped(void);
double pstore_large_unmapped(void);
double pstore_large_kept_bytes(void);

#endif
