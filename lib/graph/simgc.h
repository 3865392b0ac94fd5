// simgc.h: Simple Graph Condensation (SimGC, Xiao et al. 2024) as its official
// code runs it: a frozen SGC teacher trained on the original graph, then a
// small synthetic graph (features X', a generated weighted adjacency A' and
// labels Y') optimised so that its propagated features match the original's
// class by class (L_rep), the teacher classifies it correctly (L_lgt) and its
// edges join similar features (L_smt).
//
// Dimensions: N original nodes, D features, C classes, n condensed nodes,
// K propagation steps (2), L = K + 1 layers of features [X | ÂX | Â^2 X].
//
//   Â'  = D'^-1/2 (A' + I) D'^-1/2,  A' = PGE(X') with entries < tau set to 0
//   L   = L_lgt + alpha * L_rep + gamma * L_smt
//   L_lgt = CE(teacher(Â'^K X'), Y')
//   L_rep = (1/W) sum_c w_c [ mse(mu_c, mu'_c) + mse(sd_c, sd'_c) ]   over the L*D columns
//   L_smt = sum_{A'ij>0} A'ij k(x'_i, x'_j) / sum A'ij,  k = mean_f exp(-(x'_if - x'_jf)^2 / 2)
//
// L_smt carries the sign of the official code (a plus: SimGC_transductive.py
// adds smoothness_alpha * smoothness_loss); a negative gamma gives the other
// reading. Optimisation alternates: of every `cycle` iterations the first
// `adj_steps` step only the generator (Adam, lr_adj), the rest only X' (Adam,
// lr_feat), both from the same backward. Every val_every iterations a fresh
// GCN is trained on the condensed graph and scored on the original graph's
// validation nodes; the best-scoring snapshot of (X', A') is the result.
#ifndef NS_SIMGC_H
#define NS_SIMGC_H

#include <stdint.h>

#include "base/err.h"
#include "graph/gnn.h"
#include "graph/graphdata.h"

typedef struct ns_simgc_config {
    double ratio;          // r: n'_c = ceil(r * train nodes of class c)
    int hops;              // K
    int teacher_mlp;       // 1: SGC_Multi (an MLP on Â^K X); 0: linear SGC
    int64_t teacher_hidden;
    int teacher_epochs, teacher_eval_every;
    int teacher_patience;  // stop the teacher after this many evaluations without a better
                           // validation accuracy; 0: never
    double teacher_lr;
    int64_t pge_hidden;    // h of the generator
    double tau;            // threshold on A'
    double lr_feat, lr_adj;
    double alpha, gamma;   // weights of L_rep and L_smt (L_lgt's is 1)
    int iterations;        // T: iterations 0..T
    int cycle, adj_steps;  // of every `cycle` iterations, the first `adj_steps` train the generator
    int val_every;         // validate every this many iterations (from val_every on); 0: never
    int val_epochs;        // epochs of each validation GCN
    int val_patience;      // a validation GCN stops after this many evaluations (every 100
                           // epochs) without a better validation accuracy; 0: never
    int64_t val_hidden;
    int val_relu;          // the validation GCN's activation (Cora's: none)
    double val_lr;
    int init_real;         // 1: X' starts as real training nodes of each class (GCond's start,
                           // drawn without repeats while a class has enough); 0: N(0, 1) (SimGC's code)
    uint64_t seed;
    // called after each validation and at the end (it = iterations + 1), or NULL
    void (*progress)(const struct ns_simgc_config *cfg, int it, double loss, double val_acc,
                     double best_val, double best_test, double seconds, void *arg);
    void *progress_arg;
    // called after every teacher epoch (with progress_arg), or NULL
    void (*teacher_progress)(const ns_gnn_epoch *e, void *arg);
} ns_simgc_config;

// The Cora settings of the official scripts: r 0.5, K 2, MLP teacher (2048
// hidden, lr 0.001), h 128, tau 0.01, lr_feat 0.005, lr_adj 0.001, alpha 10,
// gamma 0.1, T 1500, 10 of every 50 iterations on the generator, validation
// every 100 iterations with up to 3000 epochs at lr 0.001 of a GCN without
// activation (hidden 256 here; 2048 in the code: with no activation any
// width >= C spans the same functions). Two departures, both selection:
// - The teacher is checked every 5 epochs and stops 20 checks after its best
//   (the script: every 50 of 1000). At lr 0.001 SGC_Multi overfits Cora's 140
//   labels within 50 epochs: checked every 50 it reaches 78.0-78.7% test, checked
//   every 5 it peaks at epoch 10-15 with 80.3-80.7%, in a tenth of the time.
//   (The script's comment suggests lr 1e-5 for Cora and Citeseer, 79.7-80.4%
//   after 1000 epochs; on the Fashion-MNIST kNN graph that lr underfits: 71%
//   against 74%.)
// - A validation GCN stops 3 checks (300 epochs) after its best.
void ns_simgc_config_default(ns_simgc_config *cfg);

