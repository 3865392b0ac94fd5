// model.c: the op table, building and checking model graphs (names,
// attribute ranges), shape inference and PyTorch-style initialisation
// (model.h). Reading and writing model streams: model_io.c.
#include "nn/model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn/ops.h"
#include "base/rng.h"

// ---------------------------------------------------------------------------
// The op table. Attribute defaults follow torch's (stride 1, eps 1e-5, ...).
// Pooling's stride 0 means "the kernel size", torch's default.
const ns_op_info ns_ops[NS_OP_COUNT] = {
    [NS_OP_INPUT] = {"input", 0, 0, {"channels", "height", "width"}, {1, 0, 0}},
    [NS_OP_LINEAR] = {"linear", 1, 1, {"out", "bias"}, {1, 1}, {NULL}, {0},
                      {"weight", "bias"}, {1, 1}},
    [NS_OP_CONV2D] = {"conv2d", 1, 1,
                      {"out", "kernel", "stride", "pad", "dilation", "groups", "bias"},
                      {1, 3, 1, 0, 1, 1, 1}, {NULL}, {0}, {"weight", "bias"}, {1, 1}},
    [NS_OP_BATCHNORM] = {"batchnorm", 1, 1, {NULL}, {0}, {"eps", "momentum"}, {1e-5, 0.1},
                         {"weight", "bias", "running_mean", "running_var"}, {1, 1, 0, 0}},
    [NS_OP_LAYERNORM] = {"layernorm", 1, 1, {NULL}, {0}, {"eps"}, {1e-5},
                         {"weight", "bias"}, {1, 1}},
    [NS_OP_RELU] = {"relu", 1, 1},
    [NS_OP_LEAKY_RELU] = {"leaky_relu", 1, 1, {NULL}, {0}, {"slope"}, {0.01}},
    [NS_OP_GELU] = {"gelu", 1, 1, {"approximate"}, {0}}, // 0 exact (erf), 1 tanh form
    [NS_OP_SIGMOID] = {"sigmoid", 1, 1},
    [NS_OP_TANH] = {"tanh", 1, 1},
    [NS_OP_MAXPOOL] = {"maxpool", 1, 1, {"kernel", "stride", "pad"}, {2, 0, 0}},
    [NS_OP_AVGPOOL] = {"avgpool", 1, 1, {"kernel", "stride", "pad"}, {2, 0, 0}},
    [NS_OP_GLOBAL_AVGPOOL] = {"global_avgpool", 1, 1},
    [NS_OP_ADD] = {"add", 2, 2},
    [NS_OP_MUL] = {"mul", 2, 2},
    [NS_OP_CONCAT] = {"concat", 2, NS_MAX_INPUTS},
    [NS_OP_FLATTEN] = {"flatten", 1, 1},
    [NS_OP_RESHAPE] = {"reshape", 1, 1, {"dim0", "dim1", "dim2", "dim3"}, {-1, 0, 0, 0}},
    [NS_OP_TRANSPOSE] = {"transpose", 1, 1},
    [NS_OP_DROPOUT] = {"dropout", 1, 1, {NULL}, {0}, {"p"}, {0.5}},
    [NS_OP_EMBEDDING] = {"embedding", 1, 1, {"num", "dim"}, {1, 1}, {NULL}, {0},
                         {"weight"}, {1}},
    [NS_OP_SOFTMAX] = {"softmax", 1, 1, {"axis"}, {-1}},
    [NS_OP_GROUPNORM] = {"groupnorm", 1, 1, {"groups"}, {1}, {"eps"}, {1e-5},
                         {"weight", "bias"}, {1, 1}},
    [NS_OP_PATCH_EMBED] = {"patch_embed", 1, 1, {"out", "patch", "bias"}, {1, 4, 1}, {NULL}, {0},
                           {"weight", "bias"}, {1, 1}},
    [NS_OP_CLS_TOKEN] = {"cls_token", 1, 1, {NULL}, {0}, {NULL}, {0}, {"weight"}, {1}},
    [NS_OP_POS_EMBED] = {"pos_embed", 1, 1, {NULL}, {0}, {NULL}, {0}, {"weight"}, {1}},
    // 0 first (class) token, 1 mean, 2 end of text: the token where the second input (ids) is largest
    [NS_OP_TOKEN_POOL] = {"token_pool", 1, 2, {"mode"}, {0}},
    // inputs: queries [, keys and values when cross] [, key padding mask]
    // cross_heads: twin self-attention, the last heads read the partner sample's keys (ops.h)
    [NS_OP_ATTENTION] = {"attention", 1, 3, {"heads", "causal", "bias", "cross", "cross_heads"}, {1, 0, 1, 0, 0},
                         {NULL}, {0},
                         {"in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias"}, // torch's names
                         {1, 1, 1, 1}},
    [NS_OP_UPSAMPLE] = {"upsample", 1, 1, {"scale"}, {2}}, // nearest, integer factor
};
_Static_assert(NS_OP_COUNT == 29, "describe the new op in ns_ops");

int ns_op_from_name(const char *name) {
    for (int op = 0; op < NS_OP_COUNT; op++)
        if (strcmp(ns_ops[op].name, name) == 0) return op;
    return -1;
}

static int attr_index(const char *const *names, const char *key) {
    for (int i = 0; i < NS_MAX_ATTRS && names[i]; i++)
        if (strcmp(names[i], key) == 0) return i;
    return -1;
}

static int slot_count(const char *const *names, int cap) {
    int n = 0;
    while (n < cap && names[n]) n++;
    return n;
}

