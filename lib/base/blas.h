// blas.h: the single door to BLIS. Every dense product in netsmith goes through
// ns_sgemm (or, on the calling thread alone, ns_sgemm_serial). ns_blas_init (called by ns_sgemm on first use, and by --version)
// picks fast kernels when Debian's BLIS 0.9 would fall back to "generic" on a
// CPU it does not know (AMD family 0x1A, see README), and sets the thread count
// from NETSMITH_THREADS (default: all cores).
#ifndef NS_BLAS_H
#define NS_BLAS_H

#include <stdint.h>

#include "base/err.h"

void ns_blas_init(void);
// "skx (selected by netsmith: BLIS chose generic)", "haswell", ...
const char *ns_blas_kernels(void);
int ns_threads(void);

// Row-major C := alpha * op(A) * op(B) + beta * C, with op(X) = X or X^T.
// A is (m, k) after op, B is (k, n) after op, C is (m, n); ld* are row strides.
void ns_sgemm(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha,
              const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
              float *c, int64_t ldc);

// The same product on the calling thread alone, with the tile kernel below
// (ns_tile_gemm) on operands packed here, for callers that run many modest
// products of their own: on the shapes of ns_merge_gram (a few hundred rows,
// long k) BLIS with two threads was slower than this on one. For k up to
// NS_SGEMM_SERIAL_KBLOCK each element of op(A) op(B) is one tile's sum over
// t in order, in float; longer k is summed block by block into the same
// float accumulator. beta == 0 does not read C. -1 with err set when out of
// memory for the packed panels.
#define NS_SGEMM_SERIAL_KBLOCK 256
int ns_sgemm_serial(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                    const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                    float *c, int64_t ldc, ns_err *err);

// A gemm microkernel tile, for kernels that build their operands themselves
// (convolution reads its panels straight from the images, so no im2col matrix
// is written and repacked): netsmith's own AVX-512 32x8 tile where the CPU has
// AVX-512, else the microkernel of BLIS's selected kernels
// (NETSMITH_TILE_KERNEL=blis forces BLIS's). One call computes a full tile of
// ns_tile_rows() x ns_tile_cols():
//     C[i + j*ldc] = beta * C[i + j*ldc] + sum_t p[t*rows + i] * q[t*cols + j]
// for t < k. p and q hold k steps of rows (cols) floats each and start on a
// 64-byte boundary; beta == 0 overwrites C without reading it. Single-threaded;
// call it from any thread.
int ns_tile_rows(void);
int ns_tile_cols(void);
const char *ns_tile_kernel(void); // "netsmith avx512 32x8", "BLIS skx 32x12", ...
void ns_tile_gemm(int64_t k, const float *p, const float *q, float beta, float *c, int64_t ldc);

// The same tile with its operands read in place: row t of p (rows floats) at
// base + off[t], any alignment, and element j of row t of q at q[t*ldq + j*cq].
// Convolutions point it straight into padded images instead of packing.
// pack holds rows*k rounded up to a multiple of 16, plus cols*k floats,
// 64-byte aligned, for kernels that need packed operands (BLIS's); it may be
// NULL when ns_tile_packs() is 0.
int ns_tile_packs(void);
void ns_tile_gemm_rows(int64_t k, const float *base, const int64_t *off, const float *q,
                       int64_t ldq, int64_t cq, float beta, float *c, int64_t ldc, float *pack);

#endif
