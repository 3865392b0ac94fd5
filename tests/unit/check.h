// check.h: a tiny TAP producer for the C unit tests. Each CHECK prints
// "ok N - what" or "not ok N - what" with the file, line and detail; tests/run.sh
// counts those lines. main() ends with `return check_done();`, which is non-zero
// when anything failed, so a failing test can never look like a pass.
#ifndef NS_CHECK_H
#define NS_CHECK_H

#include <math.h>
#include <stdio.h>
#include <time.h>

static int check_count, check_failed;

#define CHECK(cond, ...)                                                        \
    do {                                                                        \
        ++check_count;                                                          \
        if (cond) {                                                             \
            printf("ok %d - ", check_count);                                    \
        } else {                                                                \
            ++check_failed;                                                     \
            printf("not ok %d - %s:%d: ", check_count, __FILE__, __LINE__);     \
        }                                                                       \
        printf(__VA_ARGS__);                                                    \
        printf("\n");                                                           \
        fflush(stdout);                                                         \
    } while (0)

// A test that cannot run here (missing optional data): counted as skipped.
#define SKIP(...)                                                               \
    do {                                                                        \
        ++check_count;                                                          \
        printf("ok %d # skip ", check_count);                                   \
        printf(__VA_ARGS__);                                                    \
        printf("\n");                                                           \
    } while (0)

// Largest |a-b| / (|b| + atol-ish floor) over n floats, and the max abs diff.
static inline double check_maxdiff(const float *a, const float *b, long n, double *max_abs) {
    double worst = 0, mabs = 0;
    for (long i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        double rel = d / (fabs((double)b[i]) + 1e-6);
        if (d > mabs) mabs = d;
        if (rel > worst && d > 1e-7) worst = rel;
    }
    if (max_abs) *max_abs = mabs;
    return worst;
}

// Seconds on the monotonic clock: a test's running time, printed as a comment.
static inline double check_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static inline int check_done(void) {
    printf("1..%d\n", check_count);
    return check_failed ? 1 : 0;
}

#endif
