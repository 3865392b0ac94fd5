// test_sparse.c: CSR matrices (lib/graph/sparse.h) against dense computations, and
// the graph stream (lib/graph/graphdata.h): round trip and every invariant the
// reader must refuse with a message naming the record and the bad value.
// sanitize: yes (runs under ASan/UBSan in `make check-sanitize`)
//
// Dense references are computed in double. A product is compared element by
// element against 1e-5 of its condition scale sum_k |a_ik| |x_kj|, so that
// cancellation in mixed-sign sums cannot hide or fake an error.
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "graph/graphdata.h"
#include "base/rng.h"
#include "graph/sparse.h"

static ns_rng rng;

static float urand(float lo, float hi) { return lo + (hi - lo) * (float)ns_rng_uniform(&rng); }

static float *falloc(int64_t n) {
    float *p = calloc((size_t)(n > 0 ? n : 1), sizeof(float));
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    return p;
}

// A random R x C matrix of about density * R * C entries (drawn with
// repeats, summed), values in [-1, 1); dense copy in *dense.
static void random_csr(ns_csr *m, float **dense, int64_t rows, int64_t cols, double density) {
    int64_t n = (int64_t)(density * (double)rows * (double)cols);
    int32_t *ri = malloc((size_t)(n ? n : 1) * sizeof *ri);
    int32_t *ci = malloc((size_t)(n ? n : 1) * sizeof *ci);
    float *v = falloc(n);
    float *d = falloc(rows * cols);
    for (int64_t k = 0; k < n; k++) {
        ri[k] = (int32_t)ns_rng_below(&rng, (uint64_t)rows);
        ci[k] = (int32_t)ns_rng_below(&rng, (uint64_t)cols);
        v[k] = urand(-1, 1);
    }
    // The reference sums repeats in input order, as NS_DUP_SUM does.
    for (int64_t k = 0; k < n; k++) d[ri[k] * cols + ci[k]] += v[k];
    ns_err err;
    if (ns_csr_from_coo(m, rows, cols, n, ri, ci, v, NS_DUP_SUM, NULL, &err) < 0) {
        fprintf(stderr, "random_csr: %s\n", err.msg);
        exit(1);
    }
    free(ri);
    free(ci);
    free(v);
    *dense = d;
}

// Largest |y - ref| / (scale + 1e-30) where ref and scale are the dense
// product and its absolute-value product, both in double.
static double product_error(const float *y, const float *a, const float *x, int64_t r,
                            int64_t c, int64_t d, const float *acc) {
    double worst = 0;
    for (int64_t i = 0; i < r; i++) {
        for (int64_t j = 0; j < d; j++) {
            double s = acc ? acc[i * d + j] : 0, scale = acc ? fabs(acc[i * d + j]) : 0;
            for (int64_t k = 0; k < c; k++) {
                s += (double)a[i * c + k] * x[k * d + j];
                scale += fabs((double)a[i * c + k] * x[k * d + j]);
            }
            double e = fabs(y[i * d + j] - s) / (scale + 1e-30);
            if (fabs(y[i * d + j] - s) > 0 && e > worst) worst = e;
        }
    }
    return worst;
}

static int csr_equal(const ns_csr *a, const ns_csr *b) {
    return a->rows == b->rows && a->cols == b->cols && a->nnz == b->nnz &&
           memcmp(a->indptr, b->indptr, (size_t)(a->rows + 1) * sizeof *a->indptr) == 0 &&
           memcmp(a->indices, b->indices, (size_t)a->nnz * sizeof *a->indices) == 0 &&
           memcmp(a->values, b->values, (size_t)a->nnz * sizeof *a->values) == 0;
}

