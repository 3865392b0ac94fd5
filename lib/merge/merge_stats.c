// merge_stats.c: the data passes of a merge (merge.h): the joint correlation
// of N models' features on the same inputs (C_act), and the batch-norm reset.
//
// Shapes: a group's features are X (O, S), O = N * Om rows (model i's channel
// u is row i*Om + u), S observations: every sample, spatial position (H*W) and
// token of the group's act node. Statistics are the count, the mean (O) and
// the centred co-moment (O, O), all double.
#include "merge/merge.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn/batches.h"
#include "base/blas.h"
#include "base/report.h"
#include "nn/engine.h"

int ns_merge_gram(const float *x, int64_t n, int64_t k, double *out, ns_err *err) {
    float *block = ns_aligned_alloc((size_t)(n * n) * sizeof *block);
    if (!block) return ns_errf(err, "out of memory for a %lld x %lld product", (long long)n, (long long)n);
    for (int64_t k0 = 0; k0 < k; k0 += NS_SGEMM_SERIAL_KBLOCK) {
        int64_t kb = k - k0 < NS_SGEMM_SERIAL_KBLOCK ? k - k0 : NS_SGEMM_SERIAL_KBLOCK;
        if (ns_sgemm_serial(0, 1, n, n, kb, 1.0f, x + k0, k, x + k0, k, 0.0f, block, n, err) < 0) {
            free(block);
            return -1;
        }
        for (int64_t i = 0; i < n * n; i++) out[i] += block[i];
    }
    free(block);
    return 0;
}

int ns_corr_acc_init(ns_corr_acc *a, int64_t dim, ns_err *err) {
    memset(a, 0, sizeof *a);
    a->dim = dim;
    a->mean = calloc((size_t)dim, sizeof *a->mean);
    a->cmean = calloc((size_t)dim, sizeof *a->cmean);
    a->m2 = calloc((size_t)(dim * dim), sizeof *a->m2);
    a->gram = calloc((size_t)(dim * dim), sizeof *a->gram);
    if (!a->mean || !a->cmean || !a->m2 || !a->gram) {
        ns_corr_acc_free(a);
        return ns_errf(err, "out of memory for a %lld x %lld correlation", (long long)dim, (long long)dim);
    }
    return 0;
}

void ns_corr_acc_free(ns_corr_acc *a) {
    free(a->mean);
    free(a->cmean);
    free(a->m2);
    free(a->gram);
    memset(a, 0, sizeof *a);
}

int ns_corr_acc_add(ns_corr_acc *a, float *x, int64_t nobs, ns_err *err) {
    if (nobs <= 0) return 0;
    int64_t d = a->dim;
    for (int64_t i = 0; i < d; i++) {
        float *row = x + i * nobs;
        double s = 0;
        for (int64_t k = 0; k < nobs; k++) s += row[k];
        double m = s / (double)nobs;
        a->cmean[i] = m;
        float mf = (float)m;
        for (int64_t k = 0; k < nobs; k++) row[k] -= mf;
    }
    memset(a->gram, 0, (size_t)(d * d) * sizeof *a->gram);
    if (ns_merge_gram(x, d, nobs, a->gram, err) < 0) return -1;
    double na = a->n, nb = (double)nobs, n = na + nb, w = na * nb / n;
    for (int64_t i = 0; i < d; i++) {
        double di = a->cmean[i] - a->mean[i];
        for (int64_t j = 0; j < d; j++) {
            double dj = a->cmean[j] - a->mean[j];
            a->m2[i * d + j] += a->gram[i * d + j] + di * dj * w;
        }
    }
    for (int64_t i = 0; i < d; i++) a->mean[i] += (a->cmean[i] - a->mean[i]) * nb / n;
    a->n = n;
    return 0;
}

