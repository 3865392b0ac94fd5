// test_knn.c: the tiled kNN search (lib/graph/knn.h) against the naive O(N^2 D)
// search, and the kNN graph (union, mutual, weights) against hand-worked
// answers and its invariants (symmetric, canonical, no self loops).
//
// Exact agreement, tie order included, is checked on small-integer data
// where float arithmetic is exact (every score is an integer), with N over
// two tiles so that diagonal, off-diagonal and short tiles all take part;
// random gaussian data checks cosine, where the two searches round
// differently, against the naive scores.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "graph/knn.h"
#include "base/rng.h"
#include "graph/sparse.h"

static ns_rng rng;

static void *xalloc(size_t n) {
    void *p = calloc(n ? n : 1, 1);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    return p;
}

static float *small_ints(int64_t n, int64_t d, int levels) {
    float *x = xalloc((size_t)(n * d) * sizeof *x);
    for (int64_t i = 0; i < n * d; i++) x[i] = (float)ns_rng_below(&rng, (uint64_t)levels);
    return x;
}

// Exact agreement of the tiled and the naive search.
static void exact_agreement(int64_t n, int64_t d, int64_t k, int levels, ns_knn_metric metric, const char *what) {
    float *x = small_ints(n, d, levels);
    int32_t *fi = xalloc((size_t)(n * k) * sizeof *fi), *ni = xalloc((size_t)(n * k) * sizeof *ni);
    float *fs = xalloc((size_t)(n * k) * sizeof *fs), *ns = xalloc((size_t)(n * k) * sizeof *ns);
    ns_err err = {{0}};
    int a = ns_knn_search(x, n, d, k, metric, fi, fs, &err);
    int b = ns_knn_naive(x, n, d, k, metric, ni, ns, &err);
    int64_t index_diff = 0, score_diff = 0, self = 0;
    for (int64_t e = 0; e < n * k; e++) {
        index_diff += fi[e] != ni[e];
        score_diff += fs[e] != ns[e];
        self += fi[e] == e / k;
    }
    CHECK(a == 0 && b == 0, "%s: both searches ran", what);
    CHECK(index_diff == 0 && score_diff == 0, "%s, N %lld, D %lld, k %lld: tiled = naive, ties to the smaller index (%lld indices, %lld scores differ)",
          what, (long long)n, (long long)d, (long long)k, (long long)index_diff, (long long)score_diff);
    CHECK(self == 0, "%s: no point is its own neighbour (%lld)", what, (long long)self);
    // The order, checked from the definition and not through the searches'
    // shared comparison: scores never decrease, equal scores list ascending
    // indices, and a point left out at the k-th score has a larger index
    // than every listed one with that score.
    int64_t misordered = 0;
    for (int64_t i = 0; i < n; i++) {
        const int32_t *row = fi + i * k;
        const float *sc = fs + i * k;
        for (int64_t t = 1; t < k; t++)
            if (metric == NS_KNN_EUCLIDEAN ? sc[t] < sc[t - 1] || (sc[t] == sc[t - 1] && row[t] < row[t - 1]) : 0)
                misordered++;
        for (int64_t j = 0; j < n; j++) {
            int listed = j == i;
            for (int64_t t = 0; t < k; t++) listed |= row[t] == j;
            if (listed) continue;
            double dist = 0;
            for (int64_t f = 0; f < d; f++) dist += ((double)x[i * d + f] - x[j * d + f]) * ((double)x[i * d + f] - x[j * d + f]);
            if (dist < sc[k - 1] || (dist == sc[k - 1] && j < row[k - 1])) misordered++;
        }
    }
    if (metric == NS_KNN_EUCLIDEAN)
        CHECK(misordered == 0, "%s: best first, ties to the smaller index, by the definition (%lld violations)", what,
              (long long)misordered);
    free(x), free(fi), free(ni), free(fs), free(ns);
}

