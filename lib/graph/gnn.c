// gnn.c: GCN, SGC, MLP and GraphSAGE-mean for node classification (gnn.h):
// parameter tables, contexts (a graph as one model reads it), forward and
// backward passes composed from lib/nn/ops.h and lib/graph/sparse.h kernels, and the
// full-batch training loop with best-validation selection.
//
// Dimensions: N nodes, D features, H hidden units, C classes, K SGC hops,
// T training nodes; IN and OUT a layer's input and output width.
//
// The one product lib/graph/sparse.h does not have by name is sparse features
// times a weight, X W^T with X in CSR: it is ns_spmm_forward(X, W^T) after
// transposing W (IN x OUT, small), and its weight gradient dW = dY^T X is the
// transpose of X^T dY, ns_spmm_backward with X^T. Nothing is added to sparse.h.
#include "graph/gnn.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/blas.h"
#include "base/blocks.h"
#include "base/report.h"
#include "nn/ops.h"
#include "nn/optim.h"
#include "base/rng.h"

static const char *const kind_names[NS_GNN_KIND_COUNT] = {
    [NS_GNN_GCN] = "gcn",
    [NS_GNN_SGC] = "sgc",
    [NS_GNN_MLP] = "mlp",
    [NS_GNN_SAGE] = "sage",
};

// Features are read sparsely when at most this fraction is non-zero (Cora: 1.3%).
#define SPARSE_DENSITY 0.1

int ns_gnn_kind_parse(const char *s, ns_gnn_kind *kind, ns_err *err) {
    for (int k = 0; k < NS_GNN_KIND_COUNT; k++)
        if (strcmp(s, kind_names[k]) == 0) return *kind = (ns_gnn_kind)k, 0;
    if (strcmp(s, "graphsage") == 0) return *kind = NS_GNN_SAGE, 0;
    return ns_errf(err, "unknown model (%s): gcn, sgc, mlp or sage", s);
}

const char *ns_gnn_kind_name(ns_gnn_kind kind) {
    return kind >= 0 && kind < NS_GNN_KIND_COUNT ? kind_names[kind] : "?";
}

void ns_gnn_config_default(ns_gnn_config *cfg, ns_gnn_kind kind) {
    *cfg = (ns_gnn_config){.kind = kind, .hidden = 256, .hops = 2, .dropout = 0.5, .relu = 1};
}

// ----------------------------------------------------------------------------
// the parameter table

static int add_param(ns_gnn *m, const char *name, int ndim, int64_t s0, int64_t s1) {
    ns_gnn_tensor *t = &m->params[m->nparams];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->ndim = ndim;
    t->shape[0] = s0;
    t->shape[1] = ndim == 2 ? s1 : 0;
    t->numel = ndim == 2 ? s0 * s1 : s0;
    t->offset = m->numel;
    m->numel += (t->numel + 15) / 16 * 16; // each tensor on a 64-byte boundary
    return m->nparams++;
}

// A layer and its parameters, named prefix + PyG's names for its kind.
static void add_layer(ns_gnn *m, ns_gnn_layer_kind kind, const char *prefix, int64_t in, int64_t out) {
    ns_gnn_layer *L = &m->layers[m->nlayers++];
    char name[32];
    *L = (ns_gnn_layer){.kind = kind, .in = in, .out = out, .wr = -1};
    switch (kind) {
    case NS_GNN_LAYER_LINEAR: // torch.nn.Linear, or SGConv's lin
        snprintf(name, sizeof name, "%sweight", prefix);
        L->w = add_param(m, name, 2, out, in);
        snprintf(name, sizeof name, "%sbias", prefix);
        L->b = add_param(m, name, 1, out, 0);
        break;
    case NS_GNN_LAYER_GCN: // GCNConv: lin without bias, bias after propagation
        snprintf(name, sizeof name, "%slin.weight", prefix);
        L->w = add_param(m, name, 2, out, in);
        snprintf(name, sizeof name, "%sbias", prefix);
        L->b = add_param(m, name, 1, out, 0);
        break;
    case NS_GNN_LAYER_SAGE: // SAGEConv: lin_l on the neighbours' mean, lin_r on the node
        snprintf(name, sizeof name, "%slin_l.weight", prefix);
        L->w = add_param(m, name, 2, out, in);
        snprintf(name, sizeof name, "%slin_l.bias", prefix);
        L->b = add_param(m, name, 1, out, 0);
        snprintf(name, sizeof name, "%slin_r.weight", prefix);
        L->wr = add_param(m, name, 2, out, in);
        break;
    }
}

