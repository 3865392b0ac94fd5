// chgroups_apply.c: permuting and pruning a group's channels (chgroups.h):
// every tensor axis a group's members name is gathered along it, through a
// staging copy, so a failure leaves the model as it was. The analysis that
// finds the groups is chgroups.c.
#include "nn/chgroups.h"
#include "nn/chgroups_util.h"

#include <stdlib.h>
#include <string.h>

// ---------------------------------------------------------------------------
// editing tensors along an axis

// The length of a member's axis: the tensor's, or a grouped conv's input channels.
static int64_t member_axis_len(const ns_model *m, const ns_chmember *mb) {
    const ns_tensor *t = &m->tensors[mb->tensor].t;
    if (mb->role == NS_CH_IN && mb->conv_groups > 1) return t->shape[1] * mb->conv_groups;
    return t->shape[mb->axis];
}

// dst = src with axis `axis` replaced by src's indices idx[0..n) along it.
static int gather_axis(ns_tensor *dst, const ns_tensor *src, int axis, const int64_t *idx, int64_t n,
                       ns_err *err) {
    int64_t shape[NS_MAX_NDIM], outer = 1, inner = 1, len = src->shape[axis];
    memcpy(shape, src->shape, sizeof shape);
    shape[axis] = n;
    for (int d = 0; d < axis; d++) outer *= src->shape[d];
    for (int d = axis + 1; d < src->ndim; d++) inner *= src->shape[d];
    if (ns_tensor_alloc(dst, NS_F32, src->ndim, shape, err) < 0) return -1;
    const float *x = src->data;
    float *y = dst->data;
    for (int64_t o = 0; o < outer; o++)
        for (int64_t j = 0; j < n; j++)
            memcpy(y + (o * n + j) * inner, x + (o * len + idx[j]) * inner, (size_t)inner * sizeof *y);
    return 0;
}

// A grouped conv weight (OC, ICg, k, k): row o, in block b = o / (OC/groups),
// takes column idx[b * n + j] as its new column j (local to the block).
static int gather_grouped(ns_tensor *dst, const ns_tensor *src, int groups, const int64_t *idx, int64_t n,
                          ns_err *err) {
    int64_t shape[NS_MAX_NDIM], oc = src->shape[0], icg = src->shape[1], inner = 1;
    memcpy(shape, src->shape, sizeof shape);
    shape[1] = n;
    for (int d = 2; d < src->ndim; d++) inner *= src->shape[d];
    if (ns_tensor_alloc(dst, NS_F32, src->ndim, shape, err) < 0) return -1;
    const float *x = src->data;
    float *y = dst->data;
    int64_t ocg = oc / groups;
    for (int64_t o = 0; o < oc; o++)
        for (int64_t j = 0; j < n; j++)
            memcpy(y + (o * n + j) * inner, x + (o * icg + idx[(o / ocg) * n + j]) * inner,
                   (size_t)inner * sizeof *y);
    return 0;
}

// Edits staged per tensor, swapped in only when all of them succeeded.
typedef struct stage {
    ns_model *m;
    ns_tensor *t;   // per model tensor: the edited version
    char *has;
} stage;

static int stage_init(stage *st, ns_model *m, ns_err *err) {
    st->m = m;
    st->t = calloc((size_t)(m->ntensors ? m->ntensors : 1), sizeof *st->t);
    st->has = calloc((size_t)(m->ntensors ? m->ntensors : 1), 1);
    if (!st->t || !st->has) {
        free(st->t);
        free(st->has);
        return ns_errf(err, "out of memory");
    }
    return 0;
}

static const ns_tensor *stage_cur(const stage *st, int t) { return st->has[t] ? &st->t[t] : &st->m->tensors[t].t; }

static void stage_put(stage *st, int t, ns_tensor *nt) {
    if (st->has[t]) ns_tensor_free(&st->t[t]);
    st->t[t] = *nt;
    st->has[t] = 1;
}

// Swaps the edited tensors into the model; the old ones stay in st (undo).
static void stage_swap(stage *st) {
    for (int t = 0; t < st->m->ntensors; t++)
        if (st->has[t]) {
            ns_tensor tmp = st->m->tensors[t].t;
            st->m->tensors[t].t = st->t[t];
            st->t[t] = tmp;
        }
}

static void stage_free(stage *st) {
    for (int t = 0; t < st->m->ntensors; t++)
        if (st->has[t]) ns_tensor_free(&st->t[t]);
    free(st->t);
    free(st->has);
}

