// importance.c: the pruning criteria of prune.h: per-member channel scores
// read from the weight members of each prunable group (l1, l2, bn-scale,
// fpgm, lamp, taylor, obd-hessian, obd-c, random), reduced to one score per
// channel (mean over members) and normalised (mean, or LAMP's).
//
// Shapes: a member's tensor is walked element by element with the channel
// map of ns_prune_channel_map (numel int32, -1 for other groups' elements);
// gradients and Fisher diagonals have the tensor's shape; the data criteria
// run the engine on batches (batch, input numel) of ns_prune_data.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"
#include "nn/ops.h"
#include "prune/prune.h"

const ns_prune_criterion_info ns_prune_criteria[NS_PRUNE_NCRITERIA] = {
    [NS_PRUNE_RANDOM] = {"random", 0, "uniform random scores (a baseline)"},
    [NS_PRUNE_L1] = {"l1", 0, "sum of |w| over the channel's slices"},
    [NS_PRUNE_L2] = {"l2", 0, "sum of w^2 over the channel's slices"},
    [NS_PRUNE_BN_SCALE] = {"bn-scale", 0, "|gamma| of the batch norms (network slimming)"},
    [NS_PRUNE_FPGM] = {"fpgm", 0, "distance to the layer's other filters (geometric median)"},
    [NS_PRUNE_LAMP] = {"lamp", 0, "layer-adaptive magnitude: w^2 over the larger channels' sum"},
    [NS_PRUNE_TAYLOR] = {"taylor", 1, "sum of |w * dL/dw| (first-order Taylor)"},
    [NS_PRUNE_OBD_HESSIAN] = {"obd-hessian", 1, "sum of w^2 * per-sample Fisher diagonal (OBD)"},
    [NS_PRUNE_OBD_C] = {"obd-c", 1, "sum of w^2 * K-FAC Fisher diagonal, sampled labels (EigenDamage)"},
    [NS_PRUNE_HRANK] = {"hrank", 1, "mean rank of the channel's feature maps (HRank)"},
    [NS_PRUNE_THINET] = {"thinet", 1, "greedy least next-layer reconstruction error, then a least-squares refit (ThiNet)"},
    [NS_PRUNE_CP] = {"cp", 1, "LASSO on the next layer's input channels, then least-squares reconstruction (CP)"},
};

int ns_prune_criterion_from_name(const char *name) {
    for (int i = 0; i < NS_PRUNE_NCRITERIA; i++)
        if (strcmp(ns_prune_criteria[i].name, name) == 0) return i;
    return -1;
}

int ns_prune_group_prunable(const ns_chgroup *gr) { return !gr->fixed && !gr->noselect && gr->size > 0; }

int ns_prune_weight_member(const ns_model *m, const ns_chmember *mb) {
    return mb->role != NS_CH_ACT && mb->tensor >= 0 && mb->slot == 0 && m->tensors[mb->tensor].trainable;
}

int32_t *ns_prune_channel_map(const ns_model *m, const ns_chgroup *gr, const ns_chmember *mb, ns_err *err) {
    const ns_tensor *t = &m->tensors[mb->tensor].t;
    int grouped = mb->role == NS_CH_IN && mb->conv_groups > 1;
    int64_t len = grouped ? t->shape[1] * mb->conv_groups : t->shape[mb->axis];
    int32_t *pos = malloc((size_t)len * sizeof *pos), *map = malloc((size_t)(t->numel ? t->numel : 1) * sizeof *map);
    if (!pos || !map) {
        free(pos);
        free(map);
        ns_errf(err, "out of memory (%s)", m->tensors[mb->tensor].name);
        return NULL;
    }
    for (int64_t p = 0; p < len; p++) pos[p] = -1;
    for (int64_t c = 0; c < gr->size; c++)
        for (int64_t r = 0; r < mb->reps; r++)
            for (int64_t s = 0; s < mb->inner; s++) pos[ns_chmember_index(mb, c, r, s)] = (int32_t)c;
    int64_t inner = 1;
    for (int d = mb->axis + 1; d < t->ndim; d++) inner *= t->shape[d];
    int64_t alen = t->shape[mb->axis];
    int64_t rows_per_block = grouped ? t->shape[0] / mb->conv_groups : 1;
    for (int64_t i = 0; i < t->numel; i++) {
        int64_t a = (i / inner) % alen;
        if (grouped) a += (i / (inner * alen)) / rows_per_block * alen; // row's block, then column
        map[i] = pos[a];
    }
    free(pos);
    return map;
}

