// sparse.c: CSR matrices (see sparse.h for the canonical form and the
// determinism rule). Dimensions: R rows, C columns, Z entries, D dense columns.
#include "graph/sparse.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/tensor.h"

// Below this many multiply-adds a product runs on one thread (a team costs
// more than it saves).
#define PAR_MIN_WORK ((int64_t)1 << 16)

static size_t round64(size_t n) { return (n + 63) & ~(size_t)63; }

int ns_csr_alloc(ns_csr *m, int64_t rows, int64_t cols, int64_t nnz, ns_err *err) {
    memset(m, 0, sizeof *m);
    if (rows < 0 || rows > INT32_MAX || cols < 0 || cols > INT32_MAX)
        return ns_errf(err, "sparse matrix of %lld x %lld: sides must be 0 to %d",
                       (long long)rows, (long long)cols, INT32_MAX);
    // 8 bytes of index and value per entry, with room for rounding.
    if (nnz < 0 || (uint64_t)nnz > (SIZE_MAX - 4096 - 8 * (uint64_t)(rows + 1)) / 8)
        return ns_errf(err, "sparse matrix with %lld entries: too many", (long long)nnz);
    size_t p_bytes = round64((size_t)(rows + 1) * sizeof(int64_t));
    size_t i_bytes = round64((size_t)nnz * sizeof(int32_t));
    size_t v_bytes = round64((size_t)nnz * sizeof(float));
    char *block = ns_aligned_alloc(p_bytes + i_bytes + v_bytes);
    if (!block)
        return ns_errf(err, "out of memory (sparse matrix of %lld x %lld with %lld entries)",
                       (long long)rows, (long long)cols, (long long)nnz);
    memset(block, 0, p_bytes + i_bytes + v_bytes);
    m->rows = rows;
    m->cols = cols;
    m->nnz = nnz;
    m->block = block;
    m->indptr = (int64_t *)block;
    m->indices = (int32_t *)(block + p_bytes);
    m->values = (float *)(block + p_bytes + i_bytes);
    return 0;
}

void ns_csr_free(ns_csr *m) {
    free(m->block);
    memset(m, 0, sizeof *m);
}

int ns_csr_copy(ns_csr *out, const ns_csr *a, ns_err *err) {
    if (ns_csr_alloc(out, a->rows, a->cols, a->nnz, err) < 0) return -1;
    memcpy(out->indptr, a->indptr, (size_t)(a->rows + 1) * sizeof *a->indptr);
    memcpy(out->indices, a->indices, (size_t)a->nnz * sizeof *a->indices);
    memcpy(out->values, a->values, (size_t)a->nnz * sizeof *a->values);
    return 0;
}

int ns_csr_check(const ns_csr *m, const char *indptr_name, const char *indices_name,
                 ns_err *err) {
    const char *pn = indptr_name ? indptr_name : "indptr";
    const char *in = indices_name ? indices_name : "indices";
    if (m->rows < 0 || m->rows > INT32_MAX || m->cols < 0 || m->cols > INT32_MAX || m->nnz < 0)
        return ns_errf(err, "%s: bad sizes (%lld x %lld, %lld entries)", pn, (long long)m->rows,
                       (long long)m->cols, (long long)m->nnz);
    if (m->indptr[0] != 0) return ns_errf(err, "%s[0]: %lld (must be 0)", pn, (long long)m->indptr[0]);
    for (int64_t i = 0; i < m->rows; i++)
        if (m->indptr[i + 1] < m->indptr[i])
            return ns_errf(err, "%s[%lld]: %lld after %lld (must not decrease)", pn,
                           (long long)(i + 1), (long long)m->indptr[i + 1], (long long)m->indptr[i]);
    if (m->indptr[m->rows] != m->nnz)
        return ns_errf(err, "%s[%lld]: ends at %lld but %s has %lld entries", pn,
                       (long long)m->rows, (long long)m->indptr[m->rows], in, (long long)m->nnz);
    for (int64_t i = 0; i < m->rows; i++) {
        for (int64_t k = m->indptr[i]; k < m->indptr[i + 1]; k++) {
            int32_t c = m->indices[k];
            if (c < 0 || c >= m->cols)
                return ns_errf(err, "%s[%lld]: column %d out of range (0..%lld) in row %lld", in,
                               (long long)k, c, (long long)m->cols - 1, (long long)i);
            if (k > m->indptr[i] && c <= m->indices[k - 1])
                return ns_errf(err,
                               "%s[%lld]: column %d after %d in row %lld (columns must increase: "
                               "sorted, no duplicates)",
                               in, (long long)k, c, m->indices[k - 1], (long long)i);
        }
    }
    return 0;
}

