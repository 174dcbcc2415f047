/* pstore_lend.h -- the lending table: memory the agent shares with the
 * program it serves (after the segment, in the same /dev/shm file), through
 * which the program takes and returns, with no message, uses the agent's
 * client store granted from a cached grant (src/agent/lending.ts is the other
 * side; keep the layout in step). Private to libpstore.so.
 *
 * Each slot's state word: bits 0-1 the kind (EMPTY, FREE: lent and idle,
 * USED_READ / USED_WRITE: the program is in it), bit 2 RECALLED (a recall
 * came while the program was in it: its release must tell the agent), bits
 * 3-31 a generation the agent bumps whenever it takes a slot back, so that a
 * compare-and-swap from FREE succeeds only on the lend whose fields were read.
 * The program swaps FREE -> USED_* (access) and USED_* -> FREE (a release
 * that ships nothing); everything else is the agent's. */
#ifndef PSTORE_LEND_H
#define PSTORE_LEND_H

#include <stdint.h>

#define LEND_SLOTS 64
#define LEND_HEADER_BYTES 64
#define LEND_SLOT_BYTES 320
#define LEND_TABLE_BYTES 24576 /* header + slots, rounded up to whole 4 KiB pages */

#define LEND_EMPTY 0u
#define LEND_FREE 1u
#define LEND_USED_READ 2u
#define LEND_USED_WRITE 3u
#define LEND_KIND_MASK 3u
#define LEND_RECALLED 4u

typedef struct lend_slot {
    uint32_t state;      /* atomic */
    uint32_t mode;       /* of the lent use: 1 read (the program may only read), 2 write */
    uint32_t first_page; /* of the datum */
    uint32_t page_count;
    uint64_t offset;     /* bytes into the segment */
    uint64_t size;
    uint16_t name_len;
    char name[255];
} lend_slot;

typedef struct lend_table {
    uint64_t lease_until_us; /* atomic; CLOCK_MONOTONIC: no slot may be taken from then on */
    uint8_t pad[LEND_HEADER_BYTES - 8];
    struct {
        lend_slot slot;
        uint8_t pad[LEND_SLOT_BYTES - sizeof(lend_slot)];
    } slots[LEND_SLOTS];
} lend_table;

_Static_assert(sizeof(lend_slot) <= LEND_SLOT_BYTES, "a lend slot outgrew its room");
_Static_assert(sizeof(lend_table) <= LEND_TABLE_BYTES, "the lending table outgrew its pages");

/* A use taken from the table. */
typedef struct lend_use {
    int slot;
    uint32_t word; /* the state word while the program is in the use */
    uint64_t offset, size;
    uint32_t first_page, page_count;
} lend_use;

/* Takes the idle lent use of `name` for mode (1 read, 2 write) if there is one
 * and the lease holds: 0 with *use, or -1 (ask the agent). */
int lend_take(lend_table *t, const char *name, uint8_t mode, lend_use *use);
/* Returns a use that shipped nothing: 0 when done with no message, -1 when the
 * agent must be told (a recall is pending). */
int lend_return(lend_table *t, const lend_use *use);

#endif
