// sgemm.c: GFLOP/s of ns_sgemm (row-major, square n x n x n) on this machine,
// with whatever kernels and threads ns_blas_init chose. bench/run.sh runs it
// with and without netsmith's kernel selection, on 1 and 2 threads.
//
//   build/bench/sgemm [N] [REPEATS]
#include <stdio.h>
#include <stdlib.h>

#include "base/blas.h"
#include "cli/cli.h"

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 2048;
    int repeats = argc > 2 ? atoi(argv[2]) : 5;
    if (n <= 0 || repeats <= 0) {
        fprintf(stderr, "usage: sgemm [N] [REPEATS]\n");
        return 2;
    }
    size_t count = (size_t)n * (size_t)n;
    float *a = malloc(count * sizeof *a), *b = malloc(count * sizeof *b), *c = malloc(count * sizeof *c);
    if (!a || !b || !c) return 1;
    for (size_t i = 0; i < count; i++) {
        a[i] = (float)(i % 17) * 0.01f;
        b[i] = (float)(i % 13) * 0.02f;
        c[i] = 0;
    }
    ns_sgemm(0, 0, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n); // warm-up, and BLIS set-up
    double best = 0;
    for (int r = 0; r < repeats; r++) {
        double t0 = ns_now();
        ns_sgemm(0, 0, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        double gflops = 2.0 * n * (double)n * n / (ns_now() - t0) / 1e9;
        if (gflops > best) best = gflops;
    }
    printf("sgemm n=%d threads=%d kernels=%s: %.1f GFLOP/s (best of %d)\n", n, ns_threads(),
           ns_blas_kernels(), best, repeats);
    free(a);
    free(b);
    free(c);
    return 0;
}
