// lsa.h: linear sum assignment, the exact solver behind weight and activation
// matching (perm-align, MuDSC's Psi in permute mode, head pairing).
//
// Given a rows x cols cost matrix (row-major), choose one column for each row
// and one row for each column, at most once each, so that min(rows, cols) pairs
// are made and the sum of their costs is least (or greatest, with maximize).
// When rows <= cols every row is assigned and cols - rows columns stay free;
// otherwise every column is assigned and the extra rows get -1.
//
// Method: shortest augmenting paths with dual variables, one Dijkstra-like
// search per row, in the rectangular form of Crouse (2016), "On implementing 2D
// rectangular assignment algorithms", IEEE Trans. AES 52(4): O(r^2 c) time for
// r = min(rows, cols), c = max(rows, cols), O(r c) memory for a working copy of
// the costs. Ties are broken as scipy.optimize.linear_sum_assignment (1.10)
// breaks them, with the same arithmetic, so problems with many optima (small
// integers, repeated values) give scipy's answer, not just its total: a
// constant matrix gives the identity.
//
// Entries:
//   NaN                       always refused (an error naming the entry)
//   +inf when minimizing,     a forbidden pair. If no complete assignment avoids
//   -inf when maximizing      the forbidden pairs, the call fails ("infeasible").
//   -inf when minimizing,     refused: the total would be unbounded.
//   +inf when maximizing
//   finite                    |x| <= DBL_MAX / (8 (max(rows, cols) + 1)), about
//                             2e307 / n, so sums along any path stay finite;
//                             larger values are refused rather than risk overflow.
// Each side must be below 2^31 - 1.
//
// Results: row_to_col[i] is the column given to row i, or -1 (length rows).
// *total (when total is not NULL) is the sum of the chosen entries of cost as
// given (not negated). An empty matrix (rows or cols 0) is solved with total 0.
// On failure the functions return -1 with a message in err, row_to_col is all
// -1 and *total is 0.
//
// Repeated calls: a workspace keeps its buffers between calls and only grows,
// so a loop of same-size problems (one per channel group per sweep in MuDSC)
// allocates once. A workspace is not thread-safe; use one per thread.
#ifndef NS_LSA_H
#define NS_LSA_H

#include <stdint.h>

#include "base/err.h"

typedef struct ns_lsa_ws ns_lsa_ws;

// One-shot: allocates a workspace, solves, frees it. Returns 0 or -1.
int ns_lsa_solve(const double *cost, int64_t rows, int64_t cols, int maximize,
                 int64_t *row_to_col, double *total, ns_err *err);
// The same for a float32 matrix (correlations); work is done in double.
int ns_lsa_solve_f32(const float *cost, int64_t rows, int64_t cols, int maximize,
                     int64_t *row_to_col, double *total, ns_err *err);

// A reusable workspace: NULL when out of memory. Free with ns_lsa_ws_free
// (NULL is fine).
ns_lsa_ws *ns_lsa_ws_new(void);
void ns_lsa_ws_free(ns_lsa_ws *ws);

// As ns_lsa_solve / ns_lsa_solve_f32, with the buffers of ws.
int ns_lsa_ws_solve(ns_lsa_ws *ws, const double *cost, int64_t rows, int64_t cols,
                    int maximize, int64_t *row_to_col, double *total, ns_err *err);
int ns_lsa_ws_solve_f32(ns_lsa_ws *ws, const float *cost, int64_t rows, int64_t cols,
                        int maximize, int64_t *row_to_col, double *total, ns_err *err);

#endif
