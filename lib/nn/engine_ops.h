// engine_ops.h: inside the engine (engine.c, engine_ops.c): the context an
// op's forward and backward run with, its accessors, and the table of every
// op's forward and backward (engine_ops.c). Not part of the library's API.
#ifndef NS_ENGINE_OPS_H
#define NS_ENGINE_OPS_H

#include "nn/engine.h"
#include "nn/ops.h"

// ---------------------------------------------------------------------------
// per-op glue

typedef struct op_ctx {
    ns_engine *e;
    const ns_node *node;
    int index;
    int64_t N;
    int overwrite; // backward: bit k set, input k's gradient is written, not accumulated
} op_ctx;

static inline const ns_node *input_node(const op_ctx *c, int k) { return &c->e->model->nodes[c->node->inputs[k]]; }
static inline float *in_act(const op_ctx *c, int k) { return c->e->act[c->node->inputs[k]]; }
// The gradient buffer of input k, or NULL when nothing needs it (the input node).
static inline float *in_grad(const op_ctx *c, int k) {
    int j = c->node->inputs[k];
    return j == 0 && !c->e->want_input_grad ? NULL : c->e->grad[j];
}
static inline float *param(const op_ctx *c, int p) {
    int t = c->node->params[p];
    return t < 0 ? NULL : c->e->model->tensors[t].t.data;
}
static inline float *param_grad(const op_ctx *c, int p) {
    int t = c->node->params[p];
    return t < 0 ? NULL : c->e->param_grad[t];
}

static inline ns_conv2d_geom conv_geom(const op_ctx *c) {
    const ns_node *in = input_node(c, 0);
    const int64_t *a = c->node->iattr; // out, kernel, stride, pad, dilation, groups
    ns_conv2d_geom g = {c->N, in->shape[0], in->shape[1], in->shape[2], a[0], a[1], a[1],
                        a[2], a[2], a[3], a[3], a[4], a[4], a[5], 0, 0};
    ns_conv2d_geom_init(&g, NULL); // checked when the model was resolved
    return g;
}

static inline ns_pool2d_geom pool_geom(const op_ctx *c) {
    const ns_node *in = input_node(c, 0);
    int64_t k = c->node->iattr[0], s = c->node->iattr[1] ? c->node->iattr[1] : k, p = c->node->iattr[2];
    ns_pool2d_geom g = {c->N, in->shape[0], in->shape[1], in->shape[2], k, k, s, s, p, p, 0, 0};
    ns_pool2d_geom_init(&g, NULL);
    return g;
}

static inline int64_t total(const op_ctx *c) { return c->N * c->node->numel; }
static inline float *out_act(const op_ctx *c) { return c->e->act[c->index]; }
static inline float *out_grad(const op_ctx *c) { return c->e->grad[c->index]; }

static inline void accumulate(float *dst, const float *src, int64_t n) {
    if (!dst) return;
    #pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; i++) dst[i] += src[i];
}


// An attention node's geometry (queries from input 0; keys and values from
// input 1 when it is cross-attention).
static inline ns_attn_geom attn_geom(const op_ctx *c) {
    const ns_node *n = c->node, *kv = input_node(c, n->iattr[3] ? 1 : 0);
    ns_attn_geom g = {c->N, n->shape[0], kv->shape[0], n->shape[1], n->iattr[0], (int)n->iattr[1], !n->iattr[3],
                      n->iattr[4]};
    return g;
}

typedef struct op_exec {
    int (*forward)(op_ctx *c, ns_err *err);
    void (*backward)(op_ctx *c);
    int overwrites; // bit k: the backward can write input k's gradient (op_ctx.overwrite)
} op_exec;

// Every op's forward and backward, indexed by ns_op (NULL for the input).
extern const op_exec ns_engine_exec[NS_OP_COUNT];

#endif
