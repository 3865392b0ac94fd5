// simgc.c: SimGC's condensation (simgc.h): condensed label blocks, the
// original graph's per-class statistics, the losses with their gradients, the
// teacher, and the alternating optimisation with validation-based selection.
// Shapes: original features (N, D); condensed x, layers and gradients (n, D);
// adjacency a, a0, ahat (n, n); targets (blocks, L*D).
#include "graph/simgc.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/blas.h"
#include "base/report.h"
#include "nn/ops.h"
#include "nn/optim.h"
#include "graph/pge.h"
#include "base/rng.h"
#include "base/tensor.h"

#define MAX_HOPS 8

void ns_simgc_config_default(ns_simgc_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->ratio = 0.5;
    cfg->hops = 2;
    cfg->teacher_mlp = 1;
    cfg->teacher_hidden = 2048;
    cfg->teacher_epochs = 1000;
    cfg->teacher_eval_every = 5;
    cfg->teacher_patience = 20;
    cfg->teacher_lr = 0.001;
    cfg->pge_hidden = 128;
    cfg->tau = 0.01;
    cfg->lr_feat = 0.005;
    cfg->lr_adj = 0.001;
    cfg->alpha = 10;
    cfg->gamma = 0.1;
    cfg->iterations = 1500;
    cfg->cycle = 50;
    cfg->adj_steps = 10;
    cfg->val_every = 100;
    cfg->val_epochs = 3000;
    cfg->val_patience = 3;
    cfg->val_hidden = 256;
    cfg->val_relu = 0;
    cfg->val_lr = 0.001;
    cfg->seed = 1;
}

int64_t ns_simgc_class_sizes(const int64_t *train, int64_t C, double r, int64_t *count, int64_t *order) {
    int64_t n = 0;
    for (int64_t c = 0; c < C; c++) {
        order[c] = c;
        count[c] = train[c] > 0 ? (int64_t)ceil(r * (double)train[c] - 1e-9) : 0;
        if (train[c] > 0 && count[c] < 1) count[c] = 1;
        n += count[c];
    }
    // ascending train count, ties by class index (insertion sort: C is small)
    for (int64_t i = 1; i < C; i++)
        for (int64_t j = i; j > 0 && train[order[j]] < train[order[j - 1]]; j--) {
            int64_t s = order[j];
            order[j] = order[j - 1], order[j - 1] = s;
        }
    return n;
}

// ----------------------------------------------------------------------------
// normalisation

void ns_simgc_normalize(float *ahat, float *s, const float *a, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        double deg = 1.0;
        for (int64_t j = 0; j < n; j++) deg += a[i * n + j];
        s[i] = (float)(1.0 / sqrt(deg));
    }
#pragma omp parallel for schedule(static) if (n >= 256)
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++) ahat[i * n + j] = s[i] * (a[i * n + j] + (i == j)) * s[j];
}

void ns_simgc_normalize_backward(float *da, const float *dahat, const float *a, const float *s, int64_t n) {
    // ahat_ij = s_i (a_ij + [i=j]) s_j with s_i = (1 + sum_j a_ij)^-1/2:
    // ds_i = sum_j dahat_ij (a_ij + [i=j]) s_j + sum_j dahat_ji (a_ji + [j=i]) s_j,
    // and every a_ij of row i moves s_i by -s_i^3 / 2.
    double *dd = malloc((size_t)n * sizeof *dd);
    if (!dd) return; // n is the condensed size: tiny; callers checked memory at setup
    for (int64_t i = 0; i < n; i++) {
        double ds = 0;
        for (int64_t j = 0; j < n; j++) {
            ds += (double)dahat[i * n + j] * (a[i * n + j] + (i == j)) * s[j];
            ds += (double)dahat[j * n + i] * (a[j * n + i] + (i == j)) * s[j];
        }
        dd[i] = -0.5 * ds * (double)s[i] * s[i] * s[i];
    }
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++) da[i * n + j] += (float)(dahat[i * n + j] * s[i] * s[j] + dd[i]);
    free(dd);
}

// ----------------------------------------------------------------------------
// losses