int ns_gnn_create(ns_gnn *m, const ns_gnn_config *cfg, int64_t D, int64_t C, ns_err *err) {
    memset(m, 0, sizeof *m);
    if (cfg->kind < 0 || cfg->kind >= NS_GNN_KIND_COUNT) return ns_errf(err, "unknown model kind %d", (int)cfg->kind);
    if (D < 1 || D > INT32_MAX) return ns_errf(err, "features per node out of range (%lld)", (long long)D);
    if (C < 1 || C > NS_GRAPH_MAX_CLASSES) return ns_errf(err, "classes out of range (%lld)", (long long)C);
    if (cfg->hidden < 1 || cfg->hidden > ((int64_t)1 << 20))
        return ns_errf(err, "hidden units out of range (%lld)", (long long)cfg->hidden);
    if (cfg->hops < 0 || cfg->hops > 64) return ns_errf(err, "hops out of range (%d)", cfg->hops);
    if (!(cfg->dropout >= 0 && cfg->dropout < 1)) return ns_errf(err, "dropout must be in [0, 1) (%g)", cfg->dropout);
    // D * H floats must be addressable with room to spare.
    if ((double)D * (double)(cfg->kind == NS_GNN_SGC ? C : cfg->hidden) > 4e12)
        return ns_errf(err, "the first layer would be too large (%lld x %lld)", (long long)D, (long long)cfg->hidden);
    m->cfg = *cfg;
    m->D = D;
    m->C = C;
    int64_t H = cfg->hidden;
    switch (cfg->kind) {
    case NS_GNN_GCN:
        add_layer(m, NS_GNN_LAYER_GCN, "conv1.", D, H);
        add_layer(m, NS_GNN_LAYER_GCN, "conv2.", H, C);
        break;
    case NS_GNN_SGC:
        add_layer(m, NS_GNN_LAYER_LINEAR, "conv1.lin.", D, C);
        break;
    case NS_GNN_MLP:
        add_layer(m, NS_GNN_LAYER_LINEAR, "lin1.", D, H);
        add_layer(m, NS_GNN_LAYER_LINEAR, "lin2.", H, C);
        break;
    case NS_GNN_SAGE:
        add_layer(m, NS_GNN_LAYER_SAGE, "conv1.", D, H);
        add_layer(m, NS_GNN_LAYER_SAGE, "conv2.", H, C);
        break;
    default:
        break;
    }
    size_t bytes = (size_t)m->numel * sizeof(float);
    m->value = ns_aligned_alloc(bytes);
    m->grad = ns_aligned_alloc(bytes);
    if (!m->value || !m->grad) {
        ns_gnn_free(m);
        return ns_errf(err, "out of memory (%lld parameters)", (long long)m->numel);
    }
    memset(m->value, 0, bytes);
    memset(m->grad, 0, bytes);
    return 0;
}

void ns_gnn_free(ns_gnn *m) {
    free(m->value);
    free(m->grad);
    memset(m, 0, sizeof *m);
}

static void fill_uniform(float *p, int64_t n, double bound, ns_rng *rng) {
    for (int64_t i = 0; i < n; i++) p[i] = (float)((2.0 * ns_rng_uniform(rng) - 1.0) * bound);
}

void ns_gnn_init(ns_gnn *m, uint64_t seed) {
    ns_rng rng;
    ns_rng_seed(&rng, seed);
    memset(m->value, 0, (size_t)m->numel * sizeof *m->value);
    for (int l = 0; l < m->nlayers; l++) {
        const ns_gnn_layer *L = &m->layers[l];
        // GCNConv: glorot(weight), zeros(bias). Linear: kaiming_uniform(a=sqrt(5))
        // gives bound 1/sqrt(IN) for the weight, and the bias is U(+-1/sqrt(IN)).
        int gcn = L->kind == NS_GNN_LAYER_GCN;
        double wb = gcn ? sqrt(6.0 / (double)(L->in + L->out)) : 1.0 / sqrt((double)L->in);
        const ns_gnn_tensor *w = &m->params[L->w], *b = &m->params[L->b];
        fill_uniform(m->value + w->offset, w->numel, wb, &rng);
        if (!gcn) fill_uniform(m->value + b->offset, b->numel, 1.0 / sqrt((double)L->in), &rng);
        if (L->wr >= 0) {
            const ns_gnn_tensor *wr = &m->params[L->wr];
            fill_uniform(m->value + wr->offset, wr->numel, wb, &rng);
        }
    }
}

float *ns_gnn_param(const ns_gnn *m, const char *name) {
    for (int i = 0; i < m->nparams; i++)
        if (strcmp(m->params[i].name, name) == 0) return m->value + m->params[i].offset;
    return NULL;
}

void ns_gnn_zero_grad(ns_gnn *m) { memset(m->grad, 0, (size_t)m->numel * sizeof *m->grad); }

// ----------------------------------------------------------------------------
// contexts

// The activation buffers a model and its options use, listed for one block
// (base/blocks.h); those not needed are left NULL.
typedef struct buffer_list {
    ns_block_item items[3 * NS_GNN_MAX_LAYERS + 9];
    int n;
} buffer_list;

