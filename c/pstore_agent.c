/* pstore_agent.c -- libpstore's frames to and from `pstore agent` (the other
 * half is src/agent/protocol.ts), and finding or starting the agent. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "pstore.h"
#include "pstore_agent.h"

/* How long init_persistant waits for an agent it started to listen. */
#define AGENT_START_WAIT_MS 15000
/* An agent started by the library exits after this long with no program. */
#define AGENT_IDLE_EXIT_MS "30000"
/* agent.log is appended to by every agent started; past this it becomes agent.log.1 (one kept),
 * or a program run every minute grew it without bound. */
#define AGENT_LOG_BYTES_MAX (1024 * 1024)

int buf_room(buf *b, size_t more) {
    if (b->len + more <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + more) cap *= 2;
    uint8_t *bytes = realloc(b->bytes, cap);
    if (bytes == NULL) return -1;
    b->bytes = bytes;
    b->cap = cap;
    return 0;
}

void put(buf *b, const void *p, size_t n) {
    if (b->len == SIZE_MAX) return; /* out of memory already: the request will fail */
    if (buf_room(b, n) == 0) {
        memcpy(b->bytes + b->len, p, n);
        b->len += n;
    } else {
        b->len = SIZE_MAX; /* remembered: the request fails as out of memory */
    }
}
void put_u8(buf *b, uint8_t v) { put(b, &v, 1); }
void put_u32(buf *b, uint32_t v) { put(b, &v, 4); } /* little-endian hosts only (x86_64, aarch64) */
void put_u64(buf *b, uint64_t v) { put(b, &v, 8); }
void put_str(buf *b, const char *s) {
    size_t n = s ? strlen(s) : 0;
    uint16_t len = n > UINT16_MAX ? UINT16_MAX : (uint16_t)n;
    put(b, &len, 2);
    put(b, s, len);
}

void take(reader *r, void *out, size_t n) {
    if (r->left < n) {
        r->bad = 1;
        memset(out, 0, n);
        return;
    }
    memcpy(out, r->p, n);
    r->p += n;
    r->left -= n;
}
uint64_t take_u64(reader *r) { uint64_t v; take(r, &v, 8); return v; }
uint32_t take_u32(reader *r) { uint32_t v; take(r, &v, 4); return v; }
size_t take_str(reader *r, char *out, size_t cap) {
    uint16_t len;
    take(r, &len, 2);
    if (r->bad || len > r->left) { r->bad = 1; out[0] = 0; return 0; }
    size_t n = len < cap - 1 ? len : cap - 1;
    memcpy(out, r->p, n);
    out[n] = 0;
    r->p += len;
    r->left -= len;
    return n;
}

