// engine.c: forward and backward over a model graph (engine.h): buffers,
// fusion groups, the forward and backward loops. Each op's own forward and
// backward are in engine_ops.c.
#include "nn/engine.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "base/report.h"
#include "nn/engine_ops.h"

// ---------------------------------------------------------------------------
// fusion: a convolution with the batch norm after it, and the add and relu
// after that (ResNet's conv-bn-relu and conv-bn-add-relu), run as one group
//
// A group is found from the graph alone, at init: conv c whose only consumer
// is batch norm b (over c's channels), then, when b's only consumer is a relu
// r, that relu; or when it is an add a of b and an earlier node s (the
// residual) whose only consumer is a relu r, the add and the relu (or the add
// alone). Every member but the last is consumed only inside the group, so the
// group runs when the loop reaches its last member:
// - eval: the convolution's epilogue applies the batch norm (running
//   statistics), the residual and the relu while each sample's output is in
//   cache (ns_conv2d_forward_ex);
// - training: the convolution computes each output plane's statistics while
//   it is in cache, the batch statistics are merged from them
//   (ns_batchnorm_stats), then one elementwise pass applies the batch norm,
//   the residual and the relu (ns_batchnorm_apply).
// The arithmetic is that of the separate ops, so the results are the same bit
// for bit. By default every member's act[] is written as well. In fused mode
// (ns_engine_set_fused) the members' act[] are skipped (the convolution's is
// kept when a backward may need it) and backward runs the group's batch norm,
// add and relu as one pass (ns_batchnorm_backward_ex), leaving the members'
// grad[] unwritten.

typedef struct fuse_group {
    int conv, bn, add, relu, res, last; // node indices, -1 when absent
} fuse_group;

struct ns_engine_plan {
    int *group;           // per node: index into groups, -1 when not in one
    fuse_group *groups;
    int ngroups;
    double **plane_stats; // per group: (max_batch, OC, 2)
    float **affine;       // per group: (2, OC) scale, shift
    uint8_t *ginit;       // per node, during backward: grad[i] holds a value
    int acts;             // how act[] is allocated now (ACTS_*)
    float **slots;        // ACTS_SHARED*: the buffers act[], argmax[], mask[] point into
    int nslots;
};

enum { ACTS_NONE, ACTS_PER_NODE, ACTS_FUSED_GRADS, ACTS_SHARED, ACTS_SHARED_TRAINING };

static void plan_groups(ns_engine *e, int *failed) {
    const ns_model *m = e->model;
    ns_engine_plan *p = e->plan;
    int nn = m->nnodes;
    int *uses = calloc((size_t)nn, sizeof *uses), *user = calloc((size_t)nn, sizeof *user);
    p->group = malloc((size_t)nn * sizeof *p->group);
    p->groups = calloc((size_t)nn, sizeof *p->groups);
    p->plane_stats = calloc((size_t)nn, sizeof *p->plane_stats);
    p->affine = calloc((size_t)nn, sizeof *p->affine);
    p->ginit = calloc((size_t)nn, 1);
    if (!uses || !user || !p->group || !p->groups || !p->plane_stats || !p->affine || !p->ginit) {
        *failed = 1;
        free(uses);
        free(user);
        return;
    }
    for (int i = 0; i < nn; i++) p->group[i] = -1;
    for (int i = 1; i <= m->output; i++)
        for (int k = 0; k < m->nodes[i].ninputs; k++) {
            int j = m->nodes[i].inputs[k];
            uses[j]++;
            user[j] = i;
        }
    // a member other than the last: used once, by the next member, and not the output
    #define INNER(j, next_op) (uses[j] == 1 && m->nodes[user[j]].op == (next_op) && (j) != m->output && p->group[user[j]] < 0)
    for (int c = 1; c <= m->output && !*failed; c++) {
        const ns_node *cn = &m->nodes[c];
        if (cn->op != NS_OP_CONV2D || !INNER(c, NS_OP_BATCHNORM)) continue;
        fuse_group g = {c, user[c], -1, -1, -1, user[c]};
        int b = g.bn;
        if (INNER(b, NS_OP_RELU)) {
            g.relu = g.last = user[b];
        } else if (uses[b] == 1 && b != m->output && m->nodes[user[b]].op == NS_OP_ADD &&
                   p->group[user[b]] < 0) {
            const ns_node *an = &m->nodes[user[b]];
            int s = an->inputs[0] == b ? an->inputs[1] : an->inputs[0];
            if (an->ninputs == 2 && s != b && s != c) {
                g.add = g.last = user[b];
                g.res = s;
                if (INNER(g.add, NS_OP_RELU)) g.relu = g.last = user[g.add];
            }
        }
        int gi = p->ngroups++;
        p->groups[gi] = g;
        p->group[g.conv] = p->group[g.bn] = gi;
        if (g.add >= 0) p->group[g.add] = gi;
        if (g.relu >= 0) p->group[g.relu] = gi;
        int64_t OC = cn->shape[0];
        p->plane_stats[gi] = ns_aligned_alloc((size_t)(e->max_batch * OC * 2) * sizeof(double));
        p->affine[gi] = ns_aligned_alloc((size_t)(2 * OC) * sizeof(float));
        if (!p->plane_stats[gi] || !p->affine[gi]) *failed = 1;
    }
    #undef INNER
    free(uses);
    free(user);
}

