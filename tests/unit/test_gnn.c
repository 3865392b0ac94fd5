// test_gnn.c: the GNNs of lib/graph/gnn.h (GCN, SGC, MLP, GraphSAGE-mean): forward
// against a dense reference in double, every gradient by finite differences,
// sparse against dense features, and the training loop (selection, seeds,
// errors).
// sanitize: yes (runs under ASan/UBSan in `make check-sanitize`)
//
// The reference (ref_forward) is written from the formulas in gnn.h with
// dense matrices: P = D^-1/2 (A + I) D^-1/2 and M = D^-1 A built entry by
// entry, every product a plain triple loop in double, the dropout mask drawn
// again with ns_dropout_mask from the same seed.
//
// Gradients: the loss is L = sum(logits * R) with a fixed random R, so
// dL/dlogits = R is what backward receives. Every parameter (and the input
// features, for dense ones) is perturbed element by element and the central
// difference of L is taken twice: on the reference in double (h = 1e-6, tight:
// it checks backward against an independent forward) and on ns_gnn_forward
// itself in float (h = 1e-2, the relative error of each tensor's whole
// gradient; a step that moves a ReLU across its kink is skipped and counted). Gradient
// buffers start at ACC, not zero, to check that backward adds.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "graph/gnn.h"
#include "nn/ops.h"
#include "base/rng.h"

#define ACC 0.25f
#define REF_TOL 1e-4   // analytic (float) against the double reference's differences
#define F32_TOL 1e-3   // relative error of the whole gradient against float differences

static ns_rng rng;

static double urand(double lo, double hi) { return lo + (hi - lo) * ns_rng_uniform(&rng); }

static void *xalloc(size_t n) {
    void *p = calloc(n ? n : 1, 1);
    if (!p) {
        fprintf(stderr, "test_gnn: out of memory\n");
        exit(1);
    }
    return p;
}

// ----------------------------------------------------------------------------
// test graphs

enum { G_UNDIRECTED, G_DIRECTED };

// N nodes, D features (about a third zero, node 2's all zero), C classes,
// weighted edges (undirected: symmetric, node N-1 isolated; directed: random
// with no mirror), labels 0..C-1 with node 3 unlabelled, a split of every
// third node into train/val/test.
static void make_graph(ns_graph *g, int kind, int64_t N, int64_t D, int64_t C, int sparse) {
    memset(g, 0, sizeof *g);
    g->nodes = N;
    g->classes = C;
    g->undirected = kind == G_UNDIRECTED;
    g->weighted = 1;
    int64_t cap = N * N;
    int32_t *ri = xalloc((size_t)cap * sizeof *ri), *ci = xalloc((size_t)cap * sizeof *ci);
    float *w = xalloc((size_t)cap * sizeof *w);
    int64_t n = 0;
    for (int64_t i = 0; i < N; i++)
        for (int64_t j = 0; j < N; j++) {
            if (kind == G_UNDIRECTED) {
                if (j <= i || i == N - 1 || j == N - 1 || urand(0, 1) > 0.45) continue;
                float v = (float)urand(0.5, 2);
                ri[n] = (int32_t)i, ci[n] = (int32_t)j, w[n++] = v;
                ri[n] = (int32_t)j, ci[n] = (int32_t)i, w[n++] = v;
            } else if (urand(0, 1) < 0.3 || (i == 0 && j == 0)) { // a self loop too
                ri[n] = (int32_t)i, ci[n] = (int32_t)j, w[n++] = (float)urand(0.5, 2);
            }
        }
    ns_err err;
    if (ns_csr_from_coo(&g->adj, N, N, n, ri, ci, w, NS_DUP_REFUSE, NULL, &err) < 0) {
        fprintf(stderr, "make_graph: %s\n", err.msg);
        exit(1);
    }
    free(ri), free(ci), free(w);
    g->feature_dim = D;
    float *x = ns_aligned_alloc((size_t)(N * D) * sizeof *x);
    for (int64_t i = 0; i < N * D; i++) x[i] = urand(0, 1) < 0.35 || i / D == 2 ? 0.0f : (float)urand(-1, 1.5);
    if (sparse) {
        g->sparse_features = 1;
        if (ns_csr_from_dense(&g->sfeatures, x, N, D, &err) < 0) exit(1);
        free(x);
    } else {
        g->features = x;
    }
    g->labels = xalloc((size_t)N * sizeof *g->labels);
    for (int s = 0; s < NS_SPLIT_COUNT; s++) g->masks[s] = xalloc((size_t)N);
    for (int64_t i = 0; i < N; i++) {
        g->labels[i] = i == 3 ? -1 : (int32_t)((i * 7 + 1) % C);
        if (i != 3) g->masks[i % 3][i] = 1;
    }
    if (ns_graph_validate(g, &err) < 0) {
        fprintf(stderr, "make_graph: %s\n", err.msg);
        exit(1);
    }
}

// ----------------------------------------------------------------------------
// the dense reference, in double