void ns_prune_scores_free(ns_prune_scores *s) {
    for (int p = 0; s->score && p < s->ngroups; p++) free(s->score[p]);
    free(s->score);
    s->score = NULL;
    s->ngroups = 0;
}

// ---------------------------------------------------------------------------
// per-member scores

// Which members criterion c reads.
static int reads_member(const ns_model *m, const ns_chmember *mb, ns_prune_criterion c) {
    if (!ns_prune_weight_member(m, mb)) return 0;
    ns_op op = m->nodes[mb->node].op;
    if (c == NS_PRUNE_BN_SCALE) return op == NS_OP_BATCHNORM;
    if (c == NS_PRUNE_FPGM || c == NS_PRUNE_OBD_C)
        return (op == NS_OP_CONV2D || op == NS_OP_LINEAR) && mb->role != NS_CH_CHAN;
    return 1;
}

// FPGM: acc[k] += sum_j ||F_k - F_j||_2 over the member's channels.
static int fpgm_member(double *acc, const float *w, const int32_t *map, int64_t numel, int64_t size, ns_err *err) {
    int64_t *count = calloc((size_t)size, sizeof *count);
    if (!count) return ns_errf(err, "out of memory (fpgm)");
    for (int64_t i = 0; i < numel; i++)
        if (map[i] >= 0) count[map[i]]++;
    int64_t per = count[0];
    double *f = calloc((size_t)(size * per > 0 ? size * per : 1), sizeof *f);
    if (!f) {
        free(count);
        return ns_errf(err, "out of memory (fpgm)");
    }
    memset(count, 0, (size_t)size * sizeof *count);
    for (int64_t i = 0; i < numel; i++) // F_k: channel k's elements in flat order
        if (map[i] >= 0) f[map[i] * per + count[map[i]]++] = w[i];
    for (int64_t a = 0; a < size; a++)
        for (int64_t b = a + 1; b < size; b++) {
            double d = 0;
            for (int64_t j = 0; j < per; j++) d += (f[a * per + j] - f[b * per + j]) * (f[a * per + j] - f[b * per + j]);
            d = sqrt(d);
            acc[a] += d;
            acc[b] += d;
        }
    free(f);
    free(count);
    return 0;
}

// The per-element factor a criterion multiplies |w| or w^2 by (NULL: none).
typedef struct elem_stats {
    float **grad;    // per model tensor (taylor: summed gradient), or NULL
    double **fisher; // per model tensor (obd-*: Fisher diagonal), or NULL
} elem_stats;

static double element_score(ns_prune_criterion c, float w, int64_t i, int t, const elem_stats *st) {
    switch (c) {
    case NS_PRUNE_L1: return fabs(w);
    case NS_PRUNE_BN_SCALE: return fabs(w);
    case NS_PRUNE_L2: case NS_PRUNE_LAMP: return (double)w * w;
    case NS_PRUNE_TAYLOR: return fabs((double)w * st->grad[t][i]);
    case NS_PRUNE_OBD_HESSIAN: case NS_PRUNE_OBD_C: return (double)w * w * st->fisher[t][i];
    default: return 0;
    }
}

