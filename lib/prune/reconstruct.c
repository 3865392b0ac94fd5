// reconstruct.c: the two criteria of prune.h that judge a channel by how well
// the layers reading it can do without it, and refit those layers afterwards:
// ThiNet (Luo et al., "ThiNet: A Filter Level Pruning Method for Deep Neural
// Network Compression", arXiv 1707.06342) and channel pruning (He et al.,
// "Channel Pruning for Accelerating Very Deep Neural Networks", arXiv
// 1707.06168).
//
// The consumers of a group are its plain conv/linear input members (weight
// columns; grouped convs are not read). At sampled output locations (up to
// NS_PRUNE_LOCATIONS per sample and consumer: conv output positions, linear
// tokens) of the unpruned model in eval mode, channel k's contribution to
// output o is z_k[o] = sum over k's columns j of W[o, j] patch[j] (patch: the
// im2col column, or the linear's input row), and y = sum over all columns.
// Per consumer i, G_i = sum over entries of z z^T (size x size) and E_i =
// sum of y^2; the group's normalised Gram matrix is
//   Gn = (1 / consumers) sum_i G_i / E_i,
// so (1 - b)^T Gn (1 - b) is the relative error of the consumers' outputs
// when channel k's contribution is scaled by b_k (b_k = 0: removed).
//
//   thinet  greedy removal: repeatedly remove the channel whose removal adds
//           the least error, d_k = Gn_kk + 2 sum_{a removed} Gn_ak; a channel's
//           score is the relative error once it is removed (running maximum,
//           so the removal order is the score order; scores in [0, 1])
//   cp      the LASSO of channel pruning, min_b 1/2 (1 - b)^T Gn (1 - b) +
//           lambda |b|_1, by coordinate descent along 80 geometric values of
//           lambda from lambda_max = max_k |(Gn 1)_k| down to 1e-4 lambda_max
//           (warm started); a channel's score is the largest lambda at which
//           its b_k is non-zero, times 1 + 0.01 min(|b_k|, 1) at the smallest
//           lambda (ties), 0 when never non-zero
// Both scores compare across groups as they are (no mean normalisation).
//
// Reconstruction (ns_prune_reconstruct), after the kept channels are chosen
// and before they are selected: for every consumer of a pruned group,
//   thinet  scales the kept channels' columns by r, the least-squares
//           solution of G_KK r = (G_i 1)_K (ThiNet's scaling factors)
//   cp      refits the kept channels' columns by least squares: with A the
//           second moment of the group's patch columns P, W'_K^T =
//           A_KK^-1 A_KP W_P^T for every row (the other groups' columns
//           unchanged); skipped when P has more than 4096 columns
// Both solve with a ridge of 1e-6 of the mean diagonal (Cholesky).
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"
#include "prune/prune.h"

enum { MAX_LS_COLS = 4096 };

// One consumer of a group: a plain conv/linear input member.
typedef struct consumer {
    int node, tensor;
    int64_t rows, cols;     // weight (rows, cols): cols = in * k * k for conv
    int64_t ncols;          // the group's columns (P)
    int64_t *col;           // (ncols) weight column of each, channel-major
    int32_t *chan;          // (ncols) its channel in the group
    double *gram;           // (size, size) G_i
    double energy;          // E_i
    double *moment;         // (ncols, ncols) A (cp reconstruction), or NULL
} consumer;

typedef struct group_stats {
    int nconsumers;
    consumer *c;
} group_stats;

static int is_consumer(const ns_model *m, const ns_chmember *mb) {
    if (mb->role != NS_CH_IN || mb->tensor < 0 || mb->slot != 0 || mb->conv_groups > 1) return 0;
    ns_op op = m->nodes[mb->node].op;
    return op == NS_OP_CONV2D || op == NS_OP_LINEAR;
}