// ---------------------------------------------------------------------------
// building

void ns_model_init(ns_model *m) {
    memset(m, 0, sizeof *m);
    m->output = -1;
}

void ns_model_free(ns_model *m) {
    for (int i = 0; i < m->ntensors; i++) ns_tensor_free(&m->tensors[i].t);
    free(m->tensors);
    free(m->nodes);
    ns_strings_free(m->labels, m->nlabels);
    ns_model_init(m);
}

static int grow(void **items, int *cap, int count, size_t item_size, ns_err *err) {
    if (count < *cap) return 0;
    int next = *cap ? *cap * 2 : 32;
    void *grown = realloc(*items, (size_t)next * item_size);
    if (!grown) return ns_errf(err, "out of memory");
    *items = grown;
    *cap = next;
    return 0;
}

int ns_model_find_node(const ns_model *m, const char *name) {
    for (int i = 0; i < m->nnodes; i++)
        if (strcmp(m->nodes[i].name, name) == 0) return i;
    return -1;
}

int ns_model_find_tensor(const ns_model *m, const char *name) {
    for (int i = 0; i < m->ntensors; i++)
        if (strcmp(m->tensors[i].name, name) == 0) return i;
    return -1;
}

int ns_name_ok(const char *s, size_t n, size_t max) {
    if (n == 0 || n > max) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        int letter = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
        if (!letter && (i == 0 || !((c >= '0' && c <= '9') || c == '.' || c == '-'))) return 0;
    }
    return 1;
}

const char *ns_quote_bytes(char *buf, size_t max_in, const char *s, size_t n) {
    size_t o = 0, cap = 4 * max_in + 4;
    for (size_t i = 0; i < n && i < max_in; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7f) buf[o++] = (char)c;
        else o += (size_t)snprintf(buf + o, cap - o, "\\x%02x", c);
    }
    if (n > max_in) {
        memcpy(buf + o, "...", 3);
        o += 3;
    }
    buf[o] = 0;
    return buf;
}

static int add_node(ns_model *m, const char *name, ns_op op, const int *inputs, int ninputs,
                    int search_duplicate, ns_err *err) {
    const ns_op_info *info = &ns_ops[op];
    size_t len = strlen(name);
    if (!ns_name_ok(name, len, NS_NODE_NAME_MAX - 1)) {
        char q[4 * NS_NODE_NAME_MAX + 4];
        return ns_errf(err, "bad node name '%s' (1 to %d bytes: a letter or '_', then letters, digits, "
                       "'_', '.' or '-')", ns_quote_bytes(q, NS_NODE_NAME_MAX, name, len), NS_NODE_NAME_MAX - 1);
    }
    if (search_duplicate && ns_model_find_node(m, name) >= 0) return ns_errf(err, "duplicate node name (%s)", name);
    if (ninputs < info->min_inputs || ninputs > info->max_inputs)
        return ns_errf(err, "node %s: %s takes %d to %d inputs, not %d", name, info->name,
                       info->min_inputs, info->max_inputs, ninputs);
    for (int i = 0; i < ninputs; i++)
        if (inputs[i] < 0 || inputs[i] >= m->nnodes)
            return ns_errf(err, "node %s: input %d is not an earlier node", name, i);
    if (grow((void **)&m->nodes, &m->cap_nodes, m->nnodes, sizeof *m->nodes, err) < 0) return -1;
    ns_node *n = &m->nodes[m->nnodes];
    memset(n, 0, sizeof *n);
    snprintf(n->name, sizeof n->name, "%s", name);
    n->op = op;
    n->ninputs = ninputs;
    for (int i = 0; i < ninputs; i++) n->inputs[i] = inputs[i];
    for (int i = 0; i < NS_MAX_PARAMS; i++) n->params[i] = -1;
    for (int i = 0; i < NS_MAX_ATTRS; i++) {
        n->iattr[i] = info->idefault[i];
        n->fattr[i] = info->fdefault[i];
    }
    m->output = m->nnodes;
    return m->nnodes++;
}

int ns_model_add_node(ns_model *m, const char *name, ns_op op, const int *inputs, int ninputs,
                      ns_err *err) {
    return add_node(m, name, op, inputs, ninputs, 1, err);
}

int ns_model_append_node(ns_model *m, const char *name, ns_op op, const int *inputs, int ninputs,
                         ns_err *err) {
    return add_node(m, name, op, inputs, ninputs, 0, err);
}

int ns_model_add_input(ns_model *m, int c, int h, int w, ns_err *err) {
    if (m->nnodes) return ns_errf(err, "the input must be the first node");
    int id = ns_model_add_node(m, "input", NS_OP_INPUT, NULL, 0, err);
    if (id < 0) return -1;
    m->nodes[id].iattr[0] = c;
    m->nodes[id].iattr[1] = h;
    m->nodes[id].iattr[2] = w;
    return id;
}

int ns_node_set_iattr(ns_node *n, const char *key, int64_t v, ns_err *err) {
    int i = attr_index(ns_ops[n->op].iattr, key);
    if (i < 0) return ns_errf(err, "node %s: %s has no integer attribute %s", n->name, ns_ops[n->op].name, key);
    n->iattr[i] = v;
    return 0;
}

int ns_node_set_fattr(ns_node *n, const char *key, double v, ns_err *err) {
    int i = attr_index(ns_ops[n->op].fattr, key);
    if (i < 0) return ns_errf(err, "node %s: %s has no real attribute %s", n->name, ns_ops[n->op].name, key);
    n->fattr[i] = v;
    return 0;
}