// --- building ---------------------------------------------------------------------
typedef struct coo_entry {
    int32_t col;
    int64_t pos; // position in the input: ties sort in input order
} coo_entry;

static int cmp_entry(const void *pa, const void *pb) {
    const coo_entry *a = pa, *b = pb;
    if (a->col != b->col) return a->col < b->col ? -1 : 1;
    return (a->pos > b->pos) - (a->pos < b->pos);
}

int ns_csr_from_coo(ns_csr *out, int64_t rows, int64_t cols, int64_t n, const int32_t *ri,
                    const int32_t *ci, const float *v, ns_dup dup, int64_t where[2],
                    ns_err *err) {
    memset(out, 0, sizeof *out);
    if (where) where[0] = where[1] = -1;
    if (rows < 0 || rows > INT32_MAX || cols < 0 || cols > INT32_MAX || n < 0)
        return ns_errf(err, "sparse matrix of %lld x %lld from %lld entries: bad sizes",
                       (long long)rows, (long long)cols, (long long)n);
    for (int64_t k = 0; k < n; k++) {
        if (ri[k] < 0 || ri[k] >= rows || ci[k] < 0 || ci[k] >= cols) {
            if (where) where[0] = k;
            int bad_row = ri[k] < 0 || ri[k] >= rows;
            return ns_errf(err, "entry %lld: %s %d out of range (0..%lld)", (long long)k,
                           bad_row ? "row" : "column", bad_row ? ri[k] : ci[k],
                           (long long)(bad_row ? rows : cols) - 1);
        }
    }
    int64_t *start = calloc((size_t)rows + 1, sizeof *start);
    coo_entry *e = malloc((size_t)(n ? n : 1) * sizeof *e);
    if (!start || !e) {
        free(start);
        free(e);
        return ns_errf(err, "out of memory (%lld sparse entries)", (long long)n);
    }
    // Counting sort by row (stable), then each row by (column, position).
    for (int64_t k = 0; k < n; k++) start[ri[k] + 1]++;
    for (int64_t i = 0; i < rows; i++) start[i + 1] += start[i];
    {
        int64_t *next = malloc((size_t)(rows ? rows : 1) * sizeof *next);
        if (!next) {
            free(start);
            free(e);
            return ns_errf(err, "out of memory (%lld sparse rows)", (long long)rows);
        }
        memcpy(next, start, (size_t)rows * sizeof *next);
        for (int64_t k = 0; k < n; k++) e[next[ri[k]]++] = (coo_entry){ci[k], k};
        free(next);
    }
    #pragma omp parallel for schedule(dynamic, 256) if (n > 65536)
    for (int64_t i = 0; i < rows; i++)
        if (start[i + 1] - start[i] > 1)
            qsort(e + start[i], (size_t)(start[i + 1] - start[i]), sizeof *e, cmp_entry);

    // Distinct entries; for duplicates, the repeat that comes first in the input.
    int64_t distinct = 0, dup_first = -1, dup_second = -1;
    for (int64_t i = 0; i < rows; i++) {
        int64_t group = start[i]; // first entry of the current column
        for (int64_t k = start[i]; k < start[i + 1]; k++) {
            if (k > start[i] && e[k].col == e[k - 1].col) {
                if (dup_second < 0 || e[k].pos < dup_second) {
                    dup_first = e[group].pos;
                    dup_second = e[k].pos;
                }
            } else {
                group = k;
                distinct++;
            }
        }
    }
    if (dup_second >= 0 && dup == NS_DUP_REFUSE) {
        if (where) where[0] = dup_first, where[1] = dup_second;
        ns_errf(err, "duplicate entry (%d, %d) at positions %lld and %lld", ri[dup_second],
                ci[dup_second], (long long)dup_first, (long long)dup_second);
        free(start);
        free(e);
        return -1;
    }
    if (ns_csr_alloc(out, rows, cols, distinct, err) < 0) {
        free(start);
        free(e);
        return -1;
    }
    int64_t z = 0;
    for (int64_t i = 0; i < rows; i++) {
        for (int64_t k = start[i]; k < start[i + 1]; k++) {
            float val = v ? v[e[k].pos] : 1.0f;
            if (k > start[i] && e[k].col == e[k - 1].col) {
                out->values[z - 1] += val;
            } else {
                out->indices[z] = e[k].col;
                out->values[z] = val;
                z++;
            }
        }
        out->indptr[i + 1] = z;
    }
    free(start);
    free(e);
    return 0;
}