// Mean over the weight members the criterion reads; 0 when it reads none.
static int score_group(double *score, const ns_model *m, const ns_chgroup *gr, ns_prune_criterion c,
                       const elem_stats *st, ns_err *err) {
    int nread = 0;
    double *acc = calloc((size_t)gr->size, sizeof *acc);
    if (!acc) return ns_errf(err, "out of memory (scores)");
    for (int i = 0; i < gr->nmembers; i++) {
        const ns_chmember *mb = &gr->members[i];
        if (!reads_member(m, mb, c)) continue;
        const ns_tensor *t = &m->tensors[mb->tensor].t;
        int32_t *map = ns_prune_channel_map(m, gr, mb, err);
        if (!map) { free(acc); return -1; }
        const float *w = t->data;
        memset(acc, 0, (size_t)gr->size * sizeof *acc);
        if (c == NS_PRUNE_FPGM) {
            if (fpgm_member(acc, w, map, t->numel, gr->size, err) < 0) { free(map); free(acc); return -1; }
        } else {
            for (int64_t e = 0; e < t->numel; e++)
                if (map[e] >= 0) acc[map[e]] += element_score(c, w[e], e, mb->tensor, st);
        }
        for (int64_t k = 0; k < gr->size; k++) score[k] += acc[k];
        nread++;
        free(map);
    }
    free(acc);
    for (int64_t k = 0; nread && k < gr->size; k++) score[k] /= nread;
    return nread;
}

static void normalise_mean(double *s, int64_t n) {
    double mean = 0;
    for (int64_t k = 0; k < n; k++) mean += s[k];
    mean /= (double)n;
    if (mean > 0)
        for (int64_t k = 0; k < n; k++) s[k] /= mean;
}

static const double *sort_key;
static int by_key(const void *a, const void *b) {
    double x = sort_key[*(const int64_t *)a], y = sort_key[*(const int64_t *)b];
    return x < y ? -1 : x > y ? 1 : (*(const int64_t *)a > *(const int64_t *)b) - (*(const int64_t *)a < *(const int64_t *)b);
}

// LAMP: u sorted ascending, s_i = u_i / sum_{j >= i} u_j (ties: lower index first).
static int normalise_lamp(double *s, int64_t n, ns_err *err) {
    int64_t *order = malloc((size_t)n * sizeof *order);
    double *out = malloc((size_t)n * sizeof *out);
    if (!order || !out) { free(order); free(out); return ns_errf(err, "out of memory (lamp)"); }
    for (int64_t k = 0; k < n; k++) order[k] = k;
    sort_key = s;
    qsort(order, (size_t)n, sizeof *order, by_key);
    double tail = 0;
    for (int64_t i = n - 1; i >= 0; i--) {
        tail += s[order[i]];
        out[order[i]] = tail > 0 ? s[order[i]] / tail : 0;
    }
    memcpy(s, out, (size_t)n * sizeof *s);
    free(order);
    free(out);
    return 0;
}

// ---------------------------------------------------------------------------
// data statistics

static int engine_for(ns_engine *e, ns_model *m, int64_t batch, ns_err *err) {
    if (ns_engine_init(e, m, batch, 1, err) < 0) return -1;
    return 0;
}

// Taylor: the gradient of the mean loss of each batch, summed over batches.
static int taylor_grads(float **grad, ns_model *m, const ns_prune_data *d, ns_err *err) {
    ns_engine e;
    if (engine_for(&e, m, d->batch, err) < 0) return -1;
    int64_t k = ns_engine_output_numel(&e), in = m->nodes[0].numel;
    float *dl = malloc((size_t)(d->batch * k) * sizeof *dl);
    int rc = dl ? 0 : ns_errf(err, "out of memory");
    ns_engine_zero_grad(&e);
    for (int64_t s = 0; rc == 0 && s < d->n; s += d->batch) {
        int64_t n = d->n - s < d->batch ? d->n - s : d->batch;
        const float *out = ns_engine_forward(&e, d->x + s * in, n, 0, err);
        if (!out) { rc = -1; break; }
        memset(dl, 0, (size_t)(n * k) * sizeof *dl);
        ns_softmax_ce_backward(dl, 1.0f, out, d->y + s, NULL, 0, n, k);
        ns_engine_backward(&e, dl); // accumulates over batches
    }
    for (int t = 0; rc == 0 && t < m->ntensors; t++)
        if (e.param_grad[t]) memcpy(grad[t], e.param_grad[t], (size_t)m->tensors[t].t.numel * sizeof(float));
    free(dl);
    ns_engine_free(&e);
    return rc;
}

