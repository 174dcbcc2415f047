/* pstore_agent.h -- libpstore's private half: frames to and from `pstore agent`,
 * and finding or starting the agent. Nothing here is exported from
 * libpstore.so (built with -fvisibility=hidden; pstore.h's API is). */
#ifndef PSTORE_AGENT_H
#define PSTORE_AGENT_H

#include <stddef.h>
#include <stdint.h>

typedef struct buf {
    uint8_t *bytes;
    size_t len, cap; /* len == SIZE_MAX: out of memory while building */
} buf;

int buf_room(buf *b, size_t more);
void put(buf *b, const void *p, size_t n);
void put_u8(buf *b, uint8_t v);
void put_u32(buf *b, uint32_t v);
void put_u64(buf *b, uint64_t v);
void put_str(buf *b, const char *s);

typedef struct reader {
    const uint8_t *p;
    size_t left;
    int bad; /* read past the end: every later take gives zeros */
} reader;

void take(reader *r, void *out, size_t n);
uint64_t take_u64(reader *r);
uint32_t take_u32(reader *r);
size_t take_str(reader *r, char *out, size_t cap);

int write_all(int fd, const uint8_t *p, size_t n);
int read_all(int fd, uint8_t *p, size_t n);

/* The agent's socket path (see docs/c.md); -1 if it does not fit. */
int agent_socket_path(char *out, size_t cap);
/* A connected socket, or -1 with errno. */
int agent_try_connect(const char *path);
/* Starts `pstore agent` detached and returns a connection to it, or -1 with why. */
int agent_start(const char *path, char *why, size_t why_cap);

#endif