static void stats_free(group_stats *gs, int ngroups) {
    for (int p = 0; gs && p < ngroups; p++) {
        for (int i = 0; i < gs[p].nconsumers; i++) {
            free(gs[p].c[i].col);
            free(gs[p].c[i].chan);
            free(gs[p].c[i].gram);
            free(gs[p].c[i].moment);
        }
        free(gs[p].c);
    }
    free(gs);
}

// The consumers of every wanted group, their columns, zeroed statistics.
static group_stats *stats_alloc(const ns_model *m, const ns_chgroups *g, const int *want, int moments, ns_err *err) {
    group_stats *gs = calloc((size_t)(g->ngroups ? g->ngroups : 1), sizeof *gs);
    if (!gs) { ns_errf(err, "out of memory"); return NULL; }
    for (int p = 0; p < g->ngroups; p++) {
        const ns_chgroup *gr = &g->groups[p];
        if (!want[p]) continue;
        gs[p].c = calloc((size_t)gr->nmembers, sizeof *gs[p].c);
        if (!gs[p].c) goto oom;
        for (int k = 0; k < gr->nmembers; k++) {
            const ns_chmember *mb = &gr->members[k];
            if (!is_consumer(m, mb)) continue;
            const ns_tensor *t = &m->tensors[mb->tensor].t;
            consumer *c = &gs[p].c[gs[p].nconsumers++];
            c->node = mb->node;
            c->tensor = mb->tensor;
            c->rows = t->shape[0];
            c->cols = t->numel / c->rows;
            int32_t *map = ns_prune_channel_map(m, gr, mb, err);
            if (!map) { stats_free(gs, g->ngroups); return NULL; }
            for (int64_t j = 0; j < c->cols; j++) c->ncols += map[j] >= 0; // row 0 names every column
            c->col = malloc((size_t)(c->ncols ? c->ncols : 1) * sizeof *c->col);
            c->chan = malloc((size_t)(c->ncols ? c->ncols : 1) * sizeof *c->chan);
            c->gram = calloc((size_t)(gr->size * gr->size), sizeof *c->gram);
            if (!c->col || !c->chan || !c->gram) { free(map); goto oom; }
            int64_t n = 0;
            for (int64_t ch = 0; ch < gr->size; ch++) // channel-major, columns ascending
                for (int64_t j = 0; j < c->cols; j++)
                    if (map[j] == ch) { c->col[n] = j; c->chan[n++] = (int32_t)ch; }
            free(map);
            if (moments && c->ncols <= MAX_LS_COLS &&
                !(c->moment = calloc((size_t)(c->ncols * c->ncols), sizeof *c->moment)))
                goto oom;
        }
    }
    return gs;
oom:
    stats_free(gs, g->ngroups);
    ns_errf(err, "out of memory (reconstruction statistics)");
    return NULL;
}

// The consumer's full patch (cols) at location loc of one sample's input x.
static void patch_at(const ns_model *m, const ns_node *nd, const float *x, int64_t loc, double *patch) {
    const ns_node *in = &m->nodes[nd->inputs[0]];
    if (nd->op == NS_OP_LINEAR) {
        int64_t cin = m->tensors[nd->params[0]].t.shape[1];
        for (int64_t i = 0; i < cin; i++) patch[i] = x[loc * cin + i];
        return;
    }
    int64_t cin = in->shape[0], h = in->shape[1], w = in->shape[2], ow = nd->shape[2];
    int64_t ks = nd->iattr[1], st = nd->iattr[2], pad = nd->iattr[3], dil = nd->iattr[4];
    int64_t oy = loc / ow, ox = loc % ow;
    for (int64_t c = 0; c < cin; c++)
        for (int64_t ky = 0; ky < ks; ky++)
            for (int64_t kx = 0; kx < ks; kx++) {
                int64_t iy = oy * st - pad + ky * dil, ix = ox * st - pad + kx * dil;
                patch[(c * ks + ky) * ks + kx] = iy >= 0 && iy < h && ix >= 0 && ix < w ? x[(c * h + iy) * w + ix] : 0;
            }
}