typedef struct ns_simgc_result {
    ns_graph condensed;     // X' (n, D), weighted symmetric A' with zero diagonal, Y', train = all
    double teacher_val, teacher_test;
    int teacher_epochs;     // epochs the teacher ran (fewer than asked when its patience ran out)
    double class_mean_val, class_mean_test; // the nearest-class-mean classifier on Â^K X (NaN: no such nodes)
    double best_val, best_test; // of the selected snapshot's validation GCN (NaN without validation)
    int best_iter;          // the iteration of the snapshot
    double last_loss;       // L at the last iteration
    double teacher_seconds, condense_seconds, validate_seconds;
} ns_simgc_result;

// Condenses g (features, labels and train/val/test masks needed). The result's
// graph is allocated (ns_graph_free). Fails on a graph without training
// nodes, a non-finite loss, or no memory. It is create, run and free:
int ns_simgc_condense(const ns_graph *g, const ns_simgc_config *cfg, ns_simgc_result *res, ns_err *err);

// A condensation in progress: the teacher trained (res gets its accuracy),
// statistics computed, X' and the generator initialised. cfg and g must outlive it.
typedef struct ns_simgc ns_simgc;
ns_simgc *ns_simgc_create(const ns_graph *g, const ns_simgc_config *cfg, ns_simgc_result *res, ns_err *err);
// The optimisation and selection; fills the rest of res.
int ns_simgc_run(ns_simgc *k, const ns_graph *g, ns_simgc_result *res, ns_err *err);
void ns_simgc_free(ns_simgc *k);
// For tests: one forward and backward of L at the current X' and generator;
// returns L and leaves dL/dX' and the generator's gradient in place.
double ns_simgc_loss(ns_simgc *k);
int64_t ns_simgc_nodes(const ns_simgc *k);
float *ns_simgc_features(ns_simgc *k);                 // (n, D) X'
const float *ns_simgc_features_grad(const ns_simgc *k); // (n, D)
struct ns_pge *ns_simgc_generator(ns_simgc *k);
const int32_t *ns_simgc_labels(const ns_simgc *k);      // (n) Y'

// ----------------------------------------------------------------------------
// The pieces, exposed for tests. All arrays dense, row-major.

// Condensed class sizes: count[c] = ceil(r * train[c]) (0 for absent classes);
// order (C) lists classes by ascending train count, ties by index, the order of
// the condensed label blocks. Returns n.
int64_t ns_simgc_class_sizes(const int64_t *train, int64_t C, double r, int64_t *count, int64_t *order);

// ahat = D^-1/2 (a + I) D^-1/2 for a symmetric (n, n) a; s (n) receives D^-1/2.
void ns_simgc_normalize(float *ahat, float *s, const float *a, int64_t n);
// da += dL/da for dahat = dL/dahat (both (n, n)).
void ns_simgc_normalize_backward(float *da, const float *dahat, const float *a, const float *s, int64_t n);

// Per-class targets: block b of the condensed nodes is rows [start[b], start[b]
// + count[b]) with statistics mu[b], sd[b] ((L*D) each, NaN sd meaning none)
// and weight w[b]; wsum = sum of w.
typedef struct ns_simgc_targets {
    int64_t blocks, LD;
    int64_t *start, *count;
    double *w, wsum;
    float *mu, *sd;         // (blocks, L*D)
} ns_simgc_targets;

// L_rep for layers[0..L-1] (n, D) each; dlayers[l] (n, D) += scale * dL_rep/dlayers[l].
double ns_simgc_rep_loss(const ns_simgc_targets *t, const float *const *layers, int L, int64_t D,
                         float *const *dlayers, double scale);
// L_smt over the entries a_ij > 0 of (n, n) a; da += scale * dL/da and dx (n, D)
// += scale * dL/dx (either may be NULL). 0 when a has no entry.
double ns_simgc_smooth_loss(const float *a, const float *x, int64_t n, int64_t D, float *da, float *dx,
                            double scale);

// exp(x) for x <= 0 in a form the compiler vectorises inside `omp simd` loops
// (no library call): x = k ln2 + r, |r| <= ln2/2, e^r by its degree-7 Taylor
// polynomial, times 2^k built in the exponent bits. Relative error below 3e-7;
// 0 below -87.
static inline float ns_exp_nonpos(float x) {
    float xc = x < -87.0f ? -87.0f : x;
    float t = xc * 1.44269504f;
    float kf = (t + 12582912.0f) - 12582912.0f; // round to nearest
    float r = xc - kf * 0.693145752f - kf * 1.42860677e-6f;
    float p = 1.0f + r * (1.0f + r * (0.5f + r * (1.6666667e-1f + r * (4.1666668e-2f +
              r * (8.3333338e-3f + r * (1.3888889e-3f + r * 1.9841270e-4f))))));
    union { int32_t i; float f; } scale = {.i = ((int32_t)kf + 127) * (1 << 23)};
    return x < -87.0f ? 0.0f : p * scale.f;
}

#endif