// OBD: E_n[g_n^2] over the samples, one backward per sample.
static int fisher_per_sample(double **fisher, ns_model *m, const ns_prune_data *d, ns_err *err) {
    ns_engine e;
    if (engine_for(&e, m, 1, err) < 0) return -1;
    int64_t k = ns_engine_output_numel(&e), in = m->nodes[0].numel;
    float *dl = malloc((size_t)k * sizeof *dl);
    int rc = dl ? 0 : ns_errf(err, "out of memory");
    for (int64_t s = 0; rc == 0 && s < d->n; s++) {
        const float *out = ns_engine_forward(&e, d->x + s * in, 1, 0, err);
        if (!out) { rc = -1; break; }
        memset(dl, 0, (size_t)k * sizeof *dl);
        ns_softmax_ce_backward(dl, 1.0f, out, d->y + s, NULL, 0, 1, k);
        ns_engine_zero_grad(&e);
        ns_engine_backward(&e, dl);
        for (int t = 0; t < m->ntensors; t++)
            if (e.param_grad[t])
                for (int64_t i = 0; i < m->tensors[t].t.numel; i++)
                    fisher[t][i] += (double)e.param_grad[t][i] * e.param_grad[t][i];
    }
    for (int t = 0; rc == 0 && t < m->ntensors; t++)
        if (fisher[t])
            for (int64_t i = 0; i < m->tensors[t].t.numel; i++) fisher[t][i] /= (double)d->n;
    free(dl);
    ns_engine_free(&e);
    return rc;
}

// K-FAC diagonal of a conv/linear weight: A[i, ky, kx] = mean over samples and
// output positions of the input under that tap, squared; G[o] = mean over
// samples of sum over positions of the output gradient squared; F = A G.
static void kfac_accumulate(double *a_acc, double *g_acc, const ns_model *m, const ns_node *nd, const float *x,
                            const float *gout, int64_t n) {
    const ns_node *in = &m->nodes[nd->inputs[0]];
    if (nd->op == NS_OP_LINEAR) {
        int64_t cin = m->tensors[nd->params[0]].t.shape[1], cout = nd->iattr[0];
        int64_t tok = in->numel / cin;
        for (int64_t s = 0; s < n; s++)
            for (int64_t t = 0; t < tok; t++) {
                for (int64_t i = 0; i < cin; i++) {
                    double v = x[s * in->numel + t * cin + i];
                    a_acc[i] += v * v / (double)tok;
                }
                for (int64_t o = 0; o < cout; o++) {
                    double v = gout[s * nd->numel + t * cout + o];
                    g_acc[o] += v * v;
                }
            }
        return;
    }
    int64_t cin = in->shape[0], h = in->shape[1], w = in->shape[2];
    int64_t cout = nd->shape[0], oh = nd->shape[1], ow = nd->shape[2];
    int64_t ks = nd->iattr[1], st = nd->iattr[2], pad = nd->iattr[3], dil = nd->iattr[4];
    double inv_p = 1.0 / (double)(oh * ow);
    for (int64_t s = 0; s < n; s++) {
        const float *xs = x + s * in->numel;
        for (int64_t c = 0; c < cin; c++)
            for (int64_t ky = 0; ky < ks; ky++)
                for (int64_t kx = 0; kx < ks; kx++) {
                    double sum = 0;
                    for (int64_t y = 0; y < oh; y++) {
                        int64_t iy = y * st - pad + ky * dil;
                        if (iy < 0 || iy >= h) continue;
                        for (int64_t xo = 0; xo < ow; xo++) {
                            int64_t ix = xo * st - pad + kx * dil;
                            if (ix < 0 || ix >= w) continue;
                            double v = xs[(c * h + iy) * w + ix];
                            sum += v * v;
                        }
                    }
                    a_acc[(c * ks + ky) * ks + kx] += sum * inv_p;
                }
        for (int64_t o = 0; o < cout; o++) {
            double sum = 0;
            for (int64_t p = 0; p < oh * ow; p++) {
                double v = gout[s * nd->numel + o * oh * ow + p];
                sum += v * v;
            }
            g_acc[o] += sum;
        }
    }
}

