/* pstore_mem.c -- mapped segments, their names and per-page holds (the SIGSEGV
 * handler that enforces them: pstore_fault.c). Ordinary code, called from
 * JavaScript through FFI. */

#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "pstore_mem_internal.h"

pstore_segment pstore_segments[PSTORE_SEGMENTS_MAX];

int pstore_set_error(char *err, const char *fmt, ...) {
    va_list ap;

    if (err == NULL) return PSTORE_ERR;
    va_start(ap, fmt);
    vsnprintf(err, PSTORE_ERR_LEN, fmt, ap);
    va_end(ap);
    return PSTORE_ERR;
}

/* Per-page and name tables: zero-filled and paid for only when touched, so
 * a 64 GiB segment costs nothing until its pages are labelled. */
static void *pstore_table_map(size_t bytes) {
    void *table = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    return table == MAP_FAILED ? NULL : table;
}

static void pstore_shadow_drop(pstore_segment *s, uint32_t first, uint32_t count);

static void pstore_segment_release(pstore_segment *s) {
    if (s->shadows != NULL) {
        pstore_shadow_drop(s, 0, s->page_count);
        munmap(s->shadows, (size_t)s->page_count * sizeof(uint8_t *));
    }
    if (s->pages != NULL) munmap(s->pages, (size_t)s->page_count * sizeof(pstore_page));
    if (s->names != NULL) munmap(s->names, (size_t)s->names_cap * sizeof(pstore_name));
    memset(s, 0, sizeof(*s));
}

/* Maps the segment: anonymous private memory when fd < 0, else the file fd,
 * shared (the agent and a C program see the same bytes through it). */