typedef struct ref {
    int64_t N, D, H, C;
    double *A;   // (N, N) weights
    double *P;   // (N, N) gcn: D^-1/2 (A+I) D^-1/2; sage: D^-1 A
    double *X;   // (N, D)
} ref;

static void ref_init(ref *r, const ns_graph *g, const ns_gnn *m) {
    int64_t N = g->nodes, D = g->feature_dim;
    r->N = N, r->D = D, r->H = m->cfg.hidden, r->C = m->C;
    r->A = xalloc((size_t)(N * N) * sizeof(double));
    r->P = xalloc((size_t)(N * N) * sizeof(double));
    r->X = xalloc((size_t)(N * D) * sizeof(double));
    for (int64_t i = 0; i < N; i++)
        for (int64_t k = g->adj.indptr[i]; k < g->adj.indptr[i + 1]; k++)
            r->A[i * N + g->adj.indices[k]] = g->adj.values[k];
    if (m->cfg.kind == NS_GNN_SAGE) {
        for (int64_t i = 0; i < N; i++) {
            double s = 0;
            for (int64_t j = 0; j < N; j++) s += r->A[i * N + j];
            for (int64_t j = 0; j < N; j++) r->P[i * N + j] = s != 0 ? r->A[i * N + j] / s : 0;
        }
    } else {
        double *deg = xalloc((size_t)N * sizeof *deg);
        for (int64_t i = 0; i < N; i++) {
            for (int64_t j = 0; j < N; j++) deg[i] += r->A[i * N + j] + (i == j);
        }
        for (int64_t i = 0; i < N; i++)
            for (int64_t j = 0; j < N; j++)
                r->P[i * N + j] = (r->A[i * N + j] + (i == j)) / sqrt(deg[i] * deg[j]);
        free(deg);
    }
    float *x = NULL;
    ns_err err;
    if (ns_graph_dense_features(g, &x, &err) < 0) exit(1);
    for (int64_t i = 0; i < N * D; i++) r->X[i] = x[i];
    free(x);
}

static void ref_free(ref *r) {
    free(r->A), free(r->P), free(r->X);
}

// y (n, out) = x (n, in) W^T, W (out, in) as doubles
static void mm_wt(double *y, const double *x, const double *w, int64_t n, int64_t in, int64_t out) {
    for (int64_t i = 0; i < n; i++)
        for (int64_t o = 0; o < out; o++) {
            double s = 0;
            for (int64_t k = 0; k < in; k++) s += x[i * in + k] * w[o * in + k];
            y[i * out + o] = s;
        }
}

// y (N, d) = P (N, N) x (N, d)
static void mm_p(double *y, const double *P, const double *x, int64_t N, int64_t d) {
    for (int64_t i = 0; i < N; i++)
        for (int64_t j = 0; j < d; j++) {
            double s = 0;
            for (int64_t k = 0; k < N; k++) s += P[i * N + k] * x[k * d + j];
            y[i * d + j] = s;
        }
}

static const double *pv(const ns_gnn *m, const double *theta, int layer, int which) {
    const ns_gnn_layer *L = &m->layers[layer];
    int idx = which == 0 ? L->w : which == 1 ? L->b : L->wr;
    return theta + m->params[idx].offset;
}

// One layer in double: out (N, OUT) from in (N, IN).
static void ref_layer(const ref *r, const ns_gnn *m, const double *theta, int l, const double *in, double *out) {
    const ns_gnn_layer *L = &m->layers[l];
    int64_t N = r->N, IN = L->in, OUT = L->out;
    double *t = xalloc((size_t)(N * OUT) * sizeof *t);
    mm_wt(t, in, pv(m, theta, l, 0), N, IN, OUT);
    if (L->kind == NS_GNN_LAYER_LINEAR) memcpy(out, t, (size_t)(N * OUT) * sizeof *t);
    else mm_p(out, r->P, t, N, OUT);
    if (L->kind == NS_GNN_LAYER_SAGE) {
        mm_wt(t, in, pv(m, theta, l, 2), N, IN, OUT);
        for (int64_t i = 0; i < N * OUT; i++) out[i] += t[i];
    }
    const double *b = pv(m, theta, l, 1);
    for (int64_t i = 0; i < N; i++)
        for (int64_t o = 0; o < OUT; o++) out[i * OUT + o] += b[o];
    free(t);
}

// logits (N, C) for parameters theta (m's layout) and features X (N, D);
// dropout when mask is not NULL.
static void ref_forward(const ref *r, const ns_gnn *m, const double *theta, const double *X,
                        const uint8_t *mask, double *logits) {
    int64_t N = r->N, D = r->D;
    double *in = xalloc((size_t)(N * D) * sizeof *in), *tmp = xalloc((size_t)(N * D) * sizeof *tmp);
    memcpy(in, X, (size_t)(N * D) * sizeof *in);
    if (m->cfg.kind == NS_GNN_SGC) {
        for (int k = 0; k < m->cfg.hops; k++) {
            mm_p(tmp, r->P, in, N, D);
            memcpy(in, tmp, (size_t)(N * D) * sizeof *in);
        }
    }
    if (m->nlayers == 1) {
        ref_layer(r, m, theta, 0, in, logits);
    } else {
        int64_t H = r->H;
        double *h = xalloc((size_t)(N * H) * sizeof *h);
        ref_layer(r, m, theta, 0, in, h);
        double scale = 1.0 / (1.0 - (double)(float)m->cfg.dropout);
        for (int64_t i = 0; i < N * H; i++) {
            if (m->cfg.relu && h[i] < 0) h[i] = 0;
            if (mask) h[i] = mask[i] ? h[i] * (float)scale : 0;
        }
        ref_layer(r, m, theta, 1, h, logits);
        free(h);
    }
    free(in), free(tmp);
}