// Distinct (tensor, axis) pairs among the members of the given groups.
typedef struct taxis { int tensor, axis, grouped, conv_groups; int64_t len; } taxis;

static int collect_axes(const ns_model *m, const ns_chgroups *g, const char *want, taxis **out, int *nout,
                        ns_err *err) {
    int n = 0, cap = 0;
    taxis *ax = NULL;
    for (int k = 0; k < g->ngroups; k++) {
        if (!want[k]) continue;
        const ns_chgroup *gr = &g->groups[k];
        for (int i = 0; i < gr->nmembers; i++) {
            const ns_chmember *mb = &gr->members[i];
            if (mb->role == NS_CH_ACT) continue;
            int grouped = mb->role == NS_CH_IN && mb->conv_groups > 1, seen = 0;
            for (int j = 0; j < n && !seen; j++) seen = ax[j].tensor == mb->tensor && ax[j].axis == mb->axis;
            if (seen) continue;
            if (n == cap) {
                cap = cap ? 2 * cap : 16;
                taxis *p = realloc(ax, (size_t)cap * sizeof *p);
                if (!p) { free(ax); return ns_errf(err, "out of memory"); }
                ax = p;
            }
            ax[n++] = (taxis){mb->tensor, mb->axis, grouped, mb->conv_groups, member_axis_len(m, mb)};
        }
    }
    *out = ax;
    *nout = n;
    return 0;
}

static const char *group_what(const ns_chgroup *gr, char *buf, size_t cap) {
    char why[160];
    snprintf(buf, cap, "group %d is fixed (%s)", gr->id, ns_chgroups_fixed_reason(gr->fixed, why, sizeof why));
    return buf;
}

// ---------------------------------------------------------------------------
// permuting

int ns_chgroups_block_map(const ns_chgroup *gr, const int64_t *perm, int64_t *blocks) {
    int64_t B = gr->block, nb = gr->size / B;
    for (int64_t b = 0; b < nb; b++) {
        int64_t from = perm[b * B] / B;
        for (int64_t j = b * B; j < (b + 1) * B; j++)
            if (perm[j] < 0 || perm[j] >= gr->size || perm[j] / B != from) return -1;
        blocks[b] = from;
    }
    return 0;
}

// Checks perms for permute_many: permutations, blocks kept or moved as a tie.
static int check_perms(const ns_chgroups *g, const int64_t *const *perms, ns_err *err) {
    char what[256];
    int64_t maxn = 1;
    for (int k = 0; k < g->ngroups; k++)
        if (g->groups[k].size > maxn) maxn = g->groups[k].size;
    char *seen = malloc((size_t)maxn);
    int64_t *blocks = malloc((size_t)maxn * sizeof *blocks), *first = malloc((size_t)maxn * sizeof *first);
    int *tie_first = malloc((size_t)(g->nties ? g->nties : 1) * sizeof *tie_first), rc = -1;
    if (!seen || !blocks || !first || !tie_first) { ns_errf(err, "out of memory"); goto out; }
    for (int t = 0; t < g->nties; t++) tie_first[t] = -1;
    for (int group = 0; group < g->ngroups; group++) {
        const int64_t *perm = perms[group];
        const ns_chgroup *gr = &g->groups[group];
        if (!perm) continue;
        if (gr->fixed) {
            ns_errf(err, "%s: its channels cannot be permuted", group_what(gr, what, sizeof what));
            goto out;
        }
        int64_t n = gr->size;
        memset(seen, 0, (size_t)n);
        for (int64_t j = 0; j < n; j++) {
            int64_t p = perm[j];
            if (p < 0 || p >= n || seen[p]) {
                ns_errf(err, "group %d: not a permutation of its %lld channels (entry %lld is %lld)", group,
                        (long long)n, (long long)j, (long long)p);
                goto out;
            }
            seen[p] = 1;
        }
        int moves = ns_chgroups_block_map(gr, perm, blocks) < 0;
        for (int64_t b = 0; !moves && b < n / gr->block; b++) moves = blocks[b] != b;
        if (moves && gr->tie < 0) {
            for (int64_t j = 0; j < n; j++)
                if (perm[j] / gr->block != j / gr->block) {
                    ns_errf(err, "group %d: channels move within blocks of %lld, but channel %lld would go to %lld",
                            group, (long long)gr->block, (long long)perm[j], (long long)j);
                    goto out;
                }
        }
        if (gr->tie < 0) continue;
        if (ns_chgroups_block_map(gr, perm, blocks) < 0) {
            ns_errf(err, "group %d: a permutation must move whole blocks of %lld channels", group, (long long)gr->block);
            goto out;
        }
        int f = tie_first[gr->tie];
        if (f < 0) {
            tie_first[gr->tie] = group;
            memcpy(first, blocks, (size_t)(n / gr->block) * sizeof *first);
            continue;
        }
        if (memcmp(first, blocks, (size_t)(n / gr->block) * sizeof *first)) {
            ns_errf(err, "groups %d and %d are tied (attention heads, GroupNorm groups) but their blocks would "
                    "move differently", f, group);
            goto out;
        }
    }
    // a tie with moved blocks must be permuted whole
    for (int group = 0; group < g->ngroups; group++) {
        const ns_chgroup *gr = &g->groups[group];
        if (gr->tie < 0 || perms[group] || tie_first[gr->tie] < 0) continue;
        const ns_chgroup *fg = &g->groups[tie_first[gr->tie]];
        ns_chgroups_block_map(fg, perms[fg->id], blocks);
        for (int64_t b = 0; b < fg->size / fg->block; b++)
            if (blocks[b] != b) {
                ns_errf(err, "group %d moves whole blocks, so group %d, tied to it, must be permuted with it",
                        fg->id, group);
                goto out;
            }
    }
    rc = 0;
out:
    free(seen);
    free(blocks);
    free(first);
    free(tie_first);
    return rc;
}

