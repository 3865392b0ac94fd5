// knn.c: exact kNN by tiles of X X^T, and the kNN graph (knn.h).
// Shapes: x (N, D), a tile (B, B), heaps (T, N, k), index and score (N, k).
#include "graph/knn.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "base/blas.h"
#include "base/tensor.h"

// Tile side: a 512 x 512 tile is 1 MiB, and its product (B^2 D
// multiply-adds) keeps BLIS near its peak even for D of a few dozen.
#define KNN_TILE 512

// Internally every score is a key where larger is better: the similarity,
// or minus the squared distance. Candidate a is better than b when its key
// is larger, or equal with a smaller index.
typedef struct cand {
    float key;
    int32_t index;
} cand;

static int better(float ka, int32_t ia, float kb, int32_t ib) { return ka > kb || (ka == kb && ia < ib); }

static int cmp_best_first(const void *pa, const void *pb) {
    const cand *a = pa, *b = pb;
    if (better(a->key, a->index, b->key, b->index)) return -1;
    if (better(b->key, b->index, a->key, a->index)) return 1;
    return 0;
}

// A bounded heap of the k best candidates of one point: h[0] is the worst.
typedef struct heaps {
    cand *h;        // (N, k)
    int32_t *count; // (N)
    float *worst;   // (N) h[0].key when full, -INFINITY before: a quick filter
    int64_t k;
} heaps;

static void heap_push(heaps *hs, int64_t point, float key, int32_t index) {
    int64_t k = hs->k;
    cand *h = hs->h + point * k;
    int64_t n = hs->count[point];
    if (n < k) { // sift up from the end
        int64_t at = n;
        while (at > 0) {
            int64_t up = (at - 1) / 2;
            if (!better(h[up].key, h[up].index, key, index)) break; // parent is worse: stop
            h[at] = h[up];
            at = up;
        }
        h[at] = (cand){key, index};
        hs->count[point] = (int32_t)(n + 1);
        if (n + 1 == k) hs->worst[point] = h[0].key;
        return;
    }
    if (!better(key, index, h[0].key, h[0].index)) return;
    int64_t at = 0; // sift down from the root
    for (;;) {
        int64_t c = 2 * at + 1;
        if (c >= k) break;
        if (c + 1 < k && better(h[c].key, h[c].index, h[c + 1].key, h[c + 1].index)) c++; // the worse child
        if (!better(key, index, h[c].key, h[c].index)) break;
        h[at] = h[c];
        at = c;
    }
    h[at] = (cand){key, index};
    hs->worst[point] = h[0].key;
}

static void heaps_free(heaps *hs) {
    free(hs->h);
    free(hs->count);
    free(hs->worst);
}

static int heaps_alloc(heaps *hs, int64_t n, int64_t k) {
    hs->k = k;
    hs->h = malloc((size_t)(n * k) * sizeof *hs->h);
    hs->count = calloc((size_t)n, sizeof *hs->count);
    hs->worst = malloc((size_t)n * sizeof *hs->worst);
    if (!hs->h || !hs->count || !hs->worst) return -1;
    for (int64_t i = 0; i < n; i++) hs->worst[i] = -INFINITY;
    return 0;
}

static int check_args(int64_t n, int64_t d, int64_t k, ns_err *err) {
    if (n < 2 || n > INT32_MAX || d < 1)
        return ns_errf(err, "kNN of %lld points of %lld features: need 2 to %d points and a feature", (long long)n,
                       (long long)d, INT32_MAX);
    if (k < 1 || k >= n)
        return ns_errf(err, "k = %lld neighbours among %lld points: need 1 to %lld", (long long)k, (long long)n,
                       (long long)n - 1);
    return 0;
}

// One tile: rows [r0, r0 + rb) against columns [c0, c0 + cb), s their dot
// products (rb, cb); on a diagonal tile only pairs with column > row count.
static void tile_update(heaps *hs, const float *s, int64_t r0, int64_t rb, int64_t c0, int64_t cb,
                        const float *sq, const float *inv, ns_knn_metric metric) {
    for (int64_t a = 0; a < rb; a++) {
        int64_t i = r0 + a;
        const float *row = s + a * cb;
        int64_t from = r0 == c0 ? a + 1 : 0;
        for (int64_t b = from; b < cb; b++) {
            int64_t j = c0 + b;
            float key;
            if (metric == NS_KNN_COSINE) {
                key = row[b] * inv[i] * inv[j];
            } else {
                float dist = sq[i] + sq[j] - 2.0f * row[b];
                key = dist > 0 ? -dist : 0.0f;
            }
            if (key >= hs->worst[i]) heap_push(hs, i, key, (int32_t)j);
            if (key >= hs->worst[j]) heap_push(hs, j, key, (int32_t)i);
        }
    }
}