static double ref_loss(const ref *r, const ns_gnn *m, const double *theta, const double *X, const uint8_t *mask,
                       const float *R) {
    double *lg = xalloc((size_t)(r->N * r->C) * sizeof *lg), s = 0;
    ref_forward(r, m, theta, X, mask, lg);
    for (int64_t i = 0; i < r->N * r->C; i++) s += lg[i] * R[i];
    free(lg);
    return s;
}

// ----------------------------------------------------------------------------
// forward and gradients

static const char *const graph_names[] = {"undirected", "directed"};

// One model on one graph: forward against the reference (training with
// dropout, and eval), then every gradient.
static void check_model(const ns_gnn_config *cfg, int gkind, int sparse, const char *label) {
    const int64_t N = 9, D = 6, C = 3;
    ns_graph g;
    make_graph(&g, gkind, N, D, C, sparse);
    ns_gnn m;
    ns_err err;
    if (ns_gnn_create(&m, cfg, D, C, &err) < 0) {
        CHECK(0, "%s: create: %s", label, err.msg);
        ns_graph_free(&g);
        return;
    }
    ns_gnn_init(&m, 11);
    // Biases start at zero for GCN: give every parameter a value of its own.
    for (int i = 0; i < m.nparams; i++)
        if (m.params[i].ndim == 1)
            for (int64_t k = 0; k < m.params[i].numel; k++) m.value[m.params[i].offset + k] = (float)urand(-0.5, 0.5);
    int dense_x = cfg->kind == NS_GNN_SGC || !sparse;
    ns_gnn_ctx_config cc = {.xformat = sparse ? NS_GNN_X_SPARSE : NS_GNN_X_DENSE, .grad = 1, .input_grad = !sparse};
    ns_gnn_ctx c;
    if (ns_gnn_ctx_init(&c, &m, &g, &cc, &err) < 0) {
        CHECK(0, "%s: ctx: %s", label, err.msg);
        ns_gnn_free(&m), ns_graph_free(&g);
        return;
    }
    CHECK(c.sparse == !dense_x, "%s: features read %s", label, c.sparse ? "sparse" : "dense");
    ref r;
    ref_init(&r, &g, &m);
    double *theta = xalloc((size_t)m.numel * sizeof *theta);
    for (int64_t i = 0; i < m.numel; i++) theta[i] = m.value[i];
    int64_t H = m.nlayers == 2 ? cfg->hidden : 0;
    uint8_t *mask = NULL;
    const uint64_t seed = 77;
    if (H && cfg->dropout > 0) {
        mask = xalloc((size_t)(N * H));
        ns_dropout_mask(mask, (float)cfg->dropout, seed, N * H);
    }

    // forward, training (dropout) and eval
    double *want = xalloc((size_t)(N * C) * sizeof *want);
    for (int training = 1; training >= 0; training--) {
        const float *got = ns_gnn_forward(&m, &c, training, seed);
        ref_forward(&r, &m, theta, r.X, training ? mask : NULL, want);
        double worst = 0, scale = 0;
        for (int64_t i = 0; i < N * C; i++) scale = fmax(scale, fabs(want[i]));
        for (int64_t i = 0; i < N * C; i++) worst = fmax(worst, fabs(got[i] - want[i]) / (scale + 1e-12));
        CHECK(worst < 1e-5, "%s: forward (%s) matches the dense reference: maxdiff %.2e", label,
              training ? "training" : "eval", worst);
    }

    // backward
    float *R = xalloc((size_t)(N * C) * sizeof *R);
    for (int64_t i = 0; i < N * C; i++) R[i] = (float)urand(-1, 1);
    ns_gnn_forward(&m, &c, 1, seed);
    for (int64_t i = 0; i < m.numel; i++) m.grad[i] = ACC;
    float *dx = NULL;
    if (c.input_grad) {
        dx = ns_aligned_alloc((size_t)(N * D) * sizeof *dx);
        for (int64_t i = 0; i < N * D; i++) dx[i] = ACC;
    }
    ns_gnn_backward(&m, &c, R, dx);
    // which hidden units the ReLU let through, to spot steps across its kink
    int relu = H && cfg->relu;
    uint8_t *active = xalloc((size_t)(N * (H ? H : 1)));
    for (int64_t i = 0; relu && i < N * H; i++) active[i] = c.z[0][i] > 0;
    int skipped = 0;

    const double h = 1e-6;
    for (int p = 0; p < m.nparams; p++) {
        const ns_gnn_tensor *t = &m.params[p];
        double worst = 0, num2 = 0, diff2 = 0;
        for (int64_t k = 0; k < t->numel; k++) {
            double *v = &theta[t->offset + k], keep = *v;
            *v = keep + h;
            double lp = ref_loss(&r, &m, theta, r.X, mask, R);
            *v = keep - h;
            double lm = ref_loss(&r, &m, theta, r.X, mask, R);
            *v = keep;
            double num = (lp - lm) / (2 * h), an = m.grad[t->offset + k] - ACC;
            worst = fmax(worst, fabs(an - num) / fmax(fmax(fabs(an), fabs(num)), 1e-2));
            // the same element through the float forward, h = 1e-2, unless
            // the step moves a ReLU across its kink (then it is no derivative)
            float *fv = &m.value[t->offset + k], fkeep = *fv;
            double fl[2];
            int kinked = 0;
            for (int s = 0; s < 2; s++) {
                *fv = fkeep + (s ? -1e-2f : 1e-2f);
                const float *lg = ns_gnn_forward(&m, &c, 1, seed);
                fl[s] = 0;
                for (int64_t i = 0; i < N * C; i++) fl[s] += (double)lg[i] * R[i];
                for (int64_t i = 0; relu && i < N * H; i++) kinked |= (c.z[0][i] > 0) != active[i];
            }
            *fv = fkeep;
            if (kinked) {
                skipped++;
                continue;
            }
            double fnum = (fl[0] - fl[1]) / (2 * (double)1e-2f);
            num2 += fnum * fnum;
            diff2 += (fnum - an) * (fnum - an);
        }
        CHECK(worst < REF_TOL, "%s: d %s by differences of the reference: maxdiff %.2e", label, t->name, worst);
        double rel = sqrt(diff2) / fmax(sqrt(num2), 1e-6);
        CHECK(rel < F32_TOL, "%s: d %s by differences of the float forward: relative error %.2e", label, t->name,
              rel);
    }
    if (dx) {
        double worst = 0;
        for (int64_t k = 0; k < N * D; k++) {
            double keep = r.X[k];
            r.X[k] = keep + h;
            double lp = ref_loss(&r, &m, theta, r.X, mask, R);
            r.X[k] = keep - h;
            double lm = ref_loss(&r, &m, theta, r.X, mask, R);
            r.X[k] = keep;
            double num = (lp - lm) / (2 * h), an = dx[k] - ACC;
            worst = fmax(worst, fabs(an - num) / fmax(fmax(fabs(an), fabs(num)), 1e-2));
        }
        CHECK(worst < REF_TOL, "%s: d features by differences of the reference: maxdiff %.2e", label, worst);
    }
    if (relu)
        CHECK(skipped * 5 < m.numel, "%s: %d steps of the float differences crossed a ReLU kink (skipped)", label,
              skipped);
    free(dx), free(R), free(want), free(mask), free(theta), free(active);
    ref_free(&r);
    ns_gnn_ctx_free(&c);
    ns_gnn_free(&m);
    ns_graph_free(&g);
}