// Lists *ptr (a float* or uint8_t*) for count elements of size bytes when
// needed, else sets it to NULL.
static void need(buffer_list *b, int needed, void *ptr, int64_t count, size_t size) {
    void **p = ptr;
    *p = NULL;
    if (needed) b->items[b->n++] = (ns_block_item){p, count, size};
}

static void list_buffers(ns_gnn_ctx *c, const ns_gnn *m, buffer_list *b) {
    const size_t f = sizeof(float);
    int64_t N = c->N, maxout = 0;
    for (int l = 0; l < m->nlayers; l++) {
        const ns_gnn_layer *L = &m->layers[l];
        int propagates = L->kind != NS_GNN_LAYER_LINEAR && !(l == 0 && c->propagated);
        if (propagates) maxout = L->out > maxout ? L->out : maxout;
        need(b, propagates, &c->t[l], N * L->out, f);
        need(b, L->kind == NS_GNN_LAYER_SAGE, &c->tr[l], N * L->out, f);
        need(b, 1, &c->z[l], N * L->out, f);
    }
    int64_t H = m->layers[0].out; // the hidden width (sgc: C, unused)
    need(b, c->sparse, &c->wt, c->D * H, f);
    int hidden = m->nlayers == 2, dropout = hidden && m->cfg.dropout > 0;
    need(b, dropout, &c->h1d, N * H, f);
    need(b, dropout, &c->mask, N * H, sizeof(uint8_t));
    if (!c->grad) return;
    need(b, maxout > 0, &c->dt, N * maxout, f);
    need(b, hidden, &c->dh[0], N * H, f);
    need(b, hidden, &c->dh[1], N * H, f);
    need(b, c->sparse, &c->dwt, c->D * H, f);
    int sgc_dx = c->input_grad && m->cfg.kind == NS_GNN_SGC;
    need(b, sgc_dx, &c->dxs, N * c->D, f);
    need(b, sgc_dx, &c->dxt, N * c->D, f);
}

// One block for the buffers list_buffers names. -1 when out of memory.
static int alloc_layout(ns_gnn_ctx *c, const ns_gnn *m) {
    buffer_list b = {.n = 0};
    list_buffers(c, m, &b);
    ns_err err;
    return (c->block = ns_block_alloc(b.items, b.n, &err)) ? 0 : -1;
}

// Non-zero features of g.
static int64_t feature_nnz(const ns_graph *g) {
    if (g->sparse_features) return g->sfeatures.nnz;
    int64_t n = 0, total = g->nodes * g->feature_dim;
    for (int64_t i = 0; i < total; i++) n += g->features[i] != 0;
    return n;
}

// Each row divided by its sum; rows summing to 0 stay (as ns_csr_normalize_rows).
static void row_normalise(float *x, int64_t N, int64_t D) {
    for (int64_t i = 0; i < N; i++) {
        double s = 0;
        for (int64_t j = 0; j < D; j++) s += x[i * D + j];
        if (s == 0) continue;
        for (int64_t j = 0; j < D; j++) x[i * D + j] = (float)((double)x[i * D + j] / s);
    }
}

