/*
 * What this machine charges for the operations pstore's hot paths are made of
 * (docs/benchmarks.md, "Session 5"): a system call, two mprotects of a page
 * (a hold's open and close) inside a larger mapping and as a mapping of its
 * own (c/pstore_mem.c's pstore_isolate), a first touch of fresh memory (a page fault),
 * copying into memory already faulted in.
 *
 *   cc -O2 -o /tmp/vm_costs bench/vm_costs.c -lpthread && /tmp/vm_costs
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static double now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static void *spin(void *arg) {
    (void)arg;
    for (volatile long x = 0;; x++) {
    }
    return NULL;
}

static double mprotect_pair(char *page, int touch, int rounds) {
    volatile char sink = 0;
    double t0 = now_us();
    for (int i = 0; i < rounds; i++) {
        mprotect(page, 4096, PROT_READ);
        if (touch) sink += page[i & 4095];
        mprotect(page, 4096, PROT_NONE);
    }
    return (now_us() - t0) / rounds;
}

int main(void) {
    const int rounds = 200000;
    double t0 = now_us();
    for (int i = 0; i < 1000000; i++) syscall(SYS_getppid);
    printf("system call (getppid)                 %6.2f us\n", (now_us() - t0) / 1000000);

    char *page = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    page[0] = 1;
    mprotect(page, 4096, PROT_NONE);
    printf("two mprotects of a page               %6.2f us\n", mprotect_pair(page, 0, rounds));
    printf("two mprotects and a read between      %6.2f us\n", mprotect_pair(page, 1, rounds));
    /* A page in the middle of a PROT_NONE mapping: each mprotect splits the mapping or merges it
     * back. The same page with an access advice its neighbours lack is a mapping of its own. */
    char *segment = mmap(NULL, 1 << 20, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    char *datum = segment + 100 * 4096;
    printf("two mprotects, page inside a mapping  %6.2f us\n", mprotect_pair(datum, 0, rounds));
    madvise(datum, 4096, MADV_SEQUENTIAL);
    printf("two mprotects, page a mapping its own %6.2f us\n", mprotect_pair(datum, 0, rounds));
    pthread_t spinner;
    pthread_create(&spinner, NULL, spin, NULL);
    printf("two mprotects, another thread running %6.2f us\n", mprotect_pair(page, 0, rounds / 4));

    const size_t size = 64u << 20;
    char *fresh = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    t0 = now_us();
    for (size_t i = 0; i < size; i += 4096) fresh[i] = 1;
    double fault = (now_us() - t0) / (size / 4096);
    t0 = now_us();
    memset(fresh, 2, size);
    double copy_ms = (now_us() - t0) / 1000;
    printf("first touch of a fresh page (a fault) %6.2f us\n", fault);
    printf("memset of 64 MiB already faulted in   %6.2f ms (%.0f MB/s)\n", copy_ms, size / (copy_ms * 1000));
    return 0;
}