static int fisher_kfac(double **fisher, ns_model *m, const ns_prune_data *d, uint64_t seed, ns_err *err) {
    ns_engine e;
    if (engine_for(&e, m, d->batch, err) < 0) return -1;
    int64_t k = ns_engine_output_numel(&e), in = m->nodes[0].numel;
    double **a_acc = calloc((size_t)m->nnodes, sizeof *a_acc), **g_acc = calloc((size_t)m->nnodes, sizeof *g_acc);
    float *dl = malloc((size_t)(d->batch * k) * sizeof *dl);
    int32_t *ys = malloc((size_t)d->batch * sizeof *ys);
    int rc = a_acc && g_acc && dl && ys ? 0 : ns_errf(err, "out of memory");
    for (int i = 0; rc == 0 && i < m->nnodes; i++) {
        const ns_node *nd = &m->nodes[i];
        if ((nd->op != NS_OP_CONV2D && nd->op != NS_OP_LINEAR) || nd->params[0] < 0 || !fisher[nd->params[0]]) continue;
        const ns_tensor *w = &m->tensors[nd->params[0]].t;
        int64_t cin_taps = nd->op == NS_OP_LINEAR ? w->shape[1] : m->nodes[nd->inputs[0]].shape[0] * w->shape[2] * w->shape[3];
        a_acc[i] = calloc((size_t)cin_taps, sizeof **a_acc);
        g_acc[i] = calloc((size_t)w->shape[0], sizeof **g_acc);
        if (!a_acc[i] || !g_acc[i]) rc = ns_errf(err, "out of memory");
    }
    ns_rng rng;
    ns_rng_seed(&rng, seed);
    for (int64_t s = 0; rc == 0 && s < d->n; s += d->batch) {
        int64_t n = d->n - s < d->batch ? d->n - s : d->batch;
        const float *out = ns_engine_forward(&e, d->x + s * in, n, 0, err);
        if (!out) { rc = -1; break; }
        for (int64_t i = 0; i < n; i++) { // a label drawn from the model's softmax
            const float *l = out + i * k;
            double mx = l[0], tot = 0, u;
            for (int64_t j = 1; j < k; j++) mx = l[j] > mx ? l[j] : mx;
            for (int64_t j = 0; j < k; j++) tot += exp(l[j] - mx);
            u = ns_rng_uniform(&rng) * tot;
            int64_t j = 0;
            for (; j < k - 1; j++) if ((u -= exp(l[j] - mx)) < 0) break;
            ys[i] = (int32_t)j;
        }
        memset(dl, 0, (size_t)(n * k) * sizeof *dl);
        ns_softmax_ce_backward(dl, (float)n, out, ys, NULL, 0, n, k); // sum of per-sample losses
        ns_engine_zero_grad(&e);
        ns_engine_backward(&e, dl);
        for (int i = 0; i < m->nnodes; i++)
            if (a_acc[i]) kfac_accumulate(a_acc[i], g_acc[i], m, &m->nodes[i], e.act[m->nodes[i].inputs[0]], e.grad[i], n);
    }
    for (int i = 0; rc == 0 && i < m->nnodes; i++) {
        if (!a_acc[i]) continue;
        const ns_node *nd = &m->nodes[i];
        const ns_tensor *w = &m->tensors[nd->params[0]].t;
        int64_t rows = w->shape[0], cols = w->numel / rows;
        int64_t groups = nd->op == NS_OP_CONV2D ? nd->iattr[5] : 1, ocg = rows / groups;
        for (int64_t o = 0; o < rows; o++)
            for (int64_t c = 0; c < cols; c++) // a grouped conv's row reads its block's inputs
                fisher[nd->params[0]][o * cols + c] =
                    a_acc[i][(o / ocg) * cols + c] / (double)d->n * g_acc[i][o] / (double)d->n;
    }
    for (int i = 0; a_acc && g_acc && i < m->nnodes; i++) { free(a_acc[i]); free(g_acc[i]); }
    free(a_acc);
    free(g_acc);
    free(dl);
    free(ys);
    ns_engine_free(&e);
    return rc;
}