int64_t ns_node_iattr(const ns_node *n, const char *key) {
    int i = attr_index(ns_ops[n->op].iattr, key);
    return i < 0 ? 0 : n->iattr[i];
}

double ns_node_fattr(const ns_node *n, const char *key) {
    int i = attr_index(ns_ops[n->op].fattr, key);
    return i < 0 ? 0 : n->fattr[i];
}

static int add_tensor(ns_model *m, const char *name, int ndim, const int64_t *shape, int trainable,
                      int search_duplicate, ns_err *err) {
    if (strlen(name) > NS_NAME_MAX) return ns_errf(err, "tensor name too long (%.40s...)", name);
    if (search_duplicate && ns_model_find_tensor(m, name) >= 0)
        return ns_errf(err, "duplicate tensor name (%s)", name);
    if (grow((void **)&m->tensors, &m->cap_tensors, m->ntensors, sizeof *m->tensors, err) < 0)
        return -1;
    ns_named_tensor *nt = &m->tensors[m->ntensors];
    memset(nt, 0, sizeof *nt);
    snprintf(nt->name, sizeof nt->name, "%s", name);
    nt->trainable = trainable;
    if (ns_tensor_alloc(&nt->t, NS_F32, ndim, shape, err) < 0) return -1;
    return m->ntensors++;
}

int ns_model_add_tensor(ns_model *m, const char *name, int ndim, const int64_t *shape,
                        int trainable, ns_err *err) {
    return add_tensor(m, name, ndim, shape, trainable, 1, err);
}

int ns_model_append_tensor(ns_model *m, const char *name, int ndim, const int64_t *shape,
                           int trainable, ns_err *err) {
    return add_tensor(m, name, ndim, shape, trainable, 0, err);
}

// ---------------------------------------------------------------------------
// attribute ranges

#define ATTR_INT_MAX 2147483647LL // integer attributes lie below 2^31 (a spec can write them)

static int int_in(const ns_node *n, int a, int64_t lo, int64_t hi, const char *rule, ns_err *err) {
    int64_t v = n->iattr[a];
    if (v >= lo && v <= hi) return 0;
    return ns_errf(err, "node %s: %s must be %s, not %lld", n->name, ns_ops[n->op].iattr[a], rule, (long long)v);
}

int ns_node_check_attrs(const ns_node *n, ns_err *err) {
    if ((int)n->op < 0 || n->op >= NS_OP_COUNT) return ns_errf(err, "node %s: no valid op", n->name);
    const ns_op_info *info = &ns_ops[n->op];
    const int64_t *iv = n->iattr;
    const double *fv = n->fattr;
    switch (n->op) {
    case NS_OP_INPUT: {
        int64_t c = iv[0], h = iv[1], w = iv[2];
        if (c < 1 || h < 0 || w < 0 || (h == 0) != (w == 0))
            return ns_errf(err, "input shape %lldx%lldx%lld is not C x H x W or D", (long long)c,
                           (long long)h, (long long)w);
        if (c > (1 << 24) || h > (1 << 16) || w > (1 << 16))
            return ns_errf(err, "input shape %lldx%lldx%lld is too large (C at most 2^24, H and W 2^16)",
                           (long long)c, (long long)h, (long long)w);
        return 0;
    }
    case NS_OP_LINEAR:
        if (iv[0] < 1) return ns_errf(err, "node %s: out must be positive, not %lld", n->name, (long long)iv[0]);
        break;
    case NS_OP_EMBEDDING:
        if (iv[0] < 1 || iv[1] < 1)
            return ns_errf(err, "node %s: num and dim must be positive, not %lld and %lld", n->name,
                           (long long)iv[0], (long long)iv[1]);
        break;
    case NS_OP_CONV2D: // sizes, strides, padding and groups: ns_conv2d_geom_init
    case NS_OP_MAXPOOL:
    case NS_OP_AVGPOOL:
    case NS_OP_RESHAPE: // dims: infer_shape
    default:
        break;
    }
    for (int a = 0; a < NS_MAX_ATTRS && info->iattr[a]; a++) {
        int bias = strcmp(info->iattr[a], "bias") == 0;
        if (int_in(n, a, bias ? 0 : -ATTR_INT_MAX - 1, bias ? 1 : ATTR_INT_MAX,
                   bias ? "0 or 1" : "below 2^31 in magnitude", err) < 0)
            return -1;
    }
    for (int a = 0; a < NS_MAX_ATTRS && info->fattr[a]; a++) {
        const char *key = info->fattr[a];
        double v = fv[a];
        const char *rule = NULL;
        if (!isfinite(v)) rule = "a finite number";
        else if (strcmp(key, "eps") == 0 && !(v > 0)) rule = "positive";
        else if (strcmp(key, "momentum") == 0 && !(v >= 0 && v <= 1)) rule = "in [0, 1]";
        else if (strcmp(key, "p") == 0 && !(v >= 0 && v < 1)) rule = "in [0, 1)";
        if (rule) return ns_errf(err, "node %s: %s must be %s, not %g", n->name, key, rule, v);
    }
    return 0;
}

