// fd_check.h: the finite-difference gradient checks and small helpers of the
// op tests (test_ops.c, test_ops_conv.c, test_ops_attn.c): random buffers,
// gradient buffers starting at ACC (backward must accumulate), fd_check
// comparing backward with central differences of L = sum(out * R), and a
// per-op summary of the worst error (fd_summary). Static (inline) functions
// and state: include it in one file of a test program.
#ifndef NS_TEST_FD_CHECK_H
#define NS_TEST_FD_CHECK_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "nn/ops.h"

#define FD_H 1e-2f
#define FD_TOL 1e-2
#define FD_FLOOR 1e-2
#define ACC 0.25f

// ----------------------------------------------------------------------------
// helpers

static uint64_t rng_counter;

// uniform in [lo, hi)
static inline float urand(float lo, float hi) {
    double u = (double)(ns_rand_u64(20240601, rng_counter++) >> 11) / 9007199254740992.0;
    return (float)(lo + (hi - lo) * u);
}

static inline float *falloc(int64_t n) {
    float *p = calloc((size_t)(n > 0 ? n : 1), sizeof(float));
    if (!p) {
        fprintf(stderr, "test_ops: out of memory\n");
        exit(1);
    }
    return p;
}

static inline float *frand(int64_t n, float lo, float hi) {
    float *p = falloc(n);
    for (int64_t i = 0; i < n; i++) p[i] = urand(lo, hi);
    return p;
}

// Random values with |x| >= gap, for ops with a kink at 0.
static inline float *frand_away(int64_t n, float gap) {
    float *p = falloc(n);
    for (int64_t i = 0; i < n; i++) {
        float v = urand(gap, 1.0f);
        p[i] = urand(0, 1) < 0.5f ? -v : v;
    }
    return p;
}

// A gradient buffer holding ACC, so that backward must accumulate.
static inline float *gbuf(int64_t n) {
    float *p = falloc(n);
    for (int64_t i = 0; i < n; i++) p[i] = ACC;
    return p;
}

static inline void unacc(float *g, int64_t n) {
    for (int64_t i = 0; i < n; i++) g[i] -= ACC;
}

typedef struct fd_problem {
    void (*fwd)(void *ctx); // recomputes *out from the inputs held in ctx
    void *ctx;
    const float *out;       // (nout)
    int64_t nout;
    const float *R;         // (nout)
} fd_problem;

static inline double fd_loss(const fd_problem *p) {
    p->fwd(p->ctx);
    double s = 0;
    for (int64_t i = 0; i < p->nout; i++) s += (double)p->out[i] * p->R[i];
    return s;
}

static inline double fd_max_rel(const fd_problem *p, float *x, int64_t n, const float *grad) {
    double worst = 0;
    for (int64_t i = 0; i < n; i++) {
        float x0 = x[i], xp = x0 + FD_H, xm = x0 - FD_H;
        x[i] = xp;
        double lp = fd_loss(p);
        x[i] = xm;
        double lm = fd_loss(p);
        x[i] = x0;
        double num = (lp - lm) / ((double)xp - (double)xm), a = grad[i];
        double den = fmax(fmax(fabs(num), fabs(a)), FD_FLOOR);
        double rel = fabs(num - a) / den;
        if (!(rel <= worst)) worst = rel; // NaN sticks
    }
    p->fwd(p->ctx);
    return worst;
}

// worst error per op, for the summary
#define MAX_OPS 64
static struct {
    const char *op;
    double err;
} summary[MAX_OPS];
static int nsummary;

static inline void note(const char *op, double err) {
    for (int i = 0; i < nsummary; i++) {
        if (!strcmp(summary[i].op, op)) {
            if (!(err <= summary[i].err)) summary[i].err = err;
            return;
        }
    }
    if (nsummary < MAX_OPS) {
        summary[nsummary].op = op;
        summary[nsummary].err = err;
        nsummary++;
    }
}

static inline void fd_report(const char *op, const char *what, double err) {
    note(op, err);
    CHECK(err < FD_TOL, "%s: d%s matches finite differences (max rel err %.2e)", op, what, err);
}

static inline void fd_check(const char *op, const char *what, const fd_problem *p, float *x,
                     int64_t n, float *grad) {
    unacc(grad, n);
    fd_report(op, what, fd_max_rel(p, x, n, grad));
}

static inline void check_close(const char *what, const float *got, const float *want, int64_t n,
                        double tol) {
    double mabs;
    double rel = check_maxdiff(got, want, n, &mabs);
    CHECK(mabs <= tol || rel <= tol, "%s (maxdiff %.2e, max rel %.2e)", what, mabs, rel);
}

static inline void fd_summary(void) {
    printf("# max relative finite-difference error per op (h %g, floor %g):\n", (double)FD_H,
           FD_FLOOR);
    for (int i = 0; i < nsummary; i++) printf("#   %-34s %.2e\n", summary[i].op, summary[i].err);
}

#endif
