// merge.c: the driver of a merge (merge.h): are the models the same
// architecture, the concatenated task head, and the search for every group's
// assignment (initial Psi(C_act), then Git Re-Basin/MuDSC coordinate descent
// over the groups with patience).
//
// Shapes: per group, C_act and C_w (O, O), O = N * Om.
#include "merge/merge.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/report.h"
#include "base/rng.h"

void ns_merge_report_free(ns_merge_report *r) {
    free(r->score);
    free(r->dead);
    memset(r, 0, sizeof *r);
}

static void shape_text(char *buf, size_t cap, const ns_tensor *t) { ns_shape_format(buf, cap, t->ndim, t->shape); }

int ns_merge_check_compatible(ns_model *const *models, const char *const *names, int n,
                              int allow_head, ns_err *err) {
    const ns_model *a = models[0];
    for (int i = 1; i < n; i++) {
        const ns_model *b = models[i];
        const char *na = names[0], *nb = names[i];
        const ns_node *ia = &a->nodes[0], *ib = &b->nodes[0];
        if (ia->ndim != ib->ndim || memcmp(ia->shape, ib->shape, (size_t)ia->ndim * sizeof *ia->shape)) {
            char sa[64], sb[64];
            ns_shape_format(sa, sizeof sa, ia->ndim, ia->shape);
            ns_shape_format(sb, sizeof sb, ib->ndim, ib->shape);
            return ns_errf(err, "%s takes inputs of %s but %s takes %s", nb, sb, na, sa);
        }
        int same_norm = a->nnorm == b->nnorm;
        for (int c = 0; same_norm && c < a->nnorm; c++) same_norm = a->mean[c] == b->mean[c] && a->std[c] == b->std[c];
        if (!same_norm) return ns_errf(err, "%s expects inputs normalised differently from %s (image.mean/std)", nb, na);
        if (a->nnodes != b->nnodes || a->output != b->output)
            return ns_errf(err, "%s is not the architecture of %s (%d nodes against %d)", nb, na, b->nnodes, a->nnodes);
        for (int k = 0; k < a->nnodes; k++) {
            const ns_node *x = &a->nodes[k], *y = &b->nodes[k];
            int head = allow_head && k == a->output;
            if (x->op != y->op || strcmp(x->name, y->name) || x->ninputs != y->ninputs ||
                memcmp(x->inputs, y->inputs, (size_t)x->ninputs * sizeof *x->inputs))
                return ns_errf(err, "%s is not the architecture of %s (node %d: %s %s against %s %s)", nb, na, k,
                               ns_ops[y->op].name, y->name, ns_ops[x->op].name, x->name);
            for (int j = 0; j < NS_MAX_ATTRS && ns_ops[x->op].iattr[j]; j++) {
                if (x->iattr[j] == y->iattr[j] || (head && strcmp(ns_ops[x->op].iattr[j], "out") == 0)) continue;
                return ns_errf(err, "%s is not the architecture of %s (%s %s: %lld against %lld)", nb, na, x->name,
                               ns_ops[x->op].iattr[j], (long long)y->iattr[j], (long long)x->iattr[j]);
            }
            for (int j = 0; j < NS_MAX_PARAMS; j++) {
                if ((x->params[j] < 0) != (y->params[j] < 0))
                    return ns_errf(err, "%s is not the architecture of %s (%s: %s present in one only)", nb, na,
                                   x->name, ns_ops[x->op].param[j]);
                if (x->params[j] < 0) continue;
                if (x->params[j] != y->params[j])
                    return ns_errf(err, "%s stores its tensors in another order than %s (%s)", nb, na,
                                   a->tensors[x->params[j]].name);
                const ns_tensor *ta = &a->tensors[x->params[j]].t, *tb = &b->tensors[y->params[j]].t;
                int same = ta->ndim == tb->ndim;
                for (int d = 0; same && d < ta->ndim; d++)
                    same = ta->shape[d] == tb->shape[d] || (head && d == 0);
                if (!same) {
                    char sa[64], sb[64];
                    shape_text(sa, sizeof sa, ta);
                    shape_text(sb, sizeof sb, tb);
                    return ns_errf(err, "%s is not the architecture of %s (tensor %s: %s against %s)", nb, na,
                                   a->tensors[x->params[j]].name, sb, sa);
                }
            }
        }
    }
    return 0;
}