int ns_node_uses_param(const ns_node *n, int p) {
    const ns_op_info *info = &ns_ops[n->op];
    if (p < 0 || p >= slot_count(info->param, NS_MAX_PARAMS)) return 0;
    // the biases of an op with a bias switch (linear, conv2d, patch_embed;
    // attention's in_proj_bias and out_proj.bias), as param_shapes makes them
    size_t len = strlen(info->param[p]);
    if (attr_index(info->iattr, "bias") >= 0 && len >= 4 && strcmp(info->param[p] + len - 4, "bias") == 0)
        return ns_node_iattr(n, "bias") != 0;
    return 1;
}

// ---------------------------------------------------------------------------
// shape inference

// Per-sample sizes above this are refused: no real model has a 2^31-element
// activation per sample, and the products below must not overflow.
#define NODE_NUMEL_MAX ((int64_t)1 << 31)

// a * b, or -1 when it would exceed INT64_MAX (both non-negative).
static int64_t mul_or_fail(int64_t a, int64_t b) {
    int64_t r;
    return __builtin_mul_overflow(a, b, &r) ? -1 : r;
}

static int set_shape(ns_node *n, int ndim, const int64_t *shape, ns_err *err) {
    n->ndim = ndim;
    n->numel = 1;
    for (int i = 0; i < ndim; i++) {
        n->shape[i] = shape[i];
        n->numel = mul_or_fail(n->numel, shape[i]);
        if (n->numel < 0 || n->numel > NODE_NUMEL_MAX)
            return ns_errf(err, "node %s: output of more than 2^31 elements per sample", n->name);
    }
    return 0;
}

static const char *shape_str(char *buf, size_t cap, int ndim, const int64_t *shape) {
    ns_shape_format(buf, cap, ndim, shape);
    return buf;
}

// The shapes a node's parameter slots must have, given its input shape.
static int param_shapes(const ns_node *n, const ns_node *in, int64_t shapes[][4], int *ndims,
                        ns_err *err) {
    (void)err;
    memset(ndims, 0, NS_MAX_PARAMS * sizeof *ndims);
    switch (n->op) {
    case NS_OP_LINEAR: {
        int64_t out = n->iattr[0];
        ndims[0] = 2; shapes[0][0] = out; shapes[0][1] = in->shape[in->ndim - 1];
        if (n->iattr[1]) { ndims[1] = 1; shapes[1][0] = out; }
        return 0;
    }
    case NS_OP_CONV2D: {
        int64_t out = n->iattr[0], k = n->iattr[1], groups = n->iattr[5];
        ndims[0] = 4; shapes[0][0] = out; shapes[0][1] = in->shape[0] / groups;
        shapes[0][2] = k; shapes[0][3] = k;
        if (n->iattr[6]) { ndims[1] = 1; shapes[1][0] = out; }
        return 0;
    }
    case NS_OP_BATCHNORM:
        for (int i = 0; i < 4; i++) { ndims[i] = 1; shapes[i][0] = in->shape[0]; }
        return 0;
    case NS_OP_LAYERNORM:
        for (int i = 0; i < 2; i++) { ndims[i] = 1; shapes[i][0] = in->shape[in->ndim - 1]; }
        return 0;
    case NS_OP_EMBEDDING:
        ndims[0] = 2; shapes[0][0] = n->iattr[0]; shapes[0][1] = n->iattr[1];
        return 0;
    case NS_OP_GROUPNORM:
        for (int i = 0; i < 2; i++) { ndims[i] = 1; shapes[i][0] = in->shape[0]; }
        return 0;
    case NS_OP_PATCH_EMBED: {
        int64_t p = n->iattr[1];
        ndims[0] = 4; shapes[0][0] = n->iattr[0]; shapes[0][1] = in->shape[0];
        shapes[0][2] = p; shapes[0][3] = p;
        if (n->iattr[2]) { ndims[1] = 1; shapes[1][0] = n->iattr[0]; }
        return 0;
    }
    case NS_OP_CLS_TOKEN:
        ndims[0] = 1; shapes[0][0] = in->shape[1];
        return 0;
    case NS_OP_POS_EMBED:
        ndims[0] = 2; shapes[0][0] = in->shape[0]; shapes[0][1] = in->shape[1];
        return 0;
    case NS_OP_ATTENTION: {
        int64_t D = in->shape[1];
        ndims[0] = 2; shapes[0][0] = 3 * D; shapes[0][1] = D;
        ndims[2] = 2; shapes[2][0] = D; shapes[2][1] = D;
        if (n->iattr[2]) {
            ndims[1] = 1; shapes[1][0] = 3 * D;
            ndims[3] = 1; shapes[3][0] = D;
        }
        return 0;
    }
    default:
        return 0;
    }
}

static int infer_shape(ns_model *m, ns_node *n, ns_err *err);

// Shape inference, then multiply-adds per sample with overflow checks.
static int infer_node(ns_model *m, ns_node *n, ns_err *err) {
    n->macs = 0;
    if (ns_node_check_attrs(n, err) < 0 || infer_shape(m, n, err) < 0) return -1;
    const ns_node *in = n->ninputs ? &m->nodes[n->inputs[0]] : NULL;
    if (n->op == NS_OP_LINEAR) {
        n->macs = mul_or_fail(in->numel, n->iattr[0]);
    } else if (n->op == NS_OP_PATCH_EMBED) {
        n->macs = mul_or_fail(n->numel, m->nodes[n->inputs[0]].shape[0] * n->iattr[1] * n->iattr[1]);
    } else if (n->op == NS_OP_ATTENTION) {
        const ns_node *kv = &m->nodes[n->inputs[n->iattr[3] ? 1 : 0]];
        int64_t Tq = n->shape[0], Tk = kv->shape[0], D = n->shape[1]; // each below 2^31
        n->macs = Tq * D * D * 2 + Tk * D * D * 2 + Tq * Tk * D * 2;
    } else if (n->op == NS_OP_CONV2D) {
        int64_t per_out = mul_or_fail(mul_or_fail(in->shape[0] / n->iattr[5], n->iattr[1]), n->iattr[1]);
        n->macs = per_out < 0 ? -1 : mul_or_fail(n->numel, per_out);
    }
    if (n->macs < 0) return ns_errf(err, "node %s: too many multiply-adds to count", n->name);
    return 0;
}