// --- SpMM ------------------------------------------------------------------------------
static void test_spmm(void) {
    const struct { int64_t r, c, d; double density; } cases[] = {
        {1, 1, 1, 1.0},    {5, 7, 3, 0.3},     {7, 5, 17, 0.6},   {64, 48, 8, 0.1},
        {48, 64, 33, 0.02}, {300, 200, 16, 0.01}, {200, 300, 64, 0.05}, {120, 120, 5, 0.5},
        {50, 1, 4, 0.5},   {1, 80, 9, 0.4},    {100, 100, 128, 0.0},
    };
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        int64_t r = cases[t].r, c = cases[t].c, d = cases[t].d;
        ns_csr a, at;
        float *ad;
        random_csr(&a, &ad, r, c, cases[t].density);
        ns_err err;
        CHECK(ns_csr_check(&a, NULL, NULL, &err) == 0, "COO build %lldx%lld is canonical", (long long)r, (long long)c);
        float *x = falloc(c * d), *y = falloc(r * d), *yn = falloc(r * d);
        for (int64_t i = 0; i < c * d; i++) x[i] = urand(-1, 1);
        ns_spmm_forward(y, &a, x, d);
        double e = product_error(y, ad, x, r, c, d, NULL);
        CHECK(e < 1e-5, "spmm %lldx%lld (density %.2f, %lld entries) x %lldx%lld: error %.2e",
              (long long)r, (long long)c, cases[t].density, (long long)a.nnz, (long long)c,
              (long long)d, e);
        ns_spmm_naive(yn, &a, x, d);
        e = product_error(yn, ad, x, r, c, d, NULL);
        CHECK(e < 1e-6, "naive spmm %lldx%lld: error %.2e", (long long)r, (long long)c, e);

        // Backward: dx = dx0 + A^T dy, through the transpose.
        float *dy = falloc(r * d), *dx = falloc(c * d), *dx0 = falloc(c * d), *adt = falloc(r * c);
        for (int64_t i = 0; i < r * d; i++) dy[i] = urand(-1, 1);
        for (int64_t i = 0; i < c * d; i++) dx[i] = dx0[i] = urand(-1, 1);
        for (int64_t i = 0; i < r; i++)
            for (int64_t j = 0; j < c; j++) adt[j * r + i] = ad[i * c + j];
        CHECK(ns_csr_transpose(&at, &a, &err) == 0, "transpose");
        ns_spmm_backward(dx, &at, dy, d);
        e = product_error(dx, adt, dy, c, r, d, dx0);
        CHECK(e < 1e-5, "spmm backward %lldx%lld: dx += A^T dy, error %.2e", (long long)r,
              (long long)c, e);
        ns_csr_free(&at);
        free(dy), free(dx), free(dx0), free(adt);
        free(x), free(y), free(yn), free(ad);
        ns_csr_free(&a);
    }
}

// --- structure ----------------------------------------------------------------------
static void test_transpose(void) {
    ns_err err;
    for (int t = 0; t < 4; t++) {
        int64_t r = 1 + (int64_t)ns_rng_below(&rng, 90), c = 1 + (int64_t)ns_rng_below(&rng, 90);
        ns_csr a, at, att;
        float *ad;
        random_csr(&a, &ad, r, c, 0.02 + 0.1 * t);
        CHECK(ns_csr_transpose(&at, &a, &err) == 0 && ns_csr_transpose(&att, &at, &err) == 0,
              "transpose twice");
        CHECK(ns_csr_check(&at, NULL, NULL, &err) == 0, "transpose is canonical");
        CHECK(csr_equal(&a, &att), "transpose twice is the identity (%lldx%lld, %lld entries)",
              (long long)r, (long long)c, (long long)a.nnz);
        float *td = falloc(r * c);
        ns_csr_to_dense(td, &at);
        int same = 1;
        for (int64_t i = 0; i < r; i++)
            for (int64_t j = 0; j < c; j++) same &= td[j * r + i] == ad[i * c + j];
        CHECK(same, "transpose matches the dense transpose");
        free(td), free(ad);
        ns_csr_free(&a), ns_csr_free(&at), ns_csr_free(&att);
    }
}