// HRank. The rank of an r x c matrix (destroyed): Gaussian elimination with
// complete pivoting; a pivot at or below tol * the largest |entry| ends it.
static int matrix_rank(double *a, int64_t r, int64_t c) {
    double first = 0, tol = (double)(r > c ? r : c) * 1.1920928955078125e-07;
    int64_t rank = 0;
    for (; rank < r && rank < c; rank++) {
        int64_t pi = rank, pj = rank;
        double best = 0;
        for (int64_t i = rank; i < r; i++)
            for (int64_t j = rank; j < c; j++)
                if (fabs(a[i * c + j]) > best) best = fabs(a[i * c + j]), pi = i, pj = j;
        if (rank == 0) first = best;
        if (best <= tol * first || best == 0) break;
        for (int64_t j = 0; j < c; j++) { double t = a[rank * c + j]; a[rank * c + j] = a[pi * c + j]; a[pi * c + j] = t; }
        for (int64_t i = 0; i < r; i++) { double t = a[i * c + rank]; a[i * c + rank] = a[i * c + pj]; a[i * c + pj] = t; }
        for (int64_t i = rank + 1; i < r; i++) {
            double f = a[i * c + rank] / a[rank * c + rank];
            for (int64_t j = rank; j < c; j++) a[i * c + j] -= f * a[rank * c + j];
        }
    }
    return (int)rank;
}

// The activation HRank reads for a group (see prune.h), or NULL.
static const ns_chmember *hrank_member(const ns_model *m, const ns_chgroup *gr) {
    const ns_chmember *best = NULL;
    int best_rank = -1;
    for (int i = 0; i < gr->nmembers; i++) {
        const ns_chmember *mb = &gr->members[i];
        if (mb->role != NS_CH_ACT) continue;
        const ns_node *nd = &m->nodes[mb->node];
        int rank = 2 * (nd->ndim == 3 && mb->axis == 0) + (nd->op == NS_OP_RELU); // first of the best kind
        if (rank > best_rank) best = mb, best_rank = rank;
    }
    return best;
}

static int hrank_scores(ns_prune_scores *s, ns_model *m, const ns_chgroups *g, const ns_prune_data *d, ns_err *err) {
    ns_engine e;
    if (ns_engine_init(&e, m, d->batch, 0, err) < 0) return -1;
    int64_t in = m->nodes[0].numel, maxmap = 1;
    for (int i = 0; i < m->nnodes; i++) maxmap = m->nodes[i].numel > maxmap ? m->nodes[i].numel : maxmap;
    double *mat = malloc((size_t)maxmap * sizeof *mat);
    int rc = mat ? 0 : ns_errf(err, "out of memory");
    for (int64_t s0 = 0; rc == 0 && s0 < d->n; s0 += d->batch) {
        int64_t n = d->n - s0 < d->batch ? d->n - s0 : d->batch;
        if (!ns_engine_forward(&e, d->x + s0 * in, n, 0, err)) { rc = -1; break; }
        for (int p = 0; p < g->ngroups; p++) {
            if (!s->score[p]) continue;
            const ns_chmember *mb = hrank_member(m, &g->groups[p]);
            const ns_node *nd = &m->nodes[mb->node];
            int spatial = nd->ndim == 3 && mb->axis == 0;
            int64_t h = spatial ? nd->shape[1] : 1, w = spatial ? nd->shape[2] : mb->reps * mb->inner;
            for (int64_t i = 0; i < n; i++) {
                const float *a = e.act[mb->node] + i * nd->numel;
                for (int64_t k = 0; k < g->groups[p].size; k++) {
                    if (spatial) {
                        const float *f = a + ns_chmember_index(mb, k, 0, 0) * h * w;
                        for (int64_t j = 0; j < h * w; j++) mat[j] = f[j];
                    } else {
                        for (int64_t r = 0, j = 0; r < mb->reps; r++)
                            for (int64_t t = 0; t < mb->inner; t++) mat[j++] = a[ns_chmember_index(mb, k, r, t)];
                    }
                    s->score[p][k] += matrix_rank(mat, h, w) / (double)d->n;
                }
            }
        }
    }
    free(mat);
    ns_engine_free(&e);
    return rc;
}

