// pge.h: GCond's "PGE" adjacency generator, which SimGC reuses: an MLP that
// scores every ordered pair of condensed nodes from their features and turns
// the scores into a symmetric weighted adjacency with an empty diagonal.
//
// Dimensions: n condensed nodes, d features, h hidden units, M = n*n pairs;
// pair k = i*n + j reads [x_i ; x_j].
//
//   Z1 = [x_i ; x_j] W1^T + b1            (M, h)   W1 (h, 2d)
//   R1 = relu(BN1(Z1))                    (M, h)   batch statistics over all M pairs
//   Z2 = R1 W2^T + b2, R2 = relu(BN2(Z2)) (M, h)   W2 (h, h)
//   E  = R2 w3^T + b3                     (n, n)   w3 (1, h)
//   A0 = sigmoid((E + E^T) / 2), diagonal set to 0
//
// The batch norms always use the statistics of the batch of all M pairs (the
// reference code never switches the module to eval mode) and keep no running
// statistics. The first layer is split as W1 = [W1a | W1b]: P = X W1a^T and
// Q = X W1b^T are computed once per node, then Z1[i*n+j] = P_i + Q_j + b1,
// which costs O(n d h + M h) rather than O(M d h).
//
// Parameters are one block (value) with a gradient block of the same layout
// (grad), named as torch names the module's state_dict: layers.0.weight,
// layers.0.bias, bns.0.weight, bns.0.bias, layers.1.*, bns.1.*, layers.2.*.
#ifndef NS_PGE_H
#define NS_PGE_H

#include <stdint.h>

#include "base/err.h"

#define NS_PGE_PARAMS 10

typedef struct ns_pge_tensor {
    char name[24];
    int ndim;
    int64_t shape[2];
    int64_t numel, offset; // offset into value/grad, a multiple of 16 floats
} ns_pge_tensor;

typedef struct ns_pge {
    int64_t n, d, h, M;
    ns_pge_tensor params[NS_PGE_PARAMS];
    int64_t numel;
    float *value, *grad;      // (numel) parameters and their gradients
    // activations of the last forward, one block
    float *p, *q;             // (h, n) W1a X^T, W1b X^T
    float *z1, *r1, *z2, *r2; // (h, M) pair activations, one row per hidden unit
    float *e;                 // (M) pair scores before b3
    float *mean1, *rstd1, *mean2, *rstd2; // (h) saved batch statistics
    float *dz, *dr;           // (h, M) backward scratch
    float *block;
} ns_pge;

// Allocates a generator for n nodes of d features with h hidden units.
int ns_pge_create(ns_pge *g, int64_t n, int64_t d, int64_t h, ns_err *err);
void ns_pge_free(ns_pge *g);
// torch's defaults: linear weights and biases U(-1/sqrt(fan_in), 1/sqrt(fan_in)),
// batch-norm weights 1 and biases 0; drawn from ns_rng(seed) in table order.
void ns_pge_init(ns_pge *g, uint64_t seed);

// a0 (n, n) = the generator's adjacency for features x (n, d), before any
// threshold: symmetric, zero diagonal, entries in (0, 1).
void ns_pge_forward(ns_pge *g, const float *x, float *a0);
// Backward of the last forward: g->grad += dL/dparams and dx (n, d) += dL/dx
// (when dx is not NULL) for da0 (n, n) = dL/da0. a0 is that forward's output.
// Only the symmetric part of da0 off the diagonal reaches the scores.
void ns_pge_backward(ns_pge *g, const float *x, const float *a0, const float *da0, float *dx);

#endif