static void free_plan(ns_engine *e) {
    ns_engine_plan *p = e->plan;
    if (!p) return;
    for (int i = 0; p->plane_stats && i < p->ngroups; i++) free(p->plane_stats[i]);
    for (int i = 0; p->affine && i < p->ngroups; i++) free(p->affine[i]);
    free(p->plane_stats);
    free(p->affine);
    free(p->group);
    free(p->groups);
    free(p->ginit);
    free(p);
    e->plan = NULL;
}

// Whether member i's act[] is written: always, unless in fused mode (then
// only when kept).
static int store_act(const ns_engine *e, int i) { return !e->fused || (e->keep && e->keep[i]); }

static void group_forward(ns_engine *e, const fuse_group *g, int gi, int64_t n) {
    const ns_model *m = e->model;
    const ns_node *bn = &m->nodes[g->bn];
    op_ctx cc = {e, &m->nodes[g->conv], g->conv, n, 0}, bc = {e, bn, g->bn, n, 0};
    ns_conv2d_geom geom = conv_geom(&cc);
    const int64_t C = bn->shape[0], S = bn->numel / C;
    const float eps = (float)bn->fattr[0], momentum = (float)bn->fattr[1];
    float *scale = e->plan->affine[gi], *shift = scale + C;
    float *mean = e->saved_mean[g->bn], *rstd = e->saved_rstd[g->bn];
    float *out = e->act[g->last];
    float *bn_out = g->bn != g->last && store_act(e, g->bn) ? e->act[g->bn] : NULL;
    float *sum_out = g->add >= 0 && g->add != g->last && store_act(e, g->add) ? e->act[g->add] : NULL;
    const float *res = g->add >= 0 ? e->act[g->res] : NULL;
    double t0 = e->prof_fwd ? ns_now() : 0;
    if (!e->training) {
        ns_batchnorm_eval_stats(mean, rstd, param(&bc, 2), param(&bc, 3), C, eps);
        ns_batchnorm_affine(scale, shift, mean, rstd, param(&bc, 0), param(&bc, 1), C);
        ns_conv2d_epilogue ep = {scale, shift, res, g->relu >= 0,
                                 store_act(e, g->conv) || e->with_grads ? e->act[g->conv] : NULL,
                                 bn_out, sum_out, NULL};
        ns_conv2d_forward_ex(out, e->scratch, in_act(&cc, 0), param(&cc, 0), param(&cc, 1), &geom, &ep);
        if (e->prof_fwd) e->prof_fwd[g->conv] += ns_now() - t0;
        return;
    }
    ns_conv2d_epilogue ep = {0};
    ep.plane_stats = e->plan->plane_stats[gi];
    ns_conv2d_forward_ex(e->act[g->conv], e->scratch, in_act(&cc, 0), param(&cc, 0), param(&cc, 1),
                         &geom, &ep);
    double t1 = e->prof_fwd ? ns_now() : 0;
    if (e->prof_fwd) e->prof_fwd[g->conv] += t1 - t0;
    ns_batchnorm_stats(mean, rstd, param(&bc, 2), param(&bc, 3), ep.plane_stats, n, C, S, momentum, eps);
    ns_batchnorm_affine(scale, shift, mean, rstd, param(&bc, 0), param(&bc, 1), C);
    ns_batchnorm_apply(out, bn_out, sum_out, e->act[g->conv], scale, shift, res, g->relu >= 0, n, C, S);
    if (e->prof_fwd) e->prof_fwd[g->bn] += ns_now() - t1;
}