static void test_coo(void) {
    ns_err err;
    ns_csr m;
    int64_t where[2];
    // (0,1) three times, (2,0) twice, in scrambled order.
    int32_t ri[] = {2, 0, 1, 0, 2, 0, 1};
    int32_t ci[] = {0, 1, 2, 1, 0, 1, 0};
    float v[] = {1, 2, 3, 4, 5, 6, 7};
    CHECK(ns_csr_from_coo(&m, 3, 3, 7, ri, ci, v, NS_DUP_SUM, where, &err) == 0, "COO with duplicates, summed");
    int64_t ip[] = {0, 1, 3, 4};
    int32_t ix[] = {1, 0, 2, 0};
    float vx[] = {12, 7, 3, 6};
    CHECK(m.nnz == 4 && memcmp(m.indptr, ip, sizeof ip) == 0 && memcmp(m.indices, ix, sizeof ix) == 0 &&
              memcmp(m.values, vx, sizeof vx) == 0,
          "duplicates merged by sum, rows sorted by column");
    ns_csr_free(&m);
    int rc = ns_csr_from_coo(&m, 3, 3, 7, ri, ci, v, NS_DUP_REFUSE, where, &err);
    CHECK(rc < 0 && where[0] == 1 && where[1] == 3 && strstr(err.msg, "duplicate entry (0, 1) at positions 1 and 3"),
          "duplicates refused, first repeat named: %s", err.msg);
    int32_t bad[] = {0, 3};
    rc = ns_csr_from_coo(&m, 3, 3, 2, ri, bad, NULL, NS_DUP_SUM, where, &err);
    CHECK(rc < 0 && where[0] == 1 && strstr(err.msg, "column 3 out of range (0..2)"),
          "COO index out of range: %s", err.msg);
    CHECK(ns_csr_from_coo(&m, 4, 2, 0, NULL, NULL, NULL, NS_DUP_REFUSE, NULL, &err) == 0 &&
              m.nnz == 0 && m.indptr[4] == 0,
          "empty COO gives an empty matrix");
    ns_csr_free(&m);

    // Dense round trip.
    float dd[] = {0, 1.5f, 0, -2, 0, 0, 0, 0, 3};
    float back[9];
    CHECK(ns_csr_from_dense(&m, dd, 3, 3, &err) == 0 && m.nnz == 3, "from dense keeps the non-zeros");
    ns_csr_to_dense(back, &m);
    CHECK(memcmp(back, dd, sizeof dd) == 0, "dense -> CSR -> dense is exact");
    ns_csr_free(&m);
}

static void test_check(void) {
    ns_err err;
    ns_csr m;
    int32_t ri[] = {0, 0, 1, 2}, ci[] = {0, 2, 1, 2};
    ns_csr_from_coo(&m, 3, 3, 4, ri, ci, NULL, NS_DUP_REFUSE, NULL, &err);
    CHECK(ns_csr_check(&m, "p", "x", &err) == 0, "canonical matrix passes");
    m.indices[1] = 0;
    CHECK(ns_csr_check(&m, "p", "x", &err) < 0 && strstr(err.msg, "x[1]: column 0 after 0 in row 0"),
          "duplicate column refused: %s", err.msg);
    m.indices[1] = 3;
    CHECK(ns_csr_check(&m, "p", "x", &err) < 0 && strstr(err.msg, "x[1]: column 3 out of range (0..2) in row 0"),
          "column out of range refused: %s", err.msg);
    m.indices[1] = 2;
    m.indptr[1] = 3; // row 0 now runs into row 1's column 1
    CHECK(ns_csr_check(&m, "p", "x", &err) < 0 && strstr(err.msg, "x[2]: column 1 after 2 in row 0"),
          "unsorted row refused: %s", err.msg);
    m.indptr[1] = 2;
    m.indptr[2] = 1;
    CHECK(ns_csr_check(&m, "p", "x", &err) < 0 && strstr(err.msg, "p[2]: 1 after 2 (must not decrease)"),
          "decreasing indptr refused: %s", err.msg);
    m.indptr[2] = 3;
    m.indptr[3] = 3;
    CHECK(ns_csr_check(&m, "p", "x", &err) < 0 && strstr(err.msg, "p[3]: ends at 3 but x has 4 entries"),
          "indptr end refused: %s", err.msg);
    ns_csr_free(&m);
}

