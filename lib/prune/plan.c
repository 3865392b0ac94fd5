// plan.c: which channels a pruning step keeps (prune.h): the exact MACs and
// parameter count of a model with some channels removed, the protection
// limits fixed from the unpruned model, and one step's choice by one global
// threshold over all normalised scores or the same ratio in every group,
// found by bisection on a monotone "level" (global: how many of the lowest-
// scoring channels go; local: the ratio, in 1/LOCAL_LEVELS).
//
// Shapes: per group arrays of ngroups int64; per tensor, per axis removed
// positions (ntensors x NS_MAX_NDIM int64).
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "prune/prune.h"

#define LOCAL_LEVELS 100000

int64_t ns_prune_predict(const ns_model *m, const ns_chgroups *g, const int64_t *removed, int64_t *params) {
    int64_t *cut = calloc((size_t)(m->ntensors ? m->ntensors : 1) * NS_MAX_NDIM, sizeof *cut);
    if (!cut) return -1;
    for (int p = 0; p < g->ngroups; p++) {
        if (!removed[p]) continue;
        const ns_chgroup *gr = &g->groups[p];
        for (int i = 0; i < gr->nmembers; i++) {
            const ns_chmember *mb = &gr->members[i];
            if (mb->role == NS_CH_ACT || mb->tensor < 0) continue;
            int64_t positions = removed[p] * mb->inner * mb->reps;
            if (mb->role == NS_CH_IN && mb->conv_groups > 1) positions /= mb->conv_groups; // virtual axis
            cut[mb->tensor * NS_MAX_NDIM + mb->axis] += positions;
        }
    }
    int64_t total_params = 0, macs = 0;
    int64_t *numel = malloc((size_t)(m->ntensors ? m->ntensors : 1) * sizeof *numel);
    if (!numel) { free(cut); return -1; }
    for (int t = 0; t < m->ntensors; t++) {
        const ns_tensor *x = &m->tensors[t].t;
        int64_t n = 1;
        for (int d = 0; d < x->ndim; d++) n *= x->shape[d] - cut[t * NS_MAX_NDIM + d];
        numel[t] = n;
        if (m->tensors[t].used && m->tensors[t].trainable) total_params += n;
    }
    // A conv's or linear's MACs are its weight's elements times a factor pruning
    // keeps (output positions, or tokens): see model.c.
    for (int i = 0; i < m->nnodes; i++) {
        const ns_node *nd = &m->nodes[i];
        int w = nd->params[0];
        if (!nd->macs || w < 0 || !m->tensors[w].t.numel) continue;
        const ns_tensor *x = &m->tensors[w].t;
        macs += nd->macs / x->numel * numel[w];
    }
    free(cut);
    free(numel);
    if (params) *params = total_params;
    return macs;
}

static int64_t gcd64(int64_t a, int64_t b) { while (b) { int64_t t = a % b; a = b; b = t; } return a; }

int ns_prune_limits_init(ns_prune_limits *l, const ns_model *m, const ns_chgroups *g, const ns_prune_scores *s,
                         const ns_prune_opts *o, ns_err *err) {
    memset(l, 0, sizeof *l);
    l->ngroups = g->ngroups;
    size_t n = (size_t)(g->ngroups ? g->ngroups : 1);
    l->orig = calloc(n, sizeof *l->orig);
    l->min_keep = calloc(n, sizeof *l->min_keep);
    l->step = calloc(n, sizeof *l->step);
    if (!l->orig || !l->min_keep || !l->step) {
        ns_prune_limits_free(l);
        return ns_errf(err, "out of memory");
    }
    for (int p = 0; p < g->ngroups; p++) {
        const ns_chgroup *gr = &g->groups[p];
        l->orig[p] = gr->size;
        l->step[p] = 1;
        if (!ns_prune_group_prunable(gr) || (s && !s->score[p])) continue;
        int64_t blocks = gr->size / gr->block, st = blocks;
        if (o->round_to > 1) st = st / gcd64(st, o->round_to) * o->round_to;
        int64_t mk = (int64_t)ceil(o->protect * (double)gr->size - 1e-9);
        if (mk < 1) mk = 1;
        mk = (mk + st - 1) / st * st;
        if (mk >= gr->size) continue; // nothing may go
        l->step[p] = st;
        l->min_keep[p] = mk;
    }
    int64_t *zero = calloc(n, sizeof *zero);
    if (!zero) { ns_prune_limits_free(l); return ns_errf(err, "out of memory"); }
    l->base_macs = ns_prune_predict(m, g, zero, &l->base_params);
    free(zero);
    return 0;
}

