// lsa.c: linear sum assignment by shortest augmenting paths (see lsa.h).
//
// The problem is first brought to one shape: a working copy c of r x n costs,
// r <= n (the input transposed when it has more rows than columns), negated when
// maximizing, so the core always minimizes and assigns every row. Forbidden
// pairs are +inf in c.
//
// The core keeps dual variables u (rows) and v (columns) with reduced costs
// c[i][j] - u[i] - v[j] >= 0 everywhere and = 0 on every assigned pair. Row by
// row, a Dijkstra search over reduced costs grows a tree of alternating paths
// from the new row until it reaches a free column (the sink); spc[j] is the
// length of the shortest path found so far to column j, path[j] the row it came
// from. Then the duals move so the tree's edges stay tight, and the path is
// flipped (assigned pairs become free and vice versa), assigning one more row.
// Duals start at 0, v only ever decreases and only on columns in a tree, so a
// column that is never assigned keeps v = 0: that is what makes the rectangular
// optimum correct (Crouse 2016, section IV).
//
// Glossary: r = rows of c (<= n), n = columns of c, i = a row, j = a column.
#include "merge/lsa.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>

struct ns_lsa_ws {
    size_t cap_c;       // doubles allocated in c
    int32_t cap_r, cap_n;
    double *c;          // (r, n) working costs, minimizing, +inf = forbidden
    // Per row, one block: u, then col4row and rows_seen.
    void *row_block;
    double *u;          // (r) row duals
    int32_t *col4row;   // (r) column assigned to each row, or -1
    int32_t *rows_seen; // (r) rows in the tree of this search
    // Per column, one block. Indexed by column:
    void *col_block;
    double *v;          // (n) column duals
    double *spc;        // (n) shortest path cost to each tree column, this search
    int32_t *path;      // (n) the row each tree column was reached from
    int32_t *row4col;   // (n) row assigned to each column, or -1
    // Indexed by position in the scan order of this search (see solve_core):
    double *pos_spc;    // (n) shortest path cost found so far
    double *pos_v;      // (n) the column's dual (a copy, read in the scan)
    int32_t *pos_path;  // (n) the row it was reached from
    int32_t *pos_col;   // (n) the column at each position
};

ns_lsa_ws *ns_lsa_ws_new(void) {
    return calloc(1, sizeof(ns_lsa_ws));
}

void ns_lsa_ws_free(ns_lsa_ws *ws) {
    if (!ws) return;
    free(ws->c);
    free(ws->row_block);
    free(ws->col_block);
    free(ws);
}

// Grows ws to hold an r x n problem. Buffers are only replaced when too small.
static int reserve(ns_lsa_ws *ws, int32_t r, int32_t n, ns_err *err) {
    size_t cells = (size_t)r * (size_t)n;
    if (cells > ws->cap_c) {
        free(ws->c);
        ws->c = malloc(cells * sizeof *ws->c);
        ws->cap_c = ws->c ? cells : 0;
        if (!ws->c)
            return ns_errf(err, "out of memory for a %d x %d working cost matrix", (int)r, (int)n);
    }
    if (n > ws->cap_n) {
        free(ws->col_block);
        size_t m = (size_t)n;
        char *b = ws->col_block = malloc(m * (4 * sizeof(double) + 4 * sizeof(int32_t)));
        ws->cap_n = b ? n : 0;
        if (!b) return ns_errf(err, "out of memory for %d columns", (int)n);
        ws->v = (double *)b, b += m * sizeof(double);
        ws->spc = (double *)b, b += m * sizeof(double);
        ws->pos_spc = (double *)b, b += m * sizeof(double);
        ws->pos_v = (double *)b, b += m * sizeof(double);
        ws->path = (int32_t *)b, b += m * sizeof(int32_t);
        ws->row4col = (int32_t *)b, b += m * sizeof(int32_t);
        ws->pos_path = (int32_t *)b, b += m * sizeof(int32_t);
        ws->pos_col = (int32_t *)b;
    }
    if (r > ws->cap_r) {
        free(ws->row_block);
        size_t m = (size_t)r;
        char *b = ws->row_block = malloc(m * (sizeof(double) + 2 * sizeof(int32_t)));
        ws->cap_r = b ? r : 0;
        if (!b) return ns_errf(err, "out of memory for %d rows", (int)r);
        ws->u = (double *)b, b += m * sizeof(double);
        ws->col4row = (int32_t *)b, b += m * sizeof(int32_t);
        ws->rows_seen = (int32_t *)b;
    }
    return 0;
}