double ns_simgc_rep_loss(const ns_simgc_targets *t, const float *const *layers, int L, int64_t D,
                         float *const *dlayers, double scale) {
    double total = 0;
    double inv_f = 1.0 / (double)(L * D);
    for (int64_t b = 0; b < t->blocks; b++) {
        int64_t r0 = t->start[b], cnt = t->count[b];
        double w = t->w[b] / t->wsum;
        const float *mu = t->mu + b * t->LD, *sd = t->sd + b * t->LD;
        for (int l = 0; l < L; l++) {
            const float *x = layers[l];
            float *dx = dlayers ? dlayers[l] : NULL;
            for (int64_t f = 0; f < D; f++) {
                double m = 0, v = 0;
                for (int64_t r = r0; r < r0 + cnt; r++) m += x[r * D + f];
                m /= (double)cnt;
                for (int64_t r = r0; r < r0 + cnt; r++) v += (x[r * D + f] - m) * (x[r * D + f] - m);
                double target_mu = mu[l * D + f], target_sd = sd[l * D + f];
                double dm = m - target_mu;
                total += w * dm * dm * inv_f;
                // The std term needs two condensed nodes and a defined target.
                int with_sd = cnt > 1 && !isnan(target_sd);
                double sdv = with_sd ? sqrt(v / (double)(cnt - 1)) : 0, ds = sdv - target_sd;
                if (with_sd) total += w * ds * ds * inv_f;
                if (!dx) continue;
                double gm = scale * w * 2 * dm * inv_f / (double)cnt;
                double gs = with_sd && sdv > 0 ? scale * w * 2 * ds * inv_f / ((double)(cnt - 1) * sdv) : 0;
                for (int64_t r = r0; r < r0 + cnt; r++)
                    dx[r * D + f] += (float)(gm + gs * (x[r * D + f] - m));
            }
        }
    }
    return total;
}

// k(x_i, x_j) * D = sum_f exp(-(x_if - x_jf)^2 / 2); with dxi, also
// dxi_f -= c (x_if - x_jf) exp(-(x_if - x_jf)^2 / 2).
NS_SIMD_CLONES static float pair_kernel(const float *xi, const float *xj, int64_t D, float c, float *dxi) {
    float ksum = 0;
    if (!dxi) {
#pragma omp simd reduction(+ : ksum)
        for (int64_t f = 0; f < D; f++) {
            float dlt = xi[f] - xj[f];
            ksum += ns_exp_nonpos(-0.5f * dlt * dlt);
        }
        return ksum;
    }
#pragma omp simd reduction(+ : ksum)
    for (int64_t f = 0; f < D; f++) {
        float dlt = xi[f] - xj[f];
        float e = ns_exp_nonpos(-0.5f * dlt * dlt);
        ksum += e;
        dxi[f] -= c * dlt * e;
    }
    return ksum;
}

double ns_simgc_smooth_loss(const float *a, const float *x, int64_t n, int64_t D, float *da, float *dx,
                            double scale) {
    double asum = 0;
    for (int64_t k = 0; k < n * n; k++) asum += a[k];
    if (asum <= 0) return 0;
    double *k_row = malloc((size_t)(n * n) * sizeof *k_row); // k_ij, for dL/da
    if (!k_row) return NAN;
    double num = 0;
    // Row i: k_ij for every neighbour j, and dx_i. Each pair appears as (i, j)
    // and (j, i) with the same weight and kernel, so row i's own share of the
    // gradient is doubled instead of scattering into row j.
#pragma omp parallel for schedule(dynamic, 1) reduction(+ : num)
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++) {
            float aij = a[i * n + j];
            k_row[i * n + j] = 0;
            if (!(aij > 0)) continue;
            float c = (float)(scale * 2.0 * aij / asum / (double)D);
            double kij = pair_kernel(x + i * D, x + j * D, D, c, dx ? dx + i * D : NULL) / (double)D;
            k_row[i * n + j] = kij;
            num += aij * kij;
        }
    double loss = num / asum;
    if (da)
        for (int64_t k = 0; k < n * n; k++)
            if (a[k] > 0) da[k] += (float)(scale * (k_row[k] - loss) / asum);
    free(k_row);
    return loss;
}

// ----------------------------------------------------------------------------
// the original graph's statistics

static void targets_free(ns_simgc_targets *t) {
    free(t->start);
    free(t->count);
    free(t->w);
    free(t->mu);
    free(t->sd);
    memset(t, 0, sizeof *t);
}

// The training nodes of class c, in ascending order, into rows (room for N);
// returns how many.
static int64_t class_train_rows(const ns_graph *g, int32_t c, int64_t *rows) {
    const uint8_t *train = g->masks[NS_SPLIT_TRAIN];
    int64_t m = 0;
    for (int64_t i = 0; i < g->nodes; i++)
        if (train[i] && g->labels[i] == c) rows[m++] = i;
    return m;
}

