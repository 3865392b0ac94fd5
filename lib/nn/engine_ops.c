// engine_ops.c: each op's forward and backward as the engine runs them: two
// small functions per op calling the kernels of ops.h on the node's buffers
// (shapes from the node: a batch of N samples of node->numel floats each),
// gathered in ns_engine_exec, indexed by ns_op.
#include "nn/engine_ops.h"

#include <string.h>

// --- forward ---------------------------------------------------------------------

// A linear acts on the last axis: (T, D) tokens are T rows each.
static int64_t linear_in(const op_ctx *c) { const ns_node *in = input_node(c, 0); return in->shape[in->ndim - 1]; }
static int64_t linear_rows(const op_ctx *c) { return c->N * input_node(c, 0)->numel / linear_in(c); }

static int fwd_linear(op_ctx *c, ns_err *err) {
    (void)err;
    ns_linear_forward(out_act(c), in_act(c, 0), param(c, 0), param(c, 1), linear_rows(c), linear_in(c),
                      c->node->iattr[0]);
    return 0;
}
static int fwd_conv2d(op_ctx *c, ns_err *err) {
    (void)err;
    ns_conv2d_geom g = conv_geom(c);
    ns_conv2d_forward(out_act(c), c->e->scratch, in_act(c, 0), param(c, 0), param(c, 1), &g);
    return 0;
}
static int fwd_batchnorm(op_ctx *c, ns_err *err) {
    (void)err;
    int64_t C = c->node->shape[0], S = c->node->numel / C;
    ns_batchnorm_forward(out_act(c), c->e->saved_mean[c->index], c->e->saved_rstd[c->index],
                         param(c, 2), param(c, 3), in_act(c, 0), param(c, 0), param(c, 1), c->N, C,
                         S, c->e->training, (float)c->node->fattr[1], (float)c->node->fattr[0]);
    return 0;
}
static int fwd_layernorm(op_ctx *c, ns_err *err) {
    (void)err;
    int64_t D = c->node->shape[c->node->ndim - 1];
    ns_layernorm_forward(out_act(c), c->e->saved_mean[c->index], c->e->saved_rstd[c->index],
                         in_act(c, 0), param(c, 0), param(c, 1), total(c) / D, D,
                         (float)c->node->fattr[0]);
    return 0;
}
static int fwd_relu(op_ctx *c, ns_err *err) { (void)err; ns_relu_forward(out_act(c), in_act(c, 0), total(c)); return 0; }
static int fwd_leaky_relu(op_ctx *c, ns_err *err) {
    (void)err;
    ns_leaky_relu_forward(out_act(c), in_act(c, 0), (float)c->node->fattr[0], total(c));
    return 0;
}
static int fwd_gelu(op_ctx *c, ns_err *err) {
    (void)err;
    if (c->node->iattr[0]) ns_gelu_tanh_forward(out_act(c), in_act(c, 0), total(c));
    else ns_gelu_forward(out_act(c), in_act(c, 0), total(c));
    return 0;
}
static int fwd_sigmoid(op_ctx *c, ns_err *err) { (void)err; ns_sigmoid_forward(out_act(c), in_act(c, 0), total(c)); return 0; }
static int fwd_tanh(op_ctx *c, ns_err *err) { (void)err; ns_tanh_forward(out_act(c), in_act(c, 0), total(c)); return 0; }
static int fwd_maxpool(op_ctx *c, ns_err *err) {
    (void)err;
    ns_pool2d_geom g = pool_geom(c);
    ns_maxpool2d_forward(out_act(c), c->e->argmax[c->index], in_act(c, 0), &g);
    return 0;
}
static int fwd_avgpool(op_ctx *c, ns_err *err) {
    (void)err;
    ns_pool2d_geom g = pool_geom(c);
    ns_avgpool2d_forward(out_act(c), in_act(c, 0), &g);
    return 0;
}
static int fwd_global_avgpool(op_ctx *c, ns_err *err) {
    (void)err;
    const ns_node *in = input_node(c, 0);
    ns_global_avgpool_forward(out_act(c), in_act(c, 0), c->N, in->shape[0], in->numel / in->shape[0]);
    return 0;
}
static int fwd_add(op_ctx *c, ns_err *err) { (void)err; ns_add_forward(out_act(c), in_act(c, 0), in_act(c, 1), total(c)); return 0; }
static int fwd_mul(op_ctx *c, ns_err *err) { (void)err; ns_mul_forward(out_act(c), in_act(c, 0), in_act(c, 1), total(c)); return 0; }
static int fwd_concat(op_ctx *c, ns_err *err) {
    (void)err;
    const float *inps[NS_MAX_INPUTS];
    int64_t Cs[NS_MAX_INPUTS];
    for (int k = 0; k < c->node->ninputs; k++) {
        inps[k] = in_act(c, k);
        Cs[k] = input_node(c, k)->shape[0];
    }
    ns_concat_forward(out_act(c), inps, Cs, c->node->ninputs, c->N, c->node->numel / c->node->shape[0]);
    return 0;
}
static int fwd_copy(op_ctx *c, ns_err *err) { // flatten, reshape: same bytes, new shape
    (void)err;
    memcpy(out_act(c), in_act(c, 0), (size_t)total(c) * sizeof(float));
    return 0;
}
static int fwd_transpose(op_ctx *c, ns_err *err) {
    (void)err;
    const ns_node *in = input_node(c, 0);
    for (int64_t s = 0; s < c->N; s++)
        ns_transpose_forward(out_act(c) + s * in->numel, in_act(c, 0) + s * in->numel, in->shape[0], in->shape[1]);
    return 0;
}
static int fwd_dropout(op_ctx *c, ns_err *err) {
    (void)err;
    float p = (float)c->node->fattr[0];
    if (!c->e->training || p == 0) return fwd_copy(c, err);
    uint64_t seed = ns_rand_u64(c->e->seed, c->e->step * 1024 + (uint64_t)c->index);
    ns_dropout_mask(c->e->mask[c->index], p, seed, total(c));
    ns_dropout_forward(out_act(c), in_act(c, 0), c->e->mask[c->index], p, total(c));
    return 0;
}
static int fwd_embedding(op_ctx *c, ns_err *err) {
    const ns_node *in = input_node(c, 0);
    int64_t n = c->N * in->numel, V = c->node->iattr[0];
    const float *x = in_act(c, 0);
    for (int64_t i = 0; i < n; i++) {
        if (!(x[i] >= 0 && x[i] < (float)V) || x[i] != (float)(int32_t)x[i])
            return ns_errf(err, "node %s: id %g is not an integer in [0, %lld)", c->node->name, x[i], (long long)V);
        c->e->ids[c->index][i] = (int32_t)x[i];
    }
    ns_embedding_forward(out_act(c), c->e->ids[c->index], param(c, 0), n, c->node->iattr[1]);
    return 0;
}