// ----------------------------------------------------------------------------
// loading: validate the entries and write the working copy

static inline double entry(const void *cost, int f32, size_t k) {
    return f32 ? (double)((const float *)cost)[k] : ((const double *)cost)[k];
}

// Copies cost (rows x cols) into ws->c as r x n, transposed when rows > cols,
// negated when maximizing. Refuses NaN, the unbounded infinity, and finite
// values large enough to overflow the duals.
static int load(ns_lsa_ws *ws, const void *cost, int f32, int64_t rows, int64_t cols,
                int maximize, int transpose, ns_err *err) {
    double *c = ws->c;
    double maxabs = 0;
    const double sign = maximize ? -1.0 : 1.0;
    for (int64_t a = 0; a < rows; a++) {
        for (int64_t b = 0; b < cols; b++) {
            double x = entry(cost, f32, (size_t)a * (size_t)cols + (size_t)b);
            if (isnan(x))
                return ns_errf(err, "cost matrix has NaN at row %lld, column %lld", (long long)a,
                               (long long)b);
            double w = sign * x;
            if (isinf(w)) {
                if (w < 0)
                    return ns_errf(err,
                                   "cost matrix has %s at row %lld, column %lld: when %s, that "
                                   "makes the total unbounded (%s marks a forbidden pair)",
                                   x < 0 ? "-inf" : "+inf", (long long)a, (long long)b,
                                   maximize ? "maximizing" : "minimizing",
                                   maximize ? "-inf" : "+inf");
            } else if (fabs(w) > maxabs) {
                maxabs = fabs(w);
            }
            if (transpose)
                c[(size_t)b * (size_t)rows + (size_t)a] = w;
            else
                c[(size_t)a * (size_t)cols + (size_t)b] = w;
        }
    }
    int64_t big = rows > cols ? rows : cols;
    if (maxabs > DBL_MAX / (8.0 * ((double)big + 1)))
        return ns_errf(err,
                       "cost matrix has an entry of magnitude %g: too large for a %lld x %lld "
                       "problem (sums of entries would overflow); rescale the costs",
                       maxabs, (long long)rows, (long long)cols);
    return 0;
}

// ----------------------------------------------------------------------------
// the core: r <= n, minimizing, every row assigned

// The scan reads most of a cost row in an order the hardware cannot predict;
// for large problems the row is not in cache, so ask for all of it at once.
static inline void prefetch_row(const double *row, int32_t n) {
#if defined(__GNUC__)
    for (int32_t k = 0; k < n; k += 8) __builtin_prefetch(row + k, 0, 3);
#else
    (void)row, (void)n;
#endif
}