static int64_t locations(const ns_model *m, const ns_node *nd) {
    if (nd->op == NS_OP_LINEAR) return m->nodes[nd->inputs[0]].numel / m->tensors[nd->params[0]].t.shape[1];
    return nd->shape[1] * nd->shape[2];
}

// One pass over the data: every consumer's G_i, E_i (and A).
static int gather(group_stats *gs, ns_model *m, const ns_chgroups *g, const ns_prune_data *d, uint64_t seed,
                  ns_err *err) {
    ns_engine e;
    if (ns_engine_init(&e, m, d->batch, 0, err) < 0) return -1;
    int64_t in = m->nodes[0].numel, maxcols = 1, maxsize = 1, maxrows = 1;
    for (int p = 0; p < g->ngroups; p++)
        for (int i = 0; i < gs[p].nconsumers; i++) {
            maxcols = gs[p].c[i].cols > maxcols ? gs[p].c[i].cols : maxcols;
            maxrows = gs[p].c[i].rows > maxrows ? gs[p].c[i].rows : maxrows;
            maxsize = g->groups[p].size > maxsize ? g->groups[p].size : maxsize;
        }
    double *patch = malloc((size_t)maxcols * sizeof *patch), *z = malloc((size_t)(maxsize * maxrows) * sizeof *z);
    double *pp = malloc((size_t)maxcols * sizeof *pp);
    int rc = patch && z && pp ? 0 : ns_errf(err, "out of memory");
    ns_rng rng;
    ns_rng_seed(&rng, seed ^ 0x7468696e6574ULL);
    for (int64_t s0 = 0; rc == 0 && s0 < d->n; s0 += d->batch) {
        int64_t n = d->n - s0 < d->batch ? d->n - s0 : d->batch;
        if (!ns_engine_forward(&e, d->x + s0 * in, n, 0, err)) { rc = -1; break; }
        for (int p = 0; p < g->ngroups; p++) {
            int64_t size = g->groups[p].size;
            for (int i = 0; i < gs[p].nconsumers; i++) {
                consumer *c = &gs[p].c[i];
                const ns_node *nd = &m->nodes[c->node];
                const float *w = m->tensors[c->tensor].t.data;
                int64_t nloc = locations(m, nd), take = nloc < NS_PRUNE_LOCATIONS ? nloc : NS_PRUNE_LOCATIONS;
                for (int64_t s = 0; s < n; s++) {
                    const float *x = e.act[nd->inputs[0]] + s * m->nodes[nd->inputs[0]].numel;
                    for (int64_t l = 0; l < take; l++) {
                        int64_t loc = take == nloc ? l : (int64_t)ns_rng_below(&rng, (uint64_t)nloc);
                        patch_at(m, nd, x, loc, patch);
                        memset(z, 0, (size_t)(size * c->rows) * sizeof *z);
                        for (int64_t o = 0; o < c->rows; o++) {
                            const float *wr = w + o * c->cols;
                            double y = 0;
                            for (int64_t j = 0; j < c->cols; j++) y += wr[j] * patch[j];
                            c->energy += y * y;
                            for (int64_t q = 0; q < c->ncols; q++) z[c->chan[q] * c->rows + o] += wr[c->col[q]] * patch[c->col[q]];
                        }
                        for (int64_t a = 0; a < size; a++)
                            for (int64_t b = a; b < size; b++) {
                                double dot = 0;
                                for (int64_t o = 0; o < c->rows; o++) dot += z[a * c->rows + o] * z[b * c->rows + o];
                                c->gram[a * size + b] += dot;
                            }
                        if (c->moment) {
                            for (int64_t q = 0; q < c->ncols; q++) pp[q] = patch[c->col[q]];
                            for (int64_t a = 0; a < c->ncols; a++) {
                                if (pp[a] == 0) continue;
                                double *row = c->moment + a * c->ncols;
                                for (int64_t b = a; b < c->ncols; b++) row[b] += pp[a] * pp[b];
                            }
                        }
                    }
                }
            }
        }
    }
    for (int p = 0; rc == 0 && p < g->ngroups; p++) // mirror the upper triangles
        for (int i = 0; i < gs[p].nconsumers; i++) {
            consumer *c = &gs[p].c[i];
            int64_t size = g->groups[p].size;
            for (int64_t a = 0; a < size; a++)
                for (int64_t b = 0; b < a; b++) c->gram[a * size + b] = c->gram[b * size + a];
            for (int64_t a = 0; c->moment && a < c->ncols; a++)
                for (int64_t b = 0; b < a; b++) c->moment[a * c->ncols + b] = c->moment[b * c->ncols + a];
        }
    free(patch);
    free(z);
    free(pp);
    ns_engine_free(&e);
    return rc;
}