int ns_csr_from_dense(ns_csr *out, const float *x, int64_t rows, int64_t cols, ns_err *err) {
    memset(out, 0, sizeof *out);
    if (rows < 0 || cols < 0 || (cols && rows > INT64_MAX / cols))
        return ns_errf(err, "dense matrix of %lld x %lld: bad sizes", (long long)rows,
                       (long long)cols);
    int64_t nnz = 0;
    for (int64_t i = 0; i < rows * cols; i++) nnz += x[i] != 0;
    if (ns_csr_alloc(out, rows, cols, nnz, err) < 0) return -1;
    int64_t z = 0;
    for (int64_t i = 0; i < rows; i++) {
        for (int64_t j = 0; j < cols; j++) {
            float val = x[i * cols + j];
            if (val != 0) {
                out->indices[z] = (int32_t)j;
                out->values[z++] = val;
            }
        }
        out->indptr[i + 1] = z;
    }
    return 0;
}

void ns_csr_to_dense(float *out, const ns_csr *a) {
    memset(out, 0, (size_t)a->rows * (size_t)a->cols * sizeof *out);
    for (int64_t i = 0; i < a->rows; i++)
        for (int64_t k = a->indptr[i]; k < a->indptr[i + 1]; k++)
            out[i * a->cols + a->indices[k]] = a->values[k];
}

// --- structure ----------------------------------------------------------------------
int ns_csr_transpose(ns_csr *out, const ns_csr *a, ns_err *err) {
    if (ns_csr_alloc(out, a->cols, a->rows, a->nnz, err) < 0) return -1;
    for (int64_t k = 0; k < a->nnz; k++) out->indptr[a->indices[k] + 1]++;
    for (int64_t j = 0; j < a->cols; j++) out->indptr[j + 1] += out->indptr[j];
    int64_t *next = malloc((size_t)(a->cols ? a->cols : 1) * sizeof *next);
    if (!next) {
        ns_csr_free(out);
        return ns_errf(err, "out of memory (transpose of %lld columns)", (long long)a->cols);
    }
    memcpy(next, out->indptr, (size_t)a->cols * sizeof *next);
    // Rows in increasing order: each output row comes out sorted.
    for (int64_t i = 0; i < a->rows; i++) {
        for (int64_t k = a->indptr[i]; k < a->indptr[i + 1]; k++) {
            int64_t at = next[a->indices[k]]++;
            out->indices[at] = (int32_t)i;
            out->values[at] = a->values[k];
        }
    }
    free(next);
    return 0;
}

static int require_square(const ns_csr *a, const char *what, ns_err *err) {
    if (a->rows != a->cols)
        return ns_errf(err, "%s needs a square matrix (this one is %lld x %lld)", what,
                       (long long)a->rows, (long long)a->cols);
    return 0;
}