void ns_prune_limits_free(ns_prune_limits *l) {
    free(l->orig);
    free(l->min_keep);
    free(l->step);
    memset(l, 0, sizeof *l);
}

// Kept count for a wish (kept channels of a current size cur), within the limits.
static int64_t clamp_keep(const ns_prune_limits *l, int p, int64_t cur, int64_t want) {
    if (want < l->min_keep[p]) want = l->min_keep[p];
    want = (want + l->step[p] - 1) / l->step[p] * l->step[p];
    return want > cur ? cur : want;
}

static int active(const ns_chgroups *g, const ns_prune_scores *s, const ns_prune_limits *l, int p) {
    return l->min_keep[p] > 0 && s->score[p] && g->groups[p].size > 0;
}

int64_t ns_prune_limits_max(const ns_prune_limits *l, const ns_model *m, const ns_chgroups *g,
                            const ns_prune_scores *s, int64_t *params, double *ratio) {
    int64_t *rm = calloc((size_t)(g->ngroups ? g->ngroups : 1), sizeof *rm), gone = 0, all = 0;
    if (!rm) return -1;
    for (int p = 0; p < g->ngroups; p++) {
        if (l->min_keep[p] <= 0 || (s && !s->score[p])) continue;
        int64_t cur = g->groups[p].size;
        rm[p] = cur - clamp_keep(l, p, cur, 0);
        gone += l->orig[p] - cur + rm[p];
        all += l->orig[p];
    }
    int64_t macs = ns_prune_predict(m, g, rm, params);
    if (ratio) *ratio = all ? (double)gone / (double)all : 0;
    free(rm);
    return macs;
}

// The global order: every scored channel of the active groups, lowest first.
typedef struct ranked { double score; int group; int64_t chan; } ranked;

static int by_score(const void *a, const void *b) {
    const ranked *x = a, *y = b;
    if (x->score != y->score) return x->score < y->score ? -1 : 1;
    if (x->group != y->group) return x->group - y->group;
    return (x->chan > y->chan) - (x->chan < y->chan);
}

typedef struct chooser {
    const ns_model *m;
    const ns_chgroups *g;
    const ns_prune_scores *s;
    const ns_prune_limits *l;
    const ns_prune_opts *o;
    ranked *order;
    int64_t norder;
    int64_t *removed; // per group, for the level being tried
} chooser;

// removed[] for a level (monotone: a higher level never removes fewer).
static void removal_at(chooser *c, int64_t level) {
    const ns_chgroups *g = c->g;
    memset(c->removed, 0, (size_t)g->ngroups * sizeof *c->removed);
    if (!c->o->local) {
        for (int64_t i = 0; i < level; i++) c->removed[c->order[i].group]++;
        for (int p = 0; p < g->ngroups; p++) {
            if (!active(g, c->s, c->l, p)) continue;
            int64_t cur = g->groups[p].size;
            c->removed[p] = cur - clamp_keep(c->l, p, cur, cur - c->removed[p]);
        }
        return;
    }
    for (int p = 0; p < g->ngroups; p++) {
        if (!active(g, c->s, c->l, p)) continue;
        int64_t cur = g->groups[p].size, orig = c->l->orig[p];
        int64_t want = orig - (int64_t)floor((double)orig * (double)level / LOCAL_LEVELS + 1e-9);
        c->removed[p] = cur - clamp_keep(c->l, p, cur, want < cur ? want : cur);
    }
}

// 1 when the level reaches the step's target.
static int reaches(chooser *c, int64_t level, double target_macs, int64_t target_kept) {
    removal_at(c, level);
    if (target_macs > 0) return (double)ns_prune_predict(c->m, c->g, c->removed, NULL) <= target_macs;
    int64_t kept = 0;
    for (int p = 0; p < c->g->ngroups; p++)
        if (c->l->min_keep[p] > 0) kept += c->g->groups[p].size - c->removed[p];
    return kept <= target_kept;
}

