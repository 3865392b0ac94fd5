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

// The BLIS microkernel of the selected kernels, for kernels that pack their
// own operands (convolution builds its panels straight from the images, so no
// im2col matrix is written and repacked). One call computes a full tile of
// ns_tile_rows() x ns_tile_cols():
//     C[i + j*ldc] = beta * C[i + j*ldc] + sum_t p[t*rows + i] * q[t*cols + j]
// for t < k. p and q hold k steps of rows (cols) floats each and start on a
// 64-byte boundary; beta == 0 overwrites C without reading it. Single-threaded;
// call it from any thread.
int ns_tile_rows(void);
int ns_tile_cols(void);
void ns_tile_gemm(int64_t k, const float *p, const float *q, float beta, float *c, int64_t ldc);

#endif