static void test_models(void) {
    for (int kind = 0; kind < NS_GNN_KIND_COUNT; kind++)
        for (int gk = 0; gk < 2; gk++)
            for (int sparse = 0; sparse < 2; sparse++) {
                ns_gnn_config cfg;
                ns_gnn_config_default(&cfg, (ns_gnn_kind)kind);
                cfg.hidden = 5;
                cfg.dropout = 0.4;
                char label[96];
                snprintf(label, sizeof label, "%s, %s graph, %s features", ns_gnn_kind_name((ns_gnn_kind)kind),
                         graph_names[gk], sparse ? "sparse" : "dense");
                check_model(&cfg, gk, sparse, label);
            }
    // Variants: no activation and no dropout (SimGC's Cora GCN), SGC with 0 and 3 hops.
    ns_gnn_config cfg;
    ns_gnn_config_default(&cfg, NS_GNN_GCN);
    cfg.hidden = 4, cfg.relu = 0, cfg.dropout = 0;
    check_model(&cfg, G_UNDIRECTED, 0, "gcn without ReLU and dropout");
    ns_gnn_config_default(&cfg, NS_GNN_SAGE);
    cfg.hidden = 4, cfg.dropout = 0;
    check_model(&cfg, G_DIRECTED, 1, "sage without dropout, sparse");
    ns_gnn_config_default(&cfg, NS_GNN_SGC);
    cfg.hops = 0;
    check_model(&cfg, G_UNDIRECTED, 0, "sgc, K = 0");
    cfg.hops = 3;
    check_model(&cfg, G_DIRECTED, 0, "sgc, K = 3, directed");
}

// ----------------------------------------------------------------------------
// the parameter table, sparse vs dense, training