int ns_gnn_ctx_init(ns_gnn_ctx *c, const ns_gnn *m, const ns_graph *g, const ns_gnn_ctx_config *cc,
                    ns_err *err) {
    memset(c, 0, sizeof *c);
    ns_threads(); // applies NETSMITH_THREADS to the OpenMP loops
    if (g->feature_dim == 0 || (!g->features && !g->sparse_features))
        return ns_errf(err, "the graph has no node features (graph.features)");
    if (g->feature_dim != m->D)
        return ns_errf(err, "the graph has %lld features per node, the model %lld", (long long)g->feature_dim,
                       (long long)m->D);
    ns_gnn_kind kind = m->cfg.kind;
    c->N = g->nodes;
    c->D = m->D;
    c->H = m->nlayers == 2 ? m->cfg.hidden : 0;
    c->C = m->C;
    c->grad = cc->grad;
    c->input_grad = cc->grad && cc->input_grad;
    int64_t N = c->N, D = c->D;

    if (!(c->labels = malloc((size_t)N * sizeof *c->labels))) goto oom;
    for (int64_t i = 0; i < N; i++) c->labels[i] = g->labels ? g->labels[i] : -1;

    // The propagation matrix, and its transpose where backward needs it.
    if (kind == NS_GNN_GCN || kind == NS_GNN_SGC) {
        if (ns_csr_gcn_norm(&c->p, &g->adj, err) < 0) goto fail;
        c->has_p = 1;
    } else if (kind == NS_GNN_SAGE) {
        if (ns_csr_copy(&c->p, &g->adj, err) < 0) goto fail;
        c->has_p = 1;
        ns_csr_normalize_rows(&c->p);
    }
    // P of an undirected graph is symmetric; M = D^-1 A is not.
    int need_pt = c->grad && (kind != NS_GNN_SGC || c->input_grad);
    if (c->has_p && need_pt && (kind == NS_GNN_SAGE || !g->undirected)) {
        if (ns_csr_transpose(&c->pt, &c->p, err) < 0) goto fail;
        c->has_pt = 1;
    }

    // Features: sparse or dense for the first layer.
    if (kind == NS_GNN_SGC || c->input_grad || cc->xformat == NS_GNN_X_DENSE) c->sparse = 0;
    else if (cc->xformat == NS_GNN_X_SPARSE) c->sparse = 1;
    else c->sparse = (double)feature_nnz(g) <= SPARSE_DENSITY * (double)N * (double)D;
    if (c->sparse) {
        if (g->sparse_features ? ns_csr_copy(&c->xs, &g->sfeatures, err) < 0
                               : ns_csr_from_dense(&c->xs, g->features, N, D, err) < 0)
            goto fail;
        if (cc->row_norm) ns_csr_normalize_rows(&c->xs);
        if (c->grad && ns_csr_transpose(&c->xst, &c->xs, err) < 0) goto fail;
    } else {
        if (ns_graph_dense_features(g, &c->x, err) < 0) goto fail;
        if (cc->row_norm) row_normalise(c->x, N, D);
    }

    // GCN's first layer is P (X W^T) + b = (P X) W^T + b. With dense features
    // that need no gradient, P X (N, D) is computed here once, and the layer
    // is a dense linear map of it: no sparse product of width H in any
    // forward or backward (the most expensive step at large N), and no
    // (N, H) buffer before the propagation. Dropout applies to the hidden
    // layer only, so nothing stands between P and X. The sums are grouped
    // differently, so the model differs from the other order by rounding.
    c->propagated = kind == NS_GNN_GCN && !c->sparse && !c->input_grad;
    // SGC: S = P^K X, once; GCN: P X.
    if (kind == NS_GNN_SGC || c->propagated) {
        float *tmp = ns_aligned_alloc((size_t)(N * D) * sizeof *tmp);
        if (!tmp) goto oom;
        for (int k = 0; k < (c->propagated ? 1 : m->cfg.hops); k++) {
            ns_spmm_forward(tmp, &c->p, c->x, D);
            float *s = c->x;
            c->x = tmp;
            tmp = s;
        }
        free(tmp);
    }

    if (alloc_layout(c, m) < 0) goto oom;
    return 0;
oom:
    ns_errf(err, "out of memory (a graph of %lld nodes, %lld features)", (long long)N, (long long)D);
fail:
    ns_gnn_ctx_free(c);
    return -1;
}

void ns_gnn_ctx_free(ns_gnn_ctx *c) {
    free(c->x);
    ns_csr_free(&c->xs);
    ns_csr_free(&c->xst);
    ns_csr_free(&c->p);
    ns_csr_free(&c->pt);
    free(c->labels);
    free(c->block);
    memset(c, 0, sizeof *c);
}

// ----------------------------------------------------------------------------
// layers

// A layer's input: dense x (N, IN), or sparse xs (N, IN) with its transpose.
typedef struct layer_in {
    const float *x;
    const ns_csr *xs, *xst;
    int64_t n, in;
} layer_in;

static layer_in first_input(const ns_gnn_ctx *c) {
    if (c->sparse) return (layer_in){NULL, &c->xs, &c->xst, c->N, c->D};
    return (layer_in){c->x, NULL, NULL, c->N, c->D};
}

// out (N, OUT) = X W^T, W (OUT, IN); wt (IN, OUT) is scratch for sparse X.
static void xw_forward(float *out, const layer_in *in, const float *w, float *wt, int64_t OUT) {
    if (in->xs) {
        ns_transpose_forward(wt, w, OUT, in->in);
        ns_spmm_forward(out, in->xs, wt, OUT);
    } else {
        ns_linear_forward(out, in->x, w, NULL, in->n, in->in, OUT);
    }
}

// dW (OUT, IN) += dY^T X and, for dense X, dX (N, IN) += dY W (dx may be NULL).
static void xw_backward(float *dw, float *dx, const float *dy, const layer_in *in, const float *w, float *dwt,
                        int64_t OUT) {
    if (in->xs) {
        memset(dwt, 0, (size_t)(in->in * OUT) * sizeof *dwt);
        ns_spmm_backward(dwt, in->xst, dy, OUT); // X^T dY (IN, OUT)
        ns_transpose_backward(dw, dwt, OUT, in->in);
    } else {
        ns_linear_backward(dx, dw, NULL, dy, in->x, w, in->n, in->in, OUT);
    }
}

// z (N, OUT) += b on every row.
static void bias_forward(float *z, const float *b, int64_t N, int64_t OUT) {
#pragma omp parallel for schedule(static) if (N * OUT >= 32768)
    for (int64_t i = 0; i < N; i++)
        for (int64_t j = 0; j < OUT; j++) z[i * OUT + j] += b[j];
}