int ns_csr_symmetrize(ns_csr *out, const ns_csr *a, ns_sym mode, ns_err *err) {
    memset(out, 0, sizeof *out);
    if (require_square(a, "symmetrisation", err) < 0) return -1;
    ns_csr t;
    if (ns_csr_transpose(&t, a, err) < 0) return -1;
    // Two passes over the merged rows of A and A^T: count, then fill.
    int64_t total = 0;
    for (int pass = 0; pass < 2; pass++) {
        int64_t z = 0;
        for (int64_t i = 0; i < a->rows; i++) {
            int64_t p = a->indptr[i], pe = a->indptr[i + 1];
            int64_t q = t.indptr[i], qe = t.indptr[i + 1];
            while (p < pe || q < qe) {
                int32_t col;
                float val;
                if (q >= qe || (p < pe && a->indices[p] < t.indices[q])) {
                    col = a->indices[p];
                    val = a->values[p++];
                } else if (p >= pe || t.indices[q] < a->indices[p]) {
                    col = t.indices[q];
                    val = t.values[q++];
                } else { // both (i, col) and (col, i)
                    col = a->indices[p];
                    float x = a->values[p++], y = t.values[q++];
                    if (mode == NS_SYM_STRICT && x != y && pass == 0) {
                        ns_errf(err, "entries (%lld, %d) = %.9g and (%d, %lld) = %.9g differ",
                                (long long)i, col, (double)x, col, (long long)i, (double)y);
                        ns_csr_free(&t);
                        return -1;
                    }
                    val = mode == NS_SYM_SUM ? x + y : mode == NS_SYM_MAX ? fmaxf(x, y) : x;
                }
                if (pass == 1) {
                    out->indices[z] = col;
                    out->values[z] = val;
                }
                z++;
            }
            if (pass == 1) out->indptr[i + 1] = z;
        }
        total = z;
        if (pass == 0 && ns_csr_alloc(out, a->rows, a->cols, total, err) < 0) {
            ns_csr_free(&t);
            return -1;
        }
    }
    ns_csr_free(&t);
    return 0;
}

int ns_csr_is_symmetric(const ns_csr *a, int64_t at[2], ns_err *err) {
    if (at) at[0] = at[1] = -1;
    if (a->rows != a->cols) return 0;
    ns_csr t;
    if (ns_csr_transpose(&t, a, err) < 0) return -1;
    int symmetric = 1;
    for (int64_t i = 0; i < a->rows && symmetric; i++) {
        int64_t p = a->indptr[i], pe = a->indptr[i + 1];
        int64_t q = t.indptr[i], qe = t.indptr[i + 1];
        for (; p < pe || q < qe; p++, q++) {
            if (p < pe && q < qe && a->indices[p] == t.indices[q] &&
                a->values[p] == t.values[q])
                continue;
            // The first column where row i of A and of A^T disagree.
            int32_t col = p >= pe ? t.indices[q] : q >= qe ? a->indices[p]
                        : a->indices[p] < t.indices[q] ? a->indices[p] : t.indices[q];
            if (at) at[0] = i, at[1] = col;
            symmetric = 0;
            break;
        }
    }
    ns_csr_free(&t);
    return symmetric;
}

int ns_csr_add_self_loops(ns_csr *out, const ns_csr *a, float w, ns_loops mode, ns_err *err) {
    memset(out, 0, sizeof *out);
    if (require_square(a, "adding self loops", err) < 0) return -1;
    int64_t missing = 0;
    for (int64_t i = 0; i < a->rows; i++) {
        int found = 0;
        for (int64_t k = a->indptr[i]; k < a->indptr[i + 1] && a->indices[k] <= i; k++)
            found |= a->indices[k] == i;
        missing += !found;
    }
    if (ns_csr_alloc(out, a->rows, a->cols, a->nnz + missing, err) < 0) return -1;
    int64_t z = 0;
    for (int64_t i = 0; i < a->rows; i++) {
        int64_t k = a->indptr[i], ke = a->indptr[i + 1];
        for (; k < ke && a->indices[k] < i; k++, z++) {
            out->indices[z] = a->indices[k];
            out->values[z] = a->values[k];
        }
        out->indices[z] = (int32_t)i;
        if (k < ke && a->indices[k] == i) {
            out->values[z] = mode == NS_LOOPS_ADD ? a->values[k] + w : a->values[k];
            k++;
        } else {
            out->values[z] = w;
        }
        z++;
        for (; k < ke; k++, z++) {
            out->indices[z] = a->indices[k];
            out->values[z] = a->values[k];
        }
        out->indptr[i + 1] = z;
    }
    return 0;
}

