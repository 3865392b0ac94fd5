// reg.c: the sparsity regularisers of prune.h, applied to the gradients
// between backward and the optimiser step (net-train --reg): network
// slimming's L1 on batch-norm scales, group lasso, DepGraph's group norm
// with its growing per-channel strength, and the growing regulariser, each
// over the coupled channels of lib/nn/chgroups.h, read as the criteria read
// them (the weight members of every prunable group).
//
// Shapes: per group, its weight members (tensor index, channel map of the
// tensor's numel); per group and channel the norm I_k = ||W_k||_2 (double)
// and, for growing, the strength lambda_k (a double holding f32 values, so
// that a checkpoint's f32 tensor restores it exactly).
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/report.h"
#include "prune/prune.h"

const char *const ns_prune_reg_names[NS_REG_NKINDS] = {"bn-scale", "group-lasso", "group-norm", "growing-reg"};

int ns_prune_reg_from_name(const char *name) {
    for (int i = 0; i < NS_REG_NKINDS; i++)
        if (strcmp(ns_prune_reg_names[i], name) == 0) return i;
    return -1;
}

typedef struct reg_member {
    int tensor;
    int32_t *map; // channel of each element, -1 elsewhere
} reg_member;

typedef struct reg_group {
    int64_t size;
    int nmembers;
    reg_member *members;
    double *norm;   // I_k
    double *lambda; // growing: lambda_k
} reg_group;

struct ns_prune_reg {
    ns_prune_reg_kind kind;
    double lambda, delta;
    int64_t steps_per_epoch;
    ns_model *model;
    int ngroups;
    reg_group *groups;
    double seconds;
};

void ns_prune_reg_free(ns_prune_reg *r) {
    if (!r) return;
    for (int p = 0; p < r->ngroups; p++) {
        for (int i = 0; i < r->groups[p].nmembers; i++) free(r->groups[p].members[i].map);
        free(r->groups[p].members);
        free(r->groups[p].norm);
        free(r->groups[p].lambda);
    }
    free(r->groups);
    free(r);
}

ns_prune_reg *ns_prune_reg_create(ns_model *m, ns_prune_reg_kind kind, double lambda, double delta,
                                  int64_t steps_per_epoch, ns_err *err) {
    ns_chgroups g;
    if (ns_chgroups_build(&g, m, err) < 0) return NULL;
    ns_prune_reg *r = calloc(1, sizeof *r);
    if (!r || !(r->groups = calloc((size_t)(g.ngroups ? g.ngroups : 1), sizeof *r->groups))) {
        free(r);
        ns_chgroups_free(&g);
        ns_errf(err, "out of memory");
        return NULL;
    }
    *r = (ns_prune_reg){kind, lambda, delta, steps_per_epoch > 0 ? steps_per_epoch : 1, m, 0, r->groups, 0};
    int ok = 1, any = 0;
    for (int p = 0; ok && p < g.ngroups; p++) {
        const ns_chgroup *gr = &g.groups[p];
        if (!ns_prune_group_prunable(gr)) continue;
        reg_group *rg = &r->groups[r->ngroups++];
        rg->size = gr->size;
        rg->members = calloc((size_t)gr->nmembers, sizeof *rg->members);
        rg->norm = calloc((size_t)gr->size, sizeof *rg->norm);
        rg->lambda = calloc((size_t)gr->size, sizeof *rg->lambda);
        if (!rg->members || !rg->norm || !rg->lambda) { ok = 0; ns_errf(err, "out of memory"); break; }
        for (int64_t k = 0; k < gr->size; k++) rg->lambda[k] = (float)lambda; // f32: checkpointed exactly
        for (int i = 0; i < gr->nmembers; i++) {
            const ns_chmember *mb = &gr->members[i];
            if (!ns_prune_weight_member(m, mb)) continue;
            if (kind == NS_REG_BN_SCALE && m->nodes[mb->node].op != NS_OP_BATCHNORM) continue;
            reg_member *rm = &rg->members[rg->nmembers];
            rm->tensor = mb->tensor;
            if (!(rm->map = ns_prune_channel_map(m, gr, mb, err))) { ok = 0; break; }
            rg->nmembers++;
            any = 1;
        }
    }
    ns_chgroups_free(&g);
    if (ok && !any)
        ok = ns_errf(err, "regulariser %s: the model has no %s", ns_prune_reg_names[kind],
                     kind == NS_REG_BN_SCALE ? "batch norm in a prunable channel group" : "prunable channel group") == 0;
    if (!ok) {
        ns_prune_reg_free(r);
        return NULL;
    }
    return r;
}

static void group_norms(const ns_model *m, reg_group *rg) {
    memset(rg->norm, 0, (size_t)rg->size * sizeof *rg->norm);
    for (int i = 0; i < rg->nmembers; i++) {
        const ns_tensor *t = &m->tensors[rg->members[i].tensor].t;
        const float *w = t->data;
        const int32_t *map = rg->members[i].map;
        for (int64_t e = 0; e < t->numel; e++)
            if (map[e] >= 0) rg->norm[map[e]] += (double)w[e] * w[e];
    }
    for (int64_t k = 0; k < rg->size; k++) rg->norm[k] = sqrt(rg->norm[k]);
}