int64_t ns_corr_acc_finish(const ns_corr_acc *a, float *corr, unsigned char *dead_mark) {
    int64_t d = a->dim, dead = 0;
    double *sd = a->cmean; // reused: standard deviations (0 for dead units)
    for (int64_t i = 0; i < d; i++) {
        double var = a->n > 0 ? a->m2[i * d + i] / a->n : 0;
        double m = a->mean[i];
        int is_dead = !(var > 0) || var <= 1e-12 * m * m;
        sd[i] = is_dead ? 0 : sqrt(var);
        dead += is_dead;
        if (dead_mark) dead_mark[i] = (unsigned char)is_dead;
    }
    for (int64_t i = 0; i < d; i++)
        for (int64_t j = 0; j < d; j++) {
            float v;
            if (i == j) v = 1.0f;
            else if (sd[i] == 0 && sd[j] == 0) // two dead units: alike when equal constants
                v = fabs(a->mean[i] - a->mean[j]) <= 1e-6 * (1 + fmax(fabs(a->mean[i]), fabs(a->mean[j])));
            else if (sd[i] == 0 || sd[j] == 0) v = 0.0f;
            else {
                double c = a->m2[i * d + j] / a->n / fmax(sd[i] * sd[j], NS_MERGE_CORR_EPS);
                v = isfinite(c) ? (float)c : 0.0f;
            }
            corr[i * d + j] = v;
        }
    return dead;
}

// The act member of group p: where its channels sit in its act node's output.
static const ns_chmember *act_member(const ns_chgroup *gr) {
    for (int k = 0; k < gr->nmembers; k++)
        if (gr->members[k].role == NS_CH_ACT && gr->members[k].node == gr->act_node) return &gr->members[k];
    return NULL;
}

// A view of the model without class names: the data passes read any classes.
static ns_model unlabelled(const ns_model *m) {
    ns_model v = *m;
    v.labels = NULL;
    v.nlabels = 0;
    return v;
}

#define CHUNK_FLOATS (4 << 20) // observations gathered at once, times O

// Features of a group that is no node's output (chgroups.h: act_proj, an
// attention's q/k or v): channel c of model i, for samples [s0, s1), every
// rep r (q and k) and token t of the act node's T x D output x:
// x[s, t, :] . W[row] + bias[row], row = the member's index of (c, r).
static void gather_projected(float *x, const ns_model *mi, const ns_chmember *mb, const float *act,
                             int64_t T, int64_t D, int64_t om, int64_t s0, int64_t s1, int64_t nobs, int i) {
    const float *W = mi->tensors[mb->tensor].t.data;
    int bt = mi->nodes[mb->node].params[1];
    const float *bias = bt >= 0 ? mi->tensors[bt].t.data : NULL;
    for (int64_t c = 0; c < om; c++) {
        float *row = x + (i * om + c) * nobs;
        for (int64_t s = s0; s < s1; s++)
            for (int64_t r = 0; r < mb->reps; r++) {
                int64_t k = ns_chmember_index(mb, c, r, 0);
                const float *w = W + k * D;
                for (int64_t t = 0; t < T; t++) {
                    const float *v = act + (s * T + t) * D;
                    double acc = bias ? bias[k] : 0;
                    for (int64_t d = 0; d < D; d++) acc += (double)v[d] * w[d];
                    *row++ = (float)acc;
                }
            }
    }
}

