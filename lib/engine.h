// engine.h: runs a model: forward over a batch, reverse-mode backward to every
// trainable parameter (and optionally to the input). All buffers are sized for
// a maximum batch at init, so a training loop allocates nothing per step.
//
// Buffers, for a batch of N and node i with per-sample size numel_i:
//   act[i]   (N, numel_i)  the node's output
//   grad[i]  (N, numel_i)  d loss / d act[i], filled by backward
//   param_grad[t]  same shape as model tensor t; NULL for buffers and frozen tensors
#ifndef NS_ENGINE_H
#define NS_ENGINE_H

#include <stdint.h>

#include "graph.h"

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
    float *scratch;        // conv im2col columns
    int64_t scratch_floats;
} ns_engine;

// with_grads: allocate gradient buffers (training, saliency); without, forward only.
int ns_engine_init(ns_engine *e, ns_model *m, int64_t max_batch, int with_grads, ns_err *err);
void ns_engine_free(ns_engine *e);

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