// The transformer ops: tokens are T x D per sample. Attribute ranges are
// checked here, each message naming the node, the attribute and the value.
static int infer_transformer(ns_model *m, ns_node *n, ns_err *err) {
    const ns_node *in = &m->nodes[n->inputs[0]];
    const int64_t *iv = n->iattr;
    char a[64], b[64];
    int64_t s[NS_MAX_SHAPE];
    if (n->op != NS_OP_SOFTMAX && n->op != NS_OP_GROUPNORM && n->op != NS_OP_PATCH_EMBED &&
        in->ndim != 2)
        return ns_errf(err, "node %s: %s needs T x D tokens, got %s", n->name, ns_ops[n->op].name,
                       shape_str(a, sizeof a, in->ndim, in->shape));
    switch (n->op) {
    case NS_OP_SOFTMAX:
        if (iv[0] < -in->ndim || iv[0] >= in->ndim)
            return ns_errf(err, "node %s: axis must be in [%d, %d) for a %s input, not %lld", n->name,
                           -in->ndim, in->ndim, shape_str(a, sizeof a, in->ndim, in->shape), (long long)iv[0]);
        return set_shape(n, in->ndim, in->shape, err);
    case NS_OP_GROUPNORM:
        if (iv[0] < 1 || in->shape[0] % iv[0])
            return ns_errf(err, "node %s: groups must divide the %lld channels, not %lld", n->name,
                           (long long)in->shape[0], (long long)iv[0]);
        if (!(n->fattr[0] > 0)) return ns_errf(err, "node %s: eps must be positive, not %g", n->name, n->fattr[0]);
        return set_shape(n, in->ndim, in->shape, err);
    case NS_OP_PATCH_EMBED:
        if (in->ndim != 3)
            return ns_errf(err, "node %s: patch_embed needs a C x H x W input, got %s", n->name,
                           shape_str(a, sizeof a, in->ndim, in->shape));
        if (iv[0] < 1 || iv[0] > (1 << 24)) return ns_errf(err, "node %s: out must be in [1, 2^24], not %lld", n->name, (long long)iv[0]);
        if (iv[1] < 1 || iv[1] > in->shape[1] || iv[1] > in->shape[2])
            return ns_errf(err, "node %s: patch must be in [1, %lld] for a %s input, not %lld", n->name,
                           (long long)(in->shape[1] < in->shape[2] ? in->shape[1] : in->shape[2]),
                           shape_str(a, sizeof a, in->ndim, in->shape), (long long)iv[1]);
        if (iv[2] != 0 && iv[2] != 1) return ns_errf(err, "node %s: bias must be 0 or 1, not %lld", n->name, (long long)iv[2]);
        s[0] = (in->shape[1] / iv[1]) * (in->shape[2] / iv[1]);
        s[1] = iv[0];
        return set_shape(n, 2, s, err);
    case NS_OP_CLS_TOKEN:
        s[0] = in->shape[0] + 1; s[1] = in->shape[1];
        return set_shape(n, 2, s, err);
    case NS_OP_POS_EMBED:
        return set_shape(n, 2, in->shape, err);
    case NS_OP_TOKEN_POOL:
        if (iv[0] < 0 || iv[0] > 2)
            return ns_errf(err, "node %s: mode must be 0 (first token), 1 (mean) or 2 (end of text), not %lld", n->name,
                           (long long)iv[0]);
        if (n->ninputs != 1 + (iv[0] == 2))
            return ns_errf(err, "node %s: token_pool with mode %lld takes %d input%s, not %d", n->name, (long long)iv[0],
                           1 + (iv[0] == 2), iv[0] == 2 ? "s (tokens, ids)" : "", n->ninputs);
        if (iv[0] == 2 && m->nodes[n->inputs[1]].numel != in->shape[0])
            return ns_errf(err, "node %s: end-of-text pooling needs one id per token (%lld), not %lld", n->name,
                           (long long)in->shape[0], (long long)m->nodes[n->inputs[1]].numel);
        return set_shape(n, 1, in->shape + 1, err);
    case NS_OP_ATTENTION: {
        int64_t D = in->shape[1];
        for (int k = 1; k < 4; k++)
            if (iv[k] != 0 && iv[k] != 1)
                return ns_errf(err, "node %s: %s must be 0 or 1, not %lld", n->name, ns_ops[n->op].iattr[k], (long long)iv[k]);
        if (iv[0] < 1 || D % iv[0])
            return ns_errf(err, "node %s: heads must divide the %lld features, not %lld", n->name, (long long)D, (long long)iv[0]);
        if (iv[4] < 0 || iv[4] > iv[0])
            return ns_errf(err, "node %s: cross_heads must be in 0..%lld (the heads), not %lld", n->name, (long long)iv[0],
                           (long long)iv[4]);
        if (iv[4] && (iv[1] || iv[3] || n->ninputs != 1))
            return ns_errf(err, "node %s: cross_heads (twin self-attention) takes one input, without causal, cross or a "
                           "key padding mask", n->name);
        if (n->ninputs < 1 + iv[3] || n->ninputs > 2 + iv[3])
            return ns_errf(err, "node %s: attention with cross = %lld takes %lld or %lld inputs, not %d", n->name,
                           (long long)iv[3], (long long)(1 + iv[3]), (long long)(2 + iv[3]), n->ninputs);
        const ns_node *kv = iv[3] ? &m->nodes[n->inputs[1]] : in;
        if (kv->ndim != 2 || kv->shape[1] != D)
            return ns_errf(err, "node %s: keys and values must be T x %lld tokens, got %s", n->name, (long long)D,
                           shape_str(a, sizeof a, kv->ndim, kv->shape));
        if (iv[1] && kv->shape[0] != in->shape[0])
            return ns_errf(err, "node %s: causal attention needs as many keys as queries (%s and %s)", n->name,
                           shape_str(a, sizeof a, in->ndim, in->shape), shape_str(b, sizeof b, kv->ndim, kv->shape));
        if (n->ninputs == 2 + iv[3] && m->nodes[n->inputs[n->ninputs - 1]].numel != kv->shape[0])
            return ns_errf(err, "node %s: the key padding mask must have one value per key (%lld), not %lld", n->name,
                           (long long)kv->shape[0], (long long)m->nodes[n->inputs[n->ninputs - 1]].numel);
        return set_shape(n, 2, in->shape, err);
    }
    default:
        return ns_errf(err, "node %s: not a transformer op", n->name);
    }
}

