// engine_check.h: the small helpers of the engine tests (test_engine.c,
// test_engine_graphs.c): uniform random floats from a fixed counter-based
// stream (urand), and allocation that exits the test on failure (xcalloc,
// falloc: zeroed). Static inline functions and state: include it in one file
// of a test program.
#ifndef NS_TEST_ENGINE_CHECK_H
#define NS_TEST_ENGINE_CHECK_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "nn/ops.h" // ns_rand_u64

static uint64_t rng_counter;

// uniform in [lo, hi)
static inline float urand(float lo, float hi) {
    double u = (double)(ns_rand_u64(20240615, rng_counter++) >> 11) / 9007199254740992.0;
    return (float)(lo + (hi - lo) * u);
}

static inline void *xcalloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size);
    if (!p) {
        fprintf(stderr, "test_engine: out of memory\n");
        exit(1);
    }
    return p;
}

static inline float *falloc(int64_t n) { return xcalloc((size_t)n, sizeof(float)); }

#endif