// Dense A (n x n) in double helpers for the graph operations.
static void test_symmetric_ops(void) {
    ns_err err;
    for (int t = 0; t < 3; t++) {
        int64_t n = 5 + 20 * t;
        ns_csr a, s, l, g;
        float *ad;
        random_csr(&a, &ad, n, n, 0.15);
        for (int64_t k = 0; k < a.nnz; k++) a.values[k] = fabsf(a.values[k]) + 0.1f;
        ns_csr_to_dense(ad, &a);

        // MAX and SUM against dense.
        float *sd = falloc(n * n);
        CHECK(ns_csr_symmetrize(&s, &a, NS_SYM_SUM, &err) == 0, "symmetrize (sum)");
        ns_csr_to_dense(sd, &s);
        int ok = ns_csr_check(&s, NULL, NULL, &err) == 0;
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < n; j++) ok &= sd[i * n + j] == ad[i * n + j] + ad[j * n + i];
        CHECK(ok, "symmetrize (sum) is A + A^T (n=%lld)", (long long)n);
        CHECK(ns_csr_is_symmetric(&s, NULL, &err) == 1, "A + A^T is symmetric");
        ns_csr_free(&s);
        CHECK(ns_csr_symmetrize(&s, &a, NS_SYM_MAX, &err) == 0, "symmetrize (max)");
        ns_csr_to_dense(sd, &s);
        ok = 1;
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < n; j++)
                ok &= sd[i * n + j] == fmaxf(ad[i * n + j], ad[j * n + i]);
        CHECK(ok, "symmetrize (max) is max(A, A^T) for positive weights");
        ns_csr_free(&s);

        // Self loops.
        CHECK(ns_csr_add_self_loops(&l, &a, 2.0f, NS_LOOPS_ADD, &err) == 0, "self loops (add)");
        ns_csr_to_dense(sd, &l);
        ok = ns_csr_check(&l, NULL, NULL, &err) == 0;
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < n; j++)
                ok &= sd[i * n + j] == ad[i * n + j] + (i == j ? 2.0f : 0.0f);
        CHECK(ok, "self loops (add) is A + 2I");
        ns_csr_free(&l);
        CHECK(ns_csr_add_self_loops(&l, &a, 2.0f, NS_LOOPS_FILL, &err) == 0, "self loops (fill)");
        ns_csr_to_dense(sd, &l);
        ok = 1;
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < n; j++)
                ok &= sd[i * n + j] == (i == j && ad[i * n + j] == 0 ? 2.0f : ad[i * n + j]);
        CHECK(ok, "self loops (fill) only where missing");
        ns_csr_free(&l);

        // GCN normalisation against D^-1/2 (A+I) D^-1/2 in double.
        CHECK(ns_csr_gcn_norm(&g, &a, &err) == 0, "gcn norm");
        ns_csr_to_dense(sd, &g);
        double *deg = calloc((size_t)n, sizeof *deg), worst = 0;
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < n; j++) deg[i] += ad[i * n + j] + (i == j);
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < n; j++) {
                double ref = (ad[i * n + j] + (i == j)) / sqrt(deg[i] * deg[j]);
                double e = fabs(sd[i * n + j] - ref) / (fabs(ref) + 1e-30);
                if (ref != 0 && e > worst) worst = e;
                if (ref == 0 && sd[i * n + j] != 0) worst = 1;
            }
        CHECK(worst < 1e-6, "gcn norm matches dense D^-1/2 (A+I) D^-1/2: error %.2e", worst);
        ns_csr_free(&g);

        // Row normalisation.
        CHECK(ns_csr_copy(&g, &a, &err) == 0, "copy");
        ns_csr_normalize_rows(&g);
        ns_csr_to_dense(sd, &g);
        worst = 0;
        for (int64_t i = 0; i < n; i++) {
            double rs = 0;
            for (int64_t j = 0; j < n; j++) rs += ad[i * n + j];
            for (int64_t j = 0; j < n; j++) {
                double ref = rs ? ad[i * n + j] / rs : 0;
                double e = fabs(sd[i * n + j] - ref) / (fabs(ref) + 1e-30);
                if (ref != 0 && e > worst) worst = e;
            }
        }
        CHECK(worst < 1e-6, "row normalisation matches dense D^-1 A: error %.2e", worst);
        ns_csr_free(&g);
        free(deg), free(sd), free(ad);
        ns_csr_free(&a);
    }

    // Strict symmetrisation: equal mirrors pass, different ones are named.
    int32_t ri[] = {0, 1, 1, 2}, ci[] = {1, 0, 2, 1};
    float v[] = {1, 1, 0.5f, 0.25f};
    ns_csr a, s;
    ns_csr_from_coo(&a, 3, 3, 4, ri, ci, v, NS_DUP_REFUSE, NULL, &err);
    int64_t at[2];
    CHECK(ns_csr_is_symmetric(&a, at, &err) == 0 && at[0] == 1 && at[1] == 2,
          "asymmetric pair found at (%lld, %lld)", (long long)at[0], (long long)at[1]);
    CHECK(ns_csr_symmetrize(&s, &a, NS_SYM_STRICT, &err) < 0 &&
              strstr(err.msg, "entries (1, 2) = 0.5 and (2, 1) = 0.25 differ"),
          "strict symmetrisation refuses different mirrors: %s", err.msg);
    a.values[3] = 0.5f;
    CHECK(ns_csr_symmetrize(&s, &a, NS_SYM_STRICT, &err) == 0 && csr_equal(&s, &a),
          "strict symmetrisation of a symmetric matrix is the identity");
    ns_csr_free(&s);
    ns_csr_free(&a);

    // Isolated node: zero degree gives zero factors, no NaN.
    int32_t r1[] = {0}, c1[] = {1};
    ns_csr_from_coo(&a, 3, 3, 1, r1, c1, NULL, NS_DUP_REFUSE, NULL, &err);
    CHECK(ns_csr_normalize_sym(&a, &err) == 0 && a.values[0] == 0.0f,
          "symmetric normalisation with a zero degree gives 0, not NaN (%g)", (double)a.values[0]);
    ns_csr_free(&a);
    ns_csr sq;
    ns_csr_alloc(&sq, 2, 3, 0, &err);
    CHECK(ns_csr_gcn_norm(&s, &sq, &err) < 0 && strstr(err.msg, "square"), "gcn norm needs a square matrix: %s", err.msg);
    ns_csr_free(&sq);
}