static void test_table(void) {
    static const char *const want[NS_GNN_KIND_COUNT] = {
        "conv1.lin.weight 16x10 conv1.bias 16 conv2.lin.weight 3x16 conv2.bias 3 ",
        "conv1.lin.weight 3x10 conv1.lin.bias 3 ",
        "lin1.weight 16x10 lin1.bias 16 lin2.weight 3x16 lin2.bias 3 ",
        "conv1.lin_l.weight 16x10 conv1.lin_l.bias 16 conv1.lin_r.weight 16x10 conv2.lin_l.weight 3x16 "
        "conv2.lin_l.bias 3 conv2.lin_r.weight 3x16 ",
    };
    for (int kind = 0; kind < NS_GNN_KIND_COUNT; kind++) {
        ns_gnn_config cfg;
        ns_gnn_config_default(&cfg, (ns_gnn_kind)kind);
        cfg.hidden = 16;
        ns_gnn m;
        ns_err err;
        if (ns_gnn_create(&m, &cfg, 10, 3, &err) < 0) {
            CHECK(0, "create %s: %s", ns_gnn_kind_name((ns_gnn_kind)kind), err.msg);
            continue;
        }
        char got[512] = "";
        int aligned = 1;
        for (int i = 0; i < m.nparams; i++) {
            const ns_gnn_tensor *t = &m.params[i];
            size_t n = strlen(got);
            if (t->ndim == 2)
                snprintf(got + n, sizeof got - n, "%s %lldx%lld ", t->name, (long long)t->shape[0],
                         (long long)t->shape[1]);
            else snprintf(got + n, sizeof got - n, "%s %lld ", t->name, (long long)t->shape[0]);
            aligned &= ((uintptr_t)(m.value + t->offset) % 64) == 0;
        }
        CHECK(strcmp(got, want[kind]) == 0, "%s parameters, named as PyG: %s", ns_gnn_kind_name((ns_gnn_kind)kind),
              got);
        CHECK(aligned, "%s parameters start on 64-byte boundaries", ns_gnn_kind_name((ns_gnn_kind)kind));
        // init: GCN's biases zero and Glorot weights; Linear's within 1/sqrt(IN)
        ns_gnn_init(&m, 5);
        const ns_gnn_layer *L = &m.layers[0];
        const ns_gnn_tensor *w = &m.params[L->w], *b = &m.params[L->b];
        double bound = kind == NS_GNN_GCN ? sqrt(6.0 / (double)(L->in + L->out)) : 1 / sqrt((double)L->in), mx = 0,
               bmax = 0;
        for (int64_t k = 0; k < w->numel; k++) mx = fmax(mx, fabs(m.value[w->offset + k]));
        for (int64_t k = 0; k < b->numel; k++) bmax = fmax(bmax, fabs(m.value[b->offset + k]));
        CHECK(mx <= bound && mx > 0.7 * bound, "%s init: |W1| up to %.4f (bound %.4f)",
              ns_gnn_kind_name((ns_gnn_kind)kind), mx, bound);
        CHECK(kind == NS_GNN_GCN ? bmax == 0 : bmax > 0 && bmax <= 1 / sqrt((double)L->in),
              "%s init: |b1| up to %.4f", ns_gnn_kind_name((ns_gnn_kind)kind), bmax);
        ns_gnn_free(&m);
    }
    ns_gnn_kind k;
    ns_err err;
    CHECK(ns_gnn_kind_parse("graphsage", &k, &err) == 0 && k == NS_GNN_SAGE, "graphsage is sage");
    CHECK(ns_gnn_kind_parse("gat", &k, &err) < 0 && strstr(err.msg, "unknown model (gat)"), "%s", err.msg);
}

static void test_create_errors(void) {
    ns_gnn m;
    ns_err err;
    ns_gnn_config cfg;
    ns_gnn_config_default(&cfg, NS_GNN_GCN);
    cfg.dropout = 1;
    CHECK(ns_gnn_create(&m, &cfg, 4, 2, &err) < 0 && strstr(err.msg, "dropout must be in [0, 1) (1)"), "%s",
          err.msg);
    ns_gnn_config_default(&cfg, NS_GNN_GCN);
    cfg.hidden = 0;
    CHECK(ns_gnn_create(&m, &cfg, 4, 2, &err) < 0 && strstr(err.msg, "hidden units out of range (0)"), "%s",
          err.msg);
    ns_gnn_config_default(&cfg, NS_GNN_MLP);
    CHECK(ns_gnn_create(&m, &cfg, 0, 2, &err) < 0 && strstr(err.msg, "features per node out of range (0)"), "%s",
          err.msg);
    // a graph with another feature width than the model
    ns_graph g;
    make_graph(&g, G_UNDIRECTED, 6, 5, 2, 0);
    if (ns_gnn_create(&m, &cfg, 4, 2, &err) == 0) {
        ns_gnn_ctx c;
        CHECK(ns_gnn_ctx_init(&c, &m, &g, &(ns_gnn_ctx_config){.grad = 1}, &err) < 0 &&
                  strstr(err.msg, "the graph has 5 features per node, the model 4"),
              "%s", err.msg);
        ns_gnn_free(&m);
    }
    ns_graph_free(&g);
}

