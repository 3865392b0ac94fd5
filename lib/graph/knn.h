// knn.h: exact k-nearest-neighbour search by brute force, and the graph of
// the neighbours. X (N, D) row-major: N points, D features.
//
// Scores: cosine similarity x_i . x_j / (|x_i| |x_j|) (a zero vector scores
// 0 against everything), or the squared euclidean distance
// |x_i|^2 + |x_j|^2 - 2 x_i . x_j (clamped at 0). A point's neighbours are
// the k other points (never itself) with the best scores: the largest
// similarity or the smallest distance; ties go to the smaller index, so the
// result is one well-defined list whatever the thread count.
//
// Method: the dot products come from ns_sgemm on B x B tiles of the upper
// triangle of X X^T (each pair computed once, so the score of (i, j) is the
// score of (j, i) bit for bit); every tile updates the top-k heaps of both
// its row points and its column points. Tiles are spread over OpenMP
// threads, each with its own heaps (N k entries); the heaps are merged per
// point at the end under the same order. Memory: X, the norms, one tile per
// thread and (threads + 1) N k candidates: O(N D + B^2 T + N k T), never
// O(N^2).
#ifndef NS_KNN_H
#define NS_KNN_H

#include <stdint.h>

#include "base/err.h"
#include "graph/sparse.h"

typedef enum ns_knn_metric {
    NS_KNN_COSINE,
    NS_KNN_EUCLIDEAN,
} ns_knn_metric;

// The k nearest neighbours of every point: index (N, k) and score (N, k),
// best first (similarities or squared distances, as above). 1 <= k < N.
int ns_knn_search(const float *x, int64_t n, int64_t d, int64_t k, ns_knn_metric metric,
                  int32_t *index, float *score, ns_err *err);

// The same by the definition, one pair at a time in double precision: the
// reference of the tests. O(N^2 D).
int ns_knn_naive(const float *x, int64_t n, int64_t d, int64_t k, ns_knn_metric metric,
                 int32_t *index, float *score, ns_err *err);

// The kNN graph (N, N) of a search's result, canonical, symmetric, without
// self loops. union: i ~ j when either is among the other's neighbours;
// mutual: when both are. weighted: values are the cosine similarity clamped
// at 0, or for euclidean exp(-d^2 / s^2) with s^2 the mean squared distance
// over all N k neighbour pairs (1 when that is 0); otherwise every value is 1.
int ns_knn_graph(ns_csr *adj, const int32_t *index, const float *score, int64_t n, int64_t k,
                 ns_knn_metric metric, int mutual, int weighted, ns_err *err);

#endif