int ns_chgroups_permute_many(ns_model *m, const ns_chgroups *g, const int64_t *const *perms, ns_err *err) {
    if (check_perms(g, perms, err) < 0) return -1;
    char *want = calloc((size_t)(g->ngroups ? g->ngroups : 1), 1);
    taxis *ax = NULL;
    int nax = 0, rc = -1;
    stage st = {0};
    int64_t *src = NULL;
    if (!want) return ns_errf(err, "out of memory");
    for (int k = 0; k < g->ngroups; k++) want[k] = perms[k] != NULL;
    if (collect_axes(m, g, want, &ax, &nax, err) < 0) goto out;
    if (stage_init(&st, m, err) < 0) goto out;
    for (int a = 0; a < nax; a++) {
        int64_t len = ax[a].len;
        free(src);
        src = malloc((size_t)len * sizeof *src);
        if (!src) { ns_errf(err, "out of memory"); goto out; }
        for (int64_t p = 0; p < len; p++) src[p] = p;
        for (int k = 0; k < g->ngroups; k++) {
            if (!want[k]) continue;
            const ns_chgroup *gr = &g->groups[k];
            const int64_t *perm = perms[k];
            for (int i = 0; i < gr->nmembers; i++) {
                const ns_chmember *mb = &gr->members[i];
                if (mb->role == NS_CH_ACT || mb->tensor != ax[a].tensor || mb->axis != ax[a].axis) continue;
                for (int64_t c = 0; c < gr->size; c++)
                    for (int64_t r = 0; r < mb->reps; r++)
                        for (int64_t s = 0; s < mb->inner; s++)
                            src[ns_chmember_index(mb, c, r, s)] = ns_chmember_index(mb, perm[c], r, s);
            }
        }
        ns_tensor nt;
        const ns_tensor *cur = stage_cur(&st, ax[a].tensor);
        if (ax[a].grouped) { // block-local column indices
            int64_t icg = len / ax[a].conv_groups;
            for (int64_t p = 0; p < len; p++) src[p] -= p / icg * icg;
            if (gather_grouped(&nt, cur, ax[a].conv_groups, src, icg, err) < 0) goto out;
        } else if (gather_axis(&nt, cur, ax[a].axis, src, len, err) < 0) {
            goto out;
        }
        stage_put(&st, ax[a].tensor, &nt);
    }
    stage_swap(&st);
    rc = 0;
out:
    if (st.t) stage_free(&st);
    free(src);
    free(ax);
    free(want);
    return rc;
}

int ns_chgroups_permute(ns_model *m, const ns_chgroups *g, int group, const int64_t *perm, ns_err *err) {
    if (group < 0 || group >= g->ngroups)
        return ns_errf(err, "no group %d (the model has %d)", group, g->ngroups);
    const int64_t **perms = calloc((size_t)g->ngroups, sizeof *perms);
    if (!perms) return ns_errf(err, "out of memory");
    perms[group] = perm;
    int rc = ns_chgroups_permute_many(m, g, perms, err);
    free(perms);
    return rc;
}

// ---------------------------------------------------------------------------
// selecting (structured pruning)

