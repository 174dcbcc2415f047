/* pstore.c -- libpstore: the specification's C API over the host's pstore agent.
 *
 * The agent (`pstore agent`, the TypeScript client) speaks pstore's protocol
 * to the servers; this library speaks a small request/reply protocol to the
 * agent over a Unix socket (src/agent/protocol.ts is its other half). Bytes
 * never cross the socket: the agent maps the program's segment from a file
 * under /dev/shm that the program maps too, so a grant written there by the
 * agent is in the program's memory. The program's own mapping starts with
 * no rights, and pstore_mem.c (compiled into this library too) opens a held
 * datum's pages, records first writes and kills a write under a read hold.
 * A write release sends the agent the list of pages written, which it ships.
 * An idle use the agent lends (pstore_lend.h: a cached grant) is taken and,
 * when nothing was written, returned through shared memory with no message.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "pstore.h"
#include "pstore_agent.h"
#include "pstore_lend.h"
#include "pstore_mem.h"

/* Keep in step with src/agent/protocol.ts. */
#define AGENT_PROTOCOL_VERSION 2
enum { OP_HELLO = 1, OP_CREATE = 2, OP_ACCESS = 3, OP_RELEASE = 4, OP_DELETE = 5 };
enum { MODE_READ = 1, MODE_WRITE = 2 };
/* The agent's longest reply is small; a request carries at most a page list. */
#define REPLY_BYTES_MAX 4096
#define MSG_BYTES 512

typedef struct hold {
    uint32_t first_page;
    uint32_t page_count;
    uint64_t offset;
    uint8_t mode;
    lend_use lent; /* lent.slot < 0: granted by the agent, not taken from the table */
} hold;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int agent_fd = -1;
static pid_t owner_pid; /* the process that connected: a forked child is not it */
static int seg = -1;
static char *base;
static lend_table *table; /* shared with the agent, after the segment in its file */
static unsigned long local_grants;
static uint64_t segment_size;
static uint32_t page_size;
static hold *holds;
static size_t hold_count, hold_cap;

static __thread int last_code;
static __thread char last_msg[MSG_BYTES];

static const char *const code_names[] = {
    "OK", "ENOENT", "EEXIST", "ENOSPC", "EINVAL", "EBUSY", "ETIMEDOUT", "ECANCELED",
    "EDEADLK", "ESESSION", "ESTALE", "EAUTH", "EUNAVAILABLE", "EPROTO", "ELIMIT", "ECLOSED",
};
#define CODE_COUNT ((int)(sizeof(code_names) / sizeof(code_names[0])))

static const char *const code_texts[] = {
    "no error", "no datum of that name", "a datum of that name exists already",
    "no free run of pages is large enough", "invalid argument", "the datum is held or waited on",
    "the access waited too long", "the access was cancelled", "this program already holds or waits for that datum",
    "the session expired: its holds are gone", "the pointer holds nothing", "wrong or missing secret",
    "no server or agent could be reached", "a peer broke the protocol", "a configured limit was hit",
    "not connected",
};

static int errno_of(int code) {
    static const int map[] = {0, ENOENT, EEXIST, ENOSPC, EINVAL, EBUSY, ETIMEDOUT, ECANCELED,
                              EDEADLK, ENOLINK, ESTALE, EACCES, ECONNREFUSED, EPROTO, E2BIG, ENOTCONN};
    return code > 0 && code < CODE_COUNT ? map[code] : EIO;
}

/* Records the error for p_errcode/p_errmsg and errno; returns -1. */
static int fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(int code, const char *fmt, ...) {
    va_list ap;
    int n = snprintf(last_msg, sizeof(last_msg), "%s: ", code_names[code]);
    va_start(ap, fmt);
    vsnprintf(last_msg + n, sizeof(last_msg) - (size_t)n, fmt, ap);
    va_end(ap);
    last_code = code;
    errno = errno_of(code);
    return -1;
}

int p_errcode(void) { return last_code; }
unsigned long p_local_grants(void) {
    pthread_mutex_lock(&lock);
    unsigned long n = local_grants;
    pthread_mutex_unlock(&lock);
    return n;
}
const char *p_errmsg(void) { return last_msg; }
const char *p_strerror(int code) {
    return code >= 0 && code < CODE_COUNT ? code_texts[code] : "unknown pstore error code";
}

static void drop_connection(void);

/* Sends the request (its first 4 bytes are room for the length), closes the
 * count pages from first (if any) while the agent works, and reads the reply
 * into out. Returns 0 with r over the reply's fields, or -1 (error set). */
