// gnn.h: graph neural networks for node classification on a graph stream
// (lib/graph/graphdata.h): GCN, SGC, MLP and GraphSAGE-mean with hand-written
// backward passes, and the full-batch training loop with best-validation model
// selection that GCond and SimGC evaluate condensed graphs with.
//
// Dimensions: N nodes, D features, H hidden units, C classes, K SGC hops.
//
// The models, as PyG builds them, with their parameters named as PyG's
// state_dict names them (W is (OUT, IN), as torch.nn.Linear):
//
//   gcn   Z = P (X W1^T) + b1; H1 = dropout(relu(Z)); logits = P (H1 W2^T) + b2
//         P = D^-1/2 (A + I) D^-1/2 (ns_csr_gcn_norm; weighted when A is)
//         conv1.lin.weight (H, D), conv1.bias (H), conv2.lin.weight (C, H), conv2.bias (C)
//         init: Glorot-uniform weights, zero biases (PyG's GCNConv, Kipf & Welling)
//   sgc   S = P^K X, computed once per graph; logits = S W^T + b
//         conv1.lin.weight (C, D), conv1.lin.bias (C)
//   mlp   H1 = dropout(relu(X W1^T + b1)); logits = H1 W2^T + b2
//         lin1.weight (H, D), lin1.bias (H), lin2.weight (C, H), lin2.bias (C)
//   sage  Z = M (X Wl1^T) + bl1 + X Wr1^T; H1 = dropout(relu(Z)); logits likewise
//         M = D^-1 A, row-normalised, no self loops added: the (weighted) mean
//         over a node's out-neighbours (0 for a node without any)
//         conv1.lin_l.weight (H, D), conv1.lin_l.bias (H), conv1.lin_r.weight (H, D),
//         conv2.lin_l.weight (C, H), conv2.lin_l.bias (C), conv2.lin_r.weight (C, H)
//   sgc, mlp and sage init as torch.nn.Linear: U(-1/sqrt(IN), 1/sqrt(IN)).
//
// Row i of the adjacency lists node i's out-neighbours, so a node gathers
// from those (the same thing for an undirected graph). Products are ordered
// so the wide side is multiplied first: P (X W^T), never (P X) W^T.
//
// First-layer features are dense (N, D), or CSR when they are sparse enough
// (X W^T is then a CSR x dense product, ns_spmm_forward with W^T, and its
// weight gradient X^T dY is ns_spmm_backward with X^T). Every other product
// is ns_linear_* or ns_spmm_*; the activations, dropout and loss are lib/nn/ops.h
// kernels. Backward passes accumulate into the gradients, as in ops.h.
//
// Memory: a model's parameters are one block (value), their gradients a
// second of the same layout (grad); a context's activations are one block.
#ifndef NS_GNN_H
#define NS_GNN_H

#include <stdint.h>

#include "base/err.h"
#include "graph/graphdata.h"
#include "graph/sparse.h"

// Append-only: tables in gnn.c are indexed by it.
typedef enum ns_gnn_kind {
    NS_GNN_GCN,
    NS_GNN_SGC,
    NS_GNN_MLP,
    NS_GNN_SAGE,
    NS_GNN_KIND_COUNT
} ns_gnn_kind;

// "gcn", "sgc", "mlp" or "sage" (also "graphsage") into *kind; the error names the bad value.
int ns_gnn_kind_parse(const char *s, ns_gnn_kind *kind, ns_err *err);
const char *ns_gnn_kind_name(ns_gnn_kind kind);

typedef struct ns_gnn_config {
    ns_gnn_kind kind;
    int64_t hidden;  // H >= 1 (sgc has no hidden layer)
    int hops;        // K >= 0, sgc only
    double dropout;  // in [0, 1): after the hidden layer's activation (not sgc)
    int relu;        // 1: ReLU after the hidden layer; 0: none (SimGC's Cora GCN)
} ns_gnn_config;

// H 256, K 2, dropout 0.5, ReLU: GCond's evaluation GCN.
void ns_gnn_config_default(ns_gnn_config *cfg, ns_gnn_kind kind);

#define NS_GNN_MAX_PARAMS 6
#define NS_GNN_MAX_LAYERS 2