// hs[l] (N, D) the propagated features of the original graph; blocks in order.
static int targets_build(ns_simgc_targets *t, const ns_graph *g, const float *const *hs, int L,
                         const int64_t *count, const int64_t *order, ns_err *err) {
    int64_t C = g->classes, D = g->feature_dim, N = g->nodes;
    memset(t, 0, sizeof *t);
    t->LD = L * D;
    t->start = calloc((size_t)C, sizeof *t->start);
    t->count = calloc((size_t)C, sizeof *t->count);
    t->w = calloc((size_t)C, sizeof *t->w);
    t->mu = calloc((size_t)(C * t->LD), sizeof *t->mu);
    t->sd = calloc((size_t)(C * t->LD), sizeof *t->sd);
    int64_t *rows = malloc((size_t)N * sizeof *rows);
    if (!t->start || !t->count || !t->w || !t->mu || !t->sd || !rows) {
        free(rows);
        targets_free(t);
        return ns_errf(err, "out of memory (class statistics of %lld x %lld)", (long long)C, (long long)t->LD);
    }
    int64_t maxc = 0, pos = 0;
    for (int64_t c = 0; c < C; c++) maxc = count[c] > maxc ? count[c] : maxc;
    for (int64_t k = 0; k < C; k++) {
        int64_t c = order[k];
        if (count[c] == 0) continue;
        int64_t b = t->blocks++;
        t->start[b] = pos, t->count[b] = count[c];
        pos += count[c];
        t->w[b] = (double)count[c] / (double)maxc;
        t->wsum += t->w[b];
        int64_t m = class_train_rows(g, (int32_t)c, rows);
        for (int l = 0; l < L; l++)
            for (int64_t f = 0; f < D; f++) {
                double s = 0, v = 0;
                for (int64_t r = 0; r < m; r++) s += hs[l][rows[r] * D + f];
                double mean = s / (double)m;
                for (int64_t r = 0; r < m; r++) {
                    double dv = hs[l][rows[r] * D + f] - mean;
                    v += dv * dv;
                }
                t->mu[b * t->LD + l * D + f] = (float)mean;
                t->sd[b * t->LD + l * D + f] = m > 1 ? (float)sqrt(v / (double)(m - 1)) : NAN;
            }
    }
    free(rows);
    return 0;
}

// The nearest-class-mean classifier on S = Â^K X: a node goes to the class
// whose training mean of S (L_rep's last-layer target) is nearest. What the
// class-level statistics SimGC aligns to say about the labels; its condensed
// graphs land near this accuracy (sgc-condense(1), NOTES). val and test get
// the accuracy on those masks (NaN for an empty one).
static int class_mean_accuracy(const ns_simgc_targets *t, const int32_t *labels, const ns_graph *g,
                               const float *s, int K, double *val, double *test, ns_err *err) {
    enum { CHUNK = 1024 };
    int64_t N = g->nodes, D = g->feature_dim, B = t->blocks;
    float *mu = malloc((size_t)(B * D) * sizeof *mu), *dots = malloc((size_t)(CHUNK * B) * sizeof *dots);
    double *norm = malloc((size_t)B * sizeof *norm);
    if (!mu || !dots || !norm) {
        free(mu), free(dots), free(norm);
        return ns_errf(err, "out of memory (class means %lld x %lld)", (long long)B, (long long)D);
    }
    for (int64_t b = 0; b < B; b++) {
        memcpy(mu + b * D, t->mu + b * t->LD + K * D, (size_t)D * sizeof *mu);
        norm[b] = 0;
        for (int64_t f = 0; f < D; f++) norm[b] += (double)mu[b * D + f] * mu[b * D + f];
    }
    const uint8_t *vm = g->masks[NS_SPLIT_VAL], *tm = g->masks[NS_SPLIT_TEST];
    int64_t hit[2] = {0, 0}, total[2] = {0, 0};
    for (int64_t r0 = 0; r0 < N; r0 += CHUNK) {
        int64_t m = N - r0 < CHUNK ? N - r0 : CHUNK;
        ns_sgemm(0, 1, m, B, D, 1.0f, s + r0 * D, D, mu, D, 0.0f, dots, B);
        for (int64_t i = 0; i < m; i++) {
            int64_t node = r0 + i;
            int which = vm && vm[node] ? 0 : tm && tm[node] ? 1 : -1;
            if (which < 0) continue;
            int64_t best = 0;
            double best_d = INFINITY;
            for (int64_t b = 0; b < B; b++) { // ||s - mu||^2 without the ||s||^2 all classes share
                double d = norm[b] - 2.0 * dots[i * B + b];
                if (d < best_d) best_d = d, best = b;
            }
            total[which]++;
            hit[which] += labels[t->start[best]] == g->labels[node];
        }
    }
    *val = total[0] ? (double)hit[0] / (double)total[0] : NAN;
    *test = total[1] ? (double)hit[1] / (double)total[1] : NAN;
    free(mu), free(dots), free(norm);
    return 0;
}

// ----------------------------------------------------------------------------
// graphs