// db (OUT) += column sums of dz (N, OUT), in double, rows in order; threads
// take blocks of 64 columns, so each row is read as contiguous pieces.
static void bias_backward(float *db, const float *dz, int64_t N, int64_t OUT) {
#pragma omp parallel for schedule(static) if (N * OUT >= 32768)
    for (int64_t j0 = 0; j0 < OUT; j0 += 64) {
        int64_t w = OUT - j0 < 64 ? OUT - j0 : 64;
        double s[64] = {0};
        for (int64_t i = 0; i < N; i++)
            for (int64_t j = 0; j < w; j++) s[j] += dz[i * OUT + j0 + j];
        for (int64_t j = 0; j < w; j++) db[j0 + j] += (float)s[j];
    }
}

static const ns_csr *transposed(const ns_gnn_ctx *c) { return c->has_pt ? &c->pt : &c->p; }

static void layer_forward(const ns_gnn *m, int l, ns_gnn_ctx *c, const layer_in *in) {
    const ns_gnn_layer *L = &m->layers[l];
    const float *w = m->value + m->params[L->w].offset, *b = m->value + m->params[L->b].offset;
    float *z = c->z[l], *wt = l == 0 ? c->wt : NULL;
    int64_t N = c->N, OUT = L->out;
    switch (l == 0 && c->propagated ? NS_GNN_LAYER_LINEAR : L->kind) {
    case NS_GNN_LAYER_LINEAR: // z = X W^T (and GCN's first layer, z = (P X) W^T)
        xw_forward(z, in, w, wt, OUT);
        break;
    case NS_GNN_LAYER_GCN: // z = P (X W^T)
        xw_forward(c->t[l], in, w, wt, OUT);
        ns_spmm_forward(z, &c->p, c->t[l], OUT);
        break;
    case NS_GNN_LAYER_SAGE: // z = M (X Wl^T) + X Wr^T
        xw_forward(c->t[l], in, w, wt, OUT);
        ns_spmm_forward(z, &c->p, c->t[l], OUT);
        xw_forward(c->tr[l], in, m->value + m->params[L->wr].offset, wt, OUT);
        ns_add_forward(z, z, c->tr[l], N * OUT);
        break;
    }
    bias_forward(z, b, N, OUT);
}

static void layer_backward(ns_gnn *m, int l, ns_gnn_ctx *c, const float *dz, const layer_in *in, float *din) {
    const ns_gnn_layer *L = &m->layers[l];
    const ns_gnn_tensor *w = &m->params[L->w];
    float *dwt = l == 0 ? c->dwt : NULL;
    int64_t N = c->N, OUT = L->out;
    bias_backward(m->grad + m->params[L->b].offset, dz, N, OUT);
    switch (l == 0 && c->propagated ? NS_GNN_LAYER_LINEAR : L->kind) {
    case NS_GNN_LAYER_LINEAR:
        xw_backward(m->grad + w->offset, din, dz, in, m->value + w->offset, dwt, OUT);
        break;
    case NS_GNN_LAYER_GCN:
    case NS_GNN_LAYER_SAGE:
        // dT = P^T dZ, then through X W^T
        memset(c->dt, 0, (size_t)(N * OUT) * sizeof *c->dt);
        ns_spmm_backward(c->dt, transposed(c), dz, OUT);
        xw_backward(m->grad + w->offset, din, c->dt, in, m->value + w->offset, dwt, OUT);
        if (L->kind == NS_GNN_LAYER_SAGE) {
            const ns_gnn_tensor *wr = &m->params[L->wr];
            xw_backward(m->grad + wr->offset, din, dz, in, m->value + wr->offset, dwt, OUT);
        }
        break;
    }
}

const float *ns_gnn_forward(const ns_gnn *m, ns_gnn_ctx *c, int training, uint64_t dropout_seed) {
    layer_in in0 = first_input(c);
    layer_forward(m, 0, c, &in0);
    c->dropped = 0;
    if (m->nlayers == 1) return c->z[0];
    int64_t n = c->N * c->H;
    float p = (float)m->cfg.dropout;
    if (m->cfg.relu) ns_relu_forward(c->z[0], c->z[0], n);
    const float *h = c->z[0];
    if (training && p > 0) {
        ns_dropout_mask(c->mask, p, dropout_seed, n);
        ns_dropout_forward(c->h1d, c->z[0], c->mask, p, n);
        h = c->h1d;
        c->dropped = 1;
    }
    layer_in in1 = {h, NULL, NULL, c->N, c->H};
    layer_forward(m, 1, c, &in1);
    return c->z[1];
}