int ns_merge_act_corr(ns_model *const *models, int n, const ns_chgroups *g, const char *path,
                      int64_t max_samples, int64_t batch, const ns_reporter *report, float **corr,
                      unsigned char **dead_units, int64_t *dead, int64_t *seen, ns_err *err) {
    int ng = g->ngroups, rc = -1;
    ns_engine eng[NS_MERGE_MAX_MODELS];
    int neng = 0;
    ns_corr_acc *acc = calloc(ng > 0 ? (size_t)ng : 1, sizeof *acc);
    const ns_chmember **amb = calloc(ng > 0 ? (size_t)ng : 1, sizeof *amb);
    float *x = NULL;
    ns_batches b;
    memset(&b, 0, sizeof b);
    ns_model view = unlabelled(models[0]);
    if (!acc || !amb) {
        ns_errf(err, "out of memory");
        goto done;
    }
    for (int p = 0; p < ng; p++) {
        corr[p] = NULL;
        if (dead_units) dead_units[p] = NULL;
        dead[p] = -1;
        const ns_chgroup *gr = &g->groups[p];
        if (gr->fixed || gr->act_node < 0) continue;
        amb[p] = gr->act_proj >= 0 ? &gr->members[gr->act_proj] : act_member(gr);
        if (!amb[p]) continue;
        if (ns_corr_acc_init(&acc[p], n * gr->size, err) < 0) goto done;
    }
    for (; neng < n; neng++) {
        if (ns_engine_init(&eng[neng], models[neng], batch, 0, err) < 0) goto done;
        ns_engine_set_fused(&eng[neng], 1);
        for (int p = 0; p < ng; p++)
            if (amb[p]) ns_engine_keep(&eng[neng], g->groups[p].act_node);
    }
    if (!(x = ns_aligned_alloc((size_t)CHUNK_FLOATS * sizeof *x))) {
        ns_errf(err, "out of memory");
        goto done;
    }
    if (ns_batches_open(&b, path, &view, batch, err) < 0) goto done;
    ns_report_begin(report, "images (statistics)", max_samples);
    int got;
    int64_t total = 0;
    while ((got = ns_batches_next(&b, err)) == 1) {
        int64_t bn = b.n;
        if (max_samples > 0 && total + bn > max_samples) bn = max_samples - total;
        for (int i = 0; i < n; i++)
            if (!ns_engine_forward(&eng[i], b.x, bn, 0, err)) goto done_prog;
        for (int p = 0; p < ng; p++) {
            if (!amb[p]) continue;
            const ns_chmember *mb = amb[p];
            int64_t om = g->groups[p].size, O = n * om;
            if (g->groups[p].act_proj >= 0) { // tokens T x D through the member's rows
                const ns_node *xn = &models[0]->nodes[g->groups[p].act_node];
                int64_t T = xn->shape[0], D = xn->shape[1], per = mb->reps * T;
                int64_t chunk = CHUNK_FLOATS / (O * per);
                if (chunk < 1) chunk = 1;
                for (int64_t s0 = 0; s0 < bn; s0 += chunk) {
                    int64_t s1 = s0 + chunk < bn ? s0 + chunk : bn, nobs = (s1 - s0) * per;
                    for (int i = 0; i < n; i++)
                        gather_projected(x, models[i], mb, eng[i].act[g->groups[p].act_node], T, D, om, s0, s1,
                                         nobs, i);
                    if (ns_corr_acc_add(&acc[p], x, nobs, err) < 0) goto done_prog;
                }
                continue;
            }
            const ns_node *node = &models[0]->nodes[mb->node];
            int64_t numel = node->numel;
            // the member's positions lie on axis mb->axis of the per-sample
            // shape; every element of the other axes is an observation
            int64_t outer = 1, after = 1, len = node->shape[mb->axis];
            for (int d = 0; d < mb->axis; d++) outer *= node->shape[d];
            for (int d = mb->axis + 1; d < node->ndim; d++) after *= node->shape[d];
            int64_t per = outer * mb->reps * mb->inner * after; // observations per sample
            int64_t chunk = CHUNK_FLOATS / (O * per);
            if (chunk < 1) {
                ns_errf(err, "group %d: %lld features per channel are too many to gather", p, (long long)per);
                goto done_prog;
            }
            for (int64_t s0 = 0; s0 < bn; s0 += chunk) {
                int64_t s1 = s0 + chunk < bn ? s0 + chunk : bn, nobs = (s1 - s0) * per;
                for (int i = 0; i < n; i++) {
                    const float *act = eng[i].act[mb->node];
                    for (int64_t c = 0; c < om; c++) {
                        float *row = x + (i * om + c) * nobs;
                        for (int64_t s = s0; s < s1; s++)
                            for (int64_t o = 0; o < outer; o++)
                                for (int64_t r = 0; r < mb->reps; r++)
                                    for (int64_t k = 0; k < mb->inner; k++) {
                                        const float *v = act + s * numel + (o * len + ns_chmember_index(mb, c, r, k)) * after;
                                        memcpy(row, v, (size_t)after * sizeof *row);
                                        row += after;
                                    }
                    }
                }
                if (ns_corr_acc_add(&acc[p], x, nobs, err) < 0) goto done_prog;
            }
        }
        total += bn;
        ns_report_update(report, total);
        if (max_samples > 0 && total >= max_samples) break;
    }
    if (got < 0) goto done_prog;
    if (total == 0) {
        ns_errf(err, "%s: no samples for the activation statistics", path);
        goto done_prog;
    }
    for (int p = 0; p < ng; p++) {
        if (!amb[p]) continue;
        int64_t O = acc[p].dim;
        if (!(corr[p] = malloc((size_t)(O * O) * sizeof *corr[p])) ||
            (dead_units && !(dead_units[p] = malloc((size_t)O)))) {
            ns_errf(err, "out of memory");
            goto done_prog;
        }
        dead[p] = ns_corr_acc_finish(&acc[p], corr[p], dead_units ? dead_units[p] : NULL);
    }
    if (seen) *seen = total;
    rc = 0;
done_prog:
    ns_report_end(report);
done:
    if (rc < 0 && corr)
        for (int p = 0; p < ng; p++) {
            free(corr[p]);
            corr[p] = NULL;
            if (dead_units) {
                free(dead_units[p]);
                dead_units[p] = NULL;
            }
        }
    ns_batches_close(&b);
    for (int i = 0; i < neng; i++) ns_engine_free(&eng[i]);
    if (acc)
        for (int p = 0; p < ng; p++) ns_corr_acc_free(&acc[p]);
    free(acc);
    free(amb);
    free(x);
    return rc;
}

