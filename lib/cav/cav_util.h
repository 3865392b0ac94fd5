// cav_util.h: small helpers shared by cav_fit.c (the original CAV) and
// cav_lg.c (LG-CAV): one aligned block for a fit's buffers, finiteness
// checks, dot products and norms in double, row normalisation, softplus
// and sigmoid. Private to lib/cav_*.c; everything is static inline.
#ifndef NS_CAV_UTIL_H
#define NS_CAV_UTIL_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "base/err.h"
#include "base/tensor.h"

#define CAV_ALIGN 64

typedef struct block_item {
    void **ptr;
    int64_t count; // elements
    size_t size;   // bytes per element
} block_item;

// One aligned allocation for every buffer of a fit (llm.c style): the
// pointers in items are set into it. Returns the block (free it) or NULL.
static inline void *block_alloc(block_item *items, int n, ns_err *err) {
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        if (items[i].count < 0 || (items[i].count > 0 &&
                                   (size_t)items[i].count > (SIZE_MAX - CAV_ALIGN) / items[i].size)) {
            ns_errf(err, "buffer size overflows");
            return NULL;
        }
        size_t bytes = ((size_t)items[i].count * items[i].size + CAV_ALIGN - 1) / CAV_ALIGN * CAV_ALIGN;
        if (total > SIZE_MAX - bytes) {
            ns_errf(err, "buffer size overflows");
            return NULL;
        }
        total += bytes;
    }
    char *base = ns_aligned_alloc(total);
    if (!base) {
        ns_errf(err, "out of memory (%zu bytes)", total);
        return NULL;
    }
    memset(base, 0, total);
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        *items[i].ptr = base + off;
        off += ((size_t)items[i].count * items[i].size + CAV_ALIGN - 1) / CAV_ALIGN * CAV_ALIGN;
    }
    return base;
}

static inline int check_finite(const float *x, int64_t rows, int64_t cols, const char *what,
                        ns_err *err) {
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++)
            if (!isfinite(x[i * cols + j]))
                return ns_errf(err, "%s: row %lld, column %lld is not finite", what,
                               (long long)i, (long long)j);
    return 0;
}

static inline double dot_f(const float *a, const float *b, int64_t d) {
    double s = 0;
    for (int64_t i = 0; i < d; i++) s += (double)a[i] * b[i];
    return s;
}

static inline double norm_f(const float *a, int64_t d) { return sqrt(dot_f(a, a, d)); }

// Scales each row to unit norm in place; zero rows stay zero.
static inline void normalize_rows(float *x, int64_t n, int64_t d) {
    for (int64_t i = 0; i < n; i++) {
        double nr = norm_f(x + i * d, d);
        if (nr > 0)
            for (int64_t j = 0; j < d; j++) x[i * d + j] = (float)(x[i * d + j] / nr);
    }
}

static inline double softplus(double z) { return z > 0 ? z + log1p(exp(-z)) : log1p(exp(z)); }
static inline double sigmoid(double z) {
    if (z >= 0) return 1.0 / (1.0 + exp(-z));
    double e = exp(z);
    return e / (1.0 + e);
}

#endif