void ns_gnn_backward(ns_gnn *m, ns_gnn_ctx *c, const float *dlogits, float *dx) {
    layer_in in0 = first_input(c);
    int sgc_dx = dx && m->cfg.kind == NS_GNN_SGC;
    float *din0 = sgc_dx ? c->dxs : dx;
    if (sgc_dx) memset(c->dxs, 0, (size_t)(c->N * c->D) * sizeof *c->dxs);
    if (m->nlayers == 1) {
        layer_backward(m, 0, c, dlogits, &in0, din0);
    } else {
        int64_t n = c->N * c->H;
        float p = (float)m->cfg.dropout;
        layer_in in1 = {c->dropped ? c->h1d : c->z[0], NULL, NULL, c->N, c->H};
        float *cur = c->dh[0], *other = c->dh[1], *swap;
        memset(cur, 0, (size_t)n * sizeof *cur);
        layer_backward(m, 1, c, dlogits, &in1, cur);
        if (c->dropped) {
            memset(other, 0, (size_t)n * sizeof *other);
            ns_dropout_backward(other, cur, c->mask, p, n);
            swap = cur, cur = other, other = swap;
        }
        if (m->cfg.relu) {
            memset(other, 0, (size_t)n * sizeof *other);
            ns_relu_backward(other, cur, c->z[0], n);
            swap = cur, cur = other, other = swap;
        }
        layer_backward(m, 0, c, cur, &in0, din0);
    }
    if (sgc_dx) { // dX += (P^T)^K dS
        float *cur = c->dxs, *next = c->dxt, *swap;
        int64_t n = c->N * c->D;
        for (int k = 0; k < m->cfg.hops; k++) {
            memset(next, 0, (size_t)n * sizeof *next);
            ns_spmm_backward(next, transposed(c), cur, c->D);
            swap = cur, cur = next, next = swap;
        }
        ns_add_forward(dx, dx, cur, n);
    }
}

double ns_gnn_accuracy(const float *logits, const int32_t *labels, const uint8_t *mask, int64_t N, int64_t C) {
    if (!mask) return NAN;
    int64_t n = 0, correct = 0;
    for (int64_t i = 0; i < N; i++) {
        if (!mask[i]) continue;
        const float *row = logits + i * C;
        int64_t best = 0;
        for (int64_t j = 1; j < C; j++)
            if (row[j] > row[best]) best = j;
        n++;
        correct += best == labels[i];
    }
    return n ? (double)correct / (double)n : NAN;
}

// ----------------------------------------------------------------------------
// training

void ns_gnn_train_config_default(ns_gnn_train_config *tc) {
    *tc = (ns_gnn_train_config){.epochs = 600, .lr = 0.01, .weight_decay = 5e-4, .lr_drop = 300, .eval_every = 1};
}

// Labels of the nodes in mask must be classes of the model.
static int check_split(const ns_gnn_ctx *c, const uint8_t *mask, const char *what, int64_t *count, ns_err *err) {
    *count = 0;
    if (!mask) return 0;
    for (int64_t i = 0; i < c->N; i++) {
        if (!mask[i]) continue;
        if (c->labels[i] < 0 || c->labels[i] >= c->C)
            return ns_errf(err, "%s node %lld has label %d; the model has %lld classes (0..%lld)", what, (long long)i,
                           c->labels[i], (long long)c->C, (long long)c->C - 1);
        ++*count;
    }
    return 0;
}

static ns_optim *make_adam(ns_gnn *m, ns_param *params, double weight_decay, ns_err *err) {
    ns_optim_config oc;
    ns_optim_config_default(&oc, NS_OPTIM_ADAM);
    oc.weight_decay = weight_decay;
    return ns_optim_create(&oc, params, m->nparams, err);
}

// A context of some rows of c (rows, n of them), for models that do not
// propagate at run time (sgc after its precomputation, mlp): a node's logits
// depend on its own features alone, so training can read the training rows
// only and evaluation the validation and test rows.
static int ctx_rows(ns_gnn_ctx *s, const ns_gnn *m, const ns_gnn_ctx *c, const int64_t *rows, int64_t n, int grad,
                    ns_err *err) {
    memset(s, 0, sizeof *s);
    s->N = n, s->D = c->D, s->H = c->H, s->C = c->C, s->grad = grad, s->sparse = c->sparse;
    int64_t D = c->D;
    if (!(s->labels = malloc((size_t)(n ? n : 1) * sizeof *s->labels))) goto oom;
    for (int64_t k = 0; k < n; k++) s->labels[k] = c->labels[rows[k]];
    if (c->sparse) {
        int64_t nnz = 0;
        for (int64_t k = 0; k < n; k++) nnz += c->xs.indptr[rows[k] + 1] - c->xs.indptr[rows[k]];
        if (ns_csr_alloc(&s->xs, n, D, nnz, err) < 0) goto fail;
        for (int64_t k = 0, at = 0; k < n; k++) {
            int64_t b = c->xs.indptr[rows[k]], e = c->xs.indptr[rows[k] + 1];
            memcpy(s->xs.indices + at, c->xs.indices + b, (size_t)(e - b) * sizeof *s->xs.indices);
            memcpy(s->xs.values + at, c->xs.values + b, (size_t)(e - b) * sizeof *s->xs.values);
            s->xs.indptr[k + 1] = at += e - b;
        }
        if (grad && ns_csr_transpose(&s->xst, &s->xs, err) < 0) goto fail;
    } else {
        if (!(s->x = ns_aligned_alloc((size_t)(n * D) * sizeof *s->x))) goto oom;
        for (int64_t k = 0; k < n; k++) memcpy(s->x + k * D, c->x + rows[k] * D, (size_t)D * sizeof *s->x);
    }
    if (alloc_layout(s, m) < 0) goto oom;
    return 0;
oom:
    ns_errf(err, "out of memory (%lld rows of %lld features)", (long long)n, (long long)D);
fail:
    ns_gnn_ctx_free(s);
    return -1;
}