// Node attributes a selection may change, saved for undo.
typedef struct saved_attrs { int64_t iattr[NS_MAX_ATTRS]; } saved_attrs;

int ns_chgroups_select_many(ns_model *m, ns_chgroups *g, const int64_t *const *keep, const int64_t *nkeep,
                            ns_err *err) {
    char what[256];
    for (int k = 0; k < g->ngroups; k++) {
        if (!keep[k]) continue;
        const ns_chgroup *gr = &g->groups[k];
        if (gr->fixed) return ns_errf(err, "%s: its channels cannot be removed", group_what(gr, what, sizeof what));
        if (gr->noselect & NS_CHSEL_HEADS)
            return ns_errf(err, "group %d is an attention's query-key or value space: pruning attention heads is "
                           "not supported", k);
        if (gr->noselect & NS_CHSEL_ATTN)
            return ns_errf(err, "group %d is read or written by an attention, whose width it is: pruning it is "
                           "not supported", k);
        if (gr->noselect)
            return ns_errf(err, "group %d fills only part of a grouped conv's channels: pruning it alone would "
                           "leave the conv's blocks unequal", k);
        int64_t n = nkeep[k], nb = gr->size / gr->block;
        if (n < 1 || n > gr->size)
            return ns_errf(err, "group %d: keeping %lld of %lld channels", k, (long long)n, (long long)gr->size);
        if (n % nb)
            return ns_errf(err, "group %d: channels come in %lld blocks of %lld; keep the same number in each "
                           "(a multiple of %lld, not %lld)", k, (long long)nb, (long long)gr->block,
                           (long long)nb, (long long)n);
        for (int64_t j = 0; j < n; j++) {
            if (keep[k][j] < 0 || keep[k][j] >= gr->size || (j && keep[k][j] <= keep[k][j - 1]))
                return ns_errf(err, "group %d: keep list must rise strictly within [0, %lld) (entry %lld is %lld)", k,
                               (long long)gr->size, (long long)j, (long long)keep[k][j]);
            if (keep[k][j] / gr->block != j / (n / nb))
                return ns_errf(err, "group %d: keep %lld channels in each block of %lld (kept channel %lld is in "
                               "block %lld, not %lld)", k, (long long)(n / nb), (long long)gr->block,
                               (long long)keep[k][j], (long long)(keep[k][j] / gr->block), (long long)(j / (n / nb)));
        }
    }

    int rc = -1, nax = 0;
    char *want = calloc((size_t)(g->ngroups ? g->ngroups : 1), 1);
    char **kept = calloc((size_t)(g->ngroups ? g->ngroups : 1), sizeof *kept);
    char *touched = calloc((size_t)m->nnodes, 1), *dw = calloc((size_t)m->nnodes, 1);
    saved_attrs *attrs = malloc((size_t)m->nnodes * sizeof *attrs);
    taxis *ax = NULL;
    char *mask = NULL;
    int64_t *idx = NULL;
    stage st = {0};
    if (!want || !kept || !touched || !dw || !attrs) { ns_errf(err, "out of memory"); goto out; }
    int any = 0;
    for (int k = 0; k < g->ngroups; k++) {
        if (!keep[k] || nkeep[k] == g->groups[k].size) continue;
        want[k] = any = 1;
        kept[k] = calloc((size_t)g->groups[k].size, 1);
        if (!kept[k]) { ns_errf(err, "out of memory"); goto out; }
        for (int64_t j = 0; j < nkeep[k]; j++) kept[k][keep[k][j]] = 1;
        for (int i = 0; i < g->groups[k].nmembers; i++) touched[g->groups[k].members[i].node] = 1;
    }
    if (!any) { rc = 0; goto out; }
    for (int i = 0; i < m->nnodes; i++) {
        dw[i] = (char)is_depthwise(m, &m->nodes[i]);
        memcpy(attrs[i].iattr, m->nodes[i].iattr, sizeof attrs[i].iattr);
    }
    if (collect_axes(m, g, want, &ax, &nax, err) < 0) goto out;
    if (stage_init(&st, m, err) < 0) goto out;
    for (int a = 0; a < nax; a++) {
        int64_t len = ax[a].len, n = 0;
        free(mask);
        free(idx);
        mask = malloc((size_t)len);
        idx = malloc((size_t)len * sizeof *idx);
        if (!mask || !idx) { ns_errf(err, "out of memory"); goto out; }
        memset(mask, 1, (size_t)len);
        for (int k = 0; k < g->ngroups; k++) {
            if (!want[k]) continue;
            const ns_chgroup *gr = &g->groups[k];
            for (int i = 0; i < gr->nmembers; i++) {
                const ns_chmember *mb = &gr->members[i];
                if (mb->role == NS_CH_ACT || mb->tensor != ax[a].tensor || mb->axis != ax[a].axis) continue;
                for (int64_t c = 0; c < gr->size; c++)
                    if (!kept[k][c])
                        for (int64_t r = 0; r < mb->reps; r++)
                            for (int64_t s = 0; s < mb->inner; s++) mask[ns_chmember_index(mb, c, r, s)] = 0;
            }
        }
        ns_tensor nt;
        const ns_tensor *cur = stage_cur(&st, ax[a].tensor);
        if (ax[a].grouped) { // the same count in every block, as block-local columns
            int64_t icg = len / ax[a].conv_groups, per = -1;
            for (int64_t blk = 0; blk < ax[a].conv_groups; blk++) {
                int64_t c = 0;
                for (int64_t j = 0; j < icg; j++)
                    if (mask[blk * icg + j]) idx[n++] = j, c++;
                if (per >= 0 && c != per) {
                    ns_errf(err, "%s: blocks would differ in channels", m->tensors[ax[a].tensor].name);
                    goto out;
                }
                per = c;
            }
            if (gather_grouped(&nt, cur, ax[a].conv_groups, idx, per, err) < 0) goto out;
        } else {
            for (int64_t p = 0; p < len; p++)
                if (mask[p]) idx[n++] = p;
            if (gather_axis(&nt, cur, ax[a].axis, idx, n, err) < 0) goto out;
        }
        stage_put(&st, ax[a].tensor, &nt);
    }
    stage_swap(&st);
    // the attributes that follow from the new tensor shapes
    for (int i = 0; i < m->nnodes; i++) {
        ns_node *nd = &m->nodes[i];
        const ns_tensor *w = nd->params[0] >= 0 ? &m->tensors[nd->params[0]].t : NULL;
        if (!touched[i]) continue;
        if (nd->op == NS_OP_CONV2D && w) {
            ns_node_set_iattr(nd, "out", w->shape[0], NULL);
            if (dw[i]) ns_node_set_iattr(nd, "groups", w->shape[0], NULL);
        } else if (nd->op == NS_OP_LINEAR && w) {
            ns_node_set_iattr(nd, "out", w->shape[0], NULL);
        } else if (nd->op == NS_OP_PATCH_EMBED && w) {
            ns_node_set_iattr(nd, "out", w->shape[0], NULL);
        } else if (nd->op == NS_OP_EMBEDDING && w) {
            ns_node_set_iattr(nd, "dim", w->shape[1], NULL);
        } else if (nd->op == NS_OP_RESHAPE && nd->ndim == 1) {
            ns_node_set_iattr(nd, "dim0", -1, NULL);
        }
    }
    ns_chgroups ng;
    if (ns_model_resolve(m, 0, err) < 0 || ns_chgroups_build(&ng, m, err) < 0) {
        ns_err ignore;
        ns_err_prefix(err, "selection undone");
        stage_swap(&st); // the old tensors back
        for (int i = 0; i < m->nnodes; i++) memcpy(m->nodes[i].iattr, attrs[i].iattr, sizeof attrs[i].iattr);
        ns_model_resolve(m, 0, &ignore);
        goto out;
    }
    ns_chgroups_free(g);
    *g = ng;
    rc = 0;
out:
    if (st.t) stage_free(&st);
    for (int k = 0; kept && k < g->ngroups; k++) free(kept[k]);
    free(kept);
    free(want);
    free(touched);
    free(dw);
    free(attrs);
    free(ax);
    free(mask);
    free(idx);
    return rc;
}

int ns_chgroups_select(ns_model *m, ns_chgroups *g, int group, const int64_t *keep, int64_t nkeep,
                       ns_err *err) {
    if (group < 0 || group >= g->ngroups)
        return ns_errf(err, "no group %d (the model has %d)", group, g->ngroups);
    const int64_t **keeps = calloc((size_t)g->ngroups, sizeof *keeps);
    int64_t *counts = calloc((size_t)g->ngroups, sizeof *counts);
    if (!keeps || !counts) {
        free(keeps);
        free(counts);
        return ns_errf(err, "out of memory");
    }
    keeps[group] = keep;
    counts[group] = nkeep;
    int rc = ns_chgroups_select_many(m, g, keeps, counts, err);
    free(keeps);
    free(counts);
    return rc;
}