int ns_merge_check_groups(const ns_chgroups *g, const ns_model *m, ns_err *err) {
    for (int p = 0; p < g->ngroups; p++)
        for (int k = 0; k < g->groups[p].nmembers; k++) {
            const ns_chmember *mb = &g->groups[p].members[k];
            if (!g->groups[p].fixed && mb->conv_groups > 1 && mb->role == NS_CH_IN)
                return ns_errf(err, "grouped convolutions are not supported yet (%s)", m->nodes[mb->node].name);
        }
    return 0;
}

int ns_merge_concat_head(ns_model *out, ns_model *const *models, int n, ns_merge_state *s,
                         ns_err *err) {
    int h = out->output;
    ns_node *node = &out->nodes[h];
    if (node->op != NS_OP_LINEAR)
        return ns_errf(err, "cannot concatenate task heads: the output node %s is a %s, not a linear layer",
                       node->name, ns_ops[node->op].name);
    int64_t total = 0;
    for (int i = 0; i < n; i++) total += (s->head_rows[i] = models[i]->nodes[h].shape[0]);
    size_t nl = (size_t)total;
    char **labels = calloc(nl, sizeof *labels);
    if (!labels) return ns_errf(err, "out of memory");
    size_t k = 0;
    for (int i = 0; i < n; i++)
        for (int64_t c = 0; c < s->head_rows[i]; c++, k++) {
            const ns_model *mi = models[i];
            char buf[64];
            const char *name = (size_t)c < mi->nlabels && mi->labels ? mi->labels[c] : NULL;
            if (!name) snprintf(buf, sizeof buf, "m%d:%lld", i, (long long)c);
            if (!(labels[k] = strdup(name ? name : buf))) {
                ns_strings_free(labels, k);
                return ns_errf(err, "out of memory");
            }
        }
    if (ns_node_set_iattr(node, "out", total, err) < 0) {
        ns_strings_free(labels, nl);
        return -1;
    }
    for (int j = 0; j < NS_MAX_PARAMS; j++) {
        if (node->params[j] < 0) continue;
        ns_tensor *t = &out->tensors[node->params[j]].t;
        int64_t shape[NS_MAX_NDIM];
        memcpy(shape, t->shape, sizeof shape);
        shape[0] = total;
        ns_tensor fresh;
        if (ns_tensor_alloc(&fresh, NS_F32, t->ndim, shape, err) < 0) {
            ns_strings_free(labels, nl);
            return -1;
        }
        ns_tensor_free(t);
        *t = fresh;
    }
    ns_strings_free(out->labels, out->nlabels);
    out->labels = labels;
    out->nlabels = nl;
    s->head_node = h;
    return ns_model_resolve(out, 0, err);
}

// Psi for group p on C: fills s's assignment and *score.
static int solve(const ns_merge_opts *o, ns_merge_state *s, int p, const float *C, ns_lsa_ws *ws,
                 double *score, ns_err *err) {
    const ns_chgroup *gr = &s->g->groups[p];
    int rc = o->solver == NS_MERGE_ZIP
                 ? ns_merge_zip(C, s->n, gr->size, gr->block, o->zip_a, o->zip_b, s->dest[p], score, err)
                 : ns_merge_align(C, s->n, gr->size, gr->block, ws, s->dest[p], score, err);
    if (rc < 0) return ns_err_prefix(err, "group %d", p);
    ns_merge_count(s->dest[p], s->n, gr->size, s->count[p]);
    return 0;
}

// A copy of every group's dest (counts follow from dest).
static void save_state(const ns_merge_state *s, int64_t **to) {
    for (int p = 0; p < s->g->ngroups; p++)
        if (s->dest[p]) memcpy(to[p], s->dest[p], (size_t)(s->n * s->g->groups[p].size) * sizeof **to);
}

static void load_state(ns_merge_state *s, int64_t *const *from) {
    for (int p = 0; p < s->g->ngroups; p++)
        if (s->dest[p]) {
            memcpy(s->dest[p], from[p], (size_t)(s->n * s->g->groups[p].size) * sizeof *from[p]);
            ns_merge_count(s->dest[p], s->n, s->g->groups[p].size, s->count[p]);
        }
}