// --- backward -------------------------------------------------------------------

static void bwd_linear(op_ctx *c) {
    ns_linear_backward(in_grad(c, 0), param_grad(c, 0), param_grad(c, 1), out_grad(c), in_act(c, 0),
                       param(c, 0), linear_rows(c), linear_in(c), c->node->iattr[0]);
}
static void bwd_conv2d(op_ctx *c) {
    ns_conv2d_geom g = conv_geom(c);
    ns_conv2d_backward_ex(in_grad(c, 0), param_grad(c, 0), param_grad(c, 1), c->e->scratch,
                          out_grad(c), in_act(c, 0), param(c, 0), &g, c->overwrite & 1);
}
static void bwd_batchnorm(op_ctx *c) {
    int64_t C = c->node->shape[0], S = c->node->numel / C;
    ns_batchnorm_backward_ex(in_grad(c, 0), param_grad(c, 0), param_grad(c, 1), NULL, out_grad(c),
                             NULL, NULL, in_act(c, 0), c->e->saved_mean[c->index],
                             c->e->saved_rstd[c->index], param(c, 0), c->N, C, S,
                             c->e->training, c->overwrite & 1);
}
static void bwd_layernorm(op_ctx *c) {
    int64_t D = c->node->shape[c->node->ndim - 1];
    ns_layernorm_backward(in_grad(c, 0), param_grad(c, 0), param_grad(c, 1), out_grad(c), in_act(c, 0),
                          c->e->saved_mean[c->index], c->e->saved_rstd[c->index], param(c, 0),
                          total(c) / D, D);
}
static void bwd_relu(op_ctx *c) {
    if (in_grad(c, 0)) ns_relu_backward_ex(in_grad(c, 0), out_grad(c), out_act(c), total(c), c->overwrite & 1);
}
static void bwd_leaky_relu(op_ctx *c) {
    if (in_grad(c, 0))
        ns_leaky_relu_backward(in_grad(c, 0), out_grad(c), in_act(c, 0), (float)c->node->fattr[0], total(c));
}
static void bwd_gelu(op_ctx *c) {
    if (!in_grad(c, 0)) return;
    if (c->node->iattr[0]) ns_gelu_tanh_backward(in_grad(c, 0), out_grad(c), in_act(c, 0), total(c));
    else ns_gelu_backward(in_grad(c, 0), out_grad(c), in_act(c, 0), total(c));
}
static void bwd_sigmoid(op_ctx *c) { if (in_grad(c, 0)) ns_sigmoid_backward(in_grad(c, 0), out_grad(c), out_act(c), total(c)); }
static void bwd_tanh(op_ctx *c) { if (in_grad(c, 0)) ns_tanh_backward(in_grad(c, 0), out_grad(c), out_act(c), total(c)); }
static void bwd_maxpool(op_ctx *c) {
    if (!in_grad(c, 0)) return;
    ns_pool2d_geom g = pool_geom(c);
    ns_maxpool2d_backward(in_grad(c, 0), out_grad(c), c->e->argmax[c->index], &g);
}
static void bwd_avgpool(op_ctx *c) {
    if (!in_grad(c, 0)) return;
    ns_pool2d_geom g = pool_geom(c);
    ns_avgpool2d_backward(in_grad(c, 0), out_grad(c), &g);
}
static void bwd_global_avgpool(op_ctx *c) {
    const ns_node *in = input_node(c, 0);
    if (in_grad(c, 0))
        ns_global_avgpool_backward(in_grad(c, 0), out_grad(c), c->N, in->shape[0], in->numel / in->shape[0]);
}
static void bwd_add(op_ctx *c) {
    ns_add_backward_ex(in_grad(c, 0), in_grad(c, 1), out_grad(c), total(c), c->overwrite & 3);
}
static void bwd_mul(op_ctx *c) {
    ns_mul_backward(in_grad(c, 0), in_grad(c, 1), out_grad(c), in_act(c, 0), in_act(c, 1), total(c));
}
static void bwd_concat(op_ctx *c) {
    float *dinps[NS_MAX_INPUTS];
    int64_t Cs[NS_MAX_INPUTS];
    for (int k = 0; k < c->node->ninputs; k++) {
        dinps[k] = in_grad(c, k);
        Cs[k] = input_node(c, k)->shape[0];
    }
    ns_concat_backward(dinps, out_grad(c), Cs, c->node->ninputs, c->N, c->node->numel / c->node->shape[0]);
}
static void bwd_copy(op_ctx *c) { accumulate(in_grad(c, 0), out_grad(c), total(c)); }
static void bwd_transpose(op_ctx *c) {
    const ns_node *in = input_node(c, 0);
    if (!in_grad(c, 0)) return;
    for (int64_t s = 0; s < c->N; s++)
        ns_transpose_backward(in_grad(c, 0) + s * in->numel, out_grad(c) + s * in->numel, in->shape[0], in->shape[1]);
}
static void bwd_dropout(op_ctx *c) {
    float p = (float)c->node->fattr[0];
    if (!c->e->training || p == 0) { bwd_copy(c); return; }
    if (in_grad(c, 0)) ns_dropout_backward(in_grad(c, 0), out_grad(c), c->e->mask[c->index], p, total(c));
}
static void bwd_embedding(op_ctx *c) {
    if (param_grad(c, 0))
        ns_embedding_backward(param_grad(c, 0), out_grad(c), c->e->ids[c->index], c->N * input_node(c, 0)->numel,
                              c->node->iattr[1]);
}