static int call_closing(buf *request, uint8_t *out, reader *r, uint32_t first, uint32_t count) {
    if (request->len == SIZE_MAX) {
        if (count > 0) pstore_protect(seg, first, count, PSTORE_HOLD_NONE, NULL);
        return fail(P_ELIMIT, "out of memory for the request");
    }
    uint32_t body = (uint32_t)(request->len - 4);
    memcpy(request->bytes, &body, 4);
    uint32_t reply_len;
    int sent = write_all(agent_fd, request->bytes, request->len);
    if (count > 0) pstore_protect(seg, first, count, PSTORE_HOLD_NONE, NULL);
    if (sent != 0 || read_all(agent_fd, (uint8_t *)&reply_len, 4) != 0 ||
        reply_len > REPLY_BYTES_MAX || read_all(agent_fd, out, reply_len) != 0) {
        drop_connection();
        return fail(P_ECLOSED, "the pstore agent closed the connection (did it die?); call init_persistant() again");
    }
    r->p = out;
    r->left = reply_len;
    r->bad = 0;
    uint8_t code;
    take(r, &code, 1);
    char message[MSG_BYTES - 32];
    take_str(r, message, sizeof(message));
    if (r->bad) return fail(P_EPROTO, "a malformed reply from the agent");
    if (code != 0) {
        if (code >= CODE_COUNT) code = P_EPROTO;
        /* The agent's message starts with its code already ("ENOENT: ..."). */
        snprintf(last_msg, sizeof(last_msg), "%s", message);
        last_code = code;
        errno = errno_of(code);
        return -1;
    }
    return 0;
}

static int call(buf *request, uint8_t *out, reader *r) {
    return call_closing(request, out, r, 0, 0);
}

static void request_start(buf *b, uint8_t op) {
    b->len = 0;
    put_u32(b, 0);
    put_u8(b, op);
}

/* ---- holds ---- */

static hold *hold_of(const void *p) {
    if (base == NULL || (const char *)p < base || (const char *)p >= base + segment_size) return NULL;
    uint32_t page = (uint32_t)(((const char *)p - base) / page_size);
    for (size_t i = 0; i < hold_count; i++) {
        if (page >= holds[i].first_page && page - holds[i].first_page < holds[i].page_count) return &holds[i];
    }
    return NULL;
}

static void hold_remove(hold *h) {
    *h = holds[--hold_count];
}

/* Closes every hold's pages and forgets the agent. */
static void drop_connection(void) {
    for (size_t i = 0; i < hold_count; i++) {
        pstore_protect(seg, holds[i].first_page, holds[i].page_count, PSTORE_HOLD_NONE, NULL);
    }
    hold_count = 0;
    if (agent_fd >= 0) close(agent_fd);
    agent_fd = -1;
}

static void unmap_segment(void) {
    if (seg >= 0) pstore_segment_unmap(seg, NULL);
    seg = -1;
    base = NULL;
    if (table != NULL) munmap(table, LEND_TABLE_BYTES);
    table = NULL;
}

static int open_agent(void) {
    char path[PATH_MAX];
    if (agent_socket_path(path, sizeof(path)) != 0) return fail(P_EINVAL, "the agent's socket path ($PSTORE_AGENT_SOCKET, else under $XDG_RUNTIME_DIR) is too long: a Unix socket path is at most 107 bytes");
    int fd = agent_try_connect(path);
    if (fd < 0) {
        char why[PATH_MAX * 4 + 128];
        fd = agent_start(path, why, sizeof(why));
        if (fd < 0) return fail(P_EUNAVAILABLE, "no pstore agent at %s: %s", path, why);
    }
    agent_fd = fd;
    return 0;
}

/* ---- the API ---- */

static int connected(void) {
    if (agent_fd < 0) return fail(P_ECLOSED, "not connected: call init_persistant() first");
    if (owner_pid != getpid()) {
        return fail(P_ECLOSED, "this process is a fork of the one that called init_persistant(): call it again here");
    }
    return 0;
}