// ---------------------------------------------------------------------------
// set-up

static void *alloc_floats(int64_t n, int *failed) {
    void *p = ns_aligned_alloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    if (!p) *failed = 1;
    else memset(p, 0, (size_t)(n > 0 ? n : 1) * sizeof(float));
    return p;
}

// Activation memory, allocated at the first forward and again when
// ns_engine_set_fused/keep change what it needs. Outside fused mode every
// node has its act[] (and grad[]): a caller may read any. In fused mode an
// engine with gradients leaves out the act[] and grad[] of a group's inner
// nodes (its batch norm and add when not last, unless kept), which fused mode
// never writes (resnet20 training: 10 of the 24 nodes at 16x28x28). A
// forward-only engine in fused mode shares its buffers: a value lives from
// the step that writes it to the last step that reads it (the output and
// kept nodes to the end; a group's step is its last member's), values alive
// at the same step get different buffers, and act[] of a node never written
// is NULL (resnet20, batch 256: 3 buffers, 37 MB, instead of 73 nodes' 505
// MB). A training forward adds what only it writes (the convolution's output
// inside a group, dropout masks).

// A group's batch norm or add that is not its last member.
static int inner_member(const ns_engine_plan *p, int i) {
    int gi = p->group[i];
    return gi >= 0 && i != p->groups[gi].last && i != p->groups[gi].conv;
}

static void alloc_acts_per_node(ns_engine *e, int fused, int *failed) {
    const ns_model *m = e->model;
    for (int i = 0; i < m->nnodes && !*failed; i++) {
        int64_t size = e->max_batch * m->nodes[i].numel;
        int skip = fused && inner_member(e->plan, i);
        if (!skip || e->keep[i]) e->act[i] = alloc_floats(size, failed);
        if (e->with_grads && !skip) e->grad[i] = alloc_floats(size, failed);
        if (m->nodes[i].op == NS_OP_MAXPOOL) e->argmax[i] = (int32_t *)alloc_floats(size, failed);
        else if (m->nodes[i].op == NS_OP_DROPOUT) e->mask[i] = (uint8_t *)alloc_floats(size, failed);
    }
    e->plan->acts = fused ? ACTS_FUSED_GRADS : ACTS_PER_NODE;
}

static void release_acts(ns_engine *e) {
    ns_engine_plan *p = e->plan;
    const ns_model *m = e->model;
    for (int i = 0; m && e->act && e->grad && e->argmax && e->mask && i < m->nnodes; i++) {
        if (!p || !p->slots) free(e->act[i]), free(e->grad[i]), free(e->argmax[i]), free(e->mask[i]);
        e->act[i] = NULL, e->grad[i] = NULL, e->argmax[i] = NULL, e->mask[i] = NULL;
    }
    if (!p) return;
    for (int k = 0; p->slots && k < p->nslots; k++) free(p->slots[k]);
    free(p->slots);
    p->slots = NULL;
    p->nslots = 0;
    p->acts = ACTS_NONE;
}

// The step at which node i is written: its own, or its group's.
static int node_step(const ns_engine_plan *p, int i) { return p->group[i] >= 0 ? p->groups[p->group[i]].last : i; }