// Assigns rows 0..r-1 of ws->c. Returns -1 with the first row that could not
// be assigned in *bad_row when the forbidden pairs leave no complete assignment.
//
// Layout of a search: the columns not yet in the tree sit at positions
// [0, n_rem) of the pos_* arrays, in scan order; a column joining the tree is
// swapped with the last of them, so the tree's columns fill [n_rem, n) from the
// end. The scan then reads its dual and path cost in order, and only the cost
// row is read by column index. At the end the tree's values go back to the
// column-indexed arrays.
static int solve_core(ns_lsa_ws *ws, int32_t r, int32_t n, int32_t *bad_row) {
    const double *c = ws->c;
    double *restrict u = ws->u, *restrict v = ws->v, *restrict spc = ws->spc;
    int32_t *restrict path = ws->path, *restrict row4col = ws->row4col;
    int32_t *restrict col4row = ws->col4row, *restrict rows_seen = ws->rows_seen;
    double *restrict pos_spc = ws->pos_spc, *restrict pos_v = ws->pos_v;
    int32_t *restrict pos_path = ws->pos_path, *restrict pos_col = ws->pos_col;

    for (int32_t i = 0; i < r; i++) u[i] = 0, col4row[i] = -1;
    for (int32_t j = 0; j < n; j++) v[j] = 0, row4col[j] = -1;

    for (int32_t cur = 0; cur < r; cur++) {
        // A fresh search from row cur. Columns are scanned last to first, the
        // order that makes ties come out as scipy's do.
        for (int32_t p = 0; p < n; p++) {
            int32_t j = n - 1 - p;
            pos_col[p] = j;
            pos_v[p] = v[j];
            pos_spc[p] = INFINITY;
            pos_path[p] = -1;
        }
        int32_t n_rem = n, n_rows = 0, sink = -1, i = cur;
        double min_val = 0;
        while (sink < 0) {
            rows_seen[n_rows++] = i;
            const double *ci = c + (size_t)i * (size_t)n;
            const double ui = u[i];
            prefetch_row(ci, n);
            double lowest = INFINITY;
            int32_t best = -1;
            for (int32_t p = 0; p < n_rem; p++) {
                // Path through row i to this column: the search radius so far
                // plus the reduced cost of (i, column).
                double d = min_val + ci[pos_col[p]] - ui - pos_v[p];
                double s = pos_spc[p];
                // Branch-free: which of the two is shorter is unpredictable.
                int32_t keep = (int32_t)(d < s) - 1; // all ones when s stays
                s = d < s ? d : s;
                pos_spc[p] = s;
                pos_path[p] = (pos_path[p] & keep) | (i & ~keep);
                // The nearest column. Among equals, a free column (it ends the
                // search), the last in scan order; with none free, the first.
                if (s <= lowest && (s < lowest || row4col[pos_col[p]] < 0)) {
                    lowest = s;
                    best = p;
                }
            }
            if (lowest == INFINITY) { // only forbidden pairs lead on
                *bad_row = cur;
                return -1;
            }
            min_val = lowest;
            // The nearest column joins the tree: swap it to the end.
            int32_t last = --n_rem, j = pos_col[best];
            double ts = pos_spc[best], tv = pos_v[best];
            int32_t tp = pos_path[best];
            pos_col[best] = pos_col[last], pos_col[last] = j;
            pos_spc[best] = pos_spc[last], pos_spc[last] = ts;
            pos_v[best] = pos_v[last], pos_v[last] = tv;
            pos_path[best] = pos_path[last], pos_path[last] = tp;
            if (row4col[j] < 0)
                sink = j;
            else
                i = row4col[j];
        }
        // Move the duals: every tree edge stays tight, all reduced costs >= 0.
        for (int32_t p = n_rem; p < n; p++) {
            int32_t j = pos_col[p];
            spc[j] = pos_spc[p];
            path[j] = pos_path[p];
            v[j] = pos_v[p] - (min_val - pos_spc[p]);
        }
        u[cur] += min_val;
        for (int32_t k = 1; k < n_rows; k++) {
            int32_t ri = rows_seen[k];
            u[ri] += min_val - spc[col4row[ri]];
        }
        // Flip the path from the sink back to row cur.
        for (int32_t j = sink;;) {
            int32_t pi = path[j];
            row4col[j] = pi;
            int32_t prev = col4row[pi];
            col4row[pi] = j;
            j = prev;
            if (pi == cur) break;
        }
    }
    return 0;
}

// ----------------------------------------------------------------------------
// entry points

