/* pstore_mem.c -- mapped segments, per-page holds, and the SIGSEGV handler that enforces them. */

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
#include <ucontext.h>
#include <unistd.h>

#include "pstore_mem.h"

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

static pstore_segment segments[PSTORE_SEGMENTS_MAX];
static struct sigaction previous_action;
static int handler_installed;
static volatile uint32_t faults_upgraded;
static volatile uint32_t faults_forwarded;
static volatile uint32_t faults_widened;
static volatile uint32_t faults_opened;

static int pstore_set_error(char *err, const char *fmt, ...) {
    va_list ap;

    if (err == NULL) return PSTORE_ERR;
    va_start(ap, fmt);
    vsnprintf(err, PSTORE_ERR_LEN, fmt, ap);
    va_end(ap);
    return PSTORE_ERR;
}

/* ------------------------------------------------------------------------
 * The fault handler. Everything from here to pstore_on_fault() runs in signal
 * context and is async-signal-safe: no malloc, no stdio, no locks, no errno
 * left changed, only write(2), mprotect(2), sigaction(2) and raise(3).
 * --------------------------------------------------------------------- */

typedef struct pstore_line {
    char bytes[512]; /* the longest line: fixed words + a 255-byte name + two numbers */
    size_t len;
} pstore_line;

static void pstore_line_str(pstore_line *line, const char *s, size_t len) {
    while (len > 0 && line->len < sizeof(line->bytes)) {
        line->bytes[line->len++] = *s++;
        len--;
    }
}

static void pstore_line_cstr(pstore_line *line, const char *s) {
    pstore_line_str(line, s, strlen(s));
}

/* Decimal by hand: snprintf is not async-signal-safe. */
static void pstore_line_u64(pstore_line *line, uint64_t n) {
    char digits[20];
    size_t count = 0;

    do {
        digits[count++] = (char)('0' + n % 10);
        n /= 10;
    } while (n > 0);
    while (count > 0) pstore_line_str(line, &digits[--count], 1);
}