static double mean_score(const double *score, int ng) {
    double sum = 0;
    int k = 0;
    for (int p = 0; p < ng; p++)
        if (!isnan(score[p])) sum += score[p], k++;
    return k ? sum / k : NAN;
}

int ns_merge_match(ns_model *const *models, ns_merge_state *s, float *const *act_corr,
                   const ns_merge_opts *opts, ns_merge_report *rep, ns_err *err) {
    const ns_chgroups *g = s->g;
    int ng = g->ngroups, n = s->n, rc = -1;
    double t0 = ns_now();
    int64_t maxO = 0;
    for (int p = 0; p < ng; p++)
        if (n * g->groups[p].size > maxO) maxO = n * g->groups[p].size;
    float *C = malloc((size_t)(maxO > 0 ? maxO * maxO : 1) * sizeof *C);
    size_t slots = ng > 0 ? (size_t)ng : 1;
    int64_t **best = calloc(slots, sizeof *best);
    int64_t *order = malloc(slots * sizeof *order);
    double *best_score = malloc(slots * sizeof *best_score);
    ns_lsa_ws *ws = ns_lsa_ws_new();
    rep->ngroups = ng;
    if (!rep->score) rep->score = malloc(slots * sizeof *rep->score);
    if (!rep->score || !C || !best || !order || !best_score || !ws) {
        ns_errf(err, "out of memory");
        goto done;
    }
    for (int p = 0; p < ng; p++) {
        rep->score[p] = NAN;
        if (s->dest[p] && !(best[p] = malloc((size_t)(n * g->groups[p].size) * sizeof **best))) {
            ns_errf(err, "out of memory");
            goto done;
        }
    }
    int matched = opts->solver != NS_MERGE_AVERAGE && n > 1;
    // Initial transforms: Psi(C_act), or the identity.
    for (int p = 0; p < ng; p++) {
        if (!s->dest[p]) continue;
        ns_merge_state_identity(s, p);
        if (matched && opts->act_init && act_corr && act_corr[p] &&
            solve(opts, s, p, act_corr[p], ws, &rep->score[p], err) < 0)
            goto done;
    }
    rep->sweeps = 0;
    if (matched && opts->iterate) {
        ns_rng rng;
        ns_rng_seed(&rng, opts->seed);
        double best_obj = -INFINITY;
        int misses = 0;
        save_state(s, best);
        for (int sweep = 0; sweep < opts->max_sweeps && misses < opts->patience; sweep++) {
            int64_t k = 0;
            for (int p = 0; p < ng; p++)
                if (s->dest[p]) order[k++] = p;
            ns_rng_shuffle(&rng, order, k);
            for (int64_t q = 0; q < k; q++) {
                int p = (int)order[q];
                int64_t O = n * g->groups[p].size;
                if (ns_merge_weight_corr(models, s, p, C, err) < 0) goto done;
                const float *A = act_corr ? act_corr[p] : NULL;
                double alpha = A ? opts->alpha : 1.0;
                for (int64_t e = 0; e < O * O; e++) C[e] = (float)(alpha * C[e] + (A ? (1 - alpha) * A[e] : 0));
                if (solve(opts, s, p, C, ws, &rep->score[p], err) < 0) goto done;
            }
            rep->sweeps = sweep + 1;
            double obj = mean_score(rep->score, ng);
            ns_report_message(opts->report, "sweep %d: mean score %.6f", sweep + 1, obj);
            if (obj > best_obj) {
                best_obj = obj;
                save_state(s, best);
                memcpy(best_score, rep->score, (size_t)ng * sizeof *best_score);
            } else {
                load_state(s, best);
                memcpy(rep->score, best_score, (size_t)ng * sizeof *best_score);
                misses++;
            }
        }
    }
    rep->objective = mean_score(rep->score, ng);
    rep->seconds_match = ns_now() - t0;
    rc = 0;
done:
    if (best)
        for (int p = 0; p < ng; p++) free(best[p]);
    free(best);
    free(order);
    free(best_score);
    free(C);
    ns_lsa_ws_free(ws);
    return rc;
}