typedef struct ns_gnn_tensor {
    char name[32];     // "conv1.lin.weight", ...
    int ndim;          // 1 or 2
    int64_t shape[2];  // outermost first
    int64_t numel;
    int64_t offset;    // into value and grad, a multiple of 16 floats (64 bytes)
} ns_gnn_tensor;

// One layer: Z = X W^T + b (linear), P (X W^T) + b (gcn), or
// M (X W^T) + b + X Wr^T (sage). Indices into the parameter table, -1: none.
typedef enum ns_gnn_layer_kind { NS_GNN_LAYER_LINEAR, NS_GNN_LAYER_GCN, NS_GNN_LAYER_SAGE } ns_gnn_layer_kind;

typedef struct ns_gnn_layer {
    ns_gnn_layer_kind kind;
    int64_t in, out;
    int w, b, wr;
} ns_gnn_layer;

typedef struct ns_gnn {
    ns_gnn_config cfg;
    int64_t D, C;
    int nlayers;                            // 2, or 1 for sgc
    ns_gnn_layer layers[NS_GNN_MAX_LAYERS];
    int nparams;
    ns_gnn_tensor params[NS_GNN_MAX_PARAMS];
    int64_t numel;                          // floats in value (and grad), padding included
    float *value;                           // (numel) the parameters
    float *grad;                            // (numel) their gradients
} ns_gnn;

// Validates cfg (messages name the bad value), builds the parameter table for
// D features and C classes and allocates value and grad, zeroed.
int ns_gnn_create(ns_gnn *m, const ns_gnn_config *cfg, int64_t D, int64_t C, ns_err *err);
void ns_gnn_free(ns_gnn *m);
// PyG's initialisation (above), drawn from ns_rng seeded with seed, parameter
// by parameter in table order, row-major.
void ns_gnn_init(ns_gnn *m, uint64_t seed);
// A parameter by name, or NULL.
float *ns_gnn_param(const ns_gnn *m, const char *name);
void ns_gnn_zero_grad(ns_gnn *m);

// ----------------------------------------------------------------------------
// contexts: a graph as one model reads it

typedef enum ns_gnn_xformat {
    NS_GNN_X_AUTO,   // sparse when at most 10% of the features are non-zero
    NS_GNN_X_DENSE,
    NS_GNN_X_SPARSE,
} ns_gnn_xformat;

typedef struct ns_gnn_ctx_config {
    ns_gnn_xformat xformat; // how the first layer reads the features (sgc: always dense)
    int row_norm;           // 1: divide each node's features by their sum (Kipf & Welling, GCond)
    int grad;               // 1: room for backward (training on this graph)
    int input_grad;         // 1: backward may ask for dX (the features are then read dense)
} ns_gnn_ctx_config;

// Everything a forward and backward pass over one graph needs: the features
// in the form the first layer reads, the propagation matrix and its transpose,
// the labels, and the activations of every layer.
typedef struct ns_gnn_ctx {
    int64_t N, D, H, C;
    int sparse;          // first-layer features in xs (and xst), else dense x
    int propagated;      // gcn with dense features, no dX: x holds P X (see gnn.c)
    float *x;            // (N, D) dense features; sgc: S = P^K X; propagated: P X
    ns_csr xs, xst;      // (N, D) sparse features and (D, N) transpose (grad only)
    ns_csr p, pt;        // (N, N) P or M, and its transpose (grad only; empty when
                         // p is symmetric, so p serves)
    int has_p, has_pt;
    int32_t *labels;     // (N) class or -1
    int grad, input_grad;
    int dropped;         // the last forward applied dropout (backward needs to know)
    float *block;        // the activations below, one allocation
    float *t[NS_GNN_MAX_LAYERS];   // (N, OUT) X W^T before propagation
    float *tr[NS_GNN_MAX_LAYERS];  // (N, OUT) sage: X Wr^T
    float *z[NS_GNN_MAX_LAYERS];   // (N, OUT) layer outputs; z[0] after ReLU, in place
    float *wt;           // (D, H) W1^T for sparse features
    float *h1d;          // (N, H) after dropout
    uint8_t *mask;       // (N, H) dropout's keep mask
    float *dt;           // (N, max OUT) gradient before propagation
    float *dh[2];        // (N, H) gradients of the hidden layer, through dropout and ReLU
    float *dwt;          // (D, H) sparse features: X^T dT before transposing
    float *dxs, *dxt;    // (N, D) sgc with input_grad: gradients through the hops
} ns_gnn_ctx;

