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

// The working memory of a match: the groups of every tie, a similarity
// matrix per group of the unit being solved, a reordered copy.
typedef struct matcher {
    const ns_merge_opts *o;
    ns_merge_state *s;
    ns_model *const *models;
    float *const *act;
    unsigned char *const *dead; // per group: dead units (NULL: none known)
    int *members;               // groups of the unit being solved
    float **C;                  // (ngroups): per member slot
    float *tmp;
    int64_t *pair, *dr;
    ns_lsa_ws *ws;
    const unsigned char *settled; // the first pass of weight matching (NULL: full C_w)
} matcher;

// The groups solved together with p (its tie, or p alone); returns how many.
static int unit_groups(const ns_chgroups *g, int p, int *out) {
    if (g->groups[p].tie < 0) {
        out[0] = p;
        return 1;
    }
    int k = 0;
    for (int q = 0; q < g->ngroups; q++)
        if (g->groups[q].tie == g->groups[p].tie && !g->groups[q].fixed) out[k++] = q;
    return k;
}

enum { C_ACT, C_ACT_TIES, C_MIXED };

// Group p's similarity into C. C_ACT: the activations' correlation.
// C_ACT_TIES: the same with the entries between two dead units (which
// correlate alike with everything, so the solver would match them
// arbitrarily) taken from the weights' correlation. C_MIXED: alpha * C_w
// + (1 - alpha) * C_act (C_act with dead pairs from C_w as well; C_w alone
// when there are no statistics).
static int similarity(matcher *mt, int p, int mode, float *C, ns_err *err) {
    const ns_merge_state *s = mt->s;
    int64_t om = s->g->groups[p].size, O = s->n * om;
    const float *A = mt->act ? mt->act[p] : NULL;
    const unsigned char *dead = mt->dead ? mt->dead[p] : NULL;
    if (mode == C_ACT) {
        memcpy(C, A, (size_t)(O * O) * sizeof *C);
        return 0;
    }
    if (ns_merge_weight_corr(mt->models, s, p, mt->settled, C, err) < 0) return -1;
    double alpha = mode == C_ACT_TIES ? 0.0 : A ? mt->o->alpha : 1.0;
    for (int64_t r = 0; r < O; r++)
        for (int64_t c = 0; c < O; c++) {
            int64_t e = r * O + c;
            int tie = dead && dead[r] && dead[c] && r != c;
            if (!A || tie) continue; // C_w
            C[e] = (float)(alpha * C[e] + (1 - alpha) * A[e]);
        }
    return 0;
}