int ns_merge_reset_bn(ns_model *m, const char *path, int64_t max_samples, int64_t batch,
                      const ns_reporter *report, ns_err *err) {
    ns_model view = unlabelled(m);
    ns_engine e;
    if (ns_engine_init(&e, m, batch, 0, err) < 0) return -1;
    ns_batches b;
    if (ns_batches_open(&b, path, &view, batch, err) < 0) {
        ns_engine_free(&e);
        return -1;
    }
    // Save each batch norm's momentum; a momentum of 1/(k+1) at batch k makes
    // the running statistics the plain average of the batches' (torch's
    // momentum=None), starting from anything.
    double *momentum = calloc((size_t)m->nnodes, sizeof *momentum);
    int rc = -1, got;
    int64_t total = 0, k = 0;
    ns_report_begin(report, "images (batch-norm reset)", max_samples);
    if (!momentum) {
        ns_errf(err, "out of memory");
        goto done;
    }
    for (int i = 0; i < m->nnodes; i++)
        if (m->nodes[i].op == NS_OP_BATCHNORM) momentum[i] = ns_node_fattr(&m->nodes[i], "momentum");
    while ((got = ns_batches_next(&b, err)) == 1) {
        int64_t bn = b.n;
        if (max_samples > 0 && total + bn > max_samples) bn = max_samples - total;
        if (bn < 2) break; // a batch of one has no variance
        for (int i = 0; i < m->nnodes; i++)
            if (m->nodes[i].op == NS_OP_BATCHNORM &&
                ns_node_set_fattr(&m->nodes[i], "momentum", 1.0 / (double)(k + 1), err) < 0)
                goto restore;
        if (!ns_engine_forward(&e, b.x, bn, 1, err)) goto restore;
        k++;
        total += bn;
        ns_report_update(report, total);
        if (max_samples > 0 && total >= max_samples) break;
    }
    if (got < 0) goto restore;
    if (k == 0) {
        ns_errf(err, "%s: no batches of two or more samples for the batch-norm reset", path);
        goto restore;
    }
    rc = 0;
restore:
    for (int i = 0; i < m->nnodes; i++)
        if (m->nodes[i].op == NS_OP_BATCHNORM) ns_node_set_fattr(&m->nodes[i], "momentum", momentum[i], NULL);
done:
    ns_report_end(report);
    free(momentum);
    ns_batches_close(&b);
    ns_engine_free(&e);
    return rc;
}