// Values v < nnodes are act[v]; v = nnodes + i is node i's max-pool indices or
// dropout mask. first[v] < 0: no buffer.
static void share_acts(ns_engine *e, int training, int *failed) {
    const ns_model *m = e->model;
    ns_engine_plan *p = e->plan;
    const int nn = m->nnodes, nv = 2 * nn;
    int *first = malloc((size_t)nv * sizeof *first), *last = malloc((size_t)nv * sizeof *last);
    int *slot = malloc((size_t)nv * sizeof *slot), *busy = calloc((size_t)nv, sizeof *busy);
    int64_t *cap = calloc((size_t)nv, sizeof *cap);
    if (!first || !last || !slot || !busy || !cap) *failed = 1;
    for (int v = 0; v < nv && !*failed; v++) first[v] = last[v] = slot[v] = -1;
    for (int i = 0; i <= m->output && !*failed; i++) {
        const ns_node *n = &m->nodes[i];
        int gi = p->group[i], end = e->keep[i] || i == m->output;
        if (gi < 0 || i == p->groups[gi].last || end || (training && i == p->groups[gi].conv)) {
            first[i] = node_step(p, i);
            last[i] = end ? INT_MAX : first[i];
        }
        if (n->op == NS_OP_MAXPOOL || (n->op == NS_OP_DROPOUT && training)) first[nn + i] = last[nn + i] = i;
        for (int k = 0; k < n->ninputs && i > 0; k++) {
            int j = n->inputs[k];
            if (first[j] >= 0 && last[j] < node_step(p, i)) last[j] = node_step(p, i);
        }
    }
    // in step order: free the buffers of values read for the last time
    // before, then give each value written now the smallest free buffer that
    // holds it, or else grow the largest free one, or else a new one
    for (int s = 0; s <= m->output && !*failed; s++) {
        for (int v = 0; v < nv; v++)
            if (slot[v] >= 0 && last[v] < s && busy[slot[v]] == v + 1) busy[slot[v]] = 0;
        for (int v = 0; v < nv; v++) {
            if (first[v] != s) continue;
            int64_t need = e->max_batch * m->nodes[v % nn].numel;
            int best = -1;
            for (int k = 0; k < p->nslots; k++) {
                if (busy[k]) continue;
                int fits = cap[k] >= need, best_fits = best >= 0 && cap[best] >= need;
                if (best < 0 || (fits && (!best_fits || cap[k] < cap[best])) || (!fits && !best_fits && cap[k] > cap[best]))
                    best = k;
            }
            if (best < 0) best = p->nslots++;
            if (cap[best] < need) cap[best] = need;
            busy[best] = v + 1;
            slot[v] = best;
        }
    }
    if (!*failed && !(p->slots = calloc((size_t)(p->nslots ? p->nslots : 1), sizeof *p->slots))) *failed = 1;
    for (int k = 0; k < p->nslots && !*failed; k++) p->slots[k] = alloc_floats(cap[k], failed);
    for (int v = 0; v < nv && !*failed; v++) {
        if (slot[v] < 0) continue;
        float *buf = p->slots[slot[v]];
        if (v < nn) e->act[v] = buf;
        else if (m->nodes[v - nn].op == NS_OP_MAXPOOL) e->argmax[v - nn] = (int32_t *)buf;
        else e->mask[v - nn] = (uint8_t *)buf;
    }
    p->acts = training ? ACTS_SHARED_TRAINING : ACTS_SHARED;
    free(first);
    free(last);
    free(slot);
    free(busy);
    free(cap);
}

// Before a forward: act[] allocated as the mode asks (see above).
static int ready_acts(ns_engine *e, int training, ns_err *err) {
    ns_engine_plan *p = e->plan;
    int want = !e->fused                                       ? ACTS_PER_NODE
               : e->with_grads                                 ? ACTS_FUSED_GRADS
               : training || p->acts == ACTS_SHARED_TRAINING ? ACTS_SHARED_TRAINING
                                                               : ACTS_SHARED;
    if (want == p->acts) return 0;
    release_acts(e);
    int failed = 0;
    if (want == ACTS_PER_NODE || want == ACTS_FUSED_GRADS) alloc_acts_per_node(e, want == ACTS_FUSED_GRADS, &failed);
    else share_acts(e, want == ACTS_SHARED_TRAINING, &failed);
    if (!failed) return 0;
    release_acts(e);
    return ns_errf(err, "out of memory for the activations of a batch of %lld", (long long)e->max_batch);
}

