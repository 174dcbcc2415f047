/* The write cycle through libpstore, timed, in blocks that bench/c_vs_ts.ts
 * asks for on stdin: each line "N" runs N cycles (p_access_readwrite, add 1,
 * p_release_readwrite) and prints, per cycle, "<cycle µs> <access µs>", then
 * DONE. End of input: close and exit. Usage: c_cycle NAME */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "pstore.h"

static double now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

int main(int argc, char **argv) {
    if (argc != 2) return 2;
    if (init_persistant() != 0) {
        fprintf(stderr, "init_persistant: %s\n", p_errmsg());
        return 1;
    }
    int n;
    while (scanf("%d", &n) == 1) {
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