// A graph of n nodes with features x (copied), adjacency a (dense (n, n), its
// non-zero entries; NULL: none), labels (copied) and every node in train.
static int condensed_graph(ns_graph *out, const float *x, const float *a, const int32_t *labels, int64_t n,
                           int64_t D, const ns_graph *like, ns_err *err) {
    memset(out, 0, sizeof *out);
    out->nodes = n;
    out->classes = like->classes;
    out->undirected = 1;
    out->weighted = 1;
    out->feature_dim = D;
    out->features = ns_aligned_alloc((size_t)(n * D) * sizeof(float));
    out->labels = malloc((size_t)n * sizeof *out->labels);
    out->masks[NS_SPLIT_TRAIN] = malloc((size_t)n);
    if (!out->features || !out->labels || !out->masks[NS_SPLIT_TRAIN]) goto oom;
    memcpy(out->features, x, (size_t)(n * D) * sizeof(float));
    memcpy(out->labels, labels, (size_t)n * sizeof *labels);
    memset(out->masks[NS_SPLIT_TRAIN], 1, (size_t)n);
    if (a ? ns_csr_from_dense(&out->adj, a, n, n, err) < 0 : ns_csr_alloc(&out->adj, n, n, 0, err) < 0) {
        ns_graph_free(out);
        return -1;
    }
    return 0;
oom:
    ns_graph_free(out);
    return ns_errf(err, "out of memory (a condensed graph of %lld nodes)", (long long)n);
}

// ----------------------------------------------------------------------------
// the condensation

struct ns_simgc {
    const ns_simgc_config *cfg;
    int64_t N, D, C, n;
    int K;
    float *hs[MAX_HOPS + 1];         // (N, D) original X, ÂX, ... (hs[0] borrowed or owned)
    int own_h0;
    ns_simgc_targets targets;
    int32_t *labels;                 // (n) Y'
    ns_gnn teacher;
    ns_gnn_ctx tctx;                 // the teacher reading the condensed graph
    ns_pge pge;
    float *x, *dx;                   // (n, D) X' and its gradient
    float *layers[MAX_HOPS + 1];     // (n, D) ÂX' ... (layers[0] = x)
    float *dlayers[MAX_HOPS + 1];    // (n, D) (dlayers[0] = dx)
    float *a0, *a, *ahat, *s, *da, *dahat, *dlogits;
    float *best_x, *best_a;
    ns_optim *opt_x, *opt_pge;
    ns_gnn vm;                       // the validation GCN
    ns_gnn_ctx ectx;                 // and the original graph as it reads it
    int64_t *count, *order;          // (C) condensed class sizes, block order
};
typedef struct ns_simgc condenser;

// hs[1..K] = Â^l X over the original graph (Â with self loops, symmetric normalisation).
static int propagate_original(condenser *k, const ns_graph *g, ns_err *err) {
    int64_t N = k->N, D = k->D;
    if (g->features && !g->sparse_features) {
        k->hs[0] = g->features;
    } else {
        if (ns_graph_dense_features(g, &k->hs[0], err) < 0) return -1;
        k->own_h0 = 1;
    }
    ns_csr p = {0};
    if (ns_csr_gcn_norm(&p, &g->adj, err) < 0) return -1;
    for (int l = 1; l <= k->K; l++) {
        if (!(k->hs[l] = ns_aligned_alloc((size_t)(N * D) * sizeof(float)))) {
            ns_csr_free(&p);
            return ns_errf(err, "out of memory (propagated features %lld x %lld)", (long long)N, (long long)D);
        }
        ns_spmm_forward(k->hs[l], &p, k->hs[l - 1], D);
    }
    ns_csr_free(&p);
    return 0;
}

// Full-batch Adam on the graph train (dense features; its train_mask nodes,
// or every labelled node when NULL) without weight decay or lr drop, selected
// on g's validation nodes as eval reads them (NULL: train's own context): the
// teacher and every validation GCN.
static int train_gnn(ns_gnn *m, const ns_graph *train, const uint8_t *train_mask, ns_gnn_ctx *eval,
                     const ns_graph *g, int epochs, double lr, int eval_every, int patience, uint64_t seed,
                     void (*progress)(const ns_gnn_epoch *e, void *arg), void *progress_arg, ns_gnn_result *r,
                     ns_err *err) {
    ns_gnn_ctx ctx;
    ns_gnn_ctx_config cc = {NS_GNN_X_DENSE, 0, 1, 0};
    if (ns_gnn_ctx_init(&ctx, m, train, &cc, err) < 0) return -1;
    ns_gnn_train_config tc;
    ns_gnn_train_config_default(&tc);
    tc.epochs = epochs;
    tc.lr = lr;
    tc.weight_decay = 0;
    tc.lr_drop = 0;
    tc.eval_every = eval_every;
    tc.patience = patience;
    tc.seed = seed;
    tc.progress = progress;
    tc.progress_arg = progress_arg;
    int rc = ns_gnn_train(m, &ctx, train_mask, eval ? eval : &ctx, g->masks[NS_SPLIT_VAL], g->masks[NS_SPLIT_TEST],
                          &tc, r, err);
    ns_gnn_ctx_free(&ctx);
    return rc;
}