// Solves group p's unit (p, or its whole tie) with similarities of mode;
// scores per group into score. *changed (may be NULL) is set when some dest
// changed.
static int solve_unit(matcher *mt, int p, int mode, double *score, int *changed, ns_err *err) {
    ns_merge_state *s = mt->s;
    const ns_chgroups *g = s->g;
    int k = unit_groups(g, p, mt->members), n = s->n;
    for (int j = 0; j < k; j++) {
        int q = mt->members[j];
        if (mode != C_MIXED && !(mt->act && mt->act[q])) return 0; // no statistics: left as it is
    }
    for (int j = 0; j < k; j++)
        if (similarity(mt, mt->members[j], mode, mt->C[j], err) < 0) return -1;
    int64_t before_sum = 0;
    int64_t *old = NULL;
    for (int j = 0; j < k; j++) before_sum += n * g->groups[mt->members[j]].size;
    if (changed && !(old = malloc((size_t)before_sum * sizeof *old))) return ns_errf(err, "out of memory");
    for (int64_t j = 0, at = 0; changed && j < k; j++) {
        int64_t len = n * g->groups[mt->members[j]].size;
        memcpy(old + at, s->dest[mt->members[j]], (size_t)len * sizeof *old);
        at += len;
    }
    int rc = 0;
    if (g->groups[p].tie < 0) {
        rc = solve(mt->o, s, p, mt->C[0], mt->ws, &score[p], err);
    } else { // pair the blocks over the tie, then solve each group on paired blocks
        const ns_chgroup *g0 = &g->groups[mt->members[0]];
        int64_t nb = g0->size / g0->block, om[64];
        for (int j = 0; j < k && j < 64; j++) om[j] = g->groups[mt->members[j]].size;
        if (k > 64) rc = ns_errf(err, "a tie of %d groups", k);
        if (rc == 0) rc = ns_merge_pair_blocks((const float *const *)mt->C, k, n, om, nb, mt->ws, mt->pair, err);
        for (int j = 0; j < k && rc == 0; j++) {
            int q = mt->members[j];
            const ns_chgroup *gr = &g->groups[q];
            ns_merge_reorder_blocks(mt->C[j], n, gr->size, nb, mt->pair, mt->tmp);
            rc = mt->o->solver == NS_MERGE_ZIP
                     ? ns_merge_zip(mt->tmp, n, gr->size, gr->size / nb, mt->o->zip_a, mt->o->zip_b, mt->dr,
                                    &score[q], err)
                     : ns_merge_align(mt->tmp, n, gr->size, gr->size / nb, mt->ws, mt->dr, &score[q], err);
            if (rc < 0) {
                ns_err_prefix(err, "group %d", q);
                break;
            }
            ns_merge_unorder_dest(mt->dr, n, gr->size, nb, mt->pair, s->dest[q]);
            ns_merge_count(s->dest[q], n, gr->size, s->count[q]);
        }
    }
    for (int64_t j = 0, at = 0; rc == 0 && changed && j < k; j++) {
        int64_t len = n * g->groups[mt->members[j]].size;
        if (memcmp(old + at, s->dest[mt->members[j]], (size_t)len * sizeof *old)) *changed = 1;
        at += len;
    }
    free(old);
    return rc;
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

// Whether group p is the first of its unit (ties are solved once).
static int unit_first(const ns_chgroups *g, int p) {
    if (g->groups[p].tie < 0) return 1;
    for (int q = 0; q < p; q++)
        if (g->groups[q].tie == g->groups[p].tie && !g->groups[q].fixed) return 0;
    return 1;
}

static int has_dead(const matcher *mt, int p, int64_t O) {
    if (!mt->dead || !mt->dead[p]) return 0;
    for (int64_t r = 0; r < O; r++)
        if (mt->dead[p][r]) return 1;
    return 0;
}

// The first pass of weight matching from the identity: the groups are
// solved outward from the fixed ones (the model's input and classes), each
// on the slices of its weight vectors whose other axes are already matched
// (settled): fixed groups, groups solved earlier in this pass, axes in no
// group. Left to the sweeps, a group whose vectors mostly pair rows of
// unmatched neighbours starts from weights compared at random: a
// transformer's residual stream is read and written by every block, and its
// anchors (patch embedding, positions, norms, classifier) are a small part
// of its vectors, so the sweeps from the identity stay stuck (they did not
// find a ViT's permuted copy). A unit (a group or a tie of heads) is solved
// once every group in it has settled slices; when no unit is ready, one
// with some group ready is; units with none are left to the sweeps.
static int anchored_pass(matcher *mt, double *score, ns_err *err) {
    const ns_merge_state *s = mt->s;
    const ns_chgroups *g = s->g;
    int ng = g->ngroups;
    unsigned char *settled = calloc(ng > 0 ? (size_t)ng : 1, 1);
    if (!settled) return ns_errf(err, "out of memory");
    mt->settled = settled;
    int rc = 0, solved = 0;
    for (int relaxed = 0; rc == 0 && relaxed < 2;) {
        int progress = 0;
        for (int p = 0; p < ng && rc == 0; p++) {
            if (!s->dest[p] || settled[p] || !unit_first(g, p)) continue;
            int k = unit_groups(g, p, mt->members), ready = 0;
            for (int j = 0; j < k; j++) ready += ns_merge_weight_len(mt->models[0], s, mt->members[j], settled) > 0;
            if (ready == 0 || (!relaxed && ready < k)) continue;
            rc = solve_unit(mt, p, C_MIXED, score, NULL, err);
            for (int j = 0; j < k; j++) settled[mt->members[j]] = 1;
            progress = 1;
            solved += k;
            if (relaxed) break; // one, then strictly again
        }
        relaxed = progress ? 0 : relaxed + 1;
    }
    ns_report_message(mt->o->report, "anchored pass: %d groups matched from the fixed ones outward", solved);
    mt->settled = NULL;
    free(settled);
    return rc;
}

int ns_merge_match(ns_model *const *models, ns_merge_state *s, float *const *act_corr,
                   unsigned char *const *dead_units, const ns_merge_opts *opts, ns_merge_report *rep,
                   ns_err *err) {
    const ns_chgroups *g = s->g;
    int ng = g->ngroups, n = s->n, rc = -1;
    double t0 = ns_now();
    int64_t maxO = 1;
    for (int p = 0; p < ng; p++)
        if (n * g->groups[p].size > maxO) maxO = n * g->groups[p].size;
    size_t slots = ng > 0 ? (size_t)ng : 1;
    matcher mt = {opts, s, models, act_corr, dead_units, NULL, NULL, NULL, NULL, NULL, NULL, NULL};
    mt.members = malloc(slots * sizeof *mt.members);
    mt.C = calloc(slots, sizeof *mt.C);
    mt.tmp = malloc((size_t)(maxO * maxO) * sizeof *mt.tmp);
    mt.pair = malloc((size_t)maxO * sizeof *mt.pair);
    mt.dr = malloc((size_t)maxO * sizeof *mt.dr);
    mt.ws = ns_lsa_ws_new();
    int64_t **best = calloc(slots, sizeof *best);
    int64_t *order = malloc(slots * sizeof *order);
    double *best_score = malloc(slots * sizeof *best_score);
    rep->ngroups = ng;
    if (!rep->score) rep->score = malloc(slots * sizeof *rep->score);
    if (!rep->score || !mt.members || !mt.C || !mt.tmp || !mt.pair || !mt.dr || !mt.ws || !best || !order ||
        !best_score) {
        ns_errf(err, "out of memory");
        goto done;
    }
    int maxunit = 0;
    for (int p = 0; p < ng; p++) {
        rep->score[p] = NAN;
        if (s->dest[p] && !(best[p] = malloc((size_t)(n * g->groups[p].size) * sizeof **best))) {
            ns_errf(err, "out of memory");
            goto done;
        }
        int k = g->groups[p].fixed ? 0 : unit_groups(g, p, mt.members);
        if (k > maxunit) maxunit = k;
    }
    for (int j = 0; j < maxunit; j++)
        if (!(mt.C[j] = malloc((size_t)(maxO * maxO) * sizeof *mt.C[j]))) {
            ns_errf(err, "out of memory");
            goto done;
        }
    int matched = opts->solver != NS_MERGE_AVERAGE && n > 1;
    // Initial transforms: Psi(C_act), or the identity.
    for (int p = 0; p < ng; p++) ns_merge_state_identity(s, p);
    if (matched && opts->act_init && act_corr)
        for (int p = 0; p < ng; p++)
            if (s->dest[p] && unit_first(g, p) && solve_unit(&mt, p, C_ACT, rep->score, NULL, err) < 0) goto done;
    // Dead units break their ties by weights: sweeps over the groups that
    // have dead units, with the others' assignments as they stand, until no
    // assignment changes (the iterating methods do it in their sweeps).
    rep->sweeps = 0;
    if (matched && opts->act_init && act_corr && !opts->iterate)
        for (int sweep = 0; sweep < 10; sweep++) {
            int changed = 0;
            for (int p = 0; p < ng; p++) {
                if (!s->dest[p] || !unit_first(g, p)) continue;
                int k = unit_groups(g, p, mt.members), any = 0;
                for (int j = 0; j < k; j++) any |= has_dead(&mt, mt.members[j], n * g->groups[mt.members[j]].size);
                if (any && solve_unit(&mt, p, C_ACT_TIES, rep->score, &changed, err) < 0) goto done;
            }
            if (!changed) break;
        }
    if (matched && opts->iterate && !opts->act_init && anchored_pass(&mt, rep->score, err) < 0) goto done;
    if (matched && opts->iterate) {
        ns_rng rng;
        ns_rng_seed(&rng, opts->seed);
        double best_obj = -INFINITY;
        int misses = 0;
        save_state(s, best);
        for (int sweep = 0; sweep < opts->max_sweeps && misses < opts->patience; sweep++) {
            int64_t k = 0;
            for (int p = 0; p < ng; p++)
                if (s->dest[p] && unit_first(g, p)) order[k++] = p;
            ns_rng_shuffle(&rng, order, k);
            for (int64_t q = 0; q < k; q++)
                if (solve_unit(&mt, (int)order[q], C_MIXED, rep->score, NULL, err) < 0) goto done;
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
    if (mt.C)
        for (int j = 0; j < ng; j++) free(mt.C[j]);
    free(mt.C);
    free(mt.members);
    free(mt.tmp);
    free(mt.pair);
    free(mt.dr);
    ns_lsa_ws_free(mt.ws);
    free(best);
    free(order);
    free(best_score);
    return rc;
}