// Cosine on random data: every neighbour the tiled search finds scores, by
// the naive double-precision formula, at least the naive k-th best.
static void cosine_random(void) {
    int64_t n = 1100, d = 24, k = 8;
    float *x = xalloc((size_t)(n * d) * sizeof *x);
    for (int64_t i = 0; i < n * d; i++) x[i] = (float)ns_rng_normal(&rng);
    for (int64_t f = 0; f < d; f++) x[5 * d + f] = 0; // a zero vector scores 0 to all
    int32_t *fi = xalloc((size_t)(n * k) * sizeof *fi), *ni = xalloc((size_t)(n * k) * sizeof *ni);
    float *fs = xalloc((size_t)(n * k) * sizeof *fs), *ns = xalloc((size_t)(n * k) * sizeof *ns);
    ns_err err = {{0}};
    ns_knn_search(x, n, d, k, NS_KNN_COSINE, fi, fs, &err);
    ns_knn_naive(x, n, d, k, NS_KNN_COSINE, ni, ns, &err);
    int64_t same = 0, worse = 0, unsorted = 0;
    double max_score_err = 0;
    for (int64_t i = 0; i < n; i++) {
        for (int64_t t = 0; t < k; t++) {
            int64_t j = fi[i * k + t];
            double dot = 0, a = 0, b = 0;
            for (int64_t f = 0; f < d; f++)
                dot += (double)x[i * d + f] * x[j * d + f], a += (double)x[i * d + f] * x[i * d + f],
                    b += (double)x[j * d + f] * x[j * d + f];
            double cos = a > 0 && b > 0 ? dot / sqrt(a * b) : 0;
            if (cos < ns[i * k + k - 1] - 1e-5) worse++;
            if (fabs(cos - fs[i * k + t]) > max_score_err) max_score_err = fabs(cos - fs[i * k + t]);
            if (t && fs[i * k + t] > fs[i * k + t - 1]) unsorted++;
            same += fi[i * k + t] == ni[i * k + t];
        }
    }
    CHECK(worse == 0, "cosine: every neighbour found is among the naive k best (%lld are not)", (long long)worse);
    CHECK(max_score_err < 1e-5, "cosine: reported scores match the naive formula (max error %.2e)", max_score_err);
    CHECK(unsorted == 0, "cosine: best first (%lld out of order)", (long long)unsorted);
    CHECK(same >= n * k * 99 / 100, "cosine: %lld of %lld neighbour slots agree with the naive search", (long long)same,
          (long long)(n * k));
    CHECK(fs[5 * k] == 0.0f, "cosine: the zero vector's best score is 0 (%g)", fs[5 * k]);
    free(x), free(fi), free(ni), free(fs), free(ns);
}

static void dump_row(const ns_csr *a, char *buf, size_t cap) {
    size_t at = 0;
    for (int64_t i = 0; i <= a->rows && at < cap; i++) at += (size_t)snprintf(buf + at, cap - at, "%lld ", (long long)a->indptr[i]);
    for (int64_t e = 0; e < a->nnz && at < cap; e++) at += (size_t)snprintf(buf + at, cap - at, "%s%d", e ? " " : "| ", a->indices[e]);
}

// 1-D points 0, 1, 3, 7 with k = 1: 0 -> 1, 1 -> 0, 3 -> 1, 7 -> 3.
static void hand_worked(void) {
    float x[4] = {0, 1, 3, 7};
    int32_t idx[4];
    float s[4];
    ns_err err = {{0}};
    ns_knn_search(x, 4, 1, 1, NS_KNN_EUCLIDEAN, idx, s, &err);
    CHECK(idx[0] == 1 && idx[1] == 0 && idx[2] == 1 && idx[3] == 2, "1-D: nearest of 0 1 3 7 are %d %d %d %d", idx[0],
          idx[1], idx[2], idx[3]);
    CHECK(s[0] == 1 && s[1] == 1 && s[2] == 4 && s[3] == 16, "1-D: squared distances 1 1 4 16 (%g %g %g %g)", s[0], s[1],
          s[2], s[3]);
    ns_csr u, m;
    char a[256], b[256];
    ns_knn_graph(&u, idx, s, 4, 1, NS_KNN_EUCLIDEAN, 0, 0, &err);
    ns_knn_graph(&m, idx, s, 4, 1, NS_KNN_EUCLIDEAN, 1, 0, &err);
    dump_row(&u, a, sizeof a);
    dump_row(&m, b, sizeof b);
    CHECK(strcmp(a, "0 1 3 5 6 | 1 0 2 1 3 2") == 0, "union: the path 0-1-3-7 (%s)", a);
    CHECK(strcmp(b, "0 1 2 2 2 | 1 0") == 0, "mutual: only 0-1 (%s)", b);
    ns_csr_free(&u);
    // Weighted: exp(-d^2 / mean d^2), mean (1 + 1 + 4 + 16) / 4 = 5.5.
    ns_knn_graph(&u, idx, s, 4, 1, NS_KNN_EUCLIDEAN, 0, 1, &err);
    double want[6] = {exp(-1 / 5.5), exp(-1 / 5.5), exp(-4 / 5.5), exp(-4 / 5.5), exp(-16 / 5.5), exp(-16 / 5.5)};
    double worst = 0;
    for (int e = 0; e < 6; e++) worst = fmax(worst, fabs(u.values[e] - want[e]));
    CHECK(u.nnz == 6 && worst < 1e-6, "weighted euclidean: heat-kernel weights (max error %.1e)", worst);
    ns_csr_free(&u);
    ns_csr_free(&m);
}