static int pstore_segment_map_any(uint32_t page_count, uint32_t page_size, int fd, uint8_t readable, char *err) {
    long system_page = sysconf(_SC_PAGESIZE);
    int seg;

    if (page_size == 0 || system_page <= 0 || page_size % (uint32_t)system_page != 0) {
        return pstore_set_error(err, "page size %u is not a multiple of the system page size %ld",
                                page_size, system_page);
    }
    if (page_count == 0) return pstore_set_error(err, "a segment needs at least one page");
    for (seg = 0; seg < PSTORE_SEGMENTS_MAX; seg++) {
        if (pstore_segments[seg].base == NULL && pstore_segments[seg].pages == NULL) break;
    }
    if (seg == PSTORE_SEGMENTS_MAX) {
        return pstore_set_error(err, "all %d segments of this process are mapped", PSTORE_SEGMENTS_MAX);
    }
    if (pstore_install_handler(err) != PSTORE_OK) return PSTORE_ERR;

    pstore_segment *s = &pstore_segments[seg];
    s->page_size = page_size;
    s->page_count = page_count;
    s->size = (size_t)page_count * page_size;
    s->names_cap = (page_count < PSTORE_NAMES_MAX ? page_count : PSTORE_NAMES_MAX) + 1;
    s->names_top = 1;
    s->pages = pstore_table_map((size_t)page_count * sizeof(pstore_page));
    s->names = pstore_table_map((size_t)s->names_cap * sizeof(pstore_name));
    if (s->pages == NULL || s->names == NULL) {
        pstore_segment_release(s);
        return pstore_set_error(err, "cannot allocate the page tables: %s", strerror(errno));
    }
    /* PROT_NONE: no rights until a hold. MAP_NORESERVE: the segment does not
     * count against overcommit until its pages are written. */
    int prot = readable ? PROT_READ : PROT_NONE;
    void *base = fd < 0 ? mmap(NULL, s->size, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
                        : mmap(NULL, s->size, prot, MAP_SHARED | MAP_NORESERVE, fd, 0);
    if (base == MAP_FAILED) {
        int saved = errno;
        pstore_segment_release(s);
        return pstore_set_error(err, "mmap of %u pages: %s", page_count, strerror(saved));
    }
    s->readable = readable;
    s->shared = fd >= 0;
    s->base = base; /* last: from now on the handler sees a complete segment */
    return seg;
}

int pstore_segment_map(uint32_t page_count, uint32_t page_size, char *err) {
    return pstore_segment_map_any(page_count, page_size, -1, 0, err);
}

int pstore_segment_map_fd(uint32_t page_count, uint32_t page_size, int fd, char *err) {
    if (fd < 0) return pstore_set_error(err, "file descriptor %d is not open", fd);
    return pstore_segment_map_any(page_count, page_size, fd, 0, err);
}

int pstore_segment_map_fd_readable(uint32_t page_count, uint32_t page_size, int fd, char *err) {
    if (fd < 0) return pstore_set_error(err, "file descriptor %d is not open", fd);
    return pstore_segment_map_any(page_count, page_size, fd, 1, err);
}

static pstore_segment *pstore_segment_get(int seg, char *err) {
    if (seg < 0 || seg >= PSTORE_SEGMENTS_MAX || pstore_segments[seg].base == NULL) {
        pstore_set_error(err, "segment %d is not mapped", seg);
        return NULL;
    }
    return &pstore_segments[seg];
}

static int pstore_check_range(const pstore_segment *s, uint32_t first, uint32_t count, char *err) {
    if (count > s->page_count || first > s->page_count - count) {
        return pstore_set_error(err, "pages [%u, %u+%u) are outside the segment of %u pages",
                                first, first, count, s->page_count);
    }
    return PSTORE_OK;
}

void *pstore_segment_base(int seg) {
    if (seg < 0 || seg >= PSTORE_SEGMENTS_MAX) return NULL;
    return pstore_segments[seg].base;
}

int pstore_segment_unmap(int seg, char *err) {
    pstore_segment *s = pstore_segment_get(seg, err);
    if (s == NULL) return PSTORE_ERR;

    char *base = s->base;
    s->base = NULL; /* first: the handler stops claiming these addresses */
    if (munmap(base, s->size) != 0) {
        return pstore_set_error(err, "munmap: %s", strerror(errno));
    }
    pstore_segment_release(s);
    return PSTORE_OK;
}

static void pstore_name_unref(pstore_segment *s, uint32_t id) {
    if (id == 0) return;
    pstore_name *n = &s->names[id];
    if (--n->refs == 0) {
        if (n->isolated) s->isolated--;
        n->isolated = 0;
        n->next_free = s->free_head;
        s->free_head = id;
    }
}

static uint32_t pstore_name_alloc(pstore_segment *s) {
    uint32_t id = s->free_head;

    if (id != 0) {
        s->free_head = s->names[id].next_free;
    } else if (s->names_top < s->names_cap) {
        id = s->names_top++;
    }
    return id;
}

/* ------------------------------------------------------------------------
 * A mapping of its own for each datum. mprotect of one datum's pages inside
 * a larger PROT_NONE mapping splits that mapping in three, and the release
 * merges it back: the kernel's VMA bookkeeping made an access and a release
 * cost 6.7 us on our VM, against 1.2 us when the datum is a mapping of its
 * own (bench/vm_costs.c). The kernel merges neighbouring mappings that agree
 * in every flag, so each datum's pages get an access advice (normal,
 * sequential, random) that neither neighbour has. For anonymous memory the
 * advice changes nothing else but how reclaim ages the pages under memory
 * pressure. Each isolated datum costs a mapping for as long as it is known:
 * past a quarter of vm.max_map_count, data are left as they are (correct,
 * only slower to open and close).
 * --------------------------------------------------------------------- */
#define PSTORE_COLOUR_NORMAL 0
#define PSTORE_COLOUR_SEQUENTIAL 1
#define PSTORE_COLOUR_RANDOM 2
#define PSTORE_COLOUR_NONE 255 /* no neighbour: the segment's edge */

static const int pstore_colour_advice[3] = {MADV_NORMAL, MADV_SEQUENTIAL, MADV_RANDOM};

/* The most data of one segment given a mapping of their own: read once per process. */
static uint32_t pstore_isolated_max(void) {
    static uint32_t max = 0;
    static int known = 0;
    if (known) return max;
    known = 1;
    long max_map_count = 65530;
    FILE *f = fopen("/proc/sys/vm/max_map_count", "r");
    if (f != NULL) {
        if (fscanf(f, "%ld", &max_map_count) != 1) max_map_count = 65530;
        fclose(f);
    }
    max = max_map_count > 4 ? (uint32_t)(max_map_count / 4) : 0;
    return max;
}

static void pstore_isolate(pstore_segment *s, uint32_t first, uint32_t count, pstore_name *n) {
    if (s->readable || count == 0) return; /* the agent's mapping is never protected page by page */
    uint32_t end = first + count;
    uint8_t left = first > 0 ? s->pages[first - 1].colour : PSTORE_COLOUR_NONE;
    uint8_t right = end < s->page_count ? s->pages[end].colour : PSTORE_COLOUR_NONE;
    uint8_t now = s->pages[first].colour;
    int uniform = 1;
    for (uint32_t i = first + 1; i < end && uniform; i++) uniform = s->pages[i].colour == now;
    if (uniform && now != left && now != right) {
        /* Already a mapping of its own (a grant of a datum we knew). */
        n->isolated = 1;
        s->isolated++;
        return;
    }
    if (s->isolated >= pstore_isolated_max()) return;
    uint8_t colour = PSTORE_COLOUR_SEQUENTIAL;
    while (colour == left || colour == right) colour = (uint8_t)((colour + 1) % 3);
    if (madvise(s->base + (size_t)first * s->page_size, (size_t)count * s->page_size, pstore_colour_advice[colour]) != 0) {
        return; /* e.g. ENOMEM past vm.max_map_count: left as it was, only slower */
    }
    for (uint32_t i = first; i < end; i++) s->pages[i].colour = colour;
    n->isolated = 1;
    s->isolated++;
}

/* Large data (PSTORE_HUGE_BYTES * 2 on, so that a whole huge page lies inside)
 * of private memory get their mapping advised to use huge pages, small ones
 * not (a huge page for a 4 KiB datum would take 2 MiB): the advice changes
 * only where it was the other, so the mappings split no further. */
static void pstore_advise_huge(pstore_segment *s, uint32_t first, uint32_t count) {
    if (s->readable || s->shared || count == 0) return;
    uint8_t want = (size_t)count * s->page_size >= (size_t)PSTORE_HUGE_BYTES * 2;
    int differs = 0;
    for (uint32_t i = first; i < first + count && !differs; i++) differs = s->pages[i].huge != want;
    if (!differs) return;
    if (madvise(s->base + (size_t)first * s->page_size, (size_t)count * s->page_size, want ? MADV_HUGEPAGE : MADV_NOHUGEPAGE) != 0) {
        return; /* e.g. no transparent huge pages in this kernel: 4 KiB pages, only slower */
    }
    for (uint32_t i = first; i < first + count; i++) s->pages[i].huge = want;
}

int pstore_set_name(int seg, uint32_t first, uint32_t count,
                    const char *name, uint32_t name_len, char *err) {
    pstore_segment *s = pstore_segment_get(seg, err);
    if (s == NULL || pstore_check_range(s, first, count, err) != PSTORE_OK) return PSTORE_ERR;
    if (name_len > PSTORE_NAME_BYTES_MAX) {
        return pstore_set_error(err, "a name has at most %d bytes, not %u", PSTORE_NAME_BYTES_MAX, name_len);
    }

    /* Drop the old labels first: their slots may be the ones we reuse. */
    for (uint32_t i = first; i < first + count; i++) {
        pstore_name_unref(s, s->pages[i].name);
        s->pages[i].name = 0;
    }
    if (name_len == 0 || count == 0) return PSTORE_OK;

    uint32_t id = pstore_name_alloc(s);
    if (id == 0) {
        return pstore_set_error(err, "more than %u names in one segment", s->names_cap - 1);
    }
    pstore_name *n = &s->names[id];
    memcpy(n->bytes, name, name_len);
    n->len = (uint8_t)name_len;
    n->refs = count;
    n->next_free = 0;
    n->isolated = 0;
    for (uint32_t i = first; i < first + count; i++) s->pages[i].name = id;
    pstore_isolate(s, first, count, n);
    pstore_advise_huge(s, first, count);
    return PSTORE_OK;
}

#define PSTORE_EAGER_PAGES_MAX 16
#define PSTORE_SHADOW_PAGES_MAX 4

/* A small write hold of private memory opens its pages read-write at once
 * and keeps a copy of each: the release compares them (pstore_dirty_pages)
 * instead of taking the first write to each page as a fault, which costs a
 * signal and an mprotect (~5 us on a VM against ~1.5 for a page's copy and
 * comparison). Not for shared mappings: another process writes them. */
static int pstore_shadow_open(pstore_segment *s, uint32_t first, uint32_t count) {
    if (count > PSTORE_SHADOW_PAGES_MAX || s->shared || s->readable) return 0;
    if (s->shadows == NULL) {
        s->shadows = pstore_table_map((size_t)s->page_count * sizeof(uint8_t *));
        if (s->shadows == NULL) return 0;
    }
    for (uint32_t i = first; i < first + count; i++) {
        if (s->shadows[i] == NULL) s->shadows[i] = malloc(s->page_size);
        if (s->shadows[i] == NULL) {
            pstore_shadow_drop(s, first, count);
            return 0;
        }
    }
    return 1;
}

static void pstore_shadow_drop(pstore_segment *s, uint32_t first, uint32_t count) {
    if (s->shadows == NULL) return;
    for (uint32_t i = first; i < first + count; i++) {
        free(s->shadows[i]);
        s->shadows[i] = NULL;
    }
}

/* Whether page i is under a small write hold that keeps a copy (open read-write, compared at release). */
static int pstore_shadowed(const pstore_segment *s, uint32_t i) {
    return s->shadows != NULL && s->shadows[i] != NULL;
}

/* The pages now hold what the hold started from (its grant's bytes, zeros): copy them. */
static void pstore_shadow_take(pstore_segment *s, uint32_t first, uint32_t count) {
    if (s->shadows == NULL) return;
    for (uint32_t i = first; i < first + count; i++) {
        if (s->shadows[i] != NULL) memcpy(s->shadows[i], s->base + (size_t)i * s->page_size, s->page_size);
    }
}

static int pstore_prot_of(const pstore_segment *s, uint32_t i) {
    const pstore_page *p = &s->pages[i];
    if (p->mode == PSTORE_HOLD_READ) return PROT_READ;
    if (p->mode == PSTORE_HOLD_WRITE) {
        return p->dirty || pstore_shadowed(s, i) ? PROT_READ | PROT_WRITE : p->opened ? PROT_READ : PROT_NONE;
    }
    return PROT_NONE;
}

/* One mprotect per run of pages that want the same protection. */
static int pstore_apply_protection(pstore_segment *s, uint32_t first, uint32_t count, char *err) {
    uint32_t end = first + count;
    uint32_t run = first;

    while (run < end) {
        int prot = pstore_prot_of(s, run);
        uint32_t next = run + 1;
        while (next < end && pstore_prot_of(s, next) == prot) next++;
        if (mprotect(s->base + (size_t)run * s->page_size, (size_t)(next - run) * s->page_size, prot) != 0) {
            /* ENOMEM here means the mapping split into more pieces than
             * vm.max_map_count allows. */
            return pstore_set_error(err, "mprotect of pages [%u, %u): %s", run, next, strerror(errno));
        }
        run = next;
    }
    return PSTORE_OK;
}

int pstore_protect(int seg, uint32_t first, uint32_t count, int mode, char *err) {
    pstore_segment *s = pstore_segment_get(seg, err);
    if (s == NULL || pstore_check_range(s, first, count, err) != PSTORE_OK) return PSTORE_ERR;
    if (mode != PSTORE_HOLD_NONE && mode != PSTORE_HOLD_READ && mode != PSTORE_HOLD_WRITE) {
        return pstore_set_error(err, "unknown hold mode %d", mode);
    }

    /* A large write hold opens its pages as they are touched, so its release
     * closes only those (an mprotect costs ~40 ns a resident page: 0.6 ms for
     * 64 MiB); a small one opens them for reading at once, saving the faults. */
    uint8_t opened = mode == PSTORE_HOLD_WRITE && count <= PSTORE_EAGER_PAGES_MAX;
    if (mode != PSTORE_HOLD_WRITE || !pstore_shadow_open(s, first, count)) pstore_shadow_drop(s, first, count);
    for (uint32_t i = first; i < first + count; i++) {
        s->pages[i].mode = (uint8_t)mode;
        s->pages[i].dirty = 0;
        s->pages[i].opened = opened;
    }
    s->streak_end = 0;
    s->streak_pages = 0;
    if (s->readable) return PSTORE_OK; /* two mprotects a hold saved: the agent reads, never writes */
    if (pstore_apply_protection(s, first, count, err) != PSTORE_OK) return PSTORE_ERR;
    pstore_shadow_take(s, first, count);
    return PSTORE_OK;
}

/* Whether every page of the range is open read-write already (a small write hold's). */
static int pstore_all_writable(const pstore_segment *s, uint32_t first, uint32_t count) {
    if (s->readable) return 0;
    for (uint32_t i = first; i < first + count; i++) {
        if (pstore_prot_of(s, i) != (PROT_READ | PROT_WRITE)) return 0;
    }
    return 1;
}

/* Opens the pages whatever their hold, copies `bytes` (page i at bytes + i *
 * stride; zeros when NULL), then gives them back the protection their hold
 * implies; pages open read-write already are copied into with no mprotect. A
 * write that arrives this way is not the holder's, so it leaves the dirty bits
 * alone. */
static int pstore_fill_pages(pstore_segment *s, uint32_t first, uint32_t count, const uint8_t *bytes, uint32_t stride, char *err) {
    char *start = s->base + (size_t)first * s->page_size;
    size_t len = (size_t)count * s->page_size;
    int writable = pstore_all_writable(s, first, count);
    if (!writable && mprotect(start, len, PROT_READ | PROT_WRITE) != 0) {
        return pstore_set_error(err, "mprotect of pages [%u, %u): %s", first, first + count, strerror(errno));
    }
    if (bytes == NULL) memset(start, 0, len);
    for (uint32_t i = 0; bytes != NULL && i < count; i++) {
        memcpy(start + (size_t)i * s->page_size, bytes + (size_t)i * stride, s->page_size);
    }
    if (s->readable && mprotect(start, len, PROT_READ) != 0) {
        return pstore_set_error(err, "mprotect of pages [%u, %u): %s", first, first + count, strerror(errno));
    }
    if (s->readable) return PSTORE_OK;
    pstore_shadow_take(s, first, count); /* bytes fetched, not the holder's writes */
    return writable ? PSTORE_OK : pstore_apply_protection(s, first, count, err);
}

int pstore_write_pages(int seg, uint32_t first, uint32_t count, const uint8_t *bytes, uint32_t stride, char *err) {
    pstore_segment *s = pstore_segment_get(seg, err);
    if (s == NULL || pstore_check_range(s, first, count, err) != PSTORE_OK) return PSTORE_ERR;
    if (count == 0) return PSTORE_OK;
    if (stride < s->page_size) return pstore_set_error(err, "stride %u is less than a page (%u)", stride, s->page_size);

    return pstore_fill_pages(s, first, count, bytes, stride, err);
}

int pstore_zero_pages(int seg, uint32_t first, uint32_t count, char *err) {
    pstore_segment *s = pstore_segment_get(seg, err);
    if (s == NULL || pstore_check_range(s, first, count, err) != PSTORE_OK) return PSTORE_ERR;
    if (count == 0) return PSTORE_OK;

    if (s->shared) return pstore_fill_pages(s, first, count, NULL, 0, err);
    char *start = s->base + (size_t)first * s->page_size;
    size_t len = (size_t)count * s->page_size;
    /* Private anonymous memory: no copy, no fault now; the protection is unchanged. */
    if (madvise(start, len, MADV_DONTNEED) != 0) {
        return pstore_set_error(err, "madvise of pages [%u, %u): %s", first, first + count, strerror(errno));
    }
    pstore_shadow_take(s, first, count); /* a held page reads as zeros now: so does its copy */
    return PSTORE_OK;
}

int pstore_dirty_pages(int seg, uint32_t first, uint32_t count, uint32_t *out, char *err) {
    pstore_segment *s = pstore_segment_get(seg, err);
    if (s == NULL || pstore_check_range(s, first, count, err) != PSTORE_OK) return PSTORE_ERR;

    int found = 0;
    for (uint32_t i = first; i < first + count; i++) {
        pstore_page *p = &s->pages[i];
        if (!p->dirty && pstore_shadowed(s, i) &&
            memcmp(s->shadows[i], s->base + (size_t)i * s->page_size, s->page_size) != 0) {
            p->dirty = 1;
        }
        if (p->dirty) out[found++] = i;
    }
    return found;
}

int pstore_mark_dirty(int seg, const uint32_t *pages, uint32_t count, char *err) {
    pstore_segment *s = pstore_segment_get(seg, err);
    if (s == NULL) return PSTORE_ERR;
    for (uint32_t i = 0; i < count; i++) {
        if (pages[i] >= s->page_count || s->pages[pages[i]].mode != PSTORE_HOLD_WRITE) {
            return pstore_set_error(err, "page %u is not under a write hold", pages[i]);
        }
    }
    for (uint32_t i = 0; i < count; i++) s->pages[pages[i]].dirty = 1;
    return PSTORE_OK;
}

int pstore_die_with_parent(int expected_parent, char *err) {
    /* The kernel signals us when the thread that forked us exits. */
    if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0) {
        return pstore_set_error(err, "prctl(PR_SET_PDEATHSIG): %s", strerror(errno));
    }
    /* A parent that died before the prctl sends nothing: we were reparented
     * already, so act as if the signal had come. */
    if (expected_parent > 0 && getppid() != expected_parent) kill(getpid(), SIGTERM);
    return PSTORE_OK;
}

int pstore_lock_fd(int fd, char *err) {
    /* flock, not a pid in the file: a pid can be reused by any process, while
     * the kernel releases the lock the moment its holder dies. */
    if (flock(fd, LOCK_EX | LOCK_NB) == 0) return PSTORE_OK;
    if (errno == EWOULDBLOCK) return PSTORE_BUSY;
    return pstore_set_error(err, "flock: %s", strerror(errno));
}