// Gn of a group (size x size), or 0 when it has no consumer with energy.
static int normalised_gram(const group_stats *gs, int64_t size, double *gn) {
    int used = 0;
    memset(gn, 0, (size_t)(size * size) * sizeof *gn);
    for (int i = 0; i < gs->nconsumers; i++) {
        const consumer *c = &gs->c[i];
        if (!(c->energy > 0)) continue;
        for (int64_t k = 0; k < size * size; k++) gn[k] += c->gram[k] / c->energy;
        used++;
    }
    for (int64_t k = 0; used && k < size * size; k++) gn[k] /= used;
    return used;
}

static void thinet_scores(const double *gn, int64_t n, double *score) {
    char *gone = calloc((size_t)n, 1);
    double *cross = calloc((size_t)n, sizeof *cross); // sum over removed a of Gn_ak
    if (!gone || !cross) { free(gone); free(cross); return; }
    double err = 0, shown = 0;
    for (int64_t step = 0; step < n; step++) {
        int64_t best = -1;
        double best_d = 0;
        for (int64_t k = 0; k < n; k++) {
            if (gone[k]) continue;
            double d = gn[k * n + k] + 2 * cross[k];
            if (best < 0 || d < best_d) best = k, best_d = d;
        }
        gone[best] = 1;
        err += best_d;
        shown = err > shown ? err : shown;
        score[best] = shown + 1e-12 * (double)step; // removal order = score order
        for (int64_t k = 0; k < n; k++) cross[k] += gn[best * n + k];
    }
    free(gone);
    free(cross);
}

static void cp_scores(const double *gn, int64_t n, double *score) {
    double *b = calloc((size_t)n, sizeof *b), *g1 = calloc((size_t)n, sizeof *g1);
    if (!b || !g1) { free(b); free(g1); return; }
    double lmax = 0;
    for (int64_t k = 0; k < n; k++) {
        for (int64_t a = 0; a < n; a++) g1[k] += gn[k * n + a];
        lmax = fabs(g1[k]) > lmax ? fabs(g1[k]) : lmax;
    }
    for (int64_t k = 0; k < n; k++) score[k] = 0;
    enum { NLAMBDA = 80, SWEEPS = 100 };
    for (int t = 0; lmax > 0 && t < NLAMBDA; t++) {
        double lambda = lmax * pow(1e-4, (double)t / (NLAMBDA - 1));
        for (int sweep = 0; sweep < SWEEPS; sweep++) {
            double moved = 0;
            for (int64_t k = 0; k < n; k++) {
                double gkk = gn[k * n + k];
                if (!(gkk > 0)) { b[k] = 0; continue; }
                double r = g1[k];
                for (int64_t a = 0; a < n; a++)
                    if (a != k) r -= gn[k * n + a] * b[a];
                double nb = (r > lambda ? r - lambda : r < -lambda ? r + lambda : 0) / gkk;
                moved = fabs(nb - b[k]) > moved ? fabs(nb - b[k]) : moved;
                b[k] = nb;
            }
            if (moved < 1e-10) break;
        }
        for (int64_t k = 0; k < n; k++)
            if (b[k] != 0 && score[k] == 0) score[k] = lambda;
    }
    for (int64_t k = 0; k < n; k++) score[k] *= 1 + 0.01 * (fabs(b[k]) < 1 ? fabs(b[k]) : 1);
    free(b);
    free(g1);
}