// Builds a context of g (which needs features) for model m: D must match.
int ns_gnn_ctx_init(ns_gnn_ctx *c, const ns_gnn *m, const ns_graph *g, const ns_gnn_ctx_config *cc,
                    ns_err *err);
void ns_gnn_ctx_free(ns_gnn_ctx *c);

// The logits (N, C) of every node, pointing into c. training: dropout with
// keep masks drawn from dropout_seed (ns_dropout_mask); else none.
const float *ns_gnn_forward(const ns_gnn *m, ns_gnn_ctx *c, int training, uint64_t dropout_seed);
// Backward of the last forward on c (a context made with grad): m->grad +=
// dL/dparams for dlogits (N, C) = dL/dlogits, and dx (N, D) += dL/dX when dx is
// not NULL (a context made with input_grad).
void ns_gnn_backward(ns_gnn *m, ns_gnn_ctx *c, const float *dlogits, float *dx);

// Fraction of the nodes in mask (N, 0/1) whose logits' argmax (the first
// maximum) is their label; NaN when the mask is NULL or empty.
double ns_gnn_accuracy(const float *logits, const int32_t *labels, const uint8_t *mask, int64_t N,
                       int64_t C);

// ----------------------------------------------------------------------------
// training

typedef struct ns_gnn_epoch {
    int epoch, epochs;      // epoch counts from 1
    double loss;            // this epoch's training loss (with dropout)
    int evaluated;          // 1 when val/test were measured after this epoch
    double val_acc, test_acc;        // the latest evaluation
    int best_epoch;                  // the selected model so far
    double best_val_acc, best_test_acc;
    double seconds;         // since training started
} ns_gnn_epoch;

typedef struct ns_gnn_train_config {
    int epochs;             // >= 1
    double lr;              // Adam's learning rate (torch's betas and eps)
    double weight_decay;    // coupled L2 on every parameter, as torch.optim.Adam
    int lr_drop;            // after this many epochs: lr * 0.1 and a fresh Adam (GCond); 0: never
    int eval_every;         // evaluate val/test after every this many epochs, and after the last
    int patience;           // stop after this many evaluations without a better val_acc; 0: never
    uint64_t seed;          // dropout masks (initialisation is ns_gnn_init's)
    void (*progress)(const ns_gnn_epoch *e, void *arg); // after every epoch, or NULL
    void *progress_arg;
} ns_gnn_train_config;

// lr 0.01, weight decay 5e-4, 600 epochs, lr drop after 300, evaluation every epoch.
void ns_gnn_train_config_default(ns_gnn_train_config *tc);

typedef struct ns_gnn_result {
    int epochs;             // epochs run (fewer than asked when patience stopped it)
    int best_epoch;         // the selected epoch (from 1)
    double loss;            // the last epoch's training loss
    double val_acc, test_acc; // of the selected model
    double train_seconds;   // training and evaluation, wall clock
    int64_t train_nodes;
} ns_gnn_result;

// Full-batch training of an initialised m with softmax cross-entropy (the mean
// over the training nodes) on train: the nodes of train_mask, or every
// labelled node when train_mask is NULL. After the evaluated epochs the model
// runs on eval (train itself for transductive training; another graph for
// SimGC's protocol) without dropout; the parameters of the first epoch with
// the highest val_mask accuracy are kept, and m holds them on return.
// test_mask may be NULL (test_acc NaN). Fails on labels out of range, an
// empty training or validation set, or a loss that is not finite.
// Adam's state is allocated here; m->grad is overwritten.
// sgc and mlp do not propagate at run time (a node's logits depend on its own
// row of X, or of S = P^K X), so they train on a copy of the training rows
// alone and evaluate on the validation and test rows alone; their dropout
// masks are drawn over those rows.
int ns_gnn_train(ns_gnn *m, ns_gnn_ctx *train, const uint8_t *train_mask, ns_gnn_ctx *eval,
                 const uint8_t *val_mask, const uint8_t *test_mask, const ns_gnn_train_config *tc,
                 ns_gnn_result *res, ns_err *err);

#endif