int ns_engine_init(ns_engine *e, ns_model *m, int64_t max_batch, int with_grads, ns_err *err) {
    memset(e, 0, sizeof *e);
    e->model = m;
    e->max_batch = max_batch;
    e->with_grads = with_grads;
    int nn = m->nnodes, failed = 0;
    e->act = calloc((size_t)nn, sizeof *e->act);
    e->grad = calloc((size_t)nn, sizeof *e->grad);
    e->saved_mean = calloc((size_t)nn, sizeof *e->saved_mean);
    e->saved_rstd = calloc((size_t)nn, sizeof *e->saved_rstd);
    e->argmax = calloc((size_t)nn, sizeof *e->argmax);
    e->mask = calloc((size_t)nn, sizeof *e->mask);
    e->ids = calloc((size_t)nn, sizeof *e->ids);
    e->saved = calloc((size_t)nn, sizeof *e->saved);
    e->param_grad = calloc((size_t)(m->ntensors ? m->ntensors : 1), sizeof *e->param_grad);
    if (!e->act || !e->grad || !e->saved_mean || !e->saved_rstd || !e->argmax || !e->mask || !e->ids || !e->saved || !e->param_grad) {
        ns_engine_free(e);
        return ns_errf(err, "out of memory");
    }
    for (int i = 0; i < nn && !failed; i++) {
        const ns_node *n = &m->nodes[i];
        int64_t size = max_batch * n->numel;
        if (n->op == NS_OP_BATCHNORM) {
            e->saved_mean[i] = alloc_floats(n->shape[0], &failed);
            e->saved_rstd[i] = alloc_floats(n->shape[0], &failed);
        } else if (n->op == NS_OP_GROUPNORM) {
            e->saved_mean[i] = alloc_floats(max_batch * n->iattr[0], &failed);
            e->saved_rstd[i] = alloc_floats(max_batch * n->iattr[0], &failed);
        } else if (n->op == NS_OP_PATCH_EMBED) {
            const ns_node *in = &m->nodes[n->inputs[0]];
            int64_t cols = max_batch * n->shape[0] * in->shape[0] * n->iattr[1] * n->iattr[1];
            e->saved[i] = alloc_floats(cols, &failed);
            if (with_grads && cols > e->scratch_floats) e->scratch_floats = cols;
        } else if (n->op == NS_OP_ATTENTION) {
            op_ctx c = {e, n, i, max_batch, 0};
            ns_attn_geom g = attn_geom(&c);
            e->saved[i] = alloc_floats(ns_attention_saved_floats(&g), &failed);
            int64_t s = with_grads ? ns_attention_scratch_floats(&g) : 0;
            if (s > e->scratch_floats) e->scratch_floats = s;
        } else if (n->op == NS_OP_LAYERNORM) {
            int64_t rows = size / n->shape[n->ndim - 1];
            e->saved_mean[i] = alloc_floats(rows, &failed);
            e->saved_rstd[i] = alloc_floats(rows, &failed);
        } else if (n->op == NS_OP_EMBEDDING) {
            e->ids[i] = (int32_t *)alloc_floats(max_batch * m->nodes[n->inputs[0]].numel, &failed);
        } else if (n->op == NS_OP_CONV2D) {
            op_ctx c = {e, n, i, max_batch, 0};
            ns_conv2d_geom g = conv_geom(&c);
            int64_t s = ns_conv2d_scratch_floats(&g);
            if (s > e->scratch_floats) e->scratch_floats = s;
        }
    }
    e->scratch = alloc_floats(e->scratch_floats, &failed);
    e->keep = calloc((size_t)nn, 1);
    e->plan = calloc(1, sizeof *e->plan);
    if (!e->keep || !e->plan) failed = 1;
    else plan_groups(e, &failed);
    for (int t = 0; t < m->ntensors && with_grads && !failed; t++)
        if (m->tensors[t].used && m->tensors[t].trainable)
            e->param_grad[t] = alloc_floats(m->tensors[t].t.numel, &failed);
    if (failed) {
        ns_engine_free(e);
        return ns_errf(err, "out of memory for a batch of %lld", (long long)max_batch);
    }
    return 0;
}