// --row-norm: each node's features divided by their sum, dense or sparse; a
// row of zeros (node 2) stays.
static void test_row_norm(void) {
    for (int sparse = 0; sparse < 2; sparse++) {
        ns_graph g;
        make_graph(&g, G_UNDIRECTED, 8, 5, 2, sparse);
        ns_gnn_config cfg;
        ns_gnn_config_default(&cfg, NS_GNN_MLP);
        ns_gnn m;
        ns_gnn_ctx c;
        ns_err err;
        if (ns_gnn_create(&m, &cfg, 5, 2, &err) < 0 ||
            ns_gnn_ctx_init(&c, &m, &g,
                            &(ns_gnn_ctx_config){.xformat = sparse ? NS_GNN_X_SPARSE : NS_GNN_X_DENSE, .row_norm = 1},
                            &err) < 0) {
            CHECK(0, "row norm setup: %s", err.msg);
            continue;
        }
        float *x = ns_aligned_alloc((size_t)(8 * 5) * sizeof *x);
        if (sparse) ns_csr_to_dense(x, &c.xs);
        else memcpy(x, c.x, (size_t)(8 * 5) * sizeof *x);
        double worst = 0, zero = 0;
        for (int64_t i = 0; i < 8; i++) {
            double sum = 0;
            for (int64_t j = 0; j < 5; j++) sum += x[i * 5 + j];
            if (i == 2) zero = fabs(sum);
            else worst = fmax(worst, fabs(sum - 1));
        }
        CHECK(worst < 1e-5 && zero == 0, "%s features: rows sum to 1 (off by %.1e), the zero row stays",
              sparse ? "sparse" : "dense", worst);
        free(x);
        ns_gnn_ctx_free(&c);
        ns_gnn_free(&m);
        ns_graph_free(&g);
    }
}

// A learnable two-community graph: N nodes, C classes, each node's features a
// noisy one-hot of its class, edges mostly within a class.
static void make_sbm(ns_graph *g, int64_t N, int64_t C, int64_t D, int sparse) {
    memset(g, 0, sizeof *g);
    g->nodes = N, g->classes = C, g->undirected = 1, g->feature_dim = D;
    int64_t cap = N * 20;
    int32_t *ri = xalloc((size_t)cap * sizeof *ri), *ci = xalloc((size_t)cap * sizeof *ci);
    int64_t n = 0;
    for (int64_t i = 0; i < N; i++)
        for (int64_t j = i + 1; j < N && n + 2 <= cap; j++) {
            double p = i % C == j % C ? 8.0 / (double)N : 1.0 / (double)N;
            if (urand(0, 1) < p) ri[n] = (int32_t)i, ci[n++] = (int32_t)j, ri[n] = (int32_t)j, ci[n++] = (int32_t)i;
        }
    ns_err err;
    if (ns_csr_from_coo(&g->adj, N, N, n, ri, ci, NULL, NS_DUP_REFUSE, NULL, &err) < 0) exit(1);
    free(ri), free(ci);
    float *x = ns_aligned_alloc((size_t)(N * D) * sizeof *x);
    for (int64_t i = 0; i < N; i++)
        for (int64_t j = 0; j < D; j++) x[i * D + j] = urand(0, 1) < (j % C == i % C ? 0.3 : 0.15) ? 1.0f : 0.0f;
    if (sparse) {
        g->sparse_features = 1;
        if (ns_csr_from_dense(&g->sfeatures, x, N, D, &err) < 0) exit(1);
        free(x);
    } else {
        g->features = x;
    }
    g->labels = xalloc((size_t)N * sizeof *g->labels);
    for (int s = 0; s < NS_SPLIT_COUNT; s++) g->masks[s] = xalloc((size_t)N);
    for (int64_t i = 0; i < N; i++) {
        g->labels[i] = (int32_t)(i % C);
        g->masks[i < 10 * C ? NS_SPLIT_TRAIN : i < N / 2 ? NS_SPLIT_VAL : NS_SPLIT_TEST][i] = 1;
    }
    if (ns_graph_validate(g, &err) < 0) {
        fprintf(stderr, "make_sbm: %s\n", err.msg);
        exit(1);
    }
}

typedef struct run {
    ns_gnn_result res;
    float *weights;
    int64_t numel;
    double val_again, test_again;
    int calls, last_epoch;
} run;

static void count_calls(const ns_gnn_epoch *e, void *arg) {
    run *r = arg;
    r->calls++;
    r->last_epoch = e->epoch;
}

static int train_patience; // tc.patience of train_once

