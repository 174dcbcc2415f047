/* pstore_mem.h -- page-protected segments with first-write tracking for pstore. */

#ifndef PSTORE_MEM_H
#define PSTORE_MEM_H

#include <stdint.h>

#define PSTORE_OK 0
#define PSTORE_ERR -1

/* Every function taking `err` writes a one-line reason there on PSTORE_ERR. */
#define PSTORE_ERR_LEN 256

/* Hold modes of a page; they decide its protection. */
#define PSTORE_HOLD_NONE 0  /* PROT_NONE: any access is a bug and kills the process */
#define PSTORE_HOLD_READ 1  /* PROT_READ: a write kills the process */
#define PSTORE_HOLD_WRITE 2 /* PROT_READ until the first write, then dirty and writable; over 16 pages,
                             * PROT_NONE until touched: a first read opens PROT_READ */

#define PSTORE_SEGMENTS_MAX 64
#define PSTORE_NAME_BYTES_MAX 255
/* Distinct live names per segment (each datum covers at least one page). */
#define PSTORE_NAMES_MAX (1u << 20)

/* Maps page_count pages of page_size bytes with no rights and returns the
 * segment id (>= 0), or PSTORE_ERR. The first call installs the SIGSEGV handler. */
int pstore_segment_map(uint32_t page_count, uint32_t page_size, char *err);
/* As pstore_segment_map, over the file fd, MAP_SHARED: another process that
 * maps the same file sees the same bytes (the agent and a C program). */
int pstore_segment_map_fd(uint32_t page_count, uint32_t page_size, int fd, char *err);
/* As pstore_segment_map_fd, readable throughout: holds change the pages'
 * bookkeeping (modes, dirty bits), not their protection. The agent's mapping
 * of a program's segment, which only the agent's own code reads (and
 * pstore_write_pages writes): the program's mapping is the one that guards. */
int pstore_segment_map_fd_readable(uint32_t page_count, uint32_t page_size, int fd, char *err);
/* Address of the first byte of the segment, NULL if the id is not mapped. */
void *pstore_segment_base(int seg);
int pstore_segment_unmap(int seg, char *err);

/* Labels the pages with a name of name_len bytes (0 clears the label). */
int pstore_set_name(int seg, uint32_t first, uint32_t count,
                    const char *name, uint32_t name_len, char *err);
/* Sets the hold mode of the pages, clears their dirty bits, sets their protection. */
int pstore_protect(int seg, uint32_t first, uint32_t count, int mode, char *err);
/* Copies count pages from bytes, page i at bytes + i * stride (stride >= the
 * page size), whatever the protection, which is then restored. */
int pstore_write_pages(int seg, uint32_t first, uint32_t count,
                       const uint8_t *bytes, uint32_t stride, char *err);
/* Makes count pages zeros, whatever the protection, which is kept (a grant's
 * pages untouched since the datum was created). Private memory is dropped
 * (it reads back as zeros and goes back to the system); a shared mapping's
 * pages are cleared. */
int pstore_zero_pages(int seg, uint32_t first, uint32_t count, char *err);
/* Stores the indices of the dirty pages of the range in out (room for count
 * entries), ascending; returns how many, or PSTORE_ERR. */
int pstore_dirty_pages(int seg, uint32_t first, uint32_t count, uint32_t *out, char *err);

/* Marks write-held pages dirty: pages another process wrote through a shared
 * mapping, which this process's handler never saw. */
int pstore_mark_dirty(int seg, const uint32_t *pages, uint32_t count, char *err);

/* Counters since start-up: first writes made writable; faults passed to the
 * previous handler; first writes that, short of mappings (vm.max_map_count),
 * opened and dirtied their whole run of write-held pages. */
uint32_t pstore_faults_upgraded(void);
uint32_t pstore_faults_forwarded(void);
uint32_t pstore_faults_widened(void);
/* First reads of write-held pages, opened read-only. */
uint32_t pstore_faults_opened(void);

/* Asks the kernel to send SIGTERM when the parent dies. If the parent is
 * already gone (getppid() != expected_parent, when > 0), sends it at once. */
int pstore_die_with_parent(int expected_parent, char *err);

/* Takes an exclusive, non-blocking flock() on `fd`: PSTORE_OK when taken,
 * PSTORE_BUSY when another open file holds it (another process), PSTORE_ERR
 * otherwise. The kernel drops it when the fd closes or the process dies. */
#define PSTORE_BUSY 1
int pstore_lock_fd(int fd, char *err);

#endif