// --- threads --------------------------------------------------------------------------
static void test_threads(void) {
    ns_err err;
    int64_t r = 1500, c = 1200, d = 48;
    ns_csr a1, a2, at;
    // Enough entries that the parallel sort in ns_csr_from_coo engages too.
    int64_t n = 200000;
    int32_t *ri = malloc((size_t)n * sizeof *ri), *ci = malloc((size_t)n * sizeof *ci);
    float *v = falloc(n);
    for (int64_t k = 0; k < n; k++) {
        ri[k] = (int32_t)ns_rng_below(&rng, (uint64_t)r);
        ci[k] = (int32_t)ns_rng_below(&rng, (uint64_t)c);
        v[k] = urand(-1, 1);
    }
    omp_set_num_threads(1);
    ns_csr_from_coo(&a1, r, c, n, ri, ci, v, NS_DUP_SUM, NULL, &err);
    omp_set_num_threads(2);
    ns_csr_from_coo(&a2, r, c, n, ri, ci, v, NS_DUP_SUM, NULL, &err);
    CHECK(csr_equal(&a1, &a2), "COO build bit-identical on 1 and 2 threads");
    free(ri), free(ci), free(v);

    float *x = falloc(c * d), *y1 = falloc(r * d), *y2 = falloc(r * d);
    float *dy = falloc(r * d), *dx1 = falloc(c * d), *dx2 = falloc(c * d);
    for (int64_t i = 0; i < c * d; i++) x[i] = urand(-1, 1);
    for (int64_t i = 0; i < r * d; i++) dy[i] = urand(-1, 1);
    ns_csr_transpose(&at, &a1, &err);
    omp_set_num_threads(1);
    ns_spmm_forward(y1, &a1, x, d);
    ns_spmm_backward(dx1, &at, dy, d);
    omp_set_num_threads(2);
    ns_spmm_forward(y2, &a1, x, d);
    ns_spmm_backward(dx2, &at, dy, d);
    CHECK(memcmp(y1, y2, (size_t)(r * d) * sizeof *y1) == 0,
          "spmm forward bit-identical on 1 and 2 threads (%lld entries, D=%lld)", (long long)a1.nnz, (long long)d);
    CHECK(memcmp(dx1, dx2, (size_t)(c * d) * sizeof *dx1) == 0, "spmm backward bit-identical on 1 and 2 threads");
    free(x), free(y1), free(y2), free(dy), free(dx1), free(dx2);
    ns_csr_free(&a1), ns_csr_free(&a2), ns_csr_free(&at);
}

