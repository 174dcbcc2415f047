/* pstore_mem_internal.h -- what pstore_mem.c (segments, names, holds) and
 * pstore_fault.c (the SIGSEGV handler that enforces them) share. Not exported
 * from the libraries: hidden symbols. */
#ifndef PSTORE_MEM_INTERNAL_H
#define PSTORE_MEM_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "pstore_mem.h"

#define PSTORE_HIDDEN __attribute__((visibility("hidden")))

/* What C knows of one page. The handler reads it, so it lives in memory
 * allocated at map time, never on the JavaScript heap. */
typedef struct pstore_page {
    uint8_t mode;   /* PSTORE_HOLD_* */
    uint8_t dirty;  /* written since the last pstore_protect() of the page */
    uint8_t opened; /* write-held and read since then: PROT_READ until written */
    uint8_t colour; /* PSTORE_COLOUR_*: the access advice its mapping was given (pstore_isolate) */
    uint8_t huge;   /* its mapping was advised to use huge pages (pstore_advise_huge) */
    uint32_t name; /* index into the segment's name table, 0 = no name */
} pstore_page;

/* Huge pages (2 MiB on x86-64) for large data. On our VM (a PVM guest: its page
 * tables are shadowed by the host) a 4 KiB page first touched after its mapping
 * changed costs ~6 us: a datum released (PROT_NONE) and written again cost
 * 100 ms per 64 MiB before the first byte of the next release, against 1.4 ms
 * when the same memory is mapped by 2 MiB entries, which mprotect keeps whole
 * as long as it covers them whole (docs/benchmarks.md, session 16). */
#define PSTORE_HUGE_BYTES (2u * 1024 * 1024)

/* A datum name, copied in so the handler never touches a JavaScript string. */
typedef struct pstore_name {
    uint32_t refs;      /* pages labelled with it; 0 = free slot */
    uint8_t isolated;   /* its pages were given a mapping of their own (pstore_isolate) */
    uint32_t next_free; /* next free slot when refs == 0, 0 = end of list */
    uint8_t len;
    char bytes[PSTORE_NAME_BYTES_MAX];
} pstore_name;

typedef struct pstore_segment {
    char *base; /* NULL when the slot is free; set last, cleared first */
    size_t size;
    uint32_t page_size;
    uint32_t page_count;
    pstore_page *pages;
    pstore_name *names; /* names[0] is unused: name id 0 means "no name" */
    uint32_t names_cap; /* slots, including slot 0 */
    uint32_t names_top; /* slots below it have been handed out at least once */
    uint32_t free_head; /* first free slot below names_top, 0 = none */
    /* Sequential first writes (see pstore_first_write): the page after the
     * last run opened, and how many pages the streak has opened so far. */
    uint32_t streak_end;
    uint32_t streak_pages;
    /* The agent's mapping of a program's segment: readable throughout, holds
     * change only the bookkeeping (the program's mapping enforces them). */
    uint8_t readable;
    /* Mapped from a file (shared with another process): dropping pages does not zero them. */
    uint8_t shared;
    /* Names whose pages were given a mapping of their own. */
    uint32_t isolated;
    /* A small write hold's pages as they were at its start, one page each (see
     * pstore_shadow_open); NULL until the first such hold. */
    uint8_t **shadows;
} pstore_segment;

/* Every segment this process maps; the handler finds a fault's segment here. */
PSTORE_HIDDEN extern pstore_segment pstore_segments[PSTORE_SEGMENTS_MAX];

/* Formats into err (PSTORE_ERR_LEN bytes, may be NULL); returns PSTORE_ERR. */
PSTORE_HIDDEN int pstore_set_error(char *err, const char *fmt, ...);

/* Installs the SIGSEGV handler once (pstore_fault.c). */
PSTORE_HIDDEN int pstore_install_handler(char *err);

#endif