// Both entry points. row_to_col is set to -1 first and written only on success.
static int solve(ns_lsa_ws *ws, const void *cost, int f32, int64_t rows, int64_t cols,
                 int maximize, int64_t *row_to_col, double *total, ns_err *err) {
    if (total) *total = 0;
    if (rows < 0 || cols < 0)
        return ns_errf(err, "negative matrix shape (%lld x %lld)", (long long)rows,
                       (long long)cols);
    if (rows > 0 && !row_to_col) return ns_errf(err, "no output array for the assignment");
    for (int64_t i = 0; i < rows; i++) row_to_col[i] = -1;
    if (rows == 0 || cols == 0) return 0;
    if (!cost) return ns_errf(err, "no cost matrix");
    if (rows > INT32_MAX - 1 || cols > INT32_MAX - 1 ||
        (uint64_t)rows * (uint64_t)cols > SIZE_MAX / sizeof(double))
        return ns_errf(err, "cost matrix too large (%lld x %lld)", (long long)rows,
                       (long long)cols);
    int transpose = rows > cols;
    int32_t r = (int32_t)(transpose ? cols : rows), n = (int32_t)(transpose ? rows : cols);
    if (reserve(ws, r, n, err) < 0) return -1;
    if (load(ws, cost, f32, rows, cols, maximize, transpose, err) < 0) return -1;
    int32_t bad = -1;
    if (solve_core(ws, r, n, &bad) < 0)
        return ns_errf(err,
                       "infeasible: no assignment of every %s avoids the forbidden pairs (%s "
                       "entries when %s; found at %s %d)",
                       transpose ? "column" : "row", maximize ? "-inf" : "+inf",
                       maximize ? "maximizing" : "minimizing", transpose ? "column" : "row",
                       (int)bad);
    double sum = 0;
    if (transpose) {
        // Row i of c is column i of the input.
        for (int32_t i = 0; i < r; i++) {
            int64_t a = ws->col4row[i];
            row_to_col[a] = i;
            sum += entry(cost, f32, (size_t)a * (size_t)cols + (size_t)i);
        }
    } else {
        for (int32_t i = 0; i < r; i++) {
            row_to_col[i] = ws->col4row[i];
            sum += entry(cost, f32, (size_t)i * (size_t)cols + (size_t)ws->col4row[i]);
        }
    }
    if (total) *total = sum;
    return 0;
}

int ns_lsa_ws_solve(ns_lsa_ws *ws, const double *cost, int64_t rows, int64_t cols,
                    int maximize, int64_t *row_to_col, double *total, ns_err *err) {
    return solve(ws, cost, 0, rows, cols, maximize, row_to_col, total, err);
}

int ns_lsa_ws_solve_f32(ns_lsa_ws *ws, const float *cost, int64_t rows, int64_t cols,
                        int maximize, int64_t *row_to_col, double *total, ns_err *err) {
    return solve(ws, cost, 1, rows, cols, maximize, row_to_col, total, err);
}

int ns_lsa_solve(const double *cost, int64_t rows, int64_t cols, int maximize,
                 int64_t *row_to_col, double *total, ns_err *err) {
    ns_lsa_ws *ws = ns_lsa_ws_new();
    if (!ws) return ns_errf(err, "out of memory");
    int rc = ns_lsa_ws_solve(ws, cost, rows, cols, maximize, row_to_col, total, err);
    ns_lsa_ws_free(ws);
    return rc;
}

int ns_lsa_solve_f32(const float *cost, int64_t rows, int64_t cols, int maximize,
                     int64_t *row_to_col, double *total, ns_err *err) {
    ns_lsa_ws *ws = ns_lsa_ws_new();
    if (!ws) return ns_errf(err, "out of memory");
    int rc = ns_lsa_ws_solve_f32(ws, cost, rows, cols, maximize, row_to_col, total, err);
    ns_lsa_ws_free(ws);
    return rc;
}