int ns_prune_choose(const ns_model *m, const ns_chgroups *g, const ns_prune_scores *s, const ns_prune_limits *l,
                    const ns_prune_opts *o, int step, int64_t **keep, int64_t *nkeep, ns_err *err) {
    chooser c = {m, g, s, l, o, NULL, 0, NULL};
    c.removed = calloc((size_t)(g->ngroups ? g->ngroups : 1), sizeof *c.removed);
    int64_t total = 0, orig_total = 0;
    for (int p = 0; p < g->ngroups; p++) {
        keep[p] = NULL;
        nkeep[p] = 0;
        if (active(g, s, l, p)) total += g->groups[p].size;
        if (l->min_keep[p] > 0) orig_total += l->orig[p];
    }
    c.order = malloc((size_t)(total ? total : 1) * sizeof *c.order);
    if (!c.removed || !c.order) {
        free(c.removed);
        free(c.order);
        return ns_errf(err, "out of memory");
    }
    for (int p = 0; p < g->ngroups; p++)
        if (active(g, s, l, p))
            for (int64_t k = 0; k < g->groups[p].size; k++) c.order[c.norder++] = (ranked){s->score[p][k], p, k};
    qsort(c.order, (size_t)c.norder, sizeof *c.order, by_score);
    double frac = (double)step / (double)o->steps, target_macs = 0;
    int64_t target_kept = 0;
    if (o->speed_up > 0) target_macs = (double)l->base_macs / pow(o->speed_up, frac);
    else target_kept = orig_total - (int64_t)llround(o->ratio * frac * (double)orig_total);
    int64_t lo = 0, hi = o->local ? LOCAL_LEVELS : c.norder;
    int rc = 0;
    if (!reaches(&c, hi, target_macs, target_kept)) {
        rc = ns_errf(err, "step %d: the target cannot be reached within the protection", step);
    } else {
        while (lo < hi) { // the lowest level that reaches the target
            int64_t mid = lo + (hi - lo) / 2;
            if (reaches(&c, mid, target_macs, target_kept)) hi = mid;
            else lo = mid + 1;
        }
        removal_at(&c, lo);
    }
    // Keep lists: the highest-scoring channels of each group (per block).
    for (int p = 0; rc == 0 && p < g->ngroups; p++) {
        if (!c.removed[p]) continue;
        const ns_chgroup *gr = &g->groups[p];
        int64_t blocks = gr->size / gr->block, per = (gr->size - c.removed[p]) / blocks;
        int64_t *idx = malloc((size_t)gr->block * sizeof *idx);
        char *sel = calloc((size_t)gr->size, 1);
        keep[p] = malloc((size_t)(gr->size - c.removed[p]) * sizeof **keep);
        if (!idx || !sel || !keep[p]) {
            free(idx);
            free(sel);
            rc = ns_errf(err, "out of memory");
            break;
        }
        for (int64_t b = 0; b < blocks; b++) {
            for (int64_t j = 0; j < gr->block; j++) idx[j] = b * gr->block + j;
            // sort the block's channels by score, highest first, ties by index
            for (int64_t i = 1; i < gr->block; i++) {
                int64_t v = idx[i], j = i;
                while (j > 0 && (s->score[p][idx[j - 1]] < s->score[p][v] ||
                                 (s->score[p][idx[j - 1]] == s->score[p][v] && idx[j - 1] > v))) {
                    idx[j] = idx[j - 1];
                    j--;
                }
                idx[j] = v;
            }
            for (int64_t j = 0; j < per; j++) sel[idx[j]] = 1;
        }
        for (int64_t k = 0; k < gr->size; k++)
            if (sel[k]) keep[p][nkeep[p]++] = k;
        free(idx);
        free(sel);
    }
    if (rc < 0)
        for (int p = 0; p < g->ngroups; p++) { free(keep[p]); keep[p] = NULL; }
    free(c.removed);
    free(c.order);
    return rc;
}