// Scores, or NULL where a group has no consumer (left alone by the criterion).
int ns_prune_reconstruction_scores(ns_prune_scores *s, ns_model *m, const ns_chgroups *g, ns_prune_criterion c,
                                   const ns_prune_data *d, uint64_t seed, ns_err *err) {
    int *want = calloc((size_t)(g->ngroups ? g->ngroups : 1), sizeof *want);
    if (!want) return ns_errf(err, "out of memory");
    for (int p = 0; p < g->ngroups; p++) want[p] = ns_prune_group_prunable(&g->groups[p]);
    group_stats *gs = stats_alloc(m, g, want, 0, err);
    free(want);
    if (!gs) return -1;
    int rc = gather(gs, m, g, d, seed, err);
    for (int p = 0; rc == 0 && p < g->ngroups; p++) {
        int64_t n = g->groups[p].size;
        if (!gs[p].nconsumers) continue;
        double *gn = malloc((size_t)(n * n) * sizeof *gn), *sc = calloc((size_t)n, sizeof *sc);
        if (!gn || !sc) { free(gn); free(sc); rc = ns_errf(err, "out of memory"); break; }
        if (!normalised_gram(&gs[p], n, gn)) { free(gn); free(sc); continue; }
        if (c == NS_PRUNE_THINET) thinet_scores(gn, n, sc);
        else cp_scores(gn, n, sc);
        free(gn);
        s->score[p] = sc;
    }
    stats_free(gs, g->ngroups);
    return rc;
}

// Solves (A + ridge I) X = B for X (n x nrhs, overwrites B); A (n x n) is
// destroyed. Returns -1 when A is not positive definite even with the ridge.
static int spd_solve(double *a, int64_t n, double *b, int64_t nrhs) {
    double diag = 0;
    for (int64_t i = 0; i < n; i++) diag += a[i * n + i];
    double ridge = 1e-6 * (diag > 0 ? diag / (double)n : 1);
    for (int64_t i = 0; i < n; i++) a[i * n + i] += ridge;
    for (int64_t j = 0; j < n; j++) { // Cholesky, lower triangle in place
        double v = a[j * n + j];
        for (int64_t k = 0; k < j; k++) v -= a[j * n + k] * a[j * n + k];
        if (!(v > 0)) return -1;
        a[j * n + j] = sqrt(v);
        for (int64_t i = j + 1; i < n; i++) {
            double u = a[i * n + j];
            for (int64_t k = 0; k < j; k++) u -= a[i * n + k] * a[j * n + k];
            a[i * n + j] = u / a[j * n + j];
        }
    }
    for (int64_t r = 0; r < nrhs; r++) {
        for (int64_t i = 0; i < n; i++) { // L y = b
            double u = b[i * nrhs + r];
            for (int64_t k = 0; k < i; k++) u -= a[i * n + k] * b[k * nrhs + r];
            b[i * nrhs + r] = u / a[i * n + i];
        }
        for (int64_t i = n - 1; i >= 0; i--) { // L^T x = y
            double u = b[i * nrhs + r];
            for (int64_t k = i + 1; k < n; k++) u -= a[k * n + i] * b[k * nrhs + r];
            b[i * nrhs + r] = u / a[i * n + i];
        }
    }
    return 0;
}