static int train_teacher(condenser *k, const ns_graph *g, ns_simgc_result *res, ns_err *err) {
    const ns_simgc_config *cfg = k->cfg;
    ns_gnn_config tc;
    ns_gnn_config_default(&tc, cfg->teacher_mlp ? NS_GNN_MLP : NS_GNN_SGC);
    tc.hidden = cfg->teacher_hidden;
    tc.hops = 0; // the features it reads are already propagated
    tc.dropout = 0;
    tc.relu = 1;
    if (ns_gnn_create(&k->teacher, &tc, k->D, k->C, err) < 0) return -1;
    ns_gnn_init(&k->teacher, cfg->seed);
    ns_graph sg = *g; // the original graph with S = Â^K X as its features (borrowed)
    sg.features = k->hs[k->K];
    sg.sparse_features = 0;
    ns_gnn_result r;
    int rc = train_gnn(&k->teacher, &sg, g->masks[NS_SPLIT_TRAIN], NULL, g, cfg->teacher_epochs, cfg->teacher_lr,
                       cfg->teacher_eval_every, cfg->teacher_patience, cfg->seed, cfg->teacher_progress, cfg->progress_arg, &r, err);
    if (rc < 0) return ns_err_prefix(err, "teacher");
    res->teacher_val = r.val_acc, res->teacher_test = r.test_acc, res->teacher_epochs = r.epochs;
    return 0;
}

static int condenser_alloc(condenser *k, ns_err *err) {
    int64_t n = k->n, D = k->D, nD = n * D, nn = n * n;
    size_t f = sizeof(float);
    k->x = ns_aligned_alloc((size_t)nD * f), k->dx = ns_aligned_alloc((size_t)nD * f);
    k->best_x = ns_aligned_alloc((size_t)nD * f), k->best_a = ns_aligned_alloc((size_t)nn * f);
    k->a0 = ns_aligned_alloc((size_t)nn * f), k->a = ns_aligned_alloc((size_t)nn * f);
    k->ahat = ns_aligned_alloc((size_t)nn * f), k->da = ns_aligned_alloc((size_t)nn * f);
    k->dahat = ns_aligned_alloc((size_t)nn * f), k->s = ns_aligned_alloc((size_t)n * f);
    k->dlogits = ns_aligned_alloc((size_t)(n * k->C) * f);
    int ok = k->x && k->dx && k->best_x && k->best_a && k->a0 && k->a && k->ahat && k->da && k->dahat && k->s &&
             k->dlogits;
    k->layers[0] = k->x, k->dlayers[0] = k->dx;
    for (int l = 1; l <= k->K && ok; l++) {
        k->layers[l] = ns_aligned_alloc((size_t)nD * f);
        k->dlayers[l] = ns_aligned_alloc((size_t)nD * f);
        ok = k->layers[l] && k->dlayers[l];
    }
    if (!ok) return ns_errf(err, "out of memory (%lld condensed nodes x %lld features)", (long long)n, (long long)D);
    return 0;
}

// a0 = the generator's adjacency for the current X', a = a0 with the entries
// below tau set to 0
static void generate_adjacency(condenser *k) {
    int64_t nn = k->n * k->n;
    float tau = (float)k->cfg->tau;
    ns_pge_forward(&k->pge, k->x, k->a0);
    for (int64_t i = 0; i < nn; i++) k->a[i] = k->a0[i] >= tau ? k->a0[i] : 0.0f;
}

// The current (X', A') becomes the result.
static void keep_snapshot(condenser *k) {
    memcpy(k->best_x, k->x, (size_t)(k->n * k->D) * sizeof(float));
    memcpy(k->best_a, k->a, (size_t)(k->n * k->n) * sizeof(float));
}

// X' rows as real training nodes of their class (the condensed labels' block
// layout): each class's training nodes shuffled, taken in turn, cycling when
// the class has fewer nodes than condensed ones.
static int init_from_real(condenser *k, const ns_graph *g, ns_rng *rng, ns_err *err) {
    int64_t *rows = malloc((size_t)k->N * sizeof *rows);
    if (!rows) return ns_errf(err, "out of memory");
    for (int64_t pos = 0; pos < k->n;) {
        int32_t c = k->labels[pos];
        int64_t m = class_train_rows(g, c, rows);
        ns_rng_shuffle(rng, rows, m);
        for (int64_t t = 0; pos < k->n && k->labels[pos] == c; t++, pos++)
            for (int64_t f = 0; f < k->D; f++) // a class without training nodes keeps N(0, 1)
                k->x[pos * k->D + f] = m ? k->hs[0][rows[t % m] * k->D + f] : (float)ns_rng_normal(rng);
    }
    free(rows);
    return 0;
}

