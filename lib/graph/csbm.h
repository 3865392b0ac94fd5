// csbm.h: synthetic graphs from a contextual stochastic block model (CSBM),
// the fallback data set of SimGC's scale tests (SimGC,
// arXiv:2403.14951). graph-gen gives them Planetoid's split (graphdata.h).
//
// The model, with N nodes, C classes and D features:
//   labels    balanced: class sizes differ by at most one, nodes in a seeded
//             random order (class c has N/C nodes, the first N mod C one more);
//   edges     an undirected pair {i, j}, i != j, is an edge with probability
//             p_in when i and j share a class and p_out when not, each pair
//             drawn independently (one G(n, p) per block of classes, sampled
//             by geometric skips: O(N + C^2 + edges) time, never O(N^2));
//   features  gaussian: x_i = mu_{y_i} + eps_i, eps ~ N(0, I_D), with class
//             means mu_c = separation / sqrt(2 D) * g_c, g_c ~ N(0, I_D), so
//             two means lie about `separation` noise units apart; stored dense
//             (N, D).
//             bernoulli: a bag of words. Each class owns a random 1/C of the D
//             words (its topic); a node draws each of its class's topic words
//             with probability a W / |topic| and, independently, every word
//             with probability (1 - a) W / D, where W = words (the mean words
//             per node) and a = separation in [0, 1]; a word drawn by either
//             is 1. Stored sparse (CSR), values 1.
// From avg_degree d and homophily h (the expected fraction of a node's edges
// inside its class), with s = N / C: p_in = h d / (s - 1) and
// p_out = (1 - h) d / (N - s).
//
// Randomness: one seed; labels, edges and features each draw from
// their own stream derived from it (features per node), so the same
// parameters give the same graph on every machine and at any thread count.
#ifndef NS_CSBM_H
#define NS_CSBM_H

#include <stdint.h>

#include "base/err.h"
#include "graph/graphdata.h"

typedef enum ns_csbm_features {
    NS_CSBM_GAUSSIAN,
    NS_CSBM_BERNOULLI,
} ns_csbm_features;

typedef struct ns_csbm {
    int64_t nodes;       // N >= 2
    int64_t classes;     // C, 1 to N
    int64_t features;    // D >= 0 (0: no features)
    double p_in, p_out;  // edge probabilities, in [0, 1]
    ns_csbm_features kind;
    double separation;   // gaussian: distance of class means; bernoulli: topic share a
    double words;        // bernoulli: mean words per node W
    uint64_t seed;
} ns_csbm;

// p_in and p_out for a mean degree and a homophily in [0, 1] (formulas
// above). Fails when either probability would exceed 1 (too dense for the
// class sizes), or when h < 1 with one class.
int ns_csbm_probabilities(ns_csbm *m, double avg_degree, double homophily, ns_err *err);

// Generates the graph into g (zeroed first): undirected, canonical CSR, no
// self loops, labels and C classes, features unless D = 0; no split. Fails
// on bad parameters or no memory, leaving g empty.
int ns_csbm_generate(ns_graph *g, const ns_csbm *m, ns_err *err);

// The measured edge homophily of a labelled graph: the fraction of stored
// adjacency entries whose two ends share a label (entries touching an
// unlabelled node are not counted). -1 when there are none.
double ns_graph_edge_homophily(const ns_graph *g);

#endif
