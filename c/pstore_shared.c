/* pstore_shared.c -- see pstore_shared.h. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "pstore_mem.h"
#include "pstore_shared.h"

void *pstore_shared_map(int fd, double offset, uint32_t bytes, char *err) {
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)offset);
    if (p == MAP_FAILED) {
        if (err) snprintf(err, PSTORE_ERR_LEN, "mmap of %u shared bytes: %s", bytes, strerror(errno));
        return NULL;
    }
    return p;
}

int pstore_shared_unmap(void *p, uint32_t bytes, char *err) {
    if (munmap(p, bytes) == 0) return PSTORE_OK;
    if (err) snprintf(err, PSTORE_ERR_LEN, "munmap: %s", strerror(errno));
    return PSTORE_ERR;
}

static uint32_t *word32(void *p, uint32_t byte_offset) {
    return (uint32_t *)((char *)p + byte_offset);
}

uint32_t pstore_shared_load32(void *p, uint32_t byte_offset) {
    return __atomic_load_n(word32(p, byte_offset), __ATOMIC_SEQ_CST);
}

void pstore_shared_store32(void *p, uint32_t byte_offset, uint32_t value) {
    __atomic_store_n(word32(p, byte_offset), value, __ATOMIC_SEQ_CST);
}

uint32_t pstore_shared_cas32(void *p, uint32_t byte_offset, uint32_t expected, uint32_t desired) {
    __atomic_compare_exchange_n(word32(p, byte_offset), &expected, desired, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
    return expected;
}

void pstore_shared_store64(void *p, uint32_t byte_offset, double value) {
    __atomic_store_n((uint64_t *)((char *)p + byte_offset), (uint64_t)value, __ATOMIC_SEQ_CST);
}

double pstore_monotonic_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}