// One forward and backward of L; returns L (NaN when not finite).
static double step_loss(condenser *k) {
    const ns_simgc_config *cfg = k->cfg;
    int64_t n = k->n, D = k->D, nD = n * D, nn = n * n;
    int K = k->K;
    generate_adjacency(k);
    memset(k->dx, 0, (size_t)nD * sizeof(float));
    memset(k->da, 0, (size_t)nn * sizeof(float));
    for (int l = 1; l <= K; l++) memset(k->dlayers[l], 0, (size_t)nD * sizeof(float));
    double smt = cfg->gamma != 0 ? ns_simgc_smooth_loss(k->a, k->x, n, D, k->da, k->dx, cfg->gamma) : 0;
    ns_simgc_normalize(k->ahat, k->s, k->a, n);
    for (int l = 1; l <= K; l++)
        ns_sgemm(0, 0, n, D, n, 1.0f, k->ahat, n, k->layers[l - 1], D, 0.0f, k->layers[l], D);
    double rep = cfg->alpha != 0 ? ns_simgc_rep_loss(&k->targets, (const float *const *)k->layers, K + 1, D,
                                                     k->dlayers, cfg->alpha)
                                 : 0;
    memcpy(k->tctx.x, k->layers[K], (size_t)nD * sizeof(float));
    const float *logits = ns_gnn_forward(&k->teacher, &k->tctx, 0, 0);
    double lgt = ns_softmax_ce_forward(NULL, logits, k->labels, NULL, 0, n, k->C);
    memset(k->dlogits, 0, (size_t)(n * k->C) * sizeof(float));
    ns_softmax_ce_backward(k->dlogits, 1.0f, logits, k->labels, NULL, 0, n, k->C);
    ns_gnn_zero_grad(&k->teacher);
    ns_gnn_backward(&k->teacher, &k->tctx, k->dlogits, k->dlayers[K]);
    // back through the hops: layers[l] = ahat layers[l-1], ahat symmetric
    memset(k->dahat, 0, (size_t)nn * sizeof(float));
    for (int l = K; l >= 1; l--) {
        ns_sgemm(0, 1, n, n, D, 1.0f, k->dlayers[l], D, k->layers[l - 1], D, 1.0f, k->dahat, n);
        ns_sgemm(0, 0, n, D, n, 1.0f, k->ahat, n, k->dlayers[l], D, 1.0f, k->dlayers[l - 1], D);
    }
    ns_simgc_normalize_backward(k->da, k->dahat, k->a, k->s, n);
    for (int64_t i = 0; i < nn; i++) // entries the threshold removed pass no gradient
        if (!(k->a0[i] >= (float)cfg->tau)) k->da[i] = 0;
    memset(k->pge.grad, 0, (size_t)k->pge.numel * sizeof(float));
    ns_pge_backward(&k->pge, k->x, k->a0, k->da, k->dx);
    double loss = lgt + cfg->alpha * rep + cfg->gamma * smt;
    return isfinite(loss) ? loss : NAN;
}

// Trains a fresh GCN on (x, a, Y') and scores it on the original graph.
static int validate(condenser *k, const ns_graph *g, ns_gnn_ctx *ectx, ns_gnn *vm, int it, double *val,
                    double *test, ns_err *err) {
    const ns_simgc_config *cfg = k->cfg;
    ns_graph cg;
    if (condensed_graph(&cg, k->x, k->a, k->labels, k->n, k->D, g, err) < 0) return -1;
    ns_gnn_init(vm, cfg->seed * 1000003u + (uint64_t)it);
    ns_gnn_result r;
    int rc = train_gnn(vm, &cg, NULL, ectx, g, cfg->val_epochs, cfg->val_lr,
                       100 < cfg->val_epochs ? 100 : cfg->val_epochs, cfg->val_patience, cfg->seed, NULL, NULL, &r, err);
    ns_graph_free(&cg);
    if (rc < 0) return ns_err_prefix(err, "validation at iteration %d", it);
    *val = r.val_acc, *test = r.test_acc;
    return 0;
}