void ns_engine_free(ns_engine *e) {
    const ns_model *m = e->model;
    release_acts(e);
    for (int i = 0; m && i < m->nnodes; i++) {
        if (e->grad) free(e->grad[i]);
        if (e->saved_mean) free(e->saved_mean[i]);
        if (e->saved_rstd) free(e->saved_rstd[i]);
        if (e->ids) free(e->ids[i]);
        if (e->saved) free(e->saved[i]);
    }
    for (int t = 0; m && e->param_grad && t < m->ntensors; t++) free(e->param_grad[t]);
    free(e->act);
    free(e->grad);
    free(e->saved_mean);
    free(e->saved_rstd);
    free(e->argmax);
    free(e->mask);
    free(e->param_grad);
    free(e->scratch);
    free(e->ids);
    free(e->saved);
    free(e->keep);
    free_plan(e);
    memset(e, 0, sizeof *e);
}

int ns_engine_set_trainable(ns_engine *e, int tensor, int on, ns_err *err) {
    ns_named_tensor *t = &e->model->tensors[tensor];
    if (!on) {
        free(e->param_grad[tensor]);
        e->param_grad[tensor] = NULL;
        return 0;
    }
    if (!t->trainable || !e->with_grads) return ns_errf(err, "%s cannot be trained", t->name);
    if (e->param_grad[tensor]) return 0;
    int failed = 0;
    e->param_grad[tensor] = alloc_floats(t->t.numel, &failed);
    return failed ? ns_errf(err, "out of memory") : 0;
}

int64_t ns_engine_output_numel(const ns_engine *e) { return e->model->nodes[e->model->output].numel; }

// ---------------------------------------------------------------------------
// running

void ns_engine_set_fused(ns_engine *e, int on) { e->fused = on != 0; }

void ns_engine_keep(ns_engine *e, int node) {
    if (node < 0 || node >= e->model->nnodes || e->keep[node]) return;
    e->keep[node] = 1;
    if (e->plan->acts != ACTS_PER_NODE) release_acts(e); // planned again at the next forward
}

const float *ns_engine_forward(ns_engine *e, const float *x, int64_t n, int training, ns_err *err) {
    const ns_model *m = e->model;
    if (n < 1 || n > e->max_batch) {
        ns_errf(err, "batch of %lld outside 1..%lld", (long long)n, (long long)e->max_batch);
        return NULL;
    }
    if (ready_acts(e, training, err) < 0) return NULL;
    e->n = n;
    e->training = training;
    if (training) e->step++;
    memcpy(e->act[0], x, (size_t)(n * m->nodes[0].numel) * sizeof(float));
    const ns_engine_plan *p = e->plan;
    for (int i = 1; i <= m->output; i++) {
        int gi = p->group[i];
        if (gi >= 0) { // a group runs when the loop reaches its last member
            if (p->groups[gi].last == i) group_forward(e, &p->groups[gi], gi, n);
            continue;
        }
        op_ctx c = {e, &m->nodes[i], i, n, 0};
        double t0 = e->prof_fwd ? ns_now() : 0;
        if (ns_engine_exec[m->nodes[i].op].forward(&c, err) < 0) return NULL;
        if (e->prof_fwd) e->prof_fwd[i] += ns_now() - t0;
    }
    return e->act[m->output];
}

void ns_engine_zero_grad(ns_engine *e) {
    for (int t = 0; t < e->model->ntensors; t++)
        if (e->param_grad[t]) memset(e->param_grad[t], 0, (size_t)e->model->tensors[t].t.numel * sizeof(float));
}