// The epochs: train on the rows idx (T) of train, evaluate on eval.
static int train_loop(ns_gnn *m, ns_gnn_ctx *train, const int64_t *idx, int64_t T, ns_gnn_ctx *eval,
                      const uint8_t *val_mask, const uint8_t *test_mask, const ns_gnn_train_config *tc,
                      ns_gnn_result *res, ns_err *err) {
    int64_t N = train->N, C = m->C;
    int32_t *targets = malloc((size_t)T * sizeof *targets);
    float *lt = ns_aligned_alloc((size_t)(T * C) * sizeof *lt);           // (T, C) training logits
    float *dlt = ns_aligned_alloc((size_t)(T * C) * sizeof *dlt);         // (T, C)
    float *dlogits = ns_aligned_alloc((size_t)(N * C) * sizeof *dlogits); // (N, C)
    float *best = ns_aligned_alloc((size_t)m->numel * sizeof *best);
    ns_param params[NS_GNN_MAX_PARAMS];
    ns_optim *opt = NULL;
    int rc = -1;
    if (!targets || !lt || !dlt || !dlogits || !best) {
        ns_errf(err, "out of memory");
        goto done;
    }
    for (int64_t k = 0; k < T; k++) targets[k] = train->labels[idx[k]];
    for (int i = 0; i < m->nparams; i++) {
        const ns_gnn_tensor *t = &m->params[i];
        params[i] = (ns_param){t->name, m->value + t->offset, m->grad + t->offset, t->numel, t->ndim, t->shape, 1};
    }
    if (!(opt = make_adam(m, params, tc->weight_decay, err))) goto done;
    memcpy(best, m->value, (size_t)m->numel * sizeof *best);

    uint64_t dropout_base = ns_rand_u64(tc->seed, UINT64_C(0xd50f)); // apart from init's stream
    double lr = tc->lr, t0 = ns_now();
    ns_gnn_epoch e = {.epochs = tc->epochs, .val_acc = NAN, .test_acc = NAN, .best_val_acc = -1};
    int stale = 0; // evaluations since the best
    for (int epoch = 0; epoch < tc->epochs; epoch++) {
        if (tc->lr_drop > 0 && epoch == tc->lr_drop) { // GCond: a new Adam at a tenth of the lr
            ns_optim_free(opt);
            lr = tc->lr * 0.1;
            if (!(opt = make_adam(m, params, tc->weight_decay, err))) goto done;
        }
        const float *logits = ns_gnn_forward(m, train, 1, ns_rand_u64(dropout_base, (uint64_t)epoch));
        for (int64_t k = 0; k < T; k++) memcpy(lt + k * C, logits + idx[k] * C, (size_t)C * sizeof *lt);
        float loss = ns_softmax_ce_forward(NULL, lt, targets, NULL, 0.0f, T, C);
        if (!isfinite(loss)) {
            ns_errf(err, "epoch %d: the loss is %g (lower the learning rate?)", epoch + 1, loss);
            goto done;
        }
        memset(dlt, 0, (size_t)(T * C) * sizeof *dlt);
        ns_softmax_ce_backward(dlt, 1.0f, lt, targets, NULL, 0.0f, T, C);
        memset(dlogits, 0, (size_t)(N * C) * sizeof *dlogits);
        for (int64_t k = 0; k < T; k++) memcpy(dlogits + idx[k] * C, dlt + k * C, (size_t)C * sizeof *dlt);
        ns_gnn_zero_grad(m);
        ns_gnn_backward(m, train, dlogits, NULL);
        ns_optim_step(opt, lr);

        e.epoch = epoch + 1;
        e.loss = loss;
        e.evaluated = (epoch + 1) % tc->eval_every == 0 || epoch + 1 == tc->epochs;
        if (e.evaluated) {
            const float *out = ns_gnn_forward(m, eval, 0, 0);
            e.val_acc = ns_gnn_accuracy(out, eval->labels, val_mask, eval->N, C);
            e.test_acc = ns_gnn_accuracy(out, eval->labels, test_mask, eval->N, C);
            if (e.val_acc > e.best_val_acc) {
                e.best_val_acc = e.val_acc;
                e.best_test_acc = e.test_acc;
                e.best_epoch = epoch + 1;
                memcpy(best, m->value, (size_t)m->numel * sizeof *best);
                stale = 0;
            } else {
                stale++;
            }
        }
        e.seconds = ns_now() - t0;
        if (tc->progress) tc->progress(&e, tc->progress_arg);
        if (tc->patience > 0 && stale >= tc->patience) break;
    }
    memcpy(m->value, best, (size_t)m->numel * sizeof *best);
    *res = (ns_gnn_result){.epochs = e.epoch,
                           .best_epoch = e.best_epoch,
                           .loss = e.loss,
                           .val_acc = e.best_val_acc,
                           .test_acc = e.best_test_acc,
                           .train_seconds = ns_now() - t0,
                           .train_nodes = T};
    rc = 0;
done:
    ns_optim_free(opt);
    free(targets);
    free(lt);
    free(dlt);
    free(dlogits);
    free(best);
    return rc;
}