// grad += coef[k] * w for every element of channel k (coef NULL: sign(w) * lambda).
static void add_scaled(const ns_model *m, ns_engine *e, const reg_group *rg, const double *coef, double lambda) {
    for (int i = 0; i < rg->nmembers; i++) {
        int t = rg->members[i].tensor;
        float *gr = e->param_grad[t];
        if (!gr) continue; // frozen
        const float *w = m->tensors[t].t.data;
        const int32_t *map = rg->members[i].map;
        for (int64_t j = 0; j < m->tensors[t].t.numel; j++) {
            if (map[j] < 0) continue;
            if (coef) gr[j] += (float)(coef[map[j]] * w[j]);
            else gr[j] += (float)(w[j] > 0 ? lambda : w[j] < 0 ? -lambda : 0);
        }
    }
}

void ns_prune_reg_apply(ns_prune_reg *r, ns_engine *e, int64_t step) {
    double t0 = ns_now();
    const ns_model *m = r->model;
    for (int p = 0; p < r->ngroups; p++) {
        reg_group *rg = &r->groups[p];
        if (r->kind == NS_REG_BN_SCALE) {
            add_scaled(m, e, rg, NULL, r->lambda);
            continue;
        }
        group_norms(m, rg);
        double lo = rg->norm[0], hi = rg->norm[0];
        for (int64_t k = 1; k < rg->size; k++) {
            lo = rg->norm[k] < lo ? rg->norm[k] : lo;
            hi = rg->norm[k] > hi ? rg->norm[k] : hi;
        }
        double span = hi - lo > 1e-12 ? hi - lo : 1e-12;
        double *coef = rg->lambda; // reused as the per-channel coefficient except for growing
        double *tmp = malloc((size_t)rg->size * sizeof *tmp);
        if (!tmp) continue;
        for (int64_t k = 0; k < rg->size; k++) {
            switch (r->kind) {
            case NS_REG_GROUP_LASSO: tmp[k] = r->lambda / (rg->norm[k] > 1e-12 ? rg->norm[k] : 1e-12); break;
            case NS_REG_GROUP_NORM: tmp[k] = r->lambda * pow(16.0, (hi - rg->norm[k]) / span); break;
            default:
                if (step > 0 && step % r->steps_per_epoch == 0) coef[k] = (float)(coef[k] + r->delta * (hi - rg->norm[k]) / span);
                tmp[k] = coef[k];
                break;
            }
        }
        add_scaled(m, e, rg, tmp, 0);
        free(tmp);
    }
    r->seconds += ns_now() - t0;
}

double ns_prune_reg_seconds(const ns_prune_reg *r) { return r->seconds; }

static int64_t state_length(const ns_prune_reg *r) {
    int64_t n = 0;
    for (int p = 0; p < r->ngroups; p++) n += r->groups[p].size;
    return n;
}

int ns_prune_reg_state_write(const ns_prune_reg *r, ns_writer *w, ns_err *err) {
    if (r->kind != NS_REG_GROWING) return 0;
    int64_t n = state_length(r);
    ns_tensor t;
    if (ns_tensor_alloc(&t, NS_F32, 1, &n, err) < 0) return -1;
    float *v = t.data;
    for (int p = 0; p < r->ngroups; p++)
        for (int64_t k = 0; k < r->groups[p].size; k++) *v++ = (float)r->groups[p].lambda[k];
    int rc = ns_write_tensor(w, NS_PRUNE_REG_STATE, &t, NULL, err);
    ns_tensor_free(&t);
    return rc;
}

int ns_prune_reg_state_load(ns_prune_reg *r, const ns_model *m, ns_err *err) {
    if (r->kind != NS_REG_GROWING) return 0;
    const ns_tensor *t = NULL;
    for (int i = 0; i < m->ntensors && !t; i++)
        if (strcmp(m->tensors[i].name, NS_PRUNE_REG_STATE) == 0) t = &m->tensors[i].t;
    if (!t) return ns_errf(err, "the checkpoint has no growing-reg strengths (%s): was it trained with --reg growing-reg?", NS_PRUNE_REG_STATE);
    int64_t n = state_length(r);
    if (t->dtype != NS_F32 || t->ndim != 1 || t->shape[0] != n)
        return ns_errf(err, "%s: expected %lld strengths, got %lld", NS_PRUNE_REG_STATE, (long long)n,
                       (long long)t->numel);
    const float *v = t->data;
    for (int p = 0; p < r->ngroups; p++)
        for (int64_t k = 0; k < r->groups[p].size; k++) r->groups[p].lambda[k] = *v++;
    return 0;
}
