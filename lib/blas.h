// blas.h: the single door to BLIS. Every dense product in netsmith goes through
// ns_sgemm. ns_blas_init (called by ns_sgemm on first use, and by --version)
// picks fast kernels when Debian's BLIS 0.9 would fall back to "generic" on a
// CPU it does not know (AMD family 0x1A, see README), and sets the thread count
// from NETSMITH_THREADS (default: all cores).
#ifndef NS_BLAS_H
#define NS_BLAS_H

#include <stdint.h>

void ns_blas_init(void);
// "skx (selected by netsmith: BLIS chose generic)", "haswell", ...
const char *ns_blas_kernels(void);
int ns_threads(void);

// Row-major C := alpha * op(A) * op(B) + beta * C, with op(X) = X or X^T.
// A is (m, k) after op, B is (k, n) after op, C is (m, n); ld* are row strides.
void ns_sgemm(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha,
              const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
              float *c, int64_t ldc);

#endif