// --- transformer ops --------------------------------------------------------------

// softmax's axis as (outer, L, inner) of the per-sample shape, the batch outer
static void softmax_dims(const op_ctx *c, int64_t *outer, int64_t *L, int64_t *inner) {
    const ns_node *n = c->node;
    int axis = (int)(n->iattr[0] < 0 ? n->iattr[0] + n->ndim : n->iattr[0]);
    *outer = c->N;
    *inner = 1;
    for (int i = 0; i < axis; i++) *outer *= n->shape[i];
    for (int i = axis + 1; i < n->ndim; i++) *inner *= n->shape[i];
    *L = n->shape[axis];
}
static int fwd_softmax(op_ctx *c, ns_err *err) {
    (void)err;
    int64_t o, L, i;
    softmax_dims(c, &o, &L, &i);
    ns_softmax_forward(out_act(c), in_act(c, 0), o, L, i);
    return 0;
}
static void bwd_softmax(op_ctx *c) {
    int64_t o, L, i;
    softmax_dims(c, &o, &L, &i);
    if (in_grad(c, 0)) ns_softmax_backward(in_grad(c, 0), out_grad(c), out_act(c), o, L, i);
}
static int fwd_groupnorm(op_ctx *c, ns_err *err) {
    (void)err;
    int64_t C = c->node->shape[0];
    ns_groupnorm_forward(out_act(c), c->e->saved_mean[c->index], c->e->saved_rstd[c->index], in_act(c, 0),
                         param(c, 0), param(c, 1), c->N, C, c->node->numel / C, c->node->iattr[0],
                         (float)c->node->fattr[0]);
    return 0;
}
static void bwd_groupnorm(op_ctx *c) {
    int64_t C = c->node->shape[0];
    ns_groupnorm_backward(in_grad(c, 0), param_grad(c, 0), param_grad(c, 1), out_grad(c), in_act(c, 0),
                          c->e->saved_mean[c->index], c->e->saved_rstd[c->index], param(c, 0), c->N, C,
                          c->node->numel / C, c->node->iattr[0]);
}
// patch_embed: the patches (saved), then a linear map of each
static int fwd_patch_embed(op_ctx *c, ns_err *err) {
    (void)err;
    const ns_node *in = input_node(c, 0);
    int64_t P = c->node->iattr[1], K = in->shape[0] * P * P;
    ns_patches_forward(c->e->saved[c->index], in_act(c, 0), c->N, in->shape[0], in->shape[1], in->shape[2], P);
    ns_linear_forward(out_act(c), c->e->saved[c->index], param(c, 0), param(c, 1), c->N * c->node->shape[0], K,
                      c->node->shape[1]);
    return 0;
}
static void bwd_patch_embed(op_ctx *c) {
    const ns_node *in = input_node(c, 0);
    int64_t P = c->node->iattr[1], K = in->shape[0] * P * P, rows = c->N * c->node->shape[0];
    float *dcols = in_grad(c, 0) ? c->e->scratch : NULL;
    if (dcols) memset(dcols, 0, (size_t)(rows * K) * sizeof *dcols);
    ns_linear_backward(dcols, param_grad(c, 0), param_grad(c, 1), out_grad(c), c->e->saved[c->index],
                       param(c, 0), rows, K, c->node->shape[1]);
    if (dcols) ns_patches_backward(in_grad(c, 0), dcols, c->N, in->shape[0], in->shape[1], in->shape[2], P);
}
static int fwd_cls_token(op_ctx *c, ns_err *err) {
    (void)err;
    const ns_node *in = input_node(c, 0);
    ns_cls_token_forward(out_act(c), in_act(c, 0), param(c, 0), c->N, in->shape[0], in->shape[1]);
    return 0;
}
static void bwd_cls_token(op_ctx *c) {
    const ns_node *in = input_node(c, 0);
    ns_cls_token_backward(in_grad(c, 0), param_grad(c, 0), out_grad(c), c->N, in->shape[0], in->shape[1]);
}
static int fwd_pos_embed(op_ctx *c, ns_err *err) {
    (void)err;
    ns_pos_embed_forward(out_act(c), in_act(c, 0), param(c, 0), c->N, c->node->shape[0], c->node->shape[1]);
    return 0;
}
static void bwd_pos_embed(op_ctx *c) {
    ns_pos_embed_backward(in_grad(c, 0), param_grad(c, 0), out_grad(c), c->N, c->node->shape[0], c->node->shape[1]);
}
// token_pool: mode 2 reads its second input (the ids) and gives it no gradient
static int fwd_token_pool(op_ctx *c, ns_err *err) {
    (void)err;
    const ns_node *in = input_node(c, 0);
    if (c->node->iattr[0] == 2)
        ns_token_pool_eot_forward(out_act(c), in_act(c, 0), in_act(c, 1), c->N, in->shape[0], in->shape[1]);
    else
        ns_token_pool_forward(out_act(c), in_act(c, 0), (int)c->node->iattr[0], c->N, in->shape[0], in->shape[1]);
    return 0;
}
static void bwd_token_pool(op_ctx *c) {
    const ns_node *in = input_node(c, 0);
    if (!in_grad(c, 0)) return;
    if (c->node->iattr[0] == 2)
        ns_token_pool_eot_backward(in_grad(c, 0), out_grad(c), in_act(c, 1), c->N, in->shape[0], in->shape[1]);
    else
        ns_token_pool_backward(in_grad(c, 0), out_grad(c), (int)c->node->iattr[0], c->N, in->shape[0], in->shape[1]);
}
static const float *attn_mask(const op_ctx *c) {
    return c->node->ninputs == 2 + c->node->iattr[3] ? in_act(c, c->node->ninputs - 1) : NULL;
}
static int fwd_attention(op_ctx *c, ns_err *err) {
    ns_attn_geom g = attn_geom(c);
    if (g.cross_heads && g.N % 2)
        return ns_errf(err, "node %s: twin attention (cross_heads %lld) runs on pairs, [first images; second images], "
                       "an even batch, not %lld", c->node->name, (long long)g.cross_heads, (long long)g.N);
    ns_attention_forward(out_act(c), c->e->saved[c->index], in_act(c, 0), in_act(c, g.self ? 0 : 1), attn_mask(c),
                         param(c, 0), param(c, 1), param(c, 2), param(c, 3), &g);
    return 0;
}
static void bwd_attention(op_ctx *c) {
    ns_attn_geom g = attn_geom(c);
    ns_attention_backward(in_grad(c, 0), g.self ? NULL : in_grad(c, 1), param_grad(c, 0), param_grad(c, 1),
                          param_grad(c, 2), param_grad(c, 3), c->e->scratch, out_grad(c), c->e->saved[c->index],
                          in_act(c, 0), in_act(c, g.self ? 0 : 1), param(c, 0), param(c, 2), &g);
}