// --- graph streams ----------------------------------------------------------------------
// A 5-node undirected path 0-1-2-3-4 plus a self loop at 4, 3 features, 2 classes.
static void small_graph(ns_graph *g, int sparse) {
    ns_err err;
    memset(g, 0, sizeof *g);
    g->nodes = 5;
    g->classes = 2;
    g->undirected = 1;
    int32_t ri[] = {0, 1, 1, 2, 2, 3, 3, 4, 4}, ci[] = {1, 0, 2, 1, 3, 2, 4, 3, 4};
    ns_csr_from_coo(&g->adj, 5, 5, 9, ri, ci, NULL, NS_DUP_REFUSE, NULL, &err);
    g->feature_dim = 3;
    float x[15];
    for (int i = 0; i < 15; i++) x[i] = (i % 4 == 0) ? 0.0f : (float)i * 0.5f;
    if (sparse) {
        g->sparse_features = 1;
        ns_csr_from_dense(&g->sfeatures, x, 5, 3, &err);
    } else {
        g->features = ns_aligned_alloc(sizeof x);
        memcpy(g->features, x, sizeof x);
    }
    g->labels = malloc(5 * sizeof *g->labels);
    int32_t y[] = {0, 1, 1, -1, 0};
    memcpy(g->labels, y, sizeof y);
    g->class_names = malloc(2 * sizeof *g->class_names);
    g->class_names[0] = strdup("left");
    g->class_names[1] = strdup("right");
    g->source = strdup("test");
    for (int s = 0; s < NS_SPLIT_COUNT; s++) g->masks[s] = calloc(5, 1);
    g->masks[NS_SPLIT_TRAIN][0] = g->masks[NS_SPLIT_TRAIN][1] = 1;
    g->masks[NS_SPLIT_VAL][2] = 1;
    g->masks[NS_SPLIT_TEST][4] = 1;
}

// Writes g to a temp file and reads it back into *back.
static int round_trip(const ns_graph *g, ns_graph *back, ns_err *err) {
    char path[] = "/tmp/ns_test_graph_XXXXXX";
    int fd = mkstemp(path);
    FILE *f = fdopen(fd, "wb");
    ns_writer w;
    ns_writer_init(&w, f);
    int rc = ns_graph_write(&w, g, "test_sparse", err);
    ns_writer_free(&w);
    fclose(f);
    if (rc == 0) rc = ns_graph_load(path, back, err);
    unlink(path);
    return rc;
}

static int graphs_equal(const ns_graph *a, const ns_graph *b) {
    int ok = a->nodes == b->nodes && a->classes == b->classes && a->undirected == b->undirected &&
             a->weighted == b->weighted && a->feature_dim == b->feature_dim &&
             a->sparse_features == b->sparse_features && csr_equal(&a->adj, &b->adj) &&
             strcmp(a->source, b->source) == 0 &&
             memcmp(a->labels, b->labels, (size_t)a->nodes * sizeof *a->labels) == 0;
    for (int64_t c = 0; ok && c < a->classes; c++) ok = strcmp(a->class_names[c], b->class_names[c]) == 0;
    for (int s = 0; ok && s < NS_SPLIT_COUNT; s++) ok = memcmp(a->masks[s], b->masks[s], (size_t)a->nodes) == 0;
    if (ok && a->sparse_features) ok = csr_equal(&a->sfeatures, &b->sfeatures);
    else if (ok) ok = memcmp(a->features, b->features, (size_t)(a->nodes * a->feature_dim) * sizeof(float)) == 0;
    return ok;
}

static void test_graph_round_trip(void) {
    ns_err err;
    for (int sparse = 0; sparse < 2; sparse++) {
        ns_graph g, back;
        small_graph(&g, sparse);
        CHECK(ns_graph_validate(&g, &err) == 0, "small graph is valid: %s", ns_graph_validate(&g, &err) ? err.msg : "");
        int rc = round_trip(&g, &back, &err);
        CHECK(rc == 0, "graph round trip (%s features)%s%s", sparse ? "sparse" : "dense", rc ? ": " : "", rc ? err.msg : "");
        CHECK(rc == 0 && graphs_equal(&g, &back), "graph read back equals the graph written");
        float *dense = NULL;
        if (rc == 0 && ns_graph_dense_features(&back, &dense, &err) == 0)
            CHECK(dense[0] == 0 && dense[1] == 0.5f && dense[14] == 7.0f, "dense features of %s storage",
                  sparse ? "sparse" : "dense");
        free(dense);
        CHECK(ns_graph_split_size(&back, NS_SPLIT_TRAIN) == 2 && ns_graph_split_size(&back, NS_SPLIT_TEST) == 1,
              "split sizes");
        ns_graph_free(&g);
        ns_graph_free(&back);
    }
}

