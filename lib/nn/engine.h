// engine.h: runs a model: forward over a batch, reverse-mode backward to every
// trainable parameter (and optionally to the input). All buffers are sized for
// a maximum batch, so a training loop allocates nothing per step; act[] and
// grad[] are allocated at the first forward (and again after
// ns_engine_set_fused or ns_engine_keep change what they must hold).
//
// Buffers, for a batch of N and node i with per-sample size numel_i:
//   act[i]   (N, numel_i)  the node's output
//   grad[i]  (N, numel_i)  d loss / d act[i], filled by backward
//   param_grad[t]  same shape as model tensor t; NULL for buffers and frozen tensors
#ifndef NS_ENGINE_H
#define NS_ENGINE_H

#include <stdint.h>

#include "nn/model.h"

typedef struct ns_engine {
    ns_model *model;
    int64_t max_batch;
    int64_t n;             // batch size of the last forward
    int training;          // mode of the last forward
    int with_grads;        // grad buffers exist
    int want_input_grad;   // backward also fills grad[0]
    uint64_t seed, step;   // dropout masks: one per (seed, step, node)
    float **act, **grad;   // per node
    float **param_grad;    // per model tensor
    float **saved_mean, **saved_rstd; // per norm node
    int32_t **argmax;      // per maxpool node
    uint8_t **mask;        // per dropout node
    int32_t **ids;         // per embedding node: its input ids as integers
    float **saved;         // per attention node: q, k, v, probabilities, ctx;
                           // per patch_embed node: the patches
    float *scratch;        // conv im2col columns
    int64_t scratch_floats;
    int fused;             // fused mode (ns_engine_set_fused); 0 after init
    uint8_t *keep;         // per node: act[] kept in fused mode (ns_engine_keep)
    // When not NULL (the caller allocates nnodes doubles each), forward and
    // backward add each node's seconds here; a fused group's time goes to its
    // convolution (the convolution with its epilogue) and its batch norm (the
    // statistics and the elementwise pass, or the fused backward).
    double *prof_fwd, *prof_bwd;
    struct ns_engine_plan *plan; // fusion groups and backward bookkeeping (engine.c)
} ns_engine;

typedef struct ns_engine_plan ns_engine_plan;

// with_grads: allocate gradient buffers (training, saliency); without, forward only.
int ns_engine_init(ns_engine *e, ns_model *m, int64_t max_batch, int with_grads, ns_err *err);
void ns_engine_free(ns_engine *e);

// Fusion. The engine runs a convolution followed by a batch norm (and an add
// of a residual, and a relu) as one group: in eval mode the batch norm,
// residual and relu are applied in the convolution's epilogue; in training
// the convolution computes the batch statistics of each output plane while it
// is in cache and one elementwise pass does the rest (engine.c). The results
// are the same bit for bit as running the nodes one by one, and by default
// every node's act[] and grad[] is filled as before.
//
// Fused mode, opt-in, for callers that only read the output, the parameter
// gradients and grad[0] (net-eval, net-train): the act[] of a group's inner
// nodes (the batch norm, the add before a relu) are not written, nor the
// convolution's in an eval forward of a forward-only engine; backward runs
// the batch norm, add and relu as one pass and writes no grad[] for the inner
// nodes. ns_engine_keep(e, node) keeps a node's act[] written even in fused
// mode (a probe reading a hidden layer). The output, parameter gradients and
// grad[0] are the same bit for bit in both modes. Fused mode saves ~10% in
// eval (resnet20 on 28x28: 42 against 48 ms per batch of 256, 2 threads) and
// a little in training. In fused mode the inner nodes have no act[] or
// grad[] (NULL), unless kept; backward runs in the mode of the last forward.
// A forward-only engine in fused mode writes only the output, the kept nodes
// and what later nodes read, into buffers shared by nodes not alive at the
// same time; act[] of the other nodes are NULL or hold another node's values
// (resnet20, batch 256: 3 buffers, 37 MB, instead of 505 MB).
void ns_engine_set_fused(ns_engine *e, int on);
void ns_engine_keep(ns_engine *e, int node);

// Runs the graph on x (n, input numel). training selects batch statistics and
// dropout. Returns the output node's activations (n, output numel), or NULL on
// a data error (an embedding id out of range, a batch larger than max_batch).
const float *ns_engine_forward(ns_engine *e, const float *x, int64_t n, int training,
                               ns_err *err);
// Backpropagates dout (n, output numel) from the last forward (the engine must
// have been made with_grads), accumulating
// into param_grad (zero it first with ns_engine_zero_grad) and, when
// want_input_grad is set, into grad[0].
void ns_engine_backward(ns_engine *e, const float *dout);
void ns_engine_zero_grad(ns_engine *e);
// Freezes (0) or unfreezes (1) a model tensor: frozen tensors get no gradient.
int ns_engine_set_trainable(ns_engine *e, int tensor, int on, ns_err *err);

int64_t ns_engine_output_numel(const ns_engine *e);

#endif