static int init_locked(void) {
    if (agent_fd >= 0 && owner_pid == getpid()) drop_connection();
    if (agent_fd >= 0) {
        /* A fork: the connection and the holds are the parent's; leave them to it. */
        close(agent_fd);
        agent_fd = -1;
        hold_count = 0;
    }
    unmap_segment();
    if (open_agent() != 0) return -1;
    owner_pid = getpid();
    local_grants = 0;

    buf b = {0};
    uint8_t reply[REPLY_BYTES_MAX];
    reader r;
    request_start(&b, OP_HELLO);
    put_u32(&b, AGENT_PROTOCOL_VERSION);
    put_str(&b, getenv("PSTORE_SERVERS"));
    put_str(&b, getenv("PSTORE_SECRET"));
    put_str(&b, getenv("PSTORE_TLS_CA"));
    int rc = call(&b, reply, &r);
    free(b.bytes);
    if (rc != 0) {
        drop_connection();
        return -1;
    }
    char path[PATH_MAX];
    segment_size = take_u64(&r);
    page_size = take_u32(&r);
    take_str(&r, path, sizeof(path));
    if (r.bad || page_size == 0 || segment_size % page_size != 0 || segment_size / page_size > UINT32_MAX) {
        drop_connection();
        return fail(P_EPROTO, "a malformed hello from the agent");
    }
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        int saved = errno;
        drop_connection();
        return fail(P_EUNAVAILABLE, "cannot open the agent's segment file %s: %s", path, strerror(saved));
    }
    unlink(path); /* the agent removes it too if we die first */
    char err[PSTORE_ERR_LEN] = "";
    seg = pstore_segment_map_fd((uint32_t)(segment_size / page_size), page_size, fd, err);
    if (seg < 0) {
        close(fd);
        drop_connection();
        return fail(P_ELIMIT, "%s", err);
    }
    base = pstore_segment_base(seg);
    void *shared = mmap(NULL, LEND_TABLE_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)segment_size);
    if (shared == MAP_FAILED) {
        int saved = errno;
        close(fd);
        drop_connection();
        unmap_segment();
        return fail(P_ELIMIT, "cannot map the agent's lending table: %s", strerror(saved));
    }
    close(fd);
    table = shared;
    return 0;
}

int init_persistant(void) {
    pthread_mutex_lock(&lock);
    int rc = init_locked();
    pthread_mutex_unlock(&lock);
    return rc;
}

static int name_ok(const char *name) {
    if (name == NULL) return fail(P_EINVAL, "the name is NULL");
    size_t n = strlen(name);
    if (n == 0 || n > PSTORE_NAME_BYTES_MAX) return fail(P_EINVAL, "a name has 1 to %d bytes, not %zu", PSTORE_NAME_BYTES_MAX, n);
    return 0;
}

/* One name-only request (create, delete). */
static int simple_call(uint8_t op, const char *name, uint64_t size) {
    pthread_mutex_lock(&lock);
    int rc = connected();
    if (rc == 0) rc = name_ok(name);
    if (rc == 0) {
        buf b = {0};
        uint8_t reply[REPLY_BYTES_MAX];
        reader r;
        request_start(&b, op);
        if (op == OP_CREATE) put_u64(&b, size);
        put_str(&b, name);
        rc = call(&b, reply, &r);
        free(b.bytes);
    }
    pthread_mutex_unlock(&lock);
    return rc;
}

int p_create(size_t size, const char *name) {
    return simple_call(OP_CREATE, name, size);
}

int p_delete(const char *name) {
    return simple_call(OP_DELETE, name, 0);
}

static void *access_locked(const char *name, uint8_t mode) {
    if (connected() != 0 || name_ok(name) != 0) return NULL;
    if (hold_count == hold_cap) {
        size_t cap = hold_cap ? hold_cap * 2 : 16;
        hold *grown = realloc(holds, cap * sizeof(hold));
        if (grown == NULL) return fail(P_ELIMIT, "out of memory for the holds"), NULL;
        holds = grown;
        hold_cap = cap;
    }
    lend_use lent = {.slot = -1};
    uint64_t offset, size;
    if (lend_take(table, name, mode, &lent) == 0) {
        /* The agent's idle use of a cached grant: ours with no message. */
        local_grants++;
        offset = lent.offset;
        size = lent.size;
    } else {
        buf b = {0};
        uint8_t reply[REPLY_BYTES_MAX];
        reader r;
        request_start(&b, OP_ACCESS);
        put_u8(&b, mode);
        put_str(&b, name);
        int rc = call(&b, reply, &r);
        free(b.bytes);
        if (rc != 0) return NULL;
        offset = take_u64(&r);
        size = take_u64(&r);
        uint32_t slot = take_u32(&r);
        lent.word = take_u32(&r);
        lent.slot = slot < LEND_SLOTS ? (int)slot : -1;
        if (r.bad) size = 0;
    }
    if (offset % page_size != 0 || size == 0 || size > segment_size || offset > segment_size - size) {
        /* The agent holds it for us still: the connection's end frees it. */
        drop_connection();
        fail(P_EPROTO, "a malformed grant from the agent");
        return NULL;
    }
    hold h = {(uint32_t)(offset / page_size), (uint32_t)((size + page_size - 1) / page_size), offset, mode, lent};
    char err[PSTORE_ERR_LEN] = "";
    if (pstore_set_name(seg, h.first_page, h.page_count, name, (uint32_t)strlen(name), err) != PSTORE_OK ||
        pstore_protect(seg, h.first_page, h.page_count, mode == MODE_READ ? PSTORE_HOLD_READ : PSTORE_HOLD_WRITE, err) != PSTORE_OK) {
        /* The agent holds it for us still: the connection's end frees it. */
        drop_connection();
        fail(P_ELIMIT, "%s", err);
        return NULL;
    }
    holds[hold_count++] = h;
    return base + offset;
}