static int infer_shape(ns_model *m, ns_node *n, ns_err *err) {
    const ns_node *in = n->ninputs ? &m->nodes[n->inputs[0]] : NULL;
    char a[64], b[64];
    int64_t s[NS_MAX_SHAPE];
    switch (n->op) {
    case NS_OP_INPUT: {
        int64_t c = n->iattr[0], h = n->iattr[1], w = n->iattr[2]; // ranges: ns_node_check_attrs
        s[0] = c; s[1] = h; s[2] = w;
        return set_shape(n, h ? 3 : 1, s, err);
    }
    case NS_OP_LINEAR:
        if (in->ndim != 1 && in->ndim != 2)
            return ns_errf(err, "node %s: linear needs a 1-D input or T x D tokens, got %s (add a flatten)",
                           n->name, shape_str(a, sizeof a, in->ndim, in->shape));
        memcpy(s, in->shape, sizeof s);
        s[in->ndim - 1] = n->iattr[0];
        return set_shape(n, in->ndim, s, err);
    case NS_OP_CONV2D: {
        if (in->ndim != 3)
            return ns_errf(err, "node %s: conv2d needs a C x H x W input, got %s", n->name,
                           shape_str(a, sizeof a, in->ndim, in->shape));
        ns_conv2d_geom g = {1, in->shape[0], in->shape[1], in->shape[2], n->iattr[0], n->iattr[1],
                            n->iattr[1], n->iattr[2], n->iattr[2], n->iattr[3], n->iattr[3],
                            n->iattr[4], n->iattr[4], n->iattr[5], 0, 0};
        if (ns_conv2d_geom_init(&g, err) < 0) return ns_err_prefix(err, "node %s", n->name);
        s[0] = g.OC; s[1] = g.OH; s[2] = g.OW;
        return set_shape(n, 3, s, err);
    }
    case NS_OP_MAXPOOL:
    case NS_OP_AVGPOOL: {
        if (in->ndim != 3)
            return ns_errf(err, "node %s: pooling needs a C x H x W input, got %s", n->name,
                           shape_str(a, sizeof a, in->ndim, in->shape));
        int64_t k = n->iattr[0], st = n->iattr[1] ? n->iattr[1] : k;
        ns_pool2d_geom g = {1, in->shape[0], in->shape[1], in->shape[2], k, k, st, st,
                            n->iattr[2], n->iattr[2], 0, 0};
        if (ns_pool2d_geom_init(&g, err) < 0) return ns_err_prefix(err, "node %s", n->name);
        s[0] = g.C; s[1] = g.OH; s[2] = g.OW;
        return set_shape(n, 3, s, err);
    }
    case NS_OP_GLOBAL_AVGPOOL:
        if (in->ndim != 3)
            return ns_errf(err, "node %s: global_avgpool needs a C x H x W input, got %s", n->name,
                           shape_str(a, sizeof a, in->ndim, in->shape));
        return set_shape(n, 1, in->shape, err);
    case NS_OP_BATCHNORM:
        if (in->ndim != 1 && in->ndim != 3)
            return ns_errf(err, "node %s: batchnorm needs a C or C x H x W input, got %s", n->name,
                           shape_str(a, sizeof a, in->ndim, in->shape));
        return set_shape(n, in->ndim, in->shape, err);
    case NS_OP_ADD:
    case NS_OP_MUL: {
        const ns_node *other = &m->nodes[n->inputs[1]];
        if (in->ndim != other->ndim || memcmp(in->shape, other->shape, (size_t)in->ndim * sizeof *in->shape))
            return ns_errf(err, "node %s: inputs differ in shape (%s and %s)", n->name,
                           shape_str(a, sizeof a, in->ndim, in->shape),
                           shape_str(b, sizeof b, other->ndim, other->shape));
        return set_shape(n, in->ndim, in->shape, err);
    }
    case NS_OP_CONCAT: {
        memcpy(s, in->shape, sizeof s);
        for (int i = 1; i < n->ninputs; i++) {
            const ns_node *o = &m->nodes[n->inputs[i]];
            if (o->ndim != in->ndim || memcmp(o->shape + 1, in->shape + 1, (size_t)(in->ndim - 1) * sizeof *s))
                return ns_errf(err, "node %s: input %d is %s, cannot join %s on channels", n->name, i,
                               shape_str(a, sizeof a, o->ndim, o->shape),
                               shape_str(b, sizeof b, in->ndim, in->shape));
            s[0] += o->shape[0];
        }
        return set_shape(n, in->ndim, s, err);
    }
    case NS_OP_FLATTEN:
        s[0] = in->numel;
        return set_shape(n, 1, s, err);
    case NS_OP_RESHAPE: {
        int nd = 0, infer = -1;
        int64_t known = 1;
        for (int i = nd; i < 4; i++)
            if (n->iattr[i] == 0 && i < 3 && n->iattr[i + 1] != 0)
                return ns_errf(err, "node %s: reshape dim%d is given after dim%d = 0", n->name, i + 1, i);
        for (int i = 0; i < 4 && n->iattr[i] != 0; i++, nd++) {
            if (n->iattr[i] > NODE_NUMEL_MAX)
                return ns_errf(err, "node %s: reshape dim %lld is too large", n->name, (long long)n->iattr[i]);
            if (n->iattr[i] == -1) {
                if (infer >= 0) return ns_errf(err, "node %s: reshape with two -1 dims", n->name);
                infer = i;
            } else if (n->iattr[i] < 0) {
                return ns_errf(err, "node %s: bad reshape dim (%lld)", n->name, (long long)n->iattr[i]);
            } else {
                known = mul_or_fail(known, n->iattr[i]);
                if (known < 0 || known > NODE_NUMEL_MAX)
                    return ns_errf(err, "node %s: reshape to more than 2^31 elements", n->name);
            }
            s[i] = n->iattr[i];
        }
        if (infer >= 0) s[infer] = known ? in->numel / known : 0;
        int64_t total = 1;
        for (int i = 0; i < nd && total >= 0; i++) total = mul_or_fail(total, s[i]);
        if (nd == 0 || total != in->numel)
            return ns_errf(err, "node %s: cannot reshape %s to %lld elements", n->name,
                           shape_str(a, sizeof a, in->ndim, in->shape), (long long)total);
        return set_shape(n, nd, s, err);
    }
    case NS_OP_TRANSPOSE:
        if (in->ndim != 2)
            return ns_errf(err, "node %s: transpose needs a 2-D input, got %s", n->name,
                           shape_str(a, sizeof a, in->ndim, in->shape));
        s[0] = in->shape[1]; s[1] = in->shape[0];
        return set_shape(n, 2, s, err);
    case NS_OP_EMBEDDING:
        if (in->ndim != 1) return ns_errf(err, "node %s: embedding needs a 1-D input of ids", n->name);
        s[0] = in->shape[0]; s[1] = n->iattr[1];
        return set_shape(n, 2, s, err);
    case NS_OP_SOFTMAX:
    case NS_OP_GROUPNORM:
    case NS_OP_PATCH_EMBED:
    case NS_OP_CLS_TOKEN:
    case NS_OP_POS_EMBED:
    case NS_OP_TOKEN_POOL:
    case NS_OP_ATTENTION:
        return infer_transformer(m, n, err);
    case NS_OP_GELU:
        if (n->iattr[0] != 0 && n->iattr[0] != 1)
            return ns_errf(err, "node %s: approximate must be 0 (exact) or 1 (tanh), not %lld", n->name,
                           (long long)n->iattr[0]);
        return set_shape(n, in->ndim, in->shape, err);
    case NS_OP_DROPOUT:
        return set_shape(n, in->ndim, in->shape, err);
    case NS_OP_UPSAMPLE:
        if (in->ndim != 3 || n->iattr[0] < 1 || n->iattr[0] > 64)
            return ns_errf(err, "node %s: upsample needs a C x H x W input and a scale in 1..64 (%s, %lld)", n->name,
                           shape_str(a, sizeof a, in->ndim, in->shape), (long long)n->iattr[0]);
        s[0] = in->shape[0]; s[1] = in->shape[1] * n->iattr[0]; s[2] = in->shape[2] * n->iattr[0];
        return set_shape(n, 3, s, err);
    default: // elementwise: relu, leaky_relu, sigmoid, tanh, layernorm
        return set_shape(n, in->ndim, in->shape, err);
    }
}

