/* pstore_large.c -- buffers for large frames outside the JavaScript allocator (see pstore_large.h). */

#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "pstore_large.h"

/* The collector may free a buffer on a thread of its own: the kept slot is locked. */
static pthread_mutex_t kept_lock = PTHREAD_MUTEX_INITIALIZER;
static void *kept = NULL;
static size_t kept_capacity = 0;
/* Past this, a freed buffer is unmapped rather than kept (set by each alloc). */
static size_t keep_max = 0;
static uint64_t mapped = 0, unmapped = 0;

/* Huge pages (2 MiB) for large buffers: a fresh mapping's 4 KiB pages cost
 * ~11 us each to fault in on our VM (180 ms for a 64 MiB frame), a huge page
 * about as much as zeroing it (~0.1 ms for 2 MiB). Sized in whole huge pages
 * so that every one of them can be huge. */
#define HUGE_BYTES ((size_t)2 * 1024 * 1024)

static size_t round_up(size_t bytes, size_t unit) {
    return (bytes + unit - 1) / unit * unit;
}

void *pstore_large_alloc(double bytes, double keep_bytes_max, double *capacity, char *err) {
    size_t want = round_up(bytes < 1 ? 1 : (size_t)bytes, 4096);
    if (want >= 2 * HUGE_BYTES) want = round_up(want, HUGE_BYTES);
    void *reuse = NULL, *drop = NULL;
    size_t reuse_capacity = 0, drop_capacity = 0;
    pthread_mutex_lock(&kept_lock);
    keep_max = (size_t)keep_bytes_max;
    if (kept != NULL && kept_capacity >= want) {
        reuse = kept;
        reuse_capacity = kept_capacity;
        kept = NULL;
        kept_capacity = 0;
    } else if (kept != NULL) {
        /* Too small for this frame: a new mapping takes its place when freed. */
        drop = kept;
        drop_capacity = kept_capacity;
        kept = NULL;
        kept_capacity = 0;
    }
    pthread_mutex_unlock(&kept_lock);
    if (drop != NULL) {
        munmap(drop, drop_capacity);
        __atomic_add_fetch(&unmapped, 1, __ATOMIC_RELAXED);
    }
    if (reuse != NULL) {
        *capacity = (double)reuse_capacity;
        return reuse;
    }
    void *p = mmap(NULL, want, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) {
        snprintf(err, 256, "mmap of %zu bytes for a large frame: %s", want, strerror(errno));
        return NULL;
    }
    __atomic_add_fetch(&mapped, 1, __ATOMIC_RELAXED);
    /* Only advice: without transparent huge pages the buffer is made of 4 KiB pages. */
    if (want >= 2 * HUGE_BYTES) madvise(p, want, MADV_HUGEPAGE);
    *capacity = (double)want;
    return p;
}

void pstore_large_free(void *bytes, void *context) {
    size_t capacity = (size_t)(uintptr_t)context;
    int keep = 0;
    pthread_mutex_lock(&kept_lock);
    if (kept == NULL && capacity <= keep_max) {
        kept = bytes;
        kept_capacity = capacity;
        keep = 1;
    } else if (kept != NULL && capacity > kept_capacity && capacity <= keep_max) {
        /* Keep the bigger one: it serves every frame the smaller would. */
        void *smaller = kept;
        size_t smaller_capacity = kept_capacity;
        kept = bytes;
        kept_capacity = capacity;
        bytes = smaller;
        capacity = smaller_capacity;
    }
    pthread_mutex_unlock(&kept_lock);
    if (keep) return;
    munmap(bytes, capacity);
    __atomic_add_fetch(&unmapped, 1, __ATOMIC_RELAXED);
}

void pstore_large_release_kept(void) {
    pthread_mutex_lock(&kept_lock);
    keep_max = 0; /* idle: a buffer collected from now on goes too, until the next alloc */
    void *p = kept;
    size_t capacity = kept_capacity;
    kept = NULL;
    kept_capacity = 0;
    pthread_mutex_unlock(&kept_lock);
    if (p == NULL) return;
    munmap(p, capacity);
    __atomic_add_fetch(&unmapped, 1, __ATOMIC_RELAXED);
}

void *pstore_large_free_fn(void) { return (void *)pstore_large_free; }

double pstore_large_mapped(void) { return (double)__atomic_load_n(&mapped, __ATOMIC_RELAXED); }
double pstore_large_unmapped(void) { return (double)__atomic_load_n(&unmapped, __ATOMIC_RELAXED); }

double pstore_large_kept_bytes(void) {
    pthread_mutex_lock(&kept_lock);
    double bytes = (double)kept_capacity;
    pthread_mutex_unlock(&kept_lock);
    return bytes;
}