// --- normalisation ------------------------------------------------------------------
int ns_csr_normalize_sym(ns_csr *a, ns_err *err) {
    if (require_square(a, "symmetric normalisation", err) < 0) return -1;
    double *dinv = malloc((size_t)(a->rows ? a->rows : 1) * sizeof *dinv);
    if (!dinv) return ns_errf(err, "out of memory (degrees of %lld nodes)", (long long)a->rows);
    for (int64_t i = 0; i < a->rows; i++) {
        double d = 0;
        for (int64_t k = a->indptr[i]; k < a->indptr[i + 1]; k++) d += a->values[k];
        dinv[i] = d > 0 ? 1.0 / sqrt(d) : 0.0;
    }
    for (int64_t i = 0; i < a->rows; i++)
        for (int64_t k = a->indptr[i]; k < a->indptr[i + 1]; k++)
            a->values[k] = (float)((double)a->values[k] * dinv[i] * dinv[a->indices[k]]);
    free(dinv);
    return 0;
}

int ns_csr_gcn_norm(ns_csr *out, const ns_csr *a, ns_err *err) {
    if (ns_csr_add_self_loops(out, a, 1.0f, NS_LOOPS_ADD, err) < 0) return -1;
    if (ns_csr_normalize_sym(out, err) < 0) {
        ns_csr_free(out);
        return -1;
    }
    return 0;
}

void ns_csr_normalize_rows(ns_csr *a) {
    for (int64_t i = 0; i < a->rows; i++) {
        double s = 0;
        for (int64_t k = a->indptr[i]; k < a->indptr[i + 1]; k++) s += a->values[k];
        if (s == 0) continue;
        for (int64_t k = a->indptr[i]; k < a->indptr[i + 1]; k++)
            a->values[k] = (float)((double)a->values[k] / s);
    }
}

// --- products -----------------------------------------------------------------------
// One output row: yi (D) = (or +=) sum over the row's entries of w * x_k, in
// stored order. The loop over D is independent per column, so vectorising it
// changes no result. With ISO C (-std=c11) GCC does not contract a*b+c into
// an FMA, so the AVX2 clone (about 1.4x faster on Cora's product, as AVX2
// loads more per cycle) gives bit-identical results to the baseline one.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
__attribute__((target_clones("avx2", "default")))
#endif
static void spmm_row(float *restrict yi, const int32_t *restrict cols, const float *restrict vals,
                     int64_t nz, const float *restrict x, int64_t d, int accumulate) {
    if (!accumulate)
        for (int64_t j = 0; j < d; j++) yi[j] = 0;
    for (int64_t k = 0; k < nz; k++) {
        const float w = vals[k];
        const float *restrict xk = x + (int64_t)cols[k] * d;
        #pragma omp simd
        for (int64_t j = 0; j < d; j++) yi[j] += w * xk[j];
    }
}

// out (R, D) = A x (accumulate 0) or += A x (accumulate 1), one row per
// iteration: whichever thread takes a row, its sums run in the same order.
static void spmm_rows(float *out, const ns_csr *a, const float *x, int64_t d, int accumulate) {
    #pragma omp parallel for schedule(dynamic, 16) if (a->nnz * d >= PAR_MIN_WORK)
    for (int64_t i = 0; i < a->rows; i++) {
        int64_t k0 = a->indptr[i];
        spmm_row(out + i * d, a->indices + k0, a->values + k0, a->indptr[i + 1] - k0, x, d,
                 accumulate);
    }
}

void ns_spmm_forward(float *y, const ns_csr *a, const float *x, int64_t d) {
    spmm_rows(y, a, x, d, 0);
}

void ns_spmm_backward(float *dx, const ns_csr *at, const float *dy, int64_t d) {
    spmm_rows(dx, at, dy, d, 1);
}

void ns_spmm_naive(float *y, const ns_csr *a, const float *x, int64_t d) {
    for (int64_t i = 0; i < a->rows; i++) {
        for (int64_t j = 0; j < d; j++) {
            double s = 0;
            for (int64_t k = a->indptr[i]; k < a->indptr[i + 1]; k++)
                s += (double)a->values[k] * x[(int64_t)a->indices[k] * d + j];
            y[i * d + j] = (float)s;
        }
    }
}