// Each case breaks one invariant of the small graph; the writer refuses (it
// validates first) and so does a direct validation, with the expected text.
static void test_graph_invalid(void) {
    const char *expect[] = {
        "graph.indices[2]: column 0 after 0 in row 1",
        "graph.weights[0]: 2 in a graph without weights",
        "graph.undirected is true but edges 0 -> 1 and 1 -> 0 differ",
        "graph.labels[2]: label 2 out of range (0..1, or -1 for unlabelled)",
        "graph.train[3]: node in the split is unlabelled (label -1)",
        "graph.val[1]: 2 (a mask holds 0 or 1)",
        "graph.features[1, 1]: not finite (nan)",
        "graph.features.indices[0]: column 5 out of range (0..2) in row 0",
        "graph.train: a split without labels (graph.labels)",
        "graph.nodes: 0 (must be 1 to",
    };
    int ncase = (int)(sizeof expect / sizeof expect[0]);
    for (int c = 0; c < ncase; c++) {
        ns_graph g;
        small_graph(&g, c == 7);
        switch (c) {
        case 0: g.adj.indices[2] = 0; break;
        case 1: g.adj.values[0] = 2; break;
        case 2: g.adj.values[0] = 1; g.weighted = 1; g.adj.values[1] = 0.5f; break;
        case 3: g.labels[2] = 2; break;
        case 4: g.masks[NS_SPLIT_TRAIN][3] = 1; break;
        case 5: g.masks[NS_SPLIT_VAL][1] = 2; break;
        case 6: g.features[4] = NAN; break;
        case 7: g.sfeatures.indices[0] = 5; break;
        case 8: free(g.labels); g.labels = NULL; break;
        case 9: g.nodes = 0; break;
        }
        ns_err err = {{0}};
        ns_graph back;
        int rc = round_trip(&g, &back, &err);
        CHECK(rc < 0 && strstr(err.msg, expect[c]), "invalid graph %d refused: %s", c, err.msg);
        if (c == 9) g.nodes = 5;
        ns_graph_free(&g);
    }
}

// Streams a reader must refuse: hand-written records around a valid graph.
static int read_records(void (*fill)(ns_writer *), ns_graph *g, ns_err *err) {
    char path[] = "/tmp/ns_test_graph_XXXXXX";
    int fd = mkstemp(path);
    FILE *f = fdopen(fd, "wb");
    ns_writer w;
    ns_writer_init(&w, f);
    fill(&w);
    ns_writer_free(&w);
    fclose(f);
    int rc = ns_graph_load(path, g, err);
    unlink(path);
    return rc;
}

static int stream_case;

static void write_meta(ns_writer *w, int64_t nodes, int64_t classes) {
    ns_err err;
    ns_map m;
    ns_map_init(&m);
    ns_map_i64(&m, "graph.nodes", nodes);
    ns_map_i64(&m, "graph.classes", classes);
    ns_write_meta(w, "graph", &m, &err);
    ns_map_free(&m);
}

static void write_arr(ns_writer *w, const char *name, ns_dtype dt, int64_t n, const void *data) {
    ns_err err;
    ns_tensor t;
    ns_tensor_alloc(&t, dt, 1, &n, &err);
    memcpy(t.data, data, (size_t)n * ns_dtypes[dt].size);
    ns_write_tensor(w, name, &t, NULL, &err);
    ns_tensor_free(&t);
}