// Before node i's backward: a gradient buffer of an input that holds no
// value yet is either written by the op (when it can: bit k of
// c->overwrite) or zeroed here. Gradients are thus zeroed only where an op
// cannot write them, right before it needs them.
static void prepare_input_grads(ns_engine *e, op_ctx *c, int can) {
    uint8_t *init = e->plan->ginit;
    c->overwrite = 0;
    for (int k = 0; k < c->node->ninputs; k++) {
        int j = c->node->inputs[k];
        if (init[j] || !in_grad(c, k)) continue;
        if (can & (1 << k)) c->overwrite |= 1 << k;
        else memset(e->grad[j], 0, (size_t)(c->N * e->model->nodes[j].numel) * sizeof(float));
        init[j] = 1;
    }
}

// Fused mode: the group's relu, add and batch norm backward in one pass,
// from grad[last] to grad[conv] and grad[res].
static void group_backward(ns_engine *e, const fuse_group *g, int gi) {
    const ns_model *m = e->model;
    const ns_node *bn = &m->nodes[g->bn];
    op_ctx bc = {e, bn, g->bn, e->n, 0};
    uint8_t *init = e->plan->ginit;
    const int64_t C = bn->shape[0], S = bn->numel / C;
    float *dres = NULL;
    int ow = 0;
    // the conv's output is used by the batch norm alone: written here first
    float *dconv = e->grad[g->conv];
    if (!init[g->conv]) ow |= 1;
    init[g->conv] = 1;
    if (g->add >= 0 && (g->res != 0 || e->want_input_grad)) {
        dres = e->grad[g->res];
        if (!init[g->res]) ow |= 2;
        init[g->res] = 1;
    }
    double t0 = e->prof_bwd ? ns_now() : 0;
    // a relu right after the batch norm: its mask from the batch norm's input
    // and the forward's affine map (saved in the plan), not from its output
    const int direct = g->relu >= 0 && g->add < 0;
    ns_batchnorm_backward_ex(dconv, param_grad(&bc, 0), param_grad(&bc, 1), dres, e->grad[g->last],
                             g->relu >= 0 && !direct ? e->act[g->last] : NULL,
                             direct ? e->plan->affine[gi] : NULL, e->act[g->conv],
                             e->saved_mean[g->bn], e->saved_rstd[g->bn], param(&bc, 0), e->n, C, S,
                             e->training, ow);
    if (e->prof_bwd) e->prof_bwd[g->bn] += ns_now() - t0;
}

void ns_engine_backward(ns_engine *e, const float *dout) {
    const ns_model *m = e->model;
    if (!e->with_grads) return; // nothing to fill: a forward-only engine
    const ns_engine_plan *p = e->plan;
    memset(p->ginit, 0, (size_t)m->nnodes);
    memcpy(e->grad[m->output], dout, (size_t)(e->n * m->nodes[m->output].numel) * sizeof(float));
    p->ginit[m->output] = 1;
    for (int i = m->output; i >= 1; i--) {
        int gi = p->group[i];
        if (p->acts == ACTS_FUSED_GRADS && gi >= 0 && i != p->groups[gi].conv) { // the last forward's mode
            if (i == p->groups[gi].last) {
                if (!p->ginit[i]) { // nothing reached the group's output: a zero gradient
                    memset(e->grad[i], 0, (size_t)(e->n * m->nodes[i].numel) * sizeof(float));
                    p->ginit[i] = 1;
                }
                group_backward(e, &p->groups[gi], gi);
            }
            continue;
        }
        op_ctx c = {e, &m->nodes[i], i, e->n, 0};
        if (!p->ginit[i]) {
            memset(e->grad[i], 0, (size_t)(e->n * m->nodes[i].numel) * sizeof(float));
            p->ginit[i] = 1;
        }
        prepare_input_grads(e, &c, ns_engine_exec[m->nodes[i].op].overwrites);
        double t0 = e->prof_bwd ? ns_now() : 0;
        ns_engine_exec[m->nodes[i].op].backward(&c);
        if (e->prof_bwd) e->prof_bwd[i] += ns_now() - t0;
    }
    if (e->want_input_grad && !p->ginit[0])
        memset(e->grad[0], 0, (size_t)(e->n * m->nodes[0].numel) * sizeof(float));
}