int ns_gnn_train(ns_gnn *m, ns_gnn_ctx *train, const uint8_t *train_mask, ns_gnn_ctx *eval,
                 const uint8_t *val_mask, const uint8_t *test_mask, const ns_gnn_train_config *tc,
                 ns_gnn_result *res, ns_err *err) {
    memset(res, 0, sizeof *res);
    if (tc->epochs < 1) return ns_errf(err, "epochs must be at least 1 (%d)", tc->epochs);
    if (tc->eval_every < 1) return ns_errf(err, "eval_every must be at least 1 (%d)", tc->eval_every);
    if (!train->grad) return ns_errf(err, "the training context was made without grad");
    if (train->D != m->D || eval->D != m->D || train->C != m->C || eval->C != m->C)
        return ns_errf(err, "a context was made for another model");
    int64_t N = train->N, C = m->C, T = 0, nval, ntest;
    for (int64_t i = 0; i < N; i++) {
        int in = train_mask ? train_mask[i] : train->labels[i] >= 0;
        if (!in) continue;
        if (train->labels[i] < 0 || train->labels[i] >= C)
            return ns_errf(err, "training node %lld has label %d; the model has %lld classes (0..%lld)", (long long)i,
                           train->labels[i], (long long)C, (long long)C - 1);
        T++;
    }
    if (T == 0) return ns_errf(err, "no training nodes");
    if (check_split(eval, val_mask, "validation", &nval, err) < 0 ||
        check_split(eval, test_mask, "test", &ntest, err) < 0)
        return -1;
    if (nval == 0) return ns_errf(err, "no validation nodes (the model is selected on them)");

    int64_t *idx = malloc((size_t)T * sizeof *idx);
    if (!idx) return ns_errf(err, "out of memory");
    for (int64_t i = 0, k = 0; i < N; i++)
        if (train_mask ? train_mask[i] : train->labels[i] >= 0) idx[k++] = i;
    int rc;
    if (m->cfg.kind != NS_GNN_SGC && m->cfg.kind != NS_GNN_MLP) {
        rc = train_loop(m, train, idx, T, eval, val_mask, test_mask, tc, res, err);
        free(idx);
        return rc;
    }
    // No propagation at run time: the training rows, and the evaluated rows. The
    // splits may overlap (a node in both counts in both), so the rows in val or
    // test are at most nval + ntest, and ne is the number actually listed.
    int64_t ne = nval + ntest, *erows = malloc((size_t)ne * sizeof *erows), *iota = malloc((size_t)T * sizeof *iota);
    uint8_t *vm = malloc((size_t)ne), *tm = malloc((size_t)ne);
    ns_gnn_ctx ts, es;
    rc = -1;
    if (!erows || !iota || !vm || !tm) {
        ns_errf(err, "out of memory");
    } else {
        int64_t k = 0;
        for (int64_t i = 0; i < eval->N; i++) {
            int v = val_mask[i], t = test_mask && test_mask[i];
            if (v || t) erows[k] = i, vm[k] = (uint8_t)v, tm[k++] = (uint8_t)t;
        }
        ne = k;
        for (int64_t k = 0; k < T; k++) iota[k] = k;
        if (ctx_rows(&ts, m, train, idx, T, 1, err) == 0) {
            if (ctx_rows(&es, m, eval, erows, ne, 0, err) == 0) {
                rc = train_loop(m, &ts, iota, T, &es, vm, test_mask ? tm : NULL, tc, res, err);
                ns_gnn_ctx_free(&es);
            }
            ns_gnn_ctx_free(&ts);
        }
    }
    free(idx), free(erows), free(iota), free(vm), free(tm);
    return rc;
}