static int fwd_upsample(op_ctx *c, ns_err *err) {
    (void)err;
    const ns_node *in = input_node(c, 0);
    ns_upsample_nearest_forward(out_act(c), in_act(c, 0), c->N, in->shape[0], in->shape[1], in->shape[2], c->node->iattr[0]);
    return 0;
}
static void bwd_upsample(op_ctx *c) {
    const ns_node *in = input_node(c, 0);
    if (in_grad(c, 0))
        ns_upsample_nearest_backward(in_grad(c, 0), out_grad(c), c->N, in->shape[0], in->shape[1], in->shape[2], c->node->iattr[0]);
}

const op_exec ns_engine_exec[NS_OP_COUNT] = {
    [NS_OP_INPUT] = {NULL, NULL},
    [NS_OP_LINEAR] = {fwd_linear, bwd_linear},
    [NS_OP_CONV2D] = {fwd_conv2d, bwd_conv2d, 1},
    [NS_OP_BATCHNORM] = {fwd_batchnorm, bwd_batchnorm, 1},
    [NS_OP_LAYERNORM] = {fwd_layernorm, bwd_layernorm},
    [NS_OP_RELU] = {fwd_relu, bwd_relu, 1},
    [NS_OP_LEAKY_RELU] = {fwd_leaky_relu, bwd_leaky_relu},
    [NS_OP_GELU] = {fwd_gelu, bwd_gelu},
    [NS_OP_SIGMOID] = {fwd_sigmoid, bwd_sigmoid},
    [NS_OP_TANH] = {fwd_tanh, bwd_tanh},
    [NS_OP_MAXPOOL] = {fwd_maxpool, bwd_maxpool},
    [NS_OP_AVGPOOL] = {fwd_avgpool, bwd_avgpool},
    [NS_OP_GLOBAL_AVGPOOL] = {fwd_global_avgpool, bwd_global_avgpool},
    [NS_OP_ADD] = {fwd_add, bwd_add, 3},
    [NS_OP_MUL] = {fwd_mul, bwd_mul},
    [NS_OP_CONCAT] = {fwd_concat, bwd_concat},
    [NS_OP_FLATTEN] = {fwd_copy, bwd_copy},
    [NS_OP_RESHAPE] = {fwd_copy, bwd_copy},
    [NS_OP_TRANSPOSE] = {fwd_transpose, bwd_transpose},
    [NS_OP_DROPOUT] = {fwd_dropout, bwd_dropout},
    [NS_OP_EMBEDDING] = {fwd_embedding, bwd_embedding},
    [NS_OP_SOFTMAX] = {fwd_softmax, bwd_softmax},
    [NS_OP_GROUPNORM] = {fwd_groupnorm, bwd_groupnorm},
    [NS_OP_PATCH_EMBED] = {fwd_patch_embed, bwd_patch_embed},
    [NS_OP_CLS_TOKEN] = {fwd_cls_token, bwd_cls_token},
    [NS_OP_POS_EMBED] = {fwd_pos_embed, bwd_pos_embed},
    [NS_OP_TOKEN_POOL] = {fwd_token_pool, bwd_token_pool},
    [NS_OP_ATTENTION] = {fwd_attention, bwd_attention},
    [NS_OP_UPSAMPLE] = {fwd_upsample, bwd_upsample},
};

