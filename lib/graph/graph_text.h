// graph_text.h: graphs and node data from plain text, as graph-import reads
// them: edge lists ("U V" or "U V W" per line), side files of node data (one
// row of features, one label, one split word or one class name per line) and
// Cora-layout and OGB-layout directories (nodes.txt "N C" then "LABEL SPLIT" per node,
// edges.txt "N E" then "U V" per edge, optional features.txt "N D NNZ" then
// "ROW COL VALUE" per non-zero).
//
// Text rules: fields are separated by blanks or one comma; "#" starts a
// comment; blank lines are skipped; numbers are decimal (strtod's hex and
// inf/nan forms are refused); lines are read by base/lines.h (a NUL byte, a
// line over NS_LINE_MAX_DEFAULT or a read error is an error). Every error
// names the file and line: "edges.txt:12: node 9 out of range (0..7)".
// Dimensions: N nodes, D features, C classes, E edges as listed.
#ifndef NS_GRAPH_TEXT_H
#define NS_GRAPH_TEXT_H

#include <stdint.h>

#include "base/err.h"
#include "base/lines.h"
#include "graph/graphdata.h"

// Edges as listed, with the line of each for messages.
typedef struct ns_edge_list {
    int64_t n, cap;
    int32_t *u, *v;  // (n) the edge u -> v
    float *w;        // (n) weights, when weighted
    int64_t *line;   // (n) the line of each edge
    int weighted;    // set by the first edge: 1 when it had a weight
    int32_t max_id;  // largest id seen, -1 when none
    char *path;      // the file, for messages
} ns_edge_list;

// Reads "U V [W]" lines to the end of in into e (zeroed first); ids are
// checked against n (n < 0: unknown, any id below INT32_MAX). The first edge
// decides whether every line has a weight; weights are finite f32 numbers.
int ns_edges_read(ns_lines *in, ns_edge_list *e, int64_t n, ns_err *err);
// g's adjacency (N = n) from the edges as listed (directed); a repeated edge
// is an error naming both lines.
int ns_edges_to_graph(ns_graph *g, const ns_edge_list *e, int64_t n, ns_err *err);
void ns_edges_free(ns_edge_list *e);

// Node data from text, with the line of each value for messages.
typedef struct ns_node_text {
    float *features;     // (rows, dim), 64-byte aligned
    int64_t rows, dim;
    int32_t *labels;     // (nlabels), -1 for unlabelled
    int64_t *label_line; // (nlabels)
    int64_t nlabels;
    int32_t max_label;   // -1 when none
    int8_t *split;       // (nsplit): -1 none, else NS_SPLIT_*
    int64_t *split_line; // (nsplit); may be label_line (Cora's nodes.txt)
    int64_t nsplit;
    char **names;        // (nnames) class names
    int64_t nnames;
} ns_node_text;

// Each reads one file into s (adding to what s already holds of other kinds).
int ns_node_features_read(const char *path, ns_node_text *s, ns_err *err); // a row of D numbers per node
int ns_node_labels_read(const char *path, ns_node_text *s, ns_err *err);   // an integer per node, -1 unlabelled
int ns_node_split_read(const char *path, ns_node_text *s, ns_err *err);    // train, val, test or none per node
// One class name per line, surrounding blanks trimmed; blank lines skipped,
// "#" is part of a name.
int ns_class_names_read(const char *path, ns_node_text *s, ns_err *err);
void ns_node_text_free(ns_node_text *s);

// A Cora-layout directory: g's nodes, classes, adjacency and (when
// features.txt exists) sparse features; labels and split in *nodes, with
// *nodes_path (malloc'd) the nodes.txt they came from. Header counts must
// match what follows.
int ns_cora_read(const char *dir, ns_graph *g, ns_node_text *nodes, char **nodes_path, ns_err *err);

// The Open Graph Benchmark's on-disk layout (graph_ogb.c): DIR/raw/edge.csv,
// node-feat.csv, node-label.csv, num-node-list.csv and DIR/split/NAME/
// {train,valid,test}.csv, each plain or .gz. ns_ogb_dir says whether dir has
// raw/edge.csv[.gz]; ns_ogb_read fills g (edges as listed, directed; features,
// labels and classes, split masks when the files are there), using nodes for
// the text it reads. A count that disagrees, an id out of range or a split
// node without a label names its file and line.
int ns_ogb_dir(const char *dir);
int ns_ogb_read(const char *dir, ns_graph *g, ns_node_text *nodes, ns_err *err);

// g's labels (g->classes set) and split masks from text read for g->nodes
// nodes; a label out of range, or a split node without a label, names its line.
int ns_node_text_set_labels(ns_graph *g, const ns_node_text *s, const char *path, ns_err *err);
int ns_node_text_set_split(ns_graph *g, const ns_node_text *s, const char *path, ns_err *err);

#endif
