// sparse.h: sparse matrices in CSR form and what graph learning does with
// them: building from coordinates (COO), transpose, symmetrisation, self loops,
// GCN's symmetric normalisation and row normalisation, and the sparse-dense
// product Y = A X with its backward.
//
// Dimensions: R = rows, C = columns, Z = stored entries (nnz), D = columns of
// a dense operand. A graph's adjacency is (N, N): entry (i, j) is the edge
// i -> j, so row i lists node i's out-neighbours and (A X)_i sums over them.
//
// Canonical form. Every function here produces it, and the kernels assume it
// (ns_csr_check verifies it for matrices from outside):
//   indptr[0] = 0, indptr never decreases, indptr[R] = Z;
//   within a row, column indices strictly increase (sorted, no duplicates);
//   every column index lies in [0, C); values are always present (1 for an
//   unweighted graph). R and C are at most INT32_MAX (indices are i32).
//
// Memory: indptr, indices and values live in one 64-byte-aligned block, each
// array starting on a 64-byte boundary; ns_csr_free releases it.
//
// Threads and determinism: parallel loops (OpenMP, with the current thread
// count: call ns_threads() from blas.h first to apply NETSMITH_THREADS) split
// rows, and each output row is computed by one thread in stored order, so
// every result is bit-identical whatever the number of threads.
#ifndef NS_SPARSE_H
#define NS_SPARSE_H

#include <stdint.h>

#include "base/err.h"

typedef struct ns_csr {
    int64_t rows, cols, nnz;
    int64_t *indptr;  // (R + 1)
    int32_t *indices; // (Z) column of each entry
    float *values;    // (Z)
    void *block;      // the one allocation the three arrays point into
} ns_csr;

// Allocates a zeroed R x C matrix with room for Z entries (indptr all 0, so
// it is canonical only once filled). Fails on sizes out of range or no memory.
int ns_csr_alloc(ns_csr *m, int64_t rows, int64_t cols, int64_t nnz, ns_err *err);
void ns_csr_free(ns_csr *m);
int ns_csr_copy(ns_csr *out, const ns_csr *a, ns_err *err);

// Verifies the canonical form (values are not looked at). Messages name the
// arrays as indptr_name[i] and indices_name[k] (NULL: "indptr", "indices"):
// "graph.indices[17]: column 2708 out of range (0..2707) in row 5".
int ns_csr_check(const ns_csr *m, const char *indptr_name, const char *indices_name,
                 ns_err *err);

// What to do with two entries at the same (row, column).
typedef enum ns_dup {
    NS_DUP_REFUSE, // an error naming both
    NS_DUP_SUM,    // one entry, the sum of the values in input order
} ns_dup;

// Builds a canonical R x C matrix from n triples (ri[k], ci[k], v[k]) in any
// order; v NULL means every value is 1. An index out of range, or a duplicate
// under NS_DUP_REFUSE, is an error; where (when not NULL) then receives the
// input positions involved: {k, -1} for an index out of range, {first,
// second} (first < second) for a duplicate, so callers can name input lines.
int ns_csr_from_coo(ns_csr *out, int64_t rows, int64_t cols, int64_t n, const int32_t *ri,
                    const int32_t *ci, const float *v, ns_dup dup, int64_t where[2],
                    ns_err *err);

// The entries of a dense row-major R x C matrix that are not 0.
int ns_csr_from_dense(ns_csr *out, const float *x, int64_t rows, int64_t cols, ns_err *err);
// Writes A densely: out (R, C) row-major, zeros elsewhere.
void ns_csr_to_dense(float *out, const ns_csr *a);

// out = A^T (C x R), canonical. Serial, O(R + C + Z).
int ns_csr_transpose(ns_csr *out, const ns_csr *a, ns_err *err);

// How ns_csr_symmetrize combines (i, j) and (j, i) when both are stored.
typedef enum ns_sym {
    NS_SYM_STRICT, // they must be equal (else an error naming the pair)
    NS_SYM_MAX,    // the larger
    NS_SYM_SUM,    // the sum: A + A^T (a diagonal entry doubles)
} ns_sym;

// out = A united with A^T for a square A: an entry stored one way only is
// mirrored with its value; where both ways are stored, mode decides.
// For a 0/1 adjacency every mode but SUM gives the undirected graph.
int ns_csr_symmetrize(ns_csr *out, const ns_csr *a, ns_sym mode, ns_err *err);

// 1 when a square A equals A^T (pattern and values), 0 when not (at, when
// not NULL, receives the first (i, j) whose mirror differs or is missing),
// -1 on error (out of memory).
int ns_csr_is_symmetric(const ns_csr *a, int64_t at[2], ns_err *err);

// Self loops of weight w on a square A.
typedef enum ns_loops {
    NS_LOOPS_ADD,  // A + wI: w is added to diagonal entries already stored
    NS_LOOPS_FILL, // only where the diagonal is missing; stored loops stay
                   // (PyG's add_remaining_self_loops)
} ns_loops;

int ns_csr_add_self_loops(ns_csr *out, const ns_csr *a, float w, ns_loops mode, ns_err *err);

// In place, for a square A: a_ij <- a_ij / sqrt(d_i d_j), d the row sums
// (the weighted degree of a symmetric A), summed in double in stored order.
// Where d <= 0 the factor is 0 (an isolated node stays isolated).
int ns_csr_normalize_sym(ns_csr *a, ns_err *err);
// GCN's propagation matrix: out = D^-1/2 (A + I) D^-1/2 with D the row sums
// of A + I. A + I adds 1 to stored diagonal entries (as GCN, GCond and SimGC
// do), so a graph that already has loops gets weight 2 there.
int ns_csr_gcn_norm(ns_csr *out, const ns_csr *a, ns_err *err);
// In place: a_ij <- a_ij / sum_j a_ij (random walk, D^-1 A); rows summing
// to 0 are left unchanged.
void ns_csr_normalize_rows(ns_csr *a);

// Y = A X: y (R, D) is overwritten, x (C, D); both row-major and dense.
void ns_spmm_forward(float *y, const ns_csr *a, const float *x, int64_t d);
// The backward of Y = A X with respect to X: dx (C, D) += A^T dy, dy (R, D).
// at is A^T (ns_csr_transpose, once per matrix; for a symmetric A, such as
// GCN's normalised adjacency of an undirected graph, pass A itself): a
// product by rows of A^T needs no atomics and stays deterministic.
void ns_spmm_backward(float *dx, const ns_csr *at, const float *dy, int64_t d);

// Naive reference for tests and benchmarks: y (R, D) = A x, one thread,
// accumulated in double.
void ns_spmm_naive(float *y, const ns_csr *a, const float *x, int64_t d);

#endif
