/* pstore_fault.c -- the SIGSEGV handler that enforces the holds of pstore_mem.c:
 * first reads and writes of write-held pages open them (by runs), any other
 * fault on a segment says which datum and which hold, then dies by the signal. */

#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include "pstore_mem_internal.h"

static struct sigaction previous_action;
static int handler_installed;
static volatile uint32_t faults_upgraded;
static volatile uint32_t faults_forwarded;
static volatile uint32_t faults_widened;
static volatile uint32_t faults_opened;

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
        pstore_segment *s = &pstore_segments[i];
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
 * Outside the handler: installing it, and its counters.
 * --------------------------------------------------------------------- */

/* Installs pstore_on_fault once, saving whatever was there: it must run
 * after JavaScriptCore installed its own, which happens at start-up. */
int pstore_install_handler(char *err) {
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
