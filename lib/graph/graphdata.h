// graphdata.h: a graph (adjacency, node features, labels and splits) as a TNS
// stream, and in memory. The stream layout is specified under "Graphs" in
// man/man5/tns.5; in short, one meta record then tensor records:
//
//   meta  "graph"           graph.nodes N, graph.edges Z, graph.undirected,
//                           graph.classes C, graph.feature_dim D, graph.source,
//                           general.labels (class names), general.producer
//   graph.indptr            (N+1) i64   adjacency in CSR: row i = edges i -> j
//   graph.indices           (Z)   i32   (i64 accepted)
//   graph.weights           (Z)   f32   only for weighted graphs
//   graph.features          (N, D) f32  dense, or in CSR as the three
//   graph.features.indptr / .indices / .values   (N+1) i64, (F) i32, (F) f32
//   graph.labels            (N)   i32   0..C-1, or -1 for unlabelled
//   graph.train, graph.val, graph.test   (N) bool (u8 accepted): the splits
//
// Dimensions: N nodes, Z stored adjacency entries (an undirected edge is
// stored both ways, a self loop once), D features per node, F stored feature
// entries, C classes.
//
// The reader checks every invariant before the graph is used (ns_graph_validate
// lists them) and its errors name the input, the record and the bad value:
// "cora.tns: graph.indices[17]: node 2708 out of range (0..2707)". Only tools
// exit; these functions return -1 with a message.
#ifndef NS_GRAPHDATA_H
#define NS_GRAPHDATA_H

#include <stdint.h>

#include "base/err.h"
#include "graph/sparse.h"
#include "stream/tns.h"

// Caps that keep a forged header from meaning an absurd allocation.
#define NS_GRAPH_MAX_CLASSES ((int64_t)1 << 24)

enum { NS_SPLIT_TRAIN, NS_SPLIT_VAL, NS_SPLIT_TEST, NS_SPLIT_COUNT };
// "train", "val", "test": the splits' names, and graph.<name> their records'.
extern const char *const ns_split_names[NS_SPLIT_COUNT];

typedef struct ns_graph {
    int64_t nodes;        // N, 1 to INT32_MAX
    int64_t classes;      // C: labels lie in [0, C) or are -1; 0 with no labels
    int undirected;       // adj is symmetric: each undirected edge stored both ways
    int weighted;         // adj's values are weights (graph.weights); else all 1
    char *source;         // graph.source, or NULL
    char **class_names;   // (C) general.labels, or NULL
    ns_csr adj;           // (N, N) canonical CSR
    int64_t feature_dim;  // D; 0 when there are no features
    int sparse_features;  // 1: the features are in sfeatures, else in features
    float *features;      // (N, D) dense, 64-byte aligned, or NULL
    ns_csr sfeatures;     // (N, D) when sparse_features
    int32_t *labels;      // (N), or NULL
    uint8_t *masks[NS_SPLIT_COUNT]; // (N) each 0 or 1, or NULL when absent
} ns_graph;

// Frees everything and zeroes g (a zeroed ns_graph is empty and may be freed).
void ns_graph_free(ns_graph *g);

// Checks every invariant of an in-memory graph: 1 <= N <= INT32_MAX; adj is
// N x N, canonical, with finite values, symmetric when undirected; features
// (N, D) and finite, sparse ones canonical; labels in [0, C) or -1; masks
// 0/1, only with labels, and never on an unlabelled node; C names when names.
int ns_graph_validate(const ns_graph *g, ns_err *err);

// Reads the graph of a stream, to its end: the meta record with graph.nodes
// must come before the graph.* tensors; other records are ignored. Errors are
// prefixed with the reader's label. On failure g is left empty.
int ns_graph_read(ns_reader *r, ns_graph *g, ns_err *err);
// Opens path ("-": standard input) and reads its graph.
int ns_graph_load(const char *path, ns_graph *g, ns_err *err);

// Validates, then writes the meta record and the tensors in the order above.
// producer (e.g. "graph-import 0.1.0") may be NULL.
int ns_graph_write(ns_writer *w, const ns_graph *g, const char *producer, ns_err *err);

// The features as a new dense (N, D) 64-byte-aligned array (free with free()),
// whichever way they are stored. *out is NULL when the graph has none.
int ns_graph_dense_features(const ns_graph *g, float **out, ns_err *err);

// out->class_names = a copy of g's (none when g has none); out->classes must
// already be g->classes. On failure the copies made so far stay in out for
// ns_graph_free.
int ns_graph_copy_class_names(ns_graph *out, const ns_graph *g, ns_err *err);

// Nodes in a split (0 when the mask is absent).
int64_t ns_graph_split_size(const ns_graph *g, int split);

// Planetoid's split, drawn with its own seed: train_per_class labelled nodes
// of every class for training (all of a class when it has fewer), then val
// and test nodes from the rest of the labelled nodes, in a seeded random
// order. Replaces any split g had. Fails when the labelled nodes are too few
// for val and test after training takes its share (the message gives the
// counts).
int ns_planetoid_split(ns_graph *g, int64_t train_per_class, int64_t val, int64_t test,
                       uint64_t seed, ns_err *err);

// The split's stream of its seed (ns_rng_seed_stream), numbered after
// csbm.c's five: graph-gen's one seed gives a split independent of its graph.
#define NS_PLANETOID_STREAM 6

// Planetoid's sizes, and the four options that set them and the seed, for a
// program's option table (cli/cli.h's ns_opt): tpc, val and test point to
// int64_t sizes, seed to the int64_t seed; what names what is split
// ("nodes", "samples"), seed_help is --seed's help line.
#define NS_PLANETOID_TRAIN_PER_CLASS 20
#define NS_PLANETOID_VAL 500
#define NS_PLANETOID_TEST 1000
#define NS_PLANETOID_TEXT_(x) #x
#define NS_PLANETOID_TEXT(x) NS_PLANETOID_TEXT_(x)
#define NS_PLANETOID_OPTIONS(tpc, val, test, seed, what, seed_help)                                     \
    {"train-per-class", 0, NS_OPT_I64, tpc, "K",                                                        \
     "training " what " per class (default " NS_PLANETOID_TEXT(NS_PLANETOID_TRAIN_PER_CLASS) ")", 0,    \
     2147483647.0},                                                                                     \
    {"val", 0, NS_OPT_I64, val, "N", "validation " what " (default " NS_PLANETOID_TEXT(NS_PLANETOID_VAL) ")", \
     0, 2147483647.0},                                                                                  \
    {"test", 0, NS_OPT_I64, test, "N", "test " what " (default " NS_PLANETOID_TEXT(NS_PLANETOID_TEST) ")", 0, \
     2147483647.0},                                                                                     \
    {"seed", 0, NS_OPT_I64, seed, "S", seed_help, 0, 1e18}

#endif