void *p_access_read(const char *name) {
    pthread_mutex_lock(&lock);
    void *p = access_locked(name, MODE_READ);
    pthread_mutex_unlock(&lock);
    return p;
}

void *p_access_readwrite(const char *name) {
    pthread_mutex_lock(&lock);
    void *p = access_locked(name, MODE_WRITE);
    pthread_mutex_unlock(&lock);
    return p;
}

static int release_locked(void *p, uint8_t mode) {
    if (connected() != 0) return -1;
    hold *h = hold_of(p);
    if (h == NULL) return fail(P_ESTALE, "this pointer holds nothing (already released?)");
    /* As free(): the pointer the access returned, not one inside the datum (a mistake to report, not to guess at). */
    if ((const char *)p != base + h->offset) {
        return fail(P_EINVAL, "the pointer is %lu byte(s) into a held datum: release the pointer p_access returned",
                    (unsigned long)((const char *)p - (base + h->offset)));
    }
    if (h->mode != mode) {
        return fail(P_EINVAL, "the datum is held for %s: use %s", h->mode == MODE_READ ? "reading" : "writing",
                    h->mode == MODE_READ ? "p_release_read" : "p_release_readwrite");
    }
    buf b = {0};
    request_start(&b, OP_RELEASE);
    put_u8(&b, mode);
    put_u64(&b, h->offset);
    int dirty = 0;
    if (mode == MODE_WRITE) {
        uint32_t *pages = malloc((size_t)h->page_count * sizeof(uint32_t));
        dirty = pages ? pstore_dirty_pages(seg, h->first_page, h->page_count, pages, NULL) : -1;
        if (dirty < 0) {
            free(pages);
            free(b.bytes);
            return fail(P_ELIMIT, "out of memory for the page list");
        }
        put_u32(&b, (uint32_t)dirty);
        put(&b, pages, (size_t)dirty * sizeof(uint32_t));
        free(pages);
    }
    lend_use lent = h->lent;
    uint32_t first = h->first_page, count = h->page_count;
    hold_remove(h);
    if (lent.slot >= 0 && dirty == 0) {
        /* A lent use that shipped nothing goes back idle with no message, closed
         * first; if a recall came meanwhile, the agent is told (it gives the grant back). */
        pstore_protect(seg, first, count, PSTORE_HOLD_NONE, NULL);
        if (lend_return(table, &lent) == 0) {
            free(b.bytes);
            return 0;
        }
    }
    uint8_t reply[REPLY_BYTES_MAX];
    reader r;
    /* Closed while the agent ships, as the TypeScript client does: the page
     * list is taken, and a write from now on is a write outside a hold. */
    int rc = call_closing(&b, reply, &r, first, count);
    free(b.bytes);
    return rc;
}

int p_release_read(void *p) {
    pthread_mutex_lock(&lock);
    int rc = release_locked(p, MODE_READ);
    pthread_mutex_unlock(&lock);
    return rc;
}

int p_release_readwrite(void *p) {
    pthread_mutex_lock(&lock);
    int rc = release_locked(p, MODE_WRITE);
    pthread_mutex_unlock(&lock);
    return rc;
}

int p_close(void) {
    pthread_mutex_lock(&lock);
    int rc = 0;
    if (agent_fd < 0) {
        rc = fail(P_ECLOSED, "not connected");
    } else if (owner_pid != getpid()) {
        close(agent_fd); /* the parent's connection stays open in the parent */
        agent_fd = -1;
        hold_count = 0;
        unmap_segment();
    } else {
        /* Closing the connection ends the session: the agent frees our holds at once. */
        drop_connection();
        unmap_segment();
    }
    pthread_mutex_unlock(&lock);
    return rc;
}
