/* pstore_lend.c -- the program's side of the lending table (pstore_lend.h). */
#define _GNU_SOURCE
#include <string.h>
#include <time.h>

#include "pstore_lend.h"

static uint64_t monotonic_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000u + (uint64_t)t.tv_nsec / 1000u;
}

int lend_take(lend_table *t, const char *name, uint8_t mode, lend_use *use) {
    size_t len = strlen(name);
    if (monotonic_us() >= __atomic_load_n(&t->lease_until_us, __ATOMIC_SEQ_CST)) return -1;
    for (int i = 0; i < LEND_SLOTS; i++) {
        lend_slot *s = &t->slots[i].slot;
        uint32_t word = __atomic_load_n(&s->state, __ATOMIC_SEQ_CST);
        if ((word & LEND_KIND_MASK) != LEND_FREE) continue;
        /* Read after the word: if the swap below succeeds, no take-back came in
         * between, and the agent writes these fields only while the slot is not FREE. */
        uint32_t lent_mode = s->mode, first = s->first_page, count = s->page_count;
        uint64_t offset = s->offset, size = s->size;
        uint16_t name_len = s->name_len;
        if (name_len != len || name_len > sizeof(s->name) || memcmp(s->name, name, len) != 0) continue;
        if (lent_mode < mode) return -1; /* lent for reading: a write asks the servers, through the agent */
        uint32_t used = (word & ~LEND_KIND_MASK) | (mode == 2 ? LEND_USED_WRITE : LEND_USED_READ);
        if (!__atomic_compare_exchange_n(&s->state, &word, used, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) return -1;
        *use = (lend_use){i, used, offset, size, first, count};
        return 0;
    }
    return -1;
}

int lend_return(lend_table *t, const lend_use *use) {
    uint32_t word = use->word;
    uint32_t idle = (word & ~LEND_KIND_MASK) | LEND_FREE;
    return __atomic_compare_exchange_n(&t->slots[use->slot].slot.state, &word, idle, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST) ? 0 : -1;
}