static int check_input(const ns_graph *g, const ns_simgc_config *cfg, int64_t *train, ns_err *err) {
    if (!g->labels || g->classes < 1) return ns_errf(err, "the graph has no labels");
    if (g->feature_dim < 1) return ns_errf(err, "the graph has no node features");
    if (!g->masks[NS_SPLIT_TRAIN]) return ns_errf(err, "the graph has no training split (graph.train)");
    if (!g->masks[NS_SPLIT_VAL] || ns_graph_split_size(g, NS_SPLIT_VAL) == 0)
        return ns_errf(err, "the graph has no validation nodes (graph.val): the teacher and the condensed "
                            "graph are selected on them");
    if (!(cfg->ratio > 0) || cfg->hops < 0 || cfg->hops > MAX_HOPS || cfg->cycle < 1 || cfg->adj_steps < 0 ||
        cfg->iterations < 0 || !(cfg->tau >= 0 && cfg->tau < 1))
        return ns_errf(err, "bad condensation settings (ratio %g, hops %d, tau %g)", cfg->ratio, cfg->hops,
                       cfg->tau);
    memset(train, 0, (size_t)g->classes * sizeof *train);
    int64_t total = 0;
    for (int64_t i = 0; i < g->nodes; i++)
        if (g->masks[NS_SPLIT_TRAIN][i] && g->labels[i] >= 0) train[g->labels[i]]++, total++;
    if (total == 0) return ns_errf(err, "the training split has no labelled node");
    return 0;
}

void ns_simgc_free(ns_simgc *k) {
    if (!k) return;
    for (int l = 1; l <= k->K; l++) free(k->hs[l]), free(k->layers[l]), free(k->dlayers[l]);
    if (k->own_h0) free(k->hs[0]);
    targets_free(&k->targets);
    free(k->labels);
    ns_gnn_ctx_free(&k->tctx);
    ns_gnn_free(&k->teacher);
    ns_gnn_ctx_free(&k->ectx);
    ns_gnn_free(&k->vm);
    ns_pge_free(&k->pge);
    free(k->x), free(k->dx), free(k->a0), free(k->a), free(k->ahat), free(k->s), free(k->da), free(k->dahat);
    free(k->dlogits), free(k->best_x), free(k->best_a), free(k->count), free(k->order);
    ns_optim_free(k->opt_x);
    ns_optim_free(k->opt_pge);
    free(k);
}

ns_simgc *ns_simgc_create(const ns_graph *g, const ns_simgc_config *cfg, ns_simgc_result *res, ns_err *err) {
    memset(res, 0, sizeof *res);
    res->best_val = res->best_test = NAN;
    res->best_iter = -1;
    ns_simgc *k = calloc(1, sizeof *k);
    if (!k) {
        ns_errf(err, "out of memory");
        return NULL;
    }
    k->cfg = cfg;
    k->N = g->nodes, k->D = g->feature_dim, k->C = g->classes, k->K = cfg->hops;
    int64_t *train = calloc((size_t)(k->C > 0 ? k->C : 1), sizeof *train);
    k->count = calloc((size_t)(k->C > 0 ? k->C : 1), sizeof *k->count);
    k->order = calloc((size_t)(k->C > 0 ? k->C : 1), sizeof *k->order);
    ns_graph cg = {0};
    if (!train || !k->count || !k->order) {
        ns_errf(err, "out of memory");
        goto fail;
    }
    if (check_input(g, cfg, train, err) < 0) goto fail;
    ns_threads();
    double t0 = ns_now();
    if (propagate_original(k, g, err) < 0 || train_teacher(k, g, res, err) < 0) goto fail;
    res->teacher_seconds = ns_now() - t0;

    // condensed labels, statistics, parameters
    k->n = ns_simgc_class_sizes(train, k->C, cfg->ratio, k->count, k->order);
    if (!(k->labels = malloc((size_t)k->n * sizeof *k->labels))) {
        ns_errf(err, "out of memory");
        goto fail;
    }
    for (int64_t c = 0, pos = 0; c < k->C; c++)
        for (int64_t m = 0; m < k->count[k->order[c]]; m++) k->labels[pos++] = (int32_t)k->order[c];
    if (targets_build(&k->targets, g, (const float *const *)k->hs, k->K + 1, k->count, k->order, err) < 0 ||
        class_mean_accuracy(&k->targets, k->labels, g, k->hs[k->K], k->K, &res->class_mean_val,
                            &res->class_mean_test, err) < 0)
        goto fail;
    if (condenser_alloc(k, err) < 0 || ns_pge_create(&k->pge, k->n, k->D, cfg->pge_hidden, err) < 0) goto fail;
    ns_rng rng;
    ns_rng_seed(&rng, cfg->seed ^ 0x5349d6c1u);
    if (cfg->init_real) {
        if (init_from_real(k, g, &rng, err) < 0) goto fail;
    } else {
        for (int64_t i = 0; i < k->n * k->D; i++) k->x[i] = (float)ns_rng_normal(&rng);
    }
    ns_pge_init(&k->pge, cfg->seed + 7);
    if (condensed_graph(&cg, k->x, NULL, k->labels, k->n, k->D, g, err) < 0) goto fail;
    ns_gnn_ctx_config tcc = {NS_GNN_X_DENSE, 0, 1, 1};
    if (ns_gnn_ctx_init(&k->tctx, &k->teacher, &cg, &tcc, err) < 0) goto fail;
    ns_graph_free(&cg);
    ns_optim_config oc;
    ns_optim_config_default(&oc, NS_OPTIM_ADAM);
    ns_param px = {"feat_syn", k->x, k->dx, k->n * k->D, 0, NULL, 1};
    ns_param pp = {"pge", k->pge.value, k->pge.grad, k->pge.numel, 0, NULL, 1};
    if (!(k->opt_x = ns_optim_create(&oc, &px, 1, err)) || !(k->opt_pge = ns_optim_create(&oc, &pp, 1, err)))
        goto fail;
    if (cfg->val_every > 0) {
        ns_gnn_config vc;
        ns_gnn_config_default(&vc, NS_GNN_GCN);
        vc.hidden = cfg->val_hidden;
        vc.dropout = 0;
        vc.relu = cfg->val_relu;
        ns_gnn_ctx_config ec = {NS_GNN_X_AUTO, 0, 0, 0};
        if (ns_gnn_create(&k->vm, &vc, k->D, k->C, err) < 0 || ns_gnn_ctx_init(&k->ectx, &k->vm, g, &ec, err) < 0)
            goto fail;
    }
    free(train);
    return k;
fail:
    free(train);
    ns_graph_free(&cg);
    ns_simgc_free(k);
    return NULL;
}

