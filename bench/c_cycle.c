/* The write cycle through libpstore, timed, in blocks that bench/c_vs_ts.ts
 * asks for on stdin: each line "N" runs N cycles (p_access_readwrite, add 1,
 * p_release_readwrite) and prints, per cycle, "<cycle µs> <access µs>", then
 * DONE. A line "P N" instead runs N bare round trips of an 8-byte message to
 * the Bun echo server at $PSTORE_PING_SOCKET (the floor of any agent design)
 * and prints "<round trip µs>" per trip, then DONE. End of input: close and
 * exit. Usage: c_cycle NAME */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "pstore.h"

static double now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

static int ping_fd = -1;

static int ping(int n) {
    if (ping_fd < 0) {
        const char *path = getenv("PSTORE_PING_SOCKET");
        struct sockaddr_un addr = {.sun_family = AF_UNIX};
        if (path == NULL || strlen(path) >= sizeof(addr.sun_path)) return -1;
        strcpy(addr.sun_path, path);
        ping_fd = socket(AF_UNIX, SOCK_STREAM, 0);
        if (ping_fd < 0 || connect(ping_fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) return -1;
    }
    uint8_t out[8] = {4, 0, 0, 0, 1, 2, 3, 4}, in[8];
    for (int i = 0; i < n; i++) {
        double start = now_us();
        if (write(ping_fd, out, sizeof(out)) != (ssize_t)sizeof(out)) return -1;
        for (size_t got = 0; got < sizeof(in);) {
            ssize_t r = read(ping_fd, in + got, sizeof(in) - got);
            if (r <= 0) return -1;
            got += (size_t)r;
        }
        printf("%.1f\n", now_us() - start);
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 2) return 2;
    if (init_persistant() != 0) {
        fprintf(stderr, "init_persistant: %s\n", p_errmsg());
        return 1;
    }
    char line[64];
    while (fgets(line, sizeof(line), stdin) != NULL) {
        if (line[0] == 'P') {
            if (ping(atoi(line + 1)) != 0) {
                perror("ping");
                return 1;
            }
            printf("DONE\n");
            fflush(stdout);
            continue;
        }
        int n = atoi(line);
        for (int i = 0; i < n; i++) {
            double start = now_us();
            int *v = p_access_readwrite(argv[1]);
            if (v == NULL) {
                fprintf(stderr, "p_access_readwrite: %s\n", p_errmsg());
                return 1;
            }
            double granted = now_us();
            *v += 1;
            if (p_release_readwrite(v) != 0) {
                fprintf(stderr, "p_release_readwrite: %s\n", p_errmsg());
                return 1;
            }
            printf("%.1f %.1f\n", now_us() - start, granted - start);
        }
        printf("DONE\n");
        fflush(stdout);
    }
    return p_close() == 0 ? 0 : 1;
}