static void pstore_line_flush(const pstore_line *line) {
    size_t done = 0;

    while (done < line->len) {
        ssize_t n = write(STDERR_FILENO, line->bytes + done, line->len - done);
        if (n > 0) {
            done += (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else {
            return; /* stderr is gone: nothing better to do, we die anyway */
        }
    }
}

static pstore_segment *pstore_segment_of(const char *addr) {
    for (int i = 0; i < PSTORE_SEGMENTS_MAX; i++) {
        pstore_segment *s = &segments[i];
        if (s->base != NULL && addr >= s->base && addr < s->base + s->size) return s;
    }
    return NULL;
}

/* 1 write, 0 read, -1 unknown. On x86_64 the kernel hands us the page-fault
 * error code, whose bit 1 is set for a write. */
static int pstore_fault_is_write(void *context) {
#if defined(__x86_64__)
    const ucontext_t *uc = context;
    return (uc->uc_mcontext.gregs[REG_ERR] & 2) != 0;
#else
    (void)context;
    return -1;
#endif
}

static void pstore_line_verb(pstore_line *line, int is_write) {
    if (is_write == 1) {
        pstore_line_cstr(line, "write to ");
    } else if (is_write == 0) {
        pstore_line_cstr(line, "read of ");
    } else {
        pstore_line_cstr(line, "access to ");
    }
}

/* Writes the line that tells the user which datum and which hold:
 *   pstore: write to "compteur" under a read hold (page 3)
 *   pstore: read of "compteur" with no hold (page 3)
 *   pstore: read of unallocated page 3 of the segment */
static void pstore_report(const pstore_segment *s, uint32_t page, int is_write) {
    const pstore_page *p = &s->pages[page];
    pstore_line line;

    line.len = 0;
    /* A read-held page is readable, so its fault is a write even when the
     * architecture does not say. */
    if (p->mode == PSTORE_HOLD_READ) is_write = 1;
    pstore_line_cstr(&line, "pstore: ");
    pstore_line_verb(&line, is_write);
    if (p->name == 0) {
        pstore_line_cstr(&line, "unallocated page ");
        pstore_line_u64(&line, page);
        pstore_line_cstr(&line, " of the segment");
        if (p->mode == PSTORE_HOLD_READ) pstore_line_cstr(&line, " under a read hold");
        if (p->mode == PSTORE_HOLD_WRITE) pstore_line_cstr(&line, " under a write hold");
    } else {
        const pstore_name *n = &s->names[p->name];
        pstore_line_cstr(&line, "\"");
        pstore_line_str(&line, n->bytes, n->len);
        pstore_line_cstr(&line, "\"");
        if (p->mode == PSTORE_HOLD_NONE) pstore_line_cstr(&line, " with no hold");
        if (p->mode == PSTORE_HOLD_READ) pstore_line_cstr(&line, " under a read hold");
        if (p->mode == PSTORE_HOLD_WRITE) pstore_line_cstr(&line, " under a write hold");
        pstore_line_cstr(&line, " (page ");
        pstore_line_u64(&line, page);
        pstore_line_cstr(&line, ")");
    }
    pstore_line_cstr(&line, "\n");
    pstore_line_flush(&line);
}

/* Dies by the signal with its default action, so the exit status says
 * SIGSEGV and no other handler (Bun's crash reporter) gets in the way. The
 * signal is blocked while we run: raise() leaves it pending, and it is
 * delivered, fatally, the moment the handler returns. */
static void pstore_die(int sig) {
    struct sigaction dfl;

    memset(&dfl, 0, sizeof(dfl));
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(sig, &dfl, NULL);
    raise(sig);
}

/* Hands a fault that is not ours to the handler installed before us, as the
 * kernel would have: JavaScriptCore turns some faults into VM traps and
 * WebAssembly bounds errors, and they must keep working. */
static void pstore_forward(int sig, siginfo_t *info, void *context) {
    faults_forwarded++;
    if ((previous_action.sa_flags & SA_SIGINFO) && previous_action.sa_sigaction != NULL) {
        previous_action.sa_sigaction(sig, info, context);
    } else if (previous_action.sa_handler == SIG_DFL || previous_action.sa_handler == SIG_IGN) {
        /* A real fault cannot be ignored: SIG_IGN would spin on it. */
        pstore_die(sig);
    } else {
        previous_action.sa_handler(sig);
    }
}

/* Scattered first writes split the mapping one page at a time; past
 * vm.max_map_count (65530 by default) mprotect fails with ENOMEM. Then open
 * the whole run of write-held pages around the page with one mprotect, which
 * merges its mappings instead of splitting them. Every page of the run counts
 * as dirty: the release ships pages that did not change, but loses no write. */
static int pstore_open_write_run(pstore_segment *s, uint32_t page) {
    uint32_t first = page;
    uint32_t end = page + 1;

    while (first > 0 && s->pages[first - 1].mode == PSTORE_HOLD_WRITE) first--;
    while (end < s->page_count && s->pages[end].mode == PSTORE_HOLD_WRITE) end++;
    if (mprotect(s->base + (size_t)first * s->page_size, (size_t)(end - first) * s->page_size,
                 PROT_READ | PROT_WRITE) != 0) {
        return PSTORE_ERR;
    }
    for (uint32_t i = first; i < end; i++) s->pages[i].dirty = 1;
    faults_widened++;
    return PSTORE_OK;
}

/* How many pages, from `page`, a first write (or a first read) opens: one,
 * unless it continues a streak of PSTORE_STREAK_PAGES_MIN pages or more touched
 * in order (a whole rewrite); then as many as the streak has (doubling it), at
 * most PSTORE_STREAK_RUN_MAX (PSTORE_STREAK_RUN_MAX_HUGE where huge pages are
 * advised), and only write-held pages of the same datum not yet written (for a
 * read: not yet opened either). A rewrite of 64 MiB takes ~30 faults instead of
 * 16384; pages written ahead count as dirty, so a sequential write that stops
 * early ships at most one run of unchanged pages, never loses one. Where huge
 * pages are advised, a run covers whole huge pages once it reaches a boundary
 * and stops at the last boundary it crosses: mprotect then changes whole 2 MiB
 * entries instead of splitting them into 4 KiB ones (PSTORE_HUGE_BYTES). */
#define PSTORE_STREAK_PAGES_MIN 16
#define PSTORE_STREAK_RUN_MAX 256
#define PSTORE_STREAK_RUN_MAX_HUGE 2048
static uint32_t pstore_run_ahead(const pstore_segment *s, uint32_t page, int for_write) {
    if (page != s->streak_end || s->streak_pages < PSTORE_STREAK_PAGES_MIN) return 1;
    uint32_t per_huge = s->pages[page].huge ? PSTORE_HUGE_BYTES / s->page_size : 0;
    uint32_t run_max = per_huge > 1 ? PSTORE_STREAK_RUN_MAX_HUGE : PSTORE_STREAK_RUN_MAX;
    uint32_t want = s->streak_pages < run_max ? s->streak_pages : run_max;
    /* Pages counted from the address space's start, where huge pages are aligned. */
    uintptr_t absolute = (uintptr_t)s->base / s->page_size + page;
    if (per_huge > 1 && absolute % per_huge == 0) want = (want + per_huge - 1) / per_huge * per_huge;
    uint32_t end = page + 1;
    while (end < s->page_count && end - page < want && s->pages[end].mode == PSTORE_HOLD_WRITE &&
           !s->pages[end].dirty && (for_write || !s->pages[end].opened) &&
           s->pages[end].name == s->pages[page].name) {
        end++;
    }
    if (per_huge > 1) {
        uintptr_t boundary = (absolute + (end - page)) / per_huge * per_huge;
        if (boundary > absolute) end = page + (uint32_t)(boundary - absolute);
    }
    return end - page;
}

static void pstore_streak(pstore_segment *s, uint32_t page, uint32_t count) {
    s->streak_pages = page == s->streak_end ? s->streak_pages + count : count;
    s->streak_end = page + count;
}

static void pstore_cannot_open(uint32_t page, const char *what) {
    pstore_line line;
    line.len = 0;
    pstore_line_cstr(&line, "pstore: cannot make page ");
    pstore_line_u64(&line, page);
    pstore_line_cstr(&line, what);
    pstore_line_cstr(&line, " (mprotect failed: too many mappings? see vm.max_map_count)\n");
    pstore_line_flush(&line);
}

/* A first read of a write-held page: open it (with the run ahead) read-only,
 * so that only the pages touched under the hold need closing at release. */
static int pstore_first_read(pstore_segment *s, uint32_t page) {
    uint32_t count = pstore_run_ahead(s, page, 0);

    if (mprotect(s->base + (size_t)page * s->page_size, (size_t)count * s->page_size, PROT_READ) == 0) {
        for (uint32_t i = page; i < page + count; i++) s->pages[i].opened = 1;
        pstore_streak(s, page, count);
    } else if (errno != ENOMEM || pstore_open_write_run(s, page) != PSTORE_OK) {
        pstore_cannot_open(page, " readable");
        return PSTORE_ERR;
    }
    faults_opened++;
    return PSTORE_OK;
}

/* The first write to a write-held page: mark it dirty (with the run ahead,
 * see above) and let the write through. mprotect(2) is not on POSIX's
 * async-signal-safe list, but on Linux it is a bare system call with no
 * user-space state; GCs and libsigsegv rely on it the same way. */
static int pstore_first_write(pstore_segment *s, uint32_t page) {
    uint32_t count = pstore_run_ahead(s, page, 1);

    if (mprotect(s->base + (size_t)page * s->page_size, (size_t)count * s->page_size, PROT_READ | PROT_WRITE) == 0) {
        for (uint32_t i = page; i < page + count; i++) s->pages[i].dirty = 1;
        pstore_streak(s, page, count);
    } else if (errno != ENOMEM || pstore_open_write_run(s, page) != PSTORE_OK) {
        pstore_cannot_open(page, " writable");
        return PSTORE_ERR;
    }
    faults_upgraded++;
    return PSTORE_OK;
}

static void pstore_on_fault(int sig, siginfo_t *info, void *context) {
    int saved_errno = errno;
    pstore_segment *s = NULL;

    /* si_code <= 0 means kill()/raise() sent it: si_addr is meaningless then. */
    if (info->si_code > 0) s = pstore_segment_of(info->si_addr);
    if (s == NULL) {
        pstore_forward(sig, info, context);
    } else {
        uint32_t page = (uint32_t)(((char *)info->si_addr - s->base) / s->page_size);
        const pstore_page *p = &s->pages[page];
        if (p->mode == PSTORE_HOLD_WRITE && !p->dirty) {
            /* Returning restarts the access, which now succeeds. A fault on
             * an opened (readable) page is a write; where the architecture
             * does not tell, a write is first opened for reading, then faults
             * again as a write. */
            int is_write = p->opened || pstore_fault_is_write(context) == 1;
            if ((is_write ? pstore_first_write(s, page) : pstore_first_read(s, page)) != PSTORE_OK) pstore_die(sig);
        } else {
            pstore_report(s, page, pstore_fault_is_write(context));
            pstore_die(sig);
        }
    }
    errno = saved_errno;
}

/* ------------------------------------------------------------------------
 * Outside the handler: ordinary code, called from JavaScript through FFI.
 * --------------------------------------------------------------------- */

/* Installs pstore_on_fault once, saving whatever was there: it must run
 * after JavaScriptCore installed its own, which happens at start-up. */
static int pstore_install_handler(char *err) {
    struct sigaction act;

    if (handler_installed) return PSTORE_OK;
    memset(&act, 0, sizeof(act));
    act.sa_sigaction = pstore_on_fault;
    /* SA_ONSTACK: if a thread set up an alternate stack (for stack
     * overflows), the forwarded handler expects to run on it. */
    act.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&act.sa_mask);
    if (sigaction(SIGSEGV, &act, &previous_action) != 0) {
        return pstore_set_error(err, "sigaction(SIGSEGV): %s", strerror(errno));
    }
    handler_installed = 1;
    return PSTORE_OK;
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
        if (segments[seg].base == NULL && segments[seg].pages == NULL) break;
    }
    if (seg == PSTORE_SEGMENTS_MAX) {
        return pstore_set_error(err, "all %d segments of this process are mapped", PSTORE_SEGMENTS_MAX);
    }
    if (pstore_install_handler(err) != PSTORE_OK) return PSTORE_ERR;

    pstore_segment *s = &segments[seg];
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
    if (seg < 0 || seg >= PSTORE_SEGMENTS_MAX || segments[seg].base == NULL) {
        pstore_set_error(err, "segment %d is not mapped", seg);
        return NULL;
    }
    return &segments[seg];
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
    return segments[seg].base;
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

/* Opens the pages whatever their hold, copies `bytes` (page i at bytes + i *
 * stride; zeros when NULL), then gives them back the protection their hold
 * implies. A write that arrives this way is not the holder's, so it leaves the
 * dirty bits alone. */
static int pstore_fill_pages(pstore_segment *s, uint32_t first, uint32_t count, const uint8_t *bytes, uint32_t stride, char *err) {
    char *start = s->base + (size_t)first * s->page_size;
    size_t len = (size_t)count * s->page_size;
    if (mprotect(start, len, PROT_READ | PROT_WRITE) != 0) {
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
    return pstore_apply_protection(s, first, count, err);
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

uint32_t pstore_faults_upgraded(void) {
    return faults_upgraded;
}

uint32_t pstore_faults_forwarded(void) {
    return faults_forwarded;
}

uint32_t pstore_faults_widened(void) {
    return faults_widened;
}

uint32_t pstore_faults_opened(void) {
    return faults_opened;
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