static int train_once(ns_gnn_kind kind, const ns_graph *g, uint64_t seed, ns_gnn_xformat xf, int epochs, run *r) {
    ns_gnn_config cfg;
    ns_gnn_config_default(&cfg, kind);
    cfg.hidden = 32;
    ns_gnn m;
    ns_err err;
    memset(r, 0, sizeof *r);
    if (ns_gnn_create(&m, &cfg, g->feature_dim, g->classes, &err) < 0) return -1;
    ns_gnn_init(&m, seed);
    ns_gnn_ctx c;
    if (ns_gnn_ctx_init(&c, &m, g, &(ns_gnn_ctx_config){.xformat = xf, .grad = 1}, &err) < 0) return -1;
    ns_gnn_train_config tc;
    ns_gnn_train_config_default(&tc);
    tc.epochs = epochs;
    tc.lr_drop = epochs / 2;
    tc.patience = train_patience;
    tc.seed = seed;
    tc.progress = count_calls;
    tc.progress_arg = r;
    int rc = ns_gnn_train(&m, &c, g->masks[NS_SPLIT_TRAIN], &c, g->masks[NS_SPLIT_VAL], g->masks[NS_SPLIT_TEST], &tc,
                          &r->res, &err);
    if (rc == 0) {
        const float *lg = ns_gnn_forward(&m, &c, 0, 0);
        r->val_again = ns_gnn_accuracy(lg, c.labels, g->masks[NS_SPLIT_VAL], c.N, m.C);
        r->test_again = ns_gnn_accuracy(lg, c.labels, g->masks[NS_SPLIT_TEST], c.N, m.C);
        r->numel = m.numel;
        r->weights = xalloc((size_t)m.numel * sizeof(float));
        memcpy(r->weights, m.value, (size_t)m.numel * sizeof(float));
    } else {
        fprintf(stderr, "train: %s\n", err.msg);
    }
    ns_gnn_ctx_free(&c);
    ns_gnn_free(&m);
    return rc;
}

static void test_training(void) {
    ns_graph g, gs;
    ns_rng keep = rng;
    make_sbm(&g, 300, 2, 40, 0);
    rng = keep;
    make_sbm(&gs, 300, 2, 40, 1); // the same graph with sparse features
    run a, b, c, s, mlp;
    if (train_once(NS_GNN_GCN, &g, 3, NS_GNN_X_DENSE, 60, &a) < 0 || train_once(NS_GNN_GCN, &g, 3, NS_GNN_X_DENSE, 60, &b) < 0 ||
        train_once(NS_GNN_GCN, &g, 4, NS_GNN_X_DENSE, 60, &c) < 0 || train_once(NS_GNN_GCN, &gs, 3, NS_GNN_X_SPARSE, 60, &s) < 0 ||
        train_once(NS_GNN_MLP, &g, 3, NS_GNN_X_AUTO, 60, &mlp) < 0) {
        CHECK(0, "training runs");
        return;
    }
    CHECK(a.calls == 60 && a.last_epoch == 60, "progress after every epoch (%d calls)", a.calls);
    CHECK(a.res.epochs == 60 && a.res.best_epoch >= 1 && a.res.best_epoch <= 60 && a.res.train_nodes == 20,
          "result: %d epochs, best %d, %lld training nodes", a.res.epochs, a.res.best_epoch,
          (long long)a.res.train_nodes);
    CHECK(a.val_again == a.res.val_acc && a.test_again == a.res.test_acc,
          "the model returned is the selected one: val %.4f = %.4f, test %.4f = %.4f", a.val_again, a.res.val_acc,
          a.test_again, a.res.test_acc);
    CHECK(mlp.val_again == mlp.res.val_acc && mlp.test_again == mlp.res.test_acc,
          "mlp (trained and evaluated on copies of the rows it needs) as on the whole graph: val %.4f = %.4f, "
          "test %.4f = %.4f",
          mlp.val_again, mlp.res.val_acc, mlp.test_again, mlp.res.test_acc);
    CHECK(memcmp(a.weights, b.weights, (size_t)a.numel * sizeof(float)) == 0 && a.res.test_acc == b.res.test_acc,
          "the same seed gives the same weights");
    CHECK(memcmp(a.weights, c.weights, (size_t)a.numel * sizeof(float)) != 0, "another seed, other weights");
    CHECK(fabs(s.res.val_acc - a.res.val_acc) <= 0.02, "sparse features train as dense: val %.3f and %.3f",
          s.res.val_acc, a.res.val_acc);
    CHECK(a.res.test_acc > 0.9 && a.res.test_acc > mlp.res.test_acc + 0.05,
          "GCN beats an MLP on a two-community graph: %.3f against %.3f", a.res.test_acc, mlp.res.test_acc);
    free(a.weights), free(b.weights), free(c.weights), free(s.weights), free(mlp.weights);

    // errors: no validation nodes, labels beyond the model's classes
    ns_gnn_config cfg;
    ns_gnn_config_default(&cfg, NS_GNN_GCN);
    cfg.hidden = 8;
    ns_gnn m;
    ns_gnn_ctx ctx;
    ns_err err;
    ns_gnn_result res;
    ns_gnn_train_config tc;
    ns_gnn_train_config_default(&tc);
    tc.epochs = 2;
    if (ns_gnn_create(&m, &cfg, g.feature_dim, 2, &err) == 0 &&
        ns_gnn_ctx_init(&ctx, &m, &g, &(ns_gnn_ctx_config){.grad = 1}, &err) == 0) {
        uint8_t *none = xalloc((size_t)g.nodes);
        CHECK(ns_gnn_train(&m, &ctx, g.masks[0], &ctx, none, NULL, &tc, &res, &err) < 0 &&
                  strstr(err.msg, "no validation nodes"),
              "%s", err.msg);
        CHECK(ns_gnn_train(&m, &ctx, none, &ctx, g.masks[1], NULL, &tc, &res, &err) < 0 &&
                  strstr(err.msg, "no training nodes"),
              "%s", err.msg);
        ctx.labels[5] = 2; // node 5 is a training node
        CHECK(ns_gnn_train(&m, &ctx, g.masks[0], &ctx, g.masks[1], NULL, &tc, &res, &err) < 0 &&
                  strstr(err.msg, "training node 5 has label 2; the model has 2 classes (0..1)"),
              "%s", err.msg);
        ctx.labels[5] = 1;
        ctx.labels[200] = -1; // a test node
        CHECK(ns_gnn_train(&m, &ctx, g.masks[0], &ctx, g.masks[1], g.masks[2], &tc, &res, &err) < 0 &&
                  strstr(err.msg, "test node 200 has label -1"),
              "%s", err.msg);
        ctx.labels[200] = 0;
        // all labelled nodes train when there is no mask; no test mask: NaN
        CHECK(ns_gnn_train(&m, &ctx, NULL, &ctx, g.masks[1], NULL, &tc, &res, &err) == 0 &&
                  res.train_nodes == g.nodes && isnan(res.test_acc),
              "no training mask: all %lld labelled nodes train; test accuracy NaN", (long long)res.train_nodes);
        free(none);
        ns_gnn_ctx_free(&ctx);
        ns_gnn_free(&m);
    } else {
        CHECK(0, "setup: %s", err.msg);
    }
    ns_graph_free(&g);
    ns_graph_free(&gs);
}