// Invariants of the graph on random data: symmetric, canonical, no loops;
// union holds every listed pair, mutual exactly the pairs listed both ways.
static void graph_invariants(void) {
    int64_t n = 600, d = 6, k = 5;
    float *x = xalloc((size_t)(n * d) * sizeof *x);
    for (int64_t i = 0; i < n * d; i++) x[i] = (float)ns_rng_normal(&rng);
    int32_t *idx = xalloc((size_t)(n * k) * sizeof *idx);
    float *s = xalloc((size_t)(n * k) * sizeof *s);
    ns_err err = {{0}};
    ns_knn_search(x, n, d, k, NS_KNN_COSINE, idx, s, &err);
    // listed[i * n + j]: j is among i's neighbours
    uint8_t *listed = xalloc((size_t)(n * n));
    for (int64_t e = 0; e < n * k; e++) listed[(e / k) * n + idx[e]] = 1;
    for (int mutual = 0; mutual < 2; mutual++) {
        ns_csr g;
        int rc = ns_knn_graph(&g, idx, s, n, k, NS_KNN_COSINE, mutual, 1, &err);
        int64_t at[2];
        int sym = rc == 0 ? ns_csr_is_symmetric(&g, at, &err) : 0;
        int canonical = rc == 0 && ns_csr_check(&g, NULL, NULL, &err) == 0;
        int64_t loops = 0, wrong = 0, expected = 0, bad_weight = 0;
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < n; j++) {
                int want = mutual ? listed[i * n + j] && listed[j * n + i] : listed[i * n + j] || listed[j * n + i];
                expected += want;
            }
        for (int64_t i = 0; rc == 0 && i < n; i++)
            for (int64_t e = g.indptr[i]; e < g.indptr[i + 1]; e++) {
                int64_t j = g.indices[e];
                loops += j == i;
                int want = mutual ? listed[i * n + j] && listed[j * n + i] : listed[i * n + j] || listed[j * n + i];
                wrong += !want;
                // the weight: i's (or j's) listed cosine, clamped at 0
                float w = -1;
                for (int64_t t = 0; t < k; t++) {
                    if (idx[i * k + t] == j) w = s[i * k + t];
                    if (idx[j * k + t] == i) w = s[j * k + t];
                }
                if (g.values[e] != (w > 0 ? w : 0)) bad_weight++;
            }
        const char *what = mutual ? "mutual" : "union";
        CHECK(rc == 0 && sym == 1 && canonical, "%s graph: built, symmetric and canonical", what);
        CHECK(loops == 0, "%s graph: no self loops (%lld)", what, (long long)loops);
        CHECK(wrong == 0 && g.nnz == expected, "%s graph: exactly the pairs listed %s (%lld entries, %lld expected, %lld wrong)",
              what, mutual ? "both ways" : "either way", (long long)g.nnz, (long long)expected, (long long)wrong);
        CHECK(bad_weight == 0, "%s graph: weights are the clamped cosine of the pair (%lld differ)", what,
              (long long)bad_weight);
        ns_csr_free(&g);
    }
    free(x), free(idx), free(s), free(listed);
}

static void bad_arguments(void) {
    float x[6] = {0, 1, 2, 3, 4, 5};
    int32_t idx[6];
    float s[6];
    ns_err err = {{0}};
    int rc = ns_knn_search(x, 3, 2, 3, NS_KNN_COSINE, idx, s, &err);
    CHECK(rc < 0 && strstr(err.msg, "k = 3 neighbours among 3 points"), "k >= N refused: %s", err.msg);
    rc = ns_knn_search(x, 1, 6, 1, NS_KNN_COSINE, idx, s, &err);
    CHECK(rc < 0 && strstr(err.msg, "1 points"), "one point refused: %s", err.msg);
}

int main(void) {
    ns_rng_seed(&rng, 20261128);
    exact_agreement(1100, 5, 7, 3, NS_KNN_EUCLIDEAN, "euclidean, many ties and duplicates");
    exact_agreement(1030, 3, 12, 2, NS_KNN_EUCLIDEAN, "euclidean, 0/1 data (mostly ties)");
    exact_agreement(40, 4, 39, 5, NS_KNN_EUCLIDEAN, "euclidean, k = N - 1 (everyone)");
    cosine_random();
    hand_worked();
    graph_invariants();
    bad_arguments();
    return check_done();
}