// Binds a node's parameter slots to tensors "<node>.<slot>": creates them
// (create) or checks the existing ones' shapes.
static int bind_params(ns_model *m, ns_node *n, int create, ns_err *err) {
    int64_t shapes[NS_MAX_PARAMS][4];
    int ndims[NS_MAX_PARAMS];
    const ns_node *in = n->ninputs ? &m->nodes[n->inputs[0]] : NULL;
    if (param_shapes(n, in, shapes, ndims, err) < 0) return -1;
    const ns_op_info *info = &ns_ops[n->op];
    for (int p = 0; p < slot_count(info->param, NS_MAX_PARAMS); p++) {
        if (!ndims[p]) { n->params[p] = -1; continue; }
        char name[NS_NAME_MAX + 1];
        int idx = n->params[p];
        if (idx < 0) {
            snprintf(name, sizeof name, "%s.%s", n->name, info->param[p]);
            idx = ns_model_find_tensor(m, name);
        }
        if (idx < 0 && create) {
            int64_t numel = 1;
            for (int d = 0; d < ndims[p] && numel >= 0; d++) numel = mul_or_fail(numel, shapes[p][d]);
            if (numel < 0 || numel > NODE_NUMEL_MAX)
                return ns_errf(err, "node %s: parameter %s would have more than 2^31 elements", n->name, name);
            idx = ns_model_add_tensor(m, name, ndims[p], shapes[p], info->trainable[p], err);
            if (idx < 0) return ns_err_prefix(err, "node %s", n->name);
        }
        if (idx < 0) return create ? -1 : ns_errf(err, "node %s: missing parameter tensor %s", n->name, name);
        ns_named_tensor *t = &m->tensors[idx];
        if (t->t.ndim != ndims[p] || memcmp(t->t.shape, shapes[p], (size_t)ndims[p] * sizeof(int64_t))) {
            char a[64], b[64];
            return ns_errf(err, "node %s: %s is %s, expected %s", n->name, t->name,
                           shape_str(a, sizeof a, t->t.ndim, t->t.shape),
                           shape_str(b, sizeof b, ndims[p], shapes[p]));
        }
        t->trainable = info->trainable[p];
        t->used = 1;
        n->params[p] = idx;
    }
    return 0;
}