int ns_knn_search(const float *x, int64_t n, int64_t d, int64_t k, ns_knn_metric metric, int32_t *index,
                  float *score, ns_err *err) {
    if (check_args(n, d, k, err) < 0) return -1;
    int threads = ns_threads();
    int64_t tile = KNN_TILE, blocks = (n + tile - 1) / tile, ntiles = blocks * (blocks + 1) / 2;
    // Squared norms, and their inverse square roots for cosine.
    float *sq = malloc((size_t)n * sizeof *sq), *inv = malloc((size_t)n * sizeof *inv);
    int32_t *tile_row = malloc((size_t)ntiles * sizeof *tile_row), *tile_col = malloc((size_t)ntiles * sizeof *tile_col);
    heaps *hs = calloc((size_t)threads, sizeof *hs);
    int rc = 0;
    if (!sq || !inv || !tile_row || !tile_col || !hs) {
        rc = ns_errf(err, "out of memory (kNN of %lld points)", (long long)n);
        goto done;
    }
    for (int t = 0; t < threads; t++)
        if (heaps_alloc(&hs[t], n, k) < 0) {
            rc = ns_errf(err, "out of memory (kNN heaps: %d x %lld x %lld)", threads, (long long)n, (long long)k);
            goto done;
        }
    #pragma omp parallel for schedule(static) if (n * d > 65536)
    for (int64_t i = 0; i < n; i++) {
        double s = 0;
        for (int64_t f = 0; f < d; f++) s += (double)x[i * d + f] * x[i * d + f];
        sq[i] = (float)s;
        inv[i] = s > 0 ? (float)(1.0 / sqrt(s)) : 0.0f;
    }
    // Tiles in the order of the upper triangle, larger ones first (the last
    // block row and column are short).
    for (int64_t I = 0, t = 0; I < blocks; I++)
        for (int64_t J = I; J < blocks; J++, t++) tile_row[t] = (int32_t)I, tile_col[t] = (int32_t)J;
    int failed = 0;
    #pragma omp parallel num_threads(threads)
    {
        heaps *mine = &hs[omp_get_thread_num()];
        float *s = ns_aligned_alloc((size_t)(tile * tile) * sizeof *s);
        if (!s) {
            #pragma omp atomic write
            failed = 1;
        }
        #pragma omp for schedule(dynamic, 1)
        for (int64_t t = 0; t < ntiles; t++) {
            if (!s) continue;
            int64_t r0 = tile_row[t] * tile, c0 = tile_col[t] * tile;
            int64_t rb = n - r0 < tile ? n - r0 : tile, cb = n - c0 < tile ? n - c0 : tile;
            ns_sgemm(0, 1, rb, cb, d, 1.0f, x + r0 * d, d, x + c0 * d, d, 0.0f, s, cb);
            tile_update(mine, s, r0, rb, c0, cb, sq, inv, metric);
        }
        free(s);
    }
    if (failed) {
        rc = ns_errf(err, "out of memory (kNN tiles of %lld x %lld)", (long long)tile, (long long)tile);
        goto done;
    }
    // Merge the threads' heaps: every pair was seen by exactly one thread.
    #pragma omp parallel
    {
        cand *all = malloc((size_t)(threads * k) * sizeof *all);
        #pragma omp for schedule(static)
        for (int64_t i = 0; i < n; i++) {
            if (!all) continue;
            int64_t m = 0;
            for (int t = 0; t < threads; t++)
                for (int32_t c = 0; c < hs[t].count[i]; c++) all[m++] = hs[t].h[i * k + c];
            qsort(all, (size_t)m, sizeof *all, cmp_best_first);
            for (int64_t c = 0; c < k; c++) {
                index[i * k + c] = all[c].index;
                score[i * k + c] = metric == NS_KNN_COSINE ? all[c].key : -all[c].key;
            }
        }
        if (!all) {
            #pragma omp atomic write
            failed = 1;
        }
        free(all);
    }
    if (failed) rc = ns_errf(err, "out of memory (merging kNN candidates)");
done:
    if (hs)
        for (int t = 0; t < threads; t++) heaps_free(&hs[t]);
    free(hs);
    free(sq), free(inv), free(tile_row), free(tile_col);
    return rc;
}

