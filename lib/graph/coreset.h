// coreset.h: coreset baselines of graph condensation (the random, herding
// and k-center rows of GCond's, SFGC's and SimGC's tables): ceil(r * n_c)
// labelled training nodes of each class c are kept, n_c being the class's
// training nodes, and the graph they induce is what a GNN then trains on.
//
// Dimensions: N nodes, D features, C classes, n kept nodes, K hops.
//
// Herding and k-center measure nodes by E = P^K X (N, D), P = D^-1/2 (A + I)
// D^-1/2 over the whole graph (GCN's propagation, what SGC and SimGC read);
// K = 0 gives the plain features (graph-coreset's default: under SimGC's
// judge on Cora they chose better than P^2 X). GCond's baselines use a
// trained GCN's embeddings instead. All
// three draw per class, from the class's training nodes in ascending index:
//   random    Fisher-Yates shuffle (ns_rng_shuffle) with the rng of stream
//             NS_CORESET_STREAM, item c, of the seed; the first ceil(r n_c).
//   herding   greedy: each step adds the node that brings the mean of the
//             chosen E rows nearest (Euclidean) to the class mean of E.
//   k-center  greedy farthest-point: first the node nearest the class mean,
//             then each step the node farthest from its nearest chosen node.
// Ties go to the lower node index; distances are summed in double, so a
// selection is the same on every machine and thread count.
#ifndef NS_CORESET_H
#define NS_CORESET_H

#include <stdint.h>

#include "base/err.h"
#include "graph/graphdata.h"

typedef enum ns_coreset_method {
    NS_CORESET_RANDOM,
    NS_CORESET_HERDING,
    NS_CORESET_KCENTER,
} ns_coreset_method;

// "random", "herding", "kcenter" (indexed by ns_coreset_method).
extern const char *const ns_coreset_method_names[3];

// The stream of a seed (ns_rng_seed_stream) the random coreset draws class c
// from, as item c.
#define NS_CORESET_STREAM 7

typedef struct ns_coreset_config {
    ns_coreset_method method;
    double ratio;  // r in (0, 1]: ceil(r n_c) nodes of class c, at least 1 (ns_simgc_class_sizes)
    int hops;      // K of E = P^K X for herding and k-center (0..8); random ignores it
    uint64_t seed; // random's draws; herding and k-center are deterministic
} ns_coreset_config;

// The kept nodes: *kept (n, ascending node ids, malloc'd; free with free())
// and per_class (C, may be NULL) the count of each class. g needs labels, a
// training split with a node in it, and for herding and k-center features.
// Returns n, or -1 with a message.
int64_t ns_coreset_select(const ns_graph *g, const ns_coreset_config *cfg, int64_t **kept, int64_t *per_class,
                          ns_err *err);

// The graph kept[0..n) (distinct ascending ids) induce: node i is g's node
// kept[i] with its features (dense or sparse, as g stores them) and label;
// the edges (and weights) of g between kept nodes; every labelled node in the
// training split, no val or test; g's classes, class names and undirectedness.
// out->source is NULL.
int ns_graph_induced(ns_graph *out, const ns_graph *g, const int64_t *kept, int64_t n, ns_err *err);

// The per-class greedy selections on rows of a dense (m, D) matrix e, for
// tests and for ns_coreset_select: chosen (budget) receives row numbers in the
// order picked. budget <= m.
int ns_coreset_herding(const float *e, int64_t m, int64_t D, int64_t budget, int64_t *chosen, ns_err *err);
int ns_coreset_kcenter(const float *e, int64_t m, int64_t D, int64_t budget, int64_t *chosen, ns_err *err);

#endif