// ---------------------------------------------------------------------------

int ns_prune_importance(ns_prune_scores *s, ns_model *m, const ns_chgroups *g, ns_prune_criterion c,
                        const ns_prune_data *data, uint64_t seed, ns_err *err) {
    s->ngroups = g->ngroups;
    s->score = calloc((size_t)(g->ngroups ? g->ngroups : 1), sizeof *s->score);
    if (!s->score) return ns_errf(err, "out of memory (scores)");
    int needs = ns_prune_criteria[c].needs_data;
    if (needs && (!data || data->n < 1)) {
        ns_prune_scores_free(s);
        return ns_errf(err, "criterion %s needs labelled data", ns_prune_criteria[c].name);
    }
    elem_stats st = {0};
    int rc = 0;
    if (c == NS_PRUNE_THINET || c == NS_PRUNE_CP) {
        int rc2 = ns_prune_reconstruction_scores(s, m, g, c, data, seed, err);
        if (rc2 < 0) ns_prune_scores_free(s);
        return rc2;
    }
    if (needs && c != NS_PRUNE_HRANK) {
        int use_grad = c == NS_PRUNE_TAYLOR;
        if (use_grad) st.grad = calloc((size_t)m->ntensors, sizeof *st.grad);
        else st.fisher = calloc((size_t)m->ntensors, sizeof *st.fisher);
        if (!st.grad && !st.fisher) rc = ns_errf(err, "out of memory");
        for (int t = 0; rc == 0 && t < m->ntensors; t++) {
            if (!m->tensors[t].used || !m->tensors[t].trainable) continue;
            size_t n = (size_t)(m->tensors[t].t.numel ? m->tensors[t].t.numel : 1);
            if (use_grad ? !(st.grad[t] = calloc(n, sizeof(float))) : !(st.fisher[t] = calloc(n, sizeof(double))))
                rc = ns_errf(err, "out of memory");
        }
        if (rc == 0) {
            if (c == NS_PRUNE_TAYLOR) rc = taylor_grads(st.grad, m, data, err);
            else if (c == NS_PRUNE_OBD_HESSIAN) rc = fisher_per_sample(st.fisher, m, data, err);
            else rc = fisher_kfac(st.fisher, m, data, seed, err);
        }
    }
    ns_rng rng;
    ns_rng_seed(&rng, seed);
    for (int p = 0; rc == 0 && p < g->ngroups; p++) {
        const ns_chgroup *gr = &g->groups[p];
        if (!ns_prune_group_prunable(gr)) continue;
        double *sc = calloc((size_t)gr->size, sizeof *sc);
        if (!sc) { rc = ns_errf(err, "out of memory (scores)"); break; }
        if (c == NS_PRUNE_RANDOM) {
            for (int64_t k = 0; k < gr->size; k++) sc[k] = ns_rng_uniform(&rng);
        } else if (c == NS_PRUNE_HRANK) {
            if (!hrank_member(m, gr)) { free(sc); continue; } // filled below
        } else {
            int nread = score_group(sc, m, gr, c, &st, err);
            if (nread < 0) { free(sc); rc = -1; break; }
            if (nread == 0) { free(sc); continue; } // nothing the criterion reads: left alone
            if (c == NS_PRUNE_LAMP) rc = normalise_lamp(sc, gr->size, err);
            else normalise_mean(sc, gr->size);
        }
        s->score[p] = sc;
    }
    if (rc == 0 && c == NS_PRUNE_HRANK) {
        rc = hrank_scores(s, m, g, data, err);
        for (int p = 0; rc == 0 && p < g->ngroups; p++)
            if (s->score[p]) normalise_mean(s->score[p], g->groups[p].size);
    }
    for (int t = 0; t < m->ntensors; t++) {
        if (st.grad) free(st.grad[t]);
        if (st.fisher) free(st.fisher[t]);
    }
    free(st.grad);
    free(st.fisher);
    if (rc < 0) ns_prune_scores_free(s);
    return rc;
}