// ThiNet: scale kept channel k's columns by r_k.
static int refit_scales(ns_model *m, const consumer *c, int64_t size, const int64_t *keep, int64_t nkeep) {
    double *a = malloc((size_t)(nkeep * nkeep) * sizeof *a), *r = malloc((size_t)nkeep * sizeof *r);
    int rc = a && r ? 0 : -1;
    for (int64_t i = 0; rc == 0 && i < nkeep; i++) {
        r[i] = 0;
        for (int64_t k = 0; k < size; k++) r[i] += c->gram[keep[i] * size + k];
        for (int64_t j = 0; j < nkeep; j++) a[i * nkeep + j] = c->gram[keep[i] * size + keep[j]];
    }
    if (rc == 0 && spd_solve(a, nkeep, r, 1) == 0) {
        float *w = m->tensors[c->tensor].t.data;
        for (int64_t q = 0; q < c->ncols; q++) {
            int64_t i = 0;
            while (i < nkeep && keep[i] != c->chan[q]) i++;
            if (i == nkeep) continue;
            for (int64_t o = 0; o < c->rows; o++) w[o * c->cols + c->col[q]] *= (float)r[i];
        }
    }
    free(a);
    free(r);
    return rc;
}

// CP: least-squares refit of the kept channels' columns.
static int refit_columns(ns_model *m, const consumer *c, const int64_t *keep, int64_t nkeep) {
    int64_t *kq = malloc((size_t)c->ncols * sizeof *kq), nk = 0;
    if (!kq) return -1;
    for (int64_t q = 0, i = 0; q < c->ncols; q++) { // kept columns (both lists ascending by channel)
        while (i < nkeep && keep[i] < c->chan[q]) i++;
        if (i < nkeep && keep[i] == c->chan[q]) kq[nk++] = q;
    }
    double *a = malloc((size_t)(nk * nk) * sizeof *a), *b = malloc((size_t)(nk * c->rows) * sizeof *b);
    int rc = a && b ? 0 : -1;
    float *w = m->tensors[c->tensor].t.data;
    for (int64_t i = 0; rc == 0 && i < nk; i++) {
        for (int64_t j = 0; j < nk; j++) a[i * nk + j] = c->moment[kq[i] * c->ncols + kq[j]];
        for (int64_t o = 0; o < c->rows; o++) { // (A_KP W_P^T)[i, o]
            double v = 0;
            for (int64_t q = 0; q < c->ncols; q++) v += c->moment[kq[i] * c->ncols + q] * w[o * c->cols + c->col[q]];
            b[i * c->rows + o] = v;
        }
    }
    if (rc == 0 && nk > 0 && spd_solve(a, nk, b, c->rows) == 0)
        for (int64_t i = 0; i < nk; i++)
            for (int64_t o = 0; o < c->rows; o++) w[o * c->cols + c->col[kq[i]]] = (float)b[i * c->rows + o];
    free(kq);
    free(a);
    free(b);
    return rc;
}

int ns_prune_reconstruct(ns_model *m, const ns_chgroups *g, ns_prune_criterion c, const ns_prune_data *d,
                         const int64_t *const *keep, const int64_t *nkeep, uint64_t seed, ns_err *err) {
    if (c != NS_PRUNE_THINET && c != NS_PRUNE_CP) return 0;
    int *want = calloc((size_t)(g->ngroups ? g->ngroups : 1), sizeof *want), any = 0;
    if (!want) return ns_errf(err, "out of memory");
    for (int p = 0; p < g->ngroups; p++) any |= want[p] = keep[p] && nkeep[p] < g->groups[p].size;
    group_stats *gs = any ? stats_alloc(m, g, want, c == NS_PRUNE_CP, err) : NULL;
    free(want);
    if (!any) return 0;
    if (!gs) return -1;
    int rc = gather(gs, m, g, d, seed, err);
    for (int p = 0; rc == 0 && p < g->ngroups; p++)
        for (int i = 0; rc == 0 && i < gs[p].nconsumers; i++) {
            const consumer *cs = &gs[p].c[i];
            if (c == NS_PRUNE_THINET) rc = refit_scales(m, cs, g->groups[p].size, keep[p], nkeep[p]);
            else if (cs->moment) rc = refit_columns(m, cs, keep[p], nkeep[p]);
            if (rc < 0) ns_errf(err, "out of memory (reconstruction)");
        }
    stats_free(gs, g->ngroups);
    return rc;
}