int64_t ns_simgc_nodes(const ns_simgc *k) { return k->n; }
float *ns_simgc_features(ns_simgc *k) { return k->x; }
const float *ns_simgc_features_grad(const ns_simgc *k) { return k->dx; }
ns_pge *ns_simgc_generator(ns_simgc *k) { return &k->pge; }
const int32_t *ns_simgc_labels(const ns_simgc *k) { return k->labels; }
double ns_simgc_loss(ns_simgc *k) { return step_loss(k); }

int ns_simgc_run(ns_simgc *k, const ns_graph *g, ns_simgc_result *res, ns_err *err) {
    const ns_simgc_config *cfg = k->cfg;
    double t1 = ns_now(), tval = 0, loss = 0;
    for (int it = 0; it <= cfg->iterations; it++) {
        loss = step_loss(k);
        if (isnan(loss))
            return ns_errf(err, "the loss is not finite at iteration %d (try smaller learning rates)", it);
        if (it % cfg->cycle < cfg->adj_steps) ns_optim_step(k->opt_pge, cfg->lr_adj);
        else ns_optim_step(k->opt_x, cfg->lr_feat);
        int report = cfg->val_every > 0 ? it >= cfg->val_every && it % cfg->val_every == 0 : it % 100 == 0;
        if (!report) continue;
        double val = NAN, test = NAN;
        if (cfg->val_every > 0) {
            double tv = ns_now();
            generate_adjacency(k);
            if (validate(k, g, &k->ectx, &k->vm, it, &val, &test, err) < 0) return -1;
            if (!(val <= res->best_val)) { // the first, or better
                res->best_val = val, res->best_test = test, res->best_iter = it;
                keep_snapshot(k);
            }
            tval += ns_now() - tv;
        }
        if (cfg->progress)
            cfg->progress(cfg, it, loss, val, res->best_val, res->best_test, ns_now() - t1, cfg->progress_arg);
    }
    if (res->best_iter < 0) { // no validation: the last state
        generate_adjacency(k);
        keep_snapshot(k);
        res->best_iter = cfg->iterations;
    }
    res->last_loss = loss;
    res->validate_seconds = tval;
    res->condense_seconds = ns_now() - t1 - tval;
    if (condensed_graph(&res->condensed, k->best_x, k->best_a, k->labels, k->n, k->D, g, err) < 0) return -1;
    if (ns_graph_copy_class_names(&res->condensed, g, err) < 0) {
        ns_graph_free(&res->condensed);
        return -1;
    }
    return 0;
}

int ns_simgc_condense(const ns_graph *g, const ns_simgc_config *cfg, ns_simgc_result *res, ns_err *err) {
    ns_simgc *k = ns_simgc_create(g, cfg, res, err);
    if (!k) return -1;
    int rc = ns_simgc_run(k, g, res, err);
    ns_simgc_free(k);
    return rc;
}