int write_all(int fd, const uint8_t *p, size_t n) {
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int read_all(int fd, uint8_t *p, size_t n) {
    while (n > 0) {
        ssize_t r = read(fd, p, n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

/* $PSTORE_AGENT_SOCKET, else $XDG_RUNTIME_DIR/pstore/agent.sock, else
 * /tmp/pstore-<uid>/agent.sock (src/agent/paths.ts says the same). */
int agent_socket_path(char *out, size_t cap) {
    const char *env = getenv("PSTORE_AGENT_SOCKET");
    const char *runtime = getenv("XDG_RUNTIME_DIR");
    int n;
    if (env && *env) {
        n = snprintf(out, cap, "%s", env);
    } else if (runtime && *runtime) {
        n = snprintf(out, cap, "%s/pstore/agent.sock", runtime);
    } else {
        n = snprintf(out, cap, "/tmp/pstore-%u/agent.sock", (unsigned)getuid());
    }
    /* A path that does not fit in sun_path could never be dialled. */
    return n > 0 && (size_t)n < cap && (size_t)n < sizeof(((struct sockaddr_un *)0)->sun_path) ? 0 : -1;
}

int agent_try_connect(const char *path) {
    struct sockaddr_un addr;
    memset(&addr, 0, sizeof(addr));
    addr.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof(addr.sun_path)) return -1;
    strcpy(addr.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

/* $PSTORE_BIN, else `pstore` next to this library, else `pstore` on PATH. */
static void agent_binary(char *out, size_t cap) {
    const char *env = getenv("PSTORE_BIN");
    if (env && *env) {
        snprintf(out, cap, "%s", env);
        return;
    }
    Dl_info info;
    if (dladdr((void *)init_persistant, &info) && info.dli_fname) {
        const char *slash = strrchr(info.dli_fname, '/');
        if (slash) {
            snprintf(out, cap, "%.*s/pstore", (int)(slash - info.dli_fname), info.dli_fname);
            if (access(out, X_OK) == 0) return;
        }
    }
    snprintf(out, cap, "pstore");
}

/* Starts `pstore agent` detached (double fork, own session: it outlives us
 * and is nobody's zombie), its output in agent.log next to the socket. */
int agent_start(const char *path, char *why, size_t why_cap) {
    char binary[PATH_MAX];
    char log[PATH_MAX + 16];
    agent_binary(binary, sizeof(binary));
    snprintf(log, sizeof(log), "%.*s/agent.log", (int)(strrchr(path, '/') ? strrchr(path, '/') - path : 1), path);
    /* The exec's outcome comes back through a close-on-exec pipe: EOF means it ran. */
    int report[2];
    if (pipe2(report, O_CLOEXEC) != 0) {
        snprintf(why, why_cap, "pipe: %s", strerror(errno));
        return -1;
    }
    pid_t child = fork();
    if (child < 0) {
        snprintf(why, why_cap, "fork: %s", strerror(errno));
        close(report[0]);
        close(report[1]);
        return -1;
    }
    if (child == 0) {
        setsid();
        if (fork() != 0) _exit(0);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        int null_fd = open("/dev/null", O_RDONLY);
        if (null_fd >= 0) dup2(null_fd, 0);
        char dir[PATH_MAX];
        snprintf(dir, sizeof(dir), "%s", path);
        char *slash = strrchr(dir, '/');
        if (slash && slash != dir) {
            *slash = 0;
            mkdir(dir, 0700);
        }
        struct stat log_stat;
        if (stat(log, &log_stat) == 0 && log_stat.st_size > AGENT_LOG_BYTES_MAX) {
            char previous[PATH_MAX + 32];
            snprintf(previous, sizeof(previous), "%s.1", log);
            rename(log, previous);
        }
        int log_fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (log_fd >= 0) {
            dup2(log_fd, 1);
            dup2(log_fd, 2);
        }
        char *argv[] = {binary, "agent", "--socket", (char *)path, "--idle-exit-ms", AGENT_IDLE_EXIT_MS, NULL};
        execvp(binary, argv);
        int failure = errno;
        if (write(report[1], &failure, sizeof(failure)) < 0) _exit(126);
        _exit(127);
    }
    close(report[1]);
    waitpid(child, NULL, 0);
    int exec_errno = 0;
    ssize_t got;
    do {
        got = read(report[0], &exec_errno, sizeof(exec_errno));
    } while (got < 0 && errno == EINTR);
    close(report[0]);
    if (got == (ssize_t)sizeof(exec_errno)) {
        snprintf(why, why_cap, "cannot run %s (set PSTORE_BIN, or put pstore next to libpstore.so or on PATH): %s", binary,
                 strerror(exec_errno));
        return -1;
    }
    struct timespec pause = {0, 20 * 1000 * 1000};
    for (int waited = 0; waited < AGENT_START_WAIT_MS; waited += 20) {
        int fd = agent_try_connect(path);
        if (fd >= 0) return fd;
        nanosleep(&pause, NULL);
    }
    snprintf(why, why_cap, "started %s agent --socket %s, but it did not listen within %d ms (see %s)", binary, path,
             AGENT_START_WAIT_MS, log);
    return -1;
}
