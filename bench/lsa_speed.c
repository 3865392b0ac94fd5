// lsa_speed.c: seconds for ns_lsa_solve (maximize) on random uniform n x n
// cost matrices, best of 3, one line per size. bench/lsa_scipy.py times
// scipy.optimize.linear_sum_assignment on the same matrices and checks that
// both reach the same optimal total and the same assignment (an FNV-1a hash of
// row_to_col).
//
// The matrices come from a counter-based generator that the Python side
// repeats with numpy: entry k (row-major, from 0) of the matrix for size n is
// splitmix64(n + (k + 1) * 0x9e3779b97f4a7c15) >> 11, times 2^-53.
//
//   build/bench/lsa_speed [N ...]        (default: 512 2048)
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli/cli.h"
#include "merge/lsa.h"

static double uniform_at(uint64_t seed, uint64_t k) {
    uint64_t z = seed + (k + 1) * 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return (double)(z >> 11) * 0x1.0p-53;
}

int main(int argc, char **argv) {
    int64_t sizes[16] = {512, 2048};
    int n_sizes = 2;
    if (argc > 1) {
        n_sizes = 0;
        for (int a = 1; a < argc && n_sizes < 16; a++) {
            sizes[n_sizes] = strtoll(argv[a], NULL, 10);
            if (sizes[n_sizes] <= 0 || sizes[n_sizes] > 20000) {
                fprintf(stderr, "usage: lsa_speed [N ...] (0 < N <= 20000)\n");
                return 2;
            }
            n_sizes++;
        }
    }
    for (int s = 0; s < n_sizes; s++) {
        int64_t n = sizes[s];
        size_t count = (size_t)n * (size_t)n;
        double *cost = malloc(count * sizeof *cost);
        int64_t *assign = malloc((size_t)n * sizeof *assign);
        if (!cost || !assign) {
            fprintf(stderr, "lsa_speed: out of memory\n");
            return 1;
        }
        for (size_t k = 0; k < count; k++) cost[k] = uniform_at((uint64_t)n, k);
        double best = 1e300, total = 0;
        for (int rep = 0; rep < 3; rep++) {
            ns_err err;
            double t0 = ns_now();
            if (ns_lsa_solve(cost, n, n, 1, assign, &total, &err) < 0) {
                fprintf(stderr, "lsa_speed: %s\n", err.msg);
                return 1;
            }
            double t = ns_now() - t0;
            if (t < best) best = t;
        }
        // FNV-1a over the assignment, so the Python side can check it is the same one.
        uint64_t hash = 0xcbf29ce484222325ULL;
        for (int64_t i = 0; i < n; i++) hash = (hash ^ (uint64_t)assign[i]) * 0x100000001b3ULL;
        printf("lsa n=%" PRId64 " maximize: %.4f s (best of 3) total=%.17g assignment=%016" PRIx64
               "\n", n, best, total, hash);
        free(cost);
        free(assign);
    }
    return 0;
}