int ns_knn_naive(const float *x, int64_t n, int64_t d, int64_t k, ns_knn_metric metric, int32_t *index,
                 float *score, ns_err *err) {
    if (check_args(n, d, k, err) < 0) return -1;
    cand *all = malloc((size_t)n * sizeof *all);
    if (!all) return ns_errf(err, "out of memory (%lld points)", (long long)n);
    for (int64_t i = 0; i < n; i++) {
        int64_t m = 0;
        for (int64_t j = 0; j < n; j++) {
            if (j == i) continue;
            double dot = 0, ni = 0, nj = 0, dist = 0;
            for (int64_t f = 0; f < d; f++) {
                double a = x[i * d + f], b = x[j * d + f];
                dot += a * b, ni += a * a, nj += b * b, dist += (a - b) * (a - b);
            }
            double key = metric == NS_KNN_COSINE ? (ni > 0 && nj > 0 ? dot / sqrt(ni * nj) : 0) : -dist;
            all[m++] = (cand){(float)key, (int32_t)j};
        }
        qsort(all, (size_t)m, sizeof *all, cmp_best_first);
        for (int64_t c = 0; c < k; c++) {
            index[i * k + c] = all[c].index;
            score[i * k + c] = metric == NS_KNN_COSINE ? all[c].key : -all[c].key;
        }
    }
    free(all);
    return 0;
}

int ns_knn_graph(ns_csr *adj, const int32_t *index, const float *score, int64_t n, int64_t k,
                 ns_knn_metric metric, int mutual, int weighted, ns_err *err) {
    memset(adj, 0, sizeof *adj);
    if (n < 2 || n > INT32_MAX || k < 1 || k >= n)
        return ns_errf(err, "kNN graph of %lld points with k = %lld: need 1 <= k < N", (long long)n, (long long)k);
    int64_t z = n * k;
    int32_t *rows = malloc((size_t)z * sizeof *rows);
    float *w = malloc((size_t)z * sizeof *w);
    if (!rows || !w) {
        free(rows), free(w);
        return ns_errf(err, "out of memory (%lld kNN edges)", (long long)z);
    }
    double scale = 1; // euclidean: the mean squared distance
    if (weighted && metric == NS_KNN_EUCLIDEAN) {
        double sum = 0;
        for (int64_t e = 0; e < z; e++) sum += score[e];
        if (sum > 0) scale = sum / (double)z;
    }
    for (int64_t e = 0; e < z; e++) {
        rows[e] = (int32_t)(e / k);
        if (!weighted) w[e] = 1.0f;
        else if (metric == NS_KNN_COSINE) w[e] = score[e] > 0 ? score[e] : 0.0f;
        else w[e] = (float)exp(-(double)score[e] / scale);
    }
    ns_csr directed, other;
    int rc = ns_csr_from_coo(&directed, n, n, z, rows, index, w, NS_DUP_REFUSE, NULL, err);
    free(rows), free(w);
    if (rc < 0) return -1;
    if (!mutual) {
        // Both ways carry the same score (each pair is scored once), so MAX
        // only settles float noise from a caller's own lists.
        rc = ns_csr_symmetrize(adj, &directed, NS_SYM_MAX, err);
        ns_csr_free(&directed);
        return rc;
    }
    // Mutual: the entries of A that A^T has too.
    if (ns_csr_transpose(&other, &directed, err) < 0) {
        ns_csr_free(&directed);
        return -1;
    }
    int64_t kept = 0;
    for (int pass = 0; pass < 2 && rc == 0; pass++) {
        if (pass == 1 && (rc = ns_csr_alloc(adj, n, n, kept, err)) < 0) break;
        kept = 0;
        for (int64_t i = 0; i < n; i++) {
            int64_t a = directed.indptr[i], ae = directed.indptr[i + 1];
            int64_t b = other.indptr[i], be = other.indptr[i + 1];
            while (a < ae && b < be) {
                int32_t ca = directed.indices[a], cb = other.indices[b];
                if (ca < cb) a++;
                else if (cb < ca) b++;
                else {
                    if (pass == 1) {
                        float va = directed.values[a], vb = other.values[b];
                        adj->indices[kept] = ca;
                        adj->values[kept] = va > vb ? va : vb;
                    }
                    kept++, a++, b++;
                }
            }
            if (pass == 1) adj->indptr[i + 1] = kept;
        }
    }
    ns_csr_free(&directed);
    ns_csr_free(&other);
    if (rc < 0) ns_csr_free(adj);
    return rc;
}