// 3 nodes, edges 0->1, 1->2 (directed).
static void fill_stream(ns_writer *w) {
    int64_t indptr[] = {0, 1, 2, 2};
    int64_t indices64[] = {1, 2};
    int32_t indices[] = {1, 2};
    int32_t labels[] = {0, 1, 1};
    uint8_t mask[] = {1, 0, 3};
    switch (stream_case) {
    case 0: // valid, i64 indices and an unrelated record in between
        write_meta(w, 3, 2);
        write_arr(w, "other", NS_F32, 1, (float[]){1});
        write_arr(w, "graph.indptr", NS_I64, 4, indptr);
        write_arr(w, "graph.indices", NS_I64, 2, indices64);
        write_arr(w, "graph.labels", NS_I32, 3, labels);
        break;
    case 1: // tensor before the meta record
        write_arr(w, "graph.indptr", NS_I64, 4, indptr);
        write_meta(w, 3, 2);
        break;
    case 2: // indptr of the wrong length
        write_meta(w, 3, 2);
        write_arr(w, "graph.indptr", NS_I64, 3, indptr);
        break;
    case 3: // node out of range, given as i64
        write_meta(w, 3, 2);
        write_arr(w, "graph.indptr", NS_I64, 4, indptr);
        indices64[1] = 5000000000;
        write_arr(w, "graph.indices", NS_I64, 2, indices64);
        break;
    case 4: // indices twice
        write_meta(w, 3, 2);
        write_arr(w, "graph.indptr", NS_I64, 4, indptr);
        write_arr(w, "graph.indices", NS_I32, 2, indices);
        write_arr(w, "graph.indices", NS_I32, 2, indices);
        break;
    case 5: // wrong dtype for indices
        write_meta(w, 3, 2);
        write_arr(w, "graph.indices", NS_F32, 2, (float[]){1, 2});
        break;
    case 6: // mask value 3
        write_meta(w, 3, 2);
        write_arr(w, "graph.indptr", NS_I64, 4, indptr);
        write_arr(w, "graph.indices", NS_I32, 2, indices);
        write_arr(w, "graph.labels", NS_I32, 3, labels);
        write_arr(w, "graph.train", NS_U8, 3, mask);
        break;
    case 7: // no adjacency
        write_meta(w, 3, 2);
        break;
    case 8: // two graphs
        write_meta(w, 3, 2);
        write_meta(w, 3, 2);
        break;
    case 9: // indptr ends short of the entries
        write_meta(w, 3, 2);
        indptr[3] = 1;
        indptr[2] = 1;
        write_arr(w, "graph.indptr", NS_I64, 4, indptr);
        write_arr(w, "graph.indices", NS_I32, 2, indices);
        break;
    case 10: // weights of the wrong length
        write_meta(w, 3, 2);
        write_arr(w, "graph.indptr", NS_I64, 4, indptr);
        write_arr(w, "graph.indices", NS_I32, 2, indices);
        write_arr(w, "graph.weights", NS_F32, 1, (float[]){1});
        break;
    case 11: // no graph at all
        write_arr(w, "x", NS_F32, 1, (float[]){1});
        break;
    }
}

static void test_graph_streams(void) {
    const char *expect[] = {
        NULL,
        "graph.indptr: comes before the graph's meta record",
        "graph.indptr: shape 3 (expected 4: graph.nodes + 1)",
        "graph.indices[1]: node 5000000000 out of range (0..2)",
        "graph.indices: given twice (records 2 and 3)",
        "graph.indices: dtype f32 (must be i32 or i64)",
        "graph.train[2]: 3 (a mask holds 0 or 1)",
        "no adjacency (graph.indptr and graph.indices are required)",
        "record 1: a second graph",
        "graph.indptr[3]: ends at 1 but graph.indices has 2 entries",
        "graph.weights: 1 values for 2 entries (graph.indices)",
        "no graph in the stream",
    };
    for (stream_case = 0; stream_case < (int)(sizeof expect / sizeof expect[0]); stream_case++) {
        ns_graph g;
        ns_err err = {{0}};
        int rc = read_records(fill_stream, &g, &err);
        if (!expect[stream_case]) {
            CHECK(rc == 0 && g.nodes == 3 && g.adj.nnz == 2 && g.adj.indices[1] == 2 && g.labels[2] == 1 &&
                      !g.weighted && g.adj.values[0] == 1.0f,
                  "valid stream with i64 indices and a foreign record reads%s%s", rc ? ": " : "", rc ? err.msg : "");
        } else {
            CHECK(rc < 0 && strstr(err.msg, expect[stream_case]) && strstr(err.msg, "/tmp/ns_test_graph_"),
                  "stream case %d refused, naming the file: %s", stream_case, err.msg);
        }
        ns_graph_free(&g);
    }
}

int main(void) {
    ns_rng_seed(&rng, 20241128);
    test_spmm();
    test_transpose();
    test_coo();
    test_check();
    test_symmetric_ops();
    test_threads();
    test_graph_round_trip();
    test_graph_invalid();
    test_graph_streams();
    return check_done();
}