// SimGC's protocol: train on a small graph, select and test on another.
static void test_eval_graph(void) {
    ns_graph big, small;
    make_sbm(&big, 400, 2, 30, 1);
    make_sbm(&small, 40, 2, 30, 0);
    ns_gnn_config cfg;
    ns_gnn_config_default(&cfg, NS_GNN_SGC);
    ns_gnn m;
    ns_err err;
    ns_gnn_ctx tr, ev;
    ns_gnn_train_config tc;
    ns_gnn_train_config_default(&tc);
    tc.epochs = 100;
    tc.eval_every = 10;
    ns_gnn_result res;
    run calls = {0};
    tc.progress = count_calls;
    tc.progress_arg = &calls;
    if (ns_gnn_create(&m, &cfg, 30, 2, &err) < 0 || ns_gnn_ctx_init(&tr, &m, &small, &(ns_gnn_ctx_config){.grad = 1}, &err) < 0 ||
        ns_gnn_ctx_init(&ev, &m, &big, &(ns_gnn_ctx_config){0}, &err) < 0) {
        CHECK(0, "setup: %s", err.msg);
        return;
    }
    ns_gnn_init(&m, 1);
    int rc = ns_gnn_train(&m, &tr, NULL, &ev, big.masks[NS_SPLIT_VAL], big.masks[NS_SPLIT_TEST], &tc, &res, &err);
    CHECK(rc == 0 && res.train_nodes == 40 && res.best_epoch % 10 == 0 && res.test_acc > 0.8,
          "trained on 40 nodes, selected on another graph every 10 epochs: best epoch %d, test %.3f", res.best_epoch,
          res.test_acc);
    ns_gnn_ctx_free(&tr);
    ns_gnn_ctx_free(&ev);
    ns_gnn_free(&m);
    ns_graph_free(&big);
    ns_graph_free(&small);
}

// Patience: training stops after that many evaluations without a better
// validation accuracy, and keeps the best.
static void test_patience(void) {
    ns_graph g;
    make_sbm(&g, 300, 2, 40, 0);
    run a;
    train_patience = 3;
    int rc = train_once(NS_GNN_GCN, &g, 3, NS_GNN_X_DENSE, 2000, &a);
    train_patience = 0;
    CHECK(rc == 0, "training with patience runs");
    if (rc < 0) return;
    CHECK(a.res.epochs < 2000 && a.res.epochs == a.res.best_epoch + 3 && a.calls == a.res.epochs,
          "stopped 3 evaluations after the best: %d epochs, best %d, %d calls", a.res.epochs, a.res.best_epoch, a.calls);
    CHECK(a.val_again == a.res.val_acc, "the best is kept: val %.4f = %.4f", a.val_again, a.res.val_acc);
    free(a.weights);
    ns_graph_free(&g);
}

int main(void) {
    ns_rng_seed(&rng, 20261128);
    test_table();
    test_create_errors();
    test_row_norm();
    test_models();
    test_training();
    test_patience();
    test_eval_graph();
    return check_done();
}
