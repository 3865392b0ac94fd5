// vecmath.h: small numeric helpers on float vectors and rows, summed in
// double: dot products and norms, unit-norm rows, finiteness checks, and the
// softplus and sigmoid of a double that neither overflow nor lose precision
// far from 0. Shapes: a vector (d), a row-major matrix x (rows, cols).
#ifndef NS_VECMATH_H
#define NS_VECMATH_H

#include <math.h>
#include <stdint.h>

#include "base/err.h"

// sum_i a[i] b[i] in double, in index order.
static inline double ns_dot_f(const float *a, const float *b, int64_t d) {
    double s = 0;
    for (int64_t i = 0; i < d; i++) s += (double)a[i] * b[i];
    return s;
}

// The Euclidean norm of a, in double.
static inline double ns_norm_f(const float *a, int64_t d) { return sqrt(ns_dot_f(a, a, d)); }

// log(1 + e^z)
static inline double ns_softplus(double z) { return z > 0 ? z + log1p(exp(-z)) : log1p(exp(z)); }

// 1 / (1 + e^-z)
static inline double ns_sigmoid(double z) {
    if (z >= 0) return 1.0 / (1.0 + exp(-z));
    double e = exp(z);
    return e / (1.0 + e);
}

// Scales each row of x (n, d) to unit norm in place (each value divided by
// the row's norm in double); zero rows stay zero.
void ns_normalize_rows(float *x, int64_t n, int64_t d);

// 0 when every value of x (rows, cols) is finite, else -1 with
// "<what>: row i, column j is not finite".
int ns_check_finite(const float *x, int64_t rows, int64_t cols, const char *what, ns_err *err);

#endif