int ns_model_resolve(ns_model *m, int create, ns_err *err) {
    if (m->nnodes == 0 || m->nodes[0].op != NS_OP_INPUT)
        return ns_errf(err, "the graph must start with an input node");
    for (int i = 0; i < m->ntensors; i++) m->tensors[i].used = 0;
    for (int i = 0; i < m->nnodes; i++) {
        ns_node *n = &m->nodes[i];
        if (i > 0 && n->op == NS_OP_INPUT) return ns_errf(err, "node %s: only one input node", n->name);
        if (infer_node(m, n, err) < 0 || bind_params(m, n, create, err) < 0) return -1;
    }
    if (m->output < 0 || m->output >= m->nnodes) m->output = m->nnodes - 1;
    return 0;
}

// ---------------------------------------------------------------------------
// initialisation and totals

void ns_model_init_params(ns_model *m, uint64_t seed) {
    ns_rng rng;
    ns_rng_seed(&rng, seed);
    for (int i = 0; i < m->nnodes; i++) {
        const ns_node *n = &m->nodes[i];
        for (int p = 0; p < NS_MAX_PARAMS; p++) {
            if (n->params[p] < 0) continue;
            ns_tensor *t = &m->tensors[n->params[p]].t;
            float *x = t->data;
            const char *slot = ns_ops[n->op].param[p];
            if (n->op == NS_OP_LINEAR || n->op == NS_OP_CONV2D) {
                // fan_in from the weight: everything but its first axis
                const ns_tensor *w = &m->tensors[n->params[0]].t;
                double fan_in = (double)(w->numel / w->shape[0]);
                double bound = fan_in > 0 ? 1.0 / sqrt(fan_in) : 0;
                for (int64_t j = 0; j < t->numel; j++)
                    x[j] = (float)((2.0 * ns_rng_uniform(&rng) - 1.0) * bound);
            } else if (n->op == NS_OP_EMBEDDING) {
                for (int64_t j = 0; j < t->numel; j++) x[j] = (float)ns_rng_normal(&rng);
            } else if (n->op == NS_OP_PATCH_EMBED || (n->op == NS_OP_ATTENTION && p == 2)) {
                // as a convolution, and torch's out_proj (a Linear)
                double fan_in = (double)(t->numel / t->shape[0]), bound = 1.0 / sqrt(fan_in);
                const ns_tensor *w = &m->tensors[n->params[0]].t;
                if (n->op == NS_OP_PATCH_EMBED && p == 1) bound = 1.0 / sqrt((double)(w->numel / w->shape[0]));
                for (int64_t j = 0; j < t->numel; j++)
                    x[j] = (float)((2.0 * ns_rng_uniform(&rng) - 1.0) * bound);
            } else if (n->op == NS_OP_ATTENTION && p == 0) { // xavier_uniform, as torch
                double bound = sqrt(6.0 / (double)(t->shape[0] + t->shape[1]));
                for (int64_t j = 0; j < t->numel; j++)
                    x[j] = (float)((2.0 * ns_rng_uniform(&rng) - 1.0) * bound);
            } else if (n->op == NS_OP_POS_EMBED) { // N(0, 0.02), as ViTs commonly
                for (int64_t j = 0; j < t->numel; j++) x[j] = (float)(0.02 * ns_rng_normal(&rng));
            } else if (n->op == NS_OP_ATTENTION || n->op == NS_OP_CLS_TOKEN) { // biases, the token: 0
                for (int64_t j = 0; j < t->numel; j++) x[j] = 0;
            } else {
                float v = strcmp(slot, "weight") == 0 || strcmp(slot, "running_var") == 0 ? 1.0f : 0.0f;
                for (int64_t j = 0; j < t->numel; j++) x[j] = v;
            }
        }
    }
}

int64_t ns_model_param_count(const ns_model *m, int trainable_only) {
    int64_t total = 0;
    for (int i = 0; i < m->ntensors; i++)
        if (m->tensors[i].used && (!trainable_only || m->tensors[i].trainable))
            total += m->tensors[i].t.numel;
    return total;
}

int64_t ns_model_macs(const ns_model *m) {
    int64_t total = 0;
    for (int i = 0; i < m->nnodes; i++) total += m->nodes[i].macs;
    return total;
}
