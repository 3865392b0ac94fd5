// vecmath.c: unit-norm rows and finiteness checks (vecmath.h).
#include "base/vecmath.h"

void ns_normalize_rows(float *x, int64_t n, int64_t d) {
    for (int64_t i = 0; i < n; i++) {
        double nr = ns_norm_f(x + i * d, d);
        if (nr > 0)
            for (int64_t j = 0; j < d; j++) x[i * d + j] = (float)(x[i * d + j] / nr);
    }
}

int ns_check_finite(const float *x, int64_t rows, int64_t cols, const char *what, ns_err *err) {
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++)
            if (!isfinite(x[i * cols + j]))
                return ns_errf(err, "%s: row %lld, column %lld is not finite", what, (long long)i, (long long)j);
    return 0;
}
